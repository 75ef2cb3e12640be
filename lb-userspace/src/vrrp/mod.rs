//! VRRP (RFC 3768 v2, RFC 9568 v3): the instances of `config.vrrp`, each a
//! sans-IO [`core::Core`] driven by a task ([`instance`]) that elects a
//! Master with its peers and tells the agent ([`Mastership`]) so the data
//! plane follows. Everything here runs on a thread of its own
//! ([`thread::VrrpThread`]). A change of config is prepared first (scripts
//! checked, VMACs made, sockets opened: everything that can fail) and only
//! then committed, changing only what differs ([`diff`]); a failed
//! preparation leaves the running instances exactly as they were.

pub mod core;
pub mod counters;
pub mod diff;
pub mod effects;
pub mod instance;
pub mod notify;
pub mod packet;
pub mod priority;
pub mod socket;
pub mod sources;
pub mod state;
pub mod sync_group;
pub mod thread;
pub mod track;

use crate::{
    config::{
        Config,
        vrrp::{StaticNet, SyncGroup},
    },
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
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

/// A stop that takes longer than this (a hung data-plane update) is abandoned.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// An instance became Master (`master`) or stopped being Master. The agent
/// answers on `applied` once the data plane follows, so the instance can
/// order it with adding or removing its addresses.
#[derive(Debug)]
pub struct Mastership {
    pub instance: String,
    pub master: bool,
    pub applied: oneshot::Sender<()>,
}

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

/// A change of config, prepared and not yet committed.
struct Pending {
    new: Arc<Config>,
    scripts: Vec<sources::Prepared>,
    specs: BTreeMap<String, Spec>,
    plan: diff::Plan,
    /// New and restarted instances, ready to start.
    ready: BTreeMap<String, instance::Prepared>,
    /// Static entries to add (added already) and to remove at commit.
    static_added: StaticNet,
    static_gone: StaticNet,
}

/// The running VRRP side of the agent (on the VRRP thread).
pub struct Vrrp {
    /// What runs: the last config committed.
    config: Arc<Config>,
    shared: instance::Shared,
    user: Option<RunAs>,
    sources: Sources,
    members: BTreeMap<String, Member>,
    groups: BTreeMap<String, RunningGroup>,
    counters: Counters,
    net: Arc<dyn Net>,
    pending: Option<Pending>,
}

/// `config` with no VRRP and no static addresses: what runs before start.
fn without_vrrp(config: &Config) -> Config {
    let mut c = config.clone();
    c.vrrp = Default::default();
    c.static_net = Default::default();
    c
}

impl Vrrp {
    /// The VRRP side with nothing running yet; [`Vrrp::prepare`] and
    /// [`Vrrp::commit`] start `config`'s instances. Scripts (tracking and
    /// notify) run on `offload`, never on the VRRP thread.
    pub fn new(
        config: &Config,
        shared: instance::Shared,
        offload: tokio::runtime::Handle,
    ) -> Result<Vrrp> {
        let user = config
            .global
            .script_user
            .as_deref()
            .map(RunAs::lookup)
            .transpose()
            .context("script_user")?;
        Ok(Vrrp {
            config: Arc::new(without_vrrp(config)),
            counters: shared.counters.clone(),
            net: shared.net.clone(),
            shared,
            user,
            sources: Sources::new(offload),
            members: BTreeMap::new(),
            groups: BTreeMap::new(),
            pending: None,
        })
    }

    /// Everything a change to `new` needs that can fail, done before
    /// anything running changes: scripts checked (security, users),
    /// tracking references resolved, VMACs created, sockets of new and
    /// restarted instances opened, static entries added. On error all of
    /// that is undone and the running config stays as it is.
    pub async fn prepare(&mut self, new: Arc<Config>) -> Result<()> {
        self.abort().await;
        let scripts =
            self.sources
                .prepare(&new.vrrp, new.global.enable_script_security, self.user)?;
        let mut specs = BTreeMap::new();
        for inst in &new.vrrp.instances {
            specs.insert(inst.name.clone(), Spec::of(&new.vrrp, inst)?);
        }
        let plan = diff::plan(&self.config.vrrp, &new.vrrp);
        let mut ready = BTreeMap::new();
        for name in plan.start.iter().chain(plan.restart.iter().map(|(n, _)| n)) {
            let Some(inst) = new.vrrp.instances.iter().find(|i| &i.name == name) else {
                continue;
            };
            match instance::prepare(Arc::new(inst.clone()), &self.shared).await {
                Ok(p) => {
                    ready.insert(name.clone(), p);
                }
                Err(e) => {
                    discard_all(ready, &*self.net).await;
                    return Err(e);
                }
            }
        }
        let (static_gone, static_added) =
            diff::static_net(&self.config.static_net, &new.static_net);
        if static_added != StaticNet::default()
            && let Err(e) = self.net.apply_static(&static_added).await
        {
            discard_all(ready, &*self.net).await;
            return Err(e.context("applying static_ipaddress / static_routes / static_rules"));
        }
        self.pending = Some(Pending {
            new,
            scripts,
            specs,
            plan,
            ready,
            static_added,
            static_gone,
        });
        Ok(())
    }

    /// Gives back what the last [`Vrrp::prepare`] made (the rest of a
    /// reload failed): the running config stays as it is.
    pub async fn abort(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        discard_all(p.ready, &*self.net).await;
        if p.static_added != StaticNet::default()
            && let Err(e) = self.net.remove_static(&p.static_added).await
        {
            warn!(error = %crate::logging::chain(&e), "undoing static entries of a failed reload failed");
        }
    }

    /// Makes the running instances those of the prepared config, changing
    /// only what differs ([`diff::plan`]). Instances leaving Master wait for
    /// the agent's data plane, which must keep serving [`Mastership`] meanwhile.
    pub async fn commit(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let Pending {
            new,
            scripts,
            specs,
            plan,
            mut ready,
            static_gone,
            ..
        } = p;
        let old = self.config.clone();
        for name in &plan.stop {
            info!(instance = %name, "stopping the removed instance");
        }
        for (name, why) in &plan.restart {
            info!(instance = %name, reason = %why, "restarting the instance");
        }
        for name in &plan.start {
            info!(instance = %name, "starting the instance");
        }
        let stopping: Vec<(Member, bool)> = plan
            .stop
            .iter()
            .chain(plan.restart.iter().map(|(n, _)| n))
            .filter_map(|n| {
                // A restarted instance that keeps its VMAC keeps the interface.
                let keep_vmac = new
                    .vrrp
                    .instances
                    .iter()
                    .find(|i| &i.name == n)
                    .and_then(|i| i.vmac.as_ref())
                    .is_some();
                self.members.remove(n).map(|m| (m, keep_vmac))
            })
            .collect();
        let all = futures::future::join_all(
            stopping
                .into_iter()
                .map(|(m, keep_vmac)| m.handle.stop(instance::Stop::release(keep_vmac))),
        );
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            warn!("VRRP instances did not stop in time");
        }
        for name in &plan.stop {
            self.counters.unregister(name);
        }
        if static_gone != StaticNet::default()
            && let Err(e) = self.net.remove_static(&static_gone).await
        {
            warn!(error = %crate::logging::chain(&e), "removing static addresses failed");
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
        let renewed = self.sources.sync(&new.vrrp, scripts);
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
            let (Some(combiner), Some(prepared)) =
                (fresh_combiners.remove(name), ready.remove(name))
            else {
                continue;
            };
            let track = track.unwrap_or_else(|| combiner.rx.clone());
            let group = self.groups.values().find(|g| g.def.members.contains(name));
            let link = group.map(|g| g.group.link());
            let handle = instance::start(prepared, self.shared.clone(), track, link);
            let group_name = group.map(|g| g.def.name.clone());
            self.counters.update(name, |s| s.sync_group = group_name);
            self.members
                .insert(name.clone(), Member { handle, combiner });
        }
        let used: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| m.combiner.spec.links().map(str::to_string))
            .collect();
        self.sources.keep_links(&used);
        self.config = new;
        self.counters.publish_soon();
    }

    /// Stops every instance, then the trackers. With `release` (the default;
    /// not with `--dont-release-vrrp`) a Master sends priority 0 and removes
    /// its VIPs, routes and rules, notify_stop runs, and the static
    /// addresses go; without, everything stays on the host. The agent keeps
    /// serving [`Mastership`] meanwhile: leaving Master waits for the data plane.
    pub async fn stop(mut self, release: bool) {
        self.abort().await;
        let members = std::mem::take(&mut self.members);
        let stop = if release {
            instance::Stop::release(false)
        } else {
            instance::Stop::Keep
        };
        let all = futures::future::join_all(members.into_values().map(|m| m.handle.stop(stop)));
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            warn!("VRRP instances did not stop in time");
        }
        self.groups.clear();
        if release && let Err(e) = self.net.remove_static(&self.config.static_net).await {
            warn!(error = %crate::logging::chain(&e), "removing the static addresses failed");
        }
        self.counters.remove_file();
    }
}

/// Gives back what preparing these instances made.
async fn discard_all(ready: BTreeMap<String, instance::Prepared>, net: &dyn Net) {
    for p in ready.into_values() {
        p.discard(net).await;
    }
}
