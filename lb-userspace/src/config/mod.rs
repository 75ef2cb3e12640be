//! The agent's configuration: a TOML file turned into a validated model.
//! Every error names `file:line:col`; a file with any error yields no model,
//! so nothing is ever half-applied.

mod raw;
mod validate;

use std::{fmt, net::IpAddr, path::PathBuf};

pub use validate::parse;

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
}

impl Scheduler {
    /// Every scheduler with its name and data-plane code.
    pub const ALL: [(Scheduler, &'static str, u8); 13] = {
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
}

impl Method {
    pub fn code(self) -> u8 {
        match self {
            Method::Dr => lb_common::method::DR,
        }
    }

    pub fn from_code(code: u8) -> Option<Method> {
        (code == lb_common::method::DR).then_some(Method::Dr)
    }

    /// The word ipvsadm prints in its Forward column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Method::Dr => "Route",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub dataplane: Dataplane,
    pub services: Vec<Service>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataplane {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub pin_path: PathBuf,
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_reals: u32,
    pub conntrack_size: u32,
}

/// A virtual service is identified as in IPVS: address, port, protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, SocketText(self.vip, self.port))
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
    /// An inactive service is known to the data plane but its packets go to the stack.
    pub active: bool,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub reals: Vec<Real>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Real {
    pub address: IpAddr,
    pub port: u16,
    /// 0 takes no new connections; existing ones continue.
    pub weight: u32,
    /// Connections (active + inactive) at which the real stops taking new ones; 0: none.
    pub u_threshold: u32,
    /// Connections below which it takes them again; 0: 3/4 of `u_threshold`.
    pub l_threshold: u32,
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

/// Reads and validates `path`.
pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", path.display()))?;
    Ok(parse(&path.display().to_string(), &text)?)
}
