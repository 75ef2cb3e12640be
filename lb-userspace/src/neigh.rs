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

/// What the kernel's route lookup for one address says.
struct Route {
    ifindex: u32,
    gateway: Option<IpAddr>,
    /// The source address the kernel would use towards it (RTA_PREFSRC).
    source: Option<IpAddr>,
    kind: RouteType,
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
        let route = self.route(addr).await?;
        if let Some(gw) = route.gateway {
            bail!(
                "{addr} is routed via {gw}: direct routing needs the real server on a directly connected network"
            );
        }
        self.resolve(addr, &route, addr, wait).await
    }

    /// The interface the kernel routes `addr` through (where a config that
    /// names no interface attaches: the routes to its reals).
    pub async fn route_interface(&self, addr: IpAddr) -> Result<String> {
        let route = self.route(addr).await?;
        let mut links = self
            .handle
            .link()
            .get()
            .match_index(route.ifindex)
            .execute();
        let link = links
            .try_next()
            .await?
            .with_context(|| format!("interface {} is gone", route.ifindex))?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .with_context(|| format!("interface {} has no name", route.ifindex))
    }

    /// The next hop of a tunnel endpoint `addr`: unlike direct routing the
    /// real may sit behind a router, whose MAC is then the frame's destination.
    pub async fn tunnel_next_hop(&self, addr: IpAddr, wait: Duration) -> Result<NextHop> {
        let route = self.route(addr).await?;
        let on_link = route.gateway.unwrap_or(addr);
        self.resolve(addr, &route, on_link, wait).await
    }

    /// Completes the next hop of `addr` over `route` with the MAC of `on_link`
    /// (the real itself or its gateway), prodding resolution when needed.
    async fn resolve(
        &self,
        addr: IpAddr,
        route: &Route,
        on_link: IpAddr,
        wait: Duration,
    ) -> Result<NextHop> {
        if route.kind == RouteType::Local {
            bail!("{addr} is an address of this host");
        }
        let ifindex = route.ifindex;
        let (src_mac, mtu) = self.link(ifindex).await?;
        let hop = |mac| NextHop {
            ifindex,
            mac,
            src_mac,
            mtu,
            source: route.source,
        };
        if let Some(mac) = self.neighbour(on_link, ifindex).await? {
            return Ok(hop(mac));
        }
        prod(on_link);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(mac) = self.neighbour(on_link, ifindex).await? {
                return Ok(hop(mac));
            }
        }
        bail!("no neighbour entry for {on_link} after {wait:?}: is it up and on the link?")
    }

    async fn route(&self, addr: IpAddr) -> Result<Route> {
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
        let mut source = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(g) => gateway = route_addr(g),
                RouteAttribute::PrefSource(a) => source = route_addr(a),
                _ => {}
            }
        }
        Ok(Route {
            ifindex: oif.with_context(|| format!("the route to {addr} names no interface"))?,
            gateway,
            source,
            kind: route.header.kind,
        })
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
