//! The capabilities packaging/xlb.service grants are the ones the agent
//! needs: with exactly that bounding set it starts, forwards, and after a
//! SIGKILL a new agent adopts the data plane; without each capability the
//! unit marks required it fails to start, saying what the kernel refused.

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
    ("net_admin", "failed to create map `TX_PORTS`"),
    ("bpf", "failed to create map"),
    (
        "perfmon",
        "the kernel verifier rejected the director program",
    ),
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
