//! Load on the agent's metrics endpoint, as monitoring gone wrong makes it:
//! scrapers that each ask again as soon as an answer comes, and idle
//! connections that are opened and never send a byte. Each scrape is timed
//! (connect to the last byte), so the same scrapers are the lab's scrape
//! latency figure; with one scraper and a pause it is a light probe.

use crate::{netns::Netns, scrape};
use anyhow::{Context, Result};
use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Scrapes recorded at most, over all scrapers.
const MAX_SAMPLES: usize = 1_000_000;

/// One scrape: when it started, how long it took, whether a whole `200 OK`
/// came back (a failed one took at least its timeout, or was refused).
#[derive(Clone, Copy, Debug)]
pub struct Scrape {
    pub at: Instant,
    pub took: Duration,
    pub ok: bool,
}

pub struct Scrapers {
    samples: Arc<Mutex<Vec<Scrape>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Scrapers {
    /// `n` scrapers in `ns` asking `addr`, each pausing `pause` between its
    /// scrapes, each scrape bounded by `timeout` (connect, and every read);
    /// they stop by themselves after `limit`.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        n: usize,
        pause: Duration,
        timeout: Duration,
        limit: Duration,
    ) -> Result<Scrapers> {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut scrapers = Scrapers {
            samples,
            stop,
            threads: Vec::with_capacity(n),
        };
        let end = Instant::now() + limit;
        for i in 0..n {
            let (samples, stop) = (scrapers.samples.clone(), scrapers.stop.clone());
            scrapers
                .threads
                .push(ns.spawn(&format!("scraper-{i}"), move || {
                    scrape_loop(addr, pause, timeout, end, &samples, &stop)
                })?);
        }
        Ok(scrapers)
    }

    /// Stops the scrapers: every scrape, in the order they ended.
    pub fn finish(mut self) -> Vec<Scrape> {
        self.halt();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Scrapers {
    fn drop(&mut self) {
        self.halt();
    }
}

fn scrape_loop(
    addr: SocketAddr,
    pause: Duration,
    timeout: Duration,
    end: Instant,
    samples: &Mutex<Vec<Scrape>>,
    stop: &AtomicBool,
) {
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        let ok = scrape::fetch(addr, timeout).is_ok();
        let took = at.elapsed();
        {
            let mut s = samples.lock().unwrap_or_else(PoisonError::into_inner);
            if s.len() >= MAX_SAMPLES {
                return;
            }
            s.push(Scrape { at, took, ok });
        }
        // A refused connect returns at once: pause at least a little.
        let rest = if ok {
            pause
        } else {
            pause.max(Duration::from_millis(10))
        };
        let until = Instant::now() + rest;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(rest.min(Duration::from_millis(100)));
        }
    }
}

/// Connections to the endpoint that never send a byte, held until dropped.
pub struct Idle {
    conns: Vec<TcpStream>,
}

impl Idle {
    /// Opens up to `n` connections from `ns` to `addr`, each connect bounded
    /// by `timeout`; stops at the first that fails (the kernel's backlog is
    /// full: the agent is not accepting).
    pub fn open(ns: &Netns, addr: SocketAddr, n: usize, timeout: Duration) -> Result<Idle> {
        let conns = ns.enter(|| {
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(c) => conns.push(c),
                    Err(_) => break,
                }
            }
            conns
        })?;
        Ok(Idle { conns })
    }

    /// How many are open.
    pub fn opened(&self) -> usize {
        self.conns.len()
    }
}

/// Raises this process's soft descriptor limit so that `needed` more fit
/// (scrapers and idle connections are ours too).
pub fn make_room(needed: usize) -> Result<()> {
    let me = std::process::id();
    let want = (crate::procfs::open_fds(me)? + needed + 256) as u64;
    let (soft, _) = crate::procfs::nofile(0)?;
    if soft < want {
        crate::procfs::set_nofile(0, want).context("raising the lab's descriptor limit")?;
    }
    Ok(())
}
