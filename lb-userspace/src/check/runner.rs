//! Schedules every configured check as its own task in the agent's runtime
//! and reports each real server's combined verdict to the agent loop when
//! it changes.
//!
//! keepalived's rules: a real that is up goes down when an attempt and its
//! `retry` retries (`delay_before_retry` apart) all fail, and comes back after one
//! success; the very first attempt has no retries (it alone decides); checks
//! repeat every `delay_loop`; the first runs after a random delay of up to
//! `warmup` (by default `delay_loop`, so that thousands of checks do not
//! start together). A check with `alpha` starts failed. A real with several
//! checks is up only while all pass.
//! Each attempt is bounded by its timeout and at most [`CONCURRENCY`]
//! attempts run at once, so a hung real server delays no other check.

use super::{
    Env, Probe, Target, Verdict,
    board::{CheckBoard, CheckKey},
    probe, self_bounded,
};
use crate::{
    alert::Alerter,
    config::{
        Config,
        check::{Check, CheckKind},
    },
    vocab::{Health, RealKey},
};
use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    sync::{Mutex, Semaphore, mpsc, watch},
    task::JoinSet,
};
use tracing::{debug, info};

/// Attempts in flight at once, over all checks.
pub const CONCURRENCY: usize = 256;
/// Time a self-bounded probe (UDP, ping, script) gets beyond its own timeout.
const MARGIN: Duration = Duration::from_secs(1);

/// The running checks; dropping it (or [`Checkers::stop`]) ends them all.
pub struct Checkers {
    tasks: JoinSet<()>,
    masters: watch::Sender<HashSet<String>>,
}

/// The verdicts of one real's checks and what was last reported for it.
struct RealVerdicts {
    key: RealKey,
    checks: Vec<Health>,
    reported: Health,
}

/// One check of one real, with what it needs to run.
struct Job {
    check: Check,
    slot: usize,
    target: Target,
    env: Arc<Env>,
    real: Arc<Mutex<RealVerdicts>>,
    /// `ha_suspend`: the VRRP instance that must be Master here for the check to run.
    suspend_unless: Option<String>,
    initial: Health,
    /// Mails this check's changes when `Some` (its `smtp_alert` applies).
    alerts: Option<Alerter>,
    /// Where each attempt is recorded for metrics, and under which key.
    board: CheckBoard,
    board_key: CheckKey,
}

impl Checkers {
    /// Starts the checks of every real in `config`; verdict changes go to
    /// `events`, each check's changes are mailed through `alerts`, and its
    /// attempts are recorded on `board` (emptied first).
    pub fn start(
        config: &Config,
        events: mpsc::Sender<Verdict>,
        alerts: &Alerter,
        board: &CheckBoard,
    ) -> Checkers {
        board.clear();
        let (masters, _) = watch::channel(HashSet::new());
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        // keepalived checks the reals of a virtual_server_group once: the
        // group's first service runs the checks, the agent applies the
        // verdict to every member (`Runtime::set_health`).
        let mut groups_started: HashSet<&str> = HashSet::new();
        for svc in &config.services {
            if let Some(g) = &svc.group
                && !groups_started.insert(g.as_str())
            {
                continue;
            }
            let env = Arc::new(Env {
                virtualhost: svc.lifecycle.virtualhost.clone(),
                script_user: config.global.script_user.clone(),
                script_security: config.global.enable_script_security,
            });
            let suspend_unless = svc
                .lifecycle
                .ha_suspend
                .then(|| svc.id.addr())
                .flatten()
                .and_then(|(vip, ..)| config.vip_owner(vip))
                .map(str::to_string);
            for real in svc.reals.iter().filter(|r| !r.lifecycle.checks.is_empty()) {
                // The verdict the data plane starts with (down under `alpha`).
                let initial = Health::initial(real);
                let key = RealKey {
                    service: svc.id,
                    address: real.address,
                    port: real.port,
                };
                let verdicts = Arc::new(Mutex::new(RealVerdicts {
                    key,
                    checks: real.lifecycle.checks.iter().map(initial_of).collect(),
                    reported: initial,
                }));
                for (slot, check) in real.lifecycle.checks.iter().enumerate() {
                    let board_key = CheckKey { real: key, slot };
                    let initial = initial_of(check);
                    board.register(board_key, &check.kind, matches!(initial, Health::Up { .. }));
                    let job = Job {
                        check: check.clone(),
                        slot,
                        target: Target::of(&check.common, SocketAddr::new(real.address, real.port)),
                        env: env.clone(),
                        real: verdicts.clone(),
                        suspend_unless: suspend_unless.clone(),
                        initial,
                        alerts: alerts.wants_check(real, check).then(|| alerts.clone()),
                        board: board.clone(),
                        board_key,
                    };
                    tasks.spawn(job.run(limit.clone(), events.clone(), masters.subscribe()));
                }
            }
        }
        Checkers { tasks, masters }
    }

