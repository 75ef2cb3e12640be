//! The map-store port under the data plane: one BPF map as typed entries
//! (get, put, delete, and walks and writes in batches), with two
//! implementations: [`PinnedMap`], a map pinned on bpffs, through the
//! `bpf(2)` syscalls; and [`MemMap`], an in-memory map with failures on
//! demand, so code written against [`MapStore`] is tested without a kernel.
//! Two kinds of map are not plain entries and get a one-method port each:
//! per-CPU counters ([`Zeroing`]: reset on every CPU) and the redirect
//! device map ([`Redirects`]). The table writer (`tables.rs`, through
//! `maps::Maps`), adoption, draining and the upkeep reclaimer use them.

mod memory;
mod pinned;

pub use memory::MemMap;
pub use pinned::PinnedMap;

use std::{io, marker::PhantomData, ops::ControlFlow, time::Duration};

/// Where a batch walk stands: at the start, between two batches, or over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The store's position token (the kernel's, or the last key's bytes);
    /// empty at the start.
    token: Vec<u8>,
    done: bool,
}

impl Cursor {
    /// A walk from the first entry.
    pub fn start() -> Cursor {
        Cursor::default()
    }

    /// Whether the walk has returned its last entry.
    pub fn done(&self) -> bool {
        self.done
    }
}

/// One map of `K` → `V` entries.
pub trait MapStore<K, V>: Send {
    /// The value at `key`, if any.
    fn get(&self, key: &K) -> io::Result<Option<V>>;

    /// Sets `key` to `value`, creating the entry if needed.
    fn put(&mut self, key: &K, value: &V) -> io::Result<()>;

    /// Removes `key`; false if it was not there.
    fn delete(&mut self, key: &K) -> io::Result<bool>;

    /// Appends the next entries of a walk, at most `max`, to `out` and
    /// moves `cursor` on (to [`Cursor::done`] after the last ones). An
    /// entry added or removed during a walk may or may not be seen; one
    /// present throughout is seen exactly once.
    fn lookup_batch(
        &self,
        cursor: &mut Cursor,
        max: usize,
        out: &mut Vec<(K, V)>,
    ) -> io::Result<()>;

    /// Sets every `(key, value)` of `entries`; on failure some may be set.
    fn update_batch(&mut self, entries: &[(K, V)]) -> io::Result<()>;

    /// Removes every key of `keys` that is there; returns how many were.
    fn delete_batch(&mut self, keys: &[K]) -> io::Result<usize>;

    /// The map's capacity (`max_entries`).
    fn capacity(&self) -> io::Result<u64>;
}

/// A per-CPU array of counters: the agent only ever zeroes an entry (a
/// slot handed to a new service or real), on every CPU at once.
pub trait Zeroing: Send {
    /// Sets entry `index` to zeros on every CPU.
    fn zero(&mut self, index: u32) -> io::Result<()>;
}

/// The device map XDP redirects through: interface index → itself.
pub trait Redirects: Send {
    /// Makes `ifindex` a redirect target (again: adding twice is harmless).
    fn add(&mut self, ifindex: u32) -> io::Result<()>;
}

/// A map whose entries can be counted, whatever its types: the fill of a
/// hash map is its entries, and no syscall tells them.
pub trait Countable: Send {
    /// Walks the map in batches and counts its entries; `pace` is told how
    /// long each batch took and may stop the walk (`Err` with `Interrupted`).
    fn count(&self, pace: &mut dyn FnMut(Duration) -> ControlFlow<()>) -> io::Result<u64>;
}

/// A [`MapStore`] as a [`Countable`], walked in batches of about 256 KiB.
pub struct Counted<K, V> {
    store: Box<dyn MapStore<K, V>>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Counted<K, V> {
    pub fn new(store: Box<dyn MapStore<K, V>>) -> Counted<K, V> {
        Counted {
            store,
            _types: PhantomData,
        }
    }
}

impl<K, V> Countable for Counted<K, V> {
    fn count(&self, pace: &mut dyn FnMut(Duration) -> ControlFlow<()>) -> io::Result<u64> {
        let batch = (256 * 1024 / (size_of::<K>() + size_of::<V>())).max(16);
        let mut cursor = Cursor::start();
        let mut entries = Vec::with_capacity(batch);
        let mut n = 0;
        while !cursor.done() {
            let work = std::time::Instant::now();
            entries.clear();
            self.store.lookup_batch(&mut cursor, batch, &mut entries)?;
            n += entries.len() as u64;
            if pace(work.elapsed()).is_break() {
                return Err(io::ErrorKind::Interrupted.into());
            }
        }
        Ok(n)
    }
}
