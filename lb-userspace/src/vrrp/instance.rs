//! One VRRP instance as a task: adverts in, timers, tracking and stop go
//! into the state machine; its actions come out as adverts, mastership for
//! the data plane, address changes, announcements and notifications.
//!
//! Order of a change (so that no packet is dropped for lack of a forwarder
//! and none is forwarded twice): becoming Master sends the advert first,
//! then activates the VIP's services in the data plane (and waits until the
//! maps are written), then adds the VIPs, then announces them; leaving
//! Master stops announcing, removes the VIPs, then deactivates the services.

use super::{
    counters::Counters,
    effects::Net,
    garp::Announcer,
    notify::{Kind, Notifier},
    packet::{self, Advert, Expect},
    socket::{self, VrrpSocket},
    state::{Action, Event, Machine, Settings, State},
    sync_group::Link,
};
use crate::{agent, config::vrrp::Instance};
use anyhow::{Context, Result};
use std::{collections::BTreeSet, net::IpAddr, sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, info, warn};

mod update;
pub use update::Update;

/// Pause after a failed receive, so a broken socket does not spin.
const RECV_RETRY: Duration = Duration::from_millis(200);

/// What every instance shares.
#[derive(Clone)]
pub struct Shared {
    pub events: mpsc::Sender<agent::Event>,
    pub net: Arc<dyn Net>,
    pub notifier: Notifier,
    pub counters: Counters,
    pub group4: IpAddr,
    pub group6: IpAddr,
}

/// The instance's address family: that of its first virtual address.
pub fn is_ipv6(inst: &Instance) -> bool {
    inst.virtual_ipaddress
        .first()
        .map(|a| a.address.is_ipv6())
        .or(inst.unicast_src_ip.map(|a| a.is_ipv6()))
        .unwrap_or(false)
}

/// The advert interval in centiseconds, as the packet carries it.
fn interval_cs(inst: &Instance) -> u16 {
    (inst.advert_int.as_millis() / 10).min(u128::from(packet::MAX_INTERVAL_CS)) as u16
}

/// Everything fixed about a running instance.
struct Wire {
    sock: VrrpSocket,
    dsts: Vec<IpAddr>,
    expect: Expect,
    advert: Advert,
}

impl Wire {
    fn open(inst: &Instance, shared: &Shared) -> Result<Wire> {
        let ipv6 = is_ipv6(inst);
        let unicast = !inst.unicast_peers.is_empty();
        let configured = if unicast {
            inst.unicast_src_ip
        } else {
            inst.mcast_src_ip
        };
        // Adverts leave from the VMAC (with the VRRP MAC) unless `vmac_xmit_base`.
        let ifname = match &inst.vmac {
            Some(v) if !v.xmit_base => v.name.as_str(),
            _ => inst.interface.as_str(),
        };
        // An IPv4 VMAC has no address of its own: then the base interface's is used.
        let src = socket::source_address(ifname, ipv6, configured)
            .or_else(|_| socket::source_address(&inst.interface, ipv6, configured))?;
        let group = if ipv6 { shared.group6 } else { shared.group4 };
        let sock = VrrpSocket::open(ifname, src, (!unicast).then_some(group))
            .with_context(|| format!("VRRP instance {}", inst.name))?;
        let dsts = if unicast {
            inst.unicast_peers.clone()
        } else {
            vec![group]
        };
        let interval_cs = interval_cs(inst);
        let auth = inst.auth.as_ref().map(|a| packet::auth_data(&a.pass));
        let addrs: Vec<IpAddr> = inst
            .virtual_ipaddress
            .iter()
            .map(|a| a.address)
            .filter(|a| a.is_ipv6() == ipv6)
            .collect();
        Ok(Wire {
            expect: Expect {
                version: inst.version,
                vrid: inst.vrid,
                ipv6,
                auth,
                interval_cs,
                peers: if inst.check_unicast_src {
                    inst.unicast_peers.clone()
                } else {
                    Vec::new()
                },
                own: vec![src],
            },
            advert: Advert {
                version: inst.version,
                vrid: inst.vrid,
                priority: 0,
                interval_cs,
                addrs,
                auth,
            },
            sock,
            dsts,
        })
    }

