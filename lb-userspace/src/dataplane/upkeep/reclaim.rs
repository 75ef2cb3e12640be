//! One pass of the reclaimer over the flow table, written against the
//! map-store port so it runs the same on pinned maps and in memory.
//!
//! A pass walks `CONNTRACK` in batches. Entries idle past their timeout
//! are handed to the upkeep program, which claims, uncounts and deletes
//! them (and their NAT reply entries); the others are tallied by state and
//! real. What a real counted when the walk began, less what the walk saw
//! and less every connection that left the count during the walk (closed,
//! moved, reaped: `RealConns::left`, read before and after), the LRU
//! evicted: the program subtracts it. That bound never takes a flow that
//! ended or moved during the walk for an evicted one, however busy the
//! director is; what it misses under churn the next passes find. Then the
//! other hash maps are walked for their fill (`NAT_REPLIES`, and the maps
//! the config bounds) and the [`Summary`] published in `UPKEEP`. A pass that fails half-way publishes nothing and corrects no
//! count (its tallies are incomplete); what it reaped stays reaped and is
//! reported by the next pass.

use super::ops::OpRunner;
use crate::dataplane::store::{Countable, Cursor, MapStore};
use anyhow::{Context, Result};
use lb_common::{
    ConnCounts, FlowKey, FlowState, RealConns, Settings, conn,
    upkeep::{self, Op, Summary},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    ops::ControlFlow,
    time::{Duration, Instant},
};

/// The maps a pass reads and writes.
pub struct Maps {
    pub flows: Box<dyn MapStore<FlowKey, FlowState>>,
    pub conns: Box<dyn MapStore<u32, RealConns>>,
    pub settings: Box<dyn MapStore<u32, Settings>>,
    pub summary: Box<dyn MapStore<u32, Summary>>,
    /// The other hash maps whose fill the summary reports, by `FILL_*` index.
    pub fills: Vec<(u32, Box<dyn Countable>)>,
}

/// What one pass found, for the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// As published in `UPKEEP`.
    pub summary: Summary,
    /// Reals that flows in the table go to (the agent frees draining reals
    /// that are not among them).
    pub reals_with_flows: BTreeSet<u32>,
    /// Flows this pass deleted after their timeout.
    pub expired: u64,
    /// Connections this pass found evicted.
    pub evicted: u64,
}

/// The pass was stopped between two batches (the agent is stopping).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Stopped {}

pub struct Reclaimer {
    maps: Maps,
    ops: Box<dyn OpRunner>,
    /// CLOCK_MONOTONIC in ns (the clock of `bpf_ktime_get_ns`).
    clock: Box<dyn Fn() -> u64 + Send>,
    /// Flow entries per batch.
    batch: usize,
    /// Totals across passes, carried from the summary found at start.
    passes: u64,
    expired: u64,
    evicted: u64,
}

/// Tallies of a walk.
#[derive(Default)]
struct Tally {
    /// Per real: its counts before the walk.
    before: BTreeMap<u32, RealConns>,
    states: [u64; conn::STATES],
    /// Per real: live connections seen in the table.
    seen: BTreeMap<u32, ConnCounts>,
    reals: BTreeSet<u32>,
    /// Entries walked, and how many of them the program deleted.
    walked: u64,
    expired: u64,
}

fn add(counts: &mut BTreeMap<u32, ConnCounts>, real: u32, state: u32) {
    if !conn::is_counted(state) {
        return;
    }
    let c = counts.entry(real).or_default();
    if conn::is_active(state) {
        c.active += 1;
    } else {
        c.inactive += 1;
    }
}

impl Tally {
    fn live(&mut self, real: u32, state: u32) {
        self.states[(state as usize).min(conn::STATES - 1)] += 1;
        self.reals.insert(real);
        add(&mut self.seen, real, state);
    }
}

/// How many of the connections a real counted when the walk began
/// (`before`) the LRU evicted, per class: those neither `seen` in the table
/// nor among what `left` the count while the walk ran (the director's
/// closes and moves, the program's expiries; a flow that left before the
/// walk reached it is in there, one that left after was seen, so the bound
/// is low, never high). A count that wrapped below zero is left alone.
pub fn evicted(before: ConnCounts, seen: ConnCounts, left: ConnCounts) -> ConnCounts {
    const WRAPPED: u64 = 1 << 63;
    if before.active >= WRAPPED || before.inactive >= WRAPPED {
        return ConnCounts::default();
    }
    ConnCounts {
        active: before
            .active
            .saturating_sub(seen.active)
            .saturating_sub(left.active),
        inactive: before
            .inactive
            .saturating_sub(seen.inactive)
            .saturating_sub(left.inactive),
    }
}

impl Reclaimer {
    /// A reclaimer over `maps`, running ops with `ops`, reading time from
    /// `clock`, `batch` flow entries at a time. Totals continue from the
    /// summary the maps hold (an adopted data plane keeps counting).
    pub fn new(
        maps: Maps,
        ops: Box<dyn OpRunner>,
        clock: Box<dyn Fn() -> u64 + Send>,
        batch: usize,
    ) -> Result<Reclaimer> {
        let previous = maps
            .summary
            .get(&0)
            .context("reading UPKEEP")?
            .unwrap_or_default();
        Ok(Reclaimer {
            maps,
            ops,
            clock,
            batch: batch.max(1),
            passes: previous.passes,
            expired: previous.expired,
            evicted: previous.evicted,
        })
    }

