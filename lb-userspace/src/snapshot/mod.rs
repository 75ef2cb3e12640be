//! What a data plane holds, read back from the kernel for every reader
//! (`xlb status`, `xlb ipvsadm`, the metrics, the SIGUSR dumps): the XDP
//! director's pinned maps ([`xdp`]) or the kernel's IPVS ([`ipvs`]), in one
//! plane-neutral [`Snapshot`]. Which plane is running is decided here, once
//! ([`Running::find`]).

pub mod flows;
pub mod ipvs;
pub mod rates;
pub mod xdp;

use crate::config::defaults;
use anyhow::{Context, Result};
use lb_common::{Counters, conn, map_names, upkeep};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

/// The pin directory `xlb status` and `xlb ipvsadm` read: `--pin-path`,
/// else the pin_path of `--config` (or of /etc/xlb/xlb.toml when it exists,
/// as the agent reads it), else the default.
pub fn pin_dir(pin: Option<&Path>, config: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = pin {
        return Ok(p.to_path_buf());
    }
    let default = Path::new(defaults::CONFIG_FILE);
    let file = match config {
        Some(c) => c,
        None if default.exists() => default,
        None => return Ok(PathBuf::from(defaults::PIN_PATH)),
    };
    let config = crate::load::load(file).with_context(|| {
        format!(
            "reading the pin path from {} (--pin-path skips it)",
            file.display()
        )
    })?;
    Ok(config.dataplane.pin_path)
}

/// Where the running data plane's state is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Running {
    /// The XDP director's maps pinned in this directory.
    Xdp(PathBuf),
    /// The kernel's IPVS (the IPVS data plane pins nothing).
    Ipvs,
}

impl Running {
    /// The XDP maps when `pin_dir` holds them, else the kernel's IPVS.
    pub fn find(pin_dir: &Path) -> Running {
        if pin_dir.join(map_names::SERVICES).exists() {
            Running::Xdp(pin_dir.to_path_buf())
        } else {
            Running::Ipvs
        }
    }

    /// The source of a data plane known to be `plane` (the agent knows its own).
    pub fn of(plane: Plane, pin_dir: &Path) -> Running {
        match plane {
            Plane::Xdp => Running::Xdp(pin_dir.to_path_buf()),
            Plane::Ipvs => Running::Ipvs,
        }
    }

    /// Reads what the data plane holds now. Under IPVS a socket per read
    /// rather than one kept behind a lock: concurrent readers never wait on
    /// each other, and a dump cut short by an error cannot leave replies
    /// for the next read to misread; it costs one family lookup.
    pub fn flows(&self) -> Result<Vec<flows::Flow>> {
        match self {
            Running::Xdp(dir) => flows::read(dir, xdp::monotonic_ns()),
            Running::Ipvs => {
                let path = "/proc/net/ip_vs_conn";
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {path} (is the ip_vs module loaded?)"))?;
                flows::from_proc(&text)
            }
        }
    }

    pub fn read(&self, detail: Detail) -> Result<Snapshot> {
        match self {
            Running::Xdp(dir) => xdp::read(dir, detail),
            Running::Ipvs => crate::ipvs::Ipvs::connect().and_then(|mut i| ipvs::read(&mut i)),
        }
    }
}

/// Counters of a service or a real: new connections, packets, bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub connections: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl From<Counters> for Stats {
    fn from(c: Counters) -> Stats {
        Stats {
            connections: c.new_conns,
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

/// One real server as the maps hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealStatus {
    /// Its id in `REALS` (stays with the real while it is configured).
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    /// ipvsadm's name of the method: Route, Masq, Tunnel.
    pub forward: String,
    pub weight: u32,
    /// False while its next hop is unknown: it takes no new connections.
    pub reachable: bool,
    /// Left its service but still carries flows (`nodest_policy = "keep"`).
    pub draining: bool,
    /// `uthreshold` / `lthreshold` (0: none).
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// `lb_common::tun` code and GUE port, for TUN reals.
    pub tun_type: u8,
    pub tun_port: u16,
    pub active_conns: u64,
    pub inactive_conns: u64,
    /// Live persistence templates (ipvsadm's PersistConn); `None` when not read.
    pub persistent_conns: Option<u64>,
    pub stats: Stats,
}

/// Persistence of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PersistenceStatus {
    pub timeout_s: u32,
    pub mask: IpAddr,
}

/// One virtual service as the maps hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// Its id in `SERVICES` values and the per-service maps.
    pub id: u32,
    /// TCP, UDP, or FWM (IPVS firewall-mark services).
    pub protocol: String,
    /// The mark of an FWM service (IPVS only); its `vip` and `port` are then 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    pub vip: IpAddr,
    pub port: u16,
    pub scheduler: String,
    /// False: its packets go to the local stack.
    pub active: bool,
    /// `sh-port`/`mh-port` and `sh-fallback`/`mh-fallback`.
    pub hash_port: bool,
    pub fallback: bool,
    pub persistence: Option<PersistenceStatus>,
    pub stats: Stats,
    pub reals: Vec<RealStatus>,
}

