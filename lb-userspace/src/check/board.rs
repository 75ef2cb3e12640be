//! Every check's numbers as the check tasks record them: per check of a
//! real, its verdict, its attempts and failures and how long the last
//! attempt took. The metrics' collector reads it (`metrics/checks.rs`).

use crate::{config::check::CheckKind, vocab::RealKey};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

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
}

/// Every check's numbers; cheap to clone, shared by the check tasks.
#[derive(Clone, Debug, Default)]
pub struct CheckBoard(Arc<Mutex<BTreeMap<CheckKey, CheckStat>>>);

impl CheckBoard {
    /// Forgets every check (the checkers restart with a new config).
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// A check starting with verdict `up`.
    pub fn register(&self, key: CheckKey, kind: &CheckKind, up: bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                CheckStat {
                    kind: kind.name(),
                    up,
                    ..CheckStat::default()
                },
            );
    }

    /// One attempt's outcome and the verdict after it.
    pub fn attempt(&self, key: CheckKey, passed: bool, took: Duration, up: bool) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let s = m.entry(key).or_default();
        s.attempts += 1;
        s.failures += u64::from(!passed);
        s.last_duration = Some(took);
        s.up = up;
    }

    pub fn snapshot(&self) -> BTreeMap<CheckKey, CheckStat> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
