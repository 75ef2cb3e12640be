//! Announces real-server and quorum changes: runs `notify_up`/`notify_down`
//! and `quorum_up`/`quorum_down` (as `script_user`, without a shell) and
//! writes keepalived's lines to `lvs_notify_fifo` and `notify_fifo`. What
//! changed is decided in `agent::desired` ([`Notice`]); this only acts.

use super::fifo::{FifoWriter, rs_line, vs_line};
use crate::{
    agent::desired::Notice,
    config::{Command, Config},
    script::{self, RunAs},
};
use anyhow::{Context, Result};
use std::time::Duration;
use tracing::{info, warn};

/// Longest a notify script may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Announcer {
    fifos: Vec<FifoWriter>,
    user: Option<RunAs>,
    secure: bool,
}

impl Announcer {
    pub fn new(config: &Config) -> Result<Announcer> {
        let g = &config.global;
        let fifos = [&g.lvs_notify_fifo, &g.notify_fifo]
            .into_iter()
            .flatten()
            .map(|f| FifoWriter::open(&f.path))
            .collect::<Result<_>>()?;
        let user = g
            .script_user
            .as_deref()
            .map(RunAs::lookup)
            .transpose()
            .context("global script_user")?;
        Ok(Announcer {
            fifos,
            user,
            secure: g.enable_script_security,
        })
    }

    /// Writes the FIFO lines at once and starts the scripts in the background.
    pub fn announce(&mut self, notices: Vec<Notice>) {
        for cmd in self.lines_and_scripts(notices) {
            let (user, secure) = (self.user, self.secure);
            tokio::spawn(async move { run(&cmd, user, secure).await });
        }
    }

    /// As [`Announcer::announce`], waiting for the scripts (at stop, `omega`).
    pub async fn announce_and_wait(&mut self, notices: Vec<Notice>) {
        let scripts = self.lines_and_scripts(notices);
        let runs = scripts.iter().map(|cmd| run(cmd, self.user, self.secure));
        futures::future::join_all(runs).await;
    }

    fn lines_and_scripts(&mut self, notices: Vec<Notice>) -> Vec<Command> {
        let mut scripts = Vec::new();
        for n in notices {
            let (line, command) = match n {
                Notice::Real { key, up, command } => {
                    info!(real = %crate::config::SocketText(key.address, key.port), service = %key.service, up, "real server {}", if up { "up" } else { "down" });
                    (rs_line(&key, up), command)
                }
                Notice::Quorum {
                    service,
                    up,
                    command,
                } => {
                    info!(%service, "{} quorum", if up { "gained" } else { "lost" });
                    (vs_line(service, up), command)
                }
            };
            for f in &mut self.fifos {
                f.write_line(&line);
            }
            scripts.extend(command);
        }
        scripts
    }
}

async fn run(cmd: &Command, user: Option<RunAs>, secure: bool) {
    if secure && let Err(e) = script::check_secure(cmd) {
        warn!(script = ?cmd.0, error = %format!("{e:#}"), "notify script refused");
        return;
    }
    match script::run(cmd, &[], user, NOTIFY_TIMEOUT).await {
        Ok(o) if o.success() => {}
        Ok(o) => warn!(script = ?cmd.0, outcome = ?o, "notify script failed"),
        Err(e) => warn!(script = ?cmd.0, error = %format!("{e:#}"), "notify script did not run"),
    }
}
