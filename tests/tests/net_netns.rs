//! The agent's network layer (lb-userspace src/net) against the real
//! kernel, each test in namespaces of its own: addresses, routes and rules
//! read back with `ip -j`, static_net's all-or-nothing apply, GARP and
//! unsolicited NA captured on the peer, VRRP MAC macvlans, link events.

mod common;

use rtnetlink::Handle;
use serde_json::Value;
use std::{net::IpAddr, time::Duration};
use xlb::config::vrrp::{Route, RouteKind, Rule, RuleAction, Scope, StaticNet, VirtualAddress};
use xlb::net;
use xlb_testbed::{
    capture::{capture_socket, receive_until},
    netns::Netns,
};

/// Runs `f` with a route netlink handle inside `ns` (on a thread that joined
/// it, so sockets and /proc/sys/net are the namespace's).
fn with_netlink<R: Send>(ns: &Netns, f: impl AsyncFnOnce(&Handle) -> R + Send) -> R {
    ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            f(&handle).await
        })
    })
    .unwrap()
}

/// A namespace with a veth pair eth0/eth1, both up.
fn veth_ns(role: &str) -> Netns {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create(role).unwrap();
    ns.run(
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
    )
    .unwrap();
    for dev in ["eth0", "eth1"] {
        ns.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    ns
}

fn json(ns: &Netns, args: &[&str]) -> Vec<Value> {
    let out = ns.run("ip", args).unwrap();
    match serde_json::from_str(&out).unwrap() {
        Value::Array(v) => v,
        other => panic!("ip {args:?}: not a list: {other}"),
    }
}

fn vip(addr: &str, prefix: u8) -> VirtualAddress {
    VirtualAddress {
        address: addr.parse().unwrap(),
        prefix,
        dev: None,
        brd: None,
        scope: None,
        label: None,
    }
}

/// The `addr_info` entries of `dev` for `local`.
fn addr_info(ns: &Netns, dev: &str, local: &str) -> Vec<Value> {
    json(ns, &["-j", "addr", "show", "dev", dev])
        .into_iter()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["local"] == local)
        .collect()
}

#[test]
fn addresses_every_form_and_idempotent() {
    let ns = veth_ns("addr");
    let mut labelled = vip("10.0.0.1", 24);
    labelled.brd = Some("10.0.0.255".parse().unwrap());
    labelled.label = Some("eth0:vip".into());
    let mut link_scoped = vip("10.0.1.1", 32);
    link_scoped.scope = Some(Scope::Link);
    let mut host_scoped = vip("10.0.2.1", 32);
    host_scoped.scope = Some(Scope::Host);
    host_scoped.dev = Some("eth1".into());
    let v6 = vip("fd00::1", 64);
    let all = [&labelled, &link_scoped, &host_scoped, &v6];

    with_netlink(&ns, async |h| {
        for _ in 0..2 {
            for a in all {
                net::addr::add(h, a, "eth0").await.unwrap();
            }
        }
    });
    let a = addr_info(&ns, "eth0", "10.0.0.1");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["prefixlen"], 24);
    assert_eq!(a[0]["broadcast"], "10.0.0.255");
    assert_eq!(a[0]["label"], "eth0:vip");
    assert_eq!(a[0]["scope"], "global");
    let a = addr_info(&ns, "eth0", "10.0.1.1");
    assert_eq!(
        (a[0]["prefixlen"].clone(), a[0]["scope"].clone()),
        (32.into(), "link".into())
    );
    assert!(a[0].get("broadcast").is_none(), "{a:?}");
    let a = addr_info(&ns, "eth1", "10.0.2.1");
    assert_eq!(a[0]["scope"], "host", "{a:?}");
    let a = addr_info(&ns, "eth0", "fd00::1");
    assert_eq!(a[0]["prefixlen"], 64);
    // Usable at once: no duplicate address detection pending.
    assert_eq!(a[0]["nodad"], true, "{a:?}");
    assert!(a[0].get("tentative").is_none(), "{a:?}");

    with_netlink(&ns, async |h| {
        for _ in 0..2 {
            for a in all {
                net::addr::remove(h, a, "eth0").await.unwrap();
            }
        }
    });
    for (dev, ip) in [
        ("eth0", "10.0.0.1"),
        ("eth0", "10.0.1.1"),
        ("eth1", "10.0.2.1"),
        ("eth0", "fd00::1"),
    ] {
        assert!(addr_info(&ns, dev, ip).is_empty(), "{ip} left on {dev}");
    }
}

