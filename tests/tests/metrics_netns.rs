//! The Prometheus endpoint against traffic the test sent: a DR lab with a
//! TCP and a UDP service, known numbers of connections and datagrams, then
//! a scrape from the director's namespace and `xlb status --json`.

mod common;

use common::xlb_bin;
use std::{net::SocketAddr, time::Duration};
use xlb_testbed::{
    agent::Agent,
    http::HttpConn,
    lab::{DrLab, LabOptions},
    scrape::{self, Samples, sample, total},
    udp::udp_ask,
};

const TIMEOUT: Duration = Duration::from_secs(3);
const LISTEN: &str = "127.0.0.1:9477";
const TCP_REQUESTS: usize = 30;
const UDP_DATAGRAMS: usize = 12;
const HELD: usize = 4;
/// Ethernet + IPv4 + UDP headers and udp_ask's 4-byte payload, as XDP sees the frame.
const UDP_FRAME: u64 = 14 + 20 + 8 + 4;

/// One scrape from the director's namespace.
fn scrape(lab: &DrLab) -> Samples {
    scrape::scrape(&lab.director, LISTEN.parse().unwrap()).unwrap()
}

#[test]
fn scraped_counters_match_the_traffic_sent() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        udp_port: Some(53),
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("metrics");
    let config = dir.join("xlb.toml");
    let text = format!(
        "{}\n[metrics]\nlisten = \"{LISTEN}\"\n",
        lab.agent_config("wrr", "dr", "native")
    );
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();

    let tcp = lab.spread(TCP_REQUESTS, TIMEOUT).unwrap();
    let held: Vec<HttpConn> = (0..HELD)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            c.ask().unwrap();
            c
        })
        .collect();
    let udp_target = SocketAddr::new(lab.vip, 53);
    for _ in 0..UDP_DATAGRAMS {
        udp_ask(&lab.client, udp_target, TIMEOUT).unwrap();
    }

    // Map fill is what the upkeep's next pass publishes.
    let m = scrape::scrape_after_pass(
        &lab.director,
        LISTEN.parse().unwrap(),
        Duration::from_secs(20),
    )
    .unwrap();
    let tcp_svc = "protocol=\"TCP\"";
    let udp_svc = "protocol=\"UDP\"";
    assert_eq!(total(&m, "xlb_dataplane_up", &[]), 1);
    assert_eq!(
        total(&m, "xlb_service_connections_total", &[tcp_svc]),
        (TCP_REQUESTS + HELD) as u64
    );
    assert_eq!(
        total(&m, "xlb_real_connections_total", &[tcp_svc]),
        (TCP_REQUESTS + HELD) as u64
    );
    // Each real's count of new connections, against who answered (the
    // held connections went somewhere too: at most HELD more per real).
    for r in &lab.reals {
        let real = format!("real=\"{}\"", r.addr);
        let n = total(&m, "xlb_real_connections_total", &[tcp_svc, &real]) as usize;
        let answered = tcp.get(&r.name).copied().unwrap_or(0);
        assert!(
            (answered..=answered + HELD).contains(&n),
            "{}: {n} connections counted, {answered} answered",
            r.name
        );
        assert_eq!(
            total(&m, "xlb_real_weight", &[tcp_svc, &real]),
            u64::from(r.weight)
        );
    }
    assert_eq!(
        total(&m, "xlb_real_active_connections", &[tcp_svc]),
        HELD as u64,
        "only the held connections are established"
    );
    // UDP: one packet and one new flow per datagram, of a known size.
    assert_eq!(
        total(&m, "xlb_service_packets_total", &[udp_svc]),
        UDP_DATAGRAMS as u64
    );
    assert_eq!(
        total(&m, "xlb_service_connections_total", &[udp_svc]),
        UDP_DATAGRAMS as u64
    );
    assert_eq!(
        total(&m, "xlb_service_bytes_total", &[udp_svc]),
        UDP_DATAGRAMS as u64 * UDP_FRAME
    );
    assert_eq!(
        total(&m, "xlb_real_inactive_connections", &[udp_svc]),
        UDP_DATAGRAMS as u64
    );
    // Every forwarded packet left by XDP_TX (one-armed DR), counted in
    // GLOBAL_STATS apart from the per-service counters.
    let forwarded = total(&m, "xlb_service_packets_total", &[]);
    assert!(forwarded > (TCP_REQUESTS * 3) as u64);
    assert_eq!(
        total(&m, "xlb_xdp_packets_total", &["fate=\"tx\""]),
        forwarded
    );
    assert_eq!(total(&m, "xlb_xdp_packets_total", &["fate=\"drop\""]), 0);
    // One flow per connection and datagram, none expired yet.
    assert_eq!(
        total(&m, "xlb_map_entries", &["map=\"CONNTRACK\""]),
        (TCP_REQUESTS + HELD + UDP_DATAGRAMS) as u64
    );
    assert_eq!(total(&m, "xlb_map_entries", &["map=\"SERVICES\""]), 2);
    assert_eq!(
        total(&m, "xlb_map_capacity", &["map=\"CONNTRACK\""]),
        1_048_576
    );

    // xlb status --json reads the same maps, with stable field names.
    let out = std::process::Command::new(xlb_bin())
        .args(["status", "--json", "--pin-path"])
        .arg(&lab.pin_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = json["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let tcp_json = services.iter().find(|s| s["protocol"] == "TCP").unwrap();
    assert_eq!(tcp_json["vip"], lab.vip.to_string());
    assert_eq!(tcp_json["port"], 80);
    assert_eq!(tcp_json["scheduler"], "wrr");
    assert_eq!(
        tcp_json["stats"]["connections"],
        (TCP_REQUESTS + HELD) as u64
    );
    let active: u64 = tcp_json["reals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["forward"], "Route");
            assert_eq!(r["reachable"], true);
            r["active_conns"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(active, HELD as u64);
    assert_eq!(json["packets"]["tx"], forwarded);
    let ct = json["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "CONNTRACK")
        .unwrap();
    assert_eq!(ct["entries"], (TCP_REQUESTS + HELD + UDP_DATAGRAMS) as u64);

    drop(held);
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Scrapes until `cond` holds (bounded), returning that scrape.
fn scrape_until(lab: &DrLab, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(lab);
        if cond(&m) {
            return m;
        }
        assert!(
            std::time::Instant::now() < end,
            "no {what} in the scrape: {m:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn vrrp_checker_and_maglev_families_follow_what_happened() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("metrics-ops");
    let config = dir.join("xlb.toml");
    let (r1, r2) = (lab.reals[0].addr, lab.reals[1].addr);
    // real1's check asks a port nothing listens on: it goes down, and the
    // Maglev table moves its slots to real2.
    let text = format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [metrics]\nlisten = \"{LISTEN}\"\n\n\
         [[service]]\nvip = \"{}\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"mh\"\nmethod = \"dr\"\n\n\
         [[service.real]]\naddress = \"{r1}\"\nweight = 1\n\
         [[service.real.check]]\ntype = \"tcp\"\nconnect_port = 9\nconnect_timeout = 1\nretry = 0\ndelay_loop = 1\n\n\
         [[service.real]]\naddress = \"{r2}\"\nweight = 1\n\
         [[service.real.check]]\ntype = \"tcp\"\nconnect_timeout = 1\nretry = 0\ndelay_loop = 1\n\n\
         [[vrrp_instance]]\nname = \"VI_M\"\ninterface = \"eth0\"\nvirtual_router_id = 77\npriority = 100\n\
         version = 3\nadvert_int = 0.2\nvirtual_ipaddress = [\"192.0.2.77/32\"]\n",
        lab.pin_path.display(),
        lab.vip,
    );
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();

    let vi = "instance=\"VI_M\"";
    let real1 = format!("real=\"{r1}\"");
    let real2 = format!("real=\"{r2}\"");
    let m = scrape_until(&lab, "VI_M Master, real1 down", |m| {
        sample(m, "xlb_vrrp_state", &[vi, "state=\"MASTER\""]) == Some(1.0)
            && sample(m, "xlb_check_up", &[&real1]) == Some(0.0)
            && sample(m, "xlb_vrrp_adverts_sent_total", &[vi]).is_some_and(|n| n >= 2.0)
    });
    // VRRP: alone on the link, INIT → BACKUP → MASTER.
    assert_eq!(
        sample(&m, "xlb_vrrp_state", &[vi, "state=\"BACKUP\""]),
        Some(0.0)
    );
    assert_eq!(sample(&m, "xlb_vrrp_transitions_total", &[vi]), Some(2.0));
    assert_eq!(sample(&m, "xlb_vrrp_became_master_total", &[vi]), Some(1.0));
    assert_eq!(sample(&m, "xlb_vrrp_priority", &[vi]), Some(100.0));
    assert_eq!(sample(&m, "xlb_vrrp_base_priority", &[vi]), Some(100.0));
    assert_eq!(
        sample(
            &m,
            "xlb_vrrp_adverts_discarded_total",
            &[vi, "reason=\"ttl\""]
        ),
        Some(0.0)
    );
    // Checkers: real1 failing on TCP_CHECK, real2 passing.
    assert_eq!(
        sample(&m, "xlb_check_up", &[&real2, "check=\"TCP_CHECK\""]),
        Some(1.0)
    );
    let failures = sample(&m, "xlb_check_failures_total", &[&real1]).unwrap();
    assert!(failures >= 1.0);
    assert!(sample(&m, "xlb_check_attempts_total", &[&real1]).unwrap() >= failures);
    assert_eq!(sample(&m, "xlb_check_failures_total", &[&real2]), Some(0.0));
    assert!(sample(&m, "xlb_check_attempts_total", &[&real2]).unwrap() >= 1.0);
    for r in [&real1, &real2] {
        assert!(
            sample(&m, "xlb_check_duration_seconds", &[r]).is_some(),
            "{r}: no last attempt duration"
        );
    }
    // Maglev: real1 leaving moved its slots (about half of the table).
    let svc = "protocol=\"TCP\"";
    assert!(sample(&m, "xlb_maglev_changes_total", &[svc]).unwrap() >= 1.0);
    let last = sample(&m, "xlb_maglev_last_moved_slots", &[svc]).unwrap();
    let moved = sample(&m, "xlb_maglev_slots_moved_total", &[svc]).unwrap();
    assert!(last > 0.0 && moved >= last, "moved {moved}, last {last}");

    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
