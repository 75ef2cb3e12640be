//! `xlb run`: everything that can fail is prepared first (config, metrics
//! listener, VRRP sockets and scripts), then the data plane is started or
//! adopted, then checkers and VRRP start; then one loop reacts to checker
//! verdicts ([`crate::check::Verdict`]) and VRRP mastership ([`crate::vrrp::Mastership`]),
//! reloads all-or-nothing (`reload.rs`), keeps next hops fresh and frees
//! what the data plane's upkeep (its own thread) finds unused, until
//! SIGTERM or SIGINT, which are answered at any time, start-up included.
//! VRRP itself runs on a thread of its own ([`crate::vrrp::thread`]).

pub mod desired;
pub mod hops;
mod plane;
pub(crate) mod retry;

use crate::{
    alert::Alerter,
    bgp::{self, Speaker},
    check::{
        Verdict,
        fifo::{FIFO_READER_GRACE, FifoReader},
        lifecycle::Notifier,
        runner::Checkers,
    },
    config::{self, Config},
    dataplane::{DataPlane, DesiredService, PinLock},
    dump, metrics,
    neigh::Resolver,
    pidfile::PidFile,
    reload,
    script::RunAs,
    sdnotify,
    vrrp::{
        self, Mastership,
        thread::{Setup, VrrpThread},
    },
};
use anyhow::{Context, Result};
use desired::Runtime;
use hops::Hops;
use retry::Retry;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
    time::MissedTickBehavior,
};
use tracing::{error, info, warn};

/// How long start-up waits for a real server's neighbour entry.
const RESOLVE_WAIT: Duration = Duration::from_secs(3);
/// How often next hops are looked up again (MAC changes, reals coming up).
const REFRESH: Duration = Duration::from_secs(5);
/// Events waiting for the loop; senders wait when it is full.
const EVENT_QUEUE: usize = 1024;
/// How long a stopping agent waits for queued alerts to go out.
const ALERT_FLUSH: Duration = Duration::from_secs(3);

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
    /// Whether and when a failed apply is tried again.
    retry: Retry,
    /// The state the plane refused (a fatal failure): not applied again as it is.
    refused: Option<Vec<DesiredService>>,
    /// Where the metrics read Maglev churn (the plane stays with the loop).
    churn: metrics::maglev::ChurnBoard,
}

impl Forwarding {
    /// Recomposes the whole desired state and applies it when it changed;
    /// a failure is logged, and retried after a backoff if it may pass.
    /// A state the plane refused is not applied again (it was reported
    /// then); a reload applies whatever it composes.
    fn update(&mut self, config: &Config, runtime: &Runtime, hops: &Hops, why: &str) {
        let fresh = desired::compose(config, runtime, hops);
        if self.refused.as_ref() == Some(&fresh) {
            return;
        }
        if let Err(e) = self.apply(fresh, why) {
            self.report(&e, why);
        }
    }

    /// Logs the failure `retry` recorded: a warning with the next attempt,
    /// or an error, once, for a refusal.
    fn report(&self, e: &anyhow::Error, why: &str) {
        let error = crate::logging::chain(e);
        match &self.retry {
            Retry::Backoff { at, .. } => {
                let retry_in_s = at.saturating_duration_since(Instant::now()).as_secs();
                warn!(%error, retry_in_s, "{why}: updating maps failed; will retry");
            }
            _ => error!(
                %error,
                "{why}: the data plane refused the update; not retried until the services, their health or the next hops change"
            ),
        }
    }

    /// [`Forwarding::update`], returning the failure (the plane keeps what
    /// it was last given as `desired`; [`Forwarding::retry`] says when to
    /// try again).
    fn try_update(
        &mut self,
        config: &Config,
        runtime: &Runtime,
        hops: &Hops,
        why: &str,
    ) -> Result<()> {
        self.apply(desired::compose(config, runtime, hops), why)
    }

    /// Has the plane forward `fresh` unless it does already.
    fn apply(&mut self, fresh: Vec<DesiredService>, why: &str) -> Result<()> {
        let started = Instant::now();
        // After a failed apply the plane may hold anything: write it all again.
        if fresh == self.desired && !self.retry.pending() {
            return Ok(());
        }
        match self.plane.apply(&fresh) {
            Ok(()) => {
                info!(
                    took_us = started.elapsed().as_micros() as u64,
                    "{why}: data plane updated"
                );
                self.desired = fresh;
                self.retry.succeeded();
                self.refused = None;
                self.churn.set(self.plane.maglev_churn());
                Ok(())
            }
            Err(e) => {
                if self.retry.failed(&e, Instant::now()) == retry::Told::Refused {
                    self.refused = Some(fresh);
                }
                Err(e)
            }
        }
    }

