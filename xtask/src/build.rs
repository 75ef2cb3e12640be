//! Building the XDP object and the agent.

use crate::setup::{self, Need};
use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

pub fn ebpf_object() -> PathBuf {
    root().join("target/ebpf/bpfel-unknown-none/release/lb-ebpf")
}

/// The bench's own XDP programs (floor, generator, counter), built alongside.
pub fn bench_floor_object() -> PathBuf {
    root().join("target/ebpf/bpfel-unknown-none/release/bench-floor")
}

pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// `cargo xtask build-ebpf`: the XDP objects (xlb's and the bench's), with BTF, for bpfel-unknown-none.
pub fn ebpf(need: Need) -> Result<PathBuf> {
    setup::ensure(need)?;
    let major = setup::nightly_llvm_major()?;
    run_checked(
        Command::new("cargo")
            .args(["+nightly", "build", "--release", "--target-dir"])
            .arg(root().join("target/ebpf"))
            .current_dir(root().join("lb-ebpf"))
            .env("PATH", setup::build_path(major))
            // The host workspace's RUSTFLAGS must not leak into the BPF build.
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )?;
    Ok(ebpf_object())
}

/// The director built with lb-ebpf's `count` feature (profile `count`, its
/// own output directory): every map access and helper call counted per site
/// in `PROBES`, for the bench's per-path explanation. Never shipped.
pub fn ebpf_counting() -> Result<PathBuf> {
    let major = setup::nightly_llvm_major()?;
    run_checked(
        Command::new("cargo")
            .args([
                "+nightly",
                "build",
                "--profile",
                "count",
                "--features",
                "count",
            ])
            .args(["--bin", "lb-ebpf", "--target-dir"])
            .arg(root().join("target/ebpf"))
            .current_dir(root().join("lb-ebpf"))
            .env("PATH", setup::build_path(major))
            .env_remove("RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )?;
    Ok(root().join("target/ebpf/bpfel-unknown-none/count/lb-ebpf"))
}

/// The agent binary (release), with the object embedded.
pub fn agent() -> Result<PathBuf> {
    run_checked(
        Command::new("cargo")
            .args(["build", "--release", "-p", "lb-userspace", "--bin", "xlb"])
            .current_dir(root()),
    )?;
    Ok(root().join("target/release/xlb"))
}
