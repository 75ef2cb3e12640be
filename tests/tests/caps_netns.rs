//! The capabilities packaging/xlb.service grants are the ones the agent
//! needs: with exactly that bounding set it starts, forwards, and after a
//! SIGKILL a new agent adopts the data plane; without each capability the
//! unit marks required it fails to start, naming the capability.
//! Scripts with a `script_user` (a MISC_CHECK, a notify_up) run as that
//! user under the unit's set, and one past its timeout is killed.

mod common;

use common::xlb_bin;
use std::{path::Path, time::Duration};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);
/// Required capabilities and what fails without each.
const REQUIRED: [(&str, &str); 3] = [
    ("net_admin", "xlb run needs CAP_NET_ADMIN ("),
    ("bpf", "xlb run needs CAP_BPF ("),
    ("perfmon", "xlb run needs CAP_PERFMON ("),
];

/// The unit's `CapabilityBoundingSet`, as setpriv names them.
fn unit_caps() -> Vec<String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/xlb.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// `xlb run` under setpriv with the bounding set `caps` (root's
/// capabilities after exec are exactly those).
fn start(lab: &DrLab, config: &Path, caps: &[String]) -> anyhow::Result<Agent> {
    let set = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let xlb = xlb_bin().display().to_string();
    Agent::start_with(
        &lab.director,
        Path::new("/usr/bin/setpriv"),
        config,
        &["--bounding-set", &set, "--", &xlb],
    )
}

#[test]
fn the_units_capabilities_are_enough_and_each_required_one_is_needed() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions::default()).unwrap();
    let dir = common::test_dir("caps");
    let config = dir.join("xlb.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[agent]\npid_file = \"{}\"\n",
            lab.agent_config("wrr", "dr", "generic"),
            dir.join("xlb.pid").display()
        ),
    )
    .unwrap();
    let caps = unit_caps();
    for (cap, _) in REQUIRED {
        assert!(caps.iter().any(|c| c == cap), "the unit lacks {cap}");
    }

    let agent = start(&lab, &config, &caps).unwrap();
    assert_eq!(lab.spread(6, TIMEOUT).unwrap().values().sum::<usize>(), 6);
    agent.kill().unwrap();
    let agent = start(&lab, &config, &caps).unwrap();
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("adopted the data plane")),
        "{:#?}",
        agent.log()
    );
    assert_eq!(lab.spread(6, TIMEOUT).unwrap().values().sum::<usize>(), 6);
    agent.stop().unwrap();

    for (cap, failure) in REQUIRED {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        let err = match start(&lab, &config, &fewer) {
            Ok(agent) => panic!("started without {cap}: {:#?}", agent.log()),
            Err(e) => e,
        };
        let err = err.to_string();
        assert!(err.contains("exited before forwarding"), "{err}");
        assert!(err.contains(failure), "without {cap}: {err}");
        assert!(
            !lab.pin_path.join("SERVICES").exists(),
            "a failed start without {cap} left maps pinned"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Polls `f` every 50 ms for up to 20 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/bin/sh -c SCRIPT` as a TOML argv.
fn sh(script: &str) -> String {
    format!("[\"/bin/sh\", \"-c\", \"{script}\"]")
}

#[test]
fn scripts_with_a_script_user_run_and_are_killed_under_the_units_capabilities() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions::default()).unwrap();
    let dir = common::test_dir("caps-scripts");
    // The scripts run as nobody and write here.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = dir.display();
    let mut config = format!(
        "[global]\nscript_user = \"nobody\"\n\n[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n[agent]\npid_file = \"{d}/xlb.pid\"\n",
        lab.pin_path.display()
    );
    // The forwarded service: each real has a MISC_CHECK and a notify_up
    // run as nobody; each records the uid it ran as. With alpha the reals
    // start down, so passing the check runs notify_up.
    config.push_str(&format!(
        "\n[[service]]\nvip = \"{}\"\nport = {}\nprotocol = \"tcp\"\nscheduler = \"wrr\"\nmethod = \"dr\"\ndelay_loop = 1\nalpha = true\n",
        lab.vip, lab.port
    ));
    for (i, r) in lab.reals.iter().enumerate() {
        config.push_str(&format!(
            "\n[[service.real]]\naddress = \"{}\"\nport = {}\nweight = 1\nnotify_up = {}\n\n[[service.real.check]]\ntype = \"misc\"\nmisc_path = {}\nmisc_timeout = 2\n",
            r.addr,
            lab.port,
            sh(&format!("id -u > {d}/notify-{i}")),
            sh(&format!("id -u > {d}/misc-{i}")),
        ));
    }
    // A service nobody sends to: its check outlives its timeout, so the
    // agent must kill a process group owned by nobody.
    config.push_str(&format!(
        "\n[[service]]\nvip = \"{}\"\nport = {}\nprotocol = \"tcp\"\nscheduler = \"wrr\"\nmethod = \"dr\"\ndelay_loop = 1\n\n[[service.real]]\naddress = \"{}\"\nport = {}\nweight = 1\n\n[[service.real.check]]\ntype = \"misc\"\nmisc_path = {}\nmisc_timeout = 1\n",
        lab.vip,
        lab.port + 1,
        lab.reals[0].addr,
        lab.port + 1,
        sh(&format!("echo $$ > {d}/hang.pid; exec sleep 60")),
    ));
    let path = dir.join("xlb.toml");
    std::fs::write(&path, config).unwrap();

    let agent = start(&lab, &path, &unit_caps()).unwrap();
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody = String::from_utf8(nobody.stdout).unwrap();
    for i in 0..lab.reals.len() {
        for what in ["misc", "notify"] {
            let file = dir.join(format!("{what}-{i}"));
            wait_for(&format!("{what} script of real {i}"), || {
                std::fs::read_to_string(&file).is_ok_and(|s| s.ends_with('\n'))
            });
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                nobody,
                "{what} ran as the wrong user; log: {:#?}",
                agent.log()
            );
        }
    }
    assert_eq!(lab.spread(6, TIMEOUT).unwrap().values().sum::<usize>(), 6);

    // The hung check was started, then killed at its timeout.
    let pid_file = dir.join("hang.pid");
    wait_for("the hanging check started", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = Path::new("/proc").join(pid.trim());
    wait_for("the hanging check killed at its timeout", || {
        !proc_dir.exists()
    });
    assert!(
        !agent
            .log()
            .iter()
            .any(|l| l.contains("Operation not permitted")),
        "{:#?}",
        agent.log()
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
