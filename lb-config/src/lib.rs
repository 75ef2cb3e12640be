//! The agent's configuration: a TOML file turned into a validated model.
//! Every error names `file:line:col`; a file with any error yields no model,
//! so nothing is ever half-applied.

pub mod bgp;
pub mod capacity;
pub mod check;
pub mod defaults;
pub mod emit;
pub mod global;
mod hint;
pub mod host;
pub mod keepalived;
mod overrides;
mod raw;
pub mod semantic;
mod validate;
pub mod vrrp;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

pub use overrides::Overrides;
pub use validate::{parse, parse_sited};

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver; fails where the driver has no XDP support.
    Native,
    /// In the generic (skb) path; works on every interface, slower.
    Generic,
    /// Native, falling back to generic with a logged reason.
    Auto,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::PROTO_TCP,
            Protocol::Udp => lb_common::PROTO_UDP,
        }
    }

    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            lb_common::PROTO_TCP => Some(Protocol::Tcp),
            lb_common::PROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// How a new connection picks its real server. Names follow ipvsadm's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
    /// Overflow-connection.
    Ovf,
    /// Power of two choices (Linux 6.2's `ip_vs_twos`).
    Twos,
}

impl Scheduler {
    /// Every scheduler with its name and data-plane code.
    pub const ALL: [(Scheduler, &'static str, u8); 14] = {
        use lb_common::sched::*;
        [
            (Scheduler::Rr, "rr", RR),
            (Scheduler::Wrr, "wrr", WRR),
            (Scheduler::Lc, "lc", LC),
            (Scheduler::Wlc, "wlc", WLC),
            (Scheduler::Lblc, "lblc", LBLC),
            (Scheduler::Lblcr, "lblcr", LBLCR),
            (Scheduler::Dh, "dh", DH),
            (Scheduler::Sh, "sh", SH),
            (Scheduler::Sed, "sed", SED),
            (Scheduler::Nq, "nq", NQ),
            (Scheduler::Mh, "mh", MH),
            (Scheduler::Fo, "fo", FO),
            (Scheduler::Ovf, "ovf", OVF),
            (Scheduler::Twos, "twos", TWOS),
        ]
    };

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    pub fn code(self) -> u8 {
        Self::ALL.iter().find(|e| e.0 == self).map_or(0, |e| e.2)
    }

    pub fn from_code(code: u8) -> Option<Scheduler> {
        Self::ALL.iter().find(|e| e.2 == code).map(|e| e.0)
    }

    pub fn from_name(name: &str) -> Option<Scheduler> {
        Self::ALL.iter().find(|e| e.1 == name).map(|e| e.0)
    }
}

/// keepalived's scheduler flags (IPVS's sched-flag-1/2 for sh and mh).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedFlags {
    /// `sh-port` / `mh-port`: hash the client's port with its address.
    pub hash_port: bool,
    /// `sh-fallback` / `mh-fallback`: try other reals when the hashed one cannot take the flow.
    pub fallback: bool,
}

/// A persistent service: clients keep their real across connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Seconds a client's template lives after its last new connection.
    pub timeout_s: u32,
    /// Client addresses are grouped by this mask (IPv4 netmask or IPv6 prefix).
    pub mask: IpAddr,
}

impl Persistence {
    /// The mask as ipvsadm prints it: a netmask for IPv4, a prefix length for IPv6.
    pub fn mask_text(&self) -> String {
        match self.mask {
            IpAddr::V4(m) => m.to_string(),
            IpAddr::V6(m) => u128::from(m).leading_ones().to_string(),
        }
    }
}

/// How packets reach the real server (LVS forwarding methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Direct routing (ipvsadm -g, "Route").
    Dr,
    /// Masquerading (ipvsadm -m, "Masq"): destination rewritten both ways.
    Nat,
    /// IP tunnelling (ipvsadm -i, "Tunnel").
    Tun,
}

impl Method {
    pub fn code(self) -> u8 {
        match self {
            Method::Dr => lb_common::method::DR,
            Method::Nat => lb_common::method::NAT,
            Method::Tun => lb_common::method::TUN,
        }
    }

    pub fn from_code(code: u8) -> Option<Method> {
        match code {
            lb_common::method::DR => Some(Method::Dr),
            lb_common::method::NAT => Some(Method::Nat),
            lb_common::method::TUN => Some(Method::Tun),
            _ => None,
        }
    }

