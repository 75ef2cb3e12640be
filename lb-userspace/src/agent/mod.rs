//! `xlb run`: config → next hops → data plane; then one loop that reacts to
//! checker verdicts and VRRP mastership ([`Event`]), keeps next hops fresh
//! and frees what the data plane's upkeep (its own thread) finds unused,
//! until SIGTERM or SIGINT.

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
    vrrp::{self, Vrrp},
};
use anyhow::{Context, Result};
use desired::{Health, RealKey, Runtime};
use hops::Hops;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tracing::{info, warn};

/// How long start-up waits for a real server's neighbour entry.
const RESOLVE_WAIT: Duration = Duration::from_secs(3);
/// How often next hops are looked up again (MAC changes, reals coming up).
const REFRESH: Duration = Duration::from_secs(5);
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

/// What a stopping agent takes away (both by default).
#[derive(Clone, Copy, Debug)]
pub struct Release {
    /// Detach XDP and unpin the maps (not with `--keep-dataplane`).
    pub dataplane: bool,
    /// Priority 0 and VIPs, routes, rules, static addresses removed (not with `--dont-release-vrrp`).
    pub vrrp: bool,
}

/// The data plane with the state it was last given.
struct Forwarding {
    plane: Box<dyn DataPlane>,
    /// One entry per configured service, in config order.
    desired: Vec<DesiredService>,
    /// The last apply failed: the next full update retries it.
    pending: bool,
    /// Where the metrics read Maglev churn (the plane stays with the loop).
    churn: metrics::maglev::ChurnBoard,
}

impl Forwarding {
    /// Recomposes the whole desired state and applies it when it changed.
    fn update(&mut self, config: &Config, runtime: &Runtime, hops: &Hops, why: &str) {
        let started = Instant::now();
        let fresh = desired::compose(config, runtime, hops);
        if fresh == self.desired {
            self.pending = false;
            return;
        }
        match self.plane.apply(&fresh) {
            Ok(()) => {
                info!(
                    took_us = started.elapsed().as_micros() as u64,
                    "{why}: data plane updated"
                );
                self.desired = fresh;
                self.pending = false;
                self.churn.set(self.plane.maglev_churn());
            }
            Err(e) => {
                self.pending = true;
                warn!(error = %format!("{e:#}"), "{why}: updating maps failed; will retry");
            }
        }
    }

    /// Recomposes only the services at `indices` (positions in
    /// `config.services`), the ones an event concerns, and has the data
    /// plane rewrite those that changed: the cost follows the change, not
    /// the size of the config.
    fn update_services(
        &mut self,
        config: &Config,
        runtime: &Runtime,
        hops: &Hops,
        indices: &[usize],
        why: &str,
    ) {
        let in_step = self.desired.len() == config.services.len()
            && indices.iter().all(|&i| {
                config
                    .services
                    .get(i)
                    .is_some_and(|s| s.id == self.desired[i].service.id)
            });
        if !in_step {
            // The plane still holds another config (an apply after a reload failed).
            return self.update(config, runtime, hops, why);
        }
        let started = Instant::now();
        let mut changed = Vec::new();
        let mut before = Vec::new();
        for &i in indices {
            let fresh = desired::compose_service(config, runtime, hops, &config.services[i]);
            if fresh != self.desired[i] {
                before.push(std::mem::replace(&mut self.desired[i], fresh));
                changed.push(i);
            }
        }
        if changed.is_empty() {
            return;
        }
        match self.plane.apply_changed(&self.desired, &changed) {
            Ok(()) => {
                info!(
                    took_us = started.elapsed().as_micros() as u64,
                    services = changed.len(),
                    "{why}: data plane updated"
                );
                self.churn.set(self.plane.maglev_churn());
            }
            Err(e) => {
                // Back to what the plane was last given, so the retry sees the difference.
                for (i, d) in changed.into_iter().zip(before) {
                    self.desired[i] = d;
                }
                self.pending = true;
                warn!(error = %format!("{e:#}"), "{why}: updating maps failed; will retry");
            }
        }
    }
}

/// What handles the components' events: the data plane, what the agent
/// learned so far, and who is told about changes.
struct Reactor {
    fwd: Forwarding,
    runtime: Runtime,
    hops: Hops,
    checkers: Checkers,
    alerts: Alerter,
    announcer: Announcer,
}

