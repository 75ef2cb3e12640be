//! BPF map batch operations (Linux 5.6+): `BPF_MAP_LOOKUP_BATCH`,
//! `BPF_MAP_UPDATE_BATCH` and `BPF_MAP_DELETE_BATCH`, many entries per
//! syscall instead of one. aya 0.14 has no batch operations, hence the raw
//! syscalls. The kernel still takes each entry on its own (hash maps: a
//! bucket at a time), so a batch is as consistent as single operations.
//!
//! A fresh start writes every Maglev slot of every service, millions of
//! them, and the upkeep reclaimer walks the flow table in bounded batches:
//! both through `store::PinnedMap`.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries per update call: bounds the kernel's copy of keys and values.
pub const CHUNK: usize = 1 << 16;

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

/// One batch command; returns how many entries the kernel handled (it
/// writes that back into `count`, also when it fails part-way).
fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> (io::Result<()>, usize) {
    // SAFETY: the caller makes every pointer in `attr` valid for `count`
    // entries of the map's key and value sizes (and the batch token); the
    // kernel writes only through `out_batch`, `keys`/`values` (lookup) and
    // `count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>(),
        )
    };
    let done = attr.count as usize;
    if rc < 0 {
        let e = io::Error::last_os_error();
        let e = match e.raw_os_error() {
            // ENOTSUPP (524, kernel-internal) or EINVAL: no batch support.
            Some(libc::EINVAL | 524) => io::Error::new(io::ErrorKind::Unsupported, e),
            _ => e,
        };
        return (Err(e), done);
    }
    (Ok(()), done)
}

fn attr(fd: BorrowedFd<'_>, keys: *const u8, values: *const u8, count: usize) -> BatchAttr {
    BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys as u64,
        values: values as u64,
        count: count as u32,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    }
}

/// The next entries of a walk over `fd`: up to `count` keys and values
/// into `keys` and `values` (room for `count` of each). `token` holds the
/// kernel's position (at least the key size, and 8 bytes); `start` begins
/// the walk. Returns how many entries came and whether the walk is over.
pub fn lookup(
    fd: BorrowedFd<'_>,
    token: &mut [u8],
    start: bool,
    keys: &mut [u8],
    values: &mut [u8],
    count: usize,
) -> io::Result<(usize, bool)> {
    let mut next = vec![0u8; token.len()];
    let mut a = attr(fd, keys.as_mut_ptr(), values.as_mut_ptr(), count);
    a.in_batch = if start { 0 } else { token.as_ptr() as u64 };
    a.out_batch = next.as_mut_ptr() as u64;
    match call(BPF_MAP_LOOKUP_BATCH, &mut a) {
        (Ok(()), n) => {
            token.copy_from_slice(&next);
            Ok((n, false))
        }
        // ENOENT: the walk reached the end (with the last entries, if any).
        (Err(e), n) if e.raw_os_error() == Some(libc::ENOENT) => Ok((n, true)),
        (Err(e), _) => Err(e),
    }
}

/// Sets `count` entries of `fd` from `keys` and `values`. `Ok` with fewer
/// than `count` never happens: a failure says how many were written.
pub fn update(
    fd: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    count: usize,
) -> Result<(), (io::Error, usize)> {
    let mut a = attr(fd, keys.as_ptr(), values.as_ptr(), count);
    match call(BPF_MAP_UPDATE_BATCH, &mut a) {
        (Ok(()), _) => Ok(()),
        (Err(e), n) => Err((e, n)),
    }
}

/// Deletes `count` keys of `fd`; a key that is not there stops the batch
/// with `ENOENT` (the error says how many were deleted before it).
pub fn delete(fd: BorrowedFd<'_>, keys: &[u8], count: usize) -> Result<(), (io::Error, usize)> {
    let mut a = attr(fd, keys.as_ptr(), std::ptr::null(), count);
    match call(BPF_MAP_DELETE_BATCH, &mut a) {
        (Ok(()), _) => Ok(()),
        (Err(e), n) => Err((e, n)),
    }
}

/// The bytes of a slice of plain values.
pub fn bytes<T: aya::Pod>(items: &[T]) -> &[u8] {
    // SAFETY: `Pod` types have no padding or invalid bit patterns.
    unsafe { std::slice::from_raw_parts(items.as_ptr().cast(), std::mem::size_of_val(items)) }
}