    /// Writes `desired` (what the plane was last given in full) again, after
    /// an apply of something else failed half-way.
    fn restore(&mut self, why: &str) {
        match self.plane.apply(&self.desired) {
            Ok(()) => {
                self.retry.succeeded();
                info!("{why}");
            }
            Err(e) => {
                self.retry.failed(&e, Instant::now());
                self.report(&e, why);
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
                    .is_some_and(|s| s.id == self.desired[i].id)
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
                self.retry.failed(&e, Instant::now());
                self.report(&e, why);
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
    notifier: Notifier,
    /// Announces the VIPs through bird (`[bgp]`).
    bgp: Option<Speaker>,
}

impl Reactor {
    /// Tells the BGP speaker what the services can serve and who is Master now.
    fn tell_bgp(&self) {
        if let Some(s) = &self.bgp {
            let services =
                bgp::decide::service_facts(&self.fwd.desired, self.fwd.plane.uses_next_hops());
            let masters = &self.runtime.masters;
            s.update_if(|i| {
                let changed = i.services != services || &i.masters != masters;
                i.services = services;
                i.masters = masters.clone();
                changed
            });
        }
    }

    fn verdict(&mut self, Verdict { key, health }: Verdict, config: &Config) {
        let notices = self.runtime.set_health(config, key, health);
        // A virtual_server_group's services share the verdict.
        self.fwd.update_services(
            config,
            &self.runtime,
            &self.hops,
            &desired::group_of(config, key.service),
            "real server health changed",
        );
        self.tell_bgp();
        self.alerts.quorum_changes(config, &notices);
        self.notifier.announce(notices);
    }

    /// A VRRP instance gained or lost mastership: its services follow, then
    /// the instance is told (it adds or removes its addresses after that).
    fn mastership(&mut self, m: Mastership, config: &Config) {
        let Mastership {
            instance,
            master,
            applied,
        } = m;
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
            warn!(error = %crate::logging::chain(&e), "data plane did not follow the mastership change");
        }
        self.checkers.set_masters(&self.runtime.masters);
        self.tell_bgp();
        // The instance may have stopped waiting; nothing to undo then.
        let _ = applied.send(());
    }
}

/// The signals the agent answers, from the first moment of `xlb run`.
struct Signals {
    term: Signal,
    int: Signal,
    /// Stop leaving the data plane forwarding (the unit's RestartKillSignal).
    quit: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
    /// `xlb drain`.
    drain: Signal,
}

/// The signal `xlb drain` sends: the first real-time signal glibc leaves
/// to programs, plus one (every classic signal already has a meaning here).
pub fn drain_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

/// The stop reason of `xlb drain`.
const DRAIN: &str = "drain";
/// How long a withdrawal waits for bird to confirm before the agent goes on.
const WITHDRAW_WAIT: Duration = Duration::from_secs(5);

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
            drain: signal(SignalKind::from_raw(drain_signal()))?,
        })
    }

    /// The next SIGTERM, SIGINT or SIGQUIT; its name.
    async fn stop(&mut self) -> &'static str {
        stop_signal(&mut self.term, &mut self.int, &mut self.quit).await
    }
}

/// The next of SIGTERM (`term`), SIGINT (`int`) or SIGQUIT (`quit`); its name.
async fn stop_signal(term: &mut Signal, int: &mut Signal, quit: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = quit.recv() => KEEP_SIGNAL,
    }
}

/// The stop signal after which the data plane stays (XDP attached, maps
/// pinned) for the next agent to adopt: `systemctl restart` sends it
/// (packaging/xlb.service's RestartKillSignal), so a restart or an upgrade
/// loses no connection while `systemctl stop` still takes everything away.
const KEEP_SIGNAL: &str = "SIGQUIT";

/// The loop's parts that serve events while the agent waits for something
/// (a reload's steps, VRRP stopping): mastership and checker verdicts are
/// never left waiting.
struct Loop {
    r: Reactor,
    masterships: mpsc::UnboundedReceiver<Mastership>,
    inbox: mpsc::Receiver<Verdict>,
}