impl Reactor {
    fn event(&mut self, event: Event, config: &Config) {
        match event {
            Event::Health { key, health } => {
                let notices = self.runtime.set_health(config, key, health);
                let index = config.services.iter().position(|s| s.id == key.service);
                self.fwd.update_services(
                    config,
                    &self.runtime,
                    &self.hops,
                    &Vec::from_iter(index),
                    "real server health changed",
                );
                self.alerts.quorum_changes(config, &self.runtime, &notices);
                self.announcer.announce(notices);
            }
            Event::Mastership {
                instance,
                master,
                applied,
            } => {
                if master {
                    self.runtime.masters.insert(instance.clone());
                } else {
                    self.runtime.masters.remove(&instance);
                }
                self.fwd.update_services(
                    config,
                    &self.runtime,
                    &self.hops,
                    &desired::owned_by(config, &instance),
                    "VRRP mastership changed",
                );
                if let Err(e) = self.fwd.plane.mastership(&instance, master) {
                    warn!(error = %format!("{e:#}"), "data plane did not follow the mastership change");
                }
                self.checkers.set_masters(&self.runtime.masters);
                // The instance may have stopped waiting; nothing to undo then.
                let _ = applied.send(());
            }
        }
    }
}

/// The upkeep's next report; never, without an upkeep (or once it ended).
async fn upkeep_report(
    reports: &mut Option<tokio::sync::watch::Receiver<Option<crate::dataplane::upkeep::Report>>>,
) -> Option<crate::dataplane::upkeep::Report> {
    if let Some(rx) = reports
        && rx.changed().await.is_ok()
    {
        return rx.borrow_and_update().clone();
    }
    std::future::pending().await
}

