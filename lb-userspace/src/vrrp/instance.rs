//! The I/O shell around one instance's [`Core`]: it owns the socket, sleeps
//! until the core's next deadline, feeds it adverts, tracking, sync-group
//! changes and the data plane's acknowledgements, and carries out the
//! effects it returns in order (adverts, the data plane, addresses,
//! announcements, status and notifications). The shell decides nothing;
//! it runs on the VRRP thread, where nothing else can hold it up.

use super::{
    Mastership,
    core::{Core, Effect, Input, Level},
    counters::Counters,
    effects::Net,
    notify::{Kind, Notifier},
    packet,
    socket::{self, VrrpSocket},
    state::State,
    sync_group::Link,
};
use crate::config::vrrp::Instance;
use anyhow::{Context, Result};
use std::{net::IpAddr, sync::Arc, time::Duration};
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
    /// Mastership changes for the agent (a channel of their own, which
    /// nothing else can fill).
    pub mastership: mpsc::UnboundedSender<Mastership>,
    pub net: Arc<dyn Net>,
    pub notifier: Notifier,
    pub counters: Counters,
    pub group4: IpAddr,
    pub group6: IpAddr,
}

/// The socket and where adverts go: what [`prepare`] makes before the
/// instance runs, so that a reload can fail before anything stops.
pub struct Wire {
    sock: VrrpSocket,
    dsts: Vec<IpAddr>,
    /// The VMAC this preparation created (deleted again if it is dropped unused).
    created_vmac: Option<String>,
}

impl Wire {
    fn open(inst: &Instance, shared: &Shared) -> Result<Wire> {
        let ipv6 = inst.is_ipv6();
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
        let sock = VrrpSocket::open(ifname, src, (!unicast).then_some(group))?;
        let dsts = if unicast {
            inst.unicast_peers.clone()
        } else {
            vec![group]
        };
        Ok(Wire {
            sock,
            dsts,
            created_vmac: None,
        })
    }
}

/// An instance ready to start: checked, its VMAC made, its socket open.
pub struct Prepared {
    inst: Arc<Instance>,
    wire: Wire,
}

impl Prepared {
    /// Gives back what preparing created (a reload that failed elsewhere).
    pub async fn discard(self, net: &dyn Net) {
        if let Some(v) = &self.wire.created_vmac
            && let Err(e) = net.vmac_delete(v).await
        {
            warn!(instance = %self.inst.name, error = %crate::logging::chain(&e), "deleting the VMAC failed");
        }
    }
}

/// Checks what the host must offer the instance, creates its VMAC and
/// opens its socket: everything that can fail before it starts.
pub async fn prepare(inst: Arc<Instance>, shared: &Shared) -> Result<Prepared> {
    let what = || format!("VRRP instance {} (interface {})", inst.name, inst.interface);
    shared.net.check(&inst).await.with_context(what)?;
    let mut created = None;
    if let Some(v) = &inst.vmac
        && nix::net::if_::if_nametoindex(v.name.as_str()).is_err()
    {
        shared
            .net
            .vmac_create(&inst.interface, &v.name, inst.vrid, inst.is_ipv6())
            .await
            .with_context(|| format!("{}: creating VMAC {}", what(), v.name))?;
        created = Some(v.name.clone());
    }
    match Wire::open(&inst, shared) {
        Ok(mut wire) => {
            wire.created_vmac = created;
            Ok(Prepared { inst, wire })
        }
        Err(e) => {
            if let Some(v) = created {
                let _ = shared.net.vmac_delete(&v).await;
            }
            Err(e.context(what()))
        }
    }
}

/// How an instance stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `--dont-release-vrrp`: everything stays on the host as it is.
    Keep,
    /// A Master sends priority 0 and removes its addresses; notify_stop
    /// runs. Its VMAC goes too unless `keep_vmac` (a restart that reuses it).
    Release { keep_vmac: bool },
}

impl Stop {
    pub fn release(keep_vmac: bool) -> Stop {
        Stop::Release { keep_vmac }
    }
}

/// A started instance: stop it with [`Handle::stop`].
pub struct Handle {
    stop: oneshot::Sender<Stop>,
    /// Each update with what tells the sender it was applied.
    updates: mpsc::Sender<(Update, oneshot::Sender<()>)>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Stops the instance as `how` says and waits for it.
    pub async fn stop(self, how: Stop) {
        let _ = self.stop.send(how);
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

/// Starts a prepared instance's task. `track` carries the effective
/// priority and fault from tracking.
pub fn start(
    prepared: Prepared,
    shared: Shared,
    track: watch::Receiver<(u8, bool)>,
    group: Option<Link>,
) -> Handle {
    let Prepared { inst, wire } = prepared;
    shared.counters.register(&inst.name, inst.priority);
    let (stop, stopped) = oneshot::channel();
    let (updates, updated) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let name = inst.name.clone();
        if let Err(e) = run(inst, shared, wire, track, group, stopped, updated).await {
            warn!(instance = %name, error = %crate::logging::chain(&e), "VRRP instance stopped on an error");
        }
    });
    Handle {
        stop,
        updates,
        task,
    }
}

