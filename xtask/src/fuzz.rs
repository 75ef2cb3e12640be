//! `cargo xtask fuzz`: the differential fuzz of the XDP director
//! (tests/tests/xdp_fuzz.rs) over 100 000 frames with a fresh seed, then the
//! cargo-fuzz targets (fuzz/) for a bounded time each.

use crate::{build, setup};
use anyhow::{Context, Result};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Frames for the differential fuzz of the XDP program.
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Seed of the frame generator (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds each cargo-fuzz target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// The cargo-fuzz targets in fuzz/fuzz_targets.
const TARGETS: [&str; 1] = ["config"];

pub fn run(args: &Args) -> Result<()> {
    build::ebpf(setup::Need::Build)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!("xdp differential fuzz: {} frames, seed {seed}", args.frames);
    build::run_checked(
        Command::new("cargo")
            .args(["test", "--release", "-p", "xlb-tests", "--test", "xdp_fuzz"])
            .args(["--", "--nocapture"])
            .env("XLB_FUZZ_FRAMES", args.frames.to_string())
            .env("XLB_FUZZ_SEED", seed.to_string())
            .current_dir(build::root()),
    )
    .with_context(|| {
        format!(
            "reproduce with: cargo xtask fuzz --frames {} --seed {seed}",
            args.frames
        )
    })?;

    ensure_cargo_fuzz()?;
    let max_time = format!("-max_total_time={}", args.seconds);
    for target in TARGETS {
        println!("cargo fuzz: {target} for {} s", args.seconds);
        build::run_checked(
            Command::new("cargo")
                .args(["+nightly", "fuzz", "run", target])
                .arg(format!("corpus/{target}"))
                .args(["--", &max_time])
                .current_dir(build::root().join("fuzz")),
        )?;
    }
    Ok(())
}

/// cargo-fuzz, installed with cargo if missing.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        println!("installing cargo-fuzz");
        build::run_checked(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    Ok(())
}
