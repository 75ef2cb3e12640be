//! The files an agent keeps in /run/xlb beside its pinned maps (bpffs holds
//! no regular files): each named after the pin directory, so two agents on
//! one host (each with its own pin path) never share one, and a reader
//! given a pin path finds the agent's.

use std::path::{Path, PathBuf};

/// Where the agent's run-time files live.
pub const DIR: &str = "/run/xlb";

/// `/run/xlb/<prefix><pin path with / as _><suffix>`.
pub fn for_pins(pin_dir: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let flat = pin_dir
        .to_string_lossy()
        .trim_matches('/')
        .replace('/', "_");
    PathBuf::from(DIR).join(format!("{prefix}{flat}{suffix}"))
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed
/// over it), so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A JSON file an agent keeps for readers until it stops: once removed at
/// the stop, later publishes write nothing, so a late publisher cannot
/// bring the file back. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StateFile {
    path: Option<PathBuf>,
    /// Held while the file is written or removed; `true` once removed.
    closed: std::sync::Arc<std::sync::Mutex<bool>>,
}

impl StateFile {
    /// A file at `path`; `None` keeps none (publishes do nothing).
    pub fn new(path: Option<PathBuf>) -> StateFile {
        StateFile {
            path,
            closed: Default::default(),
        }
    }

    /// Writes `value` (whole or not at all), or removes the file when there
    /// is nothing to show (`empty`), so readers show no section then.
    pub fn publish<T: serde::Serialize>(&self, value: &T, empty: bool) -> anyhow::Result<()> {
        use anyhow::Context;
        let Some(path) = &self.path else {
            return Ok(());
        };
        let closed = self
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *closed {
            return Ok(());
        }
        if empty {
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(value)?;
        write_atomic(path, &json).with_context(|| format!("writing {}", path.display()))
    }

    /// Removes the file for good (the agent stops).
    pub fn remove(&self) {
        let mut closed = self
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *closed = true;
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The JSON file at `path` an agent keeps, or `None` when there is none.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pin_path() {
        assert_eq!(
            for_pins(Path::new("/sys/fs/bpf/xlb"), "vrrp-", ".json"),
            Path::new("/run/xlb/vrrp-sys_fs_bpf_xlb.json")
        );
        assert_ne!(
            for_pins(Path::new("/sys/fs/bpf/xlb-a"), "", ".lock"),
            for_pins(Path::new("/sys/fs/bpf/xlb-b"), "", ".lock")
        );
    }
}
