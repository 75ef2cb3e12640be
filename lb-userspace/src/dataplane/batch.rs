//! Writing many slots of a `u32` array map in one `BPF_MAP_UPDATE_BATCH`
//! call (Linux 5.6+) instead of one syscall per slot: a fresh start writes
//! every Maglev slot of every service, millions of them. aya 0.14 has no
//! batch operations, hence the raw syscall. Each slot is still updated on
//! its own by the kernel, as with single updates.

use aya::maps::MapData;
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
};

/// `BPF_MAP_UPDATE_BATCH` from `enum bpf_cmd`.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// Slots per call: bounds the kernel's copy of keys and values.
const CHUNK: usize = 1 << 16;

/// The `batch` member of `union bpf_attr`; the kernel zero-fills the rest.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Sets `keys[i]` to `values[i]` in the array `map`. `Err` with
/// `Unsupported` when the kernel has no batch updates for it.
pub fn update_u32(map: &MapData, keys: &[u32], values: &[u32]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len());
    let fd = map.fd().as_fd().as_raw_fd();
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `attr` points at `count` keys and values that outlive the
        // call; the kernel reads them and writes only `attr.count`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                // ENOTSUPP (524, kernel-internal) or EINVAL: no batch support.
                Some(libc::EINVAL | 524) => io::Error::new(io::ErrorKind::Unsupported, e),
                _ => e,
            });
        }
    }
    Ok(())
}
