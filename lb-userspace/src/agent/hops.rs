//! Next hops of every configured real server, looked up through the kernel
//! (routes and neighbours) and kept between lookups, so that composing the
//! desired state on a checker or VRRP event costs no netlink round trip.

use crate::{
    config::{Config, Method},
    dataplane::NextHop,
    neigh::{Reach, Resolver},
};
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};
use tracing::{info, warn};

/// Where a real is reached: directly (DR, NAT) or as a tunnel endpoint (TUN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HopKey {
    pub address: IpAddr,
    pub tunnel: bool,
}

/// The last lookup of every real's next hop; `None`: unreachable (no route,
/// no neighbour entry), so the real is left out of scheduling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hops(pub HashMap<HopKey, Option<NextHop>>);

impl Hops {
    pub fn get(&self, address: IpAddr, method: Method) -> Option<NextHop> {
        let key = HopKey {
            address,
            tunnel: method == Method::Tun,
        };
        self.0.get(&key).copied().flatten()
    }
}

/// Looks up every real's next hop in one pass (one neighbour table dump,
/// [`Resolver::next_hops`]), waiting up to `wait` for missing neighbour
/// entries; logs a real when it becomes unreachable or reachable again
/// relative to `before`, which stays in force if the pass fails. Without a
/// resolver (a data plane that needs no next hops) there is nothing to look up.
pub async fn resolve(
    resolver: Option<&Resolver>,
    config: &Config,
    wait: Duration,
    before: &Hops,
) -> Hops {
    let mut out = Hops::default();
    let Some(resolver) = resolver else {
        return out;
    };
    let mut keys: Vec<HopKey> = Vec::new();
    let mut seen = HashSet::new();
    for svc in &config.services {
        let tunnel = svc.method == Method::Tun;
        let addresses = svc
            .reals
            .iter()
            .map(|r| r.address)
            .chain(svc.lifecycle.sorry_server.map(|s| s.address));
        for address in addresses {
            let key = HopKey { address, tunnel };
            if seen.insert(key) {
                keys.push(key);
            }
        }
    }
    let wanted: Vec<(IpAddr, Reach)> = keys
        .iter()
        .map(|k| {
            let reach = if k.tunnel {
                Reach::Tunnel
            } else {
                Reach::Direct
            };
            (k.address, reach)
        })
        .collect();
    let resolved = match resolver.next_hops(&wanted, wait).await {
        Ok(r) => r,
        Err(e) => {
            // A transient netlink failure must not take every real out.
            warn!(error = %crate::logging::chain(&e), "next hops not refreshed; keeping the previous ones");
            return before.clone();
        }
    };
    for (key, resolved) in keys.into_iter().zip(resolved) {
        let was_reachable = before.0.get(&key).map(Option::is_some);
        let hop = match resolved {
            Ok(h) => {
                if was_reachable == Some(false) {
                    info!(real = %key.address, "real server reachable again");
                }
                Some(h)
            }
            Err(e) => {
                if was_reachable != Some(false) {
                    warn!(real = %key.address, error = %crate::logging::chain(&e), "real server unreachable, left out of scheduling");
                }
                None
            }
        };
        out.0.insert(key, hop);
    }
    out
}
