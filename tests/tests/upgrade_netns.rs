//! An upgrade as the package and packaging/xlb.service do it, with systemd
//! played by the test (it is not PID 1 here): `systemctl restart xlb` sends
//! the unit's RestartKillSignal to the running agent, which exits leaving
//! the data plane forwarding; the new binary starts and adopts it. 60
//! keep-alive connections stream across the restart and every request is
//! answered by the real it started on. `systemctl stop` (the unit's
//! KillSignal) still detaches and unpins everything.

mod common;

use common::xlb_bin;
use std::{path::Path, time::Duration};
use xlb_testbed::{
    agent::Agent,
    http::{HttpConn, Streamer},
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 60;
const ROUNDS: usize = 3;

/// The unit's value for `key` as a signal number.
fn unit_signal(key: &str) -> i32 {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/xlb.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit sets no {key}"));
    match name.trim() {
        "SIGTERM" => libc::SIGTERM,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGINT" => libc::SIGINT,
        other => panic!("{key}={other}: not a signal this test knows"),
    }
}

fn xdp_attached(lab: &DrLab) -> bool {
    let out = lab
        .director
        .run("ip", &["-d", "link", "show", "eth0"])
        .unwrap();
    out.contains("prog/xdp id ")
}

#[test]
fn systemctl_restart_keeps_every_connection_and_stop_releases() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("upgrade");
    let config = dir.join("xlb.toml");
    let text = lab.agent_config_with("mh", "dr", "native", "scheduler_flags = [\"mh-port\"]\n");
    std::fs::write(&config, &text).unwrap();
    // The installed binary before the upgrade, and the one the package
    // puts in its place (the same build: what matters is the handover).
    let old = dir.join("xlb-old");
    std::fs::copy(xlb_bin(), &old).unwrap();
    let agent = Agent::start(&lab.director, &old, &config).unwrap();

    let conns: Vec<(HttpConn, String)> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let streamer = Streamer::start(conns);
    streamer.wait_rounds(ROUNDS);

    // systemctl restart: the restart signal, then ExecStart again.
    let status = agent.stop_with(unit_signal("RestartKillSignal")).unwrap();
    assert!(status.success(), "the agent exited with {status}");
    assert!(xdp_attached(&lab), "XDP detached by a restart");
    streamer.wait_rounds(ROUNDS);
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("adopted the data plane")),
        "the new agent did not adopt: {:#?}",
        agent.log()
    );
    streamer.wait_rounds(ROUNDS);
    // Every connection answered every round, each by its own real.
    let asked = streamer.finish().unwrap();
    assert!(asked >= CONNECTIONS * (3 * ROUNDS + 1), "{asked} answers");

    // systemctl stop: everything goes.
    let status = agent.stop_with(unit_signal("KillSignal")).unwrap();
    assert!(status.success(), "the agent exited with {status}");
    assert!(!xdp_attached(&lab), "XDP still attached after stop");
    assert!(
        !lab.pin_path.exists() || std::fs::read_dir(&lab.pin_path).unwrap().next().is_none(),
        "pins left after stop"
    );
    let _ = std::fs::remove_dir_all(dir);
}
