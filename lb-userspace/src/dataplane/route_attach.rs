//! Where the XDP director attaches when the config names no interface (a
//! keepalived.conf with virtual servers but no VRRP instance or static
//! address, or TOML `interfaces = []`): the interfaces the kernel routes
//! the real servers (and sorry servers) through. The IPVS data plane
//! attaches to nothing.

use crate::{
    config::{Config, DataplaneKind},
    neigh::Resolver,
};
use anyhow::{Context, Result};
use tracing::info;

/// Fills in `config.dataplane.interfaces` when it is empty and the XDP
/// data plane (or `auto`) will need somewhere to attach.
pub async fn fill_in(resolver: &Resolver, config: &mut Config) -> Result<()> {
    let dp = &config.dataplane;
    if !dp.interfaces.is_empty() || dp.kind == DataplaneKind::Ipvs || config.services.is_empty() {
        return Ok(());
    }
    let mut interfaces: Vec<String> = Vec::new();
    let addrs = config.services.iter().flat_map(|s| {
        s.reals
            .iter()
            .map(|r| r.address)
            .chain(s.lifecycle.sorry_server.map(|s| s.address))
    });
    for addr in addrs {
        let name = resolver.route_interface(addr).await.with_context(|| {
            format!(
                "no interface named in the config, and no route to real server {addr} to attach by"
            )
        })?;
        if !interfaces.contains(&name) {
            info!(interface = %name, real = %addr, "no interface named in the config: attaching where the route to the real goes");
            interfaces.push(name);
        }
    }
    config.dataplane.interfaces = interfaces;
    Ok(())
}
