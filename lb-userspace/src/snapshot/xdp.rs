//! The XDP director's state, read from its pinned maps.

use super::{
    Detail, FlowSummary, MapFill, PacketCounts, PersistenceStatus, Plane, RealStatus,
    ServiceStatus, Snapshot,
};
use crate::config::{Method, Protocol, Scheduler};
use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    Affinity, Counters, GlobalCounters, REAL_F_DRAINING, REAL_F_PRESENT, REAL_F_REACHABLE,
    RealConns, RealInfo, SERVICE_F_ACTIVE, SERVICE_F_FALLBACK, SERVICE_F_HASH_PORT,
    SERVICE_F_PERSISTENT, ServiceAddr, ServiceInfo, ServiceKey, addr_ip, map_names, upkeep,
};
use std::{collections::BTreeMap, path::Path};

/// Opens the map `name` pinned in `dir`.
pub(crate) fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open {} (is the xlb agent running?)", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

/// A per-CPU value summed over the CPUs.
pub(super) fn sum<T: Copy + Default + std::ops::Add<Output = T>>(values: &[T]) -> T {
    values.iter().fold(T::default(), |a, c| a + *c)
}

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns()`.
pub(crate) fn monotonic_ns() -> u64 {
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
            protocol: Protocol::from_number(key.proto).map_or("?".to_string(), |p| p.to_string()),
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
