//! The seam between the protocol and the host's network: what VRRP asks
//! for when it gains or loses mastership (addresses, routes, rules, static
//! configuration, gratuitous ARP / unsolicited NA). The protocol decides
//! when; an implementation of [`Net`] decides how.

use crate::config::vrrp::{Instance, StaticNet};
use anyhow::Result;
use futures::future::BoxFuture;
use std::net::IpAddr;
use tracing::debug;

/// The host operations VRRP needs. All of them are idempotent: adding what
/// exists or removing what is gone succeeds.
pub trait Net: Send + Sync + 'static {
    /// Adds the instance's `virtual_ipaddress`, `virtual_ipaddress_excluded`,
    /// `virtual_routes` and `virtual_rules` (on becoming Master). An address
    /// without `dev` goes on the instance's VMAC if it has one, else on its interface.
    fn up<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>>;
    /// Removes them again (on leaving Master), rules and routes first.
    fn down<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>>;
    /// One gratuitous ARP per IPv4 and one unsolicited NA per IPv6 address, from `ifname`.
    fn announce(&self, ifname: &str, addrs: &[IpAddr]) -> Result<()>;
    /// `use_vmac`: the macvlan `name` on `base` with the VRRP MAC of `vrid`
    /// (created before the instance opens its socket, deleted after it stops).
    fn vmac_create<'a>(
        &'a self,
        base: &'a str,
        name: &'a str,
        vrid: u8,
        ipv6: bool,
    ) -> BoxFuture<'a, Result<()>>;
    fn vmac_delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
    /// `static_ipaddress` / `static_routes` / `static_rules` at start and stop.
    fn apply_static<'a>(&'a self, s: &'a StaticNet) -> BoxFuture<'a, Result<()>>;
    fn remove_static<'a>(&'a self, s: &'a StaticNet) -> BoxFuture<'a, Result<()>>;
}

/// Until the host-network module (branch vrrp-net) is wired in: records
/// what would be done in the log and changes nothing, so mastership and the
/// data plane still follow the protocol.
pub struct LogOnly;

impl Net for LogOnly {
    fn up<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            debug!(instance = %inst.name, "would add the virtual addresses");
            Ok(())
        })
    }

    fn down<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            debug!(instance = %inst.name, "would remove the virtual addresses");
            Ok(())
        })
    }

    fn announce(&self, ifname: &str, addrs: &[IpAddr]) -> Result<()> {
        debug!(ifname, ?addrs, "would announce");
        Ok(())
    }

    fn vmac_create<'a>(
        &'a self,
        base: &'a str,
        name: &'a str,
        _: u8,
        _: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            anyhow::bail!(
                "use_vmac ({name} on {base}) needs the host-network module, which is not wired in"
            )
        })
    }

    fn vmac_delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn apply_static<'a>(&'a self, _: &'a StaticNet) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn remove_static<'a>(&'a self, _: &'a StaticNet) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
