//! SIGHUP / `xlb reload`: read the config again, validate it completely,
//! and hand only the services to the data plane, whose apply writes only
//! what differs (unchanged services keep their ids, tables and flows).
//! Settings that size or place the data plane need a restart; a reload
//! that changes them says so and keeps the running ones.

use crate::config::{self, Config, Overrides, Source};
use anyhow::Result;
use tracing::warn;

/// The config from `source` (with the command line's `overrides`), or the
/// errors (each `file:line:col: message`) that leave the running config in force.
pub fn reread(source: &Source, overrides: &Overrides, running: &Config) -> Result<Config> {
    let mut fresh = overrides.apply(config::load_from(source)?);
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
        fresh.metrics = running.metrics;
    }
    if fresh.agent != running.agent {
        warn!("reload: [agent] changed; it takes effect at the next restart");
        fresh.agent = running.agent.clone();
    }
    Ok(fresh)
}
