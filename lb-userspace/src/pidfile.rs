//! The agent's pid file: written when `xlb run` starts, removed when it
//! exits (if it still names this agent), read by `xlb reload` to find the
//! agent to signal.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The pid file of this process; removed on drop.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path` (atomically: a reader never sees half a number).
    pub fn create(path: &Path) -> Result<PidFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Another agent may have taken the file over (another pin directory
        // with the same pid_file): leave its pid alone.
        if read(&self.path).ok() == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid in `path`.
pub fn read(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (is the xlb agent running?)", path.display()))?;
    text.trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("{} does not hold a process id", path.display()))
}

fn comm(pid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Sends `signal` to the agent named in `path`; fails if that process is
/// gone or is not an xlb (a stale file whose pid was reused).
pub fn signal(path: &Path, signal: i32) -> Result<i32> {
    let pid = read(path)?;
    let theirs = comm(&pid.to_string());
    if theirs.is_none() {
        bail!(
            "no process {pid} (from {}): is the xlb agent running?",
            path.display()
        );
    }
    if theirs != comm("self") {
        bail!(
            "process {pid} (from {}) is {}, not xlb: a stale pid file?",
            path.display(),
            theirs.unwrap_or_default()
        );
    }
    // SAFETY: kill(2) with a checked pid and a valid signal number.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("signalling process {pid}"));
    }
    Ok(pid)
}
