//! `xlb run`: config → next hops → data plane, then keep next hops fresh
//! until SIGTERM or SIGINT.

use crate::{
    EBPF_OBJECT,
    config::{self, Config},
    dataplane::{DataPlane, DesiredReal, DesiredService, XdpDataPlane},
    dump, logging, metrics,
    neigh::Resolver,
    pidfile::PidFile,
    reload,
};
use anyhow::{Context, Result};
use std::{path::Path, time::Duration};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// How long start-up waits for a real server's neighbour entry.
const RESOLVE_WAIT: Duration = Duration::from_secs(3);
/// How often next hops are looked up again (MAC changes, reals coming up).
const REFRESH: Duration = Duration::from_secs(5);
/// How often idle flows are expired: the precision of every flow timeout.
const SWEEP: Duration = Duration::from_secs(2);

/// Resolves every real's next hop; an unreachable real is kept, marked so.
/// Logs a real when it becomes unreachable or reachable again (relative to `before`).
pub async fn desired_state(
    resolver: &Resolver,
    config: &Config,
    wait: Duration,
    before: Option<&[DesiredService]>,
) -> Vec<DesiredService> {
    let mut out = Vec::with_capacity(config.services.len());
    for svc in &config.services {
        let previous = before.and_then(|b| b.iter().find(|d| d.service.id == svc.id));
        let mut reals = Vec::with_capacity(svc.reals.len());
        for real in &svc.reals {
            let was_reachable = previous
                .and_then(|p| p.reals.iter().find(|r| r.real == *real))
                .map(|r| r.next_hop.is_some());
            let resolved = match svc.method {
                config::Method::Tun => resolver.tunnel_next_hop(real.address, wait).await,
                _ => resolver.next_hop(real.address, wait).await,
            };
            let next_hop = match resolved {
                Ok(h) => {
                    if was_reachable == Some(false) {
                        info!(service = %svc.id, real = %real.address, "real server reachable again");
                    }
                    Some(h)
                }
                Err(e) => {
                    if was_reachable != Some(false) {
                        warn!(service = %svc.id, real = %real.address, error = %e, "real server unreachable, left out of scheduling");
                    }
                    None
                }
            };
            reals.push(DesiredReal {
                real: *real,
                next_hop,
            });
        }
        out.push(DesiredService {
            service: svc.clone(),
            reals,
        });
    }
    out
}

pub async fn run(config_path: &Path, keep_dataplane: bool, pid_file: Option<&Path>) -> Result<()> {
    let mut config = config::load(config_path)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    let resolver = Resolver::new()?;
    let mut desired = desired_state(&resolver, &config, RESOLVE_WAIT, None).await;

    let mut plane = XdpDataPlane::start(EBPF_OBJECT, &config.dataplane, logging::kernel_level())?;
    let started = async {
        logging::forward_ebpf_logs(plane.ebpf_mut())?;
        plane.apply(&desired).context("programming the XDP maps")
    }
    .await;
    if let Err(e) = started {
        plane.shutdown(false)?;
        return Err(e);
    }
    if let Some(addr) = config.metrics {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                plane.shutdown(false)?;
                return Err(e).context(format!(
                    "metrics: listening on {addr} (set [metrics] listen, or enabled = false)"
                ));
            }
        };
        let registry = std::sync::Arc::new(metrics::registry(&config.dataplane.pin_path));
        tokio::spawn(metrics::serve(listener, registry));
        info!(%addr, "metrics endpoint listening");
    }
    let _pid_file = PidFile::create(pid_file.unwrap_or(&config.agent.pid_file))?;
    let reals: usize = desired.iter().map(|d| d.reals.len()).sum();
    let attached: Vec<String> = plane
        .attachments()
        .map(|(i, m)| format!("{i} ({m:?})"))
        .collect();
    info!(services = desired.len(), reals, interfaces = %attached.join(", "), "xlb forwarding");

    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.tick().await;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading {}", config_path.display());
                match reload::reread(config_path, &config) {
                    Ok(fresh) => {
                        let next = desired_state(&resolver, &fresh, RESOLVE_WAIT, Some(&desired)).await;
                        config = fresh;
                        match plane.apply(&next) {
                            Ok(()) => { info!(services = next.len(), "config reloaded"); desired = next; }
                            // `desired` stays the old state, so the next refresh applies the new one again.
                            Err(e) => warn!(error = %format!("{e:#}"), "reload: updating maps failed; will retry"),
                        }
                    }
                    Err(e) => warn!("reload: nothing changed, the config has errors:\n{e:#}"),
                }
            }
            _ = sigusr1.recv() => {
                let attached: Vec<_> = plane.attachments().map(|(i, m)| (i.to_string(), m)).collect();
                match dump::write_state(&config, &desired, &attached) {
                    Ok(()) => info!(file = %config.agent.state_dump.display(), "SIGUSR1: state dumped"),
                    Err(e) => warn!(error = %format!("{e:#}"), "SIGUSR1: state dump failed"),
                }
            }
            _ = sigusr2.recv() => match dump::write_stats(&config) {
                Ok(()) => info!(file = %config.agent.stats_dump.display(), "SIGUSR2: statistics dumped"),
                Err(e) => warn!(error = %format!("{e:#}"), "SIGUSR2: statistics dump failed"),
            },
            _ = sweep.tick() => {
                if let Err(e) = plane.maintain() {
                    warn!(error = %format!("{e:#}"), "expiring idle flows failed; will retry");
                }
            }
            _ = tick.tick() => {
                let fresh = desired_state(&resolver, &config, Duration::ZERO, Some(&desired)).await;
                if fresh != desired {
                    match plane.apply(&fresh) {
                        Ok(()) => { info!("next hops changed, maps updated"); desired = fresh; }
                        Err(e) => warn!(error = %format!("{e:#}"), "updating maps failed; will retry"),
                    }
                }
            }
        }
    }
    plane.shutdown(keep_dataplane)
}
