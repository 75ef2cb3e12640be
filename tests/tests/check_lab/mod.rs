//! What the health-check netns tests share: the lab with pass-through XDP
//! on the reals' peers, a config with one checked DR service, the agent,
//! the pool as `xlb status` shows it, and bounded waits.

#![allow(dead_code)] // each test binary uses its own subset

use crate::common::xlb_bin;
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a state change may take to show (checks run every 0.3 s).
pub const SETTLE: Duration = Duration::from_secs(30);
/// The lab with `n` reals and a scratch directory for configs and script output.
pub fn lab(n: usize, tag: &str) -> (DrLab, PathBuf) {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1; n],
        peer_xdp: crate::common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("xlb-check-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (lab, dir)
}

/// A config with one DR service and the given reals, each with its own
/// extra lines (lifecycle keys, then `[[service.real.check]]` tables).
pub fn config(lab: &DrLab, service_extra: &str, reals: &[(IpAddr, String)]) -> String {
    let mut s = format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n[[service]]\nvip = \"{}\"\nport = {}\nscheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 0.3\n{service_extra}\n",
        lab.pin_path.display(),
        lab.vip,
        lab.port
    );
    for (addr, extra) in reals {
        s.push_str(&format!(
            "\n[[service.real]]\naddress = \"{addr}\"\nweight = 1\n{extra}\n"
        ));
    }
    s
}

pub fn start(lab: &DrLab, dir: &Path, text: &str) -> Agent {
    let path = dir.join("xlb.toml");
    std::fs::write(&path, text).unwrap();
    Agent::start(&lab.director, &xlb_bin(), &path).unwrap()
}

/// Reals and weights in `xlb status`.
pub fn pool(lab: &DrLab) -> BTreeMap<IpAddr, u32> {
    let status = lab.status(&xlb_bin()).unwrap();
    status
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("-> "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let addr: SocketAddr = w.next()?.parse().ok()?;
            let weight = w.nth(1)?.parse().ok()?;
            Some((addr.ip(), weight))
        })
        .collect()
}

/// Polls `cond` (bounded by [`SETTLE`]) until it holds.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn file_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn sh(script: &str) -> String {
    format!("[\"/bin/sh\", \"-c\", {script:?}]")
}

/// Sends `n` requests through the VIP; all must be answered.
pub fn spread(lab: &DrLab, n: usize) -> BTreeMap<String, usize> {
    lab.spread(n, TIMEOUT).unwrap()
}
