//! What a config asks of this host, as `keepalived -t` checks it: its
//! interfaces, and the addresses it has. Both front ends word their errors
//! alike from here.

use std::{collections::BTreeSet, net::IpAddr};

/// Whether an interface called `name` exists here.
pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// Every address on this host's interfaces.
pub fn addresses() -> BTreeSet<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|all| {
            all.filter_map(|ifa| {
                let a = ifa.address?;
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect()
        })
        .unwrap_or_default()
}

/// The error for an interface named as `what` that is not here.
pub fn missing_interface(name: &str, what: &str) -> String {
    format!(
        "interface '{name}' ({what}) does not exist here (keepalived -t refuses it too; add 'dynamic_interfaces' to global_defs if it appears later)"
    )
}

/// The error for an address owner's virtual address this node does not have.
pub fn not_owned(addr: IpAddr) -> String {
    format!(
        "priority 255 makes this node the owner of {addr}, but {addr} is not one of its addresses: the owner's virtual addresses are its own (RFC 9568 §1.1), or use a priority below 255"
    )
}
