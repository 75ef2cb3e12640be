//! Where `xlb ipvsadm` gets its state: the kernel's IPVS over netlink, or
//! the XDP data plane's pinned maps (the same maps `xlb status` reads).

use super::Listing;
use crate::config::{Protocol, ServiceId};
use crate::ipvs::{
    Daemon, DestEntry, Ipvs, ServiceEntry, Stats, Timeouts,
    types::{self, fwd, svc_flags},
};
use crate::snapshot::{self, Running, ServiceStatus, rates::Rates, xdp::open};
use anyhow::Result;
use aya::maps::{Array, MapData};
use lb_common::{Settings, map_names};
use std::path::Path;

/// IPVS's version code for 1.2.1, what ipvsadm prints for every kernel since 2.6.
const IPVS_VERSION: u32 = 0x010201;

/// The timeouts: XDP's SETTINGS, else the kernel's IPVS's.
pub fn timeouts(pin_dir: &Path) -> Result<Timeouts> {
    let Running::Xdp(pin_dir) = Running::find(pin_dir) else {
        return Ipvs::connect()?.timeouts();
    };
    let settings: Array<MapData, Settings> = open(&pin_dir, map_names::SETTINGS)?.try_into()?;
    let s = settings.get(&0, 0)?;
    Ok(Timeouts {
        tcp: s.tcp_timeout_s,
        tcp_fin: s.tcp_fin_timeout_s,
        udp: s.udp_timeout_s,
    })
}

/// The sync daemons: the kernel's IPVS's (XDP has none).
pub fn daemons(pin_dir: &Path) -> Result<Vec<Daemon>> {
    match Running::find(pin_dir) {
        Running::Xdp(_) => Ok(Vec::new()),
        Running::Ipvs => Ipvs::connect()?.daemons(),
    }
}

/// The XDP maps when `pin_dir` holds them, else the kernel's IPVS.
pub fn read(pin_dir: &Path) -> Result<Listing> {
    match Running::find(pin_dir) {
        Running::Xdp(dir) => from_maps(&dir),
        Running::Ipvs => from_kernel(&mut Ipvs::connect()?),
    }
}

/// Every service with its destinations, as the kernel's IPVS has them.
pub fn from_kernel(ipvs: &mut Ipvs) -> Result<Listing> {
    let info = ipvs.info()?;
    Ok(Listing {
        version: info.version,
        conn_tab_size: info.conn_tab_size,
        services: ipvs.listing()?,
    })
}

/// XDP counts packets and bytes towards the reals; replies bypass it (DR,
/// TUN) or are not counted apart. Its rates are the agent's estimates
/// (zero without an agent running).
fn stats(c: snapshot::Stats, r: Rates) -> Stats {
    Stats {
        conns: c.connections,
        inpkts: c.packets,
        inbytes: c.bytes,
        cps: r.cps,
        inpps: r.inpps,
        outpps: r.outpps,
        inbps: r.inbps,
        outbps: r.outbps,
        ..Stats::default()
    }
}

fn service_entry(s: &ServiceStatus, rates: Rates) -> Option<ServiceEntry> {
    let protocol = [Protocol::Tcp, Protocol::Udp]
        .into_iter()
        .find(|p| p.to_string() == s.protocol)?;
    let mut flags = 0;
    if s.persistence.is_some() {
        flags |= svc_flags::PERSISTENT;
    }
    if s.fallback {
        flags |= svc_flags::SCHED1;
    }
    if s.hash_port {
        flags |= svc_flags::SCHED2;
    }
    Some(ServiceEntry {
        id: ServiceId::Addr {
            vip: s.vip,
            port: s.port,
            protocol,
        },
        scheduler: s.scheduler.clone(),
        flags,
        timeout: s.persistence.map_or(0, |p| p.timeout_s),
        netmask: types::netmask(s.persistence.map(|p| p.mask), s.vip.is_ipv6()),
        pe_name: None,
        stats: stats(s.stats, rates),
    })
}

/// The XDP data plane's state in IPVS's terms, from the same snapshot of
/// the maps `xlb status` prints. Draining reals (nodest `keep`) are not
/// members, as IPVS lists no removed destination.
pub fn from_maps(dir: &Path) -> Result<Listing> {
    let detail = snapshot::Detail {
        persistent_conns: true,
        map_fill: false,
    };
    let snap = snapshot::xdp::read(dir, detail)?;
    let rates = snapshot::rates::read(dir)?;
    let mut out = Vec::new();
    for svc in &snap.services {
        let Some(entry) = service_entry(
            svc,
            rates.services.get(&svc.id).copied().unwrap_or_default(),
        ) else {
            continue;
        };
        let dests = svc
            .reals
            .iter()
            .filter(|r| !r.draining)
            .map(|r| DestEntry {
                addr: r.address,
                port: r.port,
                fwd: match r.forward.as_str() {
                    "Masq" => fwd::MASQ,
                    "Tunnel" => fwd::TUNNEL,
                    _ => fwd::DROUTE,
                },
                weight: r.weight,
                u_threshold: r.u_threshold,
                l_threshold: r.l_threshold,
                active: r.active_conns as u32,
                inactive: r.inactive_conns as u32,
                persistent: r.persistent_conns.unwrap_or(0) as u32,
                stats: stats(r.stats, rates.reals.get(&r.id).copied().unwrap_or_default()),
                tun_type: r.tun_type,
                tun_port: r.tun_port,
                tun_flags: 0,
            })
            .collect();
        out.push((entry, dests));
    }
    Ok(Listing {
        version: IPVS_VERSION,
        // The header's size: the flow table's capacity, as IPVS's is its
        // connection table's.
        conn_tab_size: MapData::from_pin(dir.join(map_names::CONNTRACK))?
            .info()?
            .max_entries(),
        services: out,
    })
}