impl Loop {
    /// Runs `work` to completion while serving events.
    async fn serving<T>(&mut self, config: &Config, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                Some(m) = self.masterships.recv() => self.r.mastership(m, config),
                Some(verdict) = self.inbox.recv() => self.r.verdict(verdict, config),
            }
        }
    }
}

/// Everything `run` prepares before it touches the data plane.
struct Prepared {
    lock: PinLock,
    resolver: Resolver,
    notifier: Notifier,
    alerts: Alerter,
    shared: metrics::Sources,
    listener: Option<tokio::net::TcpListener>,
    pid_file: PidFile,
    vrrp: VrrpThread,
    masterships: mpsc::UnboundedReceiver<Mastership>,
}

/// Opens, binds and checks everything that can fail, with the data plane
/// untouched: a start that fails here leaves a running (or adopted-to-be)
/// data plane exactly as it was.
async fn prepare(config: &mut Arc<Config>) -> Result<Prepared> {
    // One agent per pin directory: the first thing a second agent learns.
    let lock = PinLock::take(&config.dataplane.pin_path)?;
    let resolver = Resolver::new()?;
    crate::dataplane::route_attach::fill_in(&resolver, Arc::make_mut(config)).await?;
    let notifier = Notifier::new(config)?;
    let alerts = Alerter::start(config)?;
    // What the metrics endpoint reads from the agent's parts.
    let shared = metrics::Sources {
        vrrp: vrrp::counters::Counters::new(Some(vrrp::counters::status_path(
            &config.dataplane.pin_path,
        ))),
        next_hops: resolver.counters(),
        checks: crate::check::board::CheckBoard::with_file(crate::check::board::status_path(
            &config.dataplane.pin_path,
        )),
        bgp: if config.bgp.is_some() {
            bgp::Board::with_file(bgp::status_path(&config.dataplane.pin_path))
        } else {
            bgp::Board::default()
        },
        ..Default::default()
    };
    let listener = match config.metrics.listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("metrics: listening on {addr} (set [metrics] listen, or enabled = false)")
        })?),
        None => None,
    };
    let pid_file = PidFile::create(&config.agent.pid_file)?;
    let (mastership, masterships) = mpsc::unbounded_channel();
    let vrrp = VrrpThread::spawn(
        config,
        Setup {
            mastership,
            counters: shared.vrrp.clone(),
            alerts: alerts.clone(),
            offload: tokio::runtime::Handle::current(),
        },
    )?;
    if let Err(e) = vrrp.prepare(config.clone()).await {
        vrrp.stop(false).await;
        return Err(e.context("preparing VRRP"));
    }
    Ok(Prepared {
        lock,
        resolver,
        notifier,
        alerts,
        shared,
        listener,
        pid_file,
        vrrp,
        masterships,
    })
}

/// `vrrp_notify_fifo`'s reader script (`notify_fifo` also gets LVS lines,
/// so its reader belongs to the checkers' notifier); after the VRRP
/// thread created the FIFO.
fn vrrp_fifo_reader(config: &Config) -> Result<Option<FifoReader>> {
    let g = &config.global;
    let Some(f) = &g.vrrp_notify_fifo else {
        return Ok(None);
    };
    let Some(cmd) = f.script.clone() else {
        return Ok(None);
    };
    let user = g
        .script_user
        .as_deref()
        .map(RunAs::lookup)
        .transpose()
        .context("script_user")?;
    Ok(Some(FifoReader::start(
        &f.path,
        cmd,
        user,
        g.enable_script_security,
    )))
}

