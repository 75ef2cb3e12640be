//! The flow table's upkeep with a running agent: the test fills CONNTRACK
//! itself (a batch update of 200,000 flows, and flows long idle), and the
//! scrape and `xlb status` report what the reclaimer's passes publish —
//! never a count of their own, so their cost does not follow the table.
//! No timing is asserted: what the scrape shows is compared with the
//! pinned summary and with what was written.

mod common;

use common::xlb_bin;
use lb_common::{
    ConnCounts, FAMILY_V4, FlowKey, FlowState, PROTO_TCP, RealConns, conn, map_names,
    upkeep::{FILL_CONNTRACK, Summary},
};
use std::{net::IpAddr, time::Duration};
use xlb::dataplane::{
    store::{MapStore, PinnedMap},
    upkeep::monotonic_ns,
};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
    scrape::{self, Samples, total},
};

const METRICS: &str = "127.0.0.1:9477";
const LIVE: u32 = 200_000;
const IDLE: u32 = 1_000;
const WAIT: Duration = Duration::from_secs(60);

fn flow(n: u32, vip: [u32; 4]) -> FlowKey {
    FlowKey {
        src: [u32::from_be(0xc612_0000 + (n >> 16)), 0, 0, 0],
        dst: vip,
        sport: (n as u16).to_be(),
        dport: 80u16.to_be(),
        proto: PROTO_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

fn conntrack_entries(s: &Samples) -> u64 {
    total(s, "xlb_map_entries", &["map=\"CONNTRACK\""])
}

#[test]
fn scrapes_and_status_report_the_upkeep_s_figures_not_a_walk() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("upkeep");
    let config = dir.join("xlb.toml");
    std::fs::write(&config, lab.agent_config("mh", "dr", "generic")).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let metrics = METRICS.parse().unwrap();
    let before = scrape::scrape_after_pass(&lab.director, metrics, WAIT).unwrap();
    assert_eq!(conntrack_entries(&before), 0);

    // 200,000 established flows to the one real (id 1), counted as the
    // director would have, and 1,000 pickups idle for 100 s.
    let IpAddr::V4(vip) = lab.vip else {
        panic!("an IPv4 lab")
    };
    let vip = [u32::from_ne_bytes(vip.octets()), 0, 0, 0];
    let now = monotonic_ns();
    let entry = |state: u32, idle_s: u64| FlowState {
        real_id: 1,
        service_id: 0,
        created_ns: now - idle_s * 1_000_000_000,
        seen_ns: now - idle_s * 1_000_000_000,
        state: state.into(),
    };
    let mut flows: PinnedMap<FlowKey, FlowState> =
        PinnedMap::open(&lab.pin_path, map_names::CONNTRACK).unwrap();
    let batch: Vec<(FlowKey, FlowState)> = (0..LIVE)
        .map(|n| (flow(n, vip), entry(conn::ESTABLISHED, 0)))
        .chain((LIVE..LIVE + IDLE).map(|n| (flow(n, vip), entry(conn::PICKUP, 100))))
        .collect();
    let mut conns: PinnedMap<u32, RealConns> =
        PinnedMap::open(&lab.pin_path, map_names::REAL_CONNS).unwrap();
    let counted = conns.get(&1).unwrap().unwrap_or_default();
    for chunk in batch.chunks(50_000) {
        flows.update_batch(chunk).unwrap();
    }
    let live = ConnCounts {
        active: counted.live.active + u64::from(LIVE),
        ..counted.live
    };
    conns.put(&1, &RealConns { live, ..counted }).unwrap();

    // A scrape right away shows what the summary says, not the table: until
    // the next pass, the old figure. Compared while no pass ends in between.
    let summary: PinnedMap<u32, Summary> =
        PinnedMap::open(&lab.pin_path, map_names::UPKEEP).unwrap();
    let mut checked = false;
    for _ in 0..10 {
        let s0 = summary.get(&0).unwrap().unwrap();
        let scraped = scrape::scrape(&lab.director, metrics).unwrap();
        let s1 = summary.get(&0).unwrap().unwrap();
        if s0.passes != s1.passes {
            continue;
        }
        assert_eq!(
            conntrack_entries(&scraped),
            s0.entries[FILL_CONNTRACK as usize]
        );
        assert_eq!(total(&scraped, "xlb_upkeep_passes_total", &[]), s0.passes);
        checked = true;
        break;
    }
    assert!(checked, "a pass ended during every scrape");

    // After a pass that started once the flows were in: the figures match
    // the table, the idle pickups are gone (and were never counted).
    let after = scrape::scrape_after_pass(&lab.director, metrics, WAIT).unwrap();
    assert_eq!(conntrack_entries(&after), u64::from(LIVE));
    assert_eq!(
        total(&after, "xlb_flows", &["state=\"ESTABLISHED\""]),
        u64::from(LIVE)
    );
    assert_eq!(total(&after, "xlb_flows", &["state=\"PICKUP\""]), 0);
    assert_eq!(
        total(&after, "xlb_flows_expired_total", &[]),
        total(&before, "xlb_flows_expired_total", &[]) + u64::from(IDLE)
    );
    assert_eq!(total(&after, "xlb_flows_evicted_total", &[]), 0);
    assert_eq!(
        total(&after, "xlb_real_active_connections", &[]),
        u64::from(LIVE)
    );
    let status = lab.status(&xlb_bin()).unwrap();
    assert!(
        status.contains(&format!("Flows: {LIVE} (ESTABLISHED {LIVE})")),
        "{status}"
    );
    let json = std::process::Command::new(xlb_bin())
        .args(["status", "--json", "--pin-path"])
        .arg(&lab.pin_path)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let fill = json["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "CONNTRACK")
        .unwrap();
    assert_eq!(fill["entries"], u64::from(LIVE));
    assert_eq!(json["flows"]["states"]["ESTABLISHED"], u64::from(LIVE));
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
