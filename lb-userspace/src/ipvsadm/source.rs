//! Where `xlb ipvsadm` gets its state: the kernel's IPVS over netlink, or
//! the XDP data plane's pinned maps (the same maps `xlb status` reads).

use super::Listing;
use crate::config::{Method, Protocol, Scheduler, ServiceId};
use crate::ipvs::{
    Daemon, DestEntry, Ipvs, ServiceEntry, Stats, Timeouts,
    types::{fwd, svc_flags},
};
use crate::status::{open, persist_counts, sum};
use anyhow::Result;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use lb_common::{
    ConnCounts, Counters, FAMILY_V4, REAL_F_PRESENT, RealInfo, SERVICE_F_FALLBACK,
    SERVICE_F_HASH_PORT, SERVICE_F_PERSISTENT, ServiceInfo, ServiceKey, Settings, addr_ip,
    map_names,
};
use std::{net::IpAddr, path::Path};

/// IPVS's version code for 1.2.1, what ipvsadm prints for every kernel since 2.6.
const IPVS_VERSION: u32 = 0x010201;
/// The connection table size the XDP listing reports (IPVS's default).
const XDP_TAB_SIZE: u32 = 4096;

/// Whether `pin_dir` holds a running XDP data plane's maps.
fn xdp(pin_dir: &Path) -> bool {
    pin_dir.join(map_names::SERVICES).exists()
}

/// The timeouts: XDP's SETTINGS, else the kernel's IPVS's.
pub fn timeouts(pin_dir: &Path) -> Result<Timeouts> {
    if !xdp(pin_dir) {
        return Ipvs::connect()?.timeouts();
    }
    let settings: Array<MapData, Settings> = open(pin_dir, map_names::SETTINGS)?.try_into()?;
    let s = settings.get(&0, 0)?;
    Ok(Timeouts {
        tcp: s.tcp_timeout_s,
        tcp_fin: s.tcp_fin_timeout_s,
        udp: s.udp_timeout_s,
    })
}

/// The sync daemons: the kernel's IPVS's (XDP has none).
pub fn daemons(pin_dir: &Path) -> Result<Vec<Daemon>> {
    if xdp(pin_dir) {
        return Ok(Vec::new());
    }
    Ipvs::connect()?.daemons()
}

/// The XDP maps when `pin_dir` holds them, else the kernel's IPVS.
pub fn read(pin_dir: &Path) -> Result<Listing> {
    if xdp(pin_dir) {
        from_maps(pin_dir)
    } else {
        from_kernel(&mut Ipvs::connect()?)
    }
}

/// Every service with its destinations, as the kernel's IPVS has them.
pub fn from_kernel(ipvs: &mut Ipvs) -> Result<Listing> {
    let info = ipvs.info()?;
    let mut services = Vec::new();
    for s in ipvs.services()? {
        let dests = ipvs.dests(&s.id)?;
        services.push((s, dests));
    }
    Ok(Listing {
        version: info.version,
        conn_tab_size: info.conn_tab_size,
        services,
    })
}

fn netmask(mask: IpAddr) -> u32 {
    match mask {
        IpAddr::V4(m) => u32::from_ne_bytes(m.octets()),
        IpAddr::V6(m) => u128::from(m).leading_ones(),
    }
}

fn service_entry(key: &ServiceKey, info: &ServiceInfo, c: Counters) -> Option<ServiceEntry> {
    let vip = addr_ip(key.addr, key.family);
    let mut flags = 0;
    if info.flags & SERVICE_F_PERSISTENT != 0 {
        flags |= svc_flags::PERSISTENT;
    }
    if info.flags & SERVICE_F_FALLBACK != 0 {
        flags |= svc_flags::SCHED1;
    }
    if info.flags & SERVICE_F_HASH_PORT != 0 {
        flags |= svc_flags::SCHED2;
    }
    let persistent = flags & svc_flags::PERSISTENT != 0;
    Some(ServiceEntry {
        id: ServiceId::Addr {
            vip,
            port: u16::from_be(key.port),
            protocol: Protocol::from_number(key.proto)?,
        },
        scheduler: Scheduler::from_code(info.sched)
            .map_or("?", |s| s.name())
            .to_string(),
        flags,
        timeout: if persistent {
            info.persist_timeout_s
        } else {
            0
        },
        netmask: if persistent {
            netmask(addr_ip(info.persist_mask, key.family))
        } else if key.family == FAMILY_V4 {
            u32::MAX
        } else {
            128
        },
        pe_name: None,
        stats: stats(c),
    })
}

/// XDP counts packets and bytes towards the reals; replies bypass it (DR,
/// TUN) or are not counted apart, and it keeps no rates.
fn stats(c: Counters) -> Stats {
    Stats {
        conns: c.new_conns,
        inpkts: c.packets,
        inbytes: c.bytes,
        ..Stats::default()
    }
}

/// The XDP data plane's state in IPVS's terms.
pub fn from_maps(dir: &Path) -> Result<Listing> {
    let services: HashMap<MapData, ServiceKey, ServiceInfo> =
        open(dir, map_names::SERVICES)?.try_into()?;
    let reals: Array<MapData, RealInfo> = open(dir, map_names::REALS)?.try_into()?;
    let svc_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::SERVICE_STATS)?.try_into()?;
    let real_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::REAL_STATS)?.try_into()?;
    let conns: Array<MapData, ConnCounts> = open(dir, map_names::REAL_CONNS)?.try_into()?;
    let gone: Array<MapData, ConnCounts> = open(dir, map_names::REAL_CONNS_GONE)?.try_into()?;
    let svcs: Vec<(ServiceKey, ServiceInfo)> = services.iter().collect::<Result<_, _>>()?;
    let persist = persist_counts(dir, &svcs)?;
    let all_reals: Vec<(u32, RealInfo)> = reals
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.ok().map(|r| (i as u32, r)))
        .filter(|(_, r)| r.flags & REAL_F_PRESENT != 0)
        .collect();
    let mut out = Vec::new();
    for (key, info) in &svcs {
        let c = sum(&svc_stats.get(&info.id, 0)?);
        let Some(entry) = service_entry(key, info, c) else {
            continue;
        };
        let mut dests = Vec::new();
        for (id, r) in all_reals.iter().filter(|(_, r)| r.service_id == info.id) {
            let live = conns.get(id, 0)?.live(gone.get(id, 0)?);
            dests.push(DestEntry {
                addr: addr_ip(r.addr, r.family),
                port: u16::from_be(r.port),
                fwd: match Method::from_code(r.method) {
                    Some(Method::Nat) => fwd::MASQ,
                    Some(Method::Tun) => fwd::TUNNEL,
                    _ => fwd::DROUTE,
                },
                weight: r.weight,
                u_threshold: r.u_threshold,
                l_threshold: r.l_threshold,
                active: live.active as u32,
                inactive: live.inactive as u32,
                persistent: persist.get(id).copied().unwrap_or(0) as u32,
                stats: stats(sum(&real_stats.get(id, 0)?)),
                tun_type: r.tun_type,
                tun_port: u16::from_be(r.tun_port),
                tun_flags: 0,
            });
        }
        out.push((entry, dests));
    }
    Ok(Listing {
        version: IPVS_VERSION,
        conn_tab_size: XDP_TAB_SIZE,
        services: out,
    })
}
