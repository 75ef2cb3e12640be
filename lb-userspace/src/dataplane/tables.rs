//! Keeps the director's maps equal to the desired state: allocates service
//! and real ids, builds scheduler tables, and writes only what changed, in an
//! order that never lets a packet see a half-made service.
//!
//! Maglev tables are rewritten in place, slot by slot: a flow that hashes to
//! a slot being changed goes to the old or the new owner, both valid. The
//! other schedulers' state (the real list, the rr/wrr sequence, dh/sh
//! buckets) is double-buffered: the idle copy is written completely, then
//! one update of the `SERVICES` entry (atomic for readers: the hash map swaps
//! the element) flips `SERVICE_F_TABLE_B` to it.
//!
//! A real that leaves its service is freed at once, unless the nodest policy
//! is `keep`: then it stays `REAL_F_DRAINING` (its flows continue, it takes
//! no new ones) until it has no connections left, see [`Tables::release_drained`].
//!
//! The cost of an apply follows the change: a service whose reals and
//! settings are as installed is skipped after a comparison (no table is
//! built), ids come from pools instead of scans, and
//! [`Tables::apply_changed`] visits only the services the caller names.
//!
//! Every write goes through the map-store port ([`Maps`]), so all of this
//! runs on in-memory maps in the host tests (`tables/tests.rs`).

use super::{
    DesiredReal, DesiredService, NextHop,
    ids::IdPool,
    maps::{Maps, StoreError},
    mh_order::MhOrder,
    slots::Window,
};
use crate::{
    config::{Method, Protocol, Scheduler, ServiceId, Tunnel},
    fault::{self, Classify, Kind},
    maglev,
    sched::tables as sched_tables,
};
use lb_common::{
    ConnCounts, IfaceInfo, REAL_F_DRAINING, REAL_F_PRESENT, REAL_F_REACHABLE, REAL_NONE, RealConns,
    RealInfo, SERVICE_F_ACTIVE, SERVICE_F_FALLBACK, SERVICE_F_HASH_PORT, SERVICE_F_PERSISTENT,
    SERVICE_F_TABLE_B, ServiceInfo, ServiceKey, addr_ip, addr_words, family_of, sched_hash,
    sched_layout,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};
use tracing::{debug, info, warn};

#[cfg(test)]
mod tests;

/// Why the table writer failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no free {what} slot (raise {setting})")]
    Full {
        what: &'static str,
        setting: &'static str,
    },
    #[error("{0}: the XDP data plane cannot see firewall marks")]
    Fwmark(ServiceId),
    #[error("a pinned service has protocol {0}, which xlb does not forward")]
    Protocol(u8),
    #[error("mapping the Maglev slots of service id {id}")]
    Mapping {
        id: u32,
        #[source]
        source: io::Error,
    },
}

impl Classify for TableError {
    fn kind(&self) -> Kind {
        match self {
            TableError::Store(e) => e.kind(),
            TableError::Mapping { source, .. } => fault::of_io(source),
            // The config (or the maps adopted) must change first.
            TableError::Full { .. } | TableError::Fwmark(_) | TableError::Protocol(_) => {
                Kind::Fatal
            }
        }
    }
}

type Result<T, E = TableError> = std::result::Result<T, E>;

/// What the maps hold for one service.
struct Installed {
    id: u32,
    info: ServiceInfo,
    /// (address, port) → real id.
    reals: BTreeMap<(IpAddr, u16), u32>,
    /// The service's slice of `MAGLEV` as last written (real ids), kept
    /// only where the map cannot be mapped (elsewhere the map itself is the
    /// record); empty when unknown, so the next write covers every slot.
    table: Vec<u32>,
    /// The live real list and rr/wrr/dh/sh table (double-buffered).
    sched: SchedState,
    /// Reals that left the service but keep their flows (nodest `keep`):
    /// (address, port) → real id. A real that comes back gets its id again.
    draining: BTreeMap<(IpAddr, u16), u32>,
    /// The reals as kernel IPVS would list them, for the mh table.
    mh_order: MhOrder,
    /// Written by this agent from a desired state, so an equal desired
    /// state may be skipped; adopted services are rebuilt once (a new agent
    /// may build tables differently).
    written: bool,
}

/// What the live buffer of a service holds.
#[derive(Clone, Default, PartialEq, Eq)]
struct SchedState {
    list: Vec<u32>,
    table: Vec<u32>,
}