pub async fn run(
    source: &config::Source,
    release: Release,
    overrides: &config::Overrides,
) -> Result<()> {
    let mut config = Arc::new(overrides.apply(config::load_from(source)?));
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    let resolver = Resolver::new()?;
    let runtime = Runtime::default();
    let announcer = Announcer::new(&config)?;
    let alerts = Alerter::start(&config)?;

    // What the metrics endpoint reads from the agent's parts.
    let shared = metrics::Sources {
        vrrp: vrrp::counters::Counters::new(Some(vrrp::counters::status_path(
            &config.dataplane.pin_path,
        ))),
        ..Default::default()
    };
    let mut plane = plane::start(&config)?;
    // Under IPVS the kernel routes to the reals: no lookups, and no warning
    // about reals left out that IPVS serves all the same.
    let resolve = plane.uses_next_hops().then_some(&resolver);
    let hops = hops::resolve(resolve, &config, RESOLVE_WAIT, &Hops::default()).await;
    let desired = desired::compose(&config, &runtime, &hops);
    if let Err(e) = plane.apply(&desired).context("programming the data plane") {
        plane.shutdown(false)?;
        return Err(e);
    }
    shared.maglev.set(plane.maglev_churn());
    // The data plane's upkeep runs on a thread of its own; the loop only
    // hears what each pass found.
    let mut upkeep = match plane.start_upkeep() {
        Ok(reports) => reports,
        Err(e) => {
            plane.shutdown(false)?;
            return Err(e.context("starting the data plane's upkeep"));
        }
    };
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
        let registry = Arc::new(metrics::registry(
            plane.plane(),
            &config.dataplane.pin_path,
            &shared,
        ));
        tokio::spawn(metrics::serve(listener, registry));
        info!(%addr, "metrics endpoint listening");
    }
    let _pid_file = PidFile::create(&config.agent.pid_file)?;
    let reals: usize = desired.iter().map(|d| d.reals.len()).sum();
    info!(services = desired.len(), reals, data_plane = %plane.describe(), "xlb forwarding");
    let fwd = Forwarding {
        plane,
        desired,
        pending: false,
        churn: shared.maglev.clone(),
    };

    // Components (checkers, VRRP) get a clone of `events`; the loop owns the receiver.
    let (events, mut inbox) = mpsc::channel::<Event>(EVENT_QUEUE);
    let checkers = Checkers::start(&config, events.clone(), &alerts, &shared.checks);
    if !checkers.is_empty() {
        info!(checks = checkers.len(), "health checks started");
    }
    let mut r = Reactor {
        fwd,
        runtime,
        hops,
        checkers,
        alerts,
        announcer,
    };
    let net = match vrrp::effects::HostNet::new() {
        Ok(n) => n,
        Err(e) => {
            r.fwd.plane.shutdown(false)?;
            return Err(e.context("opening netlink for VRRP"));
        }
    };
    let mut vrrp = match Vrrp::start(
        config.clone(),
        events.clone(),
        Arc::new(net),
        shared.vrrp.clone(),
        r.alerts.clone(),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            r.checkers.stop().await;
            r.fwd.plane.shutdown(false)?;
            return Err(e.context("starting VRRP"));
        }
    };

    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading {source}");
                match reload::reread(source, overrides, &config).and_then(|f| vrrp.check(&f).map(|()| f)) {
                    Ok(fresh) => {
                        r.hops = hops::resolve(resolve, &fresh, RESOLVE_WAIT, &r.hops).await;
                        // Checkers follow the new reals; verdicts of reals that stay are kept.
                        if fresh.services != config.services {
                            r.checkers.stop().await;
                            r.checkers =
                                Checkers::start(&fresh, events.clone(), &r.alerts, &shared.checks);
                            r.checkers.set_masters(&r.runtime.masters);
                        }
                        config = Arc::new(fresh);
                        r.fwd.update(&config, &r.runtime, &r.hops, "config reloaded");
                        // After the data plane: a VIP an instance gains is forwarded before
                        // it is added. Instances leaving Master wait for the data plane.
                        let reloading = vrrp.reload(config.clone());
                        tokio::pin!(reloading);
                        let done = loop {
                            tokio::select! {
                                done = &mut reloading => break done,
                                Some(event) = inbox.recv() => r.event(event, &config),
                            }
                        };
                        match done {
                            Ok(()) => info!("reload: done"),
                            Err(e) => warn!("reload: VRRP: {e:#}"),
                        }
                    }
                    Err(e) => warn!("reload: nothing changed, the config has errors:\n{e:#}"),
                }
            }
            _ = sigusr1.recv() => match dump::write_state(&config, &r.fwd.desired, r.fwd.plane.as_mut()) {
                Ok(()) => info!(file = %config.agent.state_dump.display(), "SIGUSR1: state dumped"),
                Err(e) => warn!(error = %format!("{e:#}"), "SIGUSR1: state dump failed"),
            },
            _ = sigusr2.recv() => match dump::write_stats(&config, r.fwd.plane.as_mut()) {
                Ok(()) => info!(file = %config.agent.stats_dump.display(), "SIGUSR2: statistics dumped"),
                Err(e) => warn!(error = %format!("{e:#}"), "SIGUSR2: statistics dump failed"),
            },
            Some(event) = inbox.recv() => r.event(event, &config),
            Some(report) = upkeep_report(&mut upkeep) => {
                if let Err(e) = r.fwd.plane.upkept(&report) {
                    warn!(error = %format!("{e:#}"), "freeing drained reals failed; will retry");
                }
            }
            _ = tick.tick() => {
                let fresh = hops::resolve(resolve, &config, Duration::ZERO, &r.hops).await;
                // Events applied everything else already: without new hops or
                // a failed apply to retry, composing again would find no change.
                if fresh != r.hops || r.fwd.pending {
                    let why = if fresh != r.hops { "next hops changed" } else { "retrying" };
                    r.hops = fresh;
                    r.fwd.update(&config, &r.runtime, &r.hops, why);
                }
            }
        }
    }
    // Instances leaving Master wait for the data plane: keep serving events until they are done.
    let stopping = vrrp.stop(release.vrrp);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = &mut stopping => break,
            Some(event) = inbox.recv() => r.event(event, &config),
        }
    }
    r.checkers.stop().await;
    let stopping = r.runtime.stopping(&config);
    r.alerts.stopping(&config, &stopping);
    r.announcer.announce_and_wait(stopping).await;
    r.announcer.stop().await;
    if !r.alerts.flush(ALERT_FLUSH).await {
        warn!("stopping with alerts not yet delivered");
    }
    r.fwd.plane.shutdown(!release.dataplane)
}
