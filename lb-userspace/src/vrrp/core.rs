//! One VRRP instance without I/O: events in ([`Input`]), an ordered list of
//! what to do out ([`Effect`]). It holds the RFC state machine
//! ([`super::state`]), decides which adverts to drop and what to log about
//! them, orders a change of mastership with the data plane (the advert
//! first; the data plane, and its acknowledgement as an input; then the
//! addresses; then the announcements), and keeps the announcement schedule.
//! Timers are deadlines ([`Core::deadline`]): the shell sleeps until one
//! and feeds [`Input::Timer`]. Nothing here waits, so adverts go out on
//! time while the data plane is busy, and every rule is tested from
//! recorded event streams (`lb-userspace/tests/vrrp_conformance/`).

pub mod announce;
pub mod ratelog;

use super::{
    packet::{self, Advert, Discard, Expect, Received},
    state::{Action, Event, Machine, Params, State},
};
use crate::config::vrrp::{InitialState, Instance};
use announce::Schedule;
use ratelog::RateLog;
use serde::Serialize;
use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};
use tokio::time::Instant;

/// What the instance is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The instance starts (its socket is open).
    Startup,
    /// The agent stops: with `release`, a Master sends priority 0 and gives
    /// everything back; without (`--dont-release-vrrp`), all stays as it is.
    Stop { release: bool },
    /// A VRRP message as the socket received it.
    Packet { rx: Received, msg: Vec<u8> },
    /// Something the socket got that is not even a VRRP message.
    NotVrrp(Discard),
    /// A deadline passed.
    Timer,
    /// Tracking's effective priority and fault.
    Track { priority: u8, fault: bool },
    /// Another member of the sync group became Master or Backup.
    Group(State),
    /// The data plane now follows `master` (answers [`Effect::DataPlane`]).
    Applied { master: bool },
}

/// How loud a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
}

/// What to do, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Send an advert with this priority (0: "I am leaving").
    Send {
        priority: u8,
    },
    /// Tell the data plane to follow mastership; [`Input::Applied`] answers.
    DataPlane {
        master: bool,
    },
    /// Add the instance's addresses, routes and rules.
    Up,
    /// Remove them.
    Down,
    /// Starting as Backup: remove addresses of ours that a previous agent
    /// left on the host, so two nodes never answer for a VIP.
    RemoveStale,
    /// A reload changed a Master's instance in place: remove what `old` has
    /// and `new` lacks, add the reverse.
    #[serde(skip)]
    Reconfigure {
        old: Arc<Instance>,
        new: Arc<Instance>,
    },
    /// One gratuitous ARP / unsolicited NA per address.
    Announce,
    /// The instance is now in `state` (everything it takes is done): status,
    /// notify, sync group. `followed`: it followed another group member.
    Entered {
        state: State,
        priority: u8,
        followed: bool,
    },
    Log {
        level: Level,
        message: String,
    },
    /// Stopped: the shell ends.
    Done,
}

/// What the instance counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub adverts_received: u64,
    pub discards: BTreeMap<Discard, u64>,
    /// Valid adverts with a lower priority heard as Master.
    pub lower_priority: u64,
    /// Where the last valid advert came from.
    pub last_from: Option<IpAddr>,
}

pub struct Core {
    inst: Arc<Instance>,
    machine: Machine,
    expect: Expect,
    /// The data plane follows mastership as last acknowledged.
    plane_held: bool,
    /// A [`Effect::DataPlane`] is unanswered.
    plane_waiting: bool,
    vips_up: bool,
    /// The state last reported with [`Effect::Entered`].
    reported: State,
    /// The pending state change follows another group member.
    followed: bool,
    stopping: bool,
    done: bool,
    announce: Schedule,
    log: RateLog,
    stats: Stats,
}

/// The advert interval in centiseconds, as the packet carries it.
pub fn interval_cs(inst: &Instance) -> u16 {
    (inst.advert_int.as_millis() / 10).min(u128::from(packet::MAX_INTERVAL_CS)) as u16
}

fn settings(inst: &Instance, primary: IpAddr) -> Params {
    Params {
        version: inst.version,
        interval: inst.advert_int,
        preempt: inst.preempt,
        preempt_delay: inst.preempt_delay,
        primary,
        master_hint: inst.initial_state == InitialState::Master,
        lower_prio_no_advert: inst.lower_prio_no_advert,
        higher_prio_send_advert: inst.higher_prio_send_advert,
    }
}

fn expect(inst: &Instance, primary: IpAddr) -> Expect {
    let ipv6 = inst.is_ipv6();
    Expect {
        version: inst.version,
        vrid: inst.vrid,
        ipv6,
        auth: inst.auth.as_ref().map(|a| packet::auth_data(&a.pass)),
        interval_cs: interval_cs(inst),
        peers: if inst.check_unicast_src {
            inst.unicast_peers.clone()
        } else {
            Vec::new()
        },
        own: vec![primary],
        addrs: inst
            .virtual_ipaddress
            .iter()
            .map(|a| a.address)
            .filter(|a| a.is_ipv6() == ipv6)
            .collect(),
    }
}