#[test]
fn address_errors_name_the_object() {
    let ns = veth_ns("addrerr");
    let mut bad_label = vip("10.0.0.1", 24);
    bad_label.label = Some("eth1:vip".into());
    let mut no_dev = vip("10.0.0.2", 32);
    no_dev.dev = Some("nope0".into());
    let (label_err, dev_err, gone) = with_netlink(&ns, async |h| {
        (
            net::addr::add(h, &bad_label, "eth0").await.unwrap_err(),
            net::addr::add(h, &no_dev, "eth0").await.unwrap_err(),
            // Removing from a device that is gone: nothing to do.
            net::addr::remove(h, &no_dev, "eth0").await,
        )
    });
    let label_err = format!("{label_err:#}");
    assert!(
        label_err.starts_with("adding 10.0.0.1/24 label eth1:vip to eth0: "),
        "{label_err}"
    );
    assert!(
        label_err.contains("must start with the device name eth0"),
        "{label_err}"
    );
    let dev_err = format!("{dev_err:#}");
    assert!(dev_err.contains("adding 10.0.0.2/32 to nope0"), "{dev_err}");
    assert!(dev_err.contains("no interface named nope0"), "{dev_err}");
    gone.unwrap();
    assert!(addr_info(&ns, "eth0", "10.0.0.1").is_empty());
}