    async fn send(&self, priority: u8) -> Result<()> {
        let adv = Advert {
            priority,
            ..self.advert.clone()
        };
        for dst in &self.dsts {
            let msg = packet::encode(&adv, self.sock.src, *dst);
            self.sock.send(&msg, *dst).await?;
        }
        Ok(())
    }
}

/// A started instance: stop it with [`Handle::stop`].
pub struct Handle {
    /// `true`: release (priority-0 advert if Master, VIPs removed).
    stop: oneshot::Sender<bool>,
    /// Each update with what tells the sender it was applied.
    updates: mpsc::Sender<(Update, oneshot::Sender<()>)>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Stops the instance and waits for it: with `release`, a Master sends
    /// priority 0 and removes its VIPs, and notify_stop runs; without
    /// (`--dont-release-vrrp`), everything stays on the host as it is.
    pub async fn stop(self, release: bool) {
        let _ = self.stop.send(release);
        let _ = self.task.await;
    }

    /// Hands the running instance a new definition (reload, see [`Update`])
    /// and waits until it has been applied.
    pub async fn update(&self, update: Update) {
        let (done, applied) = oneshot::channel();
        if self.updates.send((update, done)).await.is_ok() {
            let _ = applied.await;
        }
    }
}

/// Opens the instance's socket and starts its task. `track` carries the
/// effective priority and fault from tracking.
pub async fn start(
    inst: Arc<Instance>,
    shared: Shared,
    track: watch::Receiver<(u8, bool)>,
    group: Option<Link>,
) -> Result<Handle> {
    shared
        .net
        .check(&inst)
        .await
        .with_context(|| format!("VRRP instance {}", inst.name))?;
    if let Some(v) = &inst.vmac {
        shared
            .net
            .vmac_create(&inst.interface, &v.name, inst.vrid, is_ipv6(&inst))
            .await
            .with_context(|| format!("VRRP instance {}: creating VMAC {}", inst.name, v.name))?;
    }
    let wire = Wire::open(&inst, &shared)?;
    shared.counters.register(&inst.name, inst.priority);
    let (stop, stopped) = oneshot::channel();
    let (updates, updated) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let name = inst.name.clone();
        if let Err(e) = run(inst, shared, wire, track, group, stopped, updated).await {
            warn!(instance = %name, error = %format!("{e:#}"), "VRRP instance stopped on an error");
        }
    });
    Ok(Handle {
        stop,
        updates,
        task,
    })
}

struct Runner {
    inst: Arc<Instance>,
    shared: Shared,
    wire: Wire,
    machine: Machine,
    announcer: Announcer,
    garp: Option<JoinHandle<()>>,
    /// The addresses a peer's advert listed last time, to log a mismatch once.
    peer_addrs: Option<BTreeSet<IpAddr>>,
    /// Where our state changes go when we are in a sync group.
    group_tx: Option<tokio::sync::broadcast::Sender<super::sync_group::Change>>,
    /// Handling another member's change (which is not passed on).
    following: bool,
}

