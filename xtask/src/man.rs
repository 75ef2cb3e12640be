//! `cargo xtask man`: man pages and shell completions generated from the
//! agent's clap definitions (lb-userspace/examples/docs.rs), written to
//! `target/release/xlb-docs/` where `install` and `package` take them.

use crate::{build, setup};
use anyhow::Result;
use std::{path::PathBuf, process::Command};

/// Where the generated pages and completions go, next to the agent's binary.
pub fn out_dir() -> PathBuf {
    build::root().join("target/release/xlb-docs")
}

/// Builds the XDP object (the agent library embeds it) and runs the generator.
pub fn generate() -> Result<PathBuf> {
    build::ebpf(setup::Need::Build)?;
    let out = out_dir();
    build::run_checked(
        Command::new("cargo")
            .args([
                "run",
                "--release",
                "-p",
                "lb-userspace",
                "--example",
                "docs",
                "--",
            ])
            .arg(&out)
            .current_dir(build::root()),
    )?;
    Ok(out)
}