    /// One pass. `pace` is told how long each batch worked and may pause
    /// (or stop the pass, [`Stopped`]).
    pub fn pass(&mut self, pace: &mut dyn FnMut(Duration) -> ControlFlow<()>) -> Result<Pass> {
        let started_ns = (self.clock)();
        let mut tally = Tally::default();
        let result = self.walk(&mut tally, pace);
        // Reaped flows stay reaped whatever happens next: count them.
        self.expired += tally.expired;
        result?;
        let mut entries = [0; upkeep::FILLS];
        entries[upkeep::FILL_CONNTRACK as usize] = tally.walked - tally.expired;
        for (fill, map) in &self.maps.fills {
            entries[*fill as usize] = map.count(pace).map_err(|e| {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    anyhow::Error::new(Stopped)
                } else {
                    anyhow::Error::new(e)
                        .context(format!("walking {}", upkeep::FILL_MAPS[*fill as usize]))
                }
            })?;
        }
        let evicted = self.correct_evictions(&tally)?;
        self.evicted += evicted;
        self.passes += 1;
        let summary = Summary {
            passes: self.passes,
            pass_started_ns: started_ns,
            pass_ns: (self.clock)().saturating_sub(started_ns),
            states: tally.states,
            expired: self.expired,
            evicted: self.evicted,
            entries,
        };
        self.maps
            .summary
            .put(&0, &summary)
            .context("writing UPKEEP")?;
        Ok(Pass {
            summary,
            reals_with_flows: tally.reals,
            expired: tally.expired,
            evicted,
        })
    }

    /// Walks `CONNTRACK`, reaping what expired and tallying the rest.
    fn walk(
        &mut self,
        tally: &mut Tally,
        pace: &mut dyn FnMut(Duration) -> ControlFlow<()>,
    ) -> Result<()> {
        let settings = self
            .maps
            .settings
            .get(&0)
            .context("reading SETTINGS")?
            .unwrap_or_default();
        tally.before = self.counts()?;
        let mut cursor = Cursor::start();
        let mut batch = Vec::with_capacity(self.batch);
        let mut doomed = Vec::new();
        while !cursor.done() {
            let work = Instant::now();
            batch.clear();
            self.maps
                .flows
                .lookup_batch(&mut cursor, self.batch, &mut batch)
                .context("walking CONNTRACK")?;
            let now = (self.clock)();
            for (key, value) in &batch {
                tally.walked += 1;
                let state = value.state as u32;
                if conn::expired(state, value.seen_ns, now, &settings) {
                    doomed.push(Op {
                        kind: upkeep::OP_REAP,
                        flow: *key,
                        ..Op::default()
                    });
                } else if state != conn::RELEASED {
                    tally.live(value.real_id, state);
                }
            }
            for chunk in doomed.chunks_mut(upkeep::MAX_OPS as usize) {
                self.ops.run(chunk).context("expiring flows")?;
                for op in chunk.iter() {
                    match op.outcome {
                        upkeep::REAPED => tally.expired += 1,
                        upkeep::ALIVE => tally.live(op.target, op.state),
                        _ => {}
                    }
                }
            }
            doomed.clear();
            if pace(work.elapsed()).is_break() {
                return Err(Stopped.into());
            }
        }
        Ok(())
    }

    /// Every real's counts (`REAL_CONNS`) that ever counted, by real id.
    fn counts(&self) -> Result<BTreeMap<u32, RealConns>> {
        let mut all = Vec::new();
        let mut cursor = Cursor::start();
        while !cursor.done() {
            self.maps
                .conns
                .lookup_batch(&mut cursor, 4096, &mut all)
                .context("reading REAL_CONNS")?;
        }
        Ok(all
            .into_iter()
            .filter(|(_, c)| *c != RealConns::default())
            .collect())
    }

    /// Subtracts, per real, what it counts but the table no longer holds;
    /// returns how many connections that was.
    fn correct_evictions(&mut self, tally: &Tally) -> Result<u64> {
        let after = self.counts()?;
        let mut ops = Vec::new();
        let mut total = 0;
        for (&real, &before) in &tally.before {
            let seen = tally.seen.get(&real).copied().unwrap_or_default();
            let now = after.get(&real).copied().unwrap_or(before);
            let left = ConnCounts {
                active: now.left.active.wrapping_sub(before.left.active),
                inactive: now.left.inactive.wrapping_sub(before.left.inactive),
            };
            let lost = evicted(before.live, seen, left);
            if lost != ConnCounts::default() {
                total += lost.active + lost.inactive;
                ops.push(Op {
                    kind: upkeep::OP_UNCOUNT,
                    target: real,
                    counts: lost,
                    ..Op::default()
                });
            }
        }
        for chunk in ops.chunks_mut(upkeep::MAX_OPS as usize) {
            self.ops.run(chunk).context("uncounting evicted flows")?;
        }
        Ok(total)
    }
}