async fn run(
    inst: Arc<Instance>,
    shared: Shared,
    wire: Wire,
    mut track: watch::Receiver<(u8, bool)>,
    group: Option<Link>,
    mut stopped: oneshot::Receiver<bool>,
    mut updates: mpsc::Receiver<(Update, oneshot::Sender<()>)>,
) -> Result<()> {
    let (group_tx, mut group_rx) = match group {
        Some(l) => (Some(l.tx), Some(l.rx)),
        None => (None, None),
    };
    let (priority, fault) = *track.borrow_and_update();
    let settings = Settings {
        version: inst.version,
        interval: inst.advert_int,
        preempt: inst.preempt,
        preempt_delay: inst.preempt_delay,
        primary: wire.sock.src,
        master_hint: inst.initial_state == crate::config::vrrp::InitialState::Master,
    };
    let announcer = Announcer {
        net: shared.net.clone(),
        ifname: inst
            .vmac
            .as_ref()
            .map_or(inst.interface.clone(), |v| v.name.clone()),
        addrs: inst
            .virtual_ipaddress
            .iter()
            .chain(&inst.virtual_ipaddress_excluded)
            .map(|a| a.address)
            .collect(),
    };
    let mut r = Runner {
        machine: Machine::new(settings, priority),
        inst,
        shared,
        wire,
        announcer,
        garp: None,
        peer_addrs: None,
        group_tx,
        following: false,
    };
    r.step(Event::Fault(fault)).await;
    r.step(Event::Startup).await;
    let mut track_open = true;
    let release = loop {
        let deadline = r.machine.deadline();
        tokio::select! {
            release = &mut stopped => break release.unwrap_or(true),
            changed = track.changed(), if track_open => {
                if changed.is_err() {
                    track_open = false;
                    continue;
                }
                let now = *track.borrow_and_update();
                r.follow(now).await;
            }
            Some((u, done)) = updates.recv() => {
                r.update(u.inst).await;
                if let Some(t) = u.track {
                    track = t;
                    track_open = true;
                    let now = *track.borrow_and_update();
                    r.follow(now).await;
                }
                let _ = done.send(());
            }
            got = r.wire.sock.recv() => match got {
                Ok(got) => r.received(got).await,
                Err(e) => {
                    // The interface may be going away; tracking puts us in Fault meanwhile.
                    warn!(instance = %r.inst.name, error = %format!("{e:#}"), "receiving adverts failed");
                    tokio::time::sleep(RECV_RETRY).await;
                }
            },
            _ = sleep_until(deadline) => r.step(Event::Timer).await,
            change = group_change(&mut group_rx) => {
                let (member, state, followed) = change;
                if member != r.inst.name && !followed {
                    // Following is not news to the members: acting on it
                    // would let two crossing changes chase each other for ever.
                    r.following = true;
                    r.step(Event::Group(state)).await;
                    r.following = false;
                }
            }
        }
    };
    if !release {
        // --dont-release-vrrp: VIPs, routes, rules and the VMAC stay; no priority 0.
        if let Some(g) = r.garp.take() {
            g.abort();
        }
        return Ok(());
    }
    r.step(Event::Shutdown).await;
    if let Some(v) = &r.inst.vmac
        && let Err(e) = r.shared.net.vmac_delete(&v.name).await
    {
        warn!(instance = %r.inst.name, error = %format!("{e:#}"), "deleting the VMAC failed");
    }
    Ok(())
}

