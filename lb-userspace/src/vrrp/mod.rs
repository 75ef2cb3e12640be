//! VRRP (RFC 3768 v2, RFC 9568 v3): the instances of `config.vrrp`, each a
//! task that elects a Master with its peers and tells the agent
//! ([`crate::agent::Event::Mastership`]) so the data plane follows.

pub mod counters;
pub mod effects;
pub mod garp;
pub mod instance;
pub mod notify;
pub mod packet;
pub mod socket;
pub mod state;
pub mod sync_group;
pub mod track;

use crate::{
    agent,
    check::fifo::{FIFO_READER_GRACE, FifoReader},
    config::{
        Config,
        vrrp::{TrackInterface, TrackRef},
    },
    script::{self, RunAs},
};
use anyhow::{Context, Result, bail};
use counters::Counters;
use effects::Net;
use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::warn;
use track::Input;

/// How often the status file is rewritten with fresh counters.
const PUBLISH: Duration = Duration::from_secs(1);
/// A stop that takes longer than this (a hung data-plane update) is abandoned.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The running VRRP side of the agent.
pub struct Vrrp {
    instances: Vec<instance::Handle>,
    /// Trackers, publishers: end with the instances.
    background: Vec<JoinHandle<()>>,
    counters: Counters,
    net: Arc<dyn Net>,
    config: Arc<Config>,
    /// `vrrp_notify_fifo`'s reader script (`notify_fifo` also gets LVS lines,
    /// so its reader belongs to the checkers' announcer).
    fifo_reader: Option<FifoReader>,
}

/// A tracked input of an instance: its definition's weight and a receiver.
enum Tracked {
    Check {
        rx: watch::Receiver<bool>,
        weight: i32,
        reverse: bool,
    },
    File {
        rx: watch::Receiver<i64>,
        weight: i32,
    },
}

impl Tracked {
    fn input(&self) -> Input {
        match self {
            Tracked::Check {
                rx,
                weight,
                reverse,
            } => Input::Check {
                up: *rx.borrow(),
                weight: *weight,
                reverse: *reverse,
            },
            Tracked::File { rx, weight } => Input::File {
                value: *rx.borrow(),
                weight: *weight,
            },
        }
    }

    async fn changed(&mut self) -> bool {
        match self {
            Tracked::Check { rx, .. } => rx.changed().await.is_ok(),
            Tracked::File { rx, .. } => rx.changed().await.is_ok(),
        }
    }
}

