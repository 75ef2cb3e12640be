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
    if fresh.dataplane != running.dataplane {
        warn!("reload: [dataplane] changed; it takes effect at the next restart");
        fresh.dataplane = running.dataplane.clone();
    }
    if fresh.metrics != running.metrics {
        warn!("reload: [metrics] changed; it takes effect at the next restart");
        fresh.metrics = running.metrics.clone();
    }
    if fresh.agent != running.agent {
        warn!("reload: [agent] changed; it takes effect at the next restart");
        fresh.agent = running.agent.clone();
    }
    Ok(fresh)
}
