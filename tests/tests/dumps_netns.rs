//! keepalived-style dumps: SIGUSR1 writes the state (services, reals,
//! weights, next hops, connection counts), SIGUSR2 the statistics, to the
//! paths in `[agent]`, through no symlink planted there.

mod common;

use common::xlb_bin;
use std::{
    path::Path,
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);
const REQUESTS: usize = 12;

/// Sends `signal` to the agent and waits (bounded) for `file` to appear.
fn dump(agent: &Agent, signal: i32, file: &Path) -> String {
    let _ = std::fs::remove_file(file);
    // SAFETY: kill(2) on the agent, our child.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < deadline, "{} not written", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(file).unwrap()
}

/// The lab's config with a TCP_CHECK on every real (after each real's
/// `weight` line, the last of its table) and a lone VRRP instance (on an
/// address of its own, so the services stay active).
fn with_checks(config: &str) -> String {
    let mut out = String::new();
    for line in config.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("weight = ") {
            out.push_str("\n[[service.real.check]]\ntype = \"tcp\"\ndelay_loop = 1\n");
        }
    }
    out.push_str(
        "\n[[vrrp_instance]]\nname = \"VI_DUMP\"\ninterface = \"eth0\"\nvirtual_router_id = 77\n\
         priority = 100\nstate = \"MASTER\"\nversion = 3\nadvert_int = 0.1\n\
         virtual_ipaddress = [\"192.0.2.77/32\"]\n",
    );
    out
}

#[test]
fn sigusr1_dumps_the_state_and_sigusr2_the_statistics() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("dumps");
    let (data, stats) = (dir.join("xlb.data"), dir.join("xlb.stats"));
    let config = dir.join("xlb.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[agent]\npid_file = \"{}\"\nstate_dump = \"{}\"\nstats_dump = \"{}\"\n",
            with_checks(&lab.agent_config("wrr", "dr", "native")),
            dir.join("xlb.pid").display(),
            data.display(),
            stats.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let seen = lab.spread(REQUESTS, TIMEOUT).unwrap();
    // The lone instance is Master after one interval (state MASTER hint).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.log().iter().any(|l| l.contains("to=MASTER")) {
        assert!(Instant::now() < deadline, "{:#?}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let state = dump(&agent, libc::SIGUSR1, &data);
    assert!(
        state.contains(&format!(" pid = {}", agent.pid())),
        "{state}"
    );
    assert!(
        state.contains(" data plane = XDP on eth0 (native)"),
        "{state}"
    );
    assert!(
        state.contains(&format!(" VS = TCP {}:80", lab.vip)),
        "{state}"
    );
    assert!(
        state.contains("scheduler = wrr, method = Dr, active = true"),
        "{state}"
    );
    for r in &lab.reals {
        let line = format!("   RS = {}:80, weight = {}", r.addr, r.weight);
        let at = state
            .find(&line)
            .unwrap_or_else(|| panic!("{line} missing:\n{state}"));
        let rest = &state[at + line.len()..];
        assert!(
            rest.trim_start().starts_with("next hop = ifindex"),
            "{state}"
        );
    }
    assert!(state.contains("ActiveConn = 0, InActConn = "), "{state}");
    // The agent's own state, as keepalived's dump has it: the instance and
    // every real's check.
    assert!(
        state.contains(" VRRP Instance = VI_DUMP\n   State = MASTER\n"),
        "{state}"
    );
    assert!(state.contains("   Master = "), "{state}");
    assert_eq!(
        state.matches("     TCP_CHECK #0 = up").count(),
        lab.reals.len(),
        "{state}"
    );

    // xlb status shows the same agent state: VRRP instances and checks,
    // in the text and in --json (the checks' file is written within a second).
    let pin = lab.pin_path.display().to_string();
    let status = |json: bool| {
        let mut args = vec!["status", "--pin-path", pin.as_str()];
        if json {
            args.push("--json");
        }
        common::xlb(&args)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let json: serde_json::Value = loop {
        let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
        if v["checks"].is_array() && v["vrrp"]["instances"][0]["state"] == "MASTER" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let vi = &json["vrrp"]["instances"][0];
    assert_eq!(vi["name"], "VI_DUMP", "{json:#}");
    assert!(
        vi["master"].is_string(),
        "its own address while Master: {json:#}"
    );
    assert!(
        vi["last_transition_unix_s"].as_u64().unwrap() > 0,
        "{json:#}"
    );
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), lab.reals.len(), "{json:#}");
    assert!(
        checks
            .iter()
            .all(|c| c["check"] == "TCP_CHECK" && c["up"] == true),
        "{json:#}"
    );
    let text = status(false);
    assert!(
        text.contains("\nVRRP instance ") && text.contains("VI_DUMP"),
        "{text}"
    );
    assert!(text.contains("  master "), "{text}");
    assert_eq!(
        text.matches(" TCP_CHECK #0: up").count(),
        lab.reals.len(),
        "{text}"
    );

    let text = dump(&agent, libc::SIGUSR2, &stats);
    assert!(
        text.contains(&format!(
            " VS = TCP {}:80: connections {REQUESTS},",
            lab.vip
        )),
        "{text}"
    );
    for r in &lab.reals {
        let n = seen.get(&r.name).copied().unwrap_or(0);
        assert!(
            text.contains(&format!("   RS = {}:80: connections {n},", r.addr)),
            "{} answered {n}:\n{text}",
            r.name
        );
    }
    assert!(text.contains(" map CONNTRACK = "), "{text}");
    assert!(text.contains(" XDP: tx "), "{text}");

    // Symlinks planted at the dump and at the temporary name the agent once
    // used beside it (CVE-2018-19044's class): neither is followed.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink(&victim, &data).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("xlb.tmp")).unwrap();
    let dumped = || {
        agent
            .log()
            .iter()
            .filter(|l| l.contains("SIGUSR1: state dump"))
            .count()
    };
    let before = dumped();
    // SAFETY: kill(2) on the agent, our child.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGUSR1) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dumped() == before {
        assert!(Instant::now() < deadline, "no state dump logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the dump was written through a planted symlink"
    );
    assert!(std::fs::symlink_metadata(&data).unwrap().is_file());
    assert!(
        std::fs::read_to_string(&data)
            .unwrap()
            .contains(" VS = TCP ")
    );

    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
