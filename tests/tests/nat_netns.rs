//! LVS-NAT end to end: a two-armed director (clients on eth0, real servers
//! on eth1 routing through it) and a one-armed one (one interface, the reals
//! on their own subnet routing through it), real TCP and UDP traffic through
//! the VIP.
//! The reals listen on another port than the service, so every answer proves
//! both rewrites (in and back out) happened.

mod common;

use aya::maps::{Array, HashMap, Map, MapData};
use common::xlb_bin;
use lb_common::{ConnCounts, FlowKey, FlowState, RealConns};
use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    time::Duration,
};
use xlb_testbed::{
    agent::Agent,
    http::HttpConn,
    lab::{DrLab, LabMethod, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn lab(ipv6: bool) -> DrLab {
    lab_with(LabMethod::Nat, ipv6)
}

fn lab_with(method: LabMethod, ipv6: bool) -> DrLab {
    DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        ipv6,
        method,
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .expect("build the NAT lab")
}

fn start(lab: &DrLab, tag: &str, extra: &str) -> (Agent, PathBuf) {
    start_with_timeout(lab, tag, extra, 300)
}

fn start_with_timeout(lab: &DrLab, tag: &str, extra: &str, udp_timeout: u32) -> (Agent, PathBuf) {
    let dir = std::env::temp_dir().join(format!("xlb-nat-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xlb.toml");
    let mut config = lab.agent_config("wrr", "nat", "native").replacen(
        "[dataplane]\n",
        &format!("[dataplane]\nudp_timeout = {udp_timeout}\n"),
        1,
    );
    config.push_str(extra);
    std::fs::write(&path, config).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
    (agent, dir)
}

fn tcp_through_the_director(method: LabMethod, ipv6: bool) {
    let lab = lab_with(method, ipv6);
    let (agent, dir) = start(&lab, if ipv6 { "v6" } else { "v4" }, "");
    let seen = lab.spread(60, TIMEOUT).unwrap();
    assert_eq!(seen.len(), 3, "not every real was used: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 60);

    // Long-lived connections keep their real across many exchanges.
    let mut conns: Vec<(HttpConn, String)> = (0..4)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let first = c.ask().unwrap();
            (c, first)
        })
        .collect();
    for _ in 0..5 {
        for (c, first) in &mut conns {
            assert_eq!(&c.ask().unwrap(), first);
        }
    }

    let status = lab.status(&xlb_bin()).unwrap();
    for r in &lab.reals {
        let line = status
            .lines()
            .find(|l| {
                l.contains(&format!(
                    "{}:{}",
                    fmt_addr(r.addr),
                    xlb_testbed::lab::NAT_REAL_PORT
                ))
            })
            .unwrap_or_else(|| panic!("{} missing:\n{status}", r.addr));
        assert_eq!(line.split_whitespace().nth(2), Some("Masq"), "{line}");
    }
    drop(conns);
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

fn fmt_addr(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[test]
fn nat_tcp_ipv4() {
    tcp_through_the_director(LabMethod::Nat, false);
}

#[test]
fn nat_tcp_ipv6() {
    tcp_through_the_director(LabMethod::Nat, true);
}

/// One interface: requests and replies both come in and leave by `eth0`
/// (XDP_TX). An answer with the real's name can only come back through both
/// rewrites: without the inbound one the director's own (empty) port 80
/// would refuse, without the reply one the client would drop the real's
/// source address.
#[test]
fn nat_one_armed_tcp_ipv4() {
    tcp_through_the_director(LabMethod::NatOneArm, false);
}

#[test]
fn nat_one_armed_tcp_ipv6() {
    tcp_through_the_director(LabMethod::NatOneArm, true);
}

/// UDP: every real runs an echo server on the real port that prefixes its
/// name; the client talks to the VIP and must get answers from the VIP.
#[test]
fn nat_udp_ipv4_answers_come_from_the_vip() {
    let lab = lab(false);
    let echo_port = 5300;
    let mut servers = Vec::new();
    for r in &lab.reals {
        let name = r.name.clone();
        let sock =
            r.ns.enter(|| UdpSocket::bind(("0.0.0.0", echo_port)))
                .unwrap()
                .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        servers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            // Bounded: 50 receive polls of at most 200 ms each.
            for _ in 0..50 {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let mut answer = name.clone().into_bytes();
                    answer.push(b':');
                    answer.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&answer, from);
                }
            }
        }));
    }
    let extra = format!(
        "\n[[service]]\nvip = \"{}\"\nport = 53\nprotocol = \"udp\"\nscheduler = \"rr\"\nmethod = \"nat\"\n{}",
        lab.vip,
        lab.reals
            .iter()
            .map(|r| format!(
                "\n[[service.real]]\naddress = \"{}\"\nport = {echo_port}\n",
                r.addr
            ))
            .collect::<String>()
    );
    // A one-second UDP timeout, so expiry can be watched within the test.
    let (agent, dir) = start_with_timeout(&lab, "udp", &extra, 1);
    let vip = SocketAddr::new(lab.vip, 53);
    let answers: Vec<(String, SocketAddr)> = lab
        .client
        .enter(|| {
            let mut got = Vec::new();
            for i in 0..12 {
                // A new source port per query: a new flow each time.
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_read_timeout(Some(TIMEOUT)).unwrap();
                s.send_to(format!("q{i}").as_bytes(), vip).unwrap();
                let mut buf = [0u8; 512];
                let (n, from) = s.recv_from(&mut buf).expect("UDP answer through the VIP");
                got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
            got
        })
        .unwrap();
    for (i, (text, from)) in answers.iter().enumerate() {
        assert_eq!(*from, vip, "answer {i} did not come from the VIP");
        assert!(text.ends_with(&format!(":q{i}")), "{text}");
    }
    let names: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|(t, _)| t.split(':').next().unwrap())
        .collect();
    assert!(
        names.len() >= 2,
        "UDP flows all went to one real: {names:?}"
    );

    // Idle UDP flows expire after udp_timeout: the agent removes them, with
    // their reply entries, and each real's live count drops back to zero.
    let udp_flows = |lab: &DrLab| -> usize {
        let ct = MapData::from_pin(lab.pin_path.join("CONNTRACK")).unwrap();
        let ct: HashMap<MapData, FlowKey, FlowState> =
            Map::from_map_data(ct).unwrap().try_into().unwrap();
        ct.keys()
            .filter_map(Result::ok)
            .filter(|k| k.proto == lb_common::PROTO_UDP)
            .count()
    };
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = udp_flows(&lab);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left, 0, "idle UDP flows never expired");
    let conns: Vec<RealConns> = {
        let m = MapData::from_pin(lab.pin_path.join("REAL_CONNS")).unwrap();
        let m: Array<MapData, RealConns> = Map::from_map_data(m).unwrap().try_into().unwrap();
        m.iter().map(Result::unwrap).collect()
    };
    let inactive: u64 = conns.iter().map(|c| c.left.inactive).sum();
    assert!(inactive >= 12, "UDP flows were not counted: {inactive}");
    for c in &conns {
        assert_eq!(
            c.live,
            ConnCounts::default(),
            "live connections left after expiry"
        );
    }
    let replies = MapData::from_pin(lab.pin_path.join("NAT_REPLIES")).unwrap();
    let replies: HashMap<MapData, FlowKey, FlowKey> =
        Map::from_map_data(replies).unwrap().try_into().unwrap();
    let udp_replies = replies
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.proto == lb_common::PROTO_UDP)
        .count();
    assert_eq!(udp_replies, 0, "NAT reply entries outlived their flows");
    agent.stop().unwrap();
    for s in servers {
        s.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}