fn route(kind: RouteKind, dest: &str, prefix: u8) -> Route {
    Route {
        kind,
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

/// The route to `dst` in `table` ("main" when the JSON has no table).
fn find_route(routes: &[Value], dst: &str, table: &str) -> Option<Value> {
    routes
        .iter()
        .find(|r| r["dst"] == dst && r["table"].as_str().unwrap_or("main") == table)
        .cloned()
}

#[test]
fn routes_of_every_type_and_idempotent() {
    let ns = veth_ns("route");
    ns.run("ip", &["addr", "add", "10.0.0.2/24", "dev", "eth0"])
        .unwrap();
    ns.run("ip", &["addr", "add", "fd00::2/64", "dev", "eth0", "nodad"])
        .unwrap();
    let mut via = route(RouteKind::Unicast, "10.1.0.0", 16);
    via.via = Some("10.0.0.1".parse().unwrap());
    via.src = Some("10.0.0.2".parse().unwrap());
    via.table = Some(1000);
    via.metric = Some(5);
    let direct = route(RouteKind::Unicast, "10.2.0.0", 16);
    let mut blackhole = route(RouteKind::Blackhole, "10.3.0.0", 16);
    blackhole.table = Some(100);
    let unreachable = route(RouteKind::Unreachable, "10.4.0.0", 16);
    let prohibit = route(RouteKind::Prohibit, "10.5.0.0", 16);
    let mut throw = route(RouteKind::Throw, "10.6.0.0", 16);
    throw.table = Some(100);
    let mut v6 = route(RouteKind::Unicast, "fd01::", 64);
    v6.via = Some("fd00::1".parse().unwrap());
    v6.table = Some(200);
    let mut host = route(RouteKind::Unicast, "10.7.0.1", 32);
    host.dev = Some("eth1".into());
    host.scope = Some(Scope::Host);
    let all = [
        &via,
        &direct,
        &blackhole,
        &unreachable,
        &prohibit,
        &throw,
        &v6,
        &host,
    ];

    with_netlink(&ns, async |h| {
        for _ in 0..2 {
            for r in all {
                net::route::add(h, r, Some("eth0")).await.unwrap();
            }
        }
    });
    let routes = json(&ns, &["-j", "route", "show", "table", "all"]);
    let r = find_route(&routes, "10.1.0.0/16", "1000").expect("via route");
    assert_eq!(r["gateway"], "10.0.0.1");
    assert_eq!(r["prefsrc"], "10.0.0.2");
    assert_eq!(r["metric"], 5);
    assert_eq!(r["dev"], "eth0");
    let r = find_route(&routes, "10.2.0.0/16", "main").expect("direct route");
    assert_eq!(
        (r["dev"].clone(), r["scope"].clone()),
        ("eth0".into(), "link".into())
    );
    assert!(r.get("type").is_none(), "{r}");
    let r = find_route(&routes, "10.3.0.0/16", "100").expect("blackhole");
    assert_eq!(r["type"], "blackhole");
    let r = find_route(&routes, "10.4.0.0/16", "main").expect("unreachable");
    assert_eq!(r["type"], "unreachable");
    let r = find_route(&routes, "10.5.0.0/16", "main").expect("prohibit");
    assert_eq!(r["type"], "prohibit");
    let r = find_route(&routes, "10.6.0.0/16", "100").expect("throw");
    assert_eq!(r["type"], "throw");
    let r = find_route(&routes, "fd01::/64", "200").expect("IPv6 route");
    assert_eq!(r["gateway"], "fd00::1");
    let r = find_route(&routes, "10.7.0.1", "main").expect("host route");
    assert_eq!(
        (r["dev"].clone(), r["scope"].clone()),
        ("eth1".into(), "host".into())
    );

    with_netlink(&ns, async |h| {
        for _ in 0..2 {
            for r in all {
                net::route::remove(h, r, Some("eth0")).await.unwrap();
            }
        }
    });
    let routes = json(&ns, &["-j", "route", "show", "table", "all"]);
    for dst in [
        "10.1.0.0/16",
        "10.2.0.0/16",
        "10.3.0.0/16",
        "10.4.0.0/16",
        "10.5.0.0/16",
        "10.6.0.0/16",
        "fd01::/64",
        "10.7.0.1",
    ] {
        assert!(
            !routes.iter().any(|r| r["dst"] == dst),
            "{dst} left: {routes:?}"
        );
    }
}

fn rule(priority: u32, action: RuleAction) -> Rule {
    Rule {
        ipv6: false,
        from: None,
        to: None,
        fwmark: None,
        iif: None,
        oif: None,
        priority: Some(priority),
        action,
    }
}

fn find_rule(rules: &[Value], priority: u32) -> Option<Value> {
    rules.iter().find(|r| r["priority"] == priority).cloned()
}

#[test]
fn rules_of_every_kind_and_idempotent() {
    let ns = veth_ns("rule");
    let mut from = rule(100, RuleAction::Table(100));
    from.from = Some(("10.0.0.0".parse().unwrap(), 24));
    let mut to = rule(101, RuleAction::Blackhole);
    to.to = Some(("10.9.0.0".parse().unwrap(), 16));
    let mut mark = rule(102, RuleAction::Table(1000));
    mark.fwmark = Some((0x10, Some(0xff)));
    let mut iif = rule(103, RuleAction::Unreachable);
    iif.iif = Some("eth0".into());
    let mut oif = rule(104, RuleAction::Prohibit);
    oif.oif = Some("eth1".into());
    let mut v6 = rule(105, RuleAction::Table(200));
    v6.from = Some(("fd00::".parse().unwrap(), 64));
    let mut v6_bare = rule(106, RuleAction::Prohibit);
    v6_bare.ipv6 = true;
    let all = [&from, &to, &mark, &iif, &oif, &v6, &v6_bare];

    with_netlink(&ns, async |h| {
        for _ in 0..2 {
            for r in all {
                net::rule::add(h, r).await.unwrap();
            }
        }
    });
    let rules = json(&ns, &["-j", "rule"]);
    let r = find_rule(&rules, 100).expect("from rule");
    assert_eq!(
        (r["src"].clone(), r["srclen"].clone()),
        ("10.0.0.0".into(), 24.into())
    );
    assert_eq!(r["table"], "100");
    let r = find_rule(&rules, 101).expect("to rule");
    assert_eq!(
        (r["dst"].clone(), r["dstlen"].clone()),
        ("10.9.0.0".into(), 16.into())
    );
    assert_eq!(r["action"], "blackhole");
    let r = find_rule(&rules, 102).expect("fwmark rule");
    assert_eq!(
        (r["fwmark"].clone(), r["fwmask"].clone()),
        ("0x10".into(), "0xff".into())
    );
    assert_eq!(r["table"], "1000");
    let r = find_rule(&rules, 103).expect("iif rule");
    assert_eq!(
        (r["iif"].clone(), r["action"].clone()),
        ("eth0".into(), "unreachable".into())
    );
    let r = find_rule(&rules, 104).expect("oif rule");
    assert_eq!(
        (r["oif"].clone(), r["action"].clone()),
        ("eth1".into(), "prohibit".into())
    );
    // Added once, however often asked.
    assert_eq!(rules.iter().filter(|r| r["priority"] == 100).count(), 1);
    let rules6 = json(&ns, &["-j", "-6", "rule"]);
    let r = find_rule(&rules6, 105).expect("IPv6 rule");
    assert_eq!(
        (r["src"].clone(), r["table"].clone()),
        ("fd00::".into(), "200".into())
    );
    assert_eq!(
        find_rule(&rules6, 106).expect("bare IPv6 rule")["action"],
        "prohibit"
    );
    assert!(
        find_rule(&rules, 106).is_none(),
        "IPv6 rule in the IPv4 list"
    );

    with_netlink(&ns, async |h| {
        for _ in 0..2 {
            for r in all {
                net::rule::remove(h, r).await.unwrap();
            }
        }
    });
    let rules = json(&ns, &["-j", "rule"]);
    let rules6 = json(&ns, &["-j", "-6", "rule"]);
    for p in 100..=106 {
        assert!(
            find_rule(&rules, p).is_none() && find_rule(&rules6, p).is_none(),
            "{p} left"
        );
    }
}

/// Everything `ip` shows of addresses, routes and rules, for before/after comparisons.
fn snapshot(ns: &Netns) -> String {
    let mut s = String::new();
    for args in [
        &["-br", "addr"][..],
        &["route", "show", "table", "all"],
        &["rule"],
        &["-6", "rule"],
    ] {
        s += &ns.run("ip", args).unwrap();
    }
    s
}

#[test]
fn static_net_applies_and_removes_everything_or_nothing() {
    let ns = veth_ns("static");
    ns.run("ip", &["addr", "add", "10.0.0.2/24", "dev", "eth0"])
        .unwrap();
    let before = snapshot(&ns);
    let mut addr = vip("10.0.0.10", 32);
    addr.dev = Some("eth0".into());
    let mut via_vip = route(RouteKind::Unicast, "10.1.0.0", 16);
    via_vip.via = Some("10.0.0.1".parse().unwrap());
    via_vip.src = Some("10.0.0.10".parse().unwrap());
    via_vip.table = Some(100);
    let mut from_vip = rule(100, RuleAction::Table(100));
    from_vip.from = Some(("10.0.0.10".parse().unwrap(), 32));
    let good = StaticNet {
        addresses: vec![addr.clone()],
        routes: vec![via_vip.clone()],
        rules: vec![from_vip.clone()],
    };

    with_netlink(&ns, async |h| net::static_net::apply(h, &good).await).unwrap();
    assert_eq!(addr_info(&ns, "eth0", "10.0.0.10").len(), 1);
    let routes = json(&ns, &["-j", "route", "show", "table", "all"]);
    assert!(
        find_route(&routes, "10.1.0.0/16", "100").is_some(),
        "{routes:?}"
    );
    assert!(find_rule(&json(&ns, &["-j", "rule"]), 100).is_some());
    with_netlink(&ns, async |h| net::static_net::remove(h, &good).await).unwrap();
    assert_eq!(snapshot(&ns), before, "static_net::remove left something");

    // The pre-existing address is in the list too: undo must not take it.
    let mut existing = vip("10.0.0.2", 24);
    existing.dev = Some("eth0".into());
    let mut broken = route(RouteKind::Unicast, "10.8.0.0", 16);
    broken.dev = Some("nope0".into());
    let bad = StaticNet {
        addresses: vec![existing, addr],
        routes: vec![via_vip, broken],
        rules: vec![from_vip],
    };
    let err = with_netlink(&ns, async |h| net::static_net::apply(h, &bad).await).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("adding route 10.8.0.0/16 dev nope0"), "{err}");
    assert_eq!(snapshot(&ns), before, "a failed apply left something");
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let link = &json(ns, &["-j", "link", "show", dev])[0];
    let text = link["address"].as_str().unwrap();
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(text.split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

fn is_garp(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06]
}

fn is_na(f: &[u8]) -> bool {
    f.len() >= 86 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136
}

#[test]
fn announce_sends_garp_and_unsolicited_na_from_the_interface_mac() {
    xlb_testbed::require_root().unwrap();
    let director = Netns::create("dir").unwrap();
    let peer = Netns::create("peer").unwrap();
    director
        .run(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer.name(),
            ],
        )
        .unwrap();
    for ns in [&director, &peer] {
        ns.run("ip", &["link", "set", "eth0", "up"]).unwrap();
    }
    let mac = mac_of(&director, "eth0");
    let fd = capture_socket(&peer, "eth0").unwrap();
    let vip4: IpAddr = "10.0.0.100".parse().unwrap();
    let vip6: IpAddr = "fd00::100".parse().unwrap();
    director
        .enter(|| net::announce::Announcer::new().announce("eth0", &[vip4, vip6]))
        .unwrap()
        .unwrap();
    let frames = receive_until(&fd, Duration::from_secs(5), |fs| {
        fs.iter().any(|f| is_garp(f)) && fs.iter().any(|f| is_na(f))
    });

    let arp = frames.iter().find(|f| is_garp(f)).expect("no ARP captured");
    assert_eq!(arp[0..6], [0xff; 6], "not broadcast");
    assert_eq!(arp[6..12], mac, "Ethernet source is not the interface MAC");
    assert_eq!(
        arp[14..22],
        [0, 1, 8, 0, 6, 4, 0, 1],
        "not an Ethernet/IPv4 ARP request"
    );
    assert_eq!(arp[22..28], mac, "sender MAC");
    assert_eq!(arp[28..32], [10, 0, 0, 100], "sender IP is not the VIP");
    // Gratuitous: the target IP is the sender's own.
    assert_eq!(arp[38..42], arp[28..32]);

    let na = frames.iter().find(|f| is_na(f)).expect("no NA captured");
    let IpAddr::V6(v6) = vip6 else { unreachable!() };
    assert_eq!(na[0..6], [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(na[6..12], mac);
    assert_eq!(na[21], 255, "hop limit");
    assert_eq!(na[22..38], v6.octets(), "source");
    assert_eq!(
        na[38..54],
        "ff02::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(na[58] & 0x20, 0x20, "override flag");
    assert_eq!(na[58] & 0x40, 0, "solicited flag set on an unsolicited NA");
    assert_eq!(na[62..78], v6.octets(), "target");
    assert_eq!(na[78..80], [2, 1], "target link-layer address option");
    assert_eq!(na[80..86], mac);
    // The ICMPv6 checksum, verified over the pseudo-header.
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&na[22..54]);
    pseudo.extend_from_slice(&32u32.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&na[54..86]);
    assert_eq!(common::checksum(0, &pseudo), 0, "bad ICMPv6 checksum");
}

#[test]
fn announce_on_a_missing_interface_names_it() {
    let ns = veth_ns("annerr");
    let err = ns
        .enter(|| net::announce::Announcer::new().announce("nope0", &["10.0.0.1".parse().unwrap()]))
        .unwrap()
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("on nope0") && err.contains("no such interface"),
        "{err}"
    );
}

/// A veth pair named eth0 on both sides, up.
fn veth_pair(director: &Netns, peer: &Netns) {
    director
        .run(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer.name(),
            ],
        )
        .unwrap();
    for ns in [director, peer] {
        ns.run("ip", &["link", "set", "eth0", "up"]).unwrap();
    }
}

fn ifindex_of(ns: &Netns, dev: &str) -> i64 {
    json(ns, &["-j", "link", "show", dev])[0]["ifindex"]
        .as_i64()
        .unwrap()
}

/// The packet sockets of the calling thread's namespace: (bound interface index, inode).
fn packet_sockets() -> Vec<(i64, u64)> {
    std::fs::read_to_string("/proc/thread-self/net/packet")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[4].parse().unwrap(), w[8].parse().unwrap())
        })
        .collect()
}

