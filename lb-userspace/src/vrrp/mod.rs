//! VRRP (RFC 3768 v2, RFC 9568 v3): the instances of `config.vrrp`, each a
//! task that elects a Master with its peers and tells the agent
//! ([`crate::agent::Event::Mastership`]) so the data plane follows. A
//! reload ([`Vrrp::reload`]) changes only what differs ([`diff`]).

pub mod counters;
pub mod diff;
pub mod effects;
pub mod garp;
pub mod instance;
pub mod notify;
pub mod packet;
pub mod priority;
pub mod socket;
pub mod sources;
pub mod state;
pub mod sync_group;
pub mod track;

use crate::{
    agent,
    check::fifo::{FIFO_READER_GRACE, FifoReader},
    config::{Config, vrrp::SyncGroup},
    script::RunAs,
};
use anyhow::{Context, Result};
use counters::Counters;
use effects::Net;
use priority::{Combiner, Spec};
use sources::Sources;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

/// How often the status file is rewritten with fresh counters.
const PUBLISH: Duration = Duration::from_secs(1);
/// A stop that takes longer than this (a hung data-plane update) is abandoned.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A running instance and the combiner of what it tracks.
struct Member {
    handle: instance::Handle,
    combiner: Combiner,
}

/// A running sync group.
struct RunningGroup {
    def: SyncGroup,
    group: sync_group::Group,
    notifier: JoinHandle<()>,
    /// Folds every member's fault into each member's tracking; made once
    /// the members' combiners exist.
    faults: Option<JoinHandle<()>>,
}

impl Drop for RunningGroup {
    fn drop(&mut self) {
        self.notifier.abort();
        if let Some(f) = &self.faults {
            f.abort();
        }
    }
}

/// The running VRRP side of the agent.
pub struct Vrrp {
    /// What runs: the last config applied, less instances that failed to start.
    config: Arc<Config>,
    shared: instance::Shared,
    user: Option<RunAs>,
    sources: Sources,
    members: BTreeMap<String, Member>,
    groups: BTreeMap<String, RunningGroup>,
    publisher: JoinHandle<()>,
    counters: Counters,
    net: Arc<dyn Net>,
    /// `vrrp_notify_fifo`'s reader script (`notify_fifo` also gets LVS lines,
    /// so its reader belongs to the checkers' announcer).
    fifo_reader: Option<FifoReader>,
}

/// `config` with no VRRP and no static addresses: what runs before start.
fn without_vrrp(config: &Config) -> Config {
    let mut c = config.clone();
    c.vrrp = Default::default();
    c.static_net = Default::default();
    c
}

