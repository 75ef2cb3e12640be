//! [`MapStore`] in memory: entries ordered by their key's bytes (a walk
//! has a stable order), a capacity, and failures injected on demand. A
//! [`MemMap`] is a handle: clones share the entries, so a test can hold the
//! same map as the code under test and look at it or change it under it.
//! It also stands for per-CPU counters ([`Zeroing`]: one value for all
//! CPUs) and the redirect map ([`Redirects`]: ifindex → ifindex).

use super::{Cursor, MapStore, Redirects, Zeroing};
use aya::Pod;
use std::{
    collections::BTreeMap,
    io,
    marker::PhantomData,
    sync::{Arc, Mutex, MutexGuard},
};

struct Inner<V> {
    entries: BTreeMap<Vec<u8>, V>,
    capacity: u64,
    /// Batch calls (of any kind) that succeed before every later one fails.
    batches_left: Option<usize>,
    /// Every batch call so far.
    batches: usize,
    /// Writes (single or batched) that succeed before every later one
    /// fails, and with which errno.
    writes_left: Option<(usize, i32)>,
    /// Every write call so far (failed ones included).
    writes: usize,
}

/// An in-memory map of `K` → `V`.
pub struct MemMap<K, V> {
    inner: Arc<Mutex<Inner<V>>>,
    _keys: PhantomData<fn() -> K>,
}

impl<K, V> Clone for MemMap<K, V> {
    fn clone(&self) -> Self {
        MemMap {
            inner: self.inner.clone(),
            _keys: PhantomData,
        }
    }
}

fn key_bytes<K: Pod>(key: &K) -> Vec<u8> {
    // SAFETY: `Pod` types have no padding or invalid bit patterns.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(key).cast::<u8>(), size_of::<K>()) }
        .to_vec()
}

fn key_of<K: Pod>(bytes: &[u8]) -> K {
    // SAFETY: `bytes` came from `key_bytes::<K>`: exactly a `K`.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) }
}

