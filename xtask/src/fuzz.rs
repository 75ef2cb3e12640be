//! `cargo xtask fuzz`: the differential fuzz of the XDP director
//! (tests/tests/xdp_fuzz/) over 100 000 frames with a fresh seed, then the
//! cargo-fuzz targets (fuzz/) for a bounded time each, from their seed
//! corpora.

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
    /// Seconds each cargo-fuzz target runs (libFuzzer reads 0 as "forever").
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Run only these cargo-fuzz targets (repeatable; default: all).
    #[arg(long = "target", value_parser = clap::builder::PossibleValuesParser::new(TARGETS.map(|t| t.0)))]
    targets: Vec<String>,
}

/// The cargo-fuzz targets in fuzz/fuzz_targets, each with its corpus
/// directories (relative to fuzz/): libFuzzer writes new inputs to the first
/// and reads the others as seeds.
const TARGETS: [(&str, &[&str]); 3] = [
    // The TOML config loader; seeds: two example configs.
    ("config", &["corpus/config"]),
    // The VRRP advert decoder; seeds: adverts captured from keepalived.
    ("vrrp", &["corpus/vrrp"]),
    // The keepalived.conf front end; seeds: the reference documents' blocks.
    (
        "keepalived",
        &["corpus/keepalived", "../tests/fixtures/keepalived"],
    ),
];

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
    let fuzz_dir = build::root().join("fuzz");
    for (target, corpora) in TARGETS {
        if !args.targets.is_empty() && !args.targets.iter().any(|t| t == target) {
            continue;
        }
        println!("cargo fuzz: {target} for {} s", args.seconds);
        std::fs::create_dir_all(fuzz_dir.join(corpora[0]))
            .with_context(|| format!("creating fuzz/{}", corpora[0]))?;
        build::run_checked(
            Command::new("cargo")
                .args(["+nightly", "fuzz", "run", target])
                .args(corpora)
                .args(["--", &max_time])
                .current_dir(&fuzz_dir),
        )
        .with_context(|| {
            format!("the {target} fuzz target failed; its input is in fuzz/artifacts/{target}")
        })?;
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
