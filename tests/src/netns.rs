//! Network namespaces owned by this process, entered per thread or per child
//! process, and removed on Drop.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Where `ip netns` keeps its bind-mounted namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// Every name starts with this, then the pid, so `sweep_stale` can tell whose it is.
const PREFIX: &str = "xlb-";

/// `ip`, `ethtool` and friends finish in milliseconds; anything slower is stuck.
const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes names unique within this process even when several labs coexist.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace created by this process (`ip netns add`), deleted on Drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `xlb-<pid>-<seq>-<role>` and bring its `lo` up.
    pub fn create(role: &str) -> Result<Netns> {
        if role.is_empty()
            || role.len() > 8
            || !role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            bail!("namespace role {role:?} must be 1-8 characters of [a-z0-9]");
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{seq}-{role}", std::process::id());
        let path = Path::new(NETNS_DIR).join(&name);
        // This process never reuses a name, so an existing one was left by an
        // earlier process that had our pid: it is stale.
        if path.exists() {
            remove_netns(&name)?;
        }
        let out = run_bounded(
            Command::new("ip").args(["netns", "add", &name]),
            CMD_TIMEOUT,
        )
        .with_context(|| format!("ip netns add {name}"))?;
        // Own it before anything else can fail, so Drop removes it.
        let ns = Netns { name };
        check_status("ip netns add", &out)?;
        ns.run("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    fn open(&self) -> Result<File> {
        File::open(self.path()).with_context(|| format!("open {}", self.path().display()))
    }

    /// Run `program args...` inside the namespace (bounded in time); on a
    /// non-zero exit the error carries stdout and stderr. Returns stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(program);
        cmd.args(args);
        let what = format!("{program} {} (in netns {})", args.join(" "), self.name);
        let out = run_bounded(&mut cmd, CMD_TIMEOUT).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                anyhow!("{what}: program `{program}` not found in PATH")
            } else {
                anyhow!("{what}: {e}")
            }
        })?;
        check_status(&what, &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A Command whose child joins this network namespace before exec. Only the
    /// net namespace changes (unlike `ip netns exec`, which also remounts /sys),
    /// so bpffs at /sys/fs/bpf stays the host's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        // Open now (before fork) so the child only needs the setns syscall.
        let fd = self.open().map_err(|e| {
            e.downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error)
                .unwrap_or(libc::ENOENT)
        });
        // SAFETY: the closure only calls setns(2), which is async-signal-safe,
        // and touches no allocator or lock in the forked child.
        unsafe {
            cmd.pre_exec(move || match &fd {
                Ok(file) => {
                    if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                }
                Err(errno) => Err(io::Error::from_raw_os_error(*errno)),
            });
        }
        cmd
    }

    /// Run `f` on a new thread that has joined this namespace. Sockets made
    /// there keep belonging to this namespace after the thread ends. A panic
    /// in `f` is propagated.
    pub fn enter<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        let name = self.name.clone();
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name(format!("in-{name}"))
                .spawn_scoped(s, move || -> Result<R> {
                    join(&file, &name)?;
                    Ok(f())
                })
                .context("spawn namespace thread")?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a thread of its own that has joined this namespace and
    /// returns at once (for a load that runs alongside the caller; threads
    /// `f` starts are in the namespace too).
    pub fn spawn<F, R>(&self, what: &str, f: F) -> Result<std::thread::JoinHandle<Result<R>>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(what.to_string())
            .spawn(move || -> Result<R> {
                join(&file, &name)?;
                Ok(f())
            })
            .with_context(|| format!("spawn {what} in {}", self.name))
    }

    /// The MAC address of `dev` in this namespace.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6]> {
        let text = self.run("cat", &[&format!("/sys/class/net/{dev}/address")])?;
        let bytes = text
            .trim()
            .split(':')
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<Vec<u8>, _>>()
            .with_context(|| format!("MAC address of {dev}: {text:?}"))?;
        bytes
            .try_into()
            .map_err(|b| anyhow!("MAC address of {dev}: {b:?}"))
    }

    /// Write a per-namespace sysctl such as `net.ipv4.conf.all.arp_ignore`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        if key.contains("..") || key.starts_with('/') {
            bail!("bad sysctl key {key:?}");
        }
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        // /proc/sys/net resolves against the opening thread's namespace.
        self.enter(|| std::fs::write(&path, value))?
            .with_context(|| format!("sysctl {key}={value} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = remove_netns(&self.name) {
            eprintln!("xlb-testbed: could not delete netns {}: {e:#}", self.name);
        }
    }
}