#[test]
fn announcements_keep_one_socket_per_interface() {
    const BURSTS: usize = 200;
    xlb_testbed::require_root().unwrap();
    let director = Netns::create("dir").unwrap();
    let peer = Netns::create("peer").unwrap();
    veth_pair(&director, &peer);
    let capture = capture_socket(&peer, "eth0").unwrap();
    let vip: IpAddr = "10.0.0.100".parse().unwrap();
    let announcer = net::announce::Announcer::new();
    let (first, last) = director
        .enter(|| {
            announcer.announce("eth0", &[vip]).unwrap();
            let first = packet_sockets();
            for _ in 1..BURSTS {
                announcer.announce("eth0", &[vip]).unwrap();
            }
            (first, packet_sockets())
        })
        .unwrap();
    let index = ifindex_of(&director, "eth0");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, index, "not bound to eth0");
    assert_eq!(last, first, "the bursts did not share the first socket");
    let frames = receive_until(&capture, Duration::from_secs(5), |fs| {
        fs.iter().filter(|f| is_garp(f)).count() >= BURSTS
    });
    assert_eq!(frames.iter().filter(|f| is_garp(f)).count(), BURSTS);

    // eth0 deleted and created again: another index, and the socket follows.
    director.run("ip", &["link", "del", "eth0"]).unwrap();
    veth_pair(&director, &peer);
    let capture = capture_socket(&peer, "eth0").unwrap();
    let again = director
        .enter(|| {
            announcer.announce("eth0", &[vip]).unwrap();
            packet_sockets()
        })
        .unwrap();
    let new_index = ifindex_of(&director, "eth0");
    assert_ne!(new_index, index);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].0, new_index, "still bound to the old eth0");
    let frames = receive_until(&capture, Duration::from_secs(5), |fs| {
        fs.iter().any(|f| is_garp(f))
    });
    let garp = frames
        .iter()
        .find(|f| is_garp(f))
        .expect("no ARP after re-creation");
    assert_eq!(
        garp[6..12],
        mac_of(&director, "eth0"),
        "not the new eth0's MAC"
    );

    let left = director
        .enter(|| {
            announcer.forget("eth0");
            packet_sockets()
        })
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