struct Shell {
    core: Core,
    shared: Shared,
    wire: Wire,
    /// Where announcements leave: the VMAC, else the interface.
    announce_on: String,
    /// The acknowledgement of the data-plane change asked for last.
    pending: Option<(bool, oneshot::Receiver<()>)>,
    group_tx: Option<tokio::sync::broadcast::Sender<super::sync_group::Change>>,
    /// What the shared counters were last given.
    seen: (super::core::Stats, u8),
}

async fn run(
    inst: Arc<Instance>,
    shared: Shared,
    wire: Wire,
    mut track: watch::Receiver<(u8, bool)>,
    group: Option<Link>,
    mut stopped: oneshot::Receiver<Stop>,
    mut updates: mpsc::Receiver<(Update, oneshot::Sender<()>)>,
) -> Result<()> {
    let (group_tx, mut group_rx) = match group {
        Some(l) => (Some(l.tx), Some(l.rx)),
        None => (None, None),
    };
    let (priority, fault) = *track.borrow_and_update();
    let mut shell = Shell {
        core: Core::new(inst.clone(), wire.sock.src, priority),
        announce_on: inst
            .vmac
            .as_ref()
            .map_or(inst.interface.clone(), |v| v.name.clone()),
        shared,
        wire,
        pending: None,
        group_tx,
        seen: Default::default(),
    };
    let mut done = shell.feed(Input::Track { priority, fault }).await;
    done |= shell.feed(Input::Startup).await;
    let mut track_open = true;
    let mut stop_asked = false;
    let mut how = Stop::release(false);
    while !done {
        let deadline = shell.core.deadline();
        let input = tokio::select! {
            biased;
            r = &mut stopped, if !stop_asked => {
                stop_asked = true;
                how = r.unwrap_or(Stop::release(false));
                Input::Stop { release: how != Stop::Keep }
            }
            master = wait_ack(&mut shell.pending) => Input::Applied { master },
            got = shell.wire.sock.recv() => match got {
                Ok(Ok((rx, msg))) => Input::Packet { rx, msg },
                Ok(Err(why)) => Input::NotVrrp(why),
                Err(e) => {
                    // The interface may be going away; tracking puts us in Fault meanwhile.
                    warn!(instance = %shell.name(), error = %crate::logging::chain(&e), "receiving adverts failed");
                    tokio::time::sleep(RECV_RETRY).await;
                    continue;
                }
            },
            _ = sleep_until(deadline) => Input::Timer,
            changed = track.changed(), if track_open => {
                if changed.is_err() {
                    track_open = false;
                    continue;
                }
                let (priority, fault) = *track.borrow_and_update();
                Input::Track { priority, fault }
            }
            Some((u, applied)) = updates.recv() => {
                done = shell.update(u.inst).await;
                if let Some(t) = u.track {
                    track = t;
                    track_open = true;
                    let (priority, fault) = *track.borrow_and_update();
                    done |= shell.feed(Input::Track { priority, fault }).await;
                }
                let _ = applied.send(());
                continue;
            }
            change = group_change(&mut group_rx) => {
                let (member, state, followed) = change;
                // Following is not news to the members: acting on it
                // would let two crossing changes chase each other for ever.
                if member == shell.name() || followed {
                    continue;
                }
                Input::Group(state)
            }
        };
        done = shell.feed(input).await;
    }
    if how == Stop::release(false)
        && let Some(v) = &shell.core.instance().vmac
        && let Err(e) = shell.shared.net.vmac_delete(&v.name).await
    {
        warn!(instance = %shell.name(), error = %crate::logging::chain(&e), "deleting the VMAC failed");
    }
    Ok(())
}

