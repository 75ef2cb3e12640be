//! `xlb ipvsadm`'s command line: ipvsadm's listing options, spelled as ipvsadm spells them.

use crate::config::{Protocol, ServiceId, SocketText};
use clap::Args;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Clone, Debug, Args)]
pub struct IpvsadmArgs {
    /// List the services (the only command; accepted for ipvsadm compatibility).
    #[arg(short = 'L', long = "list")]
    pub list: bool,
    /// Same as -L.
    #[arg(short = 'l', hide = true)]
    pub list_lower: bool,
    /// Zero the packet, byte and connection counters (of the -t/-u/-f
    /// service, or of all) instead of listing.
    #[arg(short = 'Z', long = "zero")]
    pub zero: bool,
    /// The connections (the flow table) instead of the services.
    #[arg(short = 'c', long = "connection")]
    pub connection: bool,
    /// Numeric addresses and ports (xlb never resolves names).
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Connection and traffic counters.
    #[arg(long)]
    pub stats: bool,
    /// Rates (connections, packets and bytes per second).
    #[arg(long)]
    pub rate: bool,
    /// Exact counter values instead of K/M/G/T-scaled ones.
    #[arg(short = 'x', long)]
    pub exact: bool,
    /// Upper and lower connection thresholds per real server.
    #[arg(long)]
    pub thresholds: bool,
    /// Persistence templates per real server.
    #[arg(long = "persistent-conn")]
    pub persistent_conn: bool,
    /// The tunnel of each real server (ipip, or gue:PORT:checksum flags).
    #[arg(long = "tun-info")]
    pub tun_info: bool,
    /// Sorted output (the default; accepted as ipvsadm accepts it).
    #[arg(long)]
    pub sort: bool,
    /// Only this TCP service (VIP:PORT).
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    pub tcp: Option<SocketAddr>,
    /// Only this UDP service (VIP:PORT).
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    pub udp: Option<SocketAddr>,
    /// Only this firewall-mark service.
    #[arg(short = 'f', long = "fwmark-service", value_name = "MARK")]
    pub fwmark: Option<u32>,
    /// The -f service is IPv6.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// The connection timeouts (tcp, tcpfin, udp) instead of the services.
    #[arg(long)]
    pub timeout: bool,
    /// The sync daemons instead of the services (the kernel's IPVS only).
    #[arg(long)]
    pub daemon: bool,
    /// Where the XDP data plane's maps are pinned (default: the config's
    /// `[dataplane] pin_path`); without maps there, the kernel's IPVS is listed.
    #[arg(long)]
    pub pin_path: Option<PathBuf>,
    /// The agent's config, for its pin_path (default /etc/xlb/xlb.toml, when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Which columns the listing has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Default,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    TunInfo,
}

impl IpvsadmArgs {
    /// ipvsadm's precedence when several are given: stats, rate, thresholds,
    /// persistent-conn, tun-info.
    pub fn view(&self) -> View {
        if self.stats {
            View::Stats
        } else if self.rate {
            View::Rate
        } else if self.thresholds {
            View::Thresholds
        } else if self.persistent_conn {
            View::PersistentConn
        } else if self.tun_info {
            View::TunInfo
        } else {
            View::Default
        }
    }

    /// The one service to list, if -t, -u or -f names one.
    pub fn filter(&self) -> Option<ServiceId> {
        let addr = |a: SocketAddr, protocol| ServiceId::Addr {
            vip: a.ip(),
            port: a.port(),
            protocol,
        };
        self.tcp
            .map(|a| addr(a, Protocol::Tcp))
            .or(self.udp.map(|a| addr(a, Protocol::Udp)))
            .or(self.fwmark.map(|mark| ServiceId::Fwmark {
                mark,
                ipv6: self.ipv6,
            }))
    }
}

/// How a missing filtered service is reported.
pub fn describe(id: &ServiceId) -> String {
    match *id {
        ServiceId::Addr {
            vip,
            port,
            protocol,
        } => format!("{protocol} {}", SocketText(vip, port)),
        ServiceId::Fwmark { mark, ipv6 } => {
            format!("FWM {mark}{}", if ipv6 { " IPv6" } else { "" })
        }
    }
}
