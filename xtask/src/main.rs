//! `cargo xtask <command>`: the one entry point for building, testing and the lab.

mod bench;
mod build;
mod fuzz;
mod install;
mod lab;
mod man;
mod package;
mod setup;
mod test;
mod vm_test;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::{
    process::{Command, ExitCode},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// A flag that Ctrl-C sets, so long-running commands can stop between steps
/// and clean up what they created.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, LLVM, bpf-linker, lab and test tools, guest kernel.
    Setup,
    /// Build the XDP object (target/ebpf/bpfel-unknown-none/release/lb-ebpf).
    BuildEbpf,
    /// Build everything and run the agent: `cargo xtask run -- run --config FILE`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// fmt, clippy, then the tiers: unit (`--unit` alone: no root), XDP fixtures, namespaces, qemu guests.
    Test(test::Args),
    /// Only the qemu guest tests: the guest harness and the IPVS data plane against kernel IPVS.
    VmTest,
    /// Build a namespace lab, run the agent in it and send requests through the VIP.
    Lab(lab::Args),
    /// Measure per-packet cost, live forwarding and the control plane (root; see bench/README.md).
    Bench(bench::Args),
    /// Generate man pages and shell completions from the CLI (target/release/xlb-docs).
    Man,
    /// Build and install the agent, man pages, completions, systemd unit and an example config.
    Install(install::Args),
    /// Build the Debian package (target/release/xlb_VERSION_ARCH.deb) with dpkg-deb.
    Package(package::Args),
    /// Differential fuzz of the XDP director (10^5 frames), then the cargo-fuzz targets.
    Fuzz(fuzz::Args),
    /// Inside the bench's qemu guest only (bench/guest.rs).
    #[command(hide = true)]
    BenchGuestInner(bench::guest::InnerArgs),
}

fn main() -> ExitCode {
    let result: Result<()> = match Cli::parse().command {
        Cmd::Setup => setup::ensure(setup::Need::Test),
        Cmd::BuildEbpf => build::ebpf(setup::Need::Build).map(|p| println!("{}", p.display())),
        Cmd::Run { args } => build::ebpf(setup::Need::Build)
            .and_then(|_| build::agent())
            .and_then(|bin| build::run_checked(Command::new(bin).args(args))),
        Cmd::Test(args) => test::run(&args),
        Cmd::VmTest => vm_test::run(),
        Cmd::Lab(args) => lab::run(&args),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Man => man::generate().map(|p| println!("{}", p.display())),
        Cmd::Install(args) => install::run(&args),
        Cmd::Package(args) => package::run(&args),
        Cmd::Fuzz(args) => fuzz::run(&args),
        Cmd::BenchGuestInner(args) => bench::guest::inner(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