/// The data plane's answer to the last change asked for (never, when none
/// is pending). An agent that went away counts as having answered.
async fn wait_ack(pending: &mut Option<(bool, oneshot::Receiver<()>)>) -> bool {
    let Some((master, rx)) = pending else {
        return std::future::pending().await;
    };
    let _ = rx.await;
    let master = *master;
    *pending = None;
    master
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

impl Shell {
    fn name(&self) -> &str {
        &self.core.instance().name
    }

    /// One input through the core, its effects carried out; true when the
    /// instance is done.
    async fn feed(&mut self, input: Input) -> bool {
        let effects = self.core.handle(input, Instant::now());
        self.count();
        self.execute(effects).await
    }

    async fn update(&mut self, new: Arc<Instance>) -> bool {
        let effects = self.core.update(new.clone(), Instant::now());
        self.shared
            .counters
            .update(&new.name, |s| s.base_priority = new.priority);
        let done = self.execute(effects).await;
        info!(instance = %new.name, "reload: instance changed in place");
        done
    }

    /// Copies what the core counted, and its priority, into the shared
    /// counters when they changed.
    fn count(&mut self) {
        let (stats, priority) = (self.core.stats(), self.core.priority());
        if (stats, priority) == (&self.seen.0, self.seen.1) {
            return;
        }
        self.seen = (stats.clone(), priority);
        self.shared
            .counters
            .update(&self.core.instance().name, |s| {
                s.adverts_received = stats.adverts_received;
                s.lower_priority = stats.lower_priority;
                if s.state != State::Master.name() {
                    s.master = stats.last_from;
                }
                s.priority = priority;
                for (why, n) in &stats.discards {
                    s.discards.insert(why.name().to_string(), *n);
                }
            });
    }

    async fn execute(&mut self, effects: Vec<Effect>) -> bool {
        for e in effects {
            match e {
                Effect::Send { priority } => self.send(priority).await,
                Effect::DataPlane { master } => {
                    let (applied, done) = oneshot::channel();
                    let m = Mastership {
                        instance: self.name().to_string(),
                        master,
                        applied,
                    };
                    // Unbounded: a mastership change never waits for room.
                    let _ = self.shared.mastership.send(m);
                    self.pending = Some((master, done));
                }
                Effect::Up => {
                    let start = std::time::Instant::now();
                    if let Err(e) = self.shared.net.up(self.core.instance()).await {
                        warn!(instance = %self.name(), error = %crate::logging::chain(&e), "adding the virtual addresses failed");
                    }
                    debug!(instance = %self.name(), took_us = start.elapsed().as_micros() as u64, "taking over: addresses added");
                }
                Effect::Down => {
                    if let Err(e) = self.shared.net.down(self.core.instance()).await {
                        warn!(instance = %self.name(), error = %crate::logging::chain(&e), "removing the virtual addresses failed");
                    }
                }
                Effect::RemoveStale => {
                    match self.shared.net.remove_stale(self.core.instance()).await {
                        Ok(0) => {}
                        Ok(n) => {
                            warn!(instance = %self.name(), removed = n, "starting as Backup: removed virtual addresses a previous agent left")
                        }
                        Err(e) => {
                            warn!(instance = %self.name(), error = %crate::logging::chain(&e), "removing stale virtual addresses failed")
                        }
                    }
                }
                Effect::Reconfigure { old, new } => {
                    update::reconfigure(&*self.shared.net, &old, &new).await
                }
                Effect::Announce => {
                    let inst = self.core.instance();
                    let addrs: Vec<IpAddr> = inst
                        .virtual_ipaddress
                        .iter()
                        .chain(&inst.virtual_ipaddress_excluded)
                        .map(|a| a.address)
                        .collect();
                    if let Err(e) = self.shared.net.announce(&self.announce_on, &addrs) {
                        warn!(interface = %self.announce_on, error = %crate::logging::chain(&e), "announcing the virtual addresses failed");
                    }
                }
                Effect::Entered {
                    state,
                    priority,
                    followed,
                } => self.entered(state, priority, followed),
                Effect::Log { level, message } => match level {
                    Level::Info => info!(instance = %self.name(), "{message}"),
                    Level::Warn => warn!(instance = %self.name(), "{message}"),
                },
                Effect::Done => return true,
            }
        }
        false
    }

    async fn send(&mut self, priority: u8) {
        let adv = self.core.advert(priority);
        for dst in &self.wire.dsts {
            let msg = packet::encode(&adv, self.wire.sock.src, *dst);
            if let Err(e) = self.wire.sock.send(&msg, *dst).await {
                warn!(instance = %self.name(), error = %crate::logging::chain(&e), "sending an advert failed");
                return;
            }
        }
        self.shared
            .counters
            .update(&self.core.instance().name, |s| s.adverts_sent += 1);
    }

    fn entered(&self, to: State, priority: u8, followed: bool) {
        let name = &self.core.instance().name;
        info!(instance = %name, to = to.name(), priority, "VRRP state change");
        let primary = self.core.primary();
        self.shared.counters.update(name, |s| {
            s.state = to.name().to_string();
            s.priority = priority;
            s.transitions += 1;
            s.master = (to == State::Master).then_some(primary);
            s.last_transition_unix_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
            if to == State::Master {
                s.became_master += 1;
            }
        });
        self.shared.counters.publish_soon();
        self.shared.notifier.changed(
            Kind::Instance,
            name,
            &self.core.instance().notify,
            to,
            priority,
        );
        if let Some(tx) = &self.group_tx {
            // No receiver left only while the agent stops. The group's
            // notify needs every member's state, followed or not.
            let _ = tx.send((name.clone(), to, followed));
        }
    }
}
