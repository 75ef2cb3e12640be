//! The VRRP state machine of RFC 3768 §6.4 / RFC 9568 §6.4, plus Fault, as
//! a pure function of (state, event, now): it owns the two timers as
//! deadlines and answers each event with the actions to take. Sockets,
//! addresses and scripts live elsewhere, so every rule is tested here with a
//! made-up clock.

use std::{net::IpAddr, time::Duration};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    #[serde(rename = "INIT")]
    Initialize,
    #[serde(rename = "BACKUP")]
    Backup,
    #[serde(rename = "MASTER")]
    Master,
    #[serde(rename = "FAULT")]
    Fault,
}

impl State {
    /// keepalived's spelling, used in notify arguments and FIFO lines.
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What the machine is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    /// A valid advert from `src`.
    Advert {
        src: IpAddr,
        priority: u8,
        interval: Duration,
    },
    /// One of the deadlines passed (the caller sleeps until [`Machine::deadline`]).
    Timer,
    /// Tracking says the instance cannot work (`true`) or can again.
    Fault(bool),
    /// Tracking changed the effective priority.
    Priority(u8),
    /// Another member of our sync group became Master or Backup: follow it.
    Group(State),
}

/// What the caller must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: "I am leaving").
    Send { priority: u8 },
    /// The state changed; entering or leaving Master moves the VIPs.
    Enter(State),
    /// Still Master, and a valid advert with a lower priority came from
    /// `src`: another node believes it is Master (a split brain healing, or
    /// a peer that cannot hear us). What to announce is the caller's
    /// (`garp_lower_prio_repeat`).
    LowerPriority { src: IpAddr, priority: u8 },
}

/// Fixed settings of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub version: u8,
    /// Our Advertisement_Interval.
    pub interval: Duration,
    pub preempt: bool,
    /// `preempt_delay`: a Backup that could preempt waits this long first,
    /// counted from the first lower-priority advert it hears (keepalived's rule).
    pub preempt_delay: Duration,
    /// The address our adverts come from: breaks priority ties.
    pub primary: IpAddr,
    /// `state MASTER`: claim mastership after one interval instead of
    /// waiting the full Master_Down_Interval.
    pub master_hint: bool,
    /// `lower_prio_no_advert`: a Master does not answer a lower-priority advert.
    pub lower_prio_no_advert: bool,
    /// `higher_prio_send_advert`: a Master that yields to a better advert
    /// sends one advert of its own first, so a split brain heals with the
    /// winner hearing the loser whichever side heard the other first.
    pub higher_prio_send_advert: bool,
}

#[derive(Clone, Debug)]
pub struct Machine {
    pub settings: Params,
    state: State,
    /// Effective priority (configured ± tracking); 255 = address owner.
    priority: u8,
    /// The Master's interval (v3 adopts the advertised one).
    master_interval: Duration,
    adver_timer: Option<Instant>,
    down_timer: Option<Instant>,
    /// When a pending preemption may happen (`preempt_delay` running).
    preempt_at: Option<Instant>,
    faulty: bool,
}