fn link_details(ns: &Netns, dev: &str) -> Value {
    json(ns, &["-j", "-d", "link", "show", dev]).remove(0)
}

fn read_sysctl(ns: &Netns, path: &str) -> String {
    let path = path.to_string();
    ns.enter(move || std::fs::read_to_string(path))
        .unwrap()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn vmac_create_reuse_replace_and_delete() {
    let ns = veth_ns("vmac");
    let first = with_netlink(&ns, async |h| {
        net::vmac::create(h, "eth0", "vrrp.51", 51, false).await
    })
    .unwrap();
    let link = link_details(&ns, "vrrp.51");
    assert_eq!(link["ifindex"], first);
    assert_eq!(link["address"], "00:00:5e:00:01:33");
    assert_eq!(link["link"], "eth0");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private");
    assert!(
        link["flags"].as_array().unwrap().contains(&"UP".into()),
        "{link}"
    );
    // No EUI-64 link-local from the MAC every router of the group shares.
    assert_eq!(link["inet6_addr_gen_mode"], "none", "{link}");
    assert_eq!(
        read_sysctl(&ns, "/proc/sys/net/ipv4/conf/vrrp.51/arp_ignore"),
        "1"
    );
    assert_eq!(
        read_sysctl(&ns, "/proc/sys/net/ipv4/conf/vrrp.51/arp_filter"),
        "1"
    );
    // Only the vmac is tuned.
    assert_eq!(
        read_sysctl(&ns, "/proc/sys/net/ipv4/conf/eth0/arp_ignore"),
        "0"
    );
    assert_eq!(
        read_sysctl(&ns, "/proc/sys/net/ipv4/conf/all/arp_ignore"),
        "0"
    );

    // A matching one (as a crashed agent leaves it) is reused.
    let again = with_netlink(&ns, async |h| {
        net::vmac::create(h, "eth0", "vrrp.51", 51, false).await
    })
    .unwrap();
    assert_eq!(again, first);

    // A stale one that does not match is replaced.
    ns.run("ip", &["link", "del", "vrrp.51"]).unwrap();
    ns.run(
        "ip",
        &[
            "link", "add", "vrrp.51", "link", "eth0", "type", "macvlan", "mode", "bridge",
        ],
    )
    .unwrap();
    with_netlink(&ns, async |h| {
        net::vmac::create(h, "eth0", "vrrp.51", 51, false).await
    })
    .unwrap();
    let link = link_details(&ns, "vrrp.51");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private");
    assert_eq!(link["address"], "00:00:5e:00:01:33");

    // IPv6: its own MAC and a random (not EUI-64, shared) link-local.
    with_netlink(&ns, async |h| {
        net::vmac::create(h, "eth0", "vrrp6.51", 51, true).await
    })
    .unwrap();
    let link = link_details(&ns, "vrrp6.51");
    assert_eq!(link["address"], "00:00:5e:00:02:33");
    assert_eq!(link["inet6_addr_gen_mode"], "random", "{link}");

    // Something else of that name is left alone.
    ns.run(
        "ip",
        &[
            "link", "add", "vrrp.52", "type", "veth", "peer", "name", "x52",
        ],
    )
    .unwrap();
    let (refused, deleted) = with_netlink(&ns, async |h| {
        (
            net::vmac::create(h, "eth0", "vrrp.52", 52, false).await,
            net::vmac::delete(h, "vrrp.52").await,
        )
    });
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(
        refused.contains("vrrp.52 exists and is not a macvlan"),
        "{refused}"
    );
    assert!(deleted.is_err());
    assert_eq!(
        link_details(&ns, "vrrp.52")["linkinfo"]["info_kind"],
        "veth"
    );

    with_netlink(&ns, async |h| {
        for name in ["vrrp.51", "vrrp6.51", "vrrp.51"] {
            net::vmac::delete(h, name).await.unwrap();
        }
    });
    let names: Vec<Value> = json(&ns, &["-j", "link", "show"])
        .into_iter()
        .map(|l| l["ifname"].clone())
        .collect();
    assert!(
        !names.contains(&"vrrp.51".into()) && !names.contains(&"vrrp6.51".into()),
        "{names:?}"
    );
}

#[test]
fn link_watch_sees_initial_state_and_changes() {
    let ns = veth_ns("link");
    let events = with_netlink(&ns, async |_| {
        let names = vec!["eth0".to_string(), "missing0".to_string()];
        let mut rx = net::link::watch(&names).await.unwrap();
        let mut seen = Vec::new();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("no link event within 5 s")
                .expect("watch ended")
        };
        seen.push(next().await);
        seen.push(next().await);
        // Taking the peer down drops eth0's carrier.
        ns.run("ip", &["link", "set", "eth1", "down"]).unwrap();
        seen.push(next().await);
        ns.run("ip", &["link", "set", "eth1", "up"]).unwrap();
        seen.push(next().await);
        ns.run("ip", &["link", "set", "eth0", "down"]).unwrap();
        seen.push(next().await);
        seen
    });
    let want: Vec<(String, bool)> = [
        ("eth0", true),
        ("missing0", false),
        ("eth0", false),
        ("eth0", true),
        ("eth0", false),
    ]
    .iter()
    .map(|(n, u)| (n.to_string(), *u))
    .collect();
    assert_eq!(events, want);
}
