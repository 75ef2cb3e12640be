//! Finding where real servers are on the wire: the interface the kernel
//! routes each through, that interface's MAC, and the real's MAC from the
//! neighbour table (prodding the kernel to resolve it when absent). A pass
//! over every real reads the neighbour table once, indexed by (interface,
//! address), instead of once per real: 25,000 reals against a table of
//! 25,000 entries were 625 million entries read per pass.

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt, stream};
use netlink_packet_route::{
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
    route::{RouteAttribute, RouteType},
};
use rtnetlink::{Handle, RouteMessageBuilder};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tracing::debug;

/// Where frames for a real server go on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Interface the real server is reached through.
    pub ifindex: u32,
    /// The real server's MAC address.
    pub mac: [u8; 6],
    /// The MAC address of that interface, the frame's new source.
    pub src_mac: [u8; 6],
    /// That interface's MTU.
    pub mtu: u16,
    /// The source address the kernel picks towards the real (its route's
    /// preferred source): the default outer source of tunnels.
    pub source: Option<IpAddr>,
}

/// Route lookups kept in flight at once on the netlink socket.
const ROUTES_IN_FLIGHT: usize = 64;
/// How often the neighbour table is read again while waiting for entries.
const POLL: Duration = Duration::from_millis(100);

pub struct Resolver {
    handle: Handle,
    counters: Counters,
}

/// How a next hop is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Direct routing (and NAT): the real must be on a directly connected
    /// network; its own MAC is the frame's destination.
    Direct,
    /// A tunnel endpoint: it may sit behind a router, whose MAC is then the
    /// frame's destination.
    Tunnel,
}

/// What the kernel's route lookup for one address says.
struct Route {
    ifindex: u32,
    gateway: Option<IpAddr>,
    /// The source address the kernel would use towards it (RTA_PREFSRC).
    source: Option<IpAddr>,
    kind: RouteType,
}

/// The neighbour table: (interface index, address) → MAC of usable entries.
type Neighbours = HashMap<(u32, IpAddr), [u8; 6]>;

/// What passes over every real's next hop cost, since the agent started
/// (exported as metrics); cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Counters(Arc<Atomics>);

#[derive(Debug, Default)]
struct Atomics {
    passes: AtomicU64,
    dumps: AtomicU64,
    last_pass_us: AtomicU64,
}

/// A reading of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Passes over every real's next hop (start, reload, each refresh).
    pub passes: u64,
    /// Neighbour table dumps those passes made (one each, unless a pass
    /// waited for entries to appear).
    pub dumps: u64,
    /// How long the latest pass took.
    pub last_pass: Duration,
}

impl Counters {
    pub fn get(&self) -> Totals {
        Totals {
            passes: self.0.passes.load(Ordering::Relaxed),
            dumps: self.0.dumps.load(Ordering::Relaxed),
            last_pass: Duration::from_micros(self.0.last_pass_us.load(Ordering::Relaxed)),
        }
    }
}

