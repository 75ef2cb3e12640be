//! `cargo xtask test`: what CI runs, in tiers, cheapest first, stopping at
//! the first that fails:
//! - **unit**: the pure crates and the agent's unit tests, in parallel; no
//!   root, no BPF toolchain (`cargo xtask test --unit` runs this alone);
//! - **fixtures**: the XDP program frame by frame (BPF_PROG_TEST_RUN);
//! - **netns**: network-namespace tests of the agent, and the unit tests
//!   that need root;
//! - **guests**: the qemu guest tests (kernel IPVS, sync daemons, twos, the
//!   XDP director on Debian's older kernel).
//!
//! Before the tiers: fmt and clippy over everything. The tiers after unit run
//! one test at a time: the namespace tests of one binary share its pin path.

use crate::{
    build::{self, root, run_checked},
    package,
    setup::{self, Need},
};
use anyhow::{Context, Result};
use std::{path::PathBuf, process::Command};

#[derive(clap::Args)]
pub struct Args {
    /// Only run tests whose name contains this (passed to the test harness).
    filter: Option<String>,
    /// Only the unit tier: no root, no BPF toolchain, in parallel.
    #[arg(long, conflicts_with = "tier")]
    unit: bool,
    /// Only this tier (after fmt and clippy).
    #[arg(long, value_enum)]
    tier: Option<Tier>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    Unit,
    Fixtures,
    Netns,
    Guests,
}

/// The crates whose tests need neither root nor the XDP object.
const UNIT_CRATES: [&str; 6] = [
    "lb-common",
    "lb-config",
    "lb-sched",
    "lb-sync",
    "lb-userspace",
    "xtask",
];

/// Test binaries of `tests/` that run the XDP program with BPF_PROG_TEST_RUN.
const FIXTURES: [&str; 5] = [
    "xdp_fixtures",
    "xdp_sched",
    "xdp_tun",
    "xdp_fuzz",
    "bench_programs",
];

impl Tier {
    /// Which tier a test binary of `tests/` belongs to (never `Unit`).
    fn of(test: &str) -> Tier {
        if FIXTURES.contains(&test) {
            Tier::Fixtures
        } else if test.contains("guest") {
            Tier::Guests
        } else {
            Tier::Netns
        }
    }
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.args(args).current_dir(root());
    c
}

/// The test binaries of `tests/`: `tests/tests/NAME.rs` and `tests/tests/NAME/main.rs`.
fn integration_tests() -> Result<Vec<String>> {
    let dir = root().join("tests/tests");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let is_test = if path.is_dir() {
            path.join("main.rs").exists()
        } else {
            path.extension().is_some_and(|e| e == "rs")
        };
        if is_test {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// `cargo test` over `targets` with the harness's arguments.
fn run_tests(
    targets: &[String],
    env: &[(&str, PathBuf)],
    filter: Option<&str>,
    harness: &[&str],
) -> Result<()> {
    let mut test = cargo(&["test"]);
    test.args(targets);
    for (k, v) in env {
        test.env(k, v);
    }
    test.arg("--");
    test.args(filter).args(harness);
    run_checked(&mut test)
}

/// The unit tier: parallel, as any user, without the XDP object.
fn unit(filter: Option<&str>) -> Result<()> {
    eprintln!("== tier unit");
    let targets: Vec<String> = UNIT_CRATES
        .iter()
        .flat_map(|c| ["-p".into(), c.to_string()])
        .collect();
    run_tests(&targets, &[], filter, &[])
}

pub fn run(args: &Args) -> Result<()> {
    let filter = args.filter.as_deref();
    if args.unit {
        return unit(filter);
    }
    xlb_testbed::require_root()?;
    // Building the object first installs whatever is missing (setup), nightly
    // rustfmt included, and the qemu guest tests' tools and kernel.
    eprintln!("== XDP object");
    build::ebpf(Need::Test)?;
    let major = setup::nightly_llvm_major()?;

    eprintln!("== fmt");
    run_checked(&mut cargo(&["fmt", "--all", "--check"]))?;
    run_checked(
        Command::new("cargo")
            .args(["+nightly", "fmt", "--check"])
            .current_dir(root().join("lb-ebpf")),
    )?;

    eprintln!("== clippy");
    run_checked(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_checked(
        Command::new("cargo")
            .args(["+nightly", "clippy", "--release", "--target-dir"])
            .arg(root().join("target/ebpf"))
            .args(["--", "-D", "warnings"])
            .current_dir(root().join("lb-ebpf"))
            .env("PATH", setup::build_path(major)),
    )?;

    let wanted = |t: Tier| args.tier.is_none_or(|w| w == t);
    if wanted(Tier::Unit) {
        unit(filter)?;
    }
    for tier in [Tier::Fixtures, Tier::Netns, Tier::Guests] {
        if wanted(tier) {
            root_tier(tier, filter)?;
        }
    }
    Ok(())
}

/// One of the tiers that need root and the XDP object (built already).
pub fn root_tier(tier: Tier, filter: Option<&str>) -> Result<()> {
    eprintln!("== tier {tier:?}");
    let mut env = vec![("XLB_BIN", build::agent()?)];
    let mut targets = vec!["-p".to_string(), "xlb-tests".to_string()];
    if tier == Tier::Netns {
        // tests/tests/package_root.rs installs it.
        env.push(("XLB_DEB", package::build(None)?));
        // The agent's unit tests that need root; the testbed's own tests below.
        let agent = [
            "-p".to_string(),
            "lb-userspace".to_string(),
            "--lib".to_string(),
        ];
        run_tests(&agent, &env, filter, &["--ignored"])?;
        targets.push("--lib".into());
    }
    for t in integration_tests()?
        .into_iter()
        .filter(|t| Tier::of(t) == tier)
    {
        targets.extend(["--test".to_string(), t]);
    }
    run_tests(&targets, &env, filter, &["--test-threads=1"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_binary_has_one_tier_and_the_guests_are_the_qemu_ones() {
        let tests = integration_tests().unwrap();
        assert!(tests.contains(&"xdp_fuzz".to_string()), "{tests:?}");
        for f in FIXTURES {
            assert!(tests.contains(&f.to_string()), "{f} is not a test binary");
        }
        let guests: Vec<&String> = tests
            .iter()
            .filter(|t| Tier::of(t) == Tier::Guests)
            .collect();
        assert!(guests.iter().any(|g| *g == "ipvs_guest"), "{guests:?}");
        assert!(
            !tests.contains(&"common".to_string()),
            "a helper module is not a test"
        );
        assert_eq!(Tier::of("dr_netns"), Tier::Netns);
    }
}