impl Machine {
    pub fn new(settings: Params, priority: u8) -> Machine {
        Machine {
            settings,
            state: State::Initialize,
            priority,
            master_interval: settings.interval,
            adver_timer: None,
            down_timer: None,
            preempt_at: None,
            faulty: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The interval adverts are expected at (the Master's, as a Backup).
    pub fn master_interval(&self) -> Duration {
        self.master_interval
    }

    /// A reload's settings for a running machine (same version and source):
    /// a new interval is used from the next advert on, or at once if that is sooner.
    pub fn retune(&mut self, settings: Params, now: Instant) {
        self.settings = settings;
        if self.state == State::Master || settings.version == 2 {
            self.master_interval = settings.interval;
        }
        if let Some(t) = self.adver_timer {
            self.adver_timer = Some(t.min(now + settings.interval));
        }
    }

    /// When [`Event::Timer`] is due next.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.adver_timer, self.down_timer) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    /// Skew_Time: v2 (256 − Priority)/256 s; v3 scaled by the Master's interval.
    pub fn skew(&self) -> Duration {
        let share = 256 - u32::from(self.priority);
        let base = if self.settings.version == 2 {
            Duration::from_secs(1)
        } else {
            self.master_interval
        };
        base * share / 256
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, event) {
            (State::Initialize, Event::Startup) => {
                if self.faulty {
                    self.enter(State::Fault, &mut out);
                } else {
                    self.start(now, &mut out);
                }
            }
            (State::Initialize, Event::Fault(f)) => self.faulty = f,
            (State::Initialize, Event::Priority(p)) => self.priority = p,
            (State::Initialize, _) | (_, Event::Startup) => {}
            (_, Event::Shutdown) => {
                if self.state == State::Master {
                    out.push(Action::Send { priority: 0 });
                }
                self.adver_timer = None;
                self.down_timer = None;
                self.enter(State::Initialize, &mut out);
            }
            (State::Fault, Event::Fault(false)) => {
                self.faulty = false;
                self.start(now, &mut out);
            }
            (State::Fault, Event::Priority(p)) => self.priority = p,
            (State::Fault, _) => {}
            (_, Event::Fault(true)) => {
                self.faulty = true;
                if self.state == State::Master {
                    // Let the Backups take over after Skew_Time, not Master_Down_Interval.
                    out.push(Action::Send { priority: 0 });
                }
                self.adver_timer = None;
                self.down_timer = None;
                self.enter(State::Fault, &mut out);
            }
            (_, Event::Fault(false)) => self.faulty = false,
            (_, Event::Priority(p)) => {
                self.priority = p;
                if self.state == State::Master {
                    // Tell the Backups now, so they preempt a Master that got weaker.
                    out.push(Action::Send { priority: p });
                    self.adver_timer = Some(now + self.settings.interval);
                }
            }
            (State::Backup, Event::Group(State::Master)) => self.become_master(now, &mut out),
            (State::Master, Event::Group(State::Backup)) => {
                self.adver_timer = None;
                self.down_timer = Some(now + self.master_down_interval());
                self.enter(State::Backup, &mut out);
            }
            (_, Event::Group(_)) => {}
            (State::Backup, Event::Timer) => {
                if self.down_timer.is_some_and(|t| now >= t) {
                    self.become_master(now, &mut out);
                }
            }
            (
                State::Backup,
                Event::Advert {
                    priority, interval, ..
                },
            ) => {
                if priority == 0 {
                    self.down_timer = Some(now + self.skew());
                } else if !self.settings.preempt
                    || priority >= self.priority
                    || self.preempt_held(now)
                {
                    if self.settings.version == 3 {
                        self.master_interval = interval;
                    }
                    self.down_timer = Some(now + self.master_down_interval());
                    if self.settings.preempt && !self.settings.preempt_delay.is_zero() {
                        // Each chance to preempt starts the delay afresh;
                        // an advert we would not preempt ends the chance.
                        if priority >= self.priority {
                            self.preempt_at = None;
                        } else if self.preempt_at.is_none() {
                            self.preempt_at = Some(now + self.settings.preempt_delay);
                        }
                    }
                }
                // Otherwise a weaker Master: let the timer run out and preempt it.
            }
            (State::Master, Event::Timer) => {
                if self.adver_timer.is_some_and(|t| now >= t) {
                    out.push(Action::Send {
                        priority: self.priority,
                    });
                    self.adver_timer = Some(now + self.settings.interval);
                }
            }
            (
                State::Master,
                Event::Advert {
                    src,
                    priority,
                    interval,
                },
            ) => {
                if priority == 0 {
                    out.push(Action::Send {
                        priority: self.priority,
                    });
                    self.adver_timer = Some(now + self.settings.interval);
                } else if priority > self.priority
                    || (priority == self.priority && src > self.settings.primary)
                {
                    if self.settings.higher_prio_send_advert {
                        out.push(Action::Send {
                            priority: self.priority,
                        });
                    }
                    self.adver_timer = None;
                    if self.settings.version == 3 {
                        self.master_interval = interval;
                    }
                    self.down_timer = Some(now + self.master_down_interval());
                    self.enter(State::Backup, &mut out);
                } else {
                    // Another node thinks it is Master: it yields on our advert.
                    if !self.settings.lower_prio_no_advert {
                        out.push(Action::Send {
                            priority: self.priority,
                        });
                        self.adver_timer = Some(now + self.settings.interval);
                    }
                    out.push(Action::LowerPriority { src, priority });
                }
            }
        }
        out
    }

    /// Whether `preempt_delay` still holds a preemption off: it has not
    /// started (the first lower-priority advert starts it) or not run out.
    fn preempt_held(&self, now: Instant) -> bool {
        !self.settings.preempt_delay.is_zero() && self.preempt_at.is_none_or(|t| now < t)
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.priority == 255 {
            self.become_master(now, out);
        } else {
            self.master_interval = self.settings.interval;
            let wait = if self.settings.master_hint {
                self.settings.interval + self.skew()
            } else {
                self.master_down_interval()
            };
            self.down_timer = Some(now + wait);
            self.enter(State::Backup, out);
        }
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.down_timer = None;
        out.push(Action::Send {
            priority: self.priority,
        });
        self.adver_timer = Some(now + self.settings.interval);
        self.enter(State::Master, out);
    }

    fn enter(&mut self, state: State, out: &mut Vec<Action>) {
        if self.state != state {
            if state == State::Backup {
                self.preempt_at = None;
            }
            self.state = state;
            out.push(Action::Enter(state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5));
    const LOW: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const HIGH: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
    const S: Duration = Duration::from_secs(1);

    fn settings(version: u8) -> Params {
        Params {
            version,
            interval: S,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary: ME,
            master_hint: false,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
        }
    }

    fn advert(src: IpAddr, priority: u8) -> Event {
        Event::Advert {
            src,
            priority,
            interval: S,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn started(s: Params, prio: u8, t0: Instant) -> Machine {
        let mut m = Machine::new(s, prio);
        m.handle(Event::Startup, t0);
        m
    }

    #[test]
    fn timers_per_rfc() {
        let m = Machine::new(settings(2), 100);
        // v2: skew = (256-100)/256 s = 609.375 ms.
        assert_eq!(m.skew(), Duration::from_nanos(609_375_000));
        assert_eq!(m.master_down_interval(), S * 3 + m.skew());
        let mut s3 = settings(3);
        s3.interval = ms(100);
        let m = Machine::new(s3, 100);
        // v3: skew = (256-100) × 100 ms / 256.
        assert_eq!(m.skew(), Duration::from_nanos(60_937_500));
        assert_eq!(m.master_down_interval(), ms(300) + m.skew());
    }

    #[test]
    fn backup_takes_over_after_master_down_interval() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 100, t0);
        assert_eq!(m.state(), State::Backup);
        let mdi = m.master_down_interval();
        assert_eq!(m.deadline(), Some(t0 + mdi));
        assert!(m.handle(Event::Timer, t0 + mdi - ms(1)).is_empty());
        assert_eq!(
            m.handle(Event::Timer, t0 + mdi),
            vec![Action::Send { priority: 100 }, Action::Enter(State::Master)]
        );
        assert_eq!(m.deadline(), Some(t0 + mdi + S));
        assert_eq!(
            m.handle(Event::Timer, t0 + mdi + S),
            vec![Action::Send { priority: 100 }]
        );
    }

    #[test]
    fn owner_starts_as_master() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(2), 255);
        assert_eq!(
            m.handle(Event::Startup, t0),
            vec![Action::Send { priority: 255 }, Action::Enter(State::Master)]
        );
    }

    #[test]
    fn adverts_keep_a_backup_waiting() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 100, t0);
        m.handle(advert(HIGH, 150), t0 + S * 2);
        assert_eq!(m.deadline(), Some(t0 + S * 2 + m.master_down_interval()));
        // Equal priority also counts as a live Master for a Backup.
        m.handle(advert(LOW, 100), t0 + S * 4);
        assert_eq!(m.deadline(), Some(t0 + S * 4 + m.master_down_interval()));
    }