impl Vrrp {
    /// Applies the static addresses, starts the trackers and every instance.
    pub async fn start(
        config: Arc<Config>,
        events: mpsc::Sender<agent::Event>,
        net: Arc<dyn Net>,
        status_file: Option<PathBuf>,
        alerts: crate::alert::Alerter,
    ) -> Result<Vrrp> {
        let global = &config.global;
        let user = global
            .script_user
            .as_deref()
            .map(RunAs::lookup)
            .transpose()
            .context("script_user")?;
        net.apply_static(&config.static_net)
            .await
            .context("applying static_ipaddress / static_routes / static_rules")?;
        // A director without VRRP shows no VRRP section in `xlb status`.
        let counters = Counters::new(status_file.filter(|_| !config.vrrp.instances.is_empty()));
        let shared = instance::Shared {
            events,
            net: net.clone(),
            notifier: notify::Notifier::new(global, user, alerts)?,
            counters: counters.clone(),
            group4: global.vrrp_mcast_group4.into(),
            group6: global.vrrp_mcast_group6.into(),
        };
        let mut background = Vec::new();
        let mut scripts: HashMap<&str, watch::Receiver<bool>> = HashMap::new();
        for def in &config.vrrp.scripts {
            if global.enable_script_security {
                script::check_secure(&def.script)
                    .with_context(|| format!("vrrp_script {}", def.name))?;
            }
            let user = match &def.user {
                Some(u) => {
                    Some(RunAs::lookup(u).with_context(|| format!("vrrp_script {}", def.name))?)
                }
                None => user,
            };
            let (tx, rx) = watch::channel(!def.init_fail);
            background.push(tokio::spawn(track::run_script(def.clone(), user, tx)));
            scripts.insert(&def.name, rx);
        }
        let mut files: HashMap<&str, (watch::Receiver<i64>, i32)> = HashMap::new();
        for def in &config.vrrp.track_files {
            let (tx, rx) = watch::channel(0);
            background.push(tokio::spawn(track::run_file(def.clone(), tx)));
            files.insert(&def.name, (rx, def.weight));
        }
        let mut links: HashMap<String, watch::Receiver<bool>> = HashMap::new();
        let group_of = |name: &str| {
            config
                .vrrp
                .sync_groups
                .iter()
                .position(|g| g.members.iter().any(|m| m == name))
        };
        let mut own = Vec::new();
        for inst in &config.vrrp.instances {
            let mut tracked = Vec::new();
            // A group's tracking applies to each of its members.
            let group = group_of(&inst.name).map(|g| &config.vrrp.sync_groups[g]);
            let track_interfaces = inst
                .track_interfaces
                .iter()
                .chain(group.into_iter().flat_map(|g| &g.track_interfaces));
            let track_scripts = inst
                .track_scripts
                .iter()
                .chain(group.into_iter().flat_map(|g| &g.track_scripts));
            let track_files = inst
                .track_files
                .iter()
                .chain(group.into_iter().flat_map(|g| &g.track_files));
            // As keepalived: the instance's own interface down is Fault.
            let own_link = TrackInterface {
                name: inst.interface.clone(),
                weight: 0,
            };
            for t in std::iter::once(&own_link).chain(track_interfaces) {
                let rx = links.entry(t.name.clone()).or_insert_with(|| {
                    let (tx, rx) = watch::channel(true);
                    background.push(tokio::spawn(track::run_link(t.name.clone(), tx)));
                    rx
                });
                tracked.push(Tracked::Check {
                    rx: rx.clone(),
                    weight: t.weight,
                    reverse: false,
                });
            }
            for TrackRef { name, weight } in track_scripts {
                let (Some(rx), Some(def)) = (
                    scripts.get(name.as_str()),
                    config.vrrp.scripts.iter().find(|d| &d.name == name),
                ) else {
                    bail!("instance {}: no vrrp_script `{name}`", inst.name);
                };
                tracked.push(Tracked::Check {
                    rx: rx.clone(),
                    weight: weight.unwrap_or(def.weight),
                    reverse: def.weight_reverse,
                });
            }
            for TrackRef { name, weight } in track_files {
                let Some((rx, w)) = files.get(name.as_str()) else {
                    bail!("instance {}: no vrrp_track_file `{name}`", inst.name);
                };
                tracked.push(Tracked::File {
                    rx: rx.clone(),
                    weight: weight.unwrap_or(*w),
                });
            }
            let base = inst.priority;
            let now = move |t: &[Tracked]| {
                track::effective(base, &t.iter().map(Tracked::input).collect::<Vec<_>>())
            };
            let (tx, rx) = watch::channel(now(&tracked));
            background.push(tokio::spawn(async move {
                while !tracked.is_empty() {
                    let any = futures::future::select_all(
                        tracked.iter_mut().map(|t| Box::pin(t.changed())),
                    );
                    if !any.await.0 {
                        break;
                    }
                    tx.send_if_modified(|old| {
                        let fresh = now(&tracked);
                        std::mem::replace(old, fresh) != fresh
                    });
                }
                // Nothing (more) to track: the value stands until VRRP stops.
                std::future::pending::<()>().await;
                drop(tx);
            }));
            own.push(rx);
        }
        // Members of a sync group see each other's faults; the others their own.
        let mut tracks: Vec<Option<watch::Receiver<(u8, bool)>>> =
            own.iter().map(|_| None).collect();
        let mut groups = Vec::new();
        for (g, def) in config.vrrp.sync_groups.iter().enumerate() {
            let members: Vec<usize> = (0..own.len())
                .filter(|&i| group_of(&config.vrrp.instances[i].name) == Some(g))
                .collect();
            let (senders, receivers): (Vec<_>, Vec<_>) = members
                .iter()
                .map(|&i| watch::channel(*own[i].borrow()))
                .unzip();
            let inputs = members.iter().map(|&i| own[i].clone()).collect();
            background.push(tokio::spawn(sync_group::run_faults(inputs, senders)));
            for (&i, rx) in members.iter().zip(receivers) {
                tracks[i] = Some(rx);
            }
            let (group, task) = sync_group::Group::start(def.clone(), shared.notifier.clone());
            background.push(task);
            groups.push(group);
        }
        let mut instances = Vec::new();
        for (i, inst) in config.vrrp.instances.iter().enumerate() {
            let track = tracks[i].take().unwrap_or_else(|| own[i].clone());
            let link = group_of(&inst.name).map(|g| groups[g].link());
            instances
                .push(instance::start(Arc::new(inst.clone()), shared.clone(), track, link).await?);
        }
        let c = counters.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PUBLISH);
            loop {
                tick.tick().await;
                if let Err(e) = c.publish() {
                    warn!(error = %format!("{e:#}"), "writing the VRRP status file failed");
                }
            }
        }));
        // After the FIFO exists (Notifier::new created it).
        let fifo_reader = global.vrrp_notify_fifo.as_ref().and_then(|f| {
            let cmd = f.script.clone()?;
            Some(FifoReader::start(
                &f.path,
                cmd,
                user,
                global.enable_script_security,
            ))
        });
        Ok(Vrrp {
            instances,
            background,
            counters,
            net,
            config,
            fifo_reader,
        })
    }

    /// What `xlb status` and metrics show.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops every instance (priority-0 adverts, VIPs removed, notify_stop),
    /// then removes the static addresses. The agent keeps serving
    /// [`agent::Event`]s meanwhile: leaving Master waits for the data plane.
    pub async fn stop(self) {
        let all = futures::future::join_all(self.instances.into_iter().map(|i| i.stop()));
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            warn!("VRRP instances did not stop in time");
        }
        for b in self.background {
            b.abort();
        }
        if let Err(e) = self.net.remove_static(&self.config.static_net).await {
            warn!(error = %format!("{e:#}"), "removing the static addresses failed");
        }
        self.counters.remove_file();
        if let Some(r) = self.fifo_reader {
            r.stop(FIFO_READER_GRACE).await;
        }
    }
}
