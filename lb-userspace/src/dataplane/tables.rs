//! Keeps the director's maps equal to the desired state: allocates service
//! and real ids, builds Maglev tables, and writes only what changed, in an
//! order that never lets a packet see a half-made service.

use super::{DesiredService, NextHop};
use crate::{
    config::{Method, Real, ServiceId, Tunnel},
    maglev,
};
use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues, xdp::DevMapHash},
    util::nr_cpus,
};
use lb_common::{
    ConnCounts, Counters, IfaceInfo, REAL_F_PRESENT, REAL_F_REACHABLE, REAL_NONE, RealInfo,
    SERVICE_F_ACTIVE, ServiceInfo, ServiceKey, Settings, map_names,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};
use tracing::{info, warn};

/// What the maps hold for one service.
struct Installed {
    id: u32,
    info: ServiceInfo,
    /// (address, port) → real id.
    reals: BTreeMap<(IpAddr, u16), u32>,
    /// The service's Maglev table as last written (real ids).
    table: Vec<u32>,
}

pub struct Tables {
    table_size: u32,
    max_services: u32,
    max_reals: u32,
    services: BTreeMap<ServiceId, Installed>,
    written_reals: BTreeMap<u32, RealInfo>,
    ifaces: BTreeSet<u32>,
    /// Tunnel sources from the config; `None` picks the kernel's source towards the reals.
    configured_sources: TunnelSources,
    written_sources: TunnelSources,
}

/// Outer source addresses of tunnels, one per outer family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSources {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

pub fn addr_words(a: IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            std::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

pub fn service_key(id: &ServiceId) -> ServiceKey {
    ServiceKey {
        addr: addr_words(id.vip),
        port: id.port.to_be(),
        proto: id.protocol.number(),
        family: if id.vip.is_ipv4() {
            lb_common::FAMILY_V4
        } else {
            lb_common::FAMILY_V6
        },
    }
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("map {name} missing from the object"))
}

impl Tables {
    pub fn new(table_size: u32, max_services: u32, max_reals: u32) -> Tables {
        Tables {
            table_size,
            max_services,
            max_reals,
            services: BTreeMap::new(),
            written_reals: BTreeMap::new(),
            ifaces: BTreeSet::new(),
            configured_sources: TunnelSources::default(),
            written_sources: TunnelSources::default(),
        }
    }

    /// Fixes the tunnel sources instead of following the routes to the reals.
    pub fn set_configured_sources(&mut self, sources: TunnelSources) {
        self.configured_sources = sources;
    }

    pub fn apply(&mut self, ebpf: &mut Ebpf, desired: &[DesiredService]) -> Result<()> {
        self.write_ifaces(ebpf, desired)?;
        // Before any real is written, so a tunnel never starts without its source.
        self.write_tunnel_sources(ebpf, desired)?;
        let wanted: BTreeSet<ServiceId> = desired.iter().map(|d| d.service.id).collect();
        // Removals first, so their ids are free for what is added.
        let gone: Vec<ServiceId> = self
            .services
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for id in gone {
            self.remove_service(ebpf, &id)?;
        }
        let result = desired
            .iter()
            .try_for_each(|d| self.upsert_service(ebpf, d));
        if result.is_err() {
            // Some slots may hold what was being written: forget what the
            // tables are believed to hold, so the next apply rewrites them all.
            for s in self.services.values_mut() {
                s.table.clear();
            }
        }
        result.and_then(|()| self.sweep_reals(ebpf))
    }

    /// Clears real slots no service owns (left by an apply that failed half way).
    fn sweep_reals(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        let owned = self.owned_real_ids();
        let stray: Vec<u32> = self
            .written_reals
            .keys()
            .filter(|r| !owned.contains(r))
            .copied()
            .collect();
        for rid in stray {
            self.clear_real(ebpf, rid)?;
        }
        Ok(())
    }

    fn write_ifaces(&mut self, ebpf: &mut Ebpf, desired: &[DesiredService]) -> Result<()> {
        let hops: BTreeMap<u32, NextHop> = desired
            .iter()
            .flat_map(|d| d.reals.iter().filter_map(|r| r.next_hop))
            .map(|h| (h.ifindex, h))
            .collect();
        {
            let mut ifaces: HashMap<_, u32, IfaceInfo> =
                HashMap::try_from(map(ebpf, map_names::IFACES)?)?;
            for (ifindex, hop) in &hops {
                ifaces.insert(
                    ifindex,
                    IfaceInfo {
                        mac: hop.src_mac,
                        mtu: hop.mtu,
                    },
                    0,
                )?;
            }
        }
        let mut ports: DevMapHash<_> = DevMapHash::try_from(map(ebpf, map_names::TX_PORTS)?)?;
        for ifindex in hops.keys() {
            if !self.ifaces.contains(ifindex) {
                ports
                    .insert(*ifindex, *ifindex, None, 0)
                    .with_context(|| format!("adding ifindex {ifindex} to TX_PORTS"))?;
            }
        }
        // Interfaces no longer used by any real stay in IFACES/TX_PORTS: harmless, and a
        // flow in flight may still need them until its real is rewritten.
        self.ifaces.extend(hops.keys());
        Ok(())
    }