/// Hands the memory start-up freed (the parsed config's document, the
/// first composition) back to the kernel: glibc keeps freed pages of its
/// heap otherwise, and the agent would hold its start-up peak for life.
fn release_start_up_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
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
    source: &crate::load::Source,
    release: Release,
    overrides: &config::Overrides,
) -> Result<()> {
    // First: SIGTERM and SIGINT are answered from here on, start-up included.
    let mut signals = Signals::new()?;
    let mut config = Arc::new(overrides.apply(crate::load::load_from(source)?));
    crate::caps::require(&config)?;
    let Prepared {
        lock,
        resolver,
        notifier,
        alerts,
        shared,
        listener,
        pid_file: _pid_file,
        vrrp,
        masterships,
    } = tokio::select! {
        p = prepare(&mut config) => p?,
        why = signals.stop() => {
            info!("{why} during start-up: stopping before the data plane was touched");
            return Ok(());
        }
    };
    let fifo_reader = match vrrp_fifo_reader(&config) {
        Ok(f) => f,
        Err(e) => {
            vrrp.stop(false).await;
            return Err(e);
        }
    };

    // The data plane: a fresh one, or the one a previous agent left (adopted).
    let mut plane = match plane::start(&config, lock) {
        Ok(p) => p,
        Err(e) => {
            vrrp.stop(false).await;
            return Err(e);
        }
    };
    // Under IPVS the kernel routes to the reals: no lookups, and no warning
    // about reals left out that IPVS serves all the same.
    let resolve = plane.uses_next_hops().then_some(&resolver);
    let runtime = Runtime::default();
    let none = Hops::default();
    let hops = tokio::select! {
        h = hops::resolve(resolve, &config, RESOLVE_WAIT, &none) => h,
        why = signals.stop() => {
            info!("{why} during start-up: stopping; an adopted data plane keeps forwarding");
            plane.abandon()?;
            vrrp.stop(false).await;
            return Ok(());
        }
    };
    let desired = desired::compose(&config, &runtime, &hops);
    if let Err(e) = plane.apply(&desired).context("programming the data plane") {
        plane.abandon()?;
        vrrp.stop(false).await;
        return Err(e);
    }
    shared.maglev.set(plane.maglev_churn());
    // The data plane's upkeep runs on a thread of its own; the loop only
    // hears what each pass found.
    let mut upkeep = match plane.start_upkeep() {
        Ok(reports) => reports,
        Err(e) => {
            plane.abandon()?;
            vrrp.stop(false).await;
            return Err(e.context("starting the data plane's upkeep"));
        }
    };
    // ipvsadm --rate under XDP: the kernel estimates IPVS's rates, the
    // agent estimates XDP's the same way.
    let rates = (plane.plane() == crate::snapshot::Plane::Xdp).then(|| {
        tokio::spawn(crate::snapshot::rates::sampler(
            config.dataplane.pin_path.clone(),
        ))
    });
    if let Some(listener) = listener {
        let addr = listener.local_addr()?;
        let registry = Arc::new(metrics::registry(
            plane.plane(),
            &config.dataplane.pin_path,
            &shared,
        ));
        tokio::spawn(metrics::serve(listener, registry, config.metrics.clone()));
        info!(%addr, "metrics endpoint listening");
    }
    let reals: usize = desired.iter().map(|d| d.reals.len()).sum();
    info!(services = desired.len(), reals, data_plane = %plane.describe(), "xlb forwarding");
    release_start_up_memory();
    let fwd = Forwarding {
        plane,
        desired,
        retry: Retry::default(),
        refused: None,
        churn: shared.maglev.clone(),
    };

    // Checkers get a clone of `events`; the loop owns the receiver.
    let (events, inbox) = mpsc::channel::<Verdict>(EVENT_QUEUE);
    let checkers = Checkers::start(&config, events.clone(), &alerts, &shared.checks);
    tokio::spawn(shared.checks.clone().publisher());
    if !checkers.is_empty() {
        info!(checks = checkers.len(), "health checks started");
    }
    // After the first apply: only what the data plane serves is announced.
    let speaker = config.bgp.as_ref().map(|_| {
        Speaker::start(
            bgp::Inputs {
                config: config.clone(),
                services: bgp::decide::service_facts(&fwd.desired, fwd.plane.uses_next_hops()),
                masters: runtime.masters.clone(),
                draining: false,
                stopping: false,
            },
            fwd.plane.plane() == crate::snapshot::Plane::Xdp,
            shared.bgp.clone(),
        )
    });
    let mut lp = Loop {
        r: Reactor {
            fwd,
            runtime,
            hops,
            checkers,
            alerts,
            notifier,
            bgp: speaker,
        },
        masterships,
        inbox,
    };
    vrrp.commit().await;
    sdnotify::ready(&status_line(&config, &lp.r.fwd));
    // systemd's watchdog, when the unit sets one: the loop itself proves it is alive.
    let mut watchdog = sdnotify::watchdog_every().map(tokio::time::interval);

    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    let mut reloads = reload::Outcome::default();
    let why = loop {
        tokio::select! {
            why = stop_signal(&mut signals.term, &mut signals.int, &mut signals.quit) => break why,
            _ = signals.drain.recv() => break DRAIN,
            _ = signals.hup.recv() => {
                info!("SIGHUP: reloading {source}");
                sdnotify::reloading();
                let step = Reload { source, overrides, resolve, vrrp: &vrrp, events: &events, shared: &shared };
                let result = step.run(&mut lp, &mut config).await;
                reloads.seq += 1;
                reloads.ok = result.is_ok();
                reloads.message = match result {
                    Ok(()) => {
                        info!("reload: done");
                        "done".into()
                    }
                    Err(why) => {
                        warn!("reload: nothing changed, {why}");
                        format!("nothing changed, {why}")
                    }
                };
                shared.reloads.count(reloads.ok);
                if let Err(e) = reload::write_outcome(&reloads) {
                    warn!(error = %crate::logging::chain(&e), "recording the reload's outcome failed");
                }
                let status = status_line(&config, &lp.r.fwd);
                sdnotify::ready(&if reloads.ok {
                    status
                } else {
                    format!("{status}; last reload failed, nothing changed")
                });
            }
            _ = tick_opt(&mut watchdog) => sdnotify::watchdog(),
            _ = signals.usr1.recv() => match dump::write_state(&config, &lp.r.fwd.desired, lp.r.fwd.plane.as_mut(), &dump::AgentState { vrrp: shared.vrrp.snapshot(), checks: shared.checks.states() }) {
                Ok(()) => info!(file = %config.agent.state_dump.display(), "SIGUSR1: state dumped"),
                Err(e) => warn!(error = %crate::logging::chain(&e), "SIGUSR1: state dump failed"),
            },
            _ = signals.usr2.recv() => match dump::write_stats(&config, lp.r.fwd.plane.as_mut()) {
                Ok(()) => info!(file = %config.agent.stats_dump.display(), "SIGUSR2: statistics dumped"),
                Err(e) => warn!(error = %crate::logging::chain(&e), "SIGUSR2: statistics dump failed"),
            },
            Some(m) = lp.masterships.recv() => lp.r.mastership(m, &config),
            Some(verdict) = lp.inbox.recv() => lp.r.verdict(verdict, &config),
            Some(report) = upkeep_report(&mut upkeep) => {
                if let Err(e) = lp.r.fwd.plane.upkept(&report) {
                    warn!(error = %crate::logging::chain(&e), "freeing drained reals failed; will retry");
                }
            }
            _ = tick.tick() => {
                let fresh = hops::resolve(resolve, &config, Duration::ZERO, &lp.r.hops).await;
                // Events applied everything else already: without new hops or
                // a failed apply due for a retry, composing again would find no change.
                if fresh != lp.r.hops || lp.r.fwd.retry.due(Instant::now()) {
                    let why = if fresh != lp.r.hops { "next hops changed" } else { "retrying" };
                    lp.r.hops = fresh;
                    lp.r.fwd.update(&config, &lp.r.runtime, &lp.r.hops, why);
                    lp.r.tell_bgp();
                }
            }
        }
    };
    let keep_dataplane = !release.dataplane || why == KEEP_SIGNAL;
    if why == KEEP_SIGNAL {
        info!("{why}: stopping; the data plane stays for the next agent to adopt");
    } else {
        info!("{why}: stopping");
    }
    sdnotify::stopping();
    withdraw_at_stop(&mut lp, &config, why, keep_dataplane, &mut signals).await;
    // Instances leaving Master wait for the data plane: keep serving events until they are done.
    lp.serving(&config, vrrp.stop(release.vrrp)).await;
    let mut r = lp.r;
    r.checkers.stop().await;
    shared.checks.remove_file();
    if let Some(s) = r.bgp.take() {
        s.stop().await;
    }
    shared.bgp.remove_file();
    if let Some(task) = rates {
        // Stopped at an await, so no write can land after the removal.
        task.abort();
        let _ = task.await;
        crate::snapshot::rates::remove(&config.dataplane.pin_path);
    }
    let stopping = r.runtime.stopping(&config);
    r.alerts.stopping(&config, &stopping);
    r.notifier.announce_and_wait(stopping).await;
    r.notifier.stop().await;
    if let Some(f) = fifo_reader {
        f.stop(FIFO_READER_GRACE).await;
    }
    if !r.alerts.flush(ALERT_FLUSH).await {
        warn!("stopping with alerts not yet delivered");
    }
    reload::remove_outcome();
    r.fwd.plane.shutdown(keep_dataplane)
}

