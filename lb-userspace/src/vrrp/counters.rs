//! Per-instance state and counters, shared between the instance tasks and
//! their readers: a JSON file that `xlb status` prints (written atomically
//! on every change, so a reader never sees half a snapshot and the file
//! outlives a crashed agent to show its last state), and [`VrrpStatus`] for
//! the metrics endpoint.

use super::{packet::Discard, state::State};
use crate::runfiles::StateFile;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

/// Where the agent with maps pinned at `pin_path` keeps its VRRP status
/// (bpffs holds no regular files, so the path is derived instead).
pub fn status_path(pin_path: &Path) -> PathBuf {
    crate::runfiles::for_pins(pin_path, "vrrp-", ".json")
}

/// How often the status file is rewritten with fresh counters.
const PUBLISH: std::time::Duration = std::time::Duration::from_secs(1);

/// One instance as it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub state: String,
    pub priority: u8,
    /// The configured priority (tracking moves `priority` away from it).
    pub base_priority: u8,
    pub transitions: u64,
    pub became_master: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Valid adverts with a lower priority heard as Master (another node
    /// believed it was Master).
    #[serde(default)]
    pub lower_priority: u64,
    /// Dropped adverts by reason ([`Discard::name`]).
    pub discards: BTreeMap<String, u64>,
    /// The sync group it belongs to.
    #[serde(default)]
    pub sync_group: Option<String>,
    /// The Master as this instance knows it: its own address while Master,
    /// else where the last valid advert came from (none heard yet: null).
    #[serde(default)]
    pub master: Option<IpAddr>,
    /// When it last changed state, in seconds since the epoch.
    #[serde(default)]
    pub last_transition_unix_s: Option<u64>,
}

/// Everything, for `xlb status` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub pid: u32,
    pub instances: Vec<InstanceStatus>,
}

/// The shared, mutable view; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    inner: Arc<Mutex<BTreeMap<String, InstanceStatus>>>,
    file: StateFile,
    /// Wakes the publisher (a state changed).
    poke: Arc<tokio::sync::Notify>,
}

impl Counters {
    /// Counters that are also written to `file` on every state change.
    pub fn new(file: Option<PathBuf>) -> Counters {
        Counters {
            inner: Default::default(),
            file: StateFile::new(file),
            poke: Default::default(),
        }
    }

    /// Asks [`Counters::publisher`] to write the status file now.
    pub fn publish_soon(&self) {
        self.poke.notify_one();
    }

    /// Writes the status file on every [`Counters::publish_soon`] and every
    /// second; runs off the VRRP thread, so a slow disk never holds up adverts.
    pub async fn publisher(self) {
        let mut tick = tokio::time::interval(PUBLISH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.poke.notified() => {}
            }
            if let Err(e) = self.publish() {
                tracing::warn!(error = %crate::logging::chain(&e), "writing the VRRP status file failed");
            }
        }
    }

    /// A starting instance; one restarted by a reload keeps its counts.
    pub fn register(&self, name: &str, priority: u8) {
        self.update(name, |s| {
            s.name = name.to_string();
            s.state = State::Initialize.name().to_string();
            s.priority = priority;
            s.base_priority = priority;
            for d in Discard::ALL {
                s.discards.entry(d.name().to_string()).or_insert(0);
            }
        });
    }

    /// An instance a reload removed.
    pub fn unregister(&self, name: &str) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        m.remove(name);
    }

    pub fn update(&self, name: &str, f: impl FnOnce(&mut InstanceStatus)) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(m.entry(name.to_string()).or_default());
    }

    pub fn discard(&self, name: &str, why: Discard) {
        self.update(name, |s| {
            *s.discards.entry(why.name().to_string()).or_default() += 1
        });
    }

    pub fn snapshot(&self) -> VrrpStatus {
        let m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        VrrpStatus {
            pid: std::process::id(),
            instances: m.values().cloned().collect(),
        }
    }

    /// Writes the snapshot to the status file (temp file + rename); without
    /// instances there is no file, so `xlb status` shows no VRRP section.
    pub fn publish(&self) -> Result<()> {
        let snapshot = self.snapshot();
        self.file.publish(&snapshot, snapshot.instances.is_empty())
    }

    /// Removes the status file (clean stop: no instance runs any more).
    /// For good: later publishes write nothing.
    pub fn remove_file(&self) {
        self.file.remove();
    }
}

/// Reads what a running agent published (for `xlb status`).
pub fn read(pin_path: &Path) -> Result<Option<VrrpStatus>> {
    crate::runfiles::read_json(&status_path(pin_path))
}

/// The VRRP part of `xlb status`: one line per instance, then who it knows
/// as Master, its sync group and its last change, then its non-zero discards.
pub fn render(s: &VrrpStatus, now_unix_s: u64) -> String {
    let mut out =
        String::from("\nVRRP instance    State   Prio Base Transitions   Sent   Received\n");
    for i in &s.instances {
        out.push_str(&format!(
            "{:<16} {:<7} {:>4} {:>4} {:>11} {:>6} {:>10}\n",
            i.name,
            i.state,
            i.priority,
            i.base_priority,
            i.transitions,
            i.adverts_sent,
            i.adverts_received
        ));
        let mut about = vec![format!(
            "master {}",
            i.master.map_or("unknown".to_string(), |m| m.to_string())
        )];
        if let Some(g) = &i.sync_group {
            about.push(format!("sync group {g}"));
        }
        if let Some(t) = i.last_transition_unix_s {
            about.push(format!(
                "last change {} s ago",
                now_unix_s.saturating_sub(t)
            ));
        }
        out.push_str(&format!("  {}\n", about.join(", ")));
        let dropped: Vec<String> = i
            .discards
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        if !dropped.is_empty() {
            out.push_str(&format!("  discarded: {}\n", dropped.join(" ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_path_is_unique_per_pin_path() {
        assert_eq!(
            status_path(Path::new("/sys/fs/bpf/xlb")),
            Path::new("/run/xlb/vrrp-sys_fs_bpf_xlb.json")
        );
        assert_ne!(
            status_path(Path::new("/sys/fs/bpf/xlb-a")),
            status_path(Path::new("/sys/fs/bpf/xlb-b"))
        );
    }

    #[test]
    fn counts_and_round_trips_through_json() {
        let dir = std::env::temp_dir().join(format!("xlb-counters-{}", std::process::id()));
        let c = Counters::new(Some(dir.join("s.json")));
        c.register("VI_1", 100);
        c.discard("VI_1", Discard::AuthPass);
        c.discard("VI_1", Discard::AuthPass);
        c.publish().unwrap();
        let back: VrrpStatus =
            serde_json::from_slice(&std::fs::read(dir.join("s.json")).unwrap()).unwrap();
        assert_eq!(back, c.snapshot());
        assert_eq!(back.instances[0].discards["auth_pass"], 2);
        assert_eq!(back.instances[0].discards["ttl"], 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
