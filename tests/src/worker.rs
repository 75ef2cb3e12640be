//! A thread that runs beside a test until it is told to stop (or its own
//! bound ends it) and then hands back what it gathered: the shape of every
//! load and watcher the stress lab runs. Dropping it stops it too, so a
//! failing test leaves no thread sending or polling.

use crate::netns::Netns;
use anyhow::{Result, anyhow};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

pub struct Worker<T> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<T>>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Runs `f` on a thread named `name`; `f` should return soon after the
    /// flag it is given is set.
    pub fn spawn(
        name: &str,
        f: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> Result<Worker<T>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || Ok(f(&flag)))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// As [`Worker::spawn`], on a thread that has joined `ns` (sockets it
    /// makes belong there).
    pub fn spawn_in(
        ns: &Netns,
        name: &str,
        f: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> Result<Worker<T>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = ns.spawn(name, move || f(&flag))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the thread has ended by itself.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Tells it to stop and waits: what it returned (its panic is propagated).
    pub fn finish(mut self) -> Result<T> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| anyhow!("already joined"))?;
        match thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn finish_stops_the_thread_and_returns_its_result() {
        let w = Worker::spawn("count", |stop| {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!w.is_finished());
        assert!(w.finish().unwrap() > 0);
    }

    #[test]
    fn a_thread_that_ends_by_itself_is_finished_and_drop_stops_one_that_does_not() {
        let w = Worker::spawn("short", |_| 7).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while !w.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(w.is_finished());
        assert_eq!(w.finish().unwrap(), 7);
        let seen = Arc::new(AtomicBool::new(false));
        let s = seen.clone();
        drop(
            Worker::spawn("forever", move |stop| {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                s.store(true, Ordering::SeqCst);
            })
            .unwrap(),
        );
        assert!(
            seen.load(Ordering::SeqCst),
            "drop waited for the thread to stop"
        );
    }
}
