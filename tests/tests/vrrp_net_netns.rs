//! What VRRP does to the host's network on mastership, with real `xlb run`
//! agents on the VRRP lab's bridge: `no_accept`'s nftables drop rules,
//! `virtual_routes` and `virtual_rules` following the Master, the GARP /
//! unsolicited NA bursts counted in the observer, and `use_vmac`. Every wait
//! is a bounded poll for a condition; counts come from the config.

mod common;

use common::{
    vrrp::{Director, ELECTION, FAST, instance},
    xlb_bin,
};
use serde_json::Value;
use socket2::{Domain, Socket, Type};
use std::{
    io,
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};
use xlb_testbed::{
    capture::{capture_socket, receive_until},
    netns::Netns,
    vrrp::{VrrpLab, temp_dir, wait_until},
};

const VIP4: &str = "10.9.0.100";
const VIP6: &str = "fd09::100";
/// A port with a listener on the director but no service: local delivery only.
const PORT: u16 = 7777;
/// How long a probe waits for an answer that no_accept must prevent.
const PROBE: Duration = Duration::from_secs(2);
/// Long enough to see every burst of the slowest test here.
const CAPTURE: Duration = Duration::from_secs(20);

fn lab(n: usize) -> VrrpLab {
    let _ = xlb_bin();
    VrrpLab::build(n).unwrap()
}

/// A dual-stack TCP listener on [`PORT`] in `ns` (never accepting: the
/// kernel completes handshakes into its backlog).
fn listen(ns: &Netns) -> Socket {
    ns.enter(|| -> io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, Type::STREAM, None)?;
        s.set_only_v6(false)?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::from(([0u16; 8], PORT)).into())?;
        s.listen(16)?;
        Ok(s)
    })
    .unwrap()
    .unwrap()
}

/// A TCP connection from the observer to `addr`:[`PORT`].
fn connect(obs: &Netns, addr: &str) -> io::Result<()> {
    let to = SocketAddr::new(addr.parse().unwrap(), PORT);
    obs.enter(|| TcpStream::connect_timeout(&to, PROBE).map(drop))
        .unwrap()
}

/// The names of the namespace's nftables tables (`family name` each).
fn nft_tables(ns: &Netns) -> Vec<String> {
    let out = ns.run("nft", &["list", "tables"]).unwrap();
    out.lines()
        .filter_map(|l| l.strip_prefix("table "))
        .map(str::to_string)
        .collect()
}

