//! What the lab watches while the loads run, besides the wire: which
//! directors hold the VIP (`ip addr` in each namespace, polled), and the
//! Master agent's open descriptors (/proc, polled; the peak is what
//! exhausting its limit would show).

use super::figures::Holders;
use crate::{netns::run_bounded, procfs};
use std::{
    net::IpAddr,
    process::Command,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// How often each poller looks.
const VIP_POLL: Duration = Duration::from_millis(100);
const FD_POLL: Duration = Duration::from_millis(250);
/// Polls kept at most.
const MAX_POLLS: usize = 100_000;

/// Polls whether two namespaces (by name) hold `vip`.
pub struct VipHolders {
    polls: Arc<Mutex<Vec<Holders>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VipHolders {
    pub fn start(
        namespaces: [String; 2],
        vip: IpAddr,
        limit: Duration,
    ) -> std::io::Result<VipHolders> {
        let polls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (polls, stop) = (polls.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stress-vip".into())
                .spawn(move || {
                    let start = Instant::now();
                    while start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
                        let at = Instant::now();
                        let (a, b) = (holds(&namespaces[0], vip), holds(&namespaces[1], vip));
                        let mut p = polls.lock().unwrap_or_else(PoisonError::into_inner);
                        if p.len() >= MAX_POLLS {
                            return;
                        }
                        p.push((at, a, b));
                        drop(p);
                        std::thread::sleep(VIP_POLL.saturating_sub(at.elapsed()));
                    }
                })?
        };
        Ok(VipHolders {
            polls,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling: every poll.
    pub fn finish(mut self) -> Vec<Holders> {
        self.halt();
        std::mem::take(&mut *self.polls.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for VipHolders {
    fn drop(&mut self) {
        self.halt();
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
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakFds {
    pub fn start(pid: u32, limit: Duration) -> std::io::Result<PeakFds> {
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stress-fds".into())
                .spawn(move || {
                    let start = Instant::now();
                    while start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
                        if let Ok(n) = procfs::open_fds(pid) {
                            peak.fetch_max(n, Ordering::Relaxed);
                        }
                        std::thread::sleep(FD_POLL);
                    }
                })?
        };
        Ok(PeakFds {
            peak,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling: the peak.
    pub fn finish(mut self) -> usize {
        self.halt();
        self.peak.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PeakFds {
    fn drop(&mut self) {
        self.halt();
    }
}