    #[test]
    fn weaker_master_is_preempted() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 100, t0);
        m.handle(advert(HIGH, 50), t0 + S);
        assert_eq!(m.deadline(), Some(t0 + m.master_down_interval()));
        let mut n = started(
            Params {
                preempt: false,
                ..settings(2)
            },
            100,
            t0,
        );
        n.handle(advert(HIGH, 50), t0 + S);
        assert_eq!(
            n.deadline(),
            Some(t0 + S + n.master_down_interval()),
            "nopreempt accepts a weaker Master"
        );
    }

    #[test]
    fn preempt_delay_runs_from_the_first_chance_to_preempt() {
        let t0 = Instant::now();
        let s = Params {
            preempt_delay: S * 10,
            ..settings(2)
        };
        let mut m = started(s, 100, t0);
        // The first weaker advert starts the delay; adverts during it are a live Master's.
        m.handle(advert(HIGH, 50), t0 + S);
        m.handle(advert(HIGH, 50), t0 + S * 10);
        assert_eq!(m.deadline(), Some(t0 + S * 10 + m.master_down_interval()));
        m.handle(advert(HIGH, 50), t0 + S * 11);
        assert_eq!(
            m.deadline(),
            Some(t0 + S * 10 + m.master_down_interval()),
            "after the delay a weaker advert no longer resets the timer"
        );
    }

    #[test]
    fn preempt_delay_restarts_when_a_chance_to_preempt_comes_back() {
        let t0 = Instant::now();
        let s = Params {
            preempt_delay: S * 10,
            ..settings(2)
        };
        let mut m = started(s, 100, t0);
        m.handle(advert(HIGH, 50), t0 + S);
        // Tracking lowers us below the Master: no chance, the delay ends.
        m.handle(Event::Priority(40), t0 + S * 2);
        m.handle(advert(HIGH, 50), t0 + S * 3);
        // Recovered: a new chance, a new delay from the next weaker advert.
        m.handle(Event::Priority(100), t0 + S * 20);
        m.handle(advert(HIGH, 50), t0 + S * 20);
        m.handle(advert(HIGH, 50), t0 + S * 29);
        assert_eq!(
            m.deadline(),
            Some(t0 + S * 29 + m.master_down_interval()),
            "still waiting 9 s after the chance came back"
        );
        m.handle(advert(HIGH, 50), t0 + S * 30);
        assert_eq!(m.deadline(), Some(t0 + S * 29 + m.master_down_interval()));
    }

    #[test]
    fn priority_zero_makes_backup_fire_after_skew() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 100, t0);
        m.handle(advert(HIGH, 0), t0 + S);
        assert_eq!(m.deadline(), Some(t0 + S + m.skew()));
    }

    #[test]
    fn master_leaves_with_priority_zero() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 255, t0);
        assert_eq!(
            m.handle(Event::Shutdown, t0 + S),
            vec![
                Action::Send { priority: 0 },
                Action::Enter(State::Initialize)
            ]
        );
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn master_answers_priority_zero_with_an_advert() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 255, t0);
        assert_eq!(
            m.handle(advert(HIGH, 0), t0 + ms(10)),
            vec![Action::Send { priority: 255 }]
        );
    }

    #[test]
    fn split_brain_lower_priority_yields() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 255, t0);
        m.handle(Event::Priority(100), t0);
        assert_eq!(m.state(), State::Master);
        assert_eq!(
            m.handle(advert(LOW, 150), t0 + S),
            vec![Action::Enter(State::Backup)]
        );
        assert_eq!(m.deadline(), Some(t0 + S + m.master_down_interval()));
    }

    #[test]
    fn split_brain_tie_goes_to_the_higher_address() {
        let t0 = Instant::now();
        let mk = || {
            let mut m = started(settings(2), 100, t0);
            m.handle(Event::Timer, t0 + S * 4);
            assert_eq!(m.state(), State::Master);
            m
        };
        let mut m = mk();
        assert_eq!(
            m.handle(advert(HIGH, 100), t0 + S * 5),
            vec![Action::Enter(State::Backup)]
        );
        let mut m = mk();
        assert_eq!(
            m.handle(advert(LOW, 100), t0 + S * 5),
            vec![
                Action::Send { priority: 100 },
                Action::LowerPriority {
                    src: LOW,
                    priority: 100
                }
            ],
            "the winner answers, and the caller announces (keepalived #166)"
        );
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn a_yielding_master_says_goodbye_with_higher_prio_send_advert() {
        let t0 = Instant::now();
        let s = Params {
            higher_prio_send_advert: true,
            ..settings(2)
        };
        let mut m = started(s, 255, t0);
        m.handle(Event::Priority(100), t0);
        assert_eq!(
            m.handle(advert(LOW, 150), t0 + S),
            vec![Action::Send { priority: 100 }, Action::Enter(State::Backup)],
            "the winner hears a lower priority and announces itself"
        );
    }

    #[test]
    fn lower_prio_no_advert_stays_silent() {
        let t0 = Instant::now();
        let s = Params {
            lower_prio_no_advert: true,
            ..settings(2)
        };
        let mut m = started(s, 255, t0);
        assert_eq!(
            m.handle(advert(LOW, 100), t0 + S),
            vec![Action::LowerPriority {
                src: LOW,
                priority: 100
            }]
        );
    }

    #[test]
    fn v3_backup_adopts_the_masters_interval() {
        let t0 = Instant::now();
        let mut m = started(settings(3), 100, t0);
        m.handle(
            Event::Advert {
                src: HIGH,
                priority: 200,
                interval: ms(100),
            },
            t0,
        );
        assert_eq!(m.master_interval(), ms(100));
        assert_eq!(m.deadline(), Some(t0 + ms(300) + m.skew()));
        let mut v2 = started(settings(2), 100, t0);
        v2.handle(
            Event::Advert {
                src: HIGH,
                priority: 200,
                interval: ms(100),
            },
            t0,
        );
        assert_eq!(v2.master_interval(), S, "v2 keeps its own interval");
    }

    #[test]
    fn fault_from_master_sends_priority_zero_and_recovers_as_backup() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 255, t0);
        assert_eq!(
            m.handle(Event::Fault(true), t0 + S),
            vec![Action::Send { priority: 0 }, Action::Enter(State::Fault)]
        );
        assert_eq!(m.deadline(), None);
        assert!(m.handle(advert(HIGH, 50), t0 + S).is_empty());
        m.handle(Event::Priority(100), t0 + S);
        assert_eq!(
            m.handle(Event::Fault(false), t0 + S * 2),
            vec![Action::Enter(State::Backup)]
        );
    }

    #[test]
    fn fault_before_startup_starts_in_fault() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(2), 100);
        m.handle(Event::Fault(true), t0);
        assert_eq!(
            m.handle(Event::Startup, t0),
            vec![Action::Enter(State::Fault)]
        );
    }

    #[test]
    fn master_announces_a_priority_change_at_once() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 255, t0);
        assert_eq!(
            m.handle(Event::Priority(90), t0 + ms(10)),
            vec![Action::Send { priority: 90 }]
        );
        assert_eq!(m.priority(), 90);
    }

    #[test]
    fn sync_group_members_follow_each_other() {
        let t0 = Instant::now();
        let mut m = started(settings(2), 100, t0);
        assert_eq!(
            m.handle(Event::Group(State::Master), t0),
            vec![Action::Send { priority: 100 }, Action::Enter(State::Master)]
        );
        assert_eq!(
            m.handle(Event::Group(State::Backup), t0 + S),
            vec![Action::Enter(State::Backup)]
        );
        assert_eq!(m.deadline(), Some(t0 + S + m.master_down_interval()));
        m.handle(Event::Fault(true), t0 + S);
        assert!(
            m.handle(Event::Group(State::Master), t0 + S).is_empty(),
            "a member in Fault stays there"
        );
    }

    #[test]
    fn master_hint_claims_after_one_interval() {
        let t0 = Instant::now();
        let m = started(
            Params {
                master_hint: true,
                ..settings(2)
            },
            100,
            t0,
        );
        assert_eq!(m.deadline(), Some(t0 + S + m.skew()));
    }
}
