//! Announces real-server and quorum changes: runs `notify_up`/`notify_down`
//! and `quorum_up`/`quorum_down` (as `script_user`, without a shell) and
//! writes keepalived's lines to `lvs_notify_fifo` and `notify_fifo`. What
//! changed is decided in `agent::desired` ([`Notice`]); this only acts.

use super::fifo::{FIFO_READER_GRACE, FifoReader, FifoWriter, rs_line, vs_line};
use crate::{
    config::{Command, Config, global::Global},
    script::{self, RunAs},
    vocab::Notice,
};
use anyhow::{Context, Result};
use std::time::Duration;
use tracing::{info, warn};

/// Longest a notify script may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Notifier {
    fifos: Vec<FifoWriter>,
    readers: Vec<FifoReader>,
    user: Option<RunAs>,
    secure: bool,
}

impl Notifier {
    /// Opens (creating) the LVS notify FIFOs and starts their scripts;
    /// needs the tokio runtime.
    pub fn new(config: &Config) -> Result<Notifier> {
        Notifier::for_global(&config.global)
    }

    pub fn for_global(g: &Global) -> Result<Notifier> {
        let user = g
            .script_user
            .as_deref()
            .map(RunAs::lookup)
            .transpose()
            .context("global script_user")?;
        let secure = g.enable_script_security;
        let mut fifos = Vec::new();
        let mut readers = Vec::new();
        for f in [&g.lvs_notify_fifo, &g.notify_fifo].into_iter().flatten() {
            // The FIFO exists (created if missing) before its reader starts.
            fifos.push(FifoWriter::open(&f.path)?);
            if let Some(cmd) = &f.script {
                readers.push(FifoReader::start(&f.path, cmd.clone(), user, secure));
            }
        }
        Ok(Notifier {
            fifos,
            readers,
            user,
            secure,
        })
    }

    /// Closes the FIFOs and stops their scripts. The scripts get
    /// [`FIFO_READER_GRACE`] to read what is left (closing a FIFO nobody
    /// has open for reading would discard it), then as long again to exit
    /// on end-of-file.
    pub async fn stop(self) {
        if !self.readers.is_empty() {
            let deadline = tokio::time::Instant::now() + FIFO_READER_GRACE;
            while self.fifos.iter().any(|f| f.unread() > 0)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        drop(self.fifos);
        let stops = self.readers.into_iter().map(|r| r.stop(FIFO_READER_GRACE));
        futures::future::join_all(stops).await;
    }

    /// Writes the FIFO lines at once and starts the scripts in the background.
    pub fn announce(&mut self, notices: Vec<Notice>) {
        for cmd in self.lines_and_scripts(notices) {
            let (user, secure) = (self.user, self.secure);
            tokio::spawn(async move { run(&cmd, user, secure).await });
        }
    }

    /// As [`Notifier::announce`], waiting for the scripts (at stop, `omega`).
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
                    ..
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
    match script::run(cmd, &[], user, NOTIFY_TIMEOUT, secure).await {
        Ok(o) if o.success() => {}
        Ok(o) => warn!(script = %cmd, outcome = %o, "notify script failed"),
        Err(e) => {
            warn!(script = %cmd, error = %crate::logging::chain(&e), "notify script did not run")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{Protocol, ServiceId, global::Fifo},
        vocab::RealKey,
    };

    #[test]
    fn fifo_scripts_are_started_on_their_fifo_and_read_every_line() {
        let dir = std::env::temp_dir().join(format!("xlb-fifo-script-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (fifo, out) = (dir.join("lvs.fifo"), dir.join("read"));
        // The FIFO's path arrives as the last argument ($1 after `reader`).
        let reader = Command(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "echo \"arg $1\" > {out}; while read -r l; do echo \"$l\" >> {out}; done < \"$1\"",
                out = out.display()
            ),
            "reader".into(),
        ]);
        let global = Global {
            lvs_notify_fifo: Some(Fifo {
                path: fifo.clone(),
                script: Some(reader),
            }),
            ..Global::default()
        };
        let service = ServiceId::Addr {
            vip: "10.0.0.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        };
        let key = RealKey {
            service,
            address: "10.1.0.2".parse().unwrap(),
            port: 80,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut a = Notifier::for_global(&global).unwrap();
                a.announce(vec![
                    Notice::Real {
                        key,
                        up: false,
                        command: None,
                    },
                    Notice::Quorum {
                        service,
                        up: false,
                        command: None,
                        weight_sum: 0,
                    },
                ]);
                // stop() closes the FIFO: the script reads the lines, then EOF, and exits.
                a.stop().await;
            });
        let read = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            read,
            format!(
                "arg {}\nRS [10.1.0.2]:tcp:80 [10.0.0.1]:tcp:80 DOWN\nVS [10.0.0.1]:tcp:80 DOWN\n",
                fifo.display()
            )
        );
    }
}