impl Vrrp {
    /// Applies the static addresses, starts the trackers and every instance;
    /// `counters` (shared with the metrics) get each instance's numbers.
    pub async fn start(
        config: Arc<Config>,
        events: mpsc::Sender<agent::Event>,
        net: Arc<dyn Net>,
        counters: Counters,
        alerts: crate::alert::Alerter,
    ) -> Result<Vrrp> {
        let global = &config.global;
        let user = global
            .script_user
            .as_deref()
            .map(RunAs::lookup)
            .transpose()
            .context("script_user")?;
        let shared = instance::Shared {
            events,
            net: net.clone(),
            notifier: notify::Notifier::new(global, user, alerts)?,
            counters: counters.clone(),
            group4: global.vrrp_mcast_group4.into(),
            group6: global.vrrp_mcast_group6.into(),
        };
        let c = counters.clone();
        let publisher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PUBLISH);
            loop {
                tick.tick().await;
                if let Err(e) = c.publish() {
                    warn!(error = %format!("{e:#}"), "writing the VRRP status file failed");
                }
            }
        });
        let mut vrrp = Vrrp {
            config: Arc::new(without_vrrp(&config)),
            shared,
            user,
            sources: Sources::default(),
            members: BTreeMap::new(),
            groups: BTreeMap::new(),
            publisher,
            counters,
            net,
            fifo_reader: None,
        };
        vrrp.apply(config.clone(), true).await?;
        // After the FIFO exists (Notifier::new created it).
        vrrp.fifo_reader = global.vrrp_notify_fifo.as_ref().and_then(|f| {
            let cmd = f.script.clone()?;
            Some(FifoReader::start(
                &f.path,
                cmd,
                user,
                global.enable_script_security,
            ))
        });
        Ok(vrrp)
    }

    /// What `xlb status` and metrics show.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Checks what a reload to `fresh` needs before anything changes (the
    /// scripts it would start: script security, users; tracking references).
    pub fn check(&self, fresh: &Config) -> Result<()> {
        self.sources
            .prepare(&fresh.vrrp, fresh.global.enable_script_security, self.user)?;
        for inst in &fresh.vrrp.instances {
            Spec::of(&fresh.vrrp, inst)?;
        }
        let g = |c: &Config| {
            let g = &c.global;
            (
                g.script_user.clone(),
                g.vrrp_mcast_group4,
                g.vrrp_mcast_group6,
                g.notify_fifo.clone(),
                g.vrrp_notify_fifo.clone(),
            )
        };
        if g(fresh) != g(&self.config) {
            warn!(
                "reload: script_user, vrrp_mcast_group4/6, notify_fifo and vrrp_notify_fifo take effect at the next restart"
            );
        }
        Ok(())
    }

    /// SIGHUP: makes the running instances those of `fresh`, changing only
    /// what differs ([`diff::plan`]). The agent keeps serving
    /// [`agent::Event`]s meanwhile: an instance leaving Master waits for the data plane.
    pub async fn reload(&mut self, fresh: Arc<Config>) -> Result<()> {
        self.apply(fresh, false).await
    }

    /// From `self.config` to `new`. With `strict` (start-up) the first
    /// failure is returned; on reload a failing part is logged and the rest applied.
    async fn apply(&mut self, new: Arc<Config>, strict: bool) -> Result<()> {
        let old = self.config.clone();
        let prepared =
            self.sources
                .prepare(&new.vrrp, new.global.enable_script_security, self.user)?;
        let mut specs = BTreeMap::new();
        for inst in &new.vrrp.instances {
            specs.insert(inst.name.clone(), Spec::of(&new.vrrp, inst)?);
        }

        let (gone, added) = diff::static_net(&old.static_net, &new.static_net);
        if gone != Default::default()
            && let Err(e) = self.net.remove_static(&gone).await
        {
            warn!(error = %format!("{e:#}"), "reload: removing static addresses failed");
        }
        if added != Default::default() {
            let res = self
                .net
                .apply_static(&added)
                .await
                .context("applying static_ipaddress / static_routes / static_rules");
            match res {
                Err(e) if strict => return Err(e),
                Err(e) => warn!(error = %format!("{e:#}"), "reload"),
                Ok(()) => {}
            }
        }

        let plan = diff::plan(&old.vrrp, &new.vrrp);
        if !strict {
            for name in &plan.stop {
                info!(instance = %name, "reload: stopping the removed instance");
            }
            for (name, why) in &plan.restart {
                info!(instance = %name, reason = %why, "reload: restarting the instance");
            }
            for name in &plan.start {
                info!(instance = %name, "reload: starting the new instance");
            }
        }
        let stopping: Vec<Member> = plan
            .stop
            .iter()
            .chain(plan.restart.iter().map(|(n, _)| n))
            .filter_map(|n| self.members.remove(n))
            .collect();
        let all = futures::future::join_all(stopping.into_iter().map(|m| m.handle.stop(true)));
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            warn!("reload: VRRP instances did not stop in time");
        }
        for name in &plan.stop {
            self.counters.unregister(name);
        }

        // Groups whose members stay keep their links; their notify follows the new definition.
        let same_members = |a: &SyncGroup, b: &SyncGroup| {
            a.members.iter().collect::<BTreeSet<_>>() == b.members.iter().collect::<BTreeSet<_>>()
        };
        self.groups.retain(|name, g| {
            new.vrrp
                .sync_groups
                .iter()
                .any(|d| &d.name == name && same_members(d, &g.def))
        });
        for def in &new.vrrp.sync_groups {
            match self.groups.get_mut(&def.name) {
                Some(g) if g.def == *def => {}
                Some(g) => {
                    g.notifier.abort();
                    g.notifier = g.group.notify(def.clone(), self.shared.notifier.clone());
                    g.def = def.clone();
                }
                None => {
                    let (group, notifier) =
                        sync_group::Group::start(def.clone(), self.shared.notifier.clone());
                    self.groups.insert(
                        def.name.clone(),
                        RunningGroup {
                            def: def.clone(),
                            group,
                            notifier,
                            faults: None,
                        },
                    );
                }
            }
        }

        // Tracking: sources by name, then each instance's combiner when what it reads changed.
        let renewed = self.sources.sync(&new.vrrp, prepared);
        let mut fresh_combiners = BTreeMap::new();
        let mut retracked = BTreeSet::new();
        for (name, spec) in specs {
            match self.members.get_mut(&name) {
                Some(m) if m.combiner.spec == spec && !spec.reads_any(&renewed) => {}
                Some(m) => {
                    m.combiner = Combiner::start(spec, &mut self.sources);
                    retracked.insert(name);
                }
                None => {
                    fresh_combiners.insert(name.clone(), Combiner::start(spec, &mut self.sources));
                    retracked.insert(name);
                }
            }
        }
        let own = |name: &str| {
            self.members
                .get(name)
                .map(|m| &m.combiner)
                .or_else(|| fresh_combiners.get(name))
                .map(|c| c.rx.clone())
        };
        let mut tracks: BTreeMap<String, watch::Receiver<(u8, bool)>> = BTreeMap::new();
        for g in self.groups.values_mut() {
            let members: Vec<&String> = g.def.members.iter().filter(|m| own(m).is_some()).collect();
            if g.faults.is_some() && !members.iter().any(|m| retracked.contains(*m)) {
                continue;
            }
            let inputs = members.iter().filter_map(|m| own(m)).collect();
            let (senders, receivers): (Vec<_>, Vec<_>) = members
                .iter()
                .filter_map(|m| own(m))
                .map(|rx| watch::channel(*rx.borrow()))
                .unzip();
            if let Some(f) = g.faults.take() {
                f.abort();
            }
            g.faults = Some(tokio::spawn(sync_group::run_faults(inputs, senders)));
            for (m, rx) in members.into_iter().zip(receivers) {
                tracks.insert(m.clone(), rx);
            }
        }
        for name in &retracked {
            if !tracks.contains_key(name)
                && let Some(rx) = own(name)
            {
                tracks.insert(name.clone(), rx);
            }
        }

        let mut failed = Vec::new();
        for inst in &new.vrrp.instances {
            let name = &inst.name;
            let track = tracks.remove(name);
            if let Some(m) = self.members.get(name) {
                let changed = old.vrrp.instances.iter().all(|o| o != inst);
                if changed || track.is_some() {
                    let inst = Arc::new(inst.clone());
                    m.handle.update(instance::Update { inst, track }).await;
                }
                continue;
            }
            let Some(combiner) = fresh_combiners.remove(name) else {
                continue;
            };
            let track = track.unwrap_or_else(|| combiner.rx.clone());
            let link = self
                .groups
                .values()
                .find(|g| g.def.members.contains(name))
                .map(|g| g.group.link());
            match instance::start(Arc::new(inst.clone()), self.shared.clone(), track, link).await {
                Ok(handle) => {
                    self.members
                        .insert(name.clone(), Member { handle, combiner });
                }
                Err(e) if strict => return Err(e),
                Err(e) => {
                    warn!(instance = %name, error = %format!("{e:#}"), "reload: the instance did not start");
                    self.counters.unregister(name);
                    failed.push(name.clone());
                }
            }
        }
        let used: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| m.combiner.spec.links().map(str::to_string))
            .collect();
        self.sources.keep_links(&used);
        self.config = if failed.is_empty() {
            new
        } else {
            // Not running: the next reload tries them again.
            let mut c = (*new).clone();
            c.vrrp.instances.retain(|i| !failed.contains(&i.name));
            Arc::new(c)
        };
        if let Err(e) = self.counters.publish() {
            warn!(error = %format!("{e:#}"), "writing the VRRP status file failed");
        }
        Ok(())
    }

    /// Stops every instance, then the trackers. With `release` (the default;
    /// not with `--dont-release-vrrp`) a Master sends priority 0 and removes
    /// its VIPs, routes and rules, notify_stop runs, and the static
    /// addresses go; without, everything stays on the host. The agent keeps
    /// serving [`agent::Event`]s meanwhile: leaving Master waits for the data plane.
    pub async fn stop(mut self, release: bool) {
        let members = std::mem::take(&mut self.members);
        let all = futures::future::join_all(members.into_values().map(|m| m.handle.stop(release)));
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            warn!("VRRP instances did not stop in time");
        }
        self.groups.clear();
        self.publisher.abort();
        if release && let Err(e) = self.net.remove_static(&self.config.static_net).await {
            warn!(error = %format!("{e:#}"), "removing the static addresses failed");
        }
        self.counters.remove_file();
        if let Some(r) = self.fifo_reader.take() {
            r.stop(FIFO_READER_GRACE).await;
        }
    }
}
