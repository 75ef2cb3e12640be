//! `xlb_upkeep`: the agent's reclaimer runs this program (never attached)
//! through BPF_PROG_TEST_RUN on a list of ops in `UPKEEP_OPS`, the first 4
//! bytes of the frame saying how many. Doing the work here rather than with
//! map syscalls keeps every change to a flow's count behind the director's
//! own compare-and-swap, so a flow the director and the reclaimer end at
//! the same moment is uncounted once (`lb_common::upkeep`).

use crate::{
    conntrack,
    maps::{CONNTRACK, NAT_REPLIES, REAL_CONNS, REALS, SETTINGS, UPKEEP_OPS},
    sched::each::{Step, each},
};
use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg, atomic_xadd};
use lb_common::{Settings, conn, method, upkeep};

#[xdp]
pub fn xlb_upkeep(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + 4 > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: bounds-checked just above.
    let n = unsafe { core::ptr::read_unaligned(data as *const u32) };
    let Some(settings) = SETTINGS.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let mut run = Run {
        now: unsafe { bpf_ktime_get_ns() },
        settings: *settings,
    };
    each(n.min(upkeep::MAX_OPS), &mut run);
    xdp_action::XDP_DROP
}

struct Run {
    now: u64,
    settings: Settings,
}

impl Step for Run {
    fn step(&mut self, i: u32) -> bool {
        let Some(op) = UPKEEP_OPS.get_ptr_mut(i) else {
            return true;
        };
        // SAFETY: the array's value; only the reclaimer's runs use this map,
        // one at a time.
        let op = unsafe { &mut *op };
        match op.kind {
            upkeep::OP_REAP => reap(op, self.now, &self.settings),
            upkeep::OP_UNCOUNT => {
                uncount(op.target, op.counts.active, op.counts.inactive);
                op.outcome = upkeep::DONE;
            }
            _ => op.outcome = upkeep::DONE,
        }
        false
    }
}

/// Deletes `op.flow` if it expired: claimed from whatever the director may
/// be doing with it at the same time, uncounted, its NAT reply entry and
/// its entry removed. An entry left claimed (`RELEASED`) is only deleted.
#[inline(always)]
fn reap(op: &mut upkeep::Op, now: u64, settings: &Settings) {
    let Some(entry) = CONNTRACK.get_ptr_mut(op.flow) else {
        op.outcome = upkeep::GONE;
        return;
    };
    let state = conntrack::state_of(entry);
    // SAFETY: `entry` points into the flow table.
    let (seen, real_id, service_id) =
        unsafe { ((*entry).seen_ns, (*entry).real_id, (*entry).service_id) };
    op.state = state;
    op.target = real_id;
    let expired = conn::expired(state, seen, now, settings);
    if state == conn::RELEASED {
        // Claimed and uncounted by someone who left it (a packet dropped
        // after its flow was released): gone, once it idled out.
        if expired {
            let _ = CONNTRACK.remove(op.flow);
            op.outcome = upkeep::REAPED;
        } else {
            op.outcome = upkeep::GONE;
        }
        return;
    }
    if !expired {
        op.outcome = upkeep::ALIVE;
        return;
    }
    // The director's claim (conntrack::release), conditional: a packet that
    // moved the state meanwhile keeps the flow.
    let field = unsafe { &raw mut (*entry).state };
    let (old, claimed) = unsafe {
        atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(field, state as u64, conn::RELEASED as u64)
    };
    if !claimed {
        op.state = old as u32;
        op.outcome = if old as u32 == conn::RELEASED {
            upkeep::GONE
        } else {
            upkeep::ALIVE
        };
        return;
    }
    conntrack::count(real_id, state, u64::MAX);
    let reply = REALS
        .get(real_id)
        .filter(|r| r.method == method::NAT && r.service_id == service_id)
        .map(|r| op.flow.nat_reply(r));
    let _ = CONNTRACK.remove(op.flow);
    // A new flow on the same ports since the removal owns the reply entry now.
    if let Some(reply) = reply
        && CONNTRACK.get_ptr(op.flow).is_none()
    {
        let _ = NAT_REPLIES.remove(reply);
    }
    op.outcome = upkeep::REAPED;
}

/// Subtracts evicted connections from a real's counts, never below zero
/// (a flow the director uncounted in between must not wrap it).
#[inline(always)]
fn uncount(real_id: u32, active: u64, inactive: u64) {
    let Some(c) = REAL_CONNS.get_ptr_mut(real_id) else {
        return;
    };
    let fields = unsafe {
        [
            (&raw mut (*c).live.active, &raw mut (*c).left.active, active),
            (
                &raw mut (*c).live.inactive,
                &raw mut (*c).left.inactive,
                inactive,
            ),
        ]
    };
    for (field, left, take) in fields {
        if take == 0 {
            continue;
        }
        // A compare-and-swap retried a few times, then a plain atomic
        // subtraction of what is certainly there.
        let mut done = false;
        for _ in 0..4 {
            let now = unsafe { core::ptr::read_volatile(field) };
            let new = now.saturating_sub(take);
            if unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(field, now, new) }.1 {
                done = true;
                break;
            }
        }
        if !done {
            let now = unsafe { core::ptr::read_volatile(field) };
            unsafe { atomic_xadd::<u64, u64, { Relaxed }>(field, take.min(now).wrapping_neg()) };
        }
        unsafe { atomic_xadd::<u64, u64, { Relaxed }>(left, take) };
    }
}