/// The next change another sync group member reports (never, outside a group).
async fn group_change(
    rx: &mut Option<tokio::sync::broadcast::Receiver<super::sync_group::Change>>,
) -> super::sync_group::Change {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(c) => return c,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return std::future::pending().await;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    fn name(&self) -> &str {
        &self.inst.name
    }

    async fn received(
        &mut self,
        got: std::result::Result<(packet::Received, Vec<u8>), packet::Discard>,
    ) {
        let decoded =
            got.and_then(|(rx, msg)| packet::decode(&msg, &rx, &self.wire.expect).map(|a| (rx, a)));
        match decoded {
            Err(why) => {
                // Other virtual routers on the link are normal; count them quietly.
                if why != packet::Discard::Vrid {
                    debug!(instance = %self.name(), reason = why.name(), "advert discarded");
                }
                self.shared.counters.discard(&self.inst.name, why);
            }
            Ok((rx, adv)) => {
                self.shared
                    .counters
                    .update(&self.inst.name, |s| s.adverts_received += 1);
                self.check_addresses(rx.src, &adv);
                let interval = Duration::from_millis(u64::from(adv.interval_cs) * 10);
                self.step(Event::Advert {
                    src: rx.src,
                    priority: adv.priority,
                    interval,
                })
                .await;
            }
        }
    }

    /// keepalived logs a peer whose address list differs from ours; so do we, once per change.
    fn check_addresses(&mut self, src: IpAddr, adv: &Advert) {
        let theirs: BTreeSet<IpAddr> = adv.addrs.iter().copied().collect();
        let ours: BTreeSet<IpAddr> = self.wire.advert.addrs.iter().copied().collect();
        if theirs == ours || adv.priority == 0 {
            return;
        }
        self.shared
            .counters
            .update(&self.inst.name, |s| s.address_mismatch += 1);
        if self.peer_addrs.as_ref() != Some(&theirs) {
            warn!(
                instance = %self.inst.name, peer = %src, ours = ?ours, theirs = ?theirs,
                "the advert's virtual addresses differ from ours"
            );
            self.peer_addrs = Some(theirs);
        }
    }

    async fn step(&mut self, event: Event) {
        let before = self.machine.state();
        let actions = self.machine.handle(event, Instant::now());
        for a in actions {
            match a {
                Action::Send { priority } => match self.wire.send(priority).await {
                    Ok(()) => self
                        .shared
                        .counters
                        .update(&self.inst.name, |s| s.adverts_sent += 1),
                    Err(e) => {
                        warn!(instance = %self.name(), error = %format!("{e:#}"), "sending an advert failed")
                    }
                },
                Action::Reannounce => {
                    info!(instance = %self.name(), "another Master seen: announcing again");
                    let a = self.announcer.clone();
                    let g = self.inst.garp;
                    tokio::spawn(async move { a.burst(g.master_repeat, g.interval).await });
                }
                Action::Enter(state) => self.enter(before, state).await,
            }
        }
        let priority = self.machine.priority();
        self.shared
            .counters
            .update(&self.inst.name, |s| s.priority = priority);
    }

    async fn enter(&mut self, from: State, to: State) {
        info!(instance = %self.name(), from = from.name(), to = to.name(), priority = self.machine.priority(), "VRRP state change");
        if to == State::Master {
            // Timed, so a slow takeover shows which step it waited on.
            let start = std::time::Instant::now();
            self.mastership(true).await;
            let data_plane = start.elapsed();
            if let Err(e) = self.shared.net.up(&self.inst).await {
                warn!(instance = %self.name(), error = %format!("{e:#}"), "adding the virtual addresses failed");
            }
            let addresses = start.elapsed();
            let a = self.announcer.clone();
            self.garp = Some(tokio::spawn(a.as_master(self.inst.garp)));
            debug!(instance = %self.name(), ?data_plane, ?addresses, "taking over: data plane followed, addresses added");
        } else if from == State::Master {
            if let Some(g) = self.garp.take() {
                g.abort();
            }
            if let Err(e) = self.shared.net.down(&self.inst).await {
                warn!(instance = %self.name(), error = %format!("{e:#}"), "removing the virtual addresses failed");
            }
            self.mastership(false).await;
        }
        let priority = self.machine.priority();
        self.shared.counters.update(&self.inst.name, |s| {
            s.state = to.name().to_string();
            s.transitions += 1;
            if to == State::Master {
                s.became_master += 1;
            }
        });
        if let Err(e) = self.shared.counters.publish() {
            warn!(error = %format!("{e:#}"), "writing the VRRP status file failed");
        }
        self.shared.notifier.changed(
            Kind::Instance,
            &self.inst.name,
            &self.inst.notify,
            to,
            priority,
        );
        if let Some(tx) = &self.group_tx {
            // No receiver left only while the agent stops. The group's
            // notify needs every member's state, followed or not.
            let _ = tx.send((self.inst.name.clone(), to, self.following));
        }
    }

    /// Tells the agent and waits until the data plane follows.
    async fn mastership(&self, master: bool) {
        let (applied, done) = oneshot::channel();
        let ev = agent::Event::Mastership {
            instance: self.inst.name.clone(),
            master,
            applied,
        };
        if self.shared.events.send(ev).await.is_ok() {
            let _ = done.await;
        }
    }
}
