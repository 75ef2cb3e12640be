//! Finding where a real server is on the wire: the interface the kernel
//! routes it through, that interface's MAC, and the real's MAC from the
//! neighbour table (prodding the kernel to resolve it when absent).

use crate::dataplane::NextHop;
use anyhow::{Context, Result, anyhow, bail};
use futures::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
    route::{RouteAttribute, RouteType},
};
use rtnetlink::{Handle, RouteMessageBuilder};
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

pub struct Resolver {
    handle: Handle,
}

impl Resolver {
    /// Opens a route netlink socket in the caller's network namespace.
    pub fn new() -> Result<Resolver> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening route netlink")?;
        tokio::spawn(conn);
        Ok(Resolver { handle })
    }

    /// The next hop of `addr`, waiting up to `wait` for neighbour resolution.
    /// Fails when the real is not on a directly connected network, which
    /// direct routing needs.
    pub async fn next_hop(&self, addr: IpAddr, wait: Duration) -> Result<NextHop> {
        let (ifindex, gateway, kind) = self.route(addr).await?;
        if kind == RouteType::Local {
            bail!("{addr} is an address of this host");
        }
        if let Some(gw) = gateway {
            bail!(
                "{addr} is routed via {gw}: direct routing needs the real server on a directly connected network"
            );
        }
        let (src_mac, mtu) = self.link(ifindex).await?;
        if let Some(mac) = self.neighbour(addr, ifindex).await? {
            return Ok(NextHop {
                ifindex,
                mac,
                src_mac,
                mtu,
            });
        }
        prod(addr);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(mac) = self.neighbour(addr, ifindex).await? {
                return Ok(NextHop {
                    ifindex,
                    mac,
                    src_mac,
                    mtu,
                });
            }
        }
        bail!("no neighbour entry for {addr} after {wait:?}: is it up and on the link?")
    }

    async fn route(&self, addr: IpAddr) -> Result<(u32, Option<IpAddr>, RouteType)> {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(addr, prefix)
            .map_err(|e| anyhow!("{e}"))?
            .build();
        let mut routes = self.handle.route().get(msg).execute();
        let route = routes
            .try_next()
            .await
            .with_context(|| format!("no route to {addr}"))?
            .with_context(|| format!("no route to {addr}"))?;
        let mut oif = None;
        let mut gateway = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(g) => gateway = route_addr(g),
                _ => {}
            }
        }
        let oif = oif.with_context(|| format!("the route to {addr} names no interface"))?;
        Ok((oif, gateway, route.header.kind))
    }

    /// The MAC address and MTU of interface `ifindex`.
    async fn link(&self, ifindex: u32) -> Result<([u8; 6], u16)> {
        let mut links = self.handle.link().get().match_index(ifindex).execute();
        let link = links
            .try_next()
            .await?
            .with_context(|| format!("interface {ifindex} vanished"))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(mac) => mac.as_slice().try_into().ok(),
                _ => None,
            })
            .with_context(|| format!("interface {ifindex} has no Ethernet address"))?;
        let mtu = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some((*m).min(u16::MAX as u32) as u16),
                _ => None,
            })
            .unwrap_or(1500);
        Ok((mac, mtu))
    }

    async fn neighbour(&self, addr: IpAddr, ifindex: u32) -> Result<Option<[u8; 6]>> {
        let family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let mut neighbours = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        while let Some(n) = neighbours.try_next().await? {
            if n.header.ifindex != ifindex || !usable(n.header.state) {
                continue;
            }
            let mut dest = None;
            let mut mac = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::Destination(d) => dest = neighbour_addr(d),
                    NeighbourAttribute::LinkLayerAddress(l) => {
                        mac = <[u8; 6]>::try_from(l.as_slice()).ok()
                    }
                    _ => {}
                }
            }
            if dest == Some(addr) && mac.is_some() {
                return Ok(mac);
            }
        }
        Ok(None)
    }
}

fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

fn route_addr(a: &netlink_packet_route::route::RouteAddress) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteAddress;
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn neighbour_addr(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Makes the kernel resolve `addr` by sending it an empty datagram to the
/// discard port: the send needs the neighbour, so ARP/ND starts.
fn prod(addr: IpAddr) {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()
    } else {
        "[::]:0".parse()
    }
    .expect("literal address");
    if let Ok(sock) = UdpSocket::bind(bind) {
        let _ = sock.send_to(&[], SocketAddr::new(addr, 9));
    }
}