/// The elements of set `set` of table `inet xlb`.
fn nft_elements(ns: &Netns, set: &str) -> Vec<String> {
    let out = ns
        .run("nft", &["-j", "list", "set", "inet", "xlb", set])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["set"]["elem"].as_array())
        .flatten()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn ip_json(ns: &Netns, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = ns.run("ip", &all).unwrap();
    serde_json::from_str::<Value>(&out)
        .map(|v| v.as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// Whether `dev` in `ns` holds `addr`.
fn has_addr(ns: &Netns, dev: &str, addr: &str) -> bool {
    ip_json(ns, &["addr", "show", "dev", dev])
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .any(|a| a["local"] == addr)
}

/// An instance with an IPv6 address beside its IPv4 VIP (not in adverts).
fn with_v6(extra: &str) -> String {
    format!("{FAST}virtual_ipaddress_excluded = [\"{VIP6}/64\"]\n{extra}")
}

#[test]
fn no_accept_master_holds_the_vips_but_refuses_local_traffic() {
    let lab = lab(1);
    let dir = temp_dir("noaccept").unwrap();
    let d = &lab.nodes[0];
    let _listener = listen(d);
    let mut d1 = Director::start(d, &dir, &instance(150, &with_v6("accept = false\n")));
    d1.wait_state("MASTER");
    assert!(has_addr(d, "eth0", VIP4) && has_addr(d, "eth0", VIP6));
    assert_eq!(nft_tables(d), ["inet xlb"]);
    assert_eq!(nft_elements(d, "vips4"), [VIP4]);
    assert_eq!(nft_elements(d, "vips6"), [VIP6]);

    // Dropped, not refused: no RST comes back, the handshake times out.
    for vip in [VIP4, VIP6] {
        let err = connect(&lab.observer, vip).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{vip}: {err}");
    }
    // The director's own address still takes connections: only the VIPs are refused.
    connect(&lab.observer, &VrrpLab::addr(0)).unwrap();
    // The observer still resolves the IPv6 VIP: neighbour discovery is not refused.
    let neigh = ip_json(&lab.observer, &["-6", "neigh", "show", VIP6]);
    assert!(
        neigh.iter().any(|n| n["lladdr"].is_string()),
        "the observer did not resolve {VIP6}: {neigh:?}"
    );

    d1.stop();
    assert!(!has_addr(d, "eth0", VIP4));
    assert_eq!(nft_tables(d), Vec::<String>::new(), "stop left the table");
}

#[test]
fn no_accept_backup_clears_a_table_a_killed_agent_left() {
    let lab = lab(2);
    let dir = temp_dir("stale").unwrap();
    let d = &lab.nodes[0];
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(200, FAST));
    d2.wait_state("MASTER");
    // What a SIGKILLed no_accept Master leaves: the table with its VIP.
    d.run(
        "nft",
        &[
            "add table inet xlb; add set inet xlb vips4 { type ipv4_addr; }; \
           add element inet xlb vips4 { 10.9.0.100 }",
        ],
    )
    .unwrap();
    assert_eq!(nft_tables(d), ["inet xlb"]);
    let d1 = Director::start(d, &dir, &instance(100, &format!("{FAST}accept = false\n")));
    d1.wait_state("BACKUP");
    assert_eq!(nft_tables(d), Vec::<String>::new());
}

#[test]
fn accept_master_takes_local_traffic_and_adds_no_rules() {
    let lab = lab(1);
    let dir = temp_dir("accept").unwrap();
    let d = &lab.nodes[0];
    let _listener = listen(d);
    let d1 = Director::start(d, &dir, &instance(150, &with_v6("")));
    d1.wait_state("MASTER");
    assert_eq!(nft_tables(d), Vec::<String>::new());
    for vip in [VIP4, VIP6] {
        connect(&lab.observer, vip).unwrap_or_else(|e| panic!("{vip}: {e}"));
    }
}

#[test]
fn address_owner_ignores_no_accept_and_never_removes_its_own_address() {
    let lab = lab(1);
    let dir = temp_dir("owner").unwrap();
    let d = &lab.nodes[0];
    let _listener = listen(d);
    // The address owner's virtual address is the node's own (priority 255).
    let own = VrrpLab::addr(0);
    let body = format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 255\nvirtual_ipaddress = [\"{own}/24\"]\naccept = false\n{FAST}"
    );
    let mut d1 = Director::start(d, &dir, &body);
    d1.wait_state("MASTER");
    assert_eq!(nft_tables(d), Vec::<String>::new());
    connect(&lab.observer, &own).unwrap();
    // Stopping releases mastership, but the node keeps its own address.
    d1.stop();
    assert!(
        has_addr(d, "eth0", &own),
        "the address owner removed the node's own address at stop"
    );
}

/// Whether `ns` routes 10.20.0.0/16 via 10.9.0.1 and has the rule from the VIP.
fn routes_and_rules(ns: &Netns) -> (bool, bool) {
    let route = ip_json(ns, &["route", "show", "10.20.0.0/16"])
        .iter()
        .any(|r| r["gateway"] == "10.9.0.1");
    let rule = ip_json(ns, &["rule", "show"])
        .iter()
        .any(|r| r["priority"] == 1000 && r["src"] == VIP4 && r["table"] == "100");
    (route, rule)
}

#[test]
fn virtual_routes_and_rules_follow_mastership() {
    let lab = lab(2);
    let dir = temp_dir("routes").unwrap();
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let net = "virtual_routes = [{ to = \"10.20.0.0/16\", via = \"10.9.0.1\" }]\n\
               virtual_rules = [{ from = \"10.9.0.100\", table = 100, priority = 1000 }]\n";
    let script = format!(
        "[[vrrp_script]]\nname = \"chk\"\nscript = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = 0.2\nweight = -60\n\n",
        flag.display()
    );
    let mut d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &format!(
            "{script}{}",
            instance(
                150,
                &format!("{FAST}{net}track_script = [{{ name = \"chk\" }}]\n")
            )
        ),
    );
    let mut d2 = Director::start(&lab.nodes[1], &dir, &instance(100, &format!("{FAST}{net}")));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    // A state is published after its addresses, routes and rules are in place.
    assert_eq!(routes_and_rules(&lab.nodes[0]), (true, true));
    assert_eq!(routes_and_rules(&lab.nodes[1]), (false, false));

    // The script fails: d1 drops to 90 and d2 takes over; d1 keeps running as Backup.
    std::fs::remove_file(&flag).unwrap();
    d2.wait_state("MASTER");
    d1.wait_state("BACKUP");
    assert_eq!(routes_and_rules(&lab.nodes[0]), (false, false));
    assert_eq!(routes_and_rules(&lab.nodes[1]), (true, true));

    d2.stop();
    d1.wait_state("MASTER");
    assert_eq!(routes_and_rules(&lab.nodes[1]), (false, false));
    assert_eq!(routes_and_rules(&lab.nodes[0]), (true, true));
    d1.stop();
    assert_eq!(routes_and_rules(&lab.nodes[0]), (false, false));
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let link = &ip_json(ns, &["link", "show", dev])[0];
    let mut mac = [0u8; 6];
    for (m, part) in mac
        .iter_mut()
        .zip(link["address"].as_str().unwrap().split(':'))
    {
        *m = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// A gratuitous ARP for `vip`: sender and target IP both the VIP.
fn is_garp_for(f: &[u8], vip: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == vip && f[38..42] == vip
}

/// An unsolicited neighbour advertisement (to all nodes) for `vip`.
fn is_na_for(f: &[u8], vip: [u8; 16]) -> bool {
    f.len() >= 86
        && f[12..14] == [0x86, 0xdd]
        && f[20] == 58
        && f[54] == 136
        && f[38..54] == "ff02::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
        && f[62..78] == vip
}

/// An IPv4 VRRP advert.
fn is_advert(f: &[u8]) -> bool {
    f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[23] == 112
}

/// Frames matching `advert` captured after the last one matching `announce`.
fn adverts_after_last(
    frames: &[Vec<u8>],
    announce: impl Fn(&[u8]) -> bool,
    advert: fn(&[u8]) -> bool,
) -> usize {
    let last = frames
        .iter()
        .rposition(|f| announce(f))
        .map_or(0, |i| i + 1);
    frames[last..].iter().filter(|f| advert(f)).count()
}

fn octets4(a: &str) -> [u8; 4] {
    match a.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v) => v.octets(),
        IpAddr::V6(_) => unreachable!(),
    }
}

