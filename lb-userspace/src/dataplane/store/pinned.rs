//! [`MapStore`] over a BPF map (pinned, or any map fd): single entries
//! through `BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM`, batches through
//! `dataplane::batch`. Per-CPU counters and the redirect map go through
//! aya's handles ([`Zeroing`], [`Redirects`]).

use super::{Cursor, MapStore, Redirects, Zeroing};
use crate::dataplane::batch;
use anyhow::{Context, Result};
use aya::{
    Pod,
    maps::{MapData, PerCpuArray, PerCpuValues, xdp::DevMapHash},
    util::nr_cpus,
};
use std::{
    io,
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    path::Path,
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

/// The element member of `union bpf_attr`.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// A BPF map with keys `K` and values `V`, held by its own descriptor.
pub struct PinnedMap<K, V> {
    map: MapData,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Pod, V: Pod> PinnedMap<K, V> {
    /// The map pinned at `dir`/`name`, checked to have `K`-sized keys and
    /// `V`-sized values.
    pub fn open(dir: &Path, name: &str) -> Result<PinnedMap<K, V>> {
        let path = dir.join(name);
        let map =
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        Self::of(map).with_context(|| path.display().to_string())
    }

    /// `map`, checked as [`PinnedMap::open`] checks a pinned one.
    pub fn of(map: MapData) -> Result<PinnedMap<K, V>> {
        let info = map.info()?;
        anyhow::ensure!(
            info.key_size() as usize == size_of::<K>()
                && info.value_size() as usize == size_of::<V>(),
            "{}-byte keys and {}-byte values, expected {} and {}",
            info.key_size(),
            info.value_size(),
            size_of::<K>(),
            size_of::<V>()
        );
        Ok(PinnedMap {
            map,
            _types: PhantomData,
        })
    }

    fn elem(&self, cmd: libc::c_long, key: &K, value: *const V, flags: u64) -> io::Result<bool> {
        let mut attr = ElemAttr {
            map_fd: self.map.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: std::ptr::from_ref(key) as u64,
            value: value as u64,
            flags,
        };
        // SAFETY: `key` and `value` (when not null) are valid for the map's
        // key and value sizes, checked at open; the kernel writes the value
        // only for a lookup, into the caller's `V`.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, &raw mut attr, size_of::<ElemAttr>()) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(false),
            _ => Err(e),
        }
    }
}

impl<K: Pod, V: Pod> MapStore<K, V> for PinnedMap<K, V> {
    fn get(&self, key: &K) -> io::Result<Option<V>> {
        let mut value = std::mem::MaybeUninit::<V>::zeroed();
        let found = self.elem(BPF_MAP_LOOKUP_ELEM, key, value.as_mut_ptr(), 0)?;
        // SAFETY: zeroed, then written by the kernel; any bytes are a valid `Pod`.
        Ok(found.then(|| unsafe { value.assume_init() }))
    }

    fn put(&mut self, key: &K, value: &V) -> io::Result<()> {
        if self.elem(BPF_MAP_UPDATE_ELEM, key, value, 0)? {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        }
    }

    fn delete(&mut self, key: &K) -> io::Result<bool> {
        self.elem(BPF_MAP_DELETE_ELEM, key, std::ptr::null(), 0)
    }

    fn lookup_batch(
        &self,
        cursor: &mut Cursor,
        max: usize,
        out: &mut Vec<(K, V)>,
    ) -> io::Result<()> {
        if cursor.done || max == 0 {
            return Ok(());
        }
        let start = cursor.token.is_empty();
        if start {
            // Hash maps keep a bucket number, arrays a key.
            cursor.token = vec![0; size_of::<K>().max(8)];
        }
        let mut keys = vec![K::zeroed(); max];
        let mut values = vec![V::zeroed(); max];
        let (n, done) = batch::lookup(
            self.map.fd().as_fd(),
            &mut cursor.token,
            start,
            bytes_mut(&mut keys),
            bytes_mut(&mut values),
            max,
        )?;
        out.extend(keys.into_iter().zip(values).take(n));
        cursor.done = done;
        Ok(())
    }

    fn update_batch(&mut self, entries: &[(K, V)]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // Chunks bound the kernel's copy of keys and values (a fresh
        // start writes millions of Maglev slots).
        for chunk in entries.chunks(batch::CHUNK) {
            let keys: Vec<K> = chunk.iter().map(|(k, _)| *k).collect();
            let values: Vec<V> = chunk.iter().map(|(_, v)| *v).collect();
            batch::update(
                self.map.fd().as_fd(),
                batch::bytes(&keys),
                batch::bytes(&values),
                keys.len(),
            )
            .map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    fn delete_batch(&mut self, keys: &[K]) -> io::Result<usize> {
        // The kernel stops at the first missing key: go on past each one.
        let mut deleted = 0;
        let mut rest = keys;
        while !rest.is_empty() {
            match batch::delete(self.map.fd().as_fd(), batch::bytes(rest), rest.len()) {
                Ok(()) => return Ok(deleted + rest.len()),
                Err((e, n)) if e.raw_os_error() == Some(libc::ENOENT) => {
                    deleted += n;
                    rest = &rest[n + 1..];
                }
                Err((e, _)) => return Err(e),
            }
        }
        Ok(deleted)
    }

    fn capacity(&self) -> io::Result<u64> {
        let info = self.map.info().map_err(io::Error::other)?;
        Ok(u64::from(info.max_entries()))
    }
}

impl<V: Pod + Default + Send> Zeroing for PerCpuArray<MapData, V> {
    fn zero(&mut self, index: u32) -> io::Result<()> {
        let cpus = nr_cpus().map_err(|(_, e)| e)?;
        let zeros = PerCpuValues::try_from(vec![V::default(); cpus])?;
        self.set(index, zeros, 0).map_err(errno_of)
    }
}

impl Redirects for DevMapHash<MapData> {
    fn add(&mut self, ifindex: u32) -> io::Result<()> {
        self.insert(ifindex, ifindex, None, 0).map_err(|e| match e {
            aya::maps::xdp::XdpMapError::MapError(e) => errno_of(e),
            e => io::Error::other(e),
        })
    }
}

/// aya's error as the syscall's own (its errno tells a retryable failure
/// from a fatal one), or wrapped when it is not a syscall's.
fn errno_of(e: aya::maps::MapError) -> io::Error {
    match e {
        aya::maps::MapError::SyscallError(s) => s.io_error,
        e => io::Error::other(e),
    }
}

trait Zeroed {
    fn zeroed() -> Self;
}

impl<T: Pod> Zeroed for T {
    fn zeroed() -> T {
        // SAFETY: `Pod` types are valid for any bytes, zero included.
        unsafe { std::mem::zeroed() }
    }
}

fn bytes_mut<T: Pod>(items: &mut [T]) -> &mut [u8] {
    // SAFETY: `Pod` types have no padding or invalid bit patterns.
    unsafe {
        std::slice::from_raw_parts_mut(items.as_mut_ptr().cast(), std::mem::size_of_val(items))
    }
}
