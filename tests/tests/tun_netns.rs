//! LVS-TUN for real: the agent in a namespace lab tunnels TCP (HTTP) and UDP
//! to three reals that unwrap with `xlb decap` (this kernel has no ipip
//! module) and answer the client directly from the VIP.

mod common;

use common::xlb_bin;
use std::{collections::BTreeMap, time::Duration};
use xlb_testbed::{
    agent::Agent,
    http::{HttpConn, get_name},
    lab::{DrLab, LabOptions},
    udp::udp_ask,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const UDP_PORT: u16 = 53;
const GUE_PORT: u16 = 6080;
const REQUESTS: usize = 45;

fn lab(ipv6: bool) -> DrLab {
    xlb_testbed::require_root().unwrap();
    DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        ipv6,
        peer_xdp: common::peer_pass(),
        udp_port: Some(UDP_PORT),
        ..LabOptions::default()
    })
    .unwrap()
}

fn tally(names: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for n in names {
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

/// Runs the agent with a `tun` service (GUE when `gue`) over a lab whose
/// reals run `xlb decap`, and checks TCP and UDP reach every real.
fn tunnel(ipv6: bool, gue: bool) {
    let lab = lab(ipv6);
    let dir = common::test_dir(&format!("tun-{ipv6}-{gue}"));
    let config = dir.join("xlb.toml");
    let gue_port = gue.then_some(GUE_PORT);
    std::fs::write(
        &config,
        lab.agent_config_gue("wrr", "tun", "native", gue_port),
    )
    .unwrap();
    let decaps = lab.start_decap(&xlb_bin(), gue_port).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();

    // New TCP connections spread over all three reals, each answered from the VIP.
    let tcp = tally((0..REQUESTS).map(|_| {
        get_name(&lab.client, lab.vip_socket(), TIMEOUT).expect("HTTP through the tunnel")
    }));
    assert_eq!(tcp.len(), 3, "not every real was used over TCP: {tcp:?}");
    assert_eq!(tcp.values().sum::<usize>(), REQUESTS);

    // A connection stays on its real across requests.
    let mut conn = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
    let first = conn.ask().unwrap();
    for _ in 0..5 {
        assert_eq!(conn.ask().unwrap(), first);
    }
    drop(conn);

    // UDP: a fresh socket per datagram, so a new flow each; replies come from the VIP
    // (the client's socket is connected to it and takes nothing else).
    let udp_target = std::net::SocketAddr::new(lab.vip, UDP_PORT);
    let udp = tally(
        (0..REQUESTS)
            .map(|_| udp_ask(&lab.client, udp_target, TIMEOUT).expect("UDP through the tunnel")),
    );
    assert_eq!(udp.len(), 3, "not every real was used over UDP: {udp:?}");

    // The status shows tunnelled reals; the director saw only the client's packets.
    let status = lab.status(&xlb_bin()).unwrap();
    assert_eq!(status.matches(" Tunnel ").count(), 6, "{status}");
    assert!(status.contains("error 0"), "{status}");

    agent.stop().unwrap();
    for d in decaps {
        d.stop().unwrap();
    }
    // Detached on exit: nothing left on the reals' interfaces.
    for r in &lab.reals {
        let link = r.ns.run("ip", &["-d", "link", "show", "eth0"]).unwrap();
        assert!(!link.contains("prog/xdp"), "{}: {link}", r.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipip_over_ipv4_reaches_every_real() {
    tunnel(false, false);
}

#[test]
fn ipv6_in_ipv6_reaches_every_real() {
    tunnel(true, false);
}

#[test]
fn gue_over_ipv4_reaches_every_real() {
    tunnel(false, true);
}

#[test]
fn gue_over_ipv6_reaches_every_real() {
    tunnel(true, true);
}
