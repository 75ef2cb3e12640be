//! Load on the agent's metrics endpoint, as monitoring gone wrong makes it:
//! scrapers that each ask again as soon as an answer comes, and idle
//! connections that are opened and never send a byte. Each scrape is timed
//! (connect to the last byte), so the same scrapers are the lab's scrape
//! latency figure; with one scraper and a pause it is a light probe.

use crate::{netns::Netns, scrape, worker::Worker};
use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};
use std::{
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// Scrapes recorded at most by one scraper.
const MAX_SAMPLES: usize = 100_000;

/// One scrape: when it started, how long it took, whether a whole `200 OK`
/// came back (a failed one took at least its timeout, or was refused).
#[derive(Clone, Copy, Debug)]
pub struct Scrape {
    pub at: Instant,
    pub took: Duration,
    pub ok: bool,
}

pub struct Scrapers {
    workers: Vec<Worker<Vec<Scrape>>>,
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
        let end = Instant::now() + limit;
        let workers = (0..n)
            .map(|i| {
                Worker::spawn_in(ns, &format!("scraper-{i}"), move |stop| {
                    scrape_loop(addr, pause, timeout, end, stop)
                })
            })
            .collect::<Result<_>>()?;
        Ok(Scrapers { workers })
    }

    /// Stops the scrapers: every scrape.
    pub fn finish(self) -> Result<Vec<Scrape>> {
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.finish()?);
        }
        Ok(all)
    }
}

/// Scrapes until `end` or `stop`: each one, as it went.
fn scrape_loop(
    addr: SocketAddr,
    pause: Duration,
    timeout: Duration,
    end: Instant,
    stop: &AtomicBool,
) -> Vec<Scrape> {
    let mut samples = Vec::new();
    while Instant::now() < end && !stop.load(Ordering::Relaxed) && samples.len() < MAX_SAMPLES {
        let at = Instant::now();
        let ok = scrape::fetch(addr, timeout).is_ok();
        samples.push(Scrape {
            at,
            took: at.elapsed(),
            ok,
        });
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
    samples
}

/// Connections to the endpoint that never send a byte, held until dropped.
pub struct Idle {
    attempted: usize,
    conns: Vec<Socket>,
}

impl Idle {
    /// Starts `n` connections from `ns` to `addr` at once (non-blocking)
    /// and keeps those that are established within `timeout`: a full
    /// backlog, or an agent that refuses, leaves some unopened.
    pub fn open(ns: &Netns, addr: SocketAddr, n: usize, timeout: Duration) -> Result<Idle> {
        let pending = ns.enter(|| -> Result<Vec<Socket>> {
            let mut pending = Vec::with_capacity(n);
            for _ in 0..n {
                let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                s.set_nonblocking(true)?;
                match s.connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(_) => continue,
                }
                pending.push(s);
            }
            Ok(pending)
        })??;
        let done = wait_writable(&pending, timeout);
        let conns = pending
            .into_iter()
            .zip(done)
            .filter(|(s, writable)| {
                *writable && matches!(s.take_error(), Ok(None)) && s.peer_addr().is_ok()
            })
            .map(|(s, _)| s)
            .collect();
        Ok(Idle {
            attempted: n,
            conns,
        })
    }

    /// How many were tried.
    pub fn attempted(&self) -> usize {
        self.attempted
    }

    /// How many are open.
    pub fn opened(&self) -> usize {
        self.conns.len()
    }
}

/// Which of `socks` became writable (connected, or failed) within `timeout`.
fn wait_writable(socks: &[Socket], timeout: Duration) -> Vec<bool> {
    let fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    let mut done = vec![false; socks.len()];
    let end = Instant::now() + timeout;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        // Poll only those still pending.
        let mut waiting: Vec<usize> = (0..fds.len()).filter(|&i| !done[i]).collect();
        if waiting.is_empty() {
            break;
        }
        let mut batch: Vec<libc::pollfd> = waiting.iter().map(|&i| fds[i]).collect();
        // SAFETY: `batch` is a valid array of pollfd for its length.
        let n = unsafe {
            libc::poll(
                batch.as_mut_ptr(),
                batch.len() as libc::nfds_t,
                left.as_millis().min(1000) as i32,
            )
        };
        if n < 0 {
            break;
        }
        for (k, i) in waiting.drain(..).enumerate() {
            done[i] |= batch[k].revents != 0;
        }
    }
    done
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
