//! `MAGLEV` through a memory mapping: the map is made `BPF_F_MMAPABLE`, so
//! the agent reads and writes a service's slots with loads and stores
//! instead of a syscall (or a batch entry copied on its own) per slot. A
//! fresh start of 1,000 services writes ten million slots; a health change
//! compares one service's slots with the new table in place.
//!
//! An array map keeps each value in 8 bytes (`round_up(value_size, 8)`),
//! so a `u32` slot is the low half, in this little-endian layout, of an
//! 8-byte element whose high half stays zero.
//!
//! Maps pinned by an older agent were made without the flag: [`MappedSlots::of`]
//! says so, and the caller writes through syscalls as before.

use aya::maps::MapData;
use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// Bytes per element of an array map of `u32` (the kernel's `elem_size`).
const ELEM: usize = 8;

/// `BPF_F_MMAPABLE` (uapi `linux/bpf.h`).
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A mappable `u32` array map (its own descriptor, so it outlives borrows of the map).
pub struct MappedSlots {
    fd: OwnedFd,
    entries: u32,
}

impl MappedSlots {
    /// `None` when `map` cannot be mapped (made without `BPF_F_MMAPABLE`).
    pub fn of(map: &MapData) -> io::Result<Option<MappedSlots>> {
        let info = map.info().map_err(io::Error::other)?;
        if info.map_flags() & BPF_F_MMAPABLE == 0 || info.value_size() != 4 {
            return Ok(None);
        }
        Ok(Some(MappedSlots {
            fd: map.fd().as_fd().try_clone_to_owned()?,
            entries: info.max_entries(),
        }))
    }

    /// Slots `first..first + len`, mapped until the window drops (mapped
    /// pages count in the agent's RSS only while mapped).
    pub fn window(&self, first: u32, len: u32) -> io::Result<Window> {
        if u64::from(first) + u64::from(len) > u64::from(self.entries) || len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "slots {first}..{} outside the map's {}",
                    u64::from(first) + u64::from(len),
                    self.entries
                ),
            ));
        }
        let page = page_size();
        let start = first as usize * ELEM;
        let offset = start - start % page;
        let skip = start - offset;
        let length = skip + len as usize * ELEM;
        // SAFETY: a shared mapping of the map's value area at a page-aligned
        // offset inside it (the kernel checks the range); nothing else is
        // mapped at the address the kernel picks.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(Window {
            addr,
            length,
            skip,
            len: len as usize,
        })
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// Mapped slots of a [`MappedSlots`]; unmapped on drop.
pub struct Window {
    addr: NonNull<u8>,
    length: usize,
    skip: usize,
    len: usize,
}

impl Window {
    /// The elements, atomics because the director reads them while they
    /// change (each is read and written whole).
    fn elements(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `skip + len * 8` bytes, `skip` is a
        // multiple of 8 from a page-aligned address, and it lives as long as
        // `self`; AtomicU64 has u64's layout and allows shared mutation.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().add(self.skip).cast(), self.len) }
    }

    /// The slots' values, in order.
    pub fn read(&self) -> Vec<u32> {
        self.elements()
            .iter()
            .map(|e| e.load(Relaxed) as u32)
            .collect()
    }

    /// Stores `new[i]` in slot `i` where it differs.
    pub fn write(&self, new: &[u32]) {
        for (e, &v) in self.elements().iter().zip(new) {
            if e.load(Relaxed) as u32 != v {
                e.store(u64::from(v), Relaxed);
            }
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `MappedSlots::window`, no longer borrowed.
        unsafe {
            libc::munmap(self.addr.as_ptr().cast(), self.length);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::maps::{Array, Map};

    /// A standalone array of `u32` (needs CAP_BPF, as the agent does).
    fn array(entries: u32, flags: u32) -> MapData {
        let obj = aya_obj::Map::new_from_params(
            aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_ARRAY as u32,
            4,
            4,
            entries,
            flags,
        );
        MapData::create(obj, "xlb_slots_test", None).expect("creating a BPF array (root?)")
    }

    #[test]
    #[ignore = "root: creates BPF maps (run by `cargo xtask test`'s root tier)"]
    fn slots_written_through_the_mapping_are_what_the_kernel_reads() {
        // 3,000 slots span several pages; the window starts mid-page.
        let data = array(3000, BPF_F_MMAPABLE);
        let mapped = MappedSlots::of(&data).unwrap().expect("mappable");
        let values: Vec<u32> = (1..=1200).collect();
        {
            let w = mapped.window(700, 1200).unwrap();
            assert_eq!(w.read(), vec![0; 1200]);
            w.write(&values);
            assert_eq!(w.read(), values);
        }
        assert!(mapped.window(2000, 1001).is_err(), "past the map's end");
        let kernel: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
        for i in 0..3000u32 {
            let want = if (700..1900).contains(&i) { i - 699 } else { 0 };
            assert_eq!(kernel.get(&i, 0).unwrap(), want, "slot {i}");
        }
    }

    #[test]
    #[ignore = "root: creates BPF maps (run by `cargo xtask test`'s root tier)"]
    fn a_map_made_without_the_flag_is_not_mapped() {
        assert!(MappedSlots::of(&array(16, 0)).unwrap().is_none());
    }
}
