//! `xlb run`: config → next hops → data plane; then one loop that reacts to
//! checker verdicts and VRRP mastership ([`Event`]), keeps next hops fresh
//! and expires idle flows, until SIGTERM or SIGINT.

pub mod desired;
pub mod hops;
mod plane;

use crate::{
    alert::Alerter,
    check::{lifecycle::Announcer, runner::Checkers},
    config::{self, Config},
    dataplane::{DataPlane, DesiredService},
    dump, metrics,
    neigh::Resolver,
    pidfile::PidFile,
    reload,
};
use anyhow::{Context, Result};
use desired::{Health, RealKey, Runtime};
use hops::Hops;
use std::{path::Path, sync::Arc, time::Duration};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tracing::{info, warn};

/// How long start-up waits for a real server's neighbour entry.
const RESOLVE_WAIT: Duration = Duration::from_secs(3);
/// How often next hops are looked up again (MAC changes, reals coming up).
const REFRESH: Duration = Duration::from_secs(5);
/// How often idle flows are expired: the precision of every flow timeout.
const SWEEP: Duration = Duration::from_secs(2);
/// Events waiting for the loop; senders wait when it is full.
const EVENT_QUEUE: usize = 1024;
/// How long a stopping agent waits for queued alerts to go out.
const ALERT_FLUSH: Duration = Duration::from_secs(3);

/// What the agent's components tell the loop.
#[derive(Debug)]
pub enum Event {
    /// A checker's verdict on a real server changed.
    Health { key: RealKey, health: Health },
    /// A VRRP instance became Master (`master`) or stopped being Master. The
    /// data plane has been updated when `applied` fires, so the sender can
    /// order it with adding or removing VIPs.
    Mastership {
        instance: String,
        master: bool,
        applied: oneshot::Sender<()>,
    },
}

/// The data plane with the state it was last given.
struct Forwarding {
    plane: Box<dyn DataPlane>,
    desired: Vec<DesiredService>,
}

impl Forwarding {
    /// Recomposes the desired state and applies it when it changed.
    fn update(&mut self, config: &Config, runtime: &Runtime, hops: &Hops, why: &str) {
        let fresh = desired::compose(config, runtime, hops);
        if fresh == self.desired {
            return;
        }
        match self.plane.apply(&fresh) {
            Ok(()) => {
                info!("{why}: data plane updated");
                self.desired = fresh;
            }
            Err(e) => warn!(error = %format!("{e:#}"), "{why}: updating maps failed; will retry"),
        }
    }
}

pub async fn run(
    source: &config::Source,
    keep_dataplane: bool,
    pid_file: Option<&Path>,
) -> Result<()> {
    let mut config = config::load_from(source)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    let resolver = Resolver::new()?;
    let mut hops = hops::resolve(&resolver, &config, RESOLVE_WAIT, &Hops::default()).await;
    let mut runtime = Runtime::default();
    let desired = desired::compose(&config, &runtime, &hops);
    let mut announcer = Announcer::new(&config)?;
    let alerts = Alerter::start(&config)?;

    let mut plane = plane::start(&config)?;
    if let Err(e) = plane.apply(&desired).context("programming the data plane") {
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
        let registry = Arc::new(metrics::registry(&config.dataplane.pin_path));
        tokio::spawn(metrics::serve(listener, registry));
        info!(%addr, "metrics endpoint listening");
    }
    let _pid_file = PidFile::create(pid_file.unwrap_or(&config.agent.pid_file))?;
    let reals: usize = desired.iter().map(|d| d.reals.len()).sum();
    info!(services = desired.len(), reals, data_plane = %plane.describe(), "xlb forwarding");
    let mut fwd = Forwarding { plane, desired };

    // Components (checkers, VRRP) get a clone of `events`; the loop owns the receiver.
    let (events, mut inbox) = mpsc::channel::<Event>(EVENT_QUEUE);
    let mut checkers = Checkers::start(&config, events.clone(), &alerts);
    if !checkers.is_empty() {
        info!(checks = checkers.len(), "health checks started");
    }

    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.tick().await;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading {source}");
                match reload::reread(source, &config) {
                    Ok(fresh) => {
                        hops = hops::resolve(&resolver, &fresh, RESOLVE_WAIT, &hops).await;
                        // Checkers follow the new reals; verdicts of reals that stay are kept.
                        if fresh.services != config.services {
                            checkers.stop().await;
                            checkers = Checkers::start(&fresh, events.clone(), &alerts);
                            checkers.set_masters(&runtime.masters);
                        }
                        config = fresh;
                        fwd.update(&config, &runtime, &hops, "config reloaded");
                    }
                    Err(e) => warn!("reload: nothing changed, the config has errors:\n{e:#}"),
                }
            }
            _ = sigusr1.recv() => match dump::write_state(&config, &fwd.desired, &fwd.plane.describe()) {
                Ok(()) => info!(file = %config.agent.state_dump.display(), "SIGUSR1: state dumped"),
                Err(e) => warn!(error = %format!("{e:#}"), "SIGUSR1: state dump failed"),
            },
            _ = sigusr2.recv() => match dump::write_stats(&config) {
                Ok(()) => info!(file = %config.agent.stats_dump.display(), "SIGUSR2: statistics dumped"),
                Err(e) => warn!(error = %format!("{e:#}"), "SIGUSR2: statistics dump failed"),
            },
            Some(event) = inbox.recv() => match event {
                Event::Health { key, health } => {
                    let notices = runtime.set_health(&config, key, health);
                    fwd.update(&config, &runtime, &hops, "real server health changed");
                    alerts.quorum_changes(&config, &runtime, &notices);
                    announcer.announce(notices);
                }
                Event::Mastership { instance, master, applied } => {
                    if master {
                        runtime.masters.insert(instance.clone());
                    } else {
                        runtime.masters.remove(&instance);
                    }
                    fwd.update(&config, &runtime, &hops, "VRRP mastership changed");
                    if let Err(e) = fwd.plane.mastership(&instance, master) {
                        warn!(error = %format!("{e:#}"), "data plane did not follow the mastership change");
                    }
                    checkers.set_masters(&runtime.masters);
                    // The instance may have stopped waiting; nothing to undo then.
                    let _ = applied.send(());
                }
            },
            _ = sweep.tick() => {
                if let Err(e) = fwd.plane.maintain() {
                    warn!(error = %format!("{e:#}"), "expiring idle flows failed; will retry");
                }
            }
            _ = tick.tick() => {
                hops = hops::resolve(&resolver, &config, Duration::ZERO, &hops).await;
                fwd.update(&config, &runtime, &hops, "next hops changed");
            }
        }
    }
    checkers.stop().await;
    let stopping = runtime.stopping(&config);
    alerts.stopping(&config, &stopping);
    announcer.announce_and_wait(stopping).await;
    if !alerts.flush(ALERT_FLUSH).await {
        warn!("stopping with alerts not yet delivered");
    }
    fwd.plane.shutdown(keep_dataplane)
}
