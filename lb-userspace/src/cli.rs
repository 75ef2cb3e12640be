//! Command line: `xlb run`, `xlb check`, `xlb status`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "xlb",
    version,
    about = "XDP layer-4 load balancer with an LVS-style data plane"
)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP director, program it from the config and run until SIGTERM/SIGINT.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// On exit leave XDP attached and the maps pinned (forwarding continues).
        #[arg(long)]
        keep_dataplane: bool,
    },
    /// Validate a config file and exit: 0 if valid, 1 with file:line:col errors if not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print services, real servers, weights and counters from the running data plane.
    Status {
        /// Directory the agent pinned its maps in.
        #[arg(long, default_value = "/sys/fs/bpf/xlb")]
        pin_path: PathBuf,
        /// Show persistence templates per real (ipvsadm's --persistent-conn).
        #[arg(long)]
        persistent_conn: bool,
    },
}
