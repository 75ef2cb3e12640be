//! keepalived's LVS notify FIFO: one line per change, `RS [ip]:tcp:port
//! [vip]:tcp:port UP|DOWN` for a real and `VS [vip]:tcp:port UP|DOWN` for a
//! service's quorum (`FWM N` for fwmark services), as keepalived writes them.
//! A FIFO's `script` is its reader: started once with the FIFO's path as its
//! argument, as keepalived's `notify_fifo_script`.

use crate::{
    config::{Command, ServiceId},
    script::{self, RunAs},
    vocab::{RealKey, service_text, trio},
};
use anyhow::{Context, Result};
use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Write},
    os::{
        fd::AsRawFd,
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::Path,
    time::Duration,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::{info, warn};

/// A notify FIFO opened for writing.
pub struct FifoWriter {
    file: File,
    path: String,
}

impl FifoWriter {
    /// Opens `path`, creating the FIFO (mode 0600) when it does not exist.
    /// Opened read-write and non-blocking, as keepalived does, so that
    /// writing never waits for a reader.
    pub fn open(path: &Path) -> Result<FifoWriter> {
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_fifo() => {}
            Ok(_) => anyhow::bail!("{} exists and is not a FIFO", path.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .with_context(|| format!("creating FIFO {}", path.display()))?
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("opening FIFO {}", path.display()))?;
        Ok(FifoWriter {
            file,
            path: path.display().to_string(),
        })
    }

    /// Bytes written but not read yet.
    pub fn unread(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD stores an int at the pointer given.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), libc::FIONREAD, &mut n) };
        if rc == 0 { n.max(0) as usize } else { 0 }
    }

    /// Writes one line; a full FIFO (no reader draining it) loses the line.
    pub fn write_line(&mut self, line: &str) {
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            warn!(fifo = %self.path, error = %e, "notify FIFO line lost");
        }
    }
}

/// How long a FIFO script may go on reading after the agent's last line.
pub const FIFO_READER_GRACE: Duration = Duration::from_secs(2);

/// A FIFO's reader script, running for the agent's life.
pub struct FifoReader {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl FifoReader {
    /// Starts `cmd` with `path` appended to its arguments, as `user`;
    /// with `secure` (enable_script_security) an unsafe script is refused
    /// (checked as it starts, [`script::run`]).
    /// A script that ends is logged, not restarted.
    pub fn start(path: &Path, cmd: Command, user: Option<RunAs>, secure: bool) -> FifoReader {
        let (stop, stopped) = oneshot::channel::<()>();
        let fifo = path.display().to_string();
        let task = tokio::spawn(async move {
            info!(script = %cmd, %fifo, "FIFO script started");
            let args = [fifo.clone()];
            tokio::select! {
                r = script::run(&cmd, &args, user, Duration::MAX, secure) => match r {
                    Ok(outcome) => warn!(script = %cmd, %fifo, %outcome, "FIFO script ended"),
                    Err(e) => warn!(script = %cmd, error = %crate::logging::chain(&e), "FIFO script did not run"),
                },
                // Dropping the run kills the script.
                _ = stopped => {}
            }
        });
        FifoReader { stop, task }
    }

    /// Lets the script finish reading for up to `grace` (the caller has
    /// closed its end of the FIFO, so the script sees end-of-file once no
    /// other writer holds it), then kills it.
    pub async fn stop(self, grace: Duration) {
        let FifoReader { stop, mut task } = self;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// `[addr]:proto:port`, keepalived's `inet_sockaddrtotrio`.
fn state(up: bool) -> &'static str {
    if up { "UP" } else { "DOWN" }
}

pub fn rs_line(key: &RealKey, up: bool) -> String {
    let protocol = key
        .service
        .addr()
        .map_or("tcp".to_string(), |(_, _, p)| p.to_string().to_lowercase());
    format!(
        "RS {} {} {}\n",
        trio(key.address, &protocol, key.port),
        service_text(key.service),
        state(up)
    )
}

pub fn vs_line(service: ServiceId, up: bool) -> String {
    format!("VS {} {}\n", service_text(service), state(up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    #[test]
    fn keepalived_line_format() {
        let svc = ServiceId::Addr {
            vip: "10.0.0.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        };
        let key = RealKey {
            service: svc,
            address: "10.1.0.2".parse().unwrap(),
            port: 8080,
        };
        assert_eq!(
            rs_line(&key, false),
            "RS [10.1.0.2]:tcp:8080 [10.0.0.1]:tcp:80 DOWN\n"
        );
        assert_eq!(vs_line(svc, true), "VS [10.0.0.1]:tcp:80 UP\n");
        let v6 = ServiceId::Addr {
            vip: "2001:db8::1".parse().unwrap(),
            port: 53,
            protocol: Protocol::Udp,
        };
        assert_eq!(vs_line(v6, false), "VS [2001:db8::1]:udp:53 DOWN\n");
        let fwm = ServiceId::Fwmark {
            mark: 7,
            ipv6: false,
        };
        assert_eq!(vs_line(fwm, true), "VS FWM 7 UP\n");
    }

    #[test]
    fn writes_lines_without_a_reader() {
        let dir = std::env::temp_dir().join(format!("xlb-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lvs.fifo");
        let mut w = FifoWriter::open(&path).unwrap();
        w.write_line("VS FWM 1 UP\n");
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut reader, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"VS FWM 1 UP\n");
        drop((w, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
