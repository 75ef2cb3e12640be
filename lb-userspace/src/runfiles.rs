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
