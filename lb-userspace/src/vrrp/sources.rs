//! The tracked inputs instances share, one task each: `vrrp_script`s and
//! `vrrp_track_file`s by name, interfaces by name. A reload keeps the ones
//! whose definition did not change (so a script keeps its rise/fall state
//! and moves no priority), restarts changed ones and ends unused ones.

use super::track;
use crate::{
    config::vrrp::{TrackFileDef, TrackScriptDef, Vrrp},
    script::RunAs,
};
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};
use tokio::{sync::watch, task::JoinHandle};

/// One running input: its definition, its task and what it publishes.
pub struct Source<T, D> {
    pub def: D,
    pub rx: watch::Receiver<T>,
    task: JoinHandle<()>,
}

impl<T, D> Drop for Source<T, D> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `vrrp_script` ready to run: its user looked up (script security was
/// checked when the config was loaded, and is again at each run).
pub struct Prepared {
    def: TrackScriptDef,
    user: Option<RunAs>,
    secure: bool,
}

pub struct Sources {
    pub scripts: HashMap<String, Source<bool, TrackScriptDef>>,
    pub files: HashMap<String, Source<i64, TrackFileDef>>,
    pub links: HashMap<String, Source<bool, ()>>,
    /// Where scripts run and files are read: not on the VRRP thread, which
    /// a fork or a slow disk must not hold up.
    offload: tokio::runtime::Handle,
}

impl Sources {
    pub fn new(offload: tokio::runtime::Handle) -> Sources {
        Sources {
            scripts: HashMap::new(),
            files: HashMap::new(),
            links: HashMap::new(),
            offload,
        }
    }

    /// The scripts of `vrrp` that are new or changed, their users looked up
    /// before anything changes: an error leaves all running.
    pub fn prepare(
        &self,
        vrrp: &Vrrp,
        secure: bool,
        default_user: Option<RunAs>,
    ) -> Result<Vec<Prepared>> {
        let mut out = Vec::new();
        for def in &vrrp.scripts {
            if self.scripts.get(&def.name).is_some_and(|s| s.def == *def) {
                continue;
            }
            let user = match &def.user {
                Some(u) => {
                    Some(RunAs::lookup(u).with_context(|| format!("vrrp_script {}", def.name))?)
                }
                None => default_user,
            };
            out.push(Prepared {
                def: def.clone(),
                user,
                secure,
            });
        }
        Ok(out)
    }

    /// Makes the scripts and files those of `vrrp`; returns the names whose
    /// source was (re)started, so instances reading them take the new one.
    pub fn sync(&mut self, vrrp: &Vrrp, prepared: Vec<Prepared>) -> BTreeSet<String> {
        let mut renewed = BTreeSet::new();
        self.scripts
            .retain(|name, _| vrrp.scripts.iter().any(|d| &d.name == name));
        for Prepared { def, user, secure } in prepared {
            let (tx, rx) = watch::channel(!def.init_fail);
            let task = self
                .offload
                .spawn(track::run_script(def.clone(), user, secure, tx));
            renewed.insert(def.name.clone());
            self.scripts
                .insert(def.name.clone(), Source { def, rx, task });
        }
        self.files.retain(|name, s| {
            vrrp.track_files
                .iter()
                .any(|d| &d.name == name && *d == s.def)
        });
        for def in &vrrp.track_files {
            if self.files.contains_key(&def.name) {
                continue;
            }
            let (tx, rx) = watch::channel(0);
            let task = self.offload.spawn(track::run_file(def.clone(), tx));
            renewed.insert(def.name.clone());
            self.files.insert(
                def.name.clone(),
                Source {
                    def: def.clone(),
                    rx,
                    task,
                },
            );
        }
        renewed
    }

    /// The link state of `ifname`, watched from now on if it was not yet.
    pub fn link(&mut self, ifname: &str) -> watch::Receiver<bool> {
        self.links
            .entry(ifname.to_string())
            .or_insert_with(|| {
                let (tx, rx) = watch::channel(true);
                let task = tokio::spawn(track::run_link(ifname.to_string(), tx));
                Source { def: (), rx, task }
            })
            .rx
            .clone()
    }

    /// Stops watching interfaces no instance tracks any more.
    pub fn keep_links(&mut self, used: &BTreeSet<String>) {
        self.links.retain(|name, _| used.contains(name));
    }
}