    /// The word ipvsadm prints in its Forward column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Method::Dr => "Route",
            Method::Nat => "Masq",
            Method::Tun => "Tunnel",
        }
    }
}

/// The encapsulation of a `tun` service (keepalived's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// IP in IP: the outer header is IPv4 or IPv6 after the real's address.
    Ipip,
    /// Generic UDP Encapsulation to this UDP port on the real server.
    Gue { port: u16 },
}

impl Tunnel {
    /// `RealInfo::tun_type`.
    pub fn code(self) -> u8 {
        match self {
            Tunnel::Ipip => lb_common::tun::IPIP,
            Tunnel::Gue { .. } => lb_common::tun::GUE,
        }
    }

    /// `RealInfo::tun_port` (network byte order; 0 for IPIP).
    pub fn port_be(self) -> u16 {
        match self {
            Tunnel::Ipip => 0,
            Tunnel::Gue { port } => port.to_be(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub global: global::Global,
    pub dataplane: Dataplane,
    pub services: Vec<Service>,
    pub vrrp: vrrp::Vrrp,
    pub static_net: vrrp::StaticNet,
    /// The Prometheus endpoint (`[metrics]`).
    pub metrics: Metrics,
    /// `[agent]`: the agent's own files.
    pub agent: AgentFiles,
    /// `[bgp]`: VIPs announced through bird2 (ECMP scale-out); `None`: no BGP.
    pub bgp: Option<bgp::Bgp>,
}

impl Config {
    /// The VRRP instance that owns `vip`, if any instance lists it.
    pub fn vip_owner(&self, vip: IpAddr) -> Option<&str> {
        self.vrrp.instances.iter().find_map(|i| {
            i.virtual_ipaddress
                .iter()
                .chain(&i.virtual_ipaddress_excluded)
                .any(|a| a.address == vip)
                .then_some(i.name.as_str())
        })
    }
}

/// Where a script is written in the config, so that what is checked after
/// parsing (script security, on the host's files) can point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptSite {
    pub command: Command,
    pub file: String,
    pub line: usize,
    pub col: usize,
}

/// A script or program to run: argv, run without a shell (keepalived splits
/// the quoted string into words the same way). A shell is used only when
/// the command names one (`/bin/sh -c "…"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command(pub Vec<String>);

/// The argv as a shell would read it back: words with spaces, quotes or
/// backslashes in double quotes (for logs).
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if !word.is_empty()
                && !word
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
            {
                f.write_str(word)?;
            } else {
                write!(f, "{word:?}")?;
            }
        }
        Ok(())
    }
}

/// Which data plane forwards (`[dataplane] kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataplaneKind {
    Xdp,
    /// The kernel's IPVS over generic netlink.
    Ipvs,
    /// XDP, falling back to IPVS with a logged reason when attaching fails.
    Auto,
}

impl DataplaneKind {
    /// The name `[dataplane] kind` takes.
    pub fn name(self) -> &'static str {
        match self {
            DataplaneKind::Xdp => "xdp",
            DataplaneKind::Ipvs => "ipvs",
            DataplaneKind::Auto => "auto",
        }
    }
}

impl Default for DataplaneKind {
    fn default() -> Self {
        defaults::DATAPLANE_KIND
    }
}

/// Files of the running agent (`[agent]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFiles {
    /// Holds the agent's pid, for `xlb reload`.
    pub pid_file: PathBuf,
    /// Written on SIGUSR1: services, reals, weights, next hops, counts.
    pub state_dump: PathBuf,
    /// Written on SIGUSR2: counters.
    pub stats_dump: PathBuf,
}

impl Default for AgentFiles {
    fn default() -> Self {
        AgentFiles {
            pid_file: PathBuf::from("/run/xlb.pid"),
            state_dump: PathBuf::from("/run/xlb/xlb.data"),
            stats_dump: PathBuf::from("/run/xlb/xlb.stats"),
        }
    }
}

