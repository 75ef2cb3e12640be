//! Picks the real server for a new flow, with IPVS's rules for every LVS
//! scheduler (see docs/SCHEDULERS.md). The agent keeps the tables and lists
//! in the maps; this module only reads them, and keeps the state IPVS keeps
//! per packet: the rr/wrr cursor, overload flags, persistence and locality
//! entries.

pub(crate) mod each;
mod least;
mod locality;
mod persist;
mod reals;
mod table;
mod threshold;
mod twos;

use lb_common::{FlowKey, SERVICE_F_PERSISTENT, ServiceInfo, sched};

/// The real id for a new `flow` of `service`, or `None` if no real can take it.
// A BPF-to-BPF call: its locals get their own stack frame instead of adding
// to the director's (BPF allows 512 bytes per frame).
#[inline(never)]
pub fn pick(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    if service.flags & SERVICE_F_PERSISTENT != 0 {
        persist::pick(service, flow)
    } else {
        schedule(service, flow)
    }
}

/// The scheduler's own choice, persistence aside.
#[inline(always)]
fn schedule(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    match service.sched {
        sched::MH => table::maglev(service, flow),
        sched::RR | sched::WRR => table::sequence(service),
        sched::DH => table::dh(service, flow),
        sched::SH => table::sh(service, flow),
        sched::LBLC => locality::lblc(service, flow),
        sched::LBLCR => locality::lblcr(service, flow),
        rule @ (sched::LC | sched::WLC | sched::SED | sched::NQ | sched::FO | sched::OVF) => {
            least::pick(service, rule)
        }
        sched::TWOS => twos::pick(service),
        _ => None,
    }
}
