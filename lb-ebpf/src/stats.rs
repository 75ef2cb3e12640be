//! Per-CPU counters: no atomics needed, the agent sums the CPUs when it reads.

use crate::maps::{GLOBAL_STATS, REAL_STATS, SERVICE_STATS};
use aya_ebpf::btf_maps::PerCpuArray;
use lb_common::{Counters, GlobalCounters};

/// Which global counter a packet's fate adds to.
#[derive(Clone, Copy)]
pub enum Fate {
    Pass,
    Malformed,
    Fragment,
    Drop,
    Error,
    Tx,
    Redirect,
    /// An ICMP "too big" answered back out of the ingress interface (XDP_TX).
    TooBig,
    /// A packet of a flow whose real left the service, dropped with the flow
    /// (nodest policy `expire`).
    NodestExpired,
}

#[inline(always)]
pub fn global(fate: Fate) {
    crate::probe::hit(lb_common::probe::STATS);
    let Some(c) = GLOBAL_STATS.get_ptr_mut(0) else {
        return;
    };
    let c: &mut GlobalCounters = unsafe { &mut *c };
    match fate {
        Fate::Pass => c.pass += 1,
        Fate::Malformed => {
            c.pass += 1;
            c.malformed += 1;
        }
        Fate::Fragment => {
            c.pass += 1;
            c.fragments += 1;
        }
        Fate::Drop => c.drop += 1,
        Fate::Error => c.error += 1,
        Fate::Tx => c.tx += 1,
        Fate::Redirect => c.redirect += 1,
        Fate::TooBig => {
            c.tx += 1;
            c.too_big += 1;
        }
        Fate::NodestExpired => {
            c.drop += 1;
            c.nodest_expired += 1;
        }
    }
}

/// What happened to a flow, beyond its packet's fate.
#[derive(Clone, Copy)]
pub enum Event {
    /// A TCP flow was created from a packet that is not a SYN.
    Pickup,
    /// A SYN on a closed flow's ports opened a new connection.
    Reused,
    /// A flow was found idle past its timeout and handled as gone.
    Stale,
}

#[inline(always)]
pub fn event(event: Event) {
    crate::probe::hit(lb_common::probe::STATS);
    let Some(c) = GLOBAL_STATS.get_ptr_mut(0) else {
        return;
    };
    let c: &mut GlobalCounters = unsafe { &mut *c };
    match event {
        Event::Pickup => c.pickups += 1,
        Event::Reused => c.reused += 1,
        Event::Stale => c.stale += 1,
    }
}

#[inline(always)]
fn add<const N: usize>(map: &PerCpuArray<Counters, N>, index: u32, bytes: u64, new_conn: bool) {
    crate::probe::hit(lb_common::probe::STATS);
    if let Some(c) = map.get_ptr_mut(index) {
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes;
        if new_conn {
            c.new_conns += 1;
        }
    }
}

/// Accounts one forwarded packet to its service and real server.
#[inline(always)]
pub fn forwarded(service_id: u32, real_id: u32, bytes: u64, new_conn: bool) {
    add(&SERVICE_STATS, service_id, bytes, new_conn);
    add(&REAL_STATS, real_id, bytes, new_conn);
}
