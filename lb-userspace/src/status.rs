//! `xlb status`: an ipvsadm-style listing read from the pinned maps (or,
//! under the IPVS data plane, from the kernel's IPVS), so it shows what the
//! kernel really forwards, not what a config file says.

use crate::config::{Method, Persistence, Protocol, Scheduler, SocketText};
use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    Affinity, Counters, GlobalCounters, REAL_F_DRAINING, REAL_F_PRESENT, REAL_F_REACHABLE,
    RealConns, RealInfo, SERVICE_F_ACTIVE, SERVICE_F_FALLBACK, SERVICE_F_HASH_PORT,
    SERVICE_F_PERSISTENT, ServiceAddr, ServiceInfo, ServiceKey, addr_ip, conn, map_names, upkeep,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::{
    fmt::Write,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

pub(crate) fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open {} (is the xlb agent running?)", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

fn sum<T: Copy + Default + std::ops::Add<Output = T>>(values: &[T]) -> T {
    values.iter().fold(T::default(), |a, c| a + *c)
}

const LEFT: usize = 70;

/// What `xlb status` shows per real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// ipvsadm -L -n with --stats columns after the connection counts.
    Default,
    /// ipvsadm -L -n --persistent-conn.
    PersistentConn,
}

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Live persistence templates per real id (IPVS's PersistConn).
fn persist_counts(
    dir: &Path,
    services: &[(ServiceKey, ServiceInfo)],
) -> Result<BTreeMap<u32, u64>> {
    let templates: HashMap<MapData, ServiceAddr, Affinity> =
        open(dir, map_names::PERSIST)?.try_into()?;
    let timeouts: BTreeMap<u32, u64> = services
        .iter()
        .map(|(_, i)| (i.id, u64::from(i.persist_timeout_s) * 1_000_000_000))
        .collect();
    let now = monotonic_ns();
    let mut counts = BTreeMap::new();
    for entry in templates.iter() {
        let (k, v) = entry?;
        if timeouts
            .get(&k.service_id)
            .is_some_and(|&t| now.wrapping_sub(v.last_ns) < t)
        {
            *counts.entry(v.real_id).or_insert(0) += 1;
        }
    }
    Ok(counts)
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

/// Which optional parts [`Snapshot::read`] reads.
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

/// The hash maps whose fill is worth watching (arrays are always full), as
/// the upkeep's last pass counted them; capacities from the maps.
fn map_fills(dir: &Path, summary: &upkeep::Summary) -> Result<Vec<MapFill>> {
    upkeep::FILL_MAPS
        .iter()
        .zip(summary.entries)
        .map(|(&name, entries)| {
            let capacity = u64::from(MapData::from_pin(dir.join(name))?.info()?.max_entries());
            Ok(MapFill {
                name: name.to_string(),
                entries,
                capacity,
            })
        })
        .collect()
}

impl Snapshot {
    /// Reads the maps pinned under `dir`.
    pub fn read(dir: &Path, detail: Detail) -> Result<Snapshot> {
        let services: HashMap<MapData, ServiceKey, ServiceInfo> =
            open(dir, map_names::SERVICES)?.try_into()?;
        let reals: Array<MapData, RealInfo> = open(dir, map_names::REALS)?.try_into()?;
        let svc_stats: PerCpuArray<MapData, Counters> =
            open(dir, map_names::SERVICE_STATS)?.try_into()?;
        let real_stats: PerCpuArray<MapData, Counters> =
            open(dir, map_names::REAL_STATS)?.try_into()?;
        let global: PerCpuArray<MapData, GlobalCounters> =
            open(dir, map_names::GLOBAL_STATS)?.try_into()?;
        let conns: Array<MapData, RealConns> = open(dir, map_names::REAL_CONNS)?.try_into()?;
        let upkeep: Array<MapData, upkeep::Summary> = open(dir, map_names::UPKEEP)?.try_into()?;
        let summary = upkeep.get(&0, 0)?;

        let mut svcs: Vec<(ServiceKey, ServiceInfo)> = services.iter().collect::<Result<_, _>>()?;
        svcs.sort_by_key(|(k, _)| {
            (
                k.proto,
                k.family,
                addr_ip(k.addr, k.family),
                u16::from_be(k.port),
            )
        });
        let all_reals: Vec<(u32, RealInfo)> = reals
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.ok().map(|r| (i as u32, r)))
            .filter(|(_, r)| r.flags & REAL_F_PRESENT != 0)
            .collect();
        let persist = if detail.persistent_conns {
            Some(persist_counts(dir, &svcs)?)
        } else {
            None
        };

        let mut out = Vec::with_capacity(svcs.len());
        for (key, info) in &svcs {
            let mut mine: Vec<&(u32, RealInfo)> = all_reals
                .iter()
                .filter(|(_, r)| r.service_id == info.id)
                .collect();
            mine.sort_by_key(|(_, r)| (addr_ip(r.addr, r.family), u16::from_be(r.port)));
            let mut reals = Vec::with_capacity(mine.len());
            for (id, r) in mine {
                let live = conns.get(id, 0)?.live;
                reals.push(RealStatus {
                    id: *id,
                    address: addr_ip(r.addr, r.family),
                    port: u16::from_be(r.port),
                    forward: Method::from_code(r.method)
                        .map_or("?", |m| m.ipvsadm_name())
                        .to_string(),
                    weight: r.weight,
                    reachable: r.flags & REAL_F_REACHABLE != 0,
                    draining: r.flags & REAL_F_DRAINING != 0,
                    u_threshold: r.u_threshold,
                    l_threshold: r.l_threshold,
                    tun_type: r.tun_type,
                    tun_port: u16::from_be(r.tun_port),
                    active_conns: live.active,
                    inactive_conns: live.inactive,
                    persistent_conns: persist.as_ref().map(|p| p.get(id).copied().unwrap_or(0)),
                    stats: sum(&real_stats.get(id, 0)?).into(),
                });
            }
            out.push(ServiceStatus {
                id: info.id,
                protocol: Protocol::from_number(key.proto)
                    .map_or("?".to_string(), |p| p.to_string()),
                fwmark: None,
                vip: addr_ip(key.addr, key.family),
                port: u16::from_be(key.port),
                scheduler: Scheduler::from_code(info.sched)
                    .map_or("?", |s| s.name())
                    .to_string(),
                active: info.flags & SERVICE_F_ACTIVE != 0,
                hash_port: info.flags & SERVICE_F_HASH_PORT != 0,
                fallback: info.flags & SERVICE_F_FALLBACK != 0,
                persistence: (info.flags & SERVICE_F_PERSISTENT != 0).then(|| PersistenceStatus {
                    timeout_s: info.persist_timeout_s,
                    mask: addr_ip(info.persist_mask, key.family),
                }),
                stats: sum(&svc_stats.get(&info.id, 0)?).into(),
                reals,
            });
        }
        let g = sum(&global.get(&0, 0)?);
        let maps = if detail.map_fill {
            map_fills(dir, &summary)?
        } else {
            Vec::new()
        };
        Ok(Snapshot {
            data_plane: Plane::Xdp,
            pin_path: Some(dir.to_path_buf()),
            services: out,
            packets: PacketCounts {
                tx: g.tx,
                redirect: g.redirect,
                pass: g.pass,
                drop: g.drop,
                error: g.error,
                malformed: g.malformed,
                fragments: g.fragments,
                icmp_too_big: g.too_big,
                nodest_expired: g.nodest_expired,
                pickups: g.pickups,
                reused: g.reused,
                stale: g.stale,
            },
            maps,
            flows: Some(FlowSummary::of(&summary, monotonic_ns())),
        })
    }
}

/// The XDP maps when `dir` holds them, else the kernel's IPVS (the IPVS
/// data plane pins nothing); an error names both when neither answers.
pub fn read_running(dir: &Path, detail: Detail) -> Result<Snapshot> {
    if dir.join(map_names::SERVICES).exists() {
        return Snapshot::read(dir, detail);
    }
    crate::ipvs::Ipvs::connect()
        .and_then(|mut ipvs| crate::ipvs::snapshot::read(&mut ipvs))
        .with_context(|| {
            format!(
                "no XDP maps pinned at {} and the kernel's IPVS cannot be read (is the xlb agent running?)",
                dir.display()
            )
        })
}

/// ` persistent N` and ` mask M` as ipvsadm prints them after the scheduler.
fn persistence_text(p: Option<PersistenceStatus>) -> String {
    let Some(p) = p else {
        return String::new();
    };
    let mut s = format!(" persistent {}", p.timeout_s);
    let full = match p.mask {
        IpAddr::V4(m) => m == Ipv4Addr::BROADCAST,
        IpAddr::V6(m) => u128::from(m) == u128::MAX,
    };
    if !full {
        let mask = Persistence {
            timeout_s: p.timeout_s,
            mask: p.mask,
        };
        s.push_str(&format!(" mask {}", mask.mask_text()));
    }
    s
}

/// Renders `view` for the maps pinned under `dir`, else the kernel's IPVS.
pub fn render(dir: &Path, view: View) -> Result<String> {
    let snap = read_running(
        dir,
        Detail {
            persistent_conns: view == View::PersistentConn,
            map_fill: false,
        },
    )?;
    let mut out = String::new();
    match snap.data_plane {
        Plane::Xdp => writeln!(out, "xlb data plane, maps pinned at {}", dir.display())?,
        Plane::Ipvs => writeln!(out, "xlb data plane: the kernel's IPVS")?,
    }
    match view {
        View::Default => {
            writeln!(out, "Prot LocalAddress:Port Scheduler Flags")?;
            writeln!(
                out,
                "{:<LEFT$}{:>9} {:>9} {:>9}",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                "Conns",
                "InPkts",
                "InBytes"
            )?;
        }
        View::PersistentConn => writeln!(
            out,
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )?,
    }
    for svc in &snap.services {
        let flags = if svc.active { "" } else { " inactive" };
        let local = match svc.fwmark {
            Some(mark) => mark.to_string(),
            None => SocketText(svc.vip, svc.port).to_string(),
        };
        let head = format!(
            "{:<4} {local} {}{}{flags}",
            svc.protocol,
            svc.scheduler,
            persistence_text(svc.persistence)
        );
        let c = svc.stats;
        match view {
            View::Default => writeln!(
                out,
                "{head:<LEFT$}{:>9} {:>9} {:>9}",
                c.connections, c.packets, c.bytes
            )?,
            View::PersistentConn => writeln!(out, "{head}")?,
        }
        // Reals that left the service but still carry flows (nodest `keep`):
        // not members (ipvsadm does not list them either), shown apart.
        let (draining, members): (Vec<&RealStatus>, Vec<&RealStatus>) =
            svc.reals.iter().partition(|r| r.draining);
        for r in members {
            let name = SocketText(r.address, r.port).to_string();
            if view == View::PersistentConn {
                writeln!(
                    out,
                    "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                    r.weight,
                    r.persistent_conns.unwrap_or(0),
                    r.active_conns,
                    r.inactive_conns
                )?;
                continue;
            }
            let line = format!(
                "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                r.forward, r.weight, r.active_conns, r.inactive_conns
            );
            let note = if r.reachable { "" } else { "  unreachable" };
            let c = r.stats;
            writeln!(
                out,
                "{line:<LEFT$}{:>9} {:>9} {:>9}{note}",
                c.connections, c.packets, c.bytes
            )?;
        }
        for r in draining {
            writeln!(
                out,
                "  draining {} ActiveConn {} InActConn {}",
                SocketText(r.address, r.port),
                r.active_conns,
                r.inactive_conns
            )?;
        }
    }
    if snap.data_plane == Plane::Ipvs {
        return Ok(out);
    }
    let g = snap.packets;
    writeln!(
        out,
        "Packets: tx {} (icmp too big {}) redirect {} pass {} (malformed {}, fragments {}) drop {} (nodest expired {}) error {}",
        g.tx,
        g.icmp_too_big,
        g.redirect,
        g.pass,
        g.malformed,
        g.fragments,
        g.drop,
        g.nodest_expired,
        g.error
    )?;
    if let Some(f) = &snap.flows {
        writeln!(out, "{}", flows_text(f, g))?;
    }
    Ok(out)
}

/// The flow table's line: what the upkeep's last pass found and what the
/// director did with flows.
fn flows_text(f: &FlowSummary, g: PacketCounts) -> String {
    let states: Vec<String> = f.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let pass = if f.passes == 0 {
        "no upkeep pass yet".to_string()
    } else {
        format!(
            "upkeep pass {} took {:.0} ms, {:.1} s ago",
            f.passes, f.last_pass_ms, f.last_pass_age_s
        )
    };
    format!(
        "Flows: {} ({}) expired {} evicted {}; new: pickups {} reused {} stale {}; {pass}",
        f.flows,
        states.join(", "),
        f.expired,
        f.evicted,
        g.pickups,
        g.reused,
        g.stale
    )
}

/// `xlb status --json`: the whole [`Snapshot`], persistence and map fill included.
pub fn render_json(dir: &Path) -> Result<String> {
    let snap = read_running(
        dir,
        Detail {
            persistent_conns: true,
            map_fill: true,
        },
    )?;
    Ok(serde_json::to_string_pretty(&snap)?)
}
