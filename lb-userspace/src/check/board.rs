//! Every check's state as the check tasks record it: per check of a real,
//! its verdict, its attempts and failures, how long the last attempt took
//! and why the last failure failed. The metrics' collector reads it
//! (`metrics/checks.rs`); `xlb status` reads the part that changes rarely
//! (verdicts and failures) from a file the agent keeps in /run/xlb,
//! rewritten at most once a second and only when it changed.

use crate::{config::check::CheckKind, runfiles::StateFile, vocab::RealKey};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How often the state file may be rewritten.
const PUBLISH: Duration = Duration::from_secs(1);

/// One check of one real: the real and the check's place in its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckKey {
    pub real: RealKey,
    pub slot: usize,
}

/// What is known about one check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckStat {
    /// `TCP_CHECK`, `HTTP_GET`, ... as keepalived.conf names it.
    pub kind: &'static str,
    /// The check's verdict (after retries), as the data plane uses it.
    pub up: bool,
    pub attempts: u64,
    pub failures: u64,
    /// How long the last attempt took (to its answer, failure or timeout).
    pub last_duration: Option<Duration>,
    /// Why the last failed attempt failed, and when (seconds since the epoch).
    pub last_failure: Option<(String, u64)>,
}

/// One check as `xlb status` shows it (an element of the state file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    pub service: String,
    pub real: SocketAddr,
    /// `TCP_CHECK`, `HTTP_GET`, ...
    pub check: String,
    /// The check's place among its real's checks.
    pub slot: usize,
    pub up: bool,
    pub last_failure: Option<String>,
    pub last_failure_unix_s: Option<u64>,
}

/// Where the agent with maps pinned at `pin_path` keeps its checks' state.
pub fn status_path(pin_path: &Path) -> PathBuf {
    crate::runfiles::for_pins(pin_path, "checks-", ".json")
}

/// Every check's numbers; cheap to clone, shared by the check tasks.
#[derive(Clone, Debug, Default)]
pub struct CheckBoard {
    checks: Arc<Mutex<BTreeMap<CheckKey, CheckStat>>>,
    /// The state file, if the agent keeps one.
    file: StateFile,
}

impl CheckBoard {
    /// A board whose state is also kept in `file` ([`CheckBoard::publisher`]).
    pub fn with_file(file: PathBuf) -> CheckBoard {
        CheckBoard {
            file: StateFile::new(Some(file)),
            ..CheckBoard::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CheckKey, CheckStat>> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every check (the checkers restart with a new config).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A check starting with verdict `up`.
    pub fn register(&self, key: CheckKey, kind: &CheckKind, up: bool) {
        self.lock().insert(
            key,
            CheckStat {
                kind: kind.name(),
                up,
                ..CheckStat::default()
            },
        );
    }

    /// One attempt's outcome (`failure`: why it failed) and the verdict after it.
    pub fn attempt(&self, key: CheckKey, failure: Option<&str>, took: Duration, up: bool) {
        let mut m = self.lock();
        let s = m.entry(key).or_default();
        s.attempts += 1;
        s.last_duration = Some(took);
        s.up = up;
        if let Some(why) = failure {
            s.failures += 1;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            s.last_failure = Some((why.to_string(), now));
        }
    }

    pub fn snapshot(&self) -> BTreeMap<CheckKey, CheckStat> {
        self.lock().clone()
    }

    /// The state file's content: verdicts and last failures.
    pub fn states(&self) -> Vec<CheckState> {
        self.lock()
            .iter()
            .map(|(k, s)| CheckState {
                service: k.real.service.to_string(),
                real: SocketAddr::new(k.real.address, k.real.port),
                check: s.kind.to_string(),
                slot: k.slot,
                up: s.up,
                last_failure: s.last_failure.as_ref().map(|(why, _)| why.clone()),
                last_failure_unix_s: s.last_failure.as_ref().map(|(_, t)| *t),
            })
            .collect()
    }

    /// Rewrites the state file when the states changed, at most once per
    /// second, until the agent stops (the task is dropped with the runtime).
    pub async fn publisher(self) {
        let mut tick = tokio::time::interval(PUBLISH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Vec<CheckState>> = None;
        loop {
            tick.tick().await;
            let states = self.states();
            if last.as_ref() == Some(&states) {
                continue;
            }
            match self.publish(&states) {
                Ok(()) => last = Some(states),
                Err(e) => {
                    tracing::warn!(error = %crate::logging::chain(&e), "writing the checks' state file failed")
                }
            }
        }
    }

    fn publish(&self, states: &[CheckState]) -> Result<()> {
        self.file.publish(&states, states.is_empty())
    }

    /// Removes the state file for good (the agent stops).
    pub fn remove_file(&self) {
        self.file.remove();
    }
}

/// The checks' state the agent with maps at `pin_path` keeps; `None` when
/// it keeps none (no checks, or no agent).
pub fn read(pin_path: &Path) -> Result<Option<Vec<CheckState>>> {
    crate::runfiles::read_json(&status_path(pin_path))
}

/// The checks' part of `xlb status`: one line per check.
pub fn render(states: &[CheckState], now_unix_s: u64) -> String {
    let mut out = String::from("\nHealth checks\n");
    for c in states {
        out.push_str(&format!(
            "  {} -> {} {} #{}: {}",
            c.service,
            c.real,
            c.check,
            c.slot,
            if c.up { "up" } else { "down" }
        ));
        if let (Some(why), Some(t)) = (&c.last_failure, c.last_failure_unix_s) {
            out.push_str(&format!(
                "; last failure {} s ago: {why}",
                now_unix_s.saturating_sub(t)
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, ServiceId};

    fn key(slot: usize) -> CheckKey {
        CheckKey {
            real: RealKey {
                service: ServiceId::Addr {
                    vip: "10.0.0.100".parse().unwrap(),
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                address: "10.0.0.11".parse().unwrap(),
                port: 80,
            },
            slot,
        }
    }

    #[tokio::test]
    async fn the_state_file_holds_verdicts_and_last_failures_and_goes_at_stop() {
        let dir = std::env::temp_dir().join(format!("xlb-board-{}", std::process::id()));
        let file = dir.join("checks.json");
        let board = CheckBoard::with_file(file.clone());
        board.register(key(0), &CheckKind::Tcp, true);
        board.attempt(
            key(0),
            Some("connection refused"),
            Duration::from_millis(1),
            false,
        );
        board.attempt(key(0), None, Duration::from_millis(1), false);
        let states = board.states();
        board.publish(&states).unwrap();
        let back: Vec<CheckState> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(back, states);
        assert_eq!(back[0].check, "TCP_CHECK");
        assert!(!back[0].up);
        assert_eq!(back[0].last_failure.as_deref(), Some("connection refused"));
        assert_eq!(board.snapshot()[&key(0)].failures, 1);
        let text = render(&back, back[0].last_failure_unix_s.unwrap() + 5);
        assert!(
            text.contains("TCP 10.0.0.100:80 -> 10.0.0.11:80 TCP_CHECK #0: down; last failure 5 s ago: connection refused"),
            "{text}"
        );
        board.remove_file();
        board.publish(&states).unwrap();
        assert!(
            !file.exists(),
            "a publish after the stop brought the file back"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
