//! Flow table: a flow stays on the real server it was first sent to for as
//! long as that real exists, whatever happens to the Maglev table meanwhile.

use crate::maps::CONNTRACK;
use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{FlowKey, FlowState};

/// The real id recorded for `flow` in `service_id`, if any.
#[inline(always)]
pub fn lookup(flow: &FlowKey, service_id: u32) -> Option<u32> {
    let state = CONNTRACK.get_ptr(flow)?;
    let state = unsafe { &*state };
    (state.service_id == service_id).then_some(state.real_id)
}

/// Records that `flow` goes to `real_id`. Returns false if the map refused it.
#[inline(always)]
pub fn record(flow: &FlowKey, service_id: u32, real_id: u32) -> bool {
    let state = FlowState {
        real_id,
        service_id,
        created_ns: unsafe { bpf_ktime_get_ns() },
    };
    CONNTRACK.insert(flow, state, 0).is_ok()
}