fn octets6(a: &str) -> [u8; 16] {
    match a.parse::<IpAddr>().unwrap() {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(_) => unreachable!(),
    }
}

#[test]
fn new_master_sends_garp_and_na_bursts_as_configured() {
    // garp_master_repeat 3, garp_master_delay 1: two bursts of 3, then silence.
    const REPEAT: usize = 3;
    let lab = lab(1);
    let dir = temp_dir("garp").unwrap();
    let fd = capture_socket(&lab.observer, "eth0").unwrap();
    let body = format!(
        "{}[vrrp_instance.garp]\nmaster_repeat = {REPEAT}\nmaster_delay = 1\n",
        instance(150, &with_v6(""))
    );
    let d1 = Director::start(&lab.nodes[0], &dir, &body);
    d1.wait_state("MASTER");
    let (v4, v6) = (octets4(VIP4), octets6(VIP6));
    let announce = |f: &[u8]| is_garp_for(f, v4) || is_na_for(f, v6);
    // Both bursts, then five adverts (a second) in which no further one may come.
    let frames = receive_until(&fd, CAPTURE, |fs| {
        fs.iter().filter(|f| announce(f)).count() >= 4 * REPEAT
            && adverts_after_last(fs, announce, is_advert) >= 5
    });
    let garps: Vec<_> = frames.iter().filter(|f| is_garp_for(f, v4)).collect();
    let nas: Vec<_> = frames.iter().filter(|f| is_na_for(f, v6)).collect();
    assert_eq!(garps.len(), 2 * REPEAT, "gratuitous ARPs");
    assert_eq!(nas.len(), 2 * REPEAT, "unsolicited NAs");
    let mac = mac_of(&lab.nodes[0], "eth0");
    for f in garps.iter().chain(&nas) {
        assert_eq!(f[6..12], mac, "not from eth0's MAC");
    }
    assert_eq!(d1.status().unwrap().became_master, 1);
}

