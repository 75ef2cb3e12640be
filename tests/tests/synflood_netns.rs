//! Conntrack exhaustion: a SYN flood from many sources against a DR
//! service whose flow table is far smaller than the flood, while
//! established keep-alive connections keep asking. The flood churns the
//! table (an LRU): the established connections, used all along, must
//! neither break nor move to another real (the scheduler is `rr`, so a
//! flow that lost its entry would move), their entries must survive with
//! the real they had; the reals' connection counts must come back down to
//! what the table holds (the agent's upkeep uncounts evicted flows),
//! and the agent must say the table was full, in its log and in
//! `xlb_flows_evicted_total`.

mod common;

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData};
use common::xlb_bin;
use lb_common::{ConnCounts, FlowKey, FlowState, RealConns};
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    frames::tcp_syn,
    http::{HttpConn, Streamer},
    inject::FrameSender,
    lab::{DrLab, LabOptions},
    netns::Netns,
    scrape,
};

const TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 30;
/// The smallest flow table the config accepts.
const CONNTRACK_SIZE: usize = 1024;
/// SYNs in the flood, each from its own address: 50 tables' worth.
const FLOOD: usize = 50 * CONNTRACK_SIZE;
/// The agent's metrics endpoint (the default address) in the director's namespace.
const METRICS: &str = "127.0.0.1:9477";
/// Rounds (one request on every connection) each phase waits for.
const ROUNDS: usize = 3;