/// Moves the calling thread into the namespace `file` is open on.
fn join(file: &File, name: &str) -> Result<()> {
    // SAFETY: plain syscall on a valid fd; only this thread moves.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("setns into {name}"));
    }
    // Paranoia: nothing may run in the root namespace by mistake.
    let (now, expected) = (
        std::fs::metadata("/proc/thread-self/ns/net")?,
        file.metadata()?,
    );
    if (now.dev(), now.ino()) != (expected.dev(), expected.ino()) {
        bail!("thread is not in netns {name} after setns");
    }
    Ok(())
}

/// Delete a named namespace as `ip netns del` does (lazy unmount, then unlink),
/// without a child process so Drop cannot hang. The namespace itself (with its
/// veths) goes away once nothing else holds it.
fn remove_netns(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("refusing to delete netns {name:?}");
    }
    let path = Path::new(NETNS_DIR).join(name);
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let err = io::Error::last_os_error();
        // EINVAL: not a mount point (half-created); still unlink below.
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(err).with_context(|| format!("umount {}", path.display()));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("unlink {}", path.display())),
    }
}

/// Delete namespaces named `xlb-<pid>-*` whose pid is no longer alive (left by
/// killed runs). Returns the names deleted.
pub fn sweep_stale() -> Result<Vec<String>> {
    sweep_dead_owners(Path::new(NETNS_DIR), owner_pid, remove_netns)
}

/// Removes (with `remove`) each entry of `dir` whose name `owner` maps to a
/// pid no longer alive; returns the names removed. A missing `dir` has none.
pub(crate) fn sweep_dead_owners(
    dir: &Path,
    owner: fn(&str) -> Option<libc::pid_t>,
    remove: impl Fn(&str) -> Result<()>,
) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut removed = Vec::new();
    // Bounded: a directory listing is finite, and cap it anyway.
    for entry in entries.take(10_000) {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner(&name) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        remove(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// The pid in `xlb-<pid>-...`, if the name has that shape.
fn owner_pid(name: &str) -> Option<libc::pid_t> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    if tail.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

fn pid_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM means it exists but belongs to someone else.
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Run a command with captured output; kill it if it outlives `timeout`.
pub(crate) fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
) -> io::Result<std::process::Output> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let (tx, rx) = mpsc::channel();
    for (idx, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(1 << 20).read_to_end(&mut buf);
            }
            let _ = tx.send((idx, buf));
        });
    }
    drop(tx);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("killed after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        // A grandchild could hold a pipe open; do not wait for it forever.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        match rx.recv_timeout(left) {
            Ok((idx, buf)) => outs[idx] = buf,
            Err(_) => break,
        }
    }
    let [stdout, stderr] = outs;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

fn check_status(what: &str, out: &std::process::Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("xlb-123-0-cl"), Some(123));
        assert_eq!(owner_pid("xlb-123-"), None);
        assert_eq!(owner_pid("xlb-abc-0-cl"), None);
        assert_eq!(owner_pid("other-123-0"), None);
    }

    #[test]
    fn sweep_removes_dead_owner_only() -> Result<()> {
        crate::require_root()?;
        let _guard = crate::ns_test_guard();
        // A pid that has just exited is (almost surely) not alive.
        let mut child = Command::new("true").spawn()?;
        let dead = child.id();
        child.wait()?;
        let stale = format!("{PREFIX}{dead}-0-t");
        let out = run_bounded(
            Command::new("ip").args(["netns", "add", &stale]),
            CMD_TIMEOUT,
        )?;
        check_status("ip netns add", &out)?;
        let mine = Netns::create("t")?;
        let removed = sweep_stale();
        // Clean up even if the sweep misbehaved.
        let _ = remove_netns(&stale);
        let removed = removed?;
        assert!(removed.contains(&stale), "{removed:?}");
        assert!(mine.path().exists());
        let path = mine.path();
        drop(mine);
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn enter_and_command_run_inside() -> Result<()> {
        crate::require_root()?;
        let _guard = crate::ns_test_guard();
        let ns = Netns::create("t")?;
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        let inside = ns.enter(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))??;
        assert_eq!(inside.trim(), "1");
        let links = ns.run("ip", &["-o", "link", "show"])?;
        // A fresh namespace has only loopback.
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(ns.run("false", &[]).is_err());
        Ok(())
    }
}