/// keepalived answers each lower-priority advert with one advert and
/// `garp_lower_prio_repeat` GARPs; a stream of them once silenced xlb's
/// Master (a GARP burst, each packet on a socket of its own, per advert).
/// xlb answers each with one advert and announces at most once per advert
/// interval, on one kept packet socket.
#[test]
fn lower_priority_adverts_get_an_advert_each_and_one_announcement_per_interval() {
    const LOWER: usize = 3;
    const STREAM: usize = 20;
    let lab = lab(1);
    let dir = temp_dir("lowprio").unwrap();
    let body = format!(
        "{}[vrrp_instance.garp]\nmaster_repeat = 2\nmaster_delay = 0\nlower_prio_repeat = {LOWER}\nlower_prio_delay = 0\n",
        instance(150, FAST)
    );
    let d1 = Director::start(&lab.nodes[0], &dir, &body);
    d1.wait_state("MASTER");
    let v4 = octets4(VIP4);
    let fd = capture_socket(&lab.observer, "eth0").unwrap();
    // The take-over burst is over: adverts flow with no announcement among them.
    receive_until(&fd, CAPTURE, |fs| {
        fs.iter().filter(|f| is_advert(f)).count() >= 3
    });
    let src: IpAddr = "10.9.0.2".parse().unwrap();
    let group: IpAddr = "224.0.0.18".parse().unwrap();
    let lower = xlb::vrrp::packet::Advert {
        version: 3,
        vrid: 51,
        priority: 50,
        interval_cs: 20,
        addrs: vec![VIP4.parse().unwrap()],
        auth: None,
    };
    let msg = xlb::vrrp::packet::encode(&lower, src, group);
    // The stream, well inside one advert interval (200 ms).
    lab.observer
        .enter(|| {
            let s =
                Socket::new(Domain::IPV4, Type::RAW, Some(socket2::Protocol::from(112))).unwrap();
            s.set_multicast_if_v4(&std::net::Ipv4Addr::new(10, 9, 0, 2))
                .unwrap();
            s.set_multicast_ttl_v4(255).unwrap();
            let to = socket2::SockAddr::from(SocketAddr::new(group, 0));
            for _ in 0..STREAM {
                s.send_to(&msg, &to).unwrap();
            }
        })
        .unwrap();
    let from_d1 = |f: &[u8]| is_advert(f) && f[26..30] == octets4(&VrrpLab::addr(0));
    // Everything the stream provokes, then a second of quiet adverts.
    let frames = receive_until(&fd, CAPTURE, |fs| {
        fs.iter().filter(|f| from_d1(f)).count() >= STREAM + 5
            && adverts_after_last(fs, |f| is_garp_for(f, v4), is_advert) >= 5
    });
    let garps = frames.iter().filter(|f| is_garp_for(f, v4)).count();
    assert_eq!(
        garps, LOWER,
        "one lower-priority burst for the whole stream"
    );
    wait_until("every lower-priority advert counted", ELECTION, || {
        d1.status()
            .is_some_and(|s| s.lower_priority == STREAM as u64)
    })
    .unwrap();
    let st = d1.status().unwrap();
    assert_eq!(st.state, "MASTER");
    assert!(
        st.adverts_sent >= STREAM as u64,
        "an advert back for each: {st:?}"
    );
}