/// The Prometheus endpoint (`[metrics]`) and the bounds that keep a flood
/// of clients from taking the agent's descriptors or time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// Where it listens; `None`: off.
    pub listen: Option<std::net::SocketAddr>,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: u32,
    /// A request's header must be complete this long after the connection
    /// opened or the previous response went out (so it also ends idle
    /// keep-alive connections).
    pub header_timeout: std::time::Duration,
    /// A connection on which no byte moves either way for this long, while
    /// no answer is being rendered, is closed (a client that stopped reading).
    pub idle_timeout: std::time::Duration,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: defaults::METRICS_LISTEN.parse().ok(),
            max_connections: 8,
            header_timeout: std::time::Duration::from_secs(5),
            idle_timeout: std::time::Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataplane {
    pub kind: DataplaneKind,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub pin_path: PathBuf,
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_reals: u32,
    pub conntrack_size: u32,
    pub timeouts: Timeouts,
    /// Outer source of IPv4 tunnels; `None`: the kernel's source towards the reals.
    pub tunnel_source_v4: Option<Ipv4Addr>,
    /// Outer source of IPv6 tunnels; `None`: as for IPv4.
    pub tunnel_source_v6: Option<Ipv6Addr>,
    /// What happens to flows pinned to a real that left its service.
    pub nodest: NodestPolicy,
    /// IPVS's `conn_reuse_mode` (0–3): whether a SYN on the ports of a
    /// closed flow opens a new connection (`lb_common::conn::reused`).
    pub conn_reuse_mode: u8,
}

/// Flows whose real left the service (removed from the config, or taken
/// out by a health check): IPVS's `expire_nodest_conn` and more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodestPolicy {
    /// IPVS's default: existing flows continue to the removed real until
    /// they end; the real takes no new flows meanwhile (draining).
    Keep,
    /// `expire_nodest_conn = 1`: the next packet of such a flow is dropped
    /// and the flow forgotten, so the client's next attempt is scheduled anew.
    Expire,
    /// The next packet of such a flow is scheduled to another real.
    Reschedule,
}

impl Default for NodestPolicy {
    fn default() -> Self {
        defaults::NODEST_POLICY
    }
}

impl NodestPolicy {
    /// The `[dataplane] nodest_policy` value.
    pub fn name(self) -> &'static str {
        match self {
            NodestPolicy::Keep => "keep",
            NodestPolicy::Expire => "expire",
            NodestPolicy::Reschedule => "reschedule",
        }
    }
}

/// Idle timeouts in seconds of established TCP, closing TCP and UDP flows
/// (what `ipvsadm --set tcp tcpfin udp` sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

/// A virtual service is identified as in IPVS: address, port and protocol,
/// or a firewall mark (keepalived's `virtual_server fwmark N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceId {
    Addr {
        vip: IpAddr,
        port: u16,
        protocol: Protocol,
    },
    /// Packets the firewall marked with `mark`; only the IPVS data plane can
    /// see marks (XDP runs before netfilter).
    Fwmark { mark: u32, ipv6: bool },
}

impl ServiceId {
    /// The VIP, port and protocol of an address service; `None` for fwmark services.
    pub fn addr(&self) -> Option<(IpAddr, u16, Protocol)> {
        match *self {
            ServiceId::Addr {
                vip,
                port,
                protocol,
            } => Some((vip, port, protocol)),
            ServiceId::Fwmark { .. } => None,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        match *self {
            ServiceId::Addr { vip, .. } => vip.is_ipv6(),
            ServiceId::Fwmark { ipv6, .. } => ipv6,
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServiceId::Addr {
                vip,
                port,
                protocol,
            } => write!(f, "{protocol} {}", SocketText(vip, port)),
            ServiceId::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// `addr:port` with IPv6 in brackets, as ipvsadm prints it.
pub struct SocketText(pub IpAddr, pub u16);

impl fmt::Display for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub id: ServiceId,
    pub scheduler: Scheduler,
    pub method: Method,
    /// The encapsulation, for `Method::Tun` only.
    pub tunnel: Option<Tunnel>,
    /// An inactive service is known to the data plane but its packets go to the stack.
    pub active: bool,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub reals: Vec<Real>,
    pub lifecycle: check::ServiceLifecycle,
    /// The `virtual_server_group` this service is a member of (TOML
    /// `group`): its members list the same reals and checks, and keepalived
    /// runs each real's checks once for all of them, with one verdict and
    /// one announcement. `None`: a service of its own.
    pub group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Real {
    pub address: IpAddr,
    pub port: u16,
    /// 0 takes no new connections; existing ones continue.
    pub weight: u32,
    /// Connections (active + inactive) at which the real stops taking new ones; 0: none.
    pub u_threshold: u32,
    /// Connections below which it takes them again; 0: 3/4 of `u_threshold`.
    pub l_threshold: u32,
    pub lifecycle: check::RealLifecycle,
}

/// One problem in the file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found in a file, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
