//! `xlb status`: an ipvsadm-style listing read from the pinned maps, so it
//! shows what the kernel really forwards, not what a config file says.

use crate::config::{Method, Persistence, Protocol, Scheduler, SocketText};
use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    Affinity, ConnCounts, Counters, GlobalCounters, REAL_F_DRAINING, REAL_F_PRESENT,
    REAL_F_REACHABLE, RealInfo, SERVICE_F_ACTIVE, SERVICE_F_PERSISTENT, ServiceAddr, ServiceInfo,
    ServiceKey, addr_ip, map_names,
};
use std::collections::BTreeMap;
use std::{
    fmt::Write,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

fn open(dir: &Path, name: &str) -> Result<Map> {
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

/// ` persistent N` and ` mask M` as ipvsadm prints them after the scheduler.
fn persistence_text(key: &ServiceKey, info: &ServiceInfo) -> String {
    if info.flags & SERVICE_F_PERSISTENT == 0 {
        return String::new();
    }
    let p = Persistence {
        timeout_s: info.persist_timeout_s,
        mask: addr_ip(info.persist_mask, key.family),
    };
    let mut s = format!(" persistent {}", p.timeout_s);
    let full = match p.mask {
        IpAddr::V4(m) => m == Ipv4Addr::BROADCAST,
        IpAddr::V6(m) => u128::from(m) == u128::MAX,
    };
    if !full {
        s.push_str(&format!(" mask {}", p.mask_text()));
    }
    s
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

/// Renders `view` for the maps pinned under `dir`.
pub fn render(dir: &Path, view: View) -> Result<String> {
    let services: HashMap<MapData, ServiceKey, ServiceInfo> =
        open(dir, map_names::SERVICES)?.try_into()?;
    let reals: Array<MapData, RealInfo> = open(dir, map_names::REALS)?.try_into()?;
    let svc_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::SERVICE_STATS)?.try_into()?;
    let real_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::REAL_STATS)?.try_into()?;
    let global: PerCpuArray<MapData, GlobalCounters> =
        open(dir, map_names::GLOBAL_STATS)?.try_into()?;
    let conns: Array<MapData, ConnCounts> = open(dir, map_names::REAL_CONNS)?.try_into()?;
    let gone: Array<MapData, ConnCounts> = open(dir, map_names::REAL_CONNS_GONE)?.try_into()?;

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

    let persist = match view {
        View::PersistentConn => persist_counts(dir, &svcs)?,
        View::Default => BTreeMap::new(),
    };

    let mut out = String::new();
    writeln!(out, "xlb data plane, maps pinned at {}", dir.display())?;
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
    for (key, info) in &svcs {
        let proto = Protocol::from_number(key.proto).map_or("?".to_string(), |p| p.to_string());
        let sched = Scheduler::from_code(info.sched).map_or("?", |s| s.name());
        let flags = if info.flags & SERVICE_F_ACTIVE == 0 {
            " inactive"
        } else {
            ""
        };
        let head = format!(
            "{proto:<4} {} {sched}{}{flags}",
            SocketText(addr_ip(key.addr, key.family), u16::from_be(key.port)),
            persistence_text(key, info)
        );
        let c = sum(&svc_stats.get(&info.id, 0)?);
        match view {
            View::Default => writeln!(
                out,
                "{head:<LEFT$}{:>9} {:>9} {:>9}",
                c.new_conns, c.packets, c.bytes
            )?,
            View::PersistentConn => writeln!(out, "{head}")?,
        }
        let mut mine: Vec<&(u32, RealInfo)> = all_reals
            .iter()
            .filter(|(_, r)| r.service_id == info.id)
            .collect();
        mine.sort_by_key(|(_, r)| (addr_ip(r.addr, r.family), u16::from_be(r.port)));
        // Reals that left the service but still carry flows (nodest `keep`):
        // not members (ipvsadm does not list them either), shown apart.
        let (draining, mine): (Vec<&(u32, RealInfo)>, Vec<_>) = mine
            .into_iter()
            .partition(|(_, r)| r.flags & REAL_F_DRAINING != 0);
        for (id, r) in mine {
            let name = SocketText(addr_ip(r.addr, r.family), u16::from_be(r.port)).to_string();
            let live = conns.get(id, 0)?.live(gone.get(id, 0)?);
            if view == View::PersistentConn {
                writeln!(
                    out,
                    "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                    r.weight,
                    persist.get(id).copied().unwrap_or(0),
                    live.active,
                    live.inactive
                )?;
                continue;
            }
            let fwd = Method::from_code(r.method).map_or("?", |m| m.ipvsadm_name());
            let line = format!(
                "  -> {name:<28} {fwd:<7} {:<6} {:<10} {:<10}",
                r.weight, live.active, live.inactive
            );
            let c = sum(&real_stats.get(id, 0)?);
            let note = if r.flags & REAL_F_REACHABLE == 0 {
                "  unreachable"
            } else {
                ""
            };
            writeln!(
                out,
                "{line:<LEFT$}{:>9} {:>9} {:>9}{note}",
                c.new_conns, c.packets, c.bytes
            )?;
        }
        for (id, r) in draining {
            let live = conns.get(id, 0)?.live(gone.get(id, 0)?);
            writeln!(
                out,
                "  draining {} ActiveConn {} InActConn {}",
                SocketText(addr_ip(r.addr, r.family), u16::from_be(r.port)),
                live.active,
                live.inactive
            )?;
        }
    }
    let g = sum(&global.get(&0, 0)?);
    writeln!(
        out,
        "Packets: tx {} (icmp too big {}) redirect {} pass {} (malformed {}, fragments {}) drop {} (nodest expired {}) error {}",
        g.tx,
        g.too_big,
        g.redirect,
        g.pass,
        g.malformed,
        g.fragments,
        g.drop,
        g.nodest_expired,
        g.error
    )?;
    Ok(out)
}
