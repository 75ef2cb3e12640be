//! Command line: `xlb run`, `xlb check`, `xlb convert`, `xlb dump-config`,
//! `xlb status`, `xlb ipvsadm`, `xlb decap`.

use clap::{Parser, Subcommand, ValueEnum};
use std::{net::IpAddr, path::PathBuf};

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
        #[command(flatten)]
        source: SourceArgs,
        /// On exit leave XDP attached and the maps pinned (forwarding continues).
        #[arg(long)]
        keep_dataplane: bool,
    },
    /// Validate a config file and exit: 0 if valid, 1 with file:line:col errors if not.
    Check {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Print a keepalived.conf as xlb's TOML configuration.
    Convert {
        /// The keepalived.conf to convert.
        file: PathBuf,
        #[command(flatten)]
        keepalived: KeepalivedArgs,
    },
    /// Print the effective configuration, every default filled in, as TOML.
    DumpConfig {
        #[command(flatten)]
        source: SourceArgs,
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
    /// ipvsadm's listing (-L -n, --stats, --rate, --exact, --thresholds, --persistent-conn,
    /// -t/-u/-f) of the running data plane: the pinned XDP maps, else the kernel's IPVS.
    Ipvsadm(crate::ipvsadm::args::IpvsadmArgs),
    /// On a TUN real server: unwrap IPIP/IPv6/GUE tunnels for the local VIPs in XDP
    /// until SIGTERM/SIGINT, then detach.
    Decap {
        /// Interface the tunnelled packets arrive on.
        #[arg(long)]
        iface: String,
        /// A VIP to unwrap packets for (repeatable); default: every global address on `lo`,
        /// read again every 2 s.
        #[arg(long = "vip")]
        vips: Vec<IpAddr>,
        /// UDP port of GUE tunnels (the director's `gue_port`); without it UDP is left alone.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        gue_port: Option<u16>,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value = "auto")]
        xdp_mode: Mode,
    },
}

/// Where the configuration comes from: `-c FILE.toml` or `--keepalived-conf FILE`.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct SourceArgs {
    /// xlb's TOML configuration.
    #[arg(
        long,
        short,
        required_unless_present = "keepalived_conf",
        conflicts_with = "keepalived_conf"
    )]
    config: Option<PathBuf>,
    /// A keepalived.conf instead of TOML.
    #[arg(long)]
    keepalived_conf: Option<PathBuf>,
    #[command(flatten)]
    keepalived: KeepalivedArgs,
}

/// How a keepalived.conf is read.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct KeepalivedArgs {
    /// Selects keepalived's `@ID` conditional lines (keepalived's --config-id).
    #[arg(long)]
    config_id: Option<String>,
    /// Keywords xlb cannot honour become warnings (and are ignored) instead of errors.
    #[arg(long)]
    lenient: bool,
}

impl KeepalivedArgs {
    pub fn options(&self) -> crate::keepalived::Options {
        crate::keepalived::Options {
            config_id: self.config_id.clone(),
            lenient: self.lenient,
        }
    }
}

impl SourceArgs {
    pub fn source(&self) -> anyhow::Result<crate::config::Source> {
        use crate::config::Source;
        match (&self.config, &self.keepalived_conf) {
            (Some(c), None) if self.keepalived.config_id.is_none() && !self.keepalived.lenient => {
                Ok(Source::Toml(c.clone()))
            }
            (Some(_), None) => {
                anyhow::bail!("--config-id and --lenient apply to --keepalived-conf only")
            }
            (None, Some(k)) => Ok(Source::Keepalived {
                path: k.clone(),
                options: self.keepalived.options(),
            }),
            _ => anyhow::bail!("give exactly one of --config and --keepalived-conf"),
        }
    }
}

/// `--xdp-mode` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    Native,
    Generic,
    Auto,
}

impl From<Mode> for crate::config::XdpMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Native => crate::config::XdpMode::Native,
            Mode::Generic => crate::config::XdpMode::Generic,
            Mode::Auto => crate::config::XdpMode::Auto,
        }
    }
}