/// What stopping does to the BGP announcements: `xlb drain` (and SIGTERM
/// under `on_sigterm = "drain"`) withdraws every VIP and forwards for
/// `drain_time` while serving events (a second stop signal ends the wait);
/// `withdraw` withdraws and goes on; a stop that keeps the data plane
/// (SIGQUIT, `--keep-dataplane`) or `keep` leaves bird announcing, since
/// the data plane still forwards. A crash never gets here: bird keeps the routes.
async fn withdraw_at_stop(
    lp: &mut Loop,
    config: &Arc<Config>,
    why: &str,
    keep_dataplane: bool,
    signals: &mut Signals,
) {
    let (Some(speaker), Some(b)) = (lp.r.bgp.as_mut(), config.bgp.as_ref()) else {
        return;
    };
    use crate::config::bgp::OnSigterm;
    let drain = why == DRAIN || (b.on_sigterm == OnSigterm::Drain && !keep_dataplane);
    if !drain && (keep_dataplane || b.on_sigterm == OnSigterm::Keep) {
        info!("stopping with the VIPs still announced: the data plane keeps forwarding");
        return;
    }
    let generation = speaker.update(|i| {
        i.draining = drain;
        i.stopping = !drain;
    });
    if speaker.settled(generation, WITHDRAW_WAIT).await {
        info!("every VIP withdrawn from BGP");
    } else {
        warn!("bird did not confirm the withdrawal in time; going on");
    }
    if drain {
        info!(
            drain_s = b.drain_time.as_secs_f64(),
            "draining: forwarding established flows while routers move new ones away"
        );
        let wait = async {
            tokio::select! {
                _ = tokio::time::sleep(b.drain_time) => None,
                w = signals.stop() => Some(w),
            }
        };
        if let Some(w) = lp.serving(config, wait).await {
            info!("{w} during the drain: stopping now");
        }
    }
}

