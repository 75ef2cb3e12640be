//! Persistence (IPVS persistent services): a client, its address masked by
//! the service's granularity, keeps its real for `persist_timeout_s` after
//! its last new connection. The template is dropped early when its real can
//! no longer take new flows (weight 0 or unreachable), as IPVS does with
//! `expire_quiescent_template` set.

use super::{reals, schedule};
use crate::maps::PERSIST;
use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{Affinity, FlowKey, ServiceAddr, ServiceInfo};

#[inline(always)]
pub fn pick(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let m = &service.persist_mask;
    let key = ServiceAddr {
        service_id: service.id,
        addr: [
            flow.src[0] & m[0],
            flow.src[1] & m[1],
            flow.src[2] & m[2],
            flow.src[3] & m[3],
        ],
    };
    crate::probe::hit(lb_common::probe::KTIME);
    let now = unsafe { bpf_ktime_get_ns() };
    let timeout = service.persist_timeout_s as u64 * 1_000_000_000;
    crate::probe::hit(lb_common::probe::PERSIST);
    if let Some(entry) = PERSIST.get_ptr_mut(key) {
        let entry = unsafe { &mut *entry };
        let fresh = now.wrapping_sub(entry.last_ns) < timeout;
        if fresh
            && let Some((real, _)) = reals::member(entry.real_id, service.id)
            && real.weight > 0
        {
            entry.last_ns = now;
            return Some(entry.real_id);
        }
    }
    let id = schedule(service, flow)?;
    let entry = Affinity {
        real_id: id,
        _pad: 0,
        last_ns: now,
    };
    // A full map evicts its least recently used template; a failed insert
    // only costs this client its persistence.
    crate::probe::hit(lb_common::probe::AFFINITY_UPDATE);
    let _ = PERSIST.insert(key, entry, 0);
    Some(id)
}
