//! Schedulers with real TCP connections: the namespace lab (client,
//! director running `xlb run`, real HTTP servers), each connection a new
//! flow through the VIP, the answering real's name counted.

mod common;

use common::xlb_bin;
use std::{collections::BTreeMap, path::PathBuf, time::Duration};
use xlb_testbed::{
    agent::Agent,
    http::get_name,
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

/// `n` new connections from the client; answers per real name.
fn spread(lab: &DrLab, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let name =
            get_name(&lab.client, lab.vip_socket(), TIMEOUT).expect("request through the VIP");
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
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
    let seen = spread(&lab, 90);
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [40, 30, 20]);
    finish(agent, dir);
}

#[test]
fn rr_splits_evenly_whatever_the_weights() {
    let (lab, agent, dir) = start(&[1, 2, 3], "rr", "");
    let seen = spread(&lab, 30);
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [10, 10, 10]);
    finish(agent, dir);
}

#[test]
fn sh_keeps_a_client_on_one_real_and_sh_port_spreads_it() {
    let (lab, agent, dir) = start(&[1, 1, 1], "sh", "");
    let seen = spread(&lab, 20);
    assert_eq!(seen.len(), 1, "one client, one real: {seen:?}");
    finish(agent, dir);
    drop(lab);

    let (lab, agent, dir) = start(&[1, 1, 1], "sh", "scheduler_flags = [\"sh-port\"]\n");
    let seen = spread(&lab, 30);
    assert!(seen.len() > 1, "sh-port hashes the port too: {seen:?}");
    finish(agent, dir);
}

#[test]
fn persistence_holds_a_client_across_connections() {
    let (lab, agent, dir) = start(&[1, 1, 1], "rr", "persistence_timeout = 300\n");
    let seen = spread(&lab, 12);
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
