//! packaging/xlb.service as systemd reads it: `systemd-analyze verify`
//! finds nothing wrong (directives, paths, dependencies), and `systemd-analyze
//! security` rates its exposure at or under 7.0, the level before scripts'
//! capabilities were added. systemd is not PID 1 on the test machines, so
//! both run offline on the unit file, with `/usr/sbin/xlb` pointed at the
//! built agent (verify checks that each command is executable) and without
//! the man page check (the pages are checked where the package installs them).

mod common;

use common::xlb_bin;
use std::{path::Path, process::Command};

/// The most exposure the unit may have (systemd's 0–10 scale).
const MAX_EXPOSURE: f64 = 7.0;

/// The unit, with the agent's path replaced, in a directory of its own.
fn unit_copy(tag: &str) -> std::path::PathBuf {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/xlb.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let dir = common::test_dir(tag);
    let path = dir.join("xlb.service");
    std::fs::write(
        &path,
        text.replace("/usr/sbin/xlb", &xlb_bin().display().to_string()),
    )
    .unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_unit_verifies_clean() {
    let unit = unit_copy("unit-verify");
    let (ok, text) = analyze(&["verify", "--man=no"], &unit);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    // The check would catch a broken unit: an unknown directive is reported.
    let broken = unit.with_file_name("broken.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &broken,
        text.replace("Type=notify", "Type=notify\nNotAKey=1"),
    )
    .unwrap();
    let (_, report) = analyze(&["verify", "--man=no"], &broken);
    assert!(report.contains("NotAKey"), "{report}");
    let _ = std::fs::remove_dir_all(unit.parent().unwrap());
}

#[test]
fn the_units_exposure_is_at_most_seven() {
    let unit = unit_copy("unit-security");
    let (_, text) = analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for xlb.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= MAX_EXPOSURE, "exposure {level}:\n{text}");
    let _ = std::fs::remove_dir_all(unit.parent().unwrap());
}