/// Client port → real id of every flow from `client` in the pinned
/// `CONNTRACK`, and how many flows the table holds.
fn flows(pin: &Path, client: Ipv4Addr) -> (BTreeMap<u16, u32>, usize) {
    let map: BpfHashMap<MapData, FlowKey, FlowState> =
        Map::from_map_data(MapData::from_pin(pin.join("CONNTRACK")).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    let mut mine = BTreeMap::new();
    let mut total = 0;
    for (k, v) in map.iter().filter_map(Result::ok) {
        total += 1;
        if k.src[0] == u32::from_ne_bytes(client.octets()) {
            mine.insert(u16::from_be(k.sport), v.real_id);
        }
    }
    (mine, total)
}

fn conn_counts(pin: &Path) -> Vec<RealConns> {
    let map: Array<MapData, RealConns> =
        Map::from_map_data(MapData::from_pin(pin.join("REAL_CONNS")).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    map.iter().map(Result::unwrap).collect()
}

fn sum(counts: impl Iterator<Item = ConnCounts>) -> u64 {
    counts
        .map(|c| c.active.wrapping_add(c.inactive))
        .fold(0u64, u64::wrapping_add)
}

/// The connections that left the reals' counts (closed, expired or
/// evicted), summed.
fn gone_conns(pin: &Path) -> u64 {
    sum(conn_counts(pin).into_iter().map(|c| c.left))
}

/// The reals' live connections, summed.
fn live_conns(pin: &Path) -> u64 {
    sum(conn_counts(pin).into_iter().map(|c| c.live))
}

/// Sends `FLOOD` SYNs to `vip`:`port` from 198.18.0.0/15 (one address
/// each, RFC 2544's benchmarking range) straight down the director's link
/// (`port` of the switch, past the bridge), paced and within a bounded
/// time. Returns how many were sent.
fn flood(switch: &Netns, link: &str, director_mac: [u8; 6], vip: Ipv4Addr, port: u16) -> usize {
    let link = link.to_string();
    let from_mac = [0x02, 0x5f, 0x10, 0x0d, 0, 1];
    switch
        .enter(move || {
            let sender = FrameSender::open(&link).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut sent = 0;
            for i in 0..FLOOD as u32 {
                if Instant::now() > deadline {
                    break;
                }
                let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
                let frame = tcp_syn(
                    (director_mac, from_mac),
                    src,
                    1024 + (i % 60000) as u16,
                    vip,
                    port,
                );
                if sender.send(&frame).is_ok() {
                    sent += 1;
                }
                // Paced: a burst larger than veth's XDP ring is dropped there.
                if i % 32 == 31 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            sent
        })
        .unwrap()
}

#[test]
fn a_syn_flood_neither_breaks_nor_moves_established_connections() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("synflood");
    let config = dir.join("xlb.toml");
    let text = lab.agent_config("rr", "dr", "native").replacen(
        "[dataplane]\n",
        &format!("[dataplane]\nconntrack_size = {CONNTRACK_SIZE}\n"),
        1,
    );
    std::fs::write(&config, &text).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let (std::net::IpAddr::V4(vip), std::net::IpAddr::V4(client)) = (lab.vip, lab.client_addr)
    else {
        panic!("an IPv4 lab");
    };

    let conns: Vec<(HttpConn, String)> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let (before, _) = flows(&lab.pin_path, client);
    for (c, _) in &conns {
        assert!(
            before.contains_key(&c.local_addr().port()),
            "flow not tracked"
        );
    }

    let streamer = Streamer::start(conns);
    streamer.wait_rounds(ROUNDS);
    let director_mac = lab.director.mac("eth0").unwrap();
    let sent = flood(
        &lab.switch,
        lab.director_peer_if(),
        director_mac,
        vip,
        lab.port,
    );
    streamer.wait_rounds(ROUNDS);
    let asked = streamer.finish().unwrap();
    assert!(asked >= CONNECTIONS * (2 * ROUNDS + 1));
    assert!(sent > FLOOD / 2, "only {sent} SYNs sent");

    // Every established flow kept its entry and its real; the table is full
    // of the flood's flows and no larger than configured.
    let (after, total) = flows(&lab.pin_path, client);
    for (port, real) in &before {
        assert_eq!(
            after.get(port),
            Some(real),
            "flow from port {port} lost or moved"
        );
    }
    assert!(
        total <= CONNTRACK_SIZE,
        "{total} flows in a table of {CONNTRACK_SIZE}"
    );
    assert!(
        total > CONNTRACK_SIZE / 2,
        "the flood did not fill the table: {total}"
    );

    // Every flood SYN was counted as a connection; within a few sweeps (one
    // every 2 s) the counts are back to what the table holds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut live = live_conns(&lab.pin_path);
    while live > CONNTRACK_SIZE as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        live = live_conns(&lab.pin_path);
    }
    let status = lab.status(&xlb_bin()).unwrap();
    eprintln!("{sent} SYNs sent; {total} flows in the table, {live} live\n{status}");
    assert!(
        live <= CONNTRACK_SIZE as u64,
        "{live} live connections counted, the table holds at most {CONNTRACK_SIZE}"
    );
    assert!(
        agent.log().iter().any(|l| l.contains("flow table full")),
        "the agent did not report the full table: {:#?}",
        agent.log()
    );
    // The upkeep passes that brought the counts down exported what they
    // found: every connection that left a count was evicted, expired, or
    // is one of ours, closed (FIN_WAIT: it left the active count); and far
    // more were gone than the table holds.
    let metrics = scrape::scrape_after_pass(
        &lab.director,
        METRICS.parse().unwrap(),
        Duration::from_secs(30),
    )
    .unwrap();
    let evicted = scrape::total(&metrics, "xlb_flows_evicted_total", &[]);
    let expired = scrape::total(&metrics, "xlb_flows_expired_total", &[]);
    let gone = gone_conns(&lab.pin_path);
    eprintln!("{gone} connections gone; metrics: {evicted} evicted, {expired} expired");
    assert!(
        gone > 2 * CONNTRACK_SIZE as u64,
        "only {gone} connections gone"
    );
    assert!(
        evicted + expired + CONNECTIONS as u64 >= gone,
        "{gone} connections left the counts, but the metrics count {evicted} evicted and {expired} expired (and {CONNECTIONS} closed)"
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