#[test]
fn use_vmac_moves_vips_and_adverts_to_the_vrrp_mac() {
    const REPEAT: usize = 2;
    // VRID 51 = 0x33.
    const VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33];
    let lab = lab(1);
    let dir = temp_dir("vmac").unwrap();
    let d = &lab.nodes[0];
    let fd = capture_socket(&lab.observer, "eth0").unwrap();
    let body = format!(
        "{}[vrrp_instance.garp]\nmaster_repeat = {REPEAT}\nmaster_delay = 0\n",
        instance(150, &format!("{FAST}use_vmac = true\n"))
    );
    let mut d1 = Director::start(d, &dir, &body);
    d1.wait_state("MASTER");

    let link = &ip_json(d, &["-d", "link", "show", "vrrp.51"])[0];
    assert_eq!(link["address"], "00:00:5e:00:01:33");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["link"], "eth0");
    assert!(has_addr(d, "vrrp.51", VIP4), "the VIP is not on the VMAC");
    assert!(!has_addr(d, "eth0", VIP4));

    let v4 = octets4(VIP4);
    let frames = receive_until(&fd, CAPTURE, |fs| {
        fs.iter().filter(|f| is_garp_for(f, v4)).count() >= REPEAT
            && adverts_after_last(fs, |f| is_garp_for(f, v4), is_advert) >= 5
    });
    let garps: Vec<_> = frames.iter().filter(|f| is_garp_for(f, v4)).collect();
    assert_eq!(garps.len(), REPEAT, "one burst, garp_master_delay 0");
    for g in &garps {
        assert_eq!(g[6..12], VMAC, "Ethernet source");
        assert_eq!(g[22..28], VMAC, "ARP sender MAC");
    }
    let adverts: Vec<_> = frames.iter().filter(|f| is_advert(f)).collect();
    assert!(adverts.len() >= 5);
    for a in &adverts {
        assert_eq!(a[6..12], VMAC, "adverts leave from the VMAC");
        assert_eq!(a[26..30], octets4(&VrrpLab::addr(0)), "from eth0's address");
    }

    d1.stop();
    let gone = d.run("ip", &["link", "show", "vrrp.51"]);
    assert!(gone.is_err(), "stop left the VMAC: {gone:?}");
}

/// An IPv6 VRRP advert.
fn is_advert6(f: &[u8]) -> bool {
    f.len() >= 54 && f[12..14] == [0x86, 0xdd] && f[20] == 112
}

#[test]
fn ipv6_use_vmac_uses_the_ipv6_vrrp_mac_for_adverts_and_nas() {
    const REPEAT: usize = 2;
    // 00:00:5e:00:02:VRID for IPv6 (RFC 9568 section 7.3).
    const VMAC6: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x02, 0x33];
    let lab = lab(1);
    let dir = temp_dir("vmac6").unwrap();
    let d = &lab.nodes[0];
    let fd = capture_socket(&lab.observer, "eth0").unwrap();
    let body = format!(
        "{}[vrrp_instance.garp]\nmaster_repeat = {REPEAT}\nmaster_delay = 0\n",
        instance(150, &format!("{FAST}use_vmac = true\n")).replace("10.9.0.100/24", "fd09::100/64")
    );
    let mut d1 = Director::start(d, &dir, &body);
    d1.wait_state("MASTER");
    let link = &ip_json(d, &["-d", "link", "show", "vrrp6.51"])[0];
    assert_eq!(link["address"], "00:00:5e:00:02:33");
    assert!(has_addr(d, "vrrp6.51", VIP6), "the VIP is not on the VMAC");

    let v6 = octets6(VIP6);
    let frames = receive_until(&fd, CAPTURE, |fs| {
        fs.iter().filter(|f| is_na_for(f, v6)).count() >= REPEAT
            && adverts_after_last(fs, |f| is_na_for(f, v6), is_advert6) >= 5
    });
    let nas: Vec<_> = frames.iter().filter(|f| is_na_for(f, v6)).collect();
    assert_eq!(nas.len(), REPEAT, "unsolicited NAs");
    for na in &nas {
        assert_eq!(na[6..12], VMAC6, "Ethernet source");
        assert_eq!(na[80..86], VMAC6, "target link-layer address option");
    }
    let adverts: Vec<_> = frames.iter().filter(|f| is_advert6(f)).collect();
    assert!(adverts.len() >= 5);
    for a in &adverts {
        assert_eq!(a[6..12], VMAC6, "adverts leave from the VMAC");
        assert_eq!(a[22..24], [0xfe, 0x80], "from a link-local address");
    }

    d1.stop();
    assert!(
        d.run("ip", &["link", "show", "vrrp6.51"]).is_err(),
        "stop left the VMAC"
    );
}
