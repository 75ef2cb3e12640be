//! The VRRP thread: every instance, its socket, timers, addresses and
//! announcements run on an OS thread with a runtime of its own, where no
//! map walk, scrape, config parse, script or netlink dump of the rest of
//! the agent can delay an advert. keepalived's `vrrp_priority` (nice),
//! `vrrp_rt_priority` (SCHED_RR) and `vrrp_no_swap` (mlockall) apply to
//! it. The agent drives it through [`VrrpThread`]'s commands; instances
//! report mastership on their own channel ([`super::Mastership`]).

use super::{
    Mastership, Vrrp, counters::Counters, effects::HostNet, instance::Shared, notify::Notifier,
};
use crate::{
    alert::Alerter,
    config::{Config, global::VrrpProcess},
    script::RunAs,
};
use anyhow::{Context, Result, anyhow};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

enum Command {
    Prepare(Arc<Config>, oneshot::Sender<Result<()>>),
    Commit(oneshot::Sender<()>),
    Abort(oneshot::Sender<()>),
    Stop(bool, oneshot::Sender<()>),
}

/// The agent's side of the VRRP thread.
pub struct VrrpThread {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the thread needs from the agent.
pub struct Setup {
    pub mastership: mpsc::UnboundedSender<Mastership>,
    pub counters: Counters,
    pub alerts: Alerter,
    /// The agent's runtime: scripts and the status file run there.
    pub offload: tokio::runtime::Handle,
}

impl VrrpThread {
    /// Starts the thread (nothing runs on it until [`VrrpThread::prepare`]
    /// and [`VrrpThread::commit`]); fails when its netlink socket or the
    /// notify FIFOs cannot be opened.
    pub fn spawn(config: &Config, setup: Setup) -> Result<VrrpThread> {
        let config = config.clone();
        let (commands, mut inbox) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name("xlb-vrrp".into())
            .spawn(move || {
                apply_process(&config.global.vrrp_process);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e).context("VRRP runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut vrrp = match make(&config, setup) {
                        Ok(v) => {
                            let _ = ready_tx.send(Ok(()));
                            v
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    while let Some(cmd) = inbox.recv().await {
                        match cmd {
                            Command::Prepare(c, done) => {
                                let _ = done.send(vrrp.prepare(c).await);
                            }
                            Command::Commit(done) => {
                                vrrp.commit().await;
                                let _ = done.send(());
                            }
                            Command::Abort(done) => {
                                vrrp.abort().await;
                                let _ = done.send(());
                            }
                            Command::Stop(release, done) => {
                                vrrp.stop(release).await;
                                let _ = done.send(());
                                return;
                            }
                        }
                    }
                });
            })
            .context("starting the VRRP thread")?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the VRRP thread ended while starting"))??;
        Ok(VrrpThread {
            commands,
            thread: Some(thread),
        })
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(cmd(tx))
            .map_err(|_| anyhow!("the VRRP thread is gone"))?;
        rx.await.map_err(|_| anyhow!("the VRRP thread is gone"))
    }

    /// Prepares `config` (see [`Vrrp::prepare`]): an error changes nothing.
    pub async fn prepare(&self, config: Arc<Config>) -> Result<()> {
        self.ask(|tx| Command::Prepare(config, tx)).await?
    }

    /// Commits what was prepared (see [`Vrrp::commit`]). The caller keeps
    /// serving [`Mastership`] meanwhile: instances leaving Master wait for it.
    pub async fn commit(&self) {
        let _ = self.ask(Command::Commit).await;
    }

    /// Gives back what was prepared: the running config stays.
    pub async fn abort(&self) {
        let _ = self.ask(Command::Abort).await;
    }

    /// Stops every instance (see [`Vrrp::stop`]) and the thread. The caller
    /// keeps serving [`Mastership`] meanwhile.
    pub async fn stop(mut self, release: bool) {
        let _ = self.ask(|tx| Command::Stop(release, tx)).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The VRRP side, made on its own thread (its netlink connection and
/// sockets belong to this runtime).
fn make(config: &Config, setup: Setup) -> Result<Vrrp> {
    let global = &config.global;
    let user = global
        .script_user
        .as_deref()
        .map(RunAs::lookup)
        .transpose()
        .context("script_user")?;
    let net = HostNet::new().context("opening netlink for VRRP")?;
    setup.offload.spawn(setup.counters.clone().publisher());
    let shared = Shared {
        mastership: setup.mastership,
        net: Arc::new(net),
        notifier: Notifier::new(global, user, setup.alerts, setup.offload.clone())?,
        counters: setup.counters,
        group4: global.vrrp_mcast_group4.into(),
        group6: global.vrrp_mcast_group6.into(),
    };
    Vrrp::new(config, shared, setup.offload)
}

/// keepalived's `vrrp_priority`, `vrrp_rt_priority` and `vrrp_no_swap`
/// for this thread; what the host refuses is logged, not fatal (as keepalived).
fn apply_process(p: &VrrpProcess) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    if let Some(nice) = p.nice {
        // SAFETY: setpriority on our own thread id.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, i32::from(nice)) } != 0
        {
            warn!(nice, error = %std::io::Error::last_os_error(), "vrrp_priority: could not renice the VRRP thread");
        } else {
            info!(nice, "VRRP thread reniced (vrrp_priority)");
        }
    }
    if let Some(prio) = p.rt_priority {
        let param = libc::sched_param {
            sched_priority: i32::from(prio),
        };
        // SAFETY: sched_setscheduler on our own thread id with a valid param.
        if unsafe { libc::sched_setscheduler(tid, libc::SCHED_RR, &param) } != 0 {
            warn!(priority = prio, error = %std::io::Error::last_os_error(), "vrrp_rt_priority: could not make the VRRP thread real-time (needs CAP_SYS_NICE)");
        } else {
            info!(
                priority = prio,
                "VRRP thread runs SCHED_RR (vrrp_rt_priority)"
            );
        }
    }
    if p.no_swap {
        // SAFETY: plain mlockall.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            warn!(error = %std::io::Error::last_os_error(), "vrrp_no_swap: could not lock the agent's memory");
        } else {
            info!("agent memory locked (vrrp_no_swap)");
        }
    }
}
