//! keepalived's script security (`enable_script_security`; lib/notify.c
//! `check_script_secure` and `check_security` in keepalived 2.2.7): a
//! script that runs as root (uid or gid 0, or a set-uid/set-gid root file)
//! is refused when a non-root user could change what runs.
//!
//! Every component of the path as written is checked with lstat (nothing
//! followed), then every component of the real path (symlinks resolved):
//! each must belong to root; a directory must not be writable by a group
//! other than root's or by everyone, unless it is sticky (then only root
//! can rename or delete root's entries in it, as in /tmp); the file must
//! not be writable by such a group or by everyone. A symlink component is
//! judged by its owner alone: changing it means replacing it, which its
//! directory's check covers, and where it leads is the real path's check.
//! The script is checked when the config is loaded (an insecure one is a
//! config error at its location) and again just before each run, which
//! then starts the real path that passed (`argv[0]` as written), so a
//! symlink changed after the check cannot choose what runs.

use super::{RunAs, program};
use crate::config::{Command, Config, ConfigError, ConfigErrors, ScriptSite};
use anyhow::{Context, Result, bail};
use std::{
    fs::Metadata,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IWGRP: u32 = 0o020;
const S_IWOTH: u32 = 0o002;

/// Where a checked script is run from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exec {
    /// It runs as root and passed: start this real path.
    Real(PathBuf),
    /// It runs as another user and needs no protection (as keepalived):
    /// start it as written.
    AsWritten,
}

/// Checks `cmd`, run as `user` (none: root).
pub fn check(cmd: &Command, user: Option<RunAs>) -> Result<Exec> {
    let written = program(cmd)?;
    let written = if written.is_absolute() {
        written
    } else {
        std::env::current_dir()
            .context("reading the working directory")?
            .join(written)
    };
    let real = written
        .canonicalize()
        .with_context(|| format!("script {}: cannot resolve", written.display()))?;
    let meta = std::fs::metadata(&real)
        .with_context(|| format!("script {}: cannot stat", real.display()))?;
    if !meta.is_file() {
        bail!("script {} is not a regular file", real.display());
    }
    let (uid, gid) = user.map_or((0, 0), |u| (u.uid, u.gid));
    if !executable(&meta, uid, gid) {
        bail!(
            "script {} is not executable by uid:gid {uid}:{gid}",
            real.display()
        );
    }
    let mode = meta.mode();
    let as_root = uid == 0
        || gid == 0
        || (meta.uid() == 0 && mode & 0o100 != 0 && mode & S_ISUID != 0)
        || (meta.gid() == 0 && mode & 0o010 != 0 && mode & S_ISGID != 0);
    if !as_root {
        return Ok(Exec::AsWritten);
    }
    let unsafe_at = |path: &Path, why: String| {
        anyhow::anyhow!(
            "script {} is unsafe: {} {why}, so a non-root user could change what runs as root (enable_script_security)",
            written.display(),
            path.display()
        )
    };
    components(&written).map_err(|(p, why)| unsafe_at(&p, why))?;
    if real != written {
        components(&real).map_err(|(p, why)| unsafe_at(&p, why))?;
    }
    Ok(Exec::Real(real))
}

/// keepalived's `is_executable`: root needs any execute bit.
fn executable(meta: &Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.mode();
    (uid == 0 && mode & 0o111 != 0)
        || (uid == meta.uid() && mode & 0o100 != 0)
        || (uid != meta.uid()
            && ((gid == meta.gid() && mode & 0o010 != 0)
                || (gid != meta.gid() && mode & 0o001 != 0)))
}

/// lstat of `/`, then of each longer prefix of `path` (absolute): the
/// first component that fails, with why.
fn components(path: &Path) -> Result<(), (PathBuf, String)> {
    let mut at = PathBuf::new();
    let parts: Vec<_> = path.components().collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        let meta = std::fs::symlink_metadata(&at)
            .map_err(|e| (at.clone(), format!("cannot be read: {e}")))?;
        let kind = meta.file_type();
        let fits = if last {
            kind.is_file() || kind.is_symlink()
        } else {
            kind.is_dir() || kind.is_symlink()
        };
        if !fits {
            let what = if last {
                "a regular file"
            } else {
                "a directory"
            };
            return Err((at, format!("is not {what}")));
        }
        if meta.uid() != 0 {
            return Err((at, format!("belongs to uid {}", meta.uid())));
        }
        let mode = meta.mode();
        let guarded = (kind.is_dir() && mode & S_ISVTX == 0) || kind.is_file();
        if guarded && meta.gid() != 0 && mode & S_IWGRP != 0 {
            return Err((at, format!("is writable by group {}", meta.gid())));
        }
        if guarded && mode & S_IWOTH != 0 {
            return Err((at, "is writable by everyone".into()));
        }
    }
    Ok(())
}

