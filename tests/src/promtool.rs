//! Prometheus' `promtool`, which checks the metrics endpoint's exposition.
//! Taken from PATH, else from a cache: Debian packages it only inside the
//! `prometheus` server package, whose installation would start a
//! Prometheus server on the machine, so the package is downloaded (`apt-get
//! download`) and only `usr/bin/promtool` is unpacked from it, once.

use anyhow::{Context, Result, bail};
use std::{path::PathBuf, process::Command};

/// Where the unpacked promtool is kept (`XLB_TOOLS_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XLB_TOOLS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xlb-tools"))
}

fn on_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
}

/// promtool's path, fetching it into the cache if needed (root, apt).
pub fn path() -> Result<PathBuf> {
    if let Some(p) = on_path() {
        return Ok(p);
    }
    let cached = cache_dir().join("promtool");
    if cached.is_file() {
        return Ok(cached);
    }
    // A directory of this process's own, renamed into place when complete,
    // so concurrent fetches never see half a file.
    let work = cache_dir().join(format!("fetch-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let fetched = (|| -> Result<()> {
        let st = Command::new("apt-get")
            .args(["download", "-qq", "prometheus"])
            .current_dir(&work)
            .status()
            .context("running apt-get download")?;
        if !st.success() {
            bail!("apt-get download prometheus failed ({st}); run apt-get update first?");
        }
        let deb = std::fs::read_dir(&work)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download wrote no .deb")?;
        let st = Command::new("sh")
            .arg("-c")
            .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x ./usr/bin/promtool")
            .arg("sh")
            .arg(&deb)
            .current_dir(&work)
            .status()?;
        if !st.success() {
            bail!("unpacking promtool from {} failed", deb.display());
        }
        std::fs::rename(work.join("usr/bin/promtool"), &cached)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    fetched.context("fetching promtool")?;
    Ok(cached)
}