pub struct Tables {
    maps: Maps,
    table_size: u32,
    services: BTreeMap<ServiceId, Installed>,
    written_reals: BTreeMap<u32, RealInfo>,
    ifaces: BTreeSet<u32>,
    /// Tunnel sources from the config; `None` picks the kernel's source towards the reals.
    configured_sources: TunnelSources,
    written_sources: TunnelSources,
    /// How much each Maglev service's table moved (read by the metrics endpoint).
    maglev_churn: BTreeMap<ServiceId, MaglevChurn>,
    /// Nodest policy `keep`: removed reals drain instead of being freed.
    keep_draining: bool,
    /// When each draining real began draining: a flow-table walk that
    /// started earlier may have missed flows it took since.
    draining_since: BTreeMap<u32, Instant>,
    /// Service ids not in use.
    service_ids: IdPool,
    /// Real ids not owned by an installed service (ids from 1: 0 is `REAL_NONE`).
    real_ids: IdPool,
    /// Real ids from here on were never written since the maps were made
    /// (their counters, connection counts and overload flag are zero).
    pristine_reals: u32,
    /// A write failed since the last sweep: real slots may be left that no
    /// service owns.
    unswept: bool,
}

/// Disruption of a Maglev service by table rewrites: each moved slot sends
/// the flows hashing to it (new ones, and pinned ones whose real left) elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaglevChurn {
    /// Rewrites of an existing table.
    pub changes: u64,
    /// Slots whose real changed, over all rewrites.
    pub slots_moved: u64,
    /// Slots moved by the latest rewrite.
    pub last_moved: u64,
}

/// Outer source addresses of tunnels, one per outer family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSources {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// The `SERVICES` key of an address service; fwmark services have none
/// (the config refuses them with the XDP data plane).
pub fn service_key(id: &ServiceId) -> Result<ServiceKey> {
    let (vip, port, protocol) = id.addr().ok_or(TableError::Fwmark(*id))?;
    Ok(ServiceKey {
        addr: addr_words(vip),
        port: port.to_be(),
        proto: protocol.number(),
        family: family_of(vip),
    })
}

impl Tables {
    /// The record for maps made just now (empty).
    pub fn new(maps: Maps, table_size: u32, max_services: u32, max_reals: u32) -> Tables {
        Tables {
            maps,
            table_size,
            services: BTreeMap::new(),
            written_reals: BTreeMap::new(),
            ifaces: BTreeSet::new(),
            configured_sources: TunnelSources::default(),
            written_sources: TunnelSources::default(),
            maglev_churn: BTreeMap::new(),
            keep_draining: false,
            draining_since: BTreeMap::new(),
            service_ids: IdPool::new(0, max_services),
            real_ids: IdPool::new(1, max_reals),
            pristine_reals: 1,
            unswept: false,
        }
    }

