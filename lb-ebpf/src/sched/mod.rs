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

use lb_common::{FlowKey, REAL_NONE, SERVICE_F_PERSISTENT, ServiceInfo, sched};

/// The real id for a new `flow` of `service`, or `None` if no real can take it.
#[inline(always)]
pub fn pick(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    Some(pick_id(service, flow)).filter(|&id| id != REAL_NONE)
}

/// `pick` as a plain id (`REAL_NONE` for none).
// A BPF-to-BPF call: its locals get their own stack frame instead of adding
// to the director's (BPF allows 512 bytes per frame). It returns a scalar:
// an `Option` may come back through the caller's stack, with the pointer
// left in R0, which the verifier refuses ("cannot return stack pointer").
#[inline(never)]
fn pick_id(service: &ServiceInfo, flow: &FlowKey) -> u32 {
    if service.flags & SERVICE_F_PERSISTENT != 0 {
        persist::pick(service, flow)
    } else {
        schedule(service, flow)
    }
    .unwrap_or(REAL_NONE)
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