/// The scripts of `config` with who runs them (a `user` of their own, else
/// `script_user`, else root) and what they are, in config order.
fn scripts(config: &Config) -> Vec<(String, &Command, Option<&str>)> {
    let default = config.global.script_user.as_deref();
    let mut out: Vec<(String, &Command, Option<&str>)> = Vec::new();
    let g = &config.global;
    for (what, fifo) in [
        ("notify_fifo", &g.notify_fifo),
        ("vrrp_notify_fifo", &g.vrrp_notify_fifo),
        ("lvs_notify_fifo", &g.lvs_notify_fifo),
    ] {
        if let Some(c) = fifo.as_ref().and_then(|f| f.script.as_ref()) {
            out.push((format!("{what} script"), c, default));
        }
    }
    for s in &config.vrrp.scripts {
        let user = s.user.as_deref().or(default);
        out.push((format!("vrrp_script {}", s.name), &s.script, user));
    }
    let notifies = config
        .vrrp
        .instances
        .iter()
        .map(|i| (format!("vrrp_instance {}", i.name), &i.notify))
        .chain(
            config
                .vrrp
                .sync_groups
                .iter()
                .map(|g| (format!("vrrp_sync_group {}", g.name), &g.notify)),
        );
    for (owner, n) in notifies {
        for (key, c) in [
            ("notify_master", &n.master),
            ("notify_backup", &n.backup),
            ("notify_fault", &n.fault),
            ("notify_stop", &n.stop),
            ("notify", &n.any),
        ] {
            if let Some(c) = c {
                out.push((format!("{owner} {key}"), c, default));
            }
        }
    }
    for svc in &config.services {
        let l = &svc.lifecycle;
        for (key, c) in [("quorum_up", &l.quorum_up), ("quorum_down", &l.quorum_down)] {
            if let Some(c) = c {
                out.push((format!("service {} {key}", svc.id), c, default));
            }
        }
        for r in &svc.reals {
            let real = crate::config::SocketText(r.address, r.port);
            let rl = &r.lifecycle;
            for (key, c) in [
                ("notify_up", &rl.notify_up),
                ("notify_down", &rl.notify_down),
            ] {
                if let Some(c) = c {
                    out.push((format!("real {real} of {} {key}", svc.id), c, default));
                }
            }
            for check in &rl.checks {
                if let crate::config::check::CheckKind::Misc { path, user, .. } = &check.kind {
                    let user = user.as_deref().or(default);
                    out.push((
                        format!("MISC_CHECK of real {real} of {}", svc.id),
                        path,
                        user,
                    ));
                }
            }
        }
    }
    out
}