    /// The maps, for the data plane's own entries (`SETTINGS`, `TX_PORTS`).
    pub fn maps_mut(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// Whether reals leaving a service keep their flows until these end
    /// (nodest policy `keep`) instead of being freed at once.
    pub fn set_keep_draining(&mut self, keep: bool) {
        self.keep_draining = keep;
    }

    /// Frees draining reals whose flows have all ended: the live count
    /// (`REAL_CONNS`) is zero, or no flow in the table names the real any
    /// more (`with_flows`, from an upkeep pass that `walk_started` after the
    /// real began draining: the LRU evicts flows without anyone uncounting
    /// them). Returns how many were freed.
    pub fn release_drained(
        &mut self,
        with_flows: &BTreeSet<u32>,
        walk_started: Instant,
    ) -> Result<usize> {
        let draining: Vec<(ServiceId, (IpAddr, u16), u32)> = self
            .services
            .iter()
            .flat_map(|(sid, s)| s.draining.iter().map(|(k, rid)| (*sid, *k, *rid)))
            .collect();
        self.draining_since
            .retain(|rid, _| draining.iter().any(|(_, _, r)| r == rid));
        let mut freed = 0;
        for (sid, k, rid) in draining {
            let live = self.live_conns(rid)?;
            let walked = self
                .draining_since
                .get(&rid)
                .is_some_and(|since| *since < walk_started);
            if live.active + live.inactive != 0 && (!walked || with_flows.contains(&rid)) {
                continue;
            }
            self.clear_real(rid)?;
            if let Some(s) = self.services.get_mut(&sid) {
                s.draining.remove(&k);
            }
            self.real_ids.give(rid);
            self.draining_since.remove(&rid);
            info!(service = %sid, real = %k.0, port = k.1, "drained real freed");
            freed += 1;
        }
        Ok(freed)
    }

    /// Per Maglev service, how many table slots moved on changes so far.
    pub fn maglev_churn(&self) -> &BTreeMap<ServiceId, MaglevChurn> {
        &self.maglev_churn
    }

    /// Rebuilds the record of what is installed from the maps a previous
    /// agent left pinned (`SERVICES`, `REALS`, `SERVICE_REALS`, `MAGLEV`), so
    /// the next apply keeps every service's id, every real's id and the
    /// scheduler state, and writes only what the config changes.
    pub fn adopt(maps: Maps, table_size: u32, max_services: u32, max_reals: u32) -> Result<Tables> {
        let mut t = Tables::new(maps, table_size, max_services, max_reals);
        let mut reals_of: BTreeMap<u32, BTreeMap<(IpAddr, u16), u32>> = BTreeMap::new();
        let mut draining_of: BTreeMap<u32, BTreeMap<(IpAddr, u16), u32>> = BTreeMap::new();
        {
            for rid in 0..max_reals {
                let info = t.maps.reals.get(&rid)?.unwrap_or_default();
                if info.flags & REAL_F_PRESENT != 0 {
                    let addr = addr_ip(info.addr, info.family);
                    let of = if info.flags & REAL_F_DRAINING != 0 {
                        &mut draining_of
                    } else {
                        &mut reals_of
                    };
                    of.entry(info.service_id)
                        .or_default()
                        .insert((addr, u16::from_be(info.port)), rid);
                    t.written_reals.insert(rid, info);
                }
            }
        }
        let services = t.maps.services.entries(256)?;
        for (key, info) in services {
            let protocol =
                Protocol::from_number(key.proto).ok_or(TableError::Protocol(key.proto))?;
            let id = ServiceId::Addr {
                vip: addr_ip(key.addr, key.family),
                port: u16::from_be(key.port),
                protocol,
            };
            let table_b = info.flags & SERVICE_F_TABLE_B != 0;
            let list = t.read_list(info.id, table_b)?;
            let table = match &t.maps.maglev_mapped {
                Some(_) => t.current_table(info.id, None)?.unwrap_or_default(),
                None => t.read_table(info.id)?,
            };
            let sched_table = if info.sched == Scheduler::Mh.code() {
                Vec::new()
            } else {
                let base = sched_layout::table_base(0, table_size, table_b) as usize;
                table[base..base + info.table_len as usize].to_vec()
            };
            let table = if t.maps.maglev_mapped.is_some() {
                Vec::new()
            } else {
                table
            };
            // IPVS's order is not pinned: take it as a fresh start would
            // leave it, the listed reals added in list order, their current
            // weights as last weights.
            let mut mh_order = MhOrder::default();
            let listed: Vec<((IpAddr, u16), u32)> = list
                .iter()
                .filter_map(|rid| t.written_reals.get(rid))
                .map(|r| ((addr_ip(r.addr, r.family), u16::from_be(r.port)), r.weight))
                .collect();
            mh_order.update(&listed);
            t.services.insert(
                id,
                Installed {
                    id: info.id,
                    info,
                    reals: reals_of.remove(&info.id).unwrap_or_default(),
                    table,
                    sched: SchedState {
                        list,
                        table: sched_table,
                    },
                    draining: draining_of.remove(&info.id).unwrap_or_default(),
                    mh_order,
                    written: false,
                },
            );
        }
        let service_ids: BTreeSet<u32> = t.services.values().map(|s| s.id).collect();
        t.service_ids = IdPool::with_used(0, max_services, &service_ids);
        // Every present real counts as taken until the first apply's sweep
        // frees those no adopted service owns.
        let real_ids: BTreeSet<u32> = t.written_reals.keys().copied().collect();
        t.real_ids = IdPool::with_used(1, max_reals, &real_ids);
        // A previous agent may have used any id.
        t.pristine_reals = max_reals;
        t.unswept = true;
        // Adopted draining reals: only walks from now on can tell they are empty.
        let now = Instant::now();
        t.draining_since = t
            .services
            .values()
            .flat_map(|s| s.draining.values().map(|&rid| (rid, now)))
            .collect();
        Ok(t)
    }

    /// How many services the maps hold.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Fixes the tunnel sources instead of following the routes to the reals.
    pub fn set_configured_sources(&mut self, sources: TunnelSources) {
        self.configured_sources = sources;
    }

    /// Makes the maps forward exactly `desired`: services not listed are
    /// removed, and of the others only those that differ from what is
    /// installed are written.
    pub fn apply(&mut self, desired: &[DesiredService]) -> Result<()> {
        let result = self.apply_all(desired);
        self.settle(result)
    }

    /// As [`Tables::apply`] when `desired` lists the services of the
    /// previous apply and only those at the indices `changed` may differ
    /// (a checker verdict, a mastership change): the others are not visited.
    pub fn apply_changed(&mut self, desired: &[DesiredService], changed: &[usize]) -> Result<()> {
        let result = (|| {
            let touched = || changed.iter().filter_map(|&i| desired.get(i));
            self.write_ifaces(touched())?;
            // A tunnel real coming or going may change the source the kernel would pick.
            if touched().any(|d| d.method == Method::Tun) {
                self.write_tunnel_sources(desired)?;
            }
            touched().try_for_each(|d| self.sync_service(d))
        })();
        self.settle(result)
    }

    fn apply_all(&mut self, desired: &[DesiredService]) -> Result<()> {
        self.write_ifaces(desired.iter())?;
        // Before any real is written, so a tunnel never starts without its source.
        self.write_tunnel_sources(desired)?;
        let wanted: BTreeSet<ServiceId> = desired.iter().map(|d| d.id).collect();
        // Removals first, so their ids are free for what is added.
        let gone: Vec<ServiceId> = self
            .services
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for id in gone {
            self.remove_service(&id)?;
        }
        desired.iter().try_for_each(|d| self.sync_service(d))
    }

    /// After an apply: a failure leaves real slots to sweep at the next
    /// apply that succeeds.
    fn settle(&mut self, result: Result<()>) -> Result<()> {
        if result.is_err() {
            self.unswept = true;
            return result;
        }
        if self.unswept {
            self.sweep_reals()?;
            self.unswept = false;
        }
        Ok(())
    }

    /// Clears real slots no service owns (left by an apply that failed half
    /// way, or by the agent a pinned data plane was adopted from).
    fn sweep_reals(&mut self) -> Result<()> {
        let owned: BTreeSet<u32> = self
            .services
            .values()
            .flat_map(|s| s.reals.values().chain(s.draining.values()).copied())
            .collect();
        let stray: Vec<u32> = self
            .written_reals
            .keys()
            .filter(|r| !owned.contains(r))
            .copied()
            .collect();
        for rid in stray {
            self.clear_real(rid)?;
            self.real_ids.give(rid);
        }
        Ok(())
    }

    fn write_ifaces<'a>(
        &mut self,
        desired: impl Iterator<Item = &'a DesiredService>,
    ) -> Result<()> {
        let hops: BTreeMap<u32, NextHop> = desired
            .flat_map(|d| d.reals.iter().filter_map(|r| r.next_hop))
            .map(|h| (h.ifindex, h))
            .collect();
        for (ifindex, hop) in &hops {
            let info = IfaceInfo {
                mac: hop.src_mac,
                mtu: hop.mtu,
            };
            self.maps.ifaces.put(ifindex, &info)?;
        }
        for ifindex in hops.keys() {
            if !self.ifaces.contains(ifindex) {
                self.maps.tx_ports.add(*ifindex)?;
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
    fn write_tunnel_sources(&mut self, desired: &[DesiredService]) -> Result<()> {
        let routed = |v6: bool| {
            desired
                .iter()
                .filter(|d| d.method == Method::Tun)
                .flat_map(|d| d.reals.iter())
                .filter(|r| r.address.is_ipv6() == v6)
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
        let mut settings = self.maps.settings.get(&0)?.unwrap_or_default();
        settings.tun_src_v4 = sources.v4.map_or([0; 4], |a| addr_words(a.into()));
        settings.tun_src_v6 = sources.v6.map_or([0; 4], |a| addr_words(a.into()));
        self.maps.settings.put(&0, &settings)?;
        let none = || "none".to_string();
        info!(
            v4 = %sources.v4.map_or_else(none, |a| a.to_string()),
            v6 = %sources.v6.map_or_else(none, |a| a.to_string()),
            "tunnel sources"
        );
        let tunnels = |v6: bool| {
            desired.iter().any(|d| {
                d.method == Method::Tun && d.reals.iter().any(|r| r.address.is_ipv6() == v6)
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

    /// Whether the maps hold `d` as it is: same reals with the same ids,
    /// order and entries, and the same service entry. Costs a comparison
    /// per real; what the tables hold follows from these.
    fn unchanged(&self, d: &DesiredService) -> bool {
        let Some(inst) = self.services.get(&d.id) else {
            return false;
        };
        let table_b = inst.info.flags & SERVICE_F_TABLE_B != 0;
        inst.written
            && (self.maps.maglev_mapped.is_some() || inst.table.len() == self.table_size as usize)
            && inst.reals.len() == d.reals.len()
            && inst.sched.list.len() == d.reals.len()
            && d.reals.iter().zip(&inst.sched.list).all(|(r, &rid)| {
                inst.reals.get(&(r.address, r.port)) == Some(&rid)
                    && self.written_reals.get(&rid) == Some(&real_info(r, inst.id, d))
            })
            && service_info(d, inst.id, table_b, &inst.sched) == inst.info
    }

    /// Writes `d` unless the maps hold it already. On failure the ids it
    /// took are free again and its table is rewritten in full next time
    /// (some slots may hold what was being written).
    fn sync_service(&mut self, d: &DesiredService) -> Result<()> {
        if self.unchanged(d) {
            return Ok(());
        }
        let existing = self.services.get(&d.id).map(|i| i.id);
        let id = match existing {
            Some(id) => id,
            None => self.service_ids.take().ok_or(TableError::Full {
                what: "service",
                setting: "max_services",
            })?,
        };
        let mut taken = Vec::new();
        let result = self.upsert_service(d, id, &mut taken);
        if result.is_err() {
            for rid in taken {
                self.real_ids.give(rid);
            }
            match self.services.get_mut(&d.id) {
                Some(s) => {
                    s.table.clear();
                    s.written = false;
                }
                None => self.service_ids.give(id),
            }
        }
        result
    }

    /// Writes service `d` as service id `id`; real ids it allocates are
    /// pushed on `taken`.
    fn upsert_service(&mut self, d: &DesiredService, id: u32, taken: &mut Vec<u32>) -> Result<()> {
        let key = service_key(&d.id)?;
        // The record of what is installed is replaced only once every write succeeded.
        let existing = self.services.get(&d.id);
        let is_new = existing.is_none();
        let old_info = existing.map(|i| i.info);
        let mut old_reals = existing.map(|i| i.reals.clone()).unwrap_or_default();
        let mut draining = existing.map(|i| i.draining.clone()).unwrap_or_default();
        let old_table = self.current_table(id, existing)?;
        let existing_sched = existing.map(|i| i.sched.clone());
        let mut mh_order = existing.map(|i| i.mh_order.clone()).unwrap_or_default();
        let desired_weights: Vec<((IpAddr, u16), u32)> = d
            .reals
            .iter()
            .map(|r| ((r.address, r.port), r.effective_weight))
            .collect();
        mh_order.update(&desired_weights);
        if is_new {
            self.maps.service_stats.zero(id)?;
        }

        // 1. Reals: keep ids of reals that stay, allocate new ones.
        let mut reals: BTreeMap<(IpAddr, u16), u32> = BTreeMap::new();
        let (mut overloads, mut infos) = (Vec::new(), Vec::new());
        for r in &d.reals {
            let k = (r.address, r.port);
            // A draining real that comes back keeps its id, flows and counts.
            let (rid, pristine) = match old_reals.remove(&k).or_else(|| draining.remove(&k)) {
                Some(rid) => (rid, false),
                None => {
                    let rid = self.real_ids.take().ok_or(TableError::Full {
                        what: "real server",
                        setting: "max_reals",
                    })?;
                    taken.push(rid);
                    // An id never written since the maps were made holds zeros.
                    let pristine = rid >= self.pristine_reals;
                    self.pristine_reals = self.pristine_reals.max(rid + 1);
                    if !pristine {
                        self.maps.real_stats.zero(rid)?;
                        self.zero_conns(rid)?;
                    }
                    (rid, pristine)
                }
            };
            reals.insert(k, rid);
            let info = real_info(r, id, d);
            let before = self.written_reals.get(&rid);
            if !pristine
                && before.is_none_or(|b| {
                    (b.u_threshold, b.l_threshold) != (info.u_threshold, info.l_threshold)
                })
            {
                // New thresholds start from "not overloaded", as IPVS clears the flag on edit.
                overloads.push((rid, 0));
            }
            if before != Some(&info) {
                infos.push((rid, info));
            }
        }
        self.maps.real_overload.put_all(&overloads)?;
        self.maps.reals.put_all(&infos)?;
        self.written_reals.extend(infos);

        // 2. Scheduler state: the real list and the scheduler's table.
        let list: Vec<u32> = d
            .reals
            .iter()
            .map(|r| reals[&(r.address, r.port)])
            .collect();
        let was_b = old_info.is_some_and(|i| i.flags & SERVICE_F_TABLE_B != 0);
        let old_sched = existing_sched.unwrap_or_default();
        let (table, sched, table_b) = if d.scheduler == Scheduler::Mh {
            let table = self.maglev_table(d, key.family, &reals, &mh_order);
            if let Some(old) = old_table.as_ref().filter(|_| !is_new)
                && *old != table
            {
                let moved = old.iter().zip(&table).filter(|(a, b)| a != b).count() as u64;
                let churn = self.maglev_churn.entry(d.id).or_default();
                churn.changes += 1;
                churn.slots_moved += moved;
                churn.last_moved = moved;
                debug!(service = %d.id, moved, of = table.len(), "Maglev table entries moved");
            }
            self.write_table(id, old_table.as_deref(), &table)?;
            let sched = SchedState {
                list,
                table: Vec::new(),
            };
            let table_b = if sched.list != old_sched.list {
                self.write_list(id, !was_b, &sched.list)?;
                !was_b
            } else {
                was_b
            };
            (table, sched, table_b)
        } else {
            let sched = SchedState {
                table: sched_table(d, &reals),
                list,
            };
            if sched != old_sched || is_new {
                // Fill the idle buffer completely before the flip below.
                let idle = !was_b;
                self.write_list(id, idle, &sched.list)?;
                let mut image = old_table
                    .clone()
                    .unwrap_or_else(|| vec![REAL_NONE; self.table_size as usize]);
                let base = sched_layout::table_base(0, self.table_size, idle) as usize;
                let half = (self.table_size / 2) as usize;
                for (i, slot) in image[base..base + half].iter_mut().enumerate() {
                    *slot = sched.table.get(i).copied().unwrap_or(REAL_NONE);
                }
                self.write_table(id, old_table.as_deref(), &image)?;
                (image, sched, idle)
            } else {
                (old_table.unwrap_or_default(), sched, was_b)
            }
        };

        // 3. The service entry last: a new service becomes visible complete.
        let info = service_info(d, id, table_b, &sched);
        if old_info != Some(info) {
            self.maps.services.put(&key, &info)?;
        }
        if matches!(d.scheduler, Scheduler::Rr | Scheduler::Wrr)
            && (is_new || sched.table != old_sched.table)
        {
            // A new sequence starts from its beginning, as IPVS restarts wrr.
            self.maps.sched_cursors.put(&id, &0)?;
        }

        // 4. Reals no longer listed: nothing in the table points at them now.
        let mut freed = Vec::new();
        for (k, rid) in old_reals {
            if self.keep_draining {
                self.drain_real(rid)?;
                draining.insert(k, rid);
                self.draining_since.insert(rid, Instant::now());
                info!(service = %d.id, real = %k.0, port = k.1, "real draining: its flows continue");
            } else {
                self.clear_real(rid)?;
                freed.push(rid);
            }
        }
        for rid in freed {
            self.real_ids.give(rid);
        }
        self.services.insert(
            d.id,
            Installed {
                id,
                info,
                reals,
                table: if self.maps.maglev_mapped.is_some() {
                    Vec::new()
                } else {
                    table
                },
                sched,
                draining,
                mh_order,
                written: true,
            },
        );
        Ok(())
    }

    /// IPVS's mh table over the reachable reals, in IPVS's list order with
    /// their last weights; addresses fold in the service's `family`.
    fn maglev_table(
        &self,
        d: &DesiredService,
        family: u8,
        reals: &BTreeMap<(IpAddr, u16), u32>,
        order: &MhOrder,
    ) -> Vec<u32> {
        let reachable: BTreeSet<(IpAddr, u16)> = d
            .reals
            .iter()
            .filter(|r| r.next_hop.is_some())
            .map(|r| (r.address, r.port))
            .collect();
        let (ids, backends): (Vec<u32>, Vec<maglev::Backend>) = order
            .dests()
            .iter()
            .filter(|(k, _)| reachable.contains(k))
            .map(|&(k, weight)| {
                let backend = maglev::Backend {
                    fold: sched_hash::fold(family, &addr_words(k.0)),
                    port: k.1,
                    weight,
                };
                (reals[&k], backend)
            })
            .unzip();
        match maglev::build(&backends, self.table_size) {
            Some(t) => t.into_iter().map(|i| ids[i as usize]).collect(),
            None => vec![REAL_NONE; self.table_size as usize],
        }
    }

    /// Writes a real list, ended by `REAL_NONE`, into one buffer of the service.
    fn write_list(&mut self, id: u32, table_b: bool, list: &[u32]) -> Result<()> {
        let base = sched_layout::reals_base(id, table_b);
        let entries: Vec<(u32, u32)> = (base..)
            .zip(list.iter().copied().chain([REAL_NONE]))
            .take(sched_layout::MAX_REALS_PER_SERVICE as usize)
            .collect();
        Ok(self.maps.service_reals.put_all(&entries)?)
    }

    /// Service `id`'s slots as the maps hold them: read through the
    /// mapping, or the record `existing` keeps, or (the record dropped
    /// after a failed write) read through the store; `None` for a new service.
    fn current_table(&self, id: u32, existing: Option<&Installed>) -> Result<Option<Vec<u32>>> {
        if self.maps.maglev_mapped.is_some() {
            return Ok(Some(self.window(id)?.read()));
        }
        match existing {
            Some(i) if i.table.len() == self.table_size as usize => Ok(Some(i.table.clone())),
            // Not a blank guess: the live buffer of a double-buffered
            // service is rewritten from this before its flip.
            Some(_) => self.read_table(id).map(Some),
            None => Ok(None),
        }
    }

    /// Service `id`'s slots mapped (only with `Maps::maglev_mapped`).
    fn window(&self, id: u32) -> Result<Window> {
        let unmapped = || io::Error::new(io::ErrorKind::Unsupported, "MAGLEV is not mapped");
        self.maps
            .maglev_mapped
            .as_ref()
            .ok_or_else(unmapped)
            .and_then(|m| m.window(id * self.table_size, self.table_size))
            .map_err(|source| TableError::Mapping { id, source })
    }

    /// Writes the slots of `new` that differ from what the maps hold: in
    /// place through the mapping, or else those differing from `old` (all
    /// when `None`) in one batch when the kernel can.
    fn write_table(&mut self, id: u32, old: Option<&[u32]>, new: &[u32]) -> Result<()> {
        if self.maps.maglev_mapped.is_some() {
            self.window(id)?.write(new);
            return Ok(());
        }
        let old = old.unwrap_or_default();
        let base = id * self.table_size;
        let slots: Vec<(u32, u32)> = new
            .iter()
            .enumerate()
            .filter(|&(slot, rid)| old.get(slot) != Some(rid))
            .map(|(slot, &rid)| (base + slot as u32, rid))
            .collect();
        Ok(self.maps.maglev.put_all(&slots)?)
    }

    /// Marks a real draining: existing flows still find it, new ones never.
    fn drain_real(&mut self, rid: u32) -> Result<()> {
        let Some(mut info) = self.written_reals.get(&rid).copied() else {
            return Ok(());
        };
        info.flags |= REAL_F_DRAINING;
        self.maps.reals.put(&rid, &info)?;
        self.written_reals.insert(rid, info);
        Ok(())
    }

    fn clear_real(&mut self, rid: u32) -> Result<()> {
        self.maps.reals.put(&rid, &RealInfo::default())?;
        self.written_reals.remove(&rid);
        Ok(())
    }

    fn remove_service(&mut self, id: &ServiceId) -> Result<()> {
        if !self.services.contains_key(id) {
            return Ok(());
        }
        // The entry first, and forgotten only once it is gone: an entry
        // left behind would forward with whatever takes its id next.
        self.maps.services.delete(&service_key(id)?)?;
        let inst = self.services.remove(id).expect("checked above");
        // Free from here on: a write failing below leaves stray slots to the sweep.
        self.service_ids.give(inst.id);
        for rid in inst.reals.values().chain(inst.draining.values()) {
            self.real_ids.give(*rid);
        }
        let old = (inst.table.len() == self.table_size as usize).then_some(&*inst.table);
        self.write_table(inst.id, old, &vec![REAL_NONE; self.table_size as usize])?;
        for buffer in [false, true] {
            self.write_list(inst.id, buffer, &[])?;
        }
        for rid in inst.reals.into_values().chain(inst.draining.into_values()) {
            self.clear_real(rid)?;
        }
        Ok(())
    }
}

/// The rr/wrr sequence or dh/sh buckets as real ids, over the reals that
/// are reachable (IPVS's list holds the reals keepalived has added); empty
/// for schedulers without a table.
fn sched_table(d: &DesiredService, ids: &BTreeMap<(IpAddr, u16), u32>) -> Vec<u32> {
    let up: Vec<(u32, u32)> = d
        .reals
        .iter()
        .filter(|r| r.next_hop.is_some())
        .map(|r| (ids[&(r.address, r.port)], r.effective_weight))
        .collect();
    let weights: Vec<u32> = up.iter().map(|&(_, w)| w).collect();
    let by_position = |i: usize| up[i].0;
    match d.scheduler {
        Scheduler::Wrr => sched_tables::wrr_sequence(&weights)
            .into_iter()
            .map(by_position)
            .collect(),
        Scheduler::Rr => sched_tables::rr_sequence(&weights)
            .into_iter()
            .map(by_position)
            .collect(),
        Scheduler::Sh => sched_tables::sh_buckets(&weights)
            .into_iter()
            .map(|b| b.map_or(REAL_NONE, by_position))
            .collect(),
        Scheduler::Dh => sched_tables::dh_buckets(up.len())
            .into_iter()
            .map(|b| b.map_or(REAL_NONE, by_position))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `SERVICES` value: flags, scheduler, persistence and the live buffer.
fn service_info(s: &DesiredService, id: u32, table_b: bool, sched: &SchedState) -> ServiceInfo {
    let mut flags = 0;
    for (on, bit) in [
        (s.active, SERVICE_F_ACTIVE),
        (s.flags.hash_port, SERVICE_F_HASH_PORT),
        (s.flags.fallback, SERVICE_F_FALLBACK),
        (s.persistence.is_some(), SERVICE_F_PERSISTENT),
        (table_b, SERVICE_F_TABLE_B),
    ] {
        if on {
            flags |= bit;
        }
    }
    ServiceInfo {
        id,
        flags,
        sched: s.scheduler.code(),
        method: s.method.code(),
        table_len: sched.table.len() as u32,
        persist_timeout_s: s.persistence.map_or(0, |p| p.timeout_s),
        persist_mask: s.persistence.map_or([0; 4], |p| addr_words(p.mask)),
        ..ServiceInfo::default()
    }
}

fn real_info(real: &DesiredReal, service_id: u32, d: &DesiredService) -> RealInfo {
    let hop = real.next_hop;
    let tunnel = d.tunnel.unwrap_or(Tunnel::Ipip);
    RealInfo {
        addr: addr_words(real.address),
        port: real.port.to_be(),
        family: family_of(real.address),
        method: d.method.code(),
        tun_type: tunnel.code(),
        tun_port: tunnel.port_be(),
        mac: hop.map_or([0; 6], |h| h.mac),
        src_mac: hop.map_or([0; 6], |h| h.src_mac),
        mtu: hop.map_or(0, |h| h.mtu),
        ifindex: hop.map_or(0, |h| h.ifindex),
        weight: real.effective_weight,
        service_id,
        // An unreachable real stays listed (for status) but takes no packets.
        flags: REAL_F_PRESENT | if hop.is_some() { REAL_F_REACHABLE } else { 0 },
        u_threshold: real.u_threshold,
        l_threshold: real.l_threshold,
        ..RealInfo::default()
    }
}

impl Tables {
    /// Connections the real has now (counted minus gone).
    fn live_conns(&self, rid: u32) -> Result<ConnCounts> {
        Ok(self.maps.real_conns.get(&rid)?.unwrap_or_default().live)
    }

    /// Makes the connection count of a newly allocated real id zero. (A flow
    /// still naming the id from a real freed under nodest `expire` or
    /// `reschedule` uncounts it when it ends: the maps cannot tell owners apart.)
    fn zero_conns(&mut self, rid: u32) -> Result<()> {
        // `left` only grows: the reclaimer reads its change over a walk.
        let left = self.maps.real_conns.get(&rid)?.unwrap_or_default().left;
        let conns = RealConns {
            live: ConnCounts::default(),
            left,
        };
        Ok(self.maps.real_conns.put(&rid, &conns)?)
    }

    /// One buffer of a service's real list, up to its `REAL_NONE`.
    fn read_list(&self, id: u32, table_b: bool) -> Result<Vec<u32>> {
        let base = sched_layout::reals_base(id, table_b);
        let mut list = Vec::new();
        for i in 0..sched_layout::MAX_REALS_PER_SERVICE {
            match self
                .maps
                .service_reals
                .get(&(base + i))?
                .unwrap_or(REAL_NONE)
            {
                REAL_NONE => break,
                rid => list.push(rid),
            }
        }
        Ok(list)
    }

    /// A service's slice of `MAGLEV`, read through the store.
    fn read_table(&self, id: u32) -> Result<Vec<u32>> {
        let base = id * self.table_size;
        (base..base + self.table_size)
            .map(|slot| Ok(self.maps.maglev.get(&slot)?.unwrap_or_default()))
            .collect()
    }
}
