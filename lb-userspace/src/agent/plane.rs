//! Starting the data plane `[dataplane] kind` asks for: XDP, the kernel's
//! IPVS, or XDP falling back to IPVS with the reason logged.

use crate::{
    EBPF_OBJECT, EBPF_OBJECT_PATH,
    config::{Config, DataplaneKind},
    dataplane::{DataPlane, IpvsDataPlane, PinLock, XdpDataPlane},
    logging,
};
use anyhow::{Context, Result};
use tracing::warn;

/// Must run inside the tokio runtime (XDP's log forwarding spawns a task).
/// `lock` is the pin directory's, taken first thing at start.
pub fn start(config: &Config, lock: PinLock) -> Result<Box<dyn DataPlane>> {
    match config.dataplane.kind {
        DataplaneKind::Xdp => xdp(config, lock),
        DataplaneKind::Ipvs => ipvs(config),
        DataplaneKind::Auto => xdp(config, lock).or_else(|e| {
            warn!(reason = %crate::logging::chain(&e), "XDP data plane unavailable; falling back to the kernel's IPVS");
            ipvs(config)
        }),
    }
}

fn xdp(config: &Config, lock: PinLock) -> Result<Box<dyn DataPlane>> {
    let mut plane = XdpDataPlane::start(
        crate::require_object(EBPF_OBJECT, EBPF_OBJECT_PATH)?,
        &config.dataplane,
        logging::kernel_level(),
        lock,
    )?;
    if let Err(e) = logging::forward_ebpf_logs(plane.ebpf_mut()) {
        plane.stop(false)?;
        return Err(e);
    }
    Ok(Box::new(plane))
}

fn ipvs(config: &Config) -> Result<Box<dyn DataPlane>> {
    // The sync daemon starts as backup when its VRRP instance exists (it
    // starts as Backup and tells the plane when it becomes Master), else as master.
    let sync = config.global.lvs_sync_daemon.clone().map(|s| {
        let has_instance = config.vrrp.instances.iter().any(|i| i.name == s.instance);
        (s, !has_instance)
    });
    let plane = IpvsDataPlane::start(config.dataplane.timeouts, sync)
        .context("starting the IPVS data plane")?;
    Ok(Box::new(plane))
}