/// The next tick of `interval`, or never without one.
async fn tick_opt(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What the agent runs, for systemd's status line.
fn status_line(config: &Config, fwd: &Forwarding) -> String {
    format!(
        "forwarding {} services with {}; {} VRRP instances",
        fwd.desired.len(),
        fwd.plane.describe(),
        config.vrrp.instances.len()
    )
}

/// One reload, all or nothing: everything that can fail is prepared
/// (the config read and checked, VRRP's scripts, VMACs and sockets, next
/// hops, the data plane written) before anything running stops; if a step
/// fails, what the earlier ones did is undone and the running config stays
/// in force in full.
struct Reload<'a> {
    source: &'a crate::load::Source,
    overrides: &'a config::Overrides,
    resolve: Option<&'a Resolver>,
    vrrp: &'a VrrpThread,
    events: &'a mpsc::Sender<Verdict>,
    shared: &'a metrics::Sources,
}

impl Reload<'_> {
    /// Ok, or which step failed and why.
    async fn run(&self, lp: &mut Loop, config: &mut Arc<Config>) -> Result<(), String> {
        let fresh = reload::reread(self.source, self.overrides, config)
            .map(Arc::new)
            .map_err(|e| format!("the config has errors:\n{}", crate::logging::chain(&e)))?;
        lp.serving(config, self.vrrp.prepare(fresh.clone()))
            .await
            .map_err(|e| format!("VRRP: {}", crate::logging::chain(&e)))?;
        let before = lp.r.hops.clone();
        let hops = lp
            .serving(
                config,
                hops::resolve(self.resolve, &fresh, RESOLVE_WAIT, &before),
            )
            .await;
        let old_hops = std::mem::replace(&mut lp.r.hops, hops);
        if let Err(e) =
            lp.r.fwd
                .try_update(&fresh, &lp.r.runtime, &lp.r.hops, "config reloaded")
        {
            lp.r.hops = old_hops;
            lp.r.fwd
                .restore("reload failed: the previous config's services written back");
            lp.serving(config, self.vrrp.abort()).await;
            return Err(format!("data plane: {}", crate::logging::chain(&e)));
        }
        // Checkers follow the new reals; verdicts of reals that stay are kept.
        if fresh.services != config.services {
            lp.r.checkers.stop().await;
            lp.r.checkers = Checkers::start(
                &fresh,
                self.events.clone(),
                &lp.r.alerts,
                &self.shared.checks,
            );
            lp.r.checkers.set_masters(&lp.r.runtime.masters);
        }
        *config = fresh;
        if let Some(s) = &lp.r.bgp {
            let c = config.clone();
            s.update(|i| i.config = c);
        }
        lp.r.tell_bgp();
        // After the data plane: a VIP an instance gains is forwarded before
        // it is added. Instances leaving Master wait for the data plane.
        lp.serving(config, self.vrrp.commit()).await;
        Ok(())
    }
}
