//! When the loop gives the data plane a state it failed to take again. A
//! retryable failure (`fault::Kind::Retryable`: the kernel short of memory,
//! a busy resource) is retried at the loop's refresh after a backoff that
//! doubles up to [`MAX_BACKOFF`]; a fatal one (a refusal, a full map) is
//! reported once and not retried: the same state would fail the same way,
//! so the next attempt waits for a new one (a reload, a health or
//! mastership change, new next hops).

use crate::{
    dataplane::{LoadError, StoreError, TableError},
    fault::{self, Kind, as_a},
    ipvs::IpvsError,
    net::NetlinkError,
};
use std::{
    error::Error,
    time::{Duration, Instant},
};

/// The first wait after a retryable failure: the loop's refresh.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The outcome of the last apply, as the loop acts on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Retry {
    /// The plane holds what it was last given.
    #[default]
    Clear,
    /// A retryable failure: try again at `at`; the wait after that is `next`.
    Backoff { at: Instant, next: Duration },
    /// A fatal failure: no retry until the state to apply changes.
    Refused,
}

/// What to tell the operator about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Told {
    /// Retried in this long.
    RetryIn(Duration),
    /// Refused: not retried.
    Refused,
}

impl Retry {
    /// The apply succeeded.
    pub fn succeeded(&mut self) {
        *self = Retry::Clear;
    }

    /// The apply failed with `e` at `now`.
    pub fn failed(&mut self, e: &anyhow::Error, now: Instant) -> Told {
        match fault::kind_of(e, seam) {
            Kind::Fatal => {
                *self = Retry::Refused;
                Told::Refused
            }
            Kind::Retryable => {
                let wait = match self {
                    Retry::Backoff { next, .. } => *next,
                    _ => FIRST_BACKOFF,
                };
                *self = Retry::Backoff {
                    at: now + wait,
                    next: (wait * 2).min(MAX_BACKOFF),
                };
                Told::RetryIn(wait)
            }
        }
    }

    /// Whether the plane may hold something other than what it was last
    /// given in full (so an unchanged state must be written again).
    pub fn pending(&self) -> bool {
        *self != Retry::Clear
    }

    /// Whether the loop's refresh should apply the same state again now.
    pub fn due(&self, now: Instant) -> bool {
        matches!(self, Retry::Backoff { at, .. } if *at <= now)
    }
}

/// The kind of `e` if it is the typed error of a seam below the agent.
fn seam(e: &(dyn Error + 'static)) -> Option<Kind> {
    as_a::<TableError>(e)
        .or_else(|| as_a::<StoreError>(e))
        .or_else(|| as_a::<LoadError>(e))
        .or_else(|| as_a::<IpvsError>(e))
        .or_else(|| as_a::<NetlinkError>(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn os(errno: i32) -> anyhow::Error {
        anyhow::Error::from(io::Error::from_raw_os_error(errno)).context("applying")
    }

    #[test]
    fn retryable_failures_back_off_to_a_ceiling_and_clear_on_success() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        assert!(!r.pending() && !r.due(t0));
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..7 {
            match r.failed(&os(libc::EAGAIN), now) {
                Told::RetryIn(w) => waits.push(w.as_secs()),
                Told::Refused => panic!("EAGAIN refused"),
            }
            assert!(r.pending());
            assert!(!r.due(now), "not at once");
            now += Duration::from_secs(waits[waits.len() - 1]);
            assert!(r.due(now));
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
        r.succeeded();
        assert!(!r.pending());
        assert_eq!(
            r.failed(&os(libc::ENOMEM), now),
            Told::RetryIn(FIRST_BACKOFF)
        );
    }

    #[test]
    fn each_seams_error_is_read_under_context() {
        let t0 = Instant::now();
        let store = |errno| StoreError {
            map: lb_common::map_names::REALS,
            op: "writing",
            source: io::Error::from_raw_os_error(errno),
        };
        let table = |errno| anyhow::Error::from(TableError::from(store(errno))).context("apply");
        let mut r = Retry::default();
        assert!(matches!(
            r.failed(&table(libc::EAGAIN), t0),
            Told::RetryIn(_)
        ));
        assert_eq!(r.failed(&table(libc::EPERM), t0), Told::Refused);
        let full = TableError::Full {
            what: "real server",
            setting: "max_reals",
        };
        assert_eq!(r.failed(&full.into(), t0), Told::Refused);
        let ipvs = IpvsError::Refused(io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(matches!(r.failed(&ipvs.into(), t0), Told::RetryIn(_)));
        let netlink = NetlinkError::Refused(io::Error::from_raw_os_error(libc::EINVAL));
        assert_eq!(r.failed(&netlink.into(), t0), Told::Refused);
        let load = LoadError::MissingProgram("xlb_director");
        assert_eq!(r.failed(&load.into(), t0), Told::Refused);
    }

    #[test]
    fn a_fatal_failure_is_never_due() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        assert_eq!(r.failed(&os(libc::EPERM), t0), Told::Refused);
        assert!(
            r.pending(),
            "the plane may hold a part of the refused state"
        );
        assert!(!r.due(t0 + Duration::from_secs(3600)));
        // A later retryable failure (of another state) backs off afresh.
        assert_eq!(r.failed(&os(libc::EBUSY), t0), Told::RetryIn(FIRST_BACKOFF));
    }
}
