//! Flow table and connection accounting. A flow stays on the real server it
//! was first sent to while that real is usable; its IPVS-style state decides
//! whether it counts as an active or inactive connection of that real, and
//! how long it may stay idle before the agent expires it.

use crate::maps::{CONNTRACK, REAL_CONNS, SETTINGS};
// The BPF target declares no atomic types, but BPF has atomic add, exchange
// and compare-exchange instructions (cpu v3); the intrinsics emit them.
use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg, atomic_xadd, atomic_xchg};
use lb_common::{FlowKey, FlowState, PROTO_UDP, SETTINGS_F_NODEST_EXPIRE, conn};

/// The entry of `flow`, whichever service it was recorded for.
#[inline(always)]
pub fn lookup(flow: &FlowKey) -> Option<*mut FlowState> {
    CONNTRACK.get_ptr_mut(flow)
}

/// Adds `delta` (wrapping) to the real's active or inactive count.
#[inline(always)]
fn count(real_id: u32, state: u32, delta: u64) {
    let Some(c) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    // SAFETY: the map value lives as long as the map; atomics make the
    // read-modify-write safe against other CPUs.
    let field = unsafe {
        if conn::is_active(state) {
            &raw mut (*c).active
        } else {
            &raw mut (*c).inactive
        }
    };
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(field, delta) };
}

/// The state a new flow starts in, given its first packet.
#[inline(always)]
fn first_state(proto: u8, tcp_flags: u8) -> u32 {
    if proto == PROTO_UDP {
        conn::UDP
    } else {
        conn::tcp_next(conn::NONE, tcp_flags)
    }
}

/// Records that `flow` goes to `real_id` and counts it. Returns false if the map refused it.
#[inline(always)]
pub fn record(flow: &FlowKey, service_id: u32, real_id: u32, tcp_flags: u8, now: u64) -> bool {
    let state = first_state(flow.proto, tcp_flags);
    let entry = FlowState {
        real_id,
        service_id,
        created_ns: now,
        seen_ns: now,
        state: state as u64,
    };
    if CONNTRACK.insert(flow, entry, 0).is_err() {
        return false;
    }
    count(real_id, state, 1);
    true
}

/// A client packet of a known flow: moves its TCP state (and the real's
/// counts, exactly once however many CPUs race) and refreshes its timer.
#[inline(always)]
pub fn client_packet(entry: *mut FlowState, proto: u8, tcp_flags: u8, now: u64) {
    // SAFETY: `entry` points into the map (from `lookup`).
    unsafe { (*entry).seen_ns = now };
    if proto == PROTO_UDP {
        return;
    }
    let state = unsafe { &raw mut (*entry).state };
    let old = unsafe { core::ptr::read_volatile(state) } as u32;
    let new = conn::tcp_next(old, tcp_flags);
    if new != old
        && unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(state, old as u64, new as u64) }.1
        && conn::is_active(old) != conn::is_active(new)
    {
        let real_id = unsafe { (*entry).real_id };
        count(real_id, old, u64::MAX);
        count(real_id, new, 1);
    }
}

/// A reply from the real server (NAT): only refreshes the timer.
#[inline(always)]
pub fn reply_packet(entry: *mut FlowState, now: u64) {
    unsafe { (*entry).seen_ns = now };
}

/// Uncounts a flow whose entry is about to be replaced (its real went away).
#[inline(always)]
pub fn release(entry: *mut FlowState) {
    let state = unsafe { &raw mut (*entry).state };
    let old = unsafe { atomic_xchg::<u64, { Relaxed }>(state, conn::RELEASED as u64) } as u32;
    // Only the CPU that swapped a counted state out uncounts it.
    if old != conn::RELEASED {
        count(unsafe { (*entry).real_id }, old, u64::MAX);
    }
}

/// Whether a flow whose real left its service ends at its next packet
/// (nodest policy `expire`) rather than being scheduled anew.
#[inline(always)]
pub fn expire_nodest() -> bool {
    SETTINGS
        .get(0)
        .is_some_and(|s| s.flags & SETTINGS_F_NODEST_EXPIRE != 0)
}

/// Uncounts and deletes a flow (nodest `expire`), so the client's next
/// connection from the same port is scheduled anew.
#[inline(always)]
pub fn forget(flow: &FlowKey, entry: *mut FlowState) {
    release(entry);
    let _ = CONNTRACK.remove(flow);
}