    /// Writes the tunnel sources into `SETTINGS`, leaving its other fields
    /// as they are. Unconfigured, a family's source is the one the kernel
    /// picks towards the first reachable tunnel real of that family (the
    /// route's preferred source), as IPVS's tunnels get it from the route.
    fn write_tunnel_sources(&mut self, ebpf: &mut Ebpf, desired: &[DesiredService]) -> Result<()> {
        let routed = |v6: bool| {
            desired
                .iter()
                .filter(|d| d.service.method == Method::Tun)
                .flat_map(|d| d.reals.iter())
                .filter(|r| r.real.address.is_ipv6() == v6)
                .find_map(|r| r.next_hop.and_then(|h| h.source))
        };
        let sources = TunnelSources {
            v4: self.configured_sources.v4.or_else(|| match routed(false) {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            }),
            v6: self.configured_sources.v6.or_else(|| match routed(true) {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            }),
        };
        if sources == self.written_sources {
            return Ok(());
        }
        let mut m: Array<_, Settings> = Array::try_from(map(ebpf, map_names::SETTINGS)?)?;
        let mut settings = m.get(&0, 0)?;
        settings.tun_src_v4 = sources.v4.map_or([0; 4], |a| addr_words(a.into()));
        settings.tun_src_v6 = sources.v6.map_or([0; 4], |a| addr_words(a.into()));
        m.set(0, settings, 0)?;
        info!(v4 = ?sources.v4, v6 = ?sources.v6, "tunnel sources");
        let tunnels = |v6: bool| {
            desired.iter().any(|d| {
                d.service.method == Method::Tun
                    && d.reals.iter().any(|r| r.real.address.is_ipv6() == v6)
            })
        };
        if sources.v4.is_none() && tunnels(false) {
            warn!(
                "no IPv4 tunnel source (set `tunnel_source_v4`): IPv4 tunnels fail until one is known"
            );
        }
        if sources.v6.is_none() && tunnels(true) {
            warn!(
                "no IPv6 tunnel source (set `tunnel_source_v6`): IPv6 tunnels fail until one is known"
            );
        }
        self.written_sources = sources;
        Ok(())
    }

    fn free_service_id(&self) -> Result<u32> {
        let used: BTreeSet<u32> = self.services.values().map(|s| s.id).collect();
        (0..self.max_services)
            .find(|i| !used.contains(i))
            .context("no free service slot (raise max_services)")
    }

    /// Real ids that belong to an installed service.
    fn owned_real_ids(&self) -> BTreeSet<u32> {
        self.services
            .values()
            .flat_map(|s| s.reals.values().copied())
            .collect()
    }

    fn free_real_id(&self, taken: &BTreeSet<u32>) -> Result<u32> {
        let owned = self.owned_real_ids();
        (1..self.max_reals)
            .find(|i| !owned.contains(i) && !taken.contains(i))
            .context("no free real server slot (raise max_reals)")
    }

    fn upsert_service(&mut self, ebpf: &mut Ebpf, d: &DesiredService) -> Result<()> {
        let key = service_key(&d.service.id);
        // The record of what is installed is replaced only once every write succeeded.
        let existing = self.services.get(&d.service.id);
        let is_new = existing.is_none();
        let id = match existing {
            Some(i) => i.id,
            None => self.free_service_id()?,
        };
        let old_info = existing.map(|i| i.info);
        let mut old_reals = existing.map(|i| i.reals.clone()).unwrap_or_default();
        let old_table = existing.map(|i| i.table.clone()).unwrap_or_default();
        if is_new {
            reset_counters(ebpf, map_names::SERVICE_STATS, id)?;
        }

        // 1. Reals: keep ids of reals that stay, allocate new ones.
        let mut reals: BTreeMap<(IpAddr, u16), u32> = BTreeMap::new();
        let mut taken = BTreeSet::new();
        for r in &d.reals {
            let k = (r.real.address, r.real.port);
            let rid = match old_reals.remove(&k) {
                Some(rid) => rid,
                None => {
                    let rid = self.free_real_id(&taken)?;
                    reset_counters(ebpf, map_names::REAL_STATS, rid)?;
                    zero_conns(ebpf, rid)?;
                    rid
                }
            };
            taken.insert(rid);
            reals.insert(k, rid);
            let info = real_info(&r.real, r.next_hop, id, d);
            if self.written_reals.get(&rid) != Some(&info) {
                let mut m: Array<_, RealInfo> = Array::try_from(map(ebpf, map_names::REALS)?)?;
                m.set(rid, info, 0)?;
                self.written_reals.insert(rid, info);
            }
        }

        // 2. The Maglev table over reals that are reachable and have weight.
        let names: Vec<(u32, Vec<u8>, u32)> = d
            .reals
            .iter()
            .filter(|r| r.next_hop.is_some())
            .map(|r| {
                let rid = reals[&(r.real.address, r.real.port)];
                (
                    rid,
                    format!("{}:{}", r.real.address, r.real.port).into_bytes(),
                    r.real.weight,
                )
            })
            .collect();
        let backends: Vec<maglev::Backend> = names
            .iter()
            .map(|(_, k, w)| maglev::Backend { key: k, weight: *w })
            .collect();
        let table: Vec<u32> = match maglev::build(&backends, self.table_size) {
            Some(t) => t.into_iter().map(|i| names[i as usize].0).collect(),
            None => vec![REAL_NONE; self.table_size as usize],
        };
        self.write_table(ebpf, id, &old_table, &table)?;

        // 3. The service entry last: a new service becomes visible complete.
        let info = ServiceInfo {
            id,
            flags: if d.service.active {
                SERVICE_F_ACTIVE
            } else {
                0
            },
            sched: d.service.scheduler.code(),
            method: d.service.method.code(),
            ..ServiceInfo::default()
        };
        if old_info != Some(info) {
            let mut m: HashMap<_, ServiceKey, ServiceInfo> =
                HashMap::try_from(map(ebpf, map_names::SERVICES)?)?;
            m.insert(key, info, 0)?;
        }

        // 4. Reals no longer listed: nothing in the table points at them now.
        for rid in old_reals.into_values() {
            self.clear_real(ebpf, rid)?;
        }
        self.services.insert(
            d.service.id,
            Installed {
                id,
                info,
                reals,
                table,
            },
        );
        Ok(())
    }

