//! The agent's log for journald and for machines: under systemd's journal
//! stream every line carries its syslog priority (`<6>` info … `<3>` the
//! fatal error) and no timestamp of its own; `--log-format json` writes
//! one JSON object per line; values with spaces are quoted, not Rust debug
//! text; the start says the version and config, and a real going down
//! says why at info.

mod common;

use common::xlb_bin;
use std::{os::unix::fs::MetadataExt, path::Path, process::Stdio, time::Duration};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

/// Polls `f` every 50 ms for up to 20 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `xlb ARGS run --config CONFIG` in the lab's director with stderr in
/// `log`, as systemd would connect it when `journal`; waits for its exit
/// (it fails: another agent holds the pin directory).
fn run_to_failure(lab: &DrLab, config: &Path, log: &Path, args: &[&str], journal: bool) -> String {
    let file = std::fs::File::create(log).unwrap();
    let meta = file.metadata().unwrap();
    let mut cmd = lab.director.command(xlb_bin());
    cmd.args(args)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--pid-file")
        .arg(log.with_extension("pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        cmd.env_remove("JOURNAL_STREAM");
    }
    let status = cmd.status().unwrap();
    assert!(!status.success(), "a second agent on the same pins started");
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn journald_priorities_json_lines_and_a_checks_reason_at_info() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions::default()).unwrap();
    let dir = common::test_dir("logs");
    let config = dir.join("xlb.toml");
    // real1's check connects to a port nothing listens on.
    let mut text = lab.agent_config("wrr", "dr", "generic");
    let first = format!(
        "address = \"{}\"\nport = {}\nweight = 1\n",
        lab.reals[0].addr, lab.port
    );
    assert!(text.contains(&first), "{text}");
    text = text.replacen(
        &first,
        &format!("{first}\n[[service.real.check]]\ntype = \"tcp\"\nconnect_port = 1\nconnect_timeout = 1\nretry = 0\ndelay_loop = 1\n"),
        1,
    );
    std::fs::write(&config, &text).unwrap();

    // JSON: every line an object; the start says version and config.
    let agent = Agent::start_with(
        &lab.director,
        &xlb_bin(),
        &config,
        &["--log-format", "json"],
    )
    .unwrap();
    wait_for("real1's check failing", || {
        agent
            .log()
            .iter()
            .any(|l| l.contains("real server health changed"))
    });
    let lines: Vec<serde_json::Value> = agent
        .log()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let start = lines
        .iter()
        .find(|l| l["message"] == "xlb starting")
        .expect("no start line");
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        start["config"]
            .as_str()
            .unwrap()
            .contains(&config.display().to_string()),
        "{start}"
    );
    let forwarding = lines
        .iter()
        .find(|l| l["message"] == "xlb forwarding")
        .unwrap();
    assert_eq!(
        forwarding["data_plane"], "XDP on eth0 (generic)",
        "{forwarding}"
    );

    // The reason a real went down, at info, its values plain text.
    let down = lines
        .iter()
        .find(|l| l["message"] == "real server health changed")
        .unwrap();
    assert_eq!(down["level"], "INFO", "{down}");
    assert_eq!(down["verdict"], "down", "{down}");
    assert_eq!(down["check"], "TCP_CHECK", "{down}");
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{down}"
    );

    // Text under the journal: a priority on every line, no timestamp,
    // values with spaces quoted; the fatal error at priority 3.
    let log = dir.join("journal.log");
    let out = run_to_failure(&lab, &config, &log, &["--log-format", "text"], true);
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "{out}");
    for l in &lines {
        let prio = l
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .and_then(|(p, _)| p.parse::<u8>().ok())
            .unwrap_or_else(|| panic!("no priority: {l}"));
        assert!(prio <= 7, "{l}");
        let rest = l.split_once('>').unwrap().1.trim_start();
        assert!(
            !rest.starts_with(|c: char| c.is_ascii_digit()),
            "a timestamp: {l}"
        );
    }
    let start = lines.iter().find(|l| l.contains("xlb starting")).unwrap();
    assert!(start.starts_with("<6>"), "{start}");
    assert!(
        start.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{start}"
    );
    assert!(lines.last().unwrap().starts_with("<3>xlb: "), "{out}");

    // JSON without the journal: the fatal error is an object too.
    let log = dir.join("plain.json");
    let out = run_to_failure(&lab, &config, &log, &["--log-format", "json"], false);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{out}");
    assert!(
        last["message"].as_str().unwrap().starts_with("xlb: "),
        "{out}"
    );

    // Plain text (no journal), as an operator reads it: quoted values.
    agent.stop().unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    wait_for("real1's check failing", || {
        agent
            .log()
            .iter()
            .any(|l| l.contains("real server health changed"))
    });
    let line = agent
        .log()
        .into_iter()
        .find(|l| l.contains("real server health changed"))
        .unwrap();
    assert!(
        line.contains(&format!("service=\"TCP {}:{}\"", lab.vip, lab.port)),
        "{line}"
    );
    assert!(line.contains("verdict=down"), "{line}");
    for l in agent.log() {
        assert!(
            !l.contains("Some(") && !l.contains(" { "),
            "debug text: {l}"
        );
    }
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
