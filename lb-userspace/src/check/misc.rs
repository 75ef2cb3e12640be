//! MISC_CHECK: an operator script decides. Exit 0 is up, 1 down; with
//! `misc_dynamic`, 2–255 is up with weight = code − 2 (keepalived's rule).
//! A script that times out or dies by a signal counts as down.

use super::Probe;
use crate::{
    config::Command,
    script::{self, Outcome, RunAs},
};
use std::time::Duration;

pub async fn probe(
    cmd: &Command,
    timeout: Duration,
    dynamic: bool,
    user: Option<&str>,
    secure: bool,
) -> Probe {
    let run_as = match user.map(RunAs::lookup).transpose() {
        Ok(u) => u,
        Err(e) => return Probe::fail(format!("script user: {}", crate::logging::chain(&e))),
    };
    match script::run(cmd, &[], run_as, timeout, secure).await {
        Ok(outcome) => verdict(outcome, dynamic),
        Err(e) => Probe::fail(crate::logging::chain(&e).to_string()),
    }
}

/// keepalived's reading of a MISC_CHECK outcome.
fn verdict(outcome: Outcome, dynamic: bool) -> Probe {
    match outcome {
        Outcome::Exited(0) => Probe::pass(),
        Outcome::Exited(code @ 2..=255) if dynamic => Probe::Pass {
            weight: Some(code as u32 - 2),
        },
        Outcome::Exited(code) => Probe::fail(format!("script exited with {code}")),
        Outcome::Signalled => Probe::fail("script killed by a signal"),
        Outcome::TimedOut => Probe::fail("script timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_classes() {
        assert_eq!(verdict(Outcome::Exited(0), false), Probe::pass());
        assert!(matches!(verdict(Outcome::Exited(1), true), Probe::Fail(_)));
        assert!(matches!(verdict(Outcome::Exited(7), false), Probe::Fail(_)));
        assert_eq!(
            verdict(Outcome::Exited(7), true),
            Probe::Pass { weight: Some(5) }
        );
        assert_eq!(
            verdict(Outcome::Exited(2), true),
            Probe::Pass { weight: Some(0) }
        );
        assert!(matches!(verdict(Outcome::TimedOut, true), Probe::Fail(_)));
        assert!(matches!(verdict(Outcome::Signalled, true), Probe::Fail(_)));
    }
}