    fn write_table(&self, ebpf: &mut Ebpf, id: u32, old: &[u32], new: &[u32]) -> Result<()> {
        let mut m: Array<_, u32> = Array::try_from(map(ebpf, map_names::MAGLEV)?)?;
        let base = id * self.table_size;
        for (slot, &rid) in new.iter().enumerate() {
            if old.get(slot) != Some(&rid) {
                m.set(base + slot as u32, rid, 0)?;
            }
        }
        Ok(())
    }

    fn clear_real(&mut self, ebpf: &mut Ebpf, rid: u32) -> Result<()> {
        let mut m: Array<_, RealInfo> = Array::try_from(map(ebpf, map_names::REALS)?)?;
        m.set(rid, RealInfo::default(), 0)?;
        self.written_reals.remove(&rid);
        Ok(())
    }

    fn remove_service(&mut self, ebpf: &mut Ebpf, id: &ServiceId) -> Result<()> {
        let Some(inst) = self.services.remove(id) else {
            return Ok(());
        };
        {
            let mut m: HashMap<_, ServiceKey, ServiceInfo> =
                HashMap::try_from(map(ebpf, map_names::SERVICES)?)?;
            m.remove(&service_key(id))?;
        }
        self.write_table(
            ebpf,
            inst.id,
            &inst.table,
            &vec![REAL_NONE; self.table_size as usize],
        )?;
        for rid in inst.reals.into_values() {
            self.clear_real(ebpf, rid)?;
        }
        Ok(())
    }
}

fn real_info(real: &Real, hop: Option<NextHop>, service_id: u32, d: &DesiredService) -> RealInfo {
    let tunnel = d.service.tunnel.unwrap_or(Tunnel::Ipip);
    RealInfo {
        addr: addr_words(real.address),
        port: real.port.to_be(),
        family: if real.address.is_ipv4() {
            lb_common::FAMILY_V4
        } else {
            lb_common::FAMILY_V6
        },
        method: d.service.method.code(),
        tun_type: tunnel.code(),
        tun_port: tunnel.port_be(),
        mac: hop.map_or([0; 6], |h| h.mac),
        ifindex: hop.map_or(0, |h| h.ifindex),
        weight: real.weight,
        service_id,
        // An unreachable real stays listed (for status) but takes no packets.
        flags: REAL_F_PRESENT | if hop.is_some() { REAL_F_REACHABLE } else { 0 },
        ..RealInfo::default()
    }
}

/// Makes the live connection count of a newly allocated real id zero: the
/// agent may only write the "gone" side, so it sets that to what was counted.
fn zero_conns(ebpf: &mut Ebpf, rid: u32) -> Result<()> {
    let counted = {
        let m: Array<_, ConnCounts> = Array::try_from(map(ebpf, map_names::REAL_CONNS)?)?;
        m.get(&rid, 0)?
    };
    let mut gone: Array<_, ConnCounts> = Array::try_from(map(ebpf, map_names::REAL_CONNS_GONE)?)?;
    gone.set(rid, counted, 0)?;
    Ok(())
}

fn reset_counters(ebpf: &mut Ebpf, name: &str, index: u32) -> Result<()> {
    let cpus = nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
    let mut m: PerCpuArray<&mut MapData, Counters> = PerCpuArray::try_from(map(ebpf, name)?)?;
    m.set(
        index,
        PerCpuValues::try_from(vec![Counters::default(); cpus])?,
        0,
    )?;
    Ok(())
}