/// Under `enable_script_security`, every script of `config` checked as its
/// user runs it; each refused one is an error at the place `sites` (the
/// front end's record of where each command was written) names. A user
/// that does not exist is reported where the scripts start.
pub fn check_config(config: &Config, file: &str, sites: &[ScriptSite]) -> Result<(), ConfigErrors> {
    if !config.global.enable_script_security {
        return Ok(());
    }
    let mut errors = Vec::new();
    for (what, cmd, user) in scripts(config) {
        let Ok(user) = user.map(RunAs::lookup).transpose() else {
            continue;
        };
        if let Err(e) = check(cmd, user) {
            let (file, line, col) = sites
                .iter()
                .find(|s| s.command == *cmd)
                .map_or((file.to_string(), 1, 1), |s| {
                    (s.file.clone(), s.line, s.col)
                });
            let message = format!("{what}: {}", crate::logging::chain(&e));
            if !errors
                .iter()
                .any(|x: &ConfigError| x.line == line && x.col == col && x.file == file)
            {
                errors.push(ConfigError {
                    file,
                    line,
                    col,
                    message,
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A scratch directory (mode 0755, root's) under /tmp, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let d = std::env::temp_dir().join(format!("xlb-sec-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            chmod(&d, 0o755);
            Scratch(d)
        }

        /// An executable script `name` (mode 0755) in `dir` (relative to the scratch).
        fn script(&self, dir: &str, name: &str) -> PathBuf {
            let d = self.0.join(dir);
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(name);
            std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
            chmod(&p, 0o755);
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn cmd(p: &Path) -> Command {
        Command(vec![p.display().to_string()])
    }

    fn refused(p: &Path, user: Option<RunAs>) -> String {
        format!("{:#}", check(&cmd(p), user).unwrap_err())
    }

    #[test]
    #[ignore = "root: owns files as other users (run by `cargo xtask test`'s root tier)"]
    fn root_scripts_need_every_component_safe() {
        let s = Scratch::new("perm");
        let ok = s.script("bin", "ok.sh");
        assert_eq!(check(&cmd(&ok), None).unwrap(), Exec::Real(ok.clone()));

        let open = s.script("bin", "open.sh");
        chmod(&open, 0o757);
        assert!(refused(&open, None).contains("open.sh is writable by everyone"));

        let group = s.script("bin", "group.sh");
        chmod(&group, 0o775);
        // Root's group may write; another group may not.
        check(&cmd(&group), None).unwrap();
        std::os::unix::fs::chown(&group, None, Some(100)).unwrap();
        assert!(refused(&group, None).contains("is writable by group 100"));

        let theirs = s.script("bin", "theirs.sh");
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        assert!(refused(&theirs, None).contains("belongs to uid 65534"));

        let in_open_dir = s.script("open", "s.sh");
        chmod(&s.0.join("open"), 0o777);
        let e = refused(&in_open_dir, None);
        assert!(e.contains("/open is writable by everyone"), "{e}");
        // Sticky, as /tmp: only root can replace root's entries.
        chmod(&s.0.join("open"), 0o1777);
        check(&cmd(&in_open_dir), None).unwrap();
    }

    #[test]
    #[ignore = "root: owns files as other users (run by `cargo xtask test`'s root tier)"]
    fn a_symlink_is_checked_where_it_is_and_where_it_leads() {
        let s = Scratch::new("link");
        let target = s.script("bin", "real.sh");
        // In a directory anyone can write: re-pointable, so refused (the
        // target being safe is not enough).
        std::fs::create_dir_all(s.0.join("ww")).unwrap();
        chmod(&s.0.join("ww"), 0o777);
        let link = s.0.join("ww/run.sh");
        symlink(&target, &link).unwrap();
        let e = refused(&link, None);
        assert!(e.contains("/ww is writable by everyone"), "{e}");
        // In a safe directory it runs from its target.
        let safe = s.0.join("bin/run.sh");
        symlink(&target, &safe).unwrap();
        assert_eq!(
            check(&cmd(&safe), None).unwrap(),
            Exec::Real(target.clone())
        );
        // A safe link to an unsafe target is refused on the real path.
        chmod(&target, 0o777);
        assert!(refused(&safe, None).contains("real.sh is writable by everyone"));
    }

    #[test]
    #[ignore = "root: owns files as other users (run by `cargo xtask test`'s root tier)"]
    fn scripts_of_other_users_are_not_protected_but_must_be_runnable() {
        let s = Scratch::new("user");
        let nobody = RunAs::lookup("nobody").unwrap();
        let open = s.script("bin", "open.sh");
        chmod(&open, 0o757);
        // As keepalived: only what runs as root is guarded.
        assert_eq!(check(&cmd(&open), Some(nobody)).unwrap(), Exec::AsWritten);
        chmod(&open, 0o744);
        assert!(refused(&open, Some(nobody)).contains("not executable by uid:gid"));
        // Set-uid root runs as root whoever starts it.
        chmod(&open, 0o4757);
        assert!(refused(&open, Some(nobody)).contains("writable by everyone"));
        let dir = s.0.join("bin");
        assert!(refused(&dir, None).contains("is not a regular file"));
    }
}
