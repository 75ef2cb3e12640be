//! Schedulers with real TCP connections: the namespace lab (client,
//! director running `xlb run`, real HTTP servers), each connection a new
//! flow through the VIP, the answering real's name counted.

mod common;

use common::xlb_bin;
use std::{collections::BTreeMap, path::PathBuf, time::Duration};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A lab with `weights`, the agent running `scheduler` with `extra` service
/// lines; returns the lab, the agent and its config directory.
fn start(weights: &[u32], scheduler: &str, extra: &str) -> (DrLab, Agent, PathBuf) {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: weights.to_vec(),
        peer_xdp: Some((
            xlb::EBPF_OBJECT_PATH.into(),
            lb_common::PROG_PASS.to_string(),
        )),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("xlb-sched-{}-{scheduler}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("xlb.toml");
    std::fs::write(
        &config,
        lab.agent_config_with(scheduler, "dr", "generic", extra),
    )
    .unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    (lab, agent, dir)
}

fn counts(seen: &BTreeMap<String, usize>, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| seen.get(*n).copied().unwrap_or(0))
        .collect()
}

fn finish(agent: Agent, dir: PathBuf) {
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn wrr_splits_90_connections_40_30_20() {
    let (lab, agent, dir) = start(&[4, 3, 2], "wrr", "");
    let seen = lab.spread(90, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [40, 30, 20]);
    finish(agent, dir);
}

#[test]
fn rr_splits_evenly_whatever_the_weights() {
    let (lab, agent, dir) = start(&[1, 2, 3], "rr", "");
    let seen = lab.spread(30, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [10, 10, 10]);
    finish(agent, dir);
}

#[test]
fn sh_keeps_a_client_on_one_real_and_sh_port_spreads_it() {
    let (lab, agent, dir) = start(&[1, 1, 1], "sh", "");
    let seen = lab.spread(20, TIMEOUT).unwrap();
    assert_eq!(seen.len(), 1, "one client, one real: {seen:?}");
    finish(agent, dir);
    drop(lab);

    let (lab, agent, dir) = start(&[1, 1, 1], "sh", "scheduler_flags = [\"sh-port\"]\n");
    let seen = lab.spread(30, TIMEOUT).unwrap();
    assert!(seen.len() > 1, "sh-port hashes the port too: {seen:?}");
    finish(agent, dir);
}

#[test]
fn persistence_holds_a_client_across_connections() {
    let (lab, agent, dir) = start(&[1, 1, 1], "rr", "persistence_timeout = 300\n");
    let seen = lab.spread(12, TIMEOUT).unwrap();
    assert_eq!(
        seen.len(),
        1,
        "rr would rotate; persistence must not: {seen:?}"
    );
    let out = lab
        .director
        .command(xlb_bin())
        .args(["status", "--persistent-conn", "--pin-path"])
        .arg(&lab.pin_path)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{status}");
    assert!(status.contains(" rr persistent 300"), "{status}");
    // The client's template shows on its real: PersistConn 1.
    let real = lab
        .reals
        .iter()
        .find(|r| seen.contains_key(&r.name))
        .unwrap();
    let line = status
        .lines()
        .find(|l| l.contains(&format!("-> {}:80", real.addr)))
        .unwrap_or_else(|| panic!("{} missing:\n{status}", real.addr));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[3], "1", "PersistConn: {line}");
    finish(agent, dir);
}

/// The status line of real `addr`, split: `->`, address, Forward,
/// Weight, ActiveConn, InActConn, ...
fn real_columns(lab: &DrLab, addr: std::net::IpAddr) -> Vec<String> {
    let status = lab.status(&xlb_bin()).unwrap();
    status
        .lines()
        .find(|l| l.contains(&format!("-> {addr}:")))
        .unwrap_or_else(|| panic!("{addr} missing:\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// lc with the data plane's own connection counts: two long-lived
/// connections occupy real1 and real2 (ties go to the first real), so every
/// new connection goes to real3, whose finished connections count only as
/// inactive (overhead 1 each against 256 for an active one). Status shows the
/// counts ipvsadm would.
#[test]
fn lc_sends_new_connections_to_the_least_loaded_real() {
    use xlb_testbed::http::HttpConn;
    let (lab, agent, dir) = start(&[1, 1, 1], "lc", "");
    let mut held: Vec<(HttpConn, String)> = (0..2)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let names: Vec<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["real1", "real2"]);

    let seen = lab.spread(12, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [0, 0, 12]);

    // ActiveConn / InActConn: one established each on real1 and real2; real3
    // holds the 12 closed ones (FIN seen: inactive until they expire).
    let cols = |i: usize| real_columns(&lab, lab.reals[i].addr);
    assert_eq!(cols(0)[4..6], ["1", "0"], "{:?}", cols(0));
    assert_eq!(cols(1)[4..6], ["1", "0"], "{:?}", cols(1));
    assert_eq!(cols(2)[4..6], ["0", "12"], "{:?}", cols(2));

    // The held connections still work and stayed on their reals.
    for (c, name) in &mut held {
        assert_eq!(&c.ask().unwrap(), name);
    }
    drop(held);
    finish(agent, dir);
}
