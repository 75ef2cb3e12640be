//! `xlb run`: config → next hops → data plane; then one loop that reacts to
//! checker verdicts and VRRP mastership ([`Event`]), keeps next hops fresh
//! and expires idle flows, until SIGTERM or SIGINT.

pub mod desired;
pub mod hops;

use crate::{
    EBPF_OBJECT,
    check::{lifecycle::Announcer, runner::Checkers},
    config::{self, Config},
    dataplane::{DataPlane, DesiredService, XdpDataPlane},
    logging,
    neigh::Resolver,
};
use anyhow::{Context, Result};
use desired::{Health, RealKey, Runtime};
use hops::Hops;
use std::{path::Path, time::Duration};
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
    plane: XdpDataPlane,
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
                info!("{why}: maps updated");
                self.desired = fresh;
            }
            Err(e) => warn!(error = %format!("{e:#}"), "{why}: updating maps failed; will retry"),
        }
    }
}

pub async fn run(config_path: &Path, keep_dataplane: bool) -> Result<()> {
    let config = config::load(config_path)?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let resolver = Resolver::new()?;
    let mut hops = hops::resolve(&resolver, &config, RESOLVE_WAIT, &Hops::default()).await;
    let mut runtime = Runtime::default();
    let desired = desired::compose(&config, &runtime, &hops);
    let mut announcer = Announcer::new(&config)?;

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
    let reals: usize = desired.iter().map(|d| d.reals.len()).sum();
    let attached: Vec<String> = plane
        .attachments()
        .map(|(i, m)| format!("{i} ({m:?})"))
        .collect();
    info!(services = desired.len(), reals, interfaces = %attached.join(", "), "xlb forwarding");
    let mut fwd = Forwarding { plane, desired };

    // Components (checkers, VRRP) get a clone of `events`; the loop owns the receiver.
    let (events, mut inbox) = mpsc::channel::<Event>(EVENT_QUEUE);
    let checkers = Checkers::start(&config, events.clone());
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
            Some(event) = inbox.recv() => match event {
                Event::Health { key, health } => {
                    let notices = runtime.set_health(&config, key, health);
                    fwd.update(&config, &runtime, &hops, "real server health changed");
                    announcer.announce(notices);
                }
                Event::Mastership { instance, master, applied } => {
                    if master {
                        runtime.masters.insert(instance);
                    } else {
                        runtime.masters.remove(&instance);
                    }
                    fwd.update(&config, &runtime, &hops, "VRRP mastership changed");
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
    announcer.announce_and_wait(runtime.stopping(&config)).await;
    announcer.stop().await;
    fwd.plane.shutdown(keep_dataplane)
}
