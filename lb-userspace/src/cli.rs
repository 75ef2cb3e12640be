//! Command line: `xlb run`, `xlb drain`, `xlb reload`, `xlb check`, `xlb convert`,
//! `xlb dump-config`, `xlb status`, `xlb ipvsadm`, `xlb decap`.

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
    /// Log lines as text (key=value fields) or as one JSON object each. Under
    /// systemd (JOURNAL_STREAM) each line starts with its syslog priority.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP director, program it from the config and run until SIGTERM/SIGINT.
    ///
    /// A data plane a previous agent left (killed, or stopped with
    /// --keep-dataplane) is adopted: flows and counters are kept. Signals:
    /// SIGHUP re-reads the config (as `xlb reload`), SIGUSR1 writes the state
    /// to [agent] state_dump (/run/xlb/xlb.data), SIGUSR2 the statistics to
    /// [agent] stats_dump (/run/xlb/xlb.stats), SIGTERM/SIGINT detach and unpin,
    /// SIGQUIT stops leaving the data plane forwarding for the next agent to
    /// adopt (as --keep-dataplane; the unit's RestartKillSignal).
    Run {
        #[command(flatten)]
        source: SourceArgs,
        /// On exit leave XDP attached and the maps pinned (forwarding continues;
        /// the next `xlb run` adopts them).
        /// keepalived's --dont-release-ipvs is the same for the IPVS data plane.
        #[arg(long, visible_aliases = ["dont-release-dataplane", "dont-release-ipvs"])]
        keep_dataplane: bool,
        /// On exit leave VRRP's virtual and static addresses, routes and rules
        /// in place and send no priority-0 advert (keepalived's --dont-release-vrrp).
        #[arg(long)]
        dont_release_vrrp: bool,
        /// Where to write the agent's pid (default: `[agent] pid_file`, /run/xlb.pid).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Directory (on bpffs) to pin the maps in, over `[dataplane] pin_path`
        /// (default /sys/fs/bpf/xlb); a keepalived.conf has no such setting.
        #[arg(long)]
        pin_path: Option<PathBuf>,
    },
    /// Drain this director: withdraw every VIP from BGP, keep forwarding the
    /// flows it holds for `[bgp] drain_time` while routers send new flows to
    /// the other directors, then stop (as SIGTERM). Waits for the agent to exit.
    Drain {
        /// The agent's pid file (default: the config's `[agent] pid_file`, else /run/xlb.pid).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// The agent's config, for its `[agent] pid_file`.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Give up waiting for the agent's exit after this many seconds (it drains on).
        #[arg(long, default_value_t = 3700)]
        wait: u64,
    },
    /// Make the running agent re-read its config (SIGHUP): only what changed is applied.
    Reload {
        /// The agent's pid file (default: the config's `[agent] pid_file`, else /run/xlb.pid).
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Validate this config first and do not signal if it has errors; its
        /// `[agent] pid_file` names the agent unless --pid-file does.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and exit: 0 if valid, 1 with file:line:col errors if not.
    Check {
        #[command(flatten)]
        source: SourceArgs,
        /// Print what xlb does with each keyword of keepalived 2.2.7 (mapped,
        /// unsupported with the reason, ignored with a note) and exit.
        #[arg(long, conflicts_with_all = ["config", "keepalived_conf"])]
        coverage: bool,
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
        /// Directory the agent pinned its maps in (default: the config's
        /// `[dataplane] pin_path`).
        #[arg(long)]
        pin_path: Option<PathBuf>,
        /// The agent's config, for its pin_path (default /etc/xlb/xlb.toml, when it exists).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Show persistence templates per real (ipvsadm's --persistent-conn).
        #[arg(long, conflicts_with = "json")]
        persistent_conn: bool,
        /// Print everything as one JSON object (stable field names, see the README).
        #[arg(long)]
        json: bool,
    },
    /// The running data plane's flow table, decoded: each connection (and
    /// persistence template) with its client, service, real, state and time left.
    Flows {
        /// Directory the agent pinned its maps in (default: the config's
        /// `[dataplane] pin_path`).
        #[arg(long)]
        pin_path: Option<PathBuf>,
        /// The agent's config, for its pin_path (default /etc/xlb/xlb.toml, when it exists).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only flows from this client address.
        #[arg(long, value_name = "IP")]
        client: Option<IpAddr>,
        /// Only flows of this virtual service.
        #[arg(long, value_name = "VIP:PORT")]
        service: Option<std::net::SocketAddr>,
        /// Only flows to this real server.
        #[arg(long, value_name = "IP")]
        real: Option<IpAddr>,
        /// Only flows in this state (ESTABLISHED, FIN_WAIT, PICKUP, UDP, ...).
        #[arg(long)]
        state: Option<String>,
        /// One JSON array of flows instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// ipvsadm's listing (-L -n, -c, --stats, --rate, --exact, --thresholds, --persistent-conn,
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
    /// xlb's TOML configuration (default /etc/xlb/xlb.toml).
    #[arg(long, short, conflicts_with = "keepalived_conf")]
    config: Option<PathBuf>,
    /// A keepalived.conf instead of TOML.
    #[arg(long)]
    keepalived_conf: Option<PathBuf>,
    /// With --keepalived-conf: a TOML file holding `[bgp]` (keepalived.conf
    /// has no BGP); in xlb's TOML write `[bgp]` in the file itself.
    #[arg(long, requires = "keepalived_conf")]
    bgp_config: Option<PathBuf>,
    #[command(flatten)]
    keepalived: KeepalivedArgs,
}

/// How a keepalived.conf is read.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct KeepalivedArgs {
    /// Selects keepalived's `@ID` conditional lines (keepalived's --config-id;
    /// default, as keepalived's: this host's name).
    #[arg(long)]
    config_id: Option<String>,
    /// Keywords xlb cannot honour become warnings (and are ignored) instead of errors.
    #[arg(long)]
    lenient: bool,
}

impl KeepalivedArgs {
    pub fn options(&self) -> crate::keepalived::Options {
        crate::keepalived::Options {
            config_id: self.config_id.clone().or_else(|| {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
            }),
            lenient: self.lenient,
            check_interfaces: false,
        }
    }
}

impl SourceArgs {
    pub fn source(&self) -> anyhow::Result<crate::load::Source> {
        use crate::load::Source;
        match (&self.config, &self.keepalived_conf) {
            (Some(c), None) if self.keepalived.config_id.is_none() && !self.keepalived.lenient => {
                Ok(Source::Toml {
                    path: c.clone(),
                    on_host: false,
                })
            }
            (Some(_), None) => {
                anyhow::bail!("--config-id and --lenient apply to --keepalived-conf only")
            }
            (None, None) if self.keepalived.config_id.is_none() && !self.keepalived.lenient => {
                Ok(Source::Toml {
                    path: crate::config::defaults::CONFIG_FILE.into(),
                    on_host: false,
                })
            }
            (None, Some(k)) => Ok(Source::Keepalived {
                path: k.clone(),
                options: self.keepalived.options(),
                bgp: self.bgp_config.clone(),
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
