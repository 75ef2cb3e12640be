//! Virtual and static routes (`ip route add|del`): unicast, blackhole,
//! unreachable, prohibit and throw, in any table.

use super::{Change, ifindex, link_by_name, request, route_scope};
use crate::config::vrrp::{Route, RouteKind};
use anyhow::{Context, Result, bail};
use netlink_packet_route::{
    AddressFamily,
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};
use rtnetlink::Handle;
use std::{fmt::Write, net::IpAddr};

/// Adds `r`. A unicast route without `via` or `dev` goes out of
/// `default_dev` (the instance's interface); an existing route is not an error.
pub async fn add(handle: &Handle, r: &Route, default_dev: Option<&str>) -> Result<()> {
    add_new(handle, r, default_dev).await.map(drop)
}

/// Removes `r`; a route (or its device) already gone is not an error.
pub async fn remove(handle: &Handle, r: &Route, default_dev: Option<&str>) -> Result<()> {
    let dev = device(r, default_dev);
    let what = || format!("removing route {}", describe(r, dev));
    let index = match dev {
        // Routes through a device that is gone went with it.
        Some(d) => match link_by_name(handle, d).await.with_context(what)? {
            Some(link) => Some(link.header.index),
            None => return Ok(()),
        },
        None => None,
    };
    let msg = message(r, index, Op::Remove).with_context(what)?;
    request(
        handle.route().del(msg).execute(),
        &[libc::ESRCH, libc::ENOENT],
    )
    .await
    .with_context(what)?;
    Ok(())
}

/// [`add`], telling whether this call added it (for undo on failure).
pub(crate) async fn add_new(
    handle: &Handle,
    r: &Route,
    default_dev: Option<&str>,
) -> Result<Change> {
    let dev = device(r, default_dev);
    let what = || format!("adding route {}", describe(r, dev));
    let index = match dev {
        Some(d) => Some(ifindex(handle, d).await.with_context(what)?),
        None => None,
    };
    let msg = message(r, index, Op::Add).with_context(what)?;
    request(handle.route().add(msg).execute(), &[libc::EEXIST])
        .await
        .with_context(what)
}

/// The device a route uses: its own, else for a unicast route with no
/// gateway (which needs one) the default; with a gateway the kernel finds it.
fn device<'a>(r: &'a Route, default_dev: Option<&'a str>) -> Option<&'a str> {
    match (&r.dev, r.kind, r.via) {
        (Some(d), _, _) => Some(d),
        (None, RouteKind::Unicast, None) => default_dev,
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// The RTM_NEWROUTE / RTM_DELROUTE message, with iproute2's defaults.
fn message(r: &Route, index: Option<u32>, op: Op) -> Result<RouteMessage> {
    let v4 = r.dest.is_ipv4();
    let max = if v4 { 32 } else { 128 };
    if r.prefix > max {
        bail!("prefix /{} is longer than {max}", r.prefix);
    }
    for (what, ip) in [("via", r.via), ("src", r.src)] {
        if let Some(ip) = ip
            && ip.is_ipv4() != v4
        {
            bail!("{what} {ip} is not of the destination's address family");
        }
    }
    let kind = match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
        RouteKind::Throw => RouteType::Throw,
    };
    if kind != RouteType::Unicast && (r.via.is_some() || r.dev.is_some()) {
        bail!("a {} route has no via or dev", r.kind.name());
    }
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    h.destination_prefix_length = r.prefix;
    h.kind = kind;
    h.protocol = RouteProtocol::Static;
    h.scope = match (r.scope, op) {
        (Some(s), _) => route_scope(s),
        // Removing: any scope matches.
        (None, Op::Remove) => RouteScope::NoWhere,
        // Adding: a directly connected route is link scope (as `ip route` does).
        (None, Op::Add) if kind == RouteType::Unicast && r.via.is_none() => RouteScope::Link,
        (None, Op::Add) => RouteScope::Universe,
    };
    let table = r.table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN));
    // Tables above 255 only fit the RTA_TABLE attribute.
    h.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.attributes.push(RouteAttribute::Table(table));
    msg.attributes
        .push(RouteAttribute::Destination(route_address(r.dest)));
    if let Some(via) = r.via {
        msg.attributes
            .push(RouteAttribute::Gateway(route_address(via)));
    }
    if let Some(src) = r.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(route_address(src)));
    }
    if let Some(index) = index {
        msg.attributes.push(RouteAttribute::Oif(index));
    }
    if let Some(metric) = r.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    Ok(msg)
}

