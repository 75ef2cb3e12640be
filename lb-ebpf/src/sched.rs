//! Picks the real server for a new flow. Maglev: the flow hash indexes the
//! service's lookup table, which the agent fills.

use crate::maps::{MAGLEV, MAGLEV_TABLE_SIZE};
use lb_common::{FlowKey, REAL_NONE, ServiceInfo, flow_hash};

/// The real id for a new `flow` of `service`, or `None` if the table slot is empty.
#[inline(always)]
pub fn pick(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let size = MAGLEV_TABLE_SIZE.load();
    if size == 0 {
        return None;
    }
    let slot = service.id * size + flow_hash(flow) % size;
    let real = *MAGLEV.get(slot)?;
    (real != REAL_NONE).then_some(real)
}
