//! The director's maps the agent writes, as one struct of typed stores
//! ([`Maps`]): built from the loaded object's maps in production
//! ([`Maps::of`]) and from `store::MemMap`s in host tests. Each [`Store`]
//! knows its map's name, so every failure says which map and which
//! operation ([`StoreError`]), and whether retrying can help.

use super::{
    slots::MappedSlots,
    store::{Cursor, MapStore, PinnedMap, Redirects, Zeroing},
};
use crate::fault::{self, Classify, Kind};
use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Map, MapData},
};
use lb_common::{
    IfaceInfo, RealConns, RealInfo, ServiceInfo, ServiceKey, Settings, map_names as names,
};
use std::{
    io,
    os::fd::{AsFd, BorrowedFd},
};

/// A map operation that failed, on which map.
#[derive(Debug, thiserror::Error)]
#[error("{op} {map}")]
pub struct StoreError {
    pub map: &'static str,
    pub op: &'static str,
    #[source]
    pub source: io::Error,
}

impl Classify for StoreError {
    fn kind(&self) -> Kind {
        fault::of_io(&self.source)
    }
}

/// One map as typed entries, named for its errors.
pub struct Store<K, V> {
    name: &'static str,
    inner: Box<dyn MapStore<K, V>>,
}

impl<K: Copy, V: Copy> Store<K, V> {
    pub fn new(name: &'static str, inner: Box<dyn MapStore<K, V>>) -> Store<K, V> {
        Store { name, inner }
    }

    fn err(&self, op: &'static str) -> impl FnOnce(io::Error) -> StoreError + use<K, V> {
        let map = self.name;
        move |source| StoreError { map, op, source }
    }

    pub fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        self.inner.get(key).map_err(self.err("reading"))
    }

    pub fn put(&mut self, key: &K, value: &V) -> Result<(), StoreError> {
        self.inner.put(key, value).map_err(self.err("writing"))
    }

    pub fn delete(&mut self, key: &K) -> Result<bool, StoreError> {
        self.inner.delete(key).map_err(self.err("deleting from"))
    }

    /// Sets every `(key, value)`: in batches where the kernel can, one
    /// entry at a time where it cannot (before Linux 5.6).
    pub fn put_all(&mut self, entries: &[(K, V)]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        match self.inner.update_batch(entries) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => entries
                .iter()
                .try_for_each(|(k, v)| self.inner.put(k, v))
                .map_err(self.err("writing")),
            r => r.map_err(self.err("batch-writing")),
        }
    }

    /// Every entry, walked in batches of `batch`.
    pub fn entries(&self, batch: usize) -> Result<Vec<(K, V)>, StoreError> {
        let mut cursor = Cursor::start();
        let mut out = Vec::new();
        while !cursor.done() {
            self.inner
                .lookup_batch(&mut cursor, batch, &mut out)
                .map_err(self.err("walking"))?;
        }
        Ok(out)
    }
}

/// A per-CPU map of counters, named for its errors.
pub struct ZeroStore {
    name: &'static str,
    inner: Box<dyn Zeroing>,
}

impl ZeroStore {
    pub fn new(name: &'static str, inner: Box<dyn Zeroing>) -> ZeroStore {
        ZeroStore { name, inner }
    }

    pub fn zero(&mut self, index: u32) -> Result<(), StoreError> {
        let map = self.name;
        self.inner.zero(index).map_err(|source| StoreError {
            map,
            op: "zeroing",
            source,
        })
    }
}

/// The redirect map, named for its errors.
pub struct PortStore {
    inner: Box<dyn Redirects>,
}

impl PortStore {
    pub fn new(inner: Box<dyn Redirects>) -> PortStore {
        PortStore { inner }
    }

    pub fn add(&mut self, ifindex: u32) -> Result<(), StoreError> {
        self.inner.add(ifindex).map_err(|source| StoreError {
            map: names::TX_PORTS,
            op: "adding to",
            source,
        })
    }
}

/// Every map the agent writes (the flow and reply tables are the
/// reclaimer's, `upkeep/`).
pub struct Maps {
    pub services: Store<ServiceKey, ServiceInfo>,
    pub reals: Store<u32, RealInfo>,
    pub service_reals: Store<u32, u32>,
    pub maglev: Store<u32, u32>,
    /// `MAGLEV` mapped into the agent, the fast path for its slots; `None`
    /// for maps pinned by an agent that made them unmappable (and in
    /// tests): slots go through [`Maps::maglev`] then.
    pub maglev_mapped: Option<MappedSlots>,
    pub sched_cursors: Store<u32, u64>,
    pub real_overload: Store<u32, u32>,
    pub real_conns: Store<u32, RealConns>,
    pub service_stats: ZeroStore,
    pub real_stats: ZeroStore,
    pub ifaces: Store<u32, IfaceInfo>,
    pub tx_ports: PortStore,
    pub settings: Store<u32, Settings>,
}

impl Maps {
    /// The maps of a loaded object, each through a descriptor of its own.
    pub fn of(ebpf: &Ebpf) -> Result<Maps> {
        let maglev = data(ebpf, names::MAGLEV)?;
        let maglev_mapped = MappedSlots::of(&maglev).context("examining MAGLEV")?;
        Ok(Maps {
            services: pinned(ebpf, names::SERVICES)?,
            reals: pinned(ebpf, names::REALS)?,
            service_reals: pinned(ebpf, names::SERVICE_REALS)?,
            maglev: Store::new(names::MAGLEV, Box::new(PinnedMap::of(maglev)?)),
            maglev_mapped,
            sched_cursors: pinned(ebpf, names::SCHED_CURSORS)?,
            real_overload: pinned(ebpf, names::REAL_OVERLOAD)?,
            real_conns: pinned(ebpf, names::REAL_CONNS)?,
            service_stats: per_cpu(ebpf, names::SERVICE_STATS)?,
            real_stats: per_cpu(ebpf, names::REAL_STATS)?,
            ifaces: pinned(ebpf, names::IFACES)?,
            tx_ports: PortStore::new(Box::new(aya::maps::xdp::DevMapHash::try_from(
                Map::from_map_data(data(ebpf, names::TX_PORTS)?)?,
            )?)),
            settings: pinned(ebpf, names::SETTINGS)?,
        })
    }
}

/// The map `name` of `ebpf`, through a descriptor of its own (the object
/// keeps its handles for pinning and attaching).
fn data(ebpf: &Ebpf, name: &str) -> Result<MapData> {
    let map = ebpf
        .map(name)
        .with_context(|| format!("map {name} missing from the object"))?;
    let fd: BorrowedFd<'_> = match map {
        Map::Array(d) | Map::HashMap(d) | Map::PerCpuArray(d) | Map::DevMapHash(d) => {
            d.fd().as_fd()
        }
        _ => anyhow::bail!("map {name} is not of a type the agent writes"),
    };
    Ok(MapData::from_fd(fd.try_clone_to_owned()?)?)
}

fn pinned<K: aya::Pod, V: aya::Pod>(ebpf: &Ebpf, name: &'static str) -> Result<Store<K, V>> {
    let map = PinnedMap::of(data(ebpf, name)?).with_context(|| format!("map {name}"))?;
    Ok(Store::new(name, Box::new(map)))
}

fn per_cpu(ebpf: &Ebpf, name: &'static str) -> Result<ZeroStore> {
    let map: aya::maps::PerCpuArray<MapData, lb_common::Counters> =
        Map::from_map_data(data(ebpf, name)?)?.try_into()?;
    Ok(ZeroStore::new(name, Box::new(map)))
}
