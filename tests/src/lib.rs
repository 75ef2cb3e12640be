//! Testbed for xlb: network namespaces wired as an LVS-DR lab (client,
//! director, real servers on one bridge), HTTP reals that answer with their
//! name, and clients that report which real answered; qemu guests running
//! Debian's kernel for what the host kernel lacks (IPVS, ipip).
//!
//! Everything lives in namespaces this process creates and deletes, or inside
//! guests; nothing touches the root namespace's interfaces, routes or sysctls.

pub mod advert_watch;
pub mod agent;
pub mod bird;
pub mod capture;
pub mod failover;
pub mod fixtures;
pub mod frames;
pub mod http;
pub mod inject;
pub mod lab;
pub mod netns;
pub mod procfs;
pub mod promtool;
pub mod qemu;
pub mod run_files;
pub mod scrape;
pub mod stress;
pub mod udp;
pub mod vrrp;
pub mod worker;
pub mod xdp;

/// Removes what killed test runs left: their namespaces and their agents'
/// files in /run/xlb. Returns the names removed.
pub fn sweep_stale() -> anyhow::Result<Vec<String>> {
    let mut removed = netns::sweep_stale()?;
    removed.extend(run_files::sweep()?);
    Ok(removed)
}

/// Fail clearly unless running as root (namespaces, veths and XDP need it).
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the xlb testbed needs root (network namespaces, veths, XDP); run as root");
    }
    Ok(())
}

/// Serialises the tests that create namespaces, so a test can assert that no
/// namespace of this process is left behind.
#[cfg(test)]
pub(crate) fn ns_test_guard() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
