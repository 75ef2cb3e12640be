//! SIGHUP to the agent every period: with the config unchanged, or
//! rewritten each time so that the health checkers restart (a real's
//! weight flips between two values), or both in turn.

use crate::worker::Worker;
use anyhow::{Context, Result};
use std::{
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// What each reload finds in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The file as it was.
    Unchanged,
    /// A service changed: the agent restarts its checkers.
    CheckersRestart,
    /// In turn: the file as it was, then a change.
    Alternate,
}

impl Reload {
    pub fn name(self) -> &'static str {
        match self {
            Reload::Unchanged => "config unchanged",
            Reload::CheckersRestart => "checkers restart",
            Reload::Alternate => "config unchanged and checkers restart in turn",
        }
    }

    /// Which of the two config versions the `i`-th reload writes first
    /// (`None`: the file is left alone).
    fn version(self, i: u64) -> Option<usize> {
        match self {
            Reload::Unchanged => None,
            Reload::CheckersRestart => Some((i % 2) as usize),
            Reload::Alternate => Some(((i / 2) % 2) as usize),
        }
    }
}

pub struct Sighup {
    worker: Worker<Result<u64>>,
}

impl Sighup {
    /// Signals `pid` every `every` for at most `limit`; before each signal
    /// `config` gets the version of `versions` that `reload` says. The
    /// first signal is `every` from now, and `versions[0]` should be what
    /// the agent started with (so `Unchanged` never differs).
    pub fn start(
        pid: u32,
        config: PathBuf,
        versions: [String; 2],
        reload: Reload,
        every: Duration,
        limit: Duration,
    ) -> Result<Sighup> {
        let worker = Worker::spawn("stress-sighup", move |stop| -> Result<u64> {
            let start = Instant::now();
            let mut sent = 0u64;
            for i in 1u64.. {
                let due = start + every.mul_f64(i as f64);
                while Instant::now() < due {
                    if stop.load(Ordering::Relaxed) || start.elapsed() > limit {
                        return Ok(sent);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Some(v) = reload.version(i) {
                    replace(&config, &versions[v])?;
                }
                // SAFETY: kill(2) on the agent, a child of this process.
                if unsafe { libc::kill(pid as i32, libc::SIGHUP) } == 0 {
                    sent += 1;
                }
            }
            Ok(sent)
        })?;
        Ok(Sighup { worker })
    }

    /// Stops signalling: how many SIGHUPs were sent.
    pub fn finish(self) -> Result<u64> {
        self.worker.finish()?
    }
}

/// Writes `text` to `path` through a rename, so the agent never reads half a file.
fn replace(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_kind_of_reload() {
        let seq = |r: Reload| (1..=6).map(|i| r.version(i)).collect::<Vec<_>>();
        assert_eq!(seq(Reload::Unchanged), [None; 6]);
        // Started with version 0: every reload flips.
        assert_eq!(seq(Reload::CheckersRestart), [1, 0, 1, 0, 1, 0].map(Some));
        // Same, flip, same, flip...
        assert_eq!(seq(Reload::Alternate), [0, 1, 1, 0, 0, 1].map(Some));
    }
}