    /// How many checks run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Tells `ha_suspend` checks which VRRP instances are Master now.
    pub fn set_masters(&self, masters: &HashSet<String>) {
        self.masters.send_replace(masters.clone());
    }

    /// Ends every check (a running MISC_CHECK script is killed with it).
    pub async fn stop(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Job {
    async fn run(
        self,
        limit: Arc<Semaphore>,
        events: mpsc::Sender<Verdict>,
        mut masters: watch::Receiver<HashSet<String>>,
    ) {
        let common = &self.check.common;
        tokio::time::sleep(first_delay(common.warmup)).await;
        let mut state = self.initial;
        // keepalived starts with the retries spent: the first attempt decides.
        let mut failures = common.retry;
        loop {
            if let Some(owner) = &self.suspend_unless
                && masters.wait_for(|m| m.contains(owner)).await.is_err()
            {
                return;
            }
            let (result, took) = {
                let Ok(_permit) = limit.acquire().await else {
                    return;
                };
                let started = tokio::time::Instant::now();
                let result = self.attempt().await;
                (result, started.elapsed())
            };
            let (next, pause) = step(
                state,
                &mut failures,
                &result,
                common.retry,
                common.delay_before_retry,
                common.delay_loop,
            );
            if let Probe::Fail(why) = &result {
                debug!(real = %self.target.addr, failures, "check failed: {why}");
            }
            let failure = match &result {
                Probe::Fail(why) => Some(why.as_str()),
                Probe::Pass { .. } => None,
            };
            self.board.attempt(
                self.board_key,
                failure,
                took,
                matches!(next, Health::Up { .. }),
            );
            if next != state {
                state = next;
                self.report(state, failure, &events).await;
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt, bounded by the check's timeout.
    async fn attempt(&self) -> Probe {
        let common = &self.check.common;
        let bound = match &self.check.kind {
            CheckKind::Misc { timeout, .. } => *timeout + MARGIN,
            kind if self_bounded(kind) => common.connect_timeout + MARGIN,
            _ => common.connect_timeout,
        };
        // Boxed: the probe future (every checker's state, TLS included) is
        // many kilobytes and lives only during an attempt; inline it would
        // sit in each of thousands of idle check tasks.
        let probe = Box::pin(probe(&self.check, &self.target, &self.env));
        match tokio::time::timeout(bound, probe).await {
            Ok(p) => p,
            Err(_) => Probe::fail(format!(
                "no answer from {} within {bound:?}",
                self.target.addr
            )),
        }
    }

    /// Records this check's verdict (mailing it, as keepalived does for every
    /// checker change) and tells the agent when the real's combined verdict
    /// changed (under the lock, so reports stay in order). `why`: the failure.
    async fn report(&self, state: Health, why: Option<&str>, events: &mpsc::Sender<Verdict>) {
        let mut real = self.real.lock().await;
        let before = std::mem::replace(&mut real.checks[self.slot], state);
        let combined = combine(&real.checks);
        let up = |h: Health| matches!(h, Health::Up { .. });
        // Only up/down is mailed, not a new `misc_dynamic` weight.
        if let Some(alerts) = &self.alerts
            && up(before) != up(state)
        {
            alerts.check_changed(&real.key, &self.check.kind, up(state), up(combined), why);
        }
        if combined == real.reported {
            return;
        }
        real.reported = combined;
        // Why it went down, at the level operators read: the failure that decided it.
        match why.filter(|_| combined == Health::Down) {
            Some(why) => info!(
                real = %self.target.addr,
                service = %real.key.service,
                verdict = %combined,
                check = self.check.kind.name(),
                reason = %why,
                "real server health changed"
            ),
            None => info!(
                real = %self.target.addr,
                service = %real.key.service,
                verdict = %combined,
                "real server health changed"
            ),
        }
        // The agent is stopping when the loop is gone; nothing to tell then.
        let _ = events
            .send(Verdict {
                key: real.key,
                health: combined,
            })
            .await;
    }
}

/// keepalived's state machine for one check: the next verdict and how
/// long to wait before the next attempt.
fn step(
    state: Health,
    failures: &mut u32,
    result: &Probe,
    retry: u32,
    delay_before_retry: Duration,
    delay_loop: Duration,
) -> (Health, Duration) {
    match result {
        Probe::Pass { weight } => {
            *failures = 0;
            (Health::Up { weight: *weight }, delay_loop)
        }
        Probe::Fail(_) => {
            *failures = failures.saturating_add(1);
            match state {
                Health::Up { .. } if *failures <= retry => (state, delay_before_retry),
                _ => (Health::Down, delay_loop),
            }
        }
    }
}

/// A real is up only while every check passes; a dynamic weight (the
/// smallest, if several checks set one) replaces the configured one.
fn combine(checks: &[Health]) -> Health {
    let mut weight: Option<u32> = None;
    for c in checks {
        match c {
            Health::Down => return Health::Down,
            Health::Up { weight: Some(w) } => weight = Some(weight.map_or(*w, |x| x.min(*w))),
            Health::Up { weight: None } => {}
        }
    }
    Health::Up { weight }
}

/// Delay before a check's first attempt: random up to `warmup` (keepalived
/// spreads checks that start together over it).
fn first_delay(warmup: Duration) -> Duration {
    warmup.mul_f64(fastrand::f64())
}

/// A check's verdict before its first attempt: failed under `alpha`.
fn initial_of(check: &Check) -> Health {
    if check.common.alpha {
        Health::Down
    } else {
        Health::Up { weight: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const LOOP: Duration = Duration::from_secs(10);
    const UP: Health = Health::Up { weight: None };

    fn fail() -> Probe {
        Probe::fail("x")
    }

    #[test]
    fn down_after_retry_plus_one_failures_in_a_row_up_after_one_success() {
        let mut n = 0;
        let mut state = UP;
        for _ in 0..3 {
            let (next, pause) = step(state, &mut n, &fail(), 3, S, LOOP);
            assert_eq!((next, pause), (UP, S), "still up, retrying soon");
            state = next;
        }
        let (next, pause) = step(state, &mut n, &fail(), 3, S, LOOP);
        assert_eq!((next, pause), (Health::Down, LOOP));
        let (next, _) = step(Health::Down, &mut n, &fail(), 3, S, LOOP);
        assert_eq!(next, Health::Down);
        let (next, pause) = step(Health::Down, &mut n, &Probe::pass(), 3, S, LOOP);
        assert_eq!((next, pause), (UP, LOOP));
        assert_eq!(n, 0);
        // A success between failures starts the count again.
        step(UP, &mut n, &fail(), 1, S, LOOP);
        step(UP, &mut n, &Probe::pass(), 1, S, LOOP);
        assert_eq!(step(UP, &mut n, &fail(), 1, S, LOOP).0, UP);
        // retry 1 (keepalived's default): the second failure in a row takes it down.
        assert_eq!(step(UP, &mut n, &fail(), 1, S, LOOP).0, Health::Down);
        // retry 0: the first failure does.
        let mut m = 0;
        assert_eq!(step(UP, &mut m, &fail(), 0, S, LOOP).0, Health::Down);
    }

    #[test]
    fn dynamic_weight_and_combination() {
        let mut n = 0;
        let w = Probe::Pass { weight: Some(5) };
        assert_eq!(
            step(UP, &mut n, &w, 1, S, LOOP).0,
            Health::Up { weight: Some(5) }
        );
        assert_eq!(combine(&[UP, Health::Down]), Health::Down);
        assert_eq!(
            combine(&[
                Health::Up { weight: Some(4) },
                UP,
                Health::Up { weight: Some(2) }
            ]),
            Health::Up { weight: Some(2) }
        );
        assert_eq!(combine(&[UP, UP]), UP);
    }

    /// keepalived runs one checker per real of a virtual_server_group, not
    /// one per member: 13 members, one real, one TCP_CHECK → one check task
    /// and one connection per round.
    #[tokio::test]
    async fn a_group_checks_each_real_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = format!(
            "virtual_server_group G {{\n    10.9.0.1-13 {port}\n}}\nvirtual_server group G {{\n    protocol TCP\n    lb_kind NAT\n    delay_loop 60\n    real_server 127.0.0.1 {port} {{\n        TCP_CHECK {{\n            warmup 0\n        }}\n    }}\n}}\n"
        );
        let config = crate::keepalived::parse("g.conf", &text, &Default::default())
            .unwrap()
            .config;
        assert_eq!(config.services.len(), 13);
        let (tx, _rx) = mpsc::channel(16);
        let mut checkers =
            Checkers::start(&config, tx, &Alerter::default(), &CheckBoard::default());
        assert_eq!(checkers.len(), 1, "one check task for the group's real");
        let accept = || async { listener.accept().await.unwrap() };
        let _first = tokio::time::timeout(Duration::from_secs(10), accept())
            .await
            .expect("the group's real is checked");
        // Any other member's check would connect at once too (warmup 0).
        let more = tokio::time::timeout(Duration::from_secs(2), accept()).await;
        assert!(
            more.is_err(),
            "a second connection: a member checked the real again"
        );
        checkers.stop().await;
    }

    #[test]
    fn first_delay_stays_within_warmup() {
        for _ in 0..100 {
            assert!(first_delay(S) <= S);
        }
        assert_eq!(first_delay(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_first_attempt_alone_decides_as_in_keepalived() {
        // The loop starts with `failures = retry`: one failure takes an up real down.
        let mut n = 3;
        assert_eq!(step(UP, &mut n, &fail(), 3, S, LOOP), (Health::Down, LOOP));
        let mut n = 3;
        assert_eq!(step(UP, &mut n, &Probe::pass(), 3, S, LOOP).0, UP);
        assert_eq!(n, 0, "a success restores the retries");
        assert_eq!(step(UP, &mut n, &fail(), 3, S, LOOP), (UP, S));
    }
}
