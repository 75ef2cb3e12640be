//! The XDP data plane's upkeep, on an OS thread of its own so that nothing
//! the agent's loop (and VRRP) does waits for it, and nothing it does waits
//! for them: the reclaimer ([`reclaim`]) passes over the flow table in
//! bounded batches, paced to a share of one CPU, a pass starting a period
//! after the previous one ended (never back to back), and publishes each
//! pass's [`Summary`](lb_common::upkeep::Summary) in the pinned `UPKEEP`
//! map. The agent learns of each pass over a watch channel ([`Report`]).
//!
//! Cost per pass (docs/ARCHITECTURE.md, "Upkeep"): one batch lookup per
//! `batch` flows and three syscalls per up to 2,048 expiries, whatever the
//! flows' traffic, and the other hash maps walked for their fill; a scrape
//! reads the summary, not the tables.

pub mod ops;
pub mod reclaim;

#[cfg(test)]
mod model;

use crate::dataplane::store::{Countable, Counted, PinnedMap};
use anyhow::Result;
use aya::{Pod, programs::ProgramFd};
use lb_common::{
    Affinity, FlowKey, IfaceInfo, ReplicaSet, ServiceAddr, ServiceInfo, ServiceKey, map_names,
    upkeep,
};
use ops::ProgramRunner;
use reclaim::{Maps, Pass, Reclaimer, Stopped};
use std::{
    ops::ControlFlow,
    path::Path,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tokio::sync::watch;
use tracing::{debug, warn};

/// How the reclaimer spends its time.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// From the end of one pass to the start of the next: with the pass's
    /// own length, the precision of idle counts and of freeing memory (a
    /// packet of an expired flow is handled as new at once, in XDP).
    pub period: Duration,
    /// Share of one CPU a pass may use: after each batch it pauses for the
    /// batch's time × (1 / share − 1).
    pub share: f64,
    /// Flow entries per batch.
    pub batch: usize,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            period: Duration::from_secs(2),
            share: 0.25,
            batch: 4096,
        }
    }
}

/// What the agent learns after each pass.
#[derive(Clone, Debug)]
pub struct Report {
    /// When the pass started: a real that began draining later may have
    /// flows the pass did not see.
    pub started: Instant,
    pub pass: Pass,
}

/// The running reclaimer; stopping it (or dropping it) ends the thread
/// between two batches and waits for it.
pub struct Upkeep {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Nanoseconds on the clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The reclaimer over the maps pinned in `pin_dir`, running ops with the
/// upkeep program `prog`.
pub fn pinned(pin_dir: &Path, prog: ProgramFd, batch: usize) -> Result<Reclaimer> {
    fn fill<K: Pod + 'static, V: Pod + 'static>(
        dir: &Path,
        name: &str,
    ) -> Result<Box<dyn Countable>> {
        Ok(Box::new(Counted::new(Box::new(PinnedMap::<K, V>::open(
            dir, name,
        )?))))
    }
    let maps = Maps {
        flows: Box::new(PinnedMap::open(pin_dir, map_names::CONNTRACK)?),
        conns: Box::new(PinnedMap::open(pin_dir, map_names::REAL_CONNS)?),
        settings: Box::new(PinnedMap::open(pin_dir, map_names::SETTINGS)?),
        summary: Box::new(PinnedMap::open(pin_dir, map_names::UPKEEP)?),
        fills: vec![
            (
                upkeep::FILL_NAT_REPLIES,
                fill::<FlowKey, FlowKey>(pin_dir, map_names::NAT_REPLIES)?,
            ),
            (
                upkeep::FILL_SERVICES,
                fill::<ServiceKey, ServiceInfo>(pin_dir, map_names::SERVICES)?,
            ),
            (
                upkeep::FILL_PERSIST,
                fill::<ServiceAddr, Affinity>(pin_dir, map_names::PERSIST)?,
            ),
            (
                upkeep::FILL_LBLC,
                fill::<ServiceAddr, Affinity>(pin_dir, map_names::LBLC)?,
            ),
            (
                upkeep::FILL_LBLCR,
                fill::<ServiceAddr, ReplicaSet>(pin_dir, map_names::LBLCR)?,
            ),
            (
                upkeep::FILL_IFACES,
                fill::<u32, IfaceInfo>(pin_dir, map_names::IFACES)?,
            ),
        ],
    };
    let ops = Box::new(ProgramRunner::new(prog, pin_dir)?);
    Reclaimer::new(maps, ops, Box::new(monotonic_ns), batch)
}

impl Upkeep {
    /// Starts `reclaimer` on its own thread, paced by `pacing`; each pass's
    /// report comes on the receiver (the latest one; `None` before the first).
    pub fn start(
        mut reclaimer: Reclaimer,
        pacing: Pacing,
    ) -> Result<(Upkeep, watch::Receiver<Option<Report>>)> {
        let (tx, rx) = watch::channel(None);
        let (stop, stopped) = mpsc::channel::<()>();
        // Sleeps `d` unless told to stop (a message, or the handle gone).
        let wait = move |d: Duration| match stopped.recv_timeout(d) {
            Err(mpsc::RecvTimeoutError::Timeout) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        };
        let rest = (1.0 / pacing.share.clamp(0.01, 1.0)) - 1.0;
        let thread = std::thread::Builder::new()
            .name("xlb-upkeep".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let started = Instant::now();
                    let mut pace = |work: Duration| wait(work.mul_f64(rest));
                    match reclaimer.pass(&mut pace) {
                        Ok(pass) => {
                            failing = false;
                            log_pass(&pass, started.elapsed());
                            tx.send_replace(Some(Report { started, pass }));
                        }
                        Err(e) if e.is::<Stopped>() => return,
                        // Once per run of failures: a pass every period would flood the log.
                        Err(e) if !failing => {
                            failing = true;
                            warn!(error = %crate::logging::chain(&e), "flow table upkeep failed; will retry every pass");
                        }
                        Err(_) => {}
                    }
                    if wait(pacing.period).is_break() {
                        return;
                    }
                }
            })?;
        Ok((
            Upkeep {
                stop: Some(stop),
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Ends the thread (between two batches) and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.halt();
    }
}

fn log_pass(pass: &Pass, took: Duration) {
    let flows = pass.summary.flows();
    if pass.expired > 0 {
        debug!(
            expired = pass.expired,
            flows,
            took_ms = took.as_millis() as u64,
            "idle flows expired"
        );
    }
    if pass.evicted > 0 {
        warn!(
            evicted = pass.evicted,
            flows,
            "flow table full: the LRU evicted the least recently used flows (a SYN flood, or conntrack_size too small)"
        );
    }
}
