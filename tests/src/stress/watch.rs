//! What the lab watches while the loads run, besides the wire: which
//! directors hold the VIP (`ip addr` in each namespace, polled), and the
//! Master agent's open descriptors (/proc, polled; the peak is what
//! exhausting its limit would show).

use super::figures::Holders;
use crate::{netns::run_bounded, procfs, worker::Worker};
use anyhow::Result;
use std::{
    net::IpAddr,
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// How often each poller looks.
const VIP_POLL: Duration = Duration::from_millis(100);
const FD_POLL: Duration = Duration::from_millis(250);
/// Polls kept at most.
const MAX_POLLS: usize = 100_000;

/// Polls whether two namespaces (by name) hold `vip`.
pub struct VipHolders {
    worker: Worker<Vec<Holders>>,
}

impl VipHolders {
    pub fn start(namespaces: [String; 2], vip: IpAddr, limit: Duration) -> Result<VipHolders> {
        let worker = Worker::spawn("stress-vip", move |stop| {
            let start = Instant::now();
            let mut polls = Vec::new();
            while start.elapsed() < limit
                && !stop.load(Ordering::Relaxed)
                && polls.len() < MAX_POLLS
            {
                let at = Instant::now();
                polls.push((at, holds(&namespaces[0], vip), holds(&namespaces[1], vip)));
                std::thread::sleep(VIP_POLL.saturating_sub(at.elapsed()));
            }
            polls
        })?;
        Ok(VipHolders { worker })
    }

    /// Stops polling: every poll.
    pub fn finish(self) -> Result<Vec<Holders>> {
        self.worker.finish()
    }
}

/// Whether `vip` is on `eth0` in the namespace named `ns`.
fn holds(ns: &str, vip: IpAddr) -> bool {
    let mut ip = Command::new("ip");
    ip.args(["-n", ns, "-o", "addr", "show", "dev", "eth0"]);
    run_bounded(&mut ip, Duration::from_secs(10))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {vip}/")))
}

/// The largest number of descriptors a process had open.
pub struct PeakFds {
    worker: Worker<usize>,
}

impl PeakFds {
    pub fn start(pid: u32, limit: Duration) -> Result<PeakFds> {
        let worker = Worker::spawn("stress-fds", move |stop| {
            let start = Instant::now();
            let mut peak = 0;
            while start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
                if let Ok(n) = procfs::open_fds(pid) {
                    peak = peak.max(n);
                }
                std::thread::sleep(FD_POLL);
            }
            peak
        })?;
        Ok(PeakFds { worker })
    }

    /// Stops polling: the peak.
    pub fn finish(self) -> Result<usize> {
        self.worker.finish()
    }
}