impl<K: Pod, V: Pod> MemMap<K, V> {
    /// An empty map that holds at most `capacity` entries.
    pub fn new(capacity: u64) -> MemMap<K, V> {
        MemMap {
            inner: Arc::new(Mutex::new(Inner {
                entries: BTreeMap::new(),
                capacity,
                batches_left: None,
                batches: 0,
                writes_left: None,
                writes: 0,
            })),
            _keys: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        self.inner.lock().expect("MemMap lock")
    }

    /// Every batch call after the next `n` fails with EIO (until [`MemMap::heal`]).
    pub fn fail_batches_after(&self, n: usize) {
        self.lock().batches_left = Some(n);
    }

    /// Every write (put, delete, or a batch of either) after the next `n`
    /// fails with `errno` (until [`MemMap::heal`]); a failing batch writes nothing.
    pub fn fail_writes_after(&self, n: usize, errno: i32) {
        self.lock().writes_left = Some((n, errno));
    }

    /// Batch calls and writes succeed again.
    pub fn heal(&self) {
        let mut inner = self.lock();
        inner.batches_left = None;
        inner.writes_left = None;
    }

    /// How many write calls were made (failed ones included).
    pub fn write_calls(&self) -> usize {
        self.lock().writes
    }

    /// How many batch calls were made (failed ones included).
    pub fn batch_calls(&self) -> usize {
        self.lock().batches
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Vec<(K, V)> {
        self.lock()
            .entries
            .iter()
            .map(|(k, v)| (key_of(k), *v))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts a write call; `Err` if it is one of those set to fail.
    fn write_call(&self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.writes += 1;
        match &mut inner.writes_left {
            Some((0, errno)) => Err(io::Error::from_raw_os_error(*errno)),
            Some((n, _)) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn insert(&self, key: &K, value: &V) -> io::Result<()> {
        let mut inner = self.lock();
        let k = key_bytes(key);
        if !inner.entries.contains_key(&k) && inner.entries.len() as u64 >= inner.capacity {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
        inner.entries.insert(k, *value);
        Ok(())
    }

    /// Counts a batch call; `Err` if it is one of those set to fail.
    fn batch_call(&self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.batches += 1;
        match &mut inner.batches_left {
            Some(0) => Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl<K: Pod, V: Pod + Send> MapStore<K, V> for MemMap<K, V> {
    fn get(&self, key: &K) -> io::Result<Option<V>> {
        Ok(self.lock().entries.get(&key_bytes(key)).copied())
    }

    fn put(&mut self, key: &K, value: &V) -> io::Result<()> {
        self.write_call()?;
        self.insert(key, value)
    }

    fn delete(&mut self, key: &K) -> io::Result<bool> {
        self.write_call()?;
        Ok(self.lock().entries.remove(&key_bytes(key)).is_some())
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
        self.batch_call()?;
        let inner = self.lock();
        let from = if cursor.token.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(cursor.token.clone())
        };
        let mut last = None;
        for (k, v) in inner
            .entries
            .range((from, std::ops::Bound::Unbounded))
            .take(max)
        {
            out.push((key_of(k), *v));
            last = Some(k.clone());
        }
        match last {
            Some(k) => {
                cursor.done = inner.entries.range(k.clone()..).nth(1).is_none();
                cursor.token = k;
            }
            None => cursor.done = true,
        }
        Ok(())
    }

    fn update_batch(&mut self, entries: &[(K, V)]) -> io::Result<()> {
        self.batch_call()?;
        self.write_call()?;
        for (k, v) in entries {
            self.insert(k, v)?;
        }
        Ok(())
    }

    fn delete_batch(&mut self, keys: &[K]) -> io::Result<usize> {
        self.batch_call()?;
        self.write_call()?;
        let mut inner = self.lock();
        Ok(keys
            .iter()
            .filter(|k| inner.entries.remove(&key_bytes(*k)).is_some())
            .count())
    }

    fn capacity(&self) -> io::Result<u64> {
        Ok(self.lock().capacity)
    }
}

impl<V: Pod + Default + Send> Zeroing for MemMap<u32, V> {
    fn zero(&mut self, index: u32) -> io::Result<()> {
        self.put(&index, &V::default())
    }
}

impl Redirects for MemMap<u32, u32> {
    fn add(&mut self, ifindex: u32) -> io::Result<()> {
        self.put(&ifindex, &ifindex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_sees_every_entry_once_in_batches() {
        let mut m: MemMap<u32, u64> = MemMap::new(100);
        for k in 0..10u32 {
            m.put(&k, &u64::from(k * 10)).unwrap();
        }
        let mut cursor = Cursor::start();
        let mut seen = Vec::new();
        let mut calls = 0;
        while !cursor.done() {
            m.lookup_batch(&mut cursor, 4, &mut seen).unwrap();
            calls += 1;
        }
        assert_eq!(calls, 3);
        assert_eq!(seen.len(), 10);
        assert!(seen.iter().all(|(k, v)| *v == u64::from(*k * 10)));
        assert_eq!(m.delete_batch(&[1, 2, 99]).unwrap(), 2);
        assert_eq!(m.len(), 8);
    }

    #[test]
    fn injected_failures_hit_batches_only_and_heal() {
        let mut m: MemMap<u32, u32> = MemMap::new(2);
        m.put(&1, &1).unwrap();
        m.put(&2, &2).unwrap();
        assert!(m.put(&3, &3).is_err(), "over capacity");
        m.fail_batches_after(1);
        let mut out = Vec::new();
        m.lookup_batch(&mut Cursor::start(), 1, &mut out).unwrap();
        assert!(m.delete_batch(&[1]).is_err());
        assert_eq!(m.get(&1).unwrap(), Some(1), "single operations still work");
        m.heal();
        assert_eq!(m.delete_batch(&[1]).unwrap(), 1);
        assert_eq!(m.batch_calls(), 3);
    }
}
