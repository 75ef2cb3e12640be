//! Running operator scripts (notify, vrrp_script, MISC_CHECK, quorum): argv
//! without a shell, as a configured user, bounded by a timeout that kills
//! the script's whole process group, and — with `enable_script_security` —
//! checked again just before each run and refused when a non-root user
//! could change what runs ([`security`]).

pub mod security;

use crate::config::Command;
use anyhow::{Context, Result, bail};
use nix::unistd::{Group, User};
use security::Exec;
use std::{os::unix::process::CommandExt, path::PathBuf, process::Stdio, time::Duration};

/// Who a script runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Resolves keepalived's `USER [GROUP]` (the group defaults to the user's own).
    pub fn lookup(spec: &str) -> Result<RunAs> {
        let mut words = spec.split_whitespace();
        let name = words.next().context("empty user name")?;
        let user = User::from_name(name)
            .with_context(|| format!("looking up user `{name}`"))?
            .with_context(|| format!("no user `{name}`"))?;
        let gid = match words.next() {
            None => user.gid,
            Some(g) => {
                Group::from_name(g)
                    .with_context(|| format!("looking up group `{g}`"))?
                    .with_context(|| format!("no group `{g}`"))?
                    .gid
            }
        };
        if let Some(extra) = words.next() {
            bail!("unexpected `{extra}` after user and group");
        }
        Ok(RunAs {
            uid: user.uid.as_raw(),
            gid: gid.as_raw(),
        })
    }
}

/// How a script ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Killed by a signal it did not get from us.
    Signalled,
    /// Still running at the timeout; killed with its process group.
    TimedOut,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exit status {code}"),
            Outcome::Signalled => f.write_str("killed by a signal"),
            Outcome::TimedOut => f.write_str("timed out (killed)"),
        }
    }
}

impl Outcome {
    pub fn success(self) -> bool {
        self == Outcome::Exited(0)
    }
}

/// The program a command runs, found on PATH when it has no slash.
pub fn program(cmd: &Command) -> Result<PathBuf> {
    let name = cmd.0.first().context("empty command")?;
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` not found on PATH"))
}

/// Runs `cmd` with `args` appended, as `user`, for at most `timeout`.
/// Output goes to /dev/null: scripts report through their exit code. With
/// `secure` (`enable_script_security`) the script is checked first and
/// refused (an error saying why) if a non-root user could now change it;
/// a root script then starts from the real path that passed.
pub async fn run(
    cmd: &Command,
    args: &[String],
    user: Option<RunAs>,
    timeout: Duration,
    secure: bool,
) -> Result<Outcome> {
    let exec = if secure {
        security::check(cmd, user).context("refused")?
    } else {
        Exec::AsWritten
    };
    let prog = match exec {
        Exec::Real(real) => real,
        Exec::AsWritten => program(cmd)?,
    };
    let mut c = tokio::process::Command::new(&prog);
    // The name as written, for programs that act on it (multi-call binaries).
    c.as_std_mut().arg0(&cmd.0[0]);
    c.args(&cmd.0[1..])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so a timeout kills what the script started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(u) = user {
        c.uid(u.uid).gid(u.gid);
    }
    let mut child = c
        .spawn()
        .with_context(|| format!("starting {}", prog.display()))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            let status = status.with_context(|| format!("waiting for {}", prog.display()))?;
            Ok(status.code().map_or(Outcome::Signalled, Outcome::Exited))
        }
        Err(_) => {
            if let Some(pid) = pid {
                // The group id is the child's pid (process_group(0) above).
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            Ok(Outcome::TimedOut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        Command(vec!["/bin/sh".into(), "-c".into(), script.into()])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn exit_codes_args_and_timeout() {
        let t = Duration::from_secs(5);
        assert_eq!(
            block_on(run(&sh("exit 3"), &[], None, t, false)).unwrap(),
            Outcome::Exited(3)
        );
        // Appended arguments reach the script as $1, $2 ($0 is "x").
        let args = ["x".to_string(), "7".to_string()];
        assert_eq!(
            block_on(run(&sh("exit $1"), &args, None, t, false)).unwrap(),
            Outcome::Exited(7)
        );
        assert_eq!(
            block_on(run(
                &sh("sleep 30"),
                &[],
                None,
                Duration::from_millis(200),
                false
            ))
            .unwrap(),
            Outcome::TimedOut
        );
    }

    #[test]
    fn runs_as_the_given_user() {
        let nobody = RunAs::lookup("nobody").unwrap();
        let dir = std::env::temp_dir().join(format!("xlb-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let out = dir.join("who");
        let cmd = sh(&format!("id -u > {}", out.display()));
        let r = block_on(run(&cmd, &[], Some(nobody), Duration::from_secs(5), false)).unwrap();
        let uid = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(r.success());
        assert_eq!(uid.trim(), nobody.uid.to_string());
    }

    #[test]
    fn unknown_users_are_refused() {
        assert!(RunAs::lookup("no-such-user-xlb").is_err());
    }

    #[test]
    #[ignore = "root: owns files as other users (run by `cargo xtask test`'s root tier)"]
    fn a_script_that_became_unsafe_is_not_run() {
        let dir = std::env::temp_dir().join(format!("xlb-script-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let marker = dir.join("ran");
        let script = dir.join("s.sh");
        std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        let mode = |m| {
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(m))
                .unwrap()
        };
        let cmd = Command(vec![script.display().to_string()]);
        let t = Duration::from_secs(5);
        mode(0o755);
        assert!(block_on(run(&cmd, &[], None, t, true)).unwrap().success());
        assert!(marker.exists());
        std::fs::remove_file(&marker).unwrap();
        mode(0o757);
        let err = block_on(run(&cmd, &[], None, t, true)).unwrap_err();
        assert!(
            format!("{err:#}").contains("is writable by everyone"),
            "{err:#}"
        );
        assert!(!marker.exists(), "an unsafe script ran");
        // Without script security it runs, as keepalived's would.
        assert!(block_on(run(&cmd, &[], None, t, false)).unwrap().success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
