//! SIGHUP / `xlb reload`: read the config again, validate it completely,
//! and hand it to the agent, which prepares everything that can fail
//! before it changes anything (see `agent::reload`). Settings that size or
//! place the data plane need a restart; a reload that changes them says so
//! and keeps the running ones. Each reload's outcome is written where
//! `xlb reload` waits for it, so the command's exit status is the reload's.

use crate::{
    config::{self, Config, Overrides},
    load::{self, Source},
};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use tracing::warn;

/// The config from `source` (with the command line's `overrides`), or the
/// errors (each `file:line:col: message`) that leave the running config in force.
pub fn reread(source: &Source, overrides: &Overrides, running: &Config) -> Result<Config> {
    let mut fresh = overrides.apply(load::load_from(source)?);
    // No interfaces named: the agent attached where the routes to the reals went.
    if fresh.dataplane.interfaces.is_empty() {
        fresh.dataplane.interfaces = running.dataplane.interfaces.clone();
    }
    if fresh.dataplane != running.dataplane {
        warn!("reload: [dataplane] changed; it takes effect at the next restart");
        fresh.dataplane = running.dataplane.clone();
        // The running maps must hold the new services.
        let services: Vec<&config::Service> = fresh.services.iter().collect();
        let problems = config::capacity::capacity_problems(&fresh.dataplane, &services);
        if fresh.dataplane.kind != config::DataplaneKind::Ipvs && !problems.is_empty() {
            let why: Vec<String> = problems.into_iter().map(|p| p.1).collect();
            anyhow::bail!(
                "reload: the running data plane's maps cannot hold this config ({}); restart the agent to resize them",
                why.join("; ")
            );
        }
    }
    if fresh.metrics != running.metrics {
        warn!("reload: [metrics] changed; it takes effect at the next restart");
        fresh.metrics = running.metrics.clone();
    }
    // The speaker starts with the agent; within [bgp] everything reloads.
    if fresh.bgp.is_some() != running.bgp.is_some() {
        warn!("reload: [bgp] added or removed; it takes effect at the next restart");
        fresh.bgp = running.bgp.clone();
    }
    if fresh.agent != running.agent {
        warn!("reload: [agent] changed; it takes effect at the next restart");
        fresh.agent = running.agent.clone();
    }
    Ok(fresh)
}

/// How the agent's last reload went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Reloads this agent has done; `xlb reload` waits for it to grow.
    pub seq: u64,
    pub ok: bool,
    /// "done", or what failed (the whole config stayed as it was).
    pub message: String,
}

/// Where agent `pid` writes its reload outcomes.
pub fn outcome_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/run/xlb/reload-{pid}.json"))
}

/// Records an outcome (temp file + rename: a reader never sees half).
pub fn write_outcome(outcome: &Outcome) -> Result<()> {
    let path = outcome_path(std::process::id() as i32);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(outcome)?)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// Removes this agent's outcome file (it stops).
pub fn remove_outcome() {
    let _ = std::fs::remove_file(outcome_path(std::process::id() as i32));
}

/// The outcome agent `pid` last recorded (none yet: the default).
pub fn read_outcome(pid: i32) -> Outcome {
    std::fs::read(outcome_path(pid))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Waits for agent `pid` to record a reload after `before`; its outcome.
pub fn wait_outcome(pid: i32, before: u64, within: Duration) -> Result<Outcome> {
    let end = Instant::now() + within;
    loop {
        let now = read_outcome(pid);
        if now.seq > before {
            return Ok(now);
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("agent {pid} exited before it reloaded");
        }
        if Instant::now() > end {
            bail!(
                "agent {pid} did not report its reload within {} s (its log says how it went)",
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