/// `ip route` style: `blackhole 10.9.0.0/16 table 100 metric 5`.
pub(crate) fn describe(r: &Route, dev: Option<&str>) -> String {
    let mut s = String::new();
    if r.kind != RouteKind::Unicast {
        let _ = write!(s, "{} ", r.kind.name());
    }
    let _ = write!(s, "{}/{}", r.dest, r.prefix);
    if let Some(via) = r.via {
        let _ = write!(s, " via {via}");
    }
    if let Some(src) = r.src {
        let _ = write!(s, " src {src}");
    }
    if let Some(dev) = dev {
        let _ = write!(s, " dev {dev}");
    }
    if let Some(table) = r.table {
        let _ = write!(s, " table {table}");
    }
    if let Some(metric) = r.metric {
        let _ = write!(s, " metric {metric}");
    }
    if let Some(scope) = r.scope {
        let _ = write!(s, " scope {}", scope.name());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dest: &str, prefix: u8) -> Route {
        Route {
            kind: RouteKind::Unicast,
            dest: dest.parse().unwrap(),
            prefix,
            via: None,
            src: None,
            dev: None,
            table: None,
            metric: None,
            scope: None,
        }
    }

    #[test]
    fn default_device_only_for_routes_that_need_one() {
        let mut r = route("10.1.0.0", 16);
        assert_eq!(device(&r, Some("eth0")), Some("eth0"));
        r.via = Some("10.0.0.1".parse().unwrap());
        assert_eq!(device(&r, Some("eth0")), None);
        let mut r = route("10.1.0.0", 16);
        r.kind = RouteKind::Blackhole;
        assert_eq!(device(&r, Some("eth0")), None);
        r.dev = Some("eth1".into());
        assert_eq!(device(&r, Some("eth0")), Some("eth1"));
    }

    #[test]
    fn big_tables_go_in_the_attribute() {
        let mut r = route("10.1.0.0", 16);
        r.table = Some(1000);
        let msg = message(&r, Some(2), Op::Add).unwrap();
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        r.table = Some(100);
        let msg = message(&r, Some(2), Op::Add).unwrap();
        assert_eq!(msg.header.table, 100);
    }

    #[test]
    fn scope_defaults_follow_ip_route() {
        let r = route("10.1.0.0", 16);
        assert_eq!(
            message(&r, Some(2), Op::Add).unwrap().header.scope,
            RouteScope::Link
        );
        assert_eq!(
            message(&r, Some(2), Op::Remove).unwrap().header.scope,
            RouteScope::NoWhere
        );
        let mut r = route("10.1.0.0", 16);
        r.via = Some("10.0.0.1".parse().unwrap());
        assert_eq!(
            message(&r, None, Op::Add).unwrap().header.scope,
            RouteScope::Universe
        );
    }

    #[test]
    fn bad_routes_are_refused() {
        let mut r = route("10.1.0.0", 16);
        r.via = Some("fd00::1".parse().unwrap());
        assert!(message(&r, None, Op::Add).is_err());
        let mut r = route("10.1.0.0", 33);
        assert!(message(&r, None, Op::Add).is_err());
        r.prefix = 16;
        r.kind = RouteKind::Blackhole;
        r.via = Some("10.0.0.1".parse().unwrap());
        let err = message(&r, None, Op::Add).unwrap_err().to_string();
        assert!(err.contains("blackhole route has no via"), "{err}");
    }
}
