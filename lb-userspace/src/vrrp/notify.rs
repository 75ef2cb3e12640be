//! Telling operators about state changes as keepalived does: the
//! `notify_master|backup|fault|stop` script of the new state, the `notify`
//! script with `INSTANCE|GROUP NAME STATE PRIORITY`, and one line per change
//! (`INSTANCE "VI_1" MASTER 100`) on the notify FIFOs.

use super::state::State;
use crate::{
    alert::{Alerter, VrrpState},
    check::fifo::FifoWriter,
    config::{Command, global::Global, vrrp::Notify},
    script::{self, RunAs},
};
use anyhow::Result;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tracing::warn;

/// Notify scripts are expected to return quickly; a hung one is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a line is about an instance or a sync group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Instance,
    Group,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Instance => "INSTANCE",
            Kind::Group => "GROUP",
        }
    }
}

/// keepalived's FIFO line for a change.
pub fn fifo_line(kind: Kind, name: &str, state: State, priority: u8) -> String {
    format!("{} \"{name}\" {} {priority}\n", kind.word(), state.name())
}

/// The arguments `notify` gets.
pub fn notify_args(kind: Kind, name: &str, state: State, priority: u8) -> Vec<String> {
    vec![
        kind.word().to_string(),
        name.to_string(),
        state.name().to_string(),
        priority.to_string(),
    ]
}

/// The script for entering `state`, if one is configured.
fn script_for(n: &Notify, state: State) -> Option<&Command> {
    match state {
        State::Master => n.master.as_ref(),
        State::Backup => n.backup.as_ref(),
        State::Fault => n.fault.as_ref(),
        State::Initialize => n.stop.as_ref(),
    }
}

/// Everything that receives notifications, shared by all instances.
#[derive(Clone)]
pub struct Notifier {
    user: Option<RunAs>,
    /// `enable_script_security`: each script is checked as it starts.
    secure: bool,
    fifos: Arc<Mutex<Vec<FifoWriter>>>,
    alerts: Alerter,
    /// Where scripts run: off the VRRP thread (a fork must not delay adverts).
    offload: tokio::runtime::Handle,
}

impl Notifier {
    /// Opens (creating when missing) the FIFOs that get VRRP lines; scripts
    /// will run on `offload`.
    pub fn new(
        global: &Global,
        user: Option<RunAs>,
        alerts: Alerter,
        offload: tokio::runtime::Handle,
    ) -> Result<Notifier> {
        let mut fifos = Vec::new();
        for f in [&global.notify_fifo, &global.vrrp_notify_fifo]
            .into_iter()
            .flatten()
        {
            fifos.push(FifoWriter::open(&f.path)?);
        }
        Ok(Notifier {
            user,
            secure: global.enable_script_security,
            fifos: Arc::new(Mutex::new(fifos)),
            alerts,
            offload,
        })
    }

    /// Reports that `name` entered `state`: the FIFO lines at once, the
    /// scripts in the background (state changes never wait for scripts).
    pub fn changed(&self, kind: Kind, name: &str, notify: &Notify, state: State, priority: u8) {
        // Initialize is reported only when stopping.
        let mailed = match state {
            State::Master => VrrpState::Master,
            State::Backup => VrrpState::Backup,
            State::Fault => VrrpState::Fault,
            State::Initialize => VrrpState::Stop,
        };
        match kind {
            Kind::Instance => self.alerts.vrrp_instance(name, mailed),
            Kind::Group => self.alerts.vrrp_group(name, mailed),
        }
        let line = fifo_line(kind, name, state, priority);
        if let Ok(mut fifos) = self.fifos.lock() {
            // Non-blocking: a reader that does not keep up loses lines, the protocol does not stall.
            for f in fifos.iter_mut() {
                f.write_line(&line);
            }
        }
        let mut runs = Vec::new();
        if let Some(c) = script_for(notify, state) {
            runs.push((c.clone(), Vec::new()));
        }
        if let Some(c) = &notify.any {
            runs.push((c.clone(), notify_args(kind, name, state, priority)));
        }
        if runs.is_empty() {
            return;
        }
        let (user, secure) = (self.user, self.secure);
        let name = name.to_string();
        self.offload.spawn(async move {
            // In order, as keepalived runs them.
            for (cmd, args) in runs {
                match script::run(&cmd, &args, user, SCRIPT_TIMEOUT, secure).await {
                    Ok(o) if o.success() => {}
                    Ok(o) => warn!(%name, command = %cmd, outcome = %o, "notify script failed"),
                    Err(e) => {
                        warn!(%name, command = %cmd, error = %crate::logging::chain(&e), "notify script did not run")
                    }
                }
            }
        });
    }
}

/// Opens a FIFO for writing without ever blocking: read-write, so the open
/// succeeds with no reader and writes never raise SIGPIPE.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_args_as_keepalived() {
        assert_eq!(
            fifo_line(Kind::Instance, "VI_1", State::Master, 100),
            "INSTANCE \"VI_1\" MASTER 100\n"
        );
        assert_eq!(
            fifo_line(Kind::Group, "VG_1", State::Fault, 0),
            "GROUP \"VG_1\" FAULT 0\n"
        );
        assert_eq!(
            notify_args(Kind::Instance, "VI_1", State::Backup, 90),
            ["INSTANCE", "VI_1", "BACKUP", "90"]
        );
    }

    #[test]
    fn script_per_state() {
        let n = Notify {
            master: Some(Command(vec!["m".into()])),
            stop: Some(Command(vec!["s".into()])),
            ..Notify::default()
        };
        assert_eq!(script_for(&n, State::Master).unwrap().0, ["m"]);
        assert_eq!(script_for(&n, State::Initialize).unwrap().0, ["s"]);
        assert!(script_for(&n, State::Backup).is_none());
    }
}
