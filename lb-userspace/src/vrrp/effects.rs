//! The seam between the protocol and the host's network: what VRRP asks
//! for when it gains or loses mastership (addresses, routes, rules, static
//! configuration, gratuitous ARP / unsolicited NA, `no_accept`'s drop
//! rules). The protocol decides when; an implementation of [`Net`] decides how.

use crate::{
    config::vrrp::{Instance, StaticNet},
    net,
};
use anyhow::Result;
use futures::future::BoxFuture;
use std::net::IpAddr;
use tracing::debug;

/// The host operations VRRP needs. All of them are idempotent: adding what
/// exists or removing what is gone succeeds.
pub trait Net: Send + Sync + 'static {
    /// Fails, before the instance starts, when the host cannot do what it
    /// asks (`no_accept` needs the `nft` program); clears what a killed
    /// agent left that the instance would otherwise inherit.
    fn check<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>>;
    /// Adds the instance's `virtual_ipaddress`, `virtual_ipaddress_excluded`,
    /// `virtual_routes` and `virtual_rules` (on becoming Master). An address
    /// without `dev` goes on the instance's VMAC if it has one, else on its
    /// interface. With `no_accept`, packets to the addresses are refused
    /// before the addresses exist.
    fn up<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>>;
    /// Removes them again (on leaving Master), rules and routes first,
    /// `no_accept`'s refusal last.
    fn down<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>>;
    /// Removes the instance's addresses that are on the host although it
    /// is not Master (a previous agent left them); how many there were.
    fn remove_stale<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<usize>>;
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

/// The host's network through `crate::net` (rtnetlink, AF_PACKET).
pub struct HostNet {
    handle: rtnetlink::Handle,
    no_accept: net::accept::NoAccept,
    announcer: net::announce::Announcer,
}

impl HostNet {
    /// Opens the netlink connection (its task runs on the agent's runtime).
    pub fn new() -> Result<HostNet> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(HostNet {
            handle,
            no_accept: net::accept::NoAccept::default(),
            announcer: net::announce::Announcer::new(),
        })
    }
}

/// Whether the host must refuse packets to the instance's addresses while
/// Master: `no_accept`, unless it owns them (priority 255), as keepalived.
fn refuses(i: &Instance) -> bool {
    !i.accept && i.priority != 255
}

/// Every address the instance adds: `virtual_ipaddress` and `_excluded`.
fn addresses(i: &Instance) -> Vec<IpAddr> {
    i.virtual_ipaddress
        .iter()
        .chain(&i.virtual_ipaddress_excluded)
        .map(|a| a.address)
        .collect()
}

/// The addresses the instance adds and removes: none for the address owner,
/// whose virtual addresses are the host's own and stay.
fn owned_by_us(i: &Instance) -> impl Iterator<Item = &crate::config::vrrp::VirtualAddress> {
    i.virtual_ipaddress
        .iter()
        .chain(&i.virtual_ipaddress_excluded)
        .filter(|_| !i.owner())
}

/// Where an instance's addresses go when they name no device.
fn dev(i: &Instance) -> &str {
    i.vmac
        .as_ref()
        .map_or(i.interface.as_str(), |v| v.name.as_str())
}

impl Net for HostNet {
    fn check<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if refuses(inst) {
                net::accept::check_nft().await?;
                self.no_accept.clear_stale().await?;
            }
            Ok(())
        })
    }

    fn up<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let h = &self.handle;
            // Refusing first: not one packet reaches a local socket meanwhile.
            if refuses(inst) {
                self.no_accept.hold(&addresses(inst)).await?;
            }
            // Addresses first: routes and rules may use a VIP as their source.
            for a in owned_by_us(inst) {
                net::addr::add(h, a, dev(inst)).await?;
            }
            for r in &inst.virtual_routes {
                net::route::add(h, r, Some(dev(inst))).await?;
            }
            for r in &inst.virtual_rules {
                net::rule::add(h, r).await?;
            }
            Ok(())
        })
    }

    fn down<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let h = &self.handle;
            // Keep going past a failure, so one stuck entry leaves no other behind.
            let mut first: Option<anyhow::Error> = None;
            let mut note = |r: Result<()>| {
                if let Err(e) = r {
                    debug!(error = %crate::logging::chain(&e), "removing a VRRP entry failed");
                    first.get_or_insert(e);
                }
            };
            for r in &inst.virtual_rules {
                note(net::rule::remove(h, r).await);
            }
            for r in &inst.virtual_routes {
                note(net::route::remove(h, r, Some(dev(inst))).await);
            }
            for a in owned_by_us(inst) {
                note(net::addr::remove(h, a, dev(inst)).await);
            }
            if refuses(inst) {
                note(self.no_accept.release(&addresses(inst)).await);
            }
            first.map_or(Ok(()), Err)
        })
    }

    fn remove_stale<'a>(&'a self, inst: &'a Instance) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move {
            let mut removed = 0;
            for a in owned_by_us(inst) {
                if net::addr::remove_old(&self.handle, a, dev(inst)).await? == net::Change::Done {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn announce(&self, ifname: &str, addrs: &[IpAddr]) -> Result<()> {
        self.announcer.announce(ifname, addrs)
    }

    fn vmac_create<'a>(
        &'a self,
        base: &'a str,
        name: &'a str,
        vrid: u8,
        ipv6: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            net::vmac::create(&self.handle, base, name, vrid, ipv6)
                .await
                .map(|_| ())
        })
    }

    fn vmac_delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        self.announcer.forget(name);
        Box::pin(net::vmac::delete(&self.handle, name))
    }

    fn apply_static<'a>(&'a self, s: &'a StaticNet) -> BoxFuture<'a, Result<()>> {
        Box::pin(net::static_net::apply(&self.handle, s))
    }

    fn remove_static<'a>(&'a self, s: &'a StaticNet) -> BoxFuture<'a, Result<()>> {
        Box::pin(net::static_net::remove(&self.handle, s))
    }
}