impl ServiceStatus {
    /// Whether this is the configured service `id`.
    pub fn is(&self, id: &crate::config::ServiceId) -> bool {
        match id.addr() {
            Some((vip, port, protocol)) => {
                self.fwmark.is_none()
                    && self.vip == vip
                    && self.port == port
                    && self.protocol == protocol.to_string()
            }
            None => match (*id, self.fwmark) {
                (crate::config::ServiceId::Fwmark { mark, ipv6 }, Some(m)) => {
                    m == mark && self.vip.is_ipv6() == ipv6
                }
                _ => false,
            },
        }
    }
}

/// What the XDP program did with every packet (`GLOBAL_STATS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PacketCounts {
    pub tx: u64,
    pub redirect: u64,
    pub pass: u64,
    pub drop: u64,
    pub error: u64,
    /// Of `pass`.
    pub malformed: u64,
    /// Of `pass`.
    pub fragments: u64,
    /// Of `tx`.
    pub icmp_too_big: u64,
    /// Of `drop`: packets of flows whose real left (`nodest_policy = "expire"`).
    pub nodest_expired: u64,
    /// TCP flows created mid-stream (from a packet that is not a SYN).
    pub pickups: u64,
    /// SYNs on a closed flow's ports that opened a new connection (`conn_reuse_mode`).
    pub reused: u64,
    /// Flows found idle past their timeout on lookup, handled as gone.
    pub stale: u64,
}

/// What the flow table's upkeep found at its last pass (`UPKEEP`): the
/// flows by state and what was removed, read without walking the table.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlowSummary {
    /// Passes since the maps were created (0: none yet, the figures are empty).
    pub passes: u64,
    /// Seconds since the last pass started.
    pub last_pass_age_s: f64,
    /// How long the last pass took, pauses included, in milliseconds.
    pub last_pass_ms: f64,
    /// Flows in the table, not expired.
    pub flows: u64,
    /// Of those, per state (ipvsadm's names; `PICKUP` for mid-stream flows).
    pub states: BTreeMap<String, u64>,
    /// Flows deleted after their idle timeout, in all passes.
    pub expired: u64,
    /// Connections the full table's LRU evicted, in all passes.
    pub evicted: u64,
}

impl FlowSummary {
    fn of(s: &upkeep::Summary, now_ns: u64) -> FlowSummary {
        FlowSummary {
            passes: s.passes,
            last_pass_age_s: now_ns.saturating_sub(s.pass_started_ns) as f64 / 1e9,
            last_pass_ms: s.pass_ns as f64 / 1e6,
            flows: s.flows(),
            states: (0..conn::STATES as u32)
                .filter(|&st| s.states[st as usize] != 0)
                .map(|st| (conn::name(st).to_string(), s.states[st as usize]))
                .collect(),
            expired: s.expired,
            evicted: s.evicted,
        }
    }
}

/// How full one map is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapFill {
    pub name: String,
    pub entries: u64,
    pub capacity: u64,
}

/// Which optional parts a read of the data plane reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// Persistence templates per real (walks `PERSIST`, bounded by its size).
    pub persistent_conns: bool,
    /// Entries of every hash map, as the upkeep's last pass counted them
    /// (no walk: a read of `UPKEEP` and each map's capacity).
    pub map_fill: bool,
}

/// Which data plane a [`Snapshot`] was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// The XDP director's pinned maps.
    Xdp,
    /// The kernel's IPVS, over generic netlink.
    Ipvs,
}

/// Everything the data plane says, for `xlb status` (text and JSON), the
/// state dumps and the metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub data_plane: Plane,
    /// Where the XDP maps are pinned; `None` for IPVS.
    pub pin_path: Option<PathBuf>,
    pub services: Vec<ServiceStatus>,
    /// What XDP did with every packet; zero for IPVS.
    pub packets: PacketCounts,
    /// Empty unless [`Detail::map_fill`] was asked for.
    pub maps: Vec<MapFill>,
    /// The flow table's upkeep; `None` for IPVS.
    pub flows: Option<FlowSummary>,
}

/// The XDP maps when `dir` holds them, else the kernel's IPVS (the IPVS
/// data plane pins nothing); an error names both when neither answers.
pub fn read_running(dir: &Path, detail: Detail) -> Result<Snapshot> {
    let source = Running::find(dir);
    source
        .read(detail)
        .with_context(|| {
            format!(
                "no XDP maps pinned at {} and the kernel's IPVS cannot be read (is the xlb agent running?)",
                dir.display()
            )
        })
}
