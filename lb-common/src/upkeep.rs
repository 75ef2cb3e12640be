//! The data plane's upkeep, shared by the upkeep program (`lb-ebpf`,
//! [`super::PROG_UPKEEP`]) and the agent's reclaimer (`lb-userspace`,
//! `dataplane/upkeep/`).
//!
//! The reclaimer walks `CONNTRACK` in bounded batches on a thread of its
//! own. Everything that changes a connection count it hands to the upkeep
//! program as a list of [`Op`]s in `UPKEEP_OPS`, run with
//! BPF_PROG_TEST_RUN: the program claims an expired flow with the same
//! compare-and-swap the director uses, so a flow is uncounted exactly once
//! whichever side ends it, and `REAL_CONNS` stays the one live count. What
//! a pass found goes to `UPKEEP` as a [`Summary`], which `xlb status`, the
//! dumps and the metrics read instead of walking the table.

use super::{ConnCounts, FlowKey, conn};

/// Ops per run: the size of `UPKEEP_OPS`, and so of one batch of expiries.
pub const MAX_OPS: u32 = 2048;

/// [`Op::kind`]: delete `flow` if it is idle past its state's timeout by
/// the program's clock: uncount it (exactly once, as the director's
/// `release`), delete its NAT reply entry (if no new flow took its ports
/// meanwhile), delete the entry. [`Op::outcome`] says which happened.
pub const OP_REAP: u32 = 1;
/// [`Op::kind`]: subtract [`Op::counts`] from real [`Op::target`]'s
/// `REAL_CONNS` (connections counted but evicted from the table by the LRU).
pub const OP_UNCOUNT: u32 = 2;

/// The frame the program runs on: the number of ops (`u32`), padded.
pub const RUN_FRAME: usize = 64;

/// [`Op::outcome`] of a reap: no entry (or another CPU already claimed it).
pub const GONE: u32 = 0;
/// [`Op::outcome`] of a reap: the flow was used again before the program
/// ran; [`Op::state`] and [`Op::target`] are its state and real now.
pub const ALIVE: u32 = 1;
/// [`Op::outcome`] of a reap: deleted and uncounted; [`Op::state`] and
/// [`Op::target`] are the state and real it was counted under.
pub const REAPED: u32 = 2;
/// [`Op::outcome`] of `OP_UNCOUNT`: done.
pub const DONE: u32 = 3;

/// `FILL_*`: the hash maps whose fill a pass reports (counted by walking
/// them), as indices of [`Summary::entries`].
pub const FILL_SERVICES: u32 = 0;
pub const FILL_CONNTRACK: u32 = 1;
pub const FILL_NAT_REPLIES: u32 = 2;
pub const FILL_PERSIST: u32 = 3;
pub const FILL_LBLC: u32 = 4;
pub const FILL_LBLCR: u32 = 5;
pub const FILL_IFACES: u32 = 6;
pub const FILLS: usize = 7;
/// The map of each `FILL_*` index.
pub const FILL_MAPS: [&str; FILLS] = [
    super::map_names::SERVICES,
    super::map_names::CONNTRACK,
    super::map_names::NAT_REPLIES,
    super::map_names::PERSIST,
    super::map_names::LBLC,
    super::map_names::LBLCR,
    super::map_names::IFACES,
];

/// Value of `UPKEEP_OPS`: one piece of work for the upkeep program, and
/// what it did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Op {
    /// `OP_*`.
    pub kind: u32,
    /// Written by the program: `GONE`, `ALIVE`, `REAPED` or `DONE`.
    pub outcome: u32,
    /// The real (`OP_UNCOUNT`; written back by `OP_REAP`).
    pub target: u32,
    /// Written back by `OP_REAP`: the flow's `conn::*` state.
    pub state: u32,
    /// `OP_UNCOUNT`: the connections to subtract.
    pub counts: ConnCounts,
    /// `OP_REAP`: the flow.
    pub flow: FlowKey,
}

/// Value of `UPKEEP` (one entry), written by the reclaimer after each pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Passes completed since the maps were created.
    pub passes: u64,
    /// CLOCK_MONOTONIC (`bpf_ktime_get_ns`) when the last pass started.
    pub pass_started_ns: u64,
    /// How long the last pass took, pauses included.
    pub pass_ns: u64,
    /// Flows the last pass found in the table and not expired, by
    /// `conn::*` state.
    pub states: [u64; conn::STATES],
    /// Flows the reclaimer deleted after their idle timeout, in all passes.
    pub expired: u64,
    /// Connections found counted but gone from the table (evicted by the
    /// LRU when it was full), in all passes.
    pub evicted: u64,
    /// Entries of each `FILL_*` map as the last pass counted them.
    pub entries: [u64; FILLS],
}

impl Summary {
    /// Flows in the table at the last pass, whatever their state.
    pub fn flows(&self) -> u64 {
        self.states.iter().sum()
    }
}

const _: () = assert!(size_of::<Op>() == 72 && align_of::<Op>() == 8);
const _: () = assert!(size_of::<Summary>() == 200 && align_of::<Summary>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, no implicit padding (sizes checked above).
    unsafe impl aya::Pod for super::Op {}
    unsafe impl aya::Pod for super::Summary {}
}
