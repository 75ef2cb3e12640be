//! `xlb status`: an ipvsadm-style listing read from the pinned maps, so it
//! shows what the kernel really forwards, not what a config file says.

use crate::config::{Method, Protocol, Scheduler, SocketText};
use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    Counters, GlobalCounters, REAL_F_PRESENT, REAL_F_REACHABLE, RealInfo, SERVICE_F_ACTIVE,
    ServiceInfo, ServiceKey, map_names,
};
use std::{
    fmt::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open {} (is the xlb agent running?)", path.display()))?;
    Ok(Map::from_map_data(data)?)
}

fn addr(words: [u32; 4], family: u8) -> IpAddr {
    let b: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if family == lb_common::FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")))
    }
}

fn sum<T: Copy + Default + std::ops::Add<Output = T>>(values: &[T]) -> T {
    values.iter().fold(T::default(), |a, c| a + *c)
}

const LEFT: usize = 48;

/// Renders the listing for the maps pinned under `dir`.
pub fn render(dir: &Path) -> Result<String> {
    let services: HashMap<MapData, ServiceKey, ServiceInfo> =
        open(dir, map_names::SERVICES)?.try_into()?;
    let reals: Array<MapData, RealInfo> = open(dir, map_names::REALS)?.try_into()?;
    let svc_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::SERVICE_STATS)?.try_into()?;
    let real_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::REAL_STATS)?.try_into()?;
    let global: PerCpuArray<MapData, GlobalCounters> =
        open(dir, map_names::GLOBAL_STATS)?.try_into()?;

    let mut svcs: Vec<(ServiceKey, ServiceInfo)> = services.iter().collect::<Result<_, _>>()?;
    svcs.sort_by_key(|(k, _)| {
        (
            k.proto,
            k.family,
            addr(k.addr, k.family),
            u16::from_be(k.port),
        )
    });
    let all_reals: Vec<(u32, RealInfo)> = reals
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.ok().map(|r| (i as u32, r)))
        .filter(|(_, r)| r.flags & REAL_F_PRESENT != 0)
        .collect();

    let mut out = String::new();
    writeln!(out, "xlb data plane, maps pinned at {}", dir.display())?;
    writeln!(out, "Prot LocalAddress:Port Scheduler Flags")?;
    writeln!(
        out,
        "{:<LEFT$}{:>9} {:>9} {:>9}",
        "  -> RemoteAddress:Port           Forward Weight", "Conns", "InPkts", "InBytes"
    )?;
    for (key, info) in &svcs {
        let proto = Protocol::from_number(key.proto).map_or("?".to_string(), |p| p.to_string());
        let sched = Scheduler::from_code(info.sched).map_or("?", |s| s.name());
        let flags = if info.flags & SERVICE_F_ACTIVE == 0 {
            " inactive"
        } else {
            ""
        };
        let head = format!(
            "{proto:<4} {} {sched}{flags}",
            SocketText(addr(key.addr, key.family), u16::from_be(key.port))
        );
        let c = sum(&svc_stats.get(&info.id, 0)?);
        writeln!(
            out,
            "{head:<LEFT$}{:>9} {:>9} {:>9}",
            c.new_conns, c.packets, c.bytes
        )?;
        let mut mine: Vec<&(u32, RealInfo)> = all_reals
            .iter()
            .filter(|(_, r)| r.service_id == info.id)
            .collect();
        mine.sort_by_key(|(_, r)| (addr(r.addr, r.family), u16::from_be(r.port)));
        for (id, r) in mine {
            let fwd = Method::from_code(r.method).map_or("?", |m| m.ipvsadm_name());
            let line = format!(
                "  -> {:<28} {fwd:<7} {:<6}",
                SocketText(addr(r.addr, r.family), u16::from_be(r.port)).to_string(),
                r.weight
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
    }
    let g = sum(&global.get(&0, 0)?);
    writeln!(
        out,
        "Packets: tx {} (icmp too big {}) redirect {} pass {} (malformed {}, fragments {}) drop {} error {}",
        g.tx, g.too_big, g.redirect, g.pass, g.malformed, g.fragments, g.drop, g.error
    )?;
    Ok(out)
}
