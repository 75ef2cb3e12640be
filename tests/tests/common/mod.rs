//! Shared by the integration tests: the frame builder (re-exported from
//! `xlb_testbed::frames`) and where the built artefacts are.
#![allow(dead_code, unused_imports)] // each test file uses a different part

pub mod vrrp;

use std::path::PathBuf;
pub use xlb_testbed::frames::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The agent binary: `XLB_BIN` (set by `cargo xtask test`) or the release build.
pub fn xlb_bin() -> PathBuf {
    let p = std::env::var_os("XLB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/xlb"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask test`",
        p.display()
    );
    p
}

/// Runs `cmd` to its end, fails the test with its stderr unless it
/// succeeded, and returns its stdout.
#[track_caller]
pub fn succeed(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `xlb ARGS` from this process, which must succeed: its stdout.
#[track_caller]
pub fn xlb(args: &[&str]) -> String {
    succeed(std::process::Command::new(xlb_bin()).args(args))
}

/// The lab's `peer_xdp`: xlb's pass program on the switch side of the veths,
/// which native XDP on veth needs to deliver the director's XDP_TX frames.
pub fn peer_pass() -> Option<(PathBuf, String)> {
    Some((
        xlb::EBPF_OBJECT_PATH.into(),
        lb_common::PROG_PASS.to_string(),
    ))
}

/// A scratch directory for one test, `xlb-test-<pid>-<tag>` under the
/// system's temp dir, created if missing.
pub fn test_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xlb-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
