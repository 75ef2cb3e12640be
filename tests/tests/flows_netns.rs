//! The flow table, decoded: after clients connect through the XDP director,
//! `xlb ipvsadm -Lnc` lists each connection as ipvsadm does (protocol,
//! expire, state, source, virtual, destination), persistence templates
//! among them, and `xlb flows` gives the same flows as JSON with filters;
//! `xlb ipvsadm --rate` shows the agent's estimate of the traffic.

mod common;

use common::{xlb, xlb_bin};
use std::{collections::BTreeMap, time::Duration};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);
const REQUESTS: usize = 6;

#[test]
fn connections_are_listed_as_ipvsadm_lists_them_and_filtered_as_json() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("flows");
    let config = dir.join("xlb.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[agent]\npid_file = \"{}\"\n",
            lab.agent_config("rr", "dr", "native").replace(
                "scheduler = \"rr\"",
                "scheduler = \"rr\"\npersistence_timeout = 300"
            ),
            dir.join("xlb.pid").display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let seen = lab.spread(REQUESTS, TIMEOUT).unwrap();
    assert_eq!(seen.values().sum::<usize>(), REQUESTS, "{seen:?}");
    let pin = lab.pin_path.display().to_string();

    let text = xlb(&["ipvsadm", "-Lnc", "--pin-path", &pin]);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("IPVS connection entries"), "{text}");
    assert_eq!(
        lines.next(),
        Some("pro expire state       source             virtual            destination"),
        "{text}"
    );
    let virt = format!("{}:{}", lab.vip, lab.port);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    // Closed DR connections wait in FIN_WAIT (INPUT-ONLY table); the one
    // client's template ties it to one real.
    let conns: Vec<&Vec<&str>> = rows.iter().filter(|r| !r[3].ends_with(":0")).collect();
    assert_eq!(conns.len(), REQUESTS, "{text}");
    let mut reals = BTreeMap::new();
    for r in &conns {
        assert_eq!(r[0], "TCP", "{text}");
        let (m, s) = r[1].split_once(':').unwrap();
        let left = m.parse::<u64>().unwrap() * 60 + s.parse::<u64>().unwrap();
        assert!(left <= 120, "tcp_fin timeout is 120 s: {text}");
        assert!(
            ["FIN_WAIT", "CLOSE", "TIME_WAIT", "ESTABLISHED"].contains(&r[2]),
            "{text}"
        );
        assert!(r[3].starts_with(&format!("{}:", lab.client_addr)), "{text}");
        assert_eq!(r[4], virt, "{text}");
        *reals.entry(r[5].to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        reals.len(),
        1,
        "persistence keeps the client on one real: {text}"
    );
    let templates: Vec<&Vec<&str>> = rows.iter().filter(|r| r[3].ends_with(":0")).collect();
    assert_eq!(templates.len(), 1, "{text}");
    assert_eq!(templates[0][2], "NONE", "{text}");
    assert_eq!(templates[0][5], *reals.keys().next().unwrap(), "{text}");

    // The same flows as JSON; filters pick by real, client and state.
    let real = reals
        .keys()
        .next()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .0
        .to_string();
    let json: serde_json::Value = serde_json::from_str(&xlb(&[
        "flows",
        "--json",
        "--pin-path",
        &pin,
        "--real",
        &real,
    ]))
    .unwrap();
    let all = json.as_array().unwrap();
    assert_eq!(all.len(), REQUESTS + 1, "{json:#}");
    assert!(
        all.iter().all(|f| f["virtual"] == virt.as_str()),
        "{json:#}"
    );
    assert_eq!(all.iter().filter(|f| f["template"] == true).count(), 1);
    let other: serde_json::Value = serde_json::from_str(&xlb(&[
        "flows",
        "--json",
        "--pin-path",
        &pin,
        "--client",
        "192.0.2.1",
    ]))
    .unwrap();
    assert_eq!(other.as_array().unwrap().len(), 0, "{other:#}");
    let table = xlb(&["flows", "--pin-path", &pin, "--state", "NONE"]);
    assert_eq!(table.lines().count(), 2, "header and the template: {table}");

    // --rate: the agent's estimator saw the connections (sampled every 2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rate = xlb(&["ipvsadm", "-Ln", "--rate", "--pin-path", &pin]);
        let line = rate
            .lines()
            .find(|l| l.starts_with("TCP  "))
            .unwrap()
            .to_string();
        let cols: Vec<u64> = line
            .split_whitespace()
            .skip(2)
            .map(|c| c.parse().unwrap())
            .collect();
        // CPS, InPPS, OutPPS, InBPS, OutBPS: XDP sees no replies in DR.
        if cols[0] > 0 && cols[1] > 0 && cols[3] > 0 {
            assert_eq!((cols[2], cols[4]), (0, 0), "{rate}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rate estimated: {rate}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