impl Resolver {
    /// Opens a route netlink socket in the caller's network namespace.
    pub fn new() -> Result<Resolver> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening route netlink")?;
        tokio::spawn(conn);
        Ok(Resolver {
            handle,
            counters: Counters::default(),
        })
    }

    /// What the passes cost, for the metrics.
    pub fn counters(&self) -> Counters {
        self.counters.clone()
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

    /// The next hop of each of `wanted`, in order, in one pass: a route
    /// lookup per address (pipelined), a link lookup per interface, and
    /// one dump of the neighbour table for all of them; entries still
    /// missing are prodded and, for up to `wait`, the table is read again
    /// every 100 ms until they appear. A real a route sends via a gateway
    /// fails unless it is a tunnel endpoint. An error: the neighbour table
    /// could not be read, so nothing is known about any real.
    pub async fn next_hops(
        &self,
        wanted: &[(IpAddr, Reach)],
        wait: Duration,
    ) -> Result<Vec<Result<NextHop>>> {
        let started = Instant::now();
        let routes: Vec<Result<Route>> = stream::iter(wanted)
            .map(|(addr, _)| self.route(*addr))
            .buffered(ROUTES_IN_FLIGHT)
            .collect()
            .await;
        // Where each frame goes: the route's interface and the on-link
        // address whose MAC it needs (the real itself, or its gateway).
        let plans: Vec<Result<(Route, IpAddr)>> = wanted
            .iter()
            .zip(routes)
            .map(|(&(addr, reach), route)| {
                let route = route?;
                if route.kind == RouteType::Local {
                    bail!("{addr} is an address of this host");
                }
                let on_link = match (route.gateway, reach) {
                    (Some(gw), Reach::Direct) => bail!(
                        "{addr} is routed via {gw}: direct routing needs the real server on a directly connected network"
                    ),
                    (Some(gw), Reach::Tunnel) => gw,
                    (None, _) => addr,
                };
                Ok((route, on_link))
            })
            .collect();
        let mut links: HashMap<u32, Result<([u8; 6], u16), String>> = HashMap::new();
        for (route, _) in plans.iter().flatten() {
            if let std::collections::hash_map::Entry::Vacant(slot) = links.entry(route.ifindex) {
                slot.insert(
                    self.link(route.ifindex)
                        .await
                        .map_err(|e| crate::logging::chain(&e).to_string()),
                );
            }
        }
        let missing = |table: &Neighbours| -> Vec<IpAddr> {
            let mut out: Vec<IpAddr> = plans
                .iter()
                .flatten()
                .filter(|(r, on_link)| !table.contains_key(&(r.ifindex, *on_link)))
                .map(|(_, on_link)| *on_link)
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        };
        let routed = started.elapsed();
        let mut table = self.neighbours().await?;
        debug!(
            addresses = wanted.len(),
            interfaces = links.len(),
            neighbours = table.len(),
            routes_ms = routed.as_millis() as u64,
            dump_ms = (started.elapsed() - routed).as_millis() as u64,
            "next hops: routes and links looked up, neighbour table read"
        );
        let unresolved = missing(&table);
        if !unresolved.is_empty() {
            prod(&unresolved);
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline && !missing(&table).is_empty() {
                tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
                table = self.neighbours().await?;
            }
        }
        let out = plans
            .into_iter()
            .map(|plan| {
                let (route, on_link) = plan?;
                let (src_mac, mtu) = links[&route.ifindex].clone().map_err(|e| anyhow!("{e}"))?;
                let mac = table.get(&(route.ifindex, on_link)).with_context(|| {
                    format!(
                        "no neighbour entry for {on_link} after {wait:?}: is it up and on the link?"
                    )
                })?;
                Ok(NextHop {
                    ifindex: route.ifindex,
                    mac: *mac,
                    src_mac,
                    mtu,
                    source: route.source,
                })
            })
            .collect();
        let t = &self.counters.0;
        t.passes.fetch_add(1, Ordering::Relaxed);
        t.last_pass_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(out)
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

    /// One dump of the whole neighbour table (both families), usable
    /// entries only.
    async fn neighbours(&self) -> Result<Neighbours> {
        self.counters.0.dumps.fetch_add(1, Ordering::Relaxed);
        let mut table = Neighbours::new();
        let mut dump = self.handle.neighbours().get().execute();
        while let Some(n) = dump
            .try_next()
            .await
            .context("reading the neighbour table")?
        {
            if !usable(n.header.state) {
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
            if let (Some(dest), Some(mac)) = (dest, mac) {
                table.insert((n.header.ifindex, dest), mac);
            }
        }
        Ok(table)
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

/// Makes the kernel resolve `addrs` by sending each an empty datagram to
/// the discard port: the send needs the neighbour, so ARP/ND starts. One
/// socket per family for all of them.
fn prod(addrs: &[IpAddr]) {
    let v4 = UdpSocket::bind("0.0.0.0:0").ok();
    let v6 = UdpSocket::bind("[::]:0").ok();
    for addr in addrs {
        let sock = if addr.is_ipv4() { &v4 } else { &v6 };
        if let Some(sock) = sock {
            let _ = sock.send_to(&[], SocketAddr::new(*addr, 9));
        }
    }
}
