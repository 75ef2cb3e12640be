//! `cargo xtask test`: what CI runs. Formatting, lints, unit tests, the XDP
//! fixture tests (BPF_PROG_TEST_RUN) and the network-namespace tests.

use crate::{
    build::{self, root, run_checked},
    package,
    setup::{self, Need},
};
use anyhow::Result;
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Only run tests whose name contains this (passed to the test harness).
    filter: Option<String>,
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.args(args).current_dir(root());
    c
}

pub fn run(args: &Args) -> Result<()> {
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

    eprintln!("== tests");
    let xlb = build::agent()?;
    // tests/tests/package_root.rs installs it.
    let deb = package::build(None)?;
    let mut test = cargo(&["test", "--workspace"]);
    test.env("XLB_BIN", &xlb).env("XLB_DEB", &deb).arg("--");
    if let Some(f) = &args.filter {
        test.arg(f);
    }
    // Namespace tests share the default pin directory and print progress; one at a time.
    test.arg("--test-threads=1");
    run_checked(&mut test)
}