/// Every address the instance adds (virtual and excluded).
fn addresses(inst: &Instance) -> impl Iterator<Item = IpAddr> + '_ {
    inst.virtual_ipaddress
        .iter()
        .chain(&inst.virtual_ipaddress_excluded)
        .map(|a| a.address)
}

impl Core {
    /// An instance sending from `primary`, at tracking's `priority`.
    pub fn new(inst: Arc<Instance>, primary: IpAddr, priority: u8) -> Core {
        Core {
            machine: Machine::new(settings(&inst, primary), priority),
            expect: expect(&inst, primary),
            inst,
            plane_held: false,
            plane_waiting: false,
            vips_up: false,
            reported: State::Initialize,
            followed: false,
            stopping: false,
            done: false,
            announce: Schedule::default(),
            log: RateLog::default(),
            stats: Stats::default(),
        }
    }

    pub fn instance(&self) -> &Arc<Instance> {
        &self.inst
    }

    pub fn state(&self) -> State {
        self.machine.state()
    }

    pub fn priority(&self) -> u8 {
        self.machine.priority()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The address this instance's adverts come from.
    pub fn primary(&self) -> IpAddr {
        self.machine.settings.primary
    }

    /// The advert this instance sends, at `priority`.
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.inst.version,
            vrid: self.inst.vrid,
            priority,
            interval_cs: self.expect.interval_cs,
            addrs: self.expect.addrs.clone(),
            auth: self.expect.auth,
        }
    }

    /// When [`Input::Timer`] is due next.
    pub fn deadline(&self) -> Option<Instant> {
        let announce = if self.vips_up {
            self.announce.next()
        } else {
            None
        };
        [self.machine.deadline(), announce, self.log.next()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match input {
            Input::Startup => {
                let actions = self.machine.handle(Event::Startup, now);
                if !self.inst.owner() && !actions.contains(&Action::Enter(State::Master)) {
                    out.push(Effect::RemoveStale);
                }
                self.act(actions, now, &mut out);
            }
            Input::Stop { release: false } => {
                self.announce.clear();
                self.done = true;
                out.push(Effect::Done);
                return out;
            }
            Input::Stop { release: true } => {
                self.stopping = true;
                let actions = self.machine.handle(Event::Shutdown, now);
                self.act(actions, now, &mut out);
            }
            Input::Packet { rx, msg } => self.packet(&rx, &msg, now, &mut out),
            Input::NotVrrp(why) => self.discard(why, "not a VRRP message".into(), now, &mut out),
            Input::Timer => {
                let actions = self.machine.handle(Event::Timer, now);
                self.act(actions, now, &mut out);
                if self.vips_up {
                    let rounds = self.announce.take_due(now, &self.inst.garp);
                    out.extend((0..rounds).map(|_| Effect::Announce));
                }
                for (kind, held) in self.log.ended(now) {
                    out.push(Effect::Log {
                        level: level_of(kind),
                        message: format!(
                            "{held} more adverts {} in the last {} s",
                            what(kind),
                            ratelog::WINDOW.as_secs()
                        ),
                    });
                }
            }
            Input::Track { priority, fault } => {
                if priority != self.machine.priority() {
                    let actions = self.machine.handle(Event::Priority(priority), now);
                    self.act(actions, now, &mut out);
                }
                let actions = self.machine.handle(Event::Fault(fault), now);
                self.act(actions, now, &mut out);
            }
            Input::Group(state) => {
                let before = self.machine.state();
                let actions = self.machine.handle(Event::Group(state), now);
                self.followed |= self.machine.state() != before;
                self.act(actions, now, &mut out);
            }
            Input::Applied { master } => {
                self.plane_waiting = false;
                self.plane_held = master;
            }
        }
        self.settle(now, &mut out);
        if self.stopping
            && !self.plane_waiting
            && !self.plane_held
            && self.reported == State::Initialize
        {
            self.done = true;
            out.push(Effect::Done);
        }
        out
    }

    /// A reload hands the running instance a new definition (what
    /// [`super::diff::in_place`] allows: same version, interface and source).
    pub fn update(&mut self, new: Arc<Instance>, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        if new == self.inst {
            return out;
        }
        let old = std::mem::replace(&mut self.inst, new.clone());
        let primary = self.machine.settings.primary;
        self.expect = expect(&new, primary);
        self.machine.retune(settings(&new, primary), now);
        if self.vips_up {
            out.push(Effect::Reconfigure {
                old: old.clone(),
                new: new.clone(),
            });
            let gained = addresses(&new).any(|a| !addresses(&old).any(|b| b == a));
            if gained || old.garp != new.garp {
                // Announce anew (new addresses need it; the others take no harm).
                self.announce.as_master(now, &new.garp);
                let rounds = self.announce.take_due(now, &new.garp);
                out.extend((0..rounds).map(|_| Effect::Announce));
            }
        }
        out
    }

    fn packet(&mut self, rx: &Received, msg: &[u8], now: Instant, out: &mut Vec<Effect>) {
        let adv = match packet::decode(msg, rx, &self.expect) {
            Ok(adv) => adv,
            Err(why) => {
                let detail = self.detail(why, rx, msg);
                return self.discard(why, detail, now, out);
            }
        };
        self.stats.adverts_received += 1;
        self.stats.last_from = Some(rx.src);
        let actions = self.machine.handle(
            Event::Advert {
                src: rx.src,
                priority: adv.priority,
                interval: Duration::from_millis(u64::from(adv.interval_cs) * 10),
            },
            now,
        );
        self.act(actions, now, out);
    }

    /// Counts a dropped advert and logs it, rate-limited per reason.
    /// Adverts of other virtual routers on the link are normal: counted only.
    fn discard(&mut self, why: Discard, detail: String, now: Instant, out: &mut Vec<Effect>) {
        *self.stats.discards.entry(why).or_default() += 1;
        if why != Discard::Vrid && self.log.hit(why.name(), now) {
            out.push(Effect::Log {
                level: Level::Warn,
                message: format!("advert discarded ({}): {detail}", why.name()),
            });
        }
    }

    /// What a log line says about a dropped advert besides its reason.
    fn detail(&self, why: Discard, rx: &Received, msg: &[u8]) -> String {
        let from = format!("from {}", rx.src);
        match why {
            Discard::Ttl => format!("{from}, TTL {} (must be 255)", rx.ttl),
            Discard::Version => format!(
                "{from}, version {} (ours {})",
                msg.first().map_or(0, |b| b >> 4),
                self.inst.version
            ),
            Discard::Interval => format!(
                "{from}, advert_int {} s (ours {} s)",
                msg.get(5).copied().unwrap_or(0),
                self.expect.interval_cs / 100
            ),
            Discard::AuthPass => format!("{from}, authentication password differs"),
            Discard::AuthType => format!("{from}, authentication type differs"),
            Discard::Addresses => format!(
                "{from}, its virtual addresses differ from ours ({:?})",
                self.expect.addrs
            ),
            _ => from,
        }
    }

    fn act(&mut self, actions: Vec<Action>, now: Instant, out: &mut Vec<Effect>) {
        for a in actions {
            match a {
                Action::Send { priority } => out.push(Effect::Send { priority }),
                // What a new state takes is settled after all actions.
                Action::Enter(_) => {}
                Action::LowerPriority { src, priority } => {
                    self.stats.lower_priority += 1;
                    if self.log.hit(LOWER_PRIORITY, now) {
                        out.push(Effect::Log {
                            level: level_of(LOWER_PRIORITY),
                            message: format!(
                                "advert from {src} with lower priority {priority}, ours {}: another node believes it is Master",
                                self.machine.priority()
                            ),
                        });
                    }
                    if self.vips_up {
                        let g = &self.inst.garp;
                        self.announce
                            .lower_priority(now, g, self.machine.settings.interval);
                        let rounds = self.announce.take_due(now, g);
                        out.extend((0..rounds).map(|_| Effect::Announce));
                    }
                }
            }
        }
    }

    /// Brings what the instance holds in line with the machine's state, one
    /// step at a time: the data plane before the addresses when gaining
    /// mastership, the addresses before the data plane when losing it.
    fn settle(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let state = self.machine.state();
        if state == State::Master {
            if !self.plane_held {
                if !self.plane_waiting {
                    self.plane_waiting = true;
                    out.push(Effect::DataPlane { master: true });
                }
                return;
            }
            if !self.vips_up {
                self.vips_up = true;
                out.push(Effect::Up);
                self.announce.as_master(now, &self.inst.garp);
                let rounds = self.announce.take_due(now, &self.inst.garp);
                out.extend((0..rounds).map(|_| Effect::Announce));
            }
            self.report(State::Master, out);
            return;
        }
        if self.vips_up {
            self.vips_up = false;
            self.announce.clear();
            out.push(Effect::Down);
        }
        if self.plane_held {
            if !self.plane_waiting {
                self.plane_waiting = true;
                out.push(Effect::DataPlane { master: false });
            }
            return;
        }
        if !self.plane_waiting {
            self.report(state, out);
        }
    }

    fn report(&mut self, state: State, out: &mut Vec<Effect>) {
        if self.reported != state {
            self.reported = state;
            out.push(Effect::Entered {
                state,
                priority: self.machine.priority(),
                followed: std::mem::take(&mut self.followed),
            });
        }
    }
}

/// The rate-limited log kind of lower-priority adverts heard as Master
/// (the others are [`Discard::name`]s).
const LOWER_PRIORITY: &str = "lower_priority";

/// A discarded advert is a warning; a lower-priority one, news.
fn level_of(kind: &str) -> Level {
    if kind == LOWER_PRIORITY {
        Level::Info
    } else {
        Level::Warn
    }
}

/// How a log line names what happened to the adverts of one kind.
fn what(kind: &str) -> String {
    if kind == LOWER_PRIORITY {
        "with a lower priority heard".into()
    } else {
        format!("discarded ({kind})")
    }
}
