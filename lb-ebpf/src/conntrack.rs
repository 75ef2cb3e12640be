//! Flow table and connection accounting. A flow stays on the real server it
//! was first sent to while that real is usable and the flow is live; its
//! IPVS-style state decides whether it counts as an active or inactive
//! connection of that real (or, a pickup, as none), and how long it may
//! stay idle. An entry idle past its timeout is gone for the director as it
//! would be for IPVS, whether or not the agent's reclaimer has deleted it.
//!
//! Whoever ends a counted flow — a packet that finds it stale or moves it,
//! the nodest policy, the upkeep program — first swaps its state to
//! `RELEASED` atomically, so exactly one of them uncounts it.

use crate::maps::{CONNTRACK, REAL_CONNS};
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
// The BPF target declares no atomic types, but BPF has atomic add, exchange
// and compare-exchange instructions (cpu v3); the intrinsics emit them.
use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg, atomic_xadd, atomic_xchg};
use lb_common::{
    FlowKey, FlowState, PROTO_UDP, SETTINGS_F_NODEST_EXPIRE, Settings,
    conn::{self, Dir},
};

/// The time flows are stamped and judged with: the coarse monotonic clock
/// (CLOCK_MONOTONIC_COARSE, behind CLOCK_MONOTONIC by at most a tick). Half
/// the cost of `bpf_ktime_get_ns` on every packet of a service, and timeouts
/// are whole seconds: a tick early or late does not matter. The agent's
/// reclaimer and the upkeep program judge with the fine clock; an entry looks
/// at most a tick older to them.
#[inline(always)]
pub fn now() -> u64 {
    crate::probe::hit(lb_common::probe::KTIME_COARSE);
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The entry of `flow`, whichever service it was recorded for.
#[inline(always)]
pub fn lookup(flow: &FlowKey) -> Option<*mut FlowState> {
    crate::probe::hit(lb_common::probe::CONNTRACK);
    CONNTRACK.get_ptr_mut(flow)
}

/// Adds `delta` (wrapping: `u64::MAX` takes one away) to the real's active
/// or inactive count, and a connection taken away to what left that class;
/// a state that counts as no connection adds nothing.
#[inline(always)]
pub fn count(real_id: u32, state: u32, delta: u64) {
    if !conn::is_counted(state) {
        return;
    }
    crate::probe::hit(lb_common::probe::REAL_CONNS);
    let Some(c) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    // SAFETY: the map value lives as long as the map; atomics make the
    // read-modify-write safe against other CPUs.
    let (live, left) = unsafe {
        if conn::is_active(state) {
            (&raw mut (*c).live.active, &raw mut (*c).left.active)
        } else {
            (&raw mut (*c).live.inactive, &raw mut (*c).left.inactive)
        }
    };
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(live, delta) };
    if delta == u64::MAX {
        unsafe { atomic_xadd::<u64, u64, { Relaxed }>(left, 1) };
    }
}

/// The entry's state as stored now.
#[inline(always)]
pub fn state_of(entry: *mut FlowState) -> u32 {
    // SAFETY: `entry` points into the map; other CPUs change it atomically.
    (unsafe { core::ptr::read_volatile(&raw const (*entry).state) }) as u32
}

/// Whether the entry still stands for a flow at `now`: nobody has claimed
/// it and it is not idle past its state's timeout.
#[inline(always)]
pub fn live(entry: *mut FlowState, now: u64, settings: &Settings) -> bool {
    let state = state_of(entry);
    // SAFETY: as above.
    let seen = unsafe { (*entry).seen_ns };
    state != conn::RELEASED && !conn::expired(state, seen, now, settings)
}

/// Records that `flow` goes to `real_id` in `state` (`conn::first`) and
/// counts it. Returns false if the map refused it.
#[inline(always)]
pub fn record(flow: &FlowKey, service_id: u32, real_id: u32, state: u32, now: u64) -> bool {
    let entry = FlowState {
        real_id,
        service_id,
        created_ns: now,
        seen_ns: now,
        state: state as u64,
    };
    crate::probe::hit(lb_common::probe::CONNTRACK_UPDATE);
    if CONNTRACK.insert(flow, entry, 0).is_err() {
        return false;
    }
    count(real_id, state, 1);
    true
}

/// Moves the entry from `old` to `new` with compare-and-swap and, if this
/// CPU made the move, moves the real's counts with it.
#[inline(always)]
fn transition(entry: *mut FlowState, old: u32, new: u32) {
    if new == old || old == conn::RELEASED {
        return;
    }
    let state = unsafe { &raw mut (*entry).state };
    let moved =
        unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(state, old as u64, new as u64) }.1;
    if moved
        && (conn::is_counted(old) != conn::is_counted(new)
            || conn::is_active(old) != conn::is_active(new))
    {
        let real_id = unsafe { (*entry).real_id };
        count(real_id, old, u64::MAX);
        count(real_id, new, 1);
    }
}

/// A client packet of a live flow: moves its TCP state by `dir`'s table
/// (and the real's counts, exactly once however many CPUs race) and
/// refreshes its timer.
#[inline(always)]
pub fn client_packet(entry: *mut FlowState, proto: u8, tcp_flags: u8, dir: Dir, now: u64) {
    // SAFETY: `entry` points into the map (from `lookup`).
    unsafe { (*entry).seen_ns = now };
    if proto == PROTO_UDP {
        return;
    }
    let old = state_of(entry);
    transition(entry, old, conn::tcp_next(old, tcp_flags, dir));
}

/// A reply from the real server (NAT) to a live flow: moves its TCP state
/// by IPVS's OUTPUT table (a pickup proves itself) and refreshes its timer.
#[inline(always)]
pub fn reply_packet(entry: *mut FlowState, proto: u8, tcp_flags: u8, now: u64) {
    unsafe { (*entry).seen_ns = now };
    if proto == PROTO_UDP {
        return;
    }
    let old = state_of(entry);
    transition(entry, old, conn::reply_next(old, tcp_flags));
}

/// Claims an entry that is about to be replaced or deleted: swaps its state
/// to `RELEASED` and uncounts what it was. Only the first claim uncounts;
/// returns the state it held, `RELEASED` if someone claimed it before.
#[inline(always)]
pub fn release(entry: *mut FlowState) -> u32 {
    let state = unsafe { &raw mut (*entry).state };
    let old = unsafe { atomic_xchg::<u64, { Relaxed }>(state, conn::RELEASED as u64) } as u32;
    if old != conn::RELEASED {
        count(unsafe { (*entry).real_id }, old, u64::MAX);
    }
    old
}

/// Whether a flow whose real left its service ends at its next packet
/// (nodest policy `expire`) rather than being scheduled anew.
#[inline(always)]
pub fn expire_nodest(settings: &Settings) -> bool {
    settings.flags & SETTINGS_F_NODEST_EXPIRE != 0
}

/// Uncounts and deletes a flow (nodest `expire`), so the client's next
/// connection from the same port is scheduled anew.
#[inline(always)]
pub fn forget(flow: &FlowKey, entry: *mut FlowState) {
    release(entry);
    crate::probe::hit(lb_common::probe::CONNTRACK_UPDATE);
    let _ = CONNTRACK.remove(flow);
}
