//! The schedulers that read a table the agent built: mh (IPVS's Maglev), rr/wrr
//! (the IPVS sequence, walked by a shared cursor), dh and sh (IPVS's 256
//! buckets of destination / source address).

use super::{
    each::{Step, each},
    reals,
};
use crate::maps::{MAGLEV, MAGLEV_TABLE_SIZE, SCHED_CURSORS};
use core::intrinsics::{AtomicOrdering, atomic_xadd};
use lb_common::{
    FlowKey, REAL_NONE, SERVICE_F_FALLBACK, SERVICE_F_HASH_PORT, SERVICE_F_TABLE_B, ServiceInfo,
    sched_hash, sched_layout,
};

/// How many other slots a fallback or a sequence walk looks at before giving up.
const PROBES: u32 = sched_layout::MAX_REALS_PER_SERVICE;

#[inline(always)]
fn slot(index: u32) -> u32 {
    crate::probe::hit(lb_common::probe::SCHED_TABLES);
    MAGLEV.get(index).copied().unwrap_or(REAL_NONE)
}

#[inline(always)]
fn buffer_base(service: &ServiceInfo, size: u32) -> u32 {
    sched_layout::table_base(service.id, size, service.flags & SERVICE_F_TABLE_B != 0)
}

/// The hashed source: address fold and, with `*-port`, the source port.
#[inline(always)]
fn source(service: &ServiceInfo, flow: &FlowKey) -> (u32, u16) {
    let port = if service.flags & SERVICE_F_HASH_PORT != 0 {
        u16::from_be(flow.sport)
    } else {
        0
    };
    (sched_hash::fold(flow.family, &flow.src), port)
}

/// Probes slots `hash(offset)` for offset 0, 1, … until a usable real; an
/// empty slot ends the walk (IPVS's `*_get_fallback`).
struct Fallback {
    service_id: u32,
    base: u32,
    size: u32,
    ihash: u32,
    fold: u32,
    port: u16,
    maglev: bool,
    found: u32,
}

impl Step for Fallback {
    fn step(&mut self, offset: u32) -> bool {
        let h = if self.maglev {
            if self.size == 0 {
                return true;
            }
            let roffset = (offset + self.ihash) % self.size;
            sched_hash::mh(self.fold, self.port, roffset) % self.size
        } else {
            let roffset = (offset + self.ihash) % sched_layout::HASH_BUCKETS;
            sched_hash::sh_bucket(self.fold, self.port, roffset)
        };
        let id = slot(self.base + h);
        if id == REAL_NONE {
            return true;
        }
        if reals::usable(id, self.service_id).is_some() {
            self.found = id;
            return true;
        }
        false
    }
}

/// The hashed slot's real if usable; else, with `*-fallback`, the walk's.
#[inline(always)]
fn hashed(service: &ServiceInfo, mut walk: Fallback) -> Option<u32> {
    let id = slot(walk.base + walk.ihash);
    if id == REAL_NONE {
        return None;
    }
    if reals::usable(id, service.id).is_some() {
        return Some(id);
    }
    if service.flags & SERVICE_F_FALLBACK == 0 {
        return None;
    }
    each(PROBES, &mut walk);
    (walk.found != REAL_NONE).then_some(walk.found)
}

/// mh: IPVS's Maglev lookup, slot hsiphash(port + source fold) (port with
/// `mh-port`), as `ip_vs_mh_get` / `ip_vs_mh_get_fallback`.
#[inline(always)]
pub fn maglev(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let size = MAGLEV_TABLE_SIZE.load();
    if size == 0 {
        return None;
    }
    let (fold, port) = source(service, flow);
    hashed(
        service,
        Fallback {
            service_id: service.id,
            base: service.id * size,
            size,
            ihash: sched_hash::mh(fold, port, 0) % size,
            fold,
            port,
            maglev: true,
            found: REAL_NONE,
        },
    )
}

/// sh: bucket of the source address (and port with `sh-port`).
#[inline(always)]
pub fn sh(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let size = MAGLEV_TABLE_SIZE.load();
    let (fold, port) = source(service, flow);
    hashed(
        service,
        Fallback {
            service_id: service.id,
            base: buffer_base(service, size),
            size,
            ihash: sched_hash::sh_bucket(fold, port, 0),
            fold,
            port,
            maglev: false,
            found: REAL_NONE,
        },
    )
}

/// dh: bucket of the destination address; no fallback in IPVS.
#[inline(always)]
pub fn dh(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let size = MAGLEV_TABLE_SIZE.load();
    let bucket = sched_hash::dh_bucket(sched_hash::fold(flow.family, &flow.dst));
    let id = slot(buffer_base(service, size) + bucket);
    reals::usable(id, service.id).map(|_| id)
}

/// Walks the sequence from `start` to the first usable real.
struct Sequence {
    service_id: u32,
    base: u32,
    len: u32,
    start: u64,
    found: u32,
    skipped: u32,
}

impl Step for Sequence {
    fn step(&mut self, k: u32) -> bool {
        if k >= self.len || self.len == 0 {
            return true;
        }
        let pos = ((self.start + k as u64) % self.len as u64) as u32;
        let id = slot(self.base + pos);
        if reals::usable(id, self.service_id).is_some() {
            self.found = id;
            self.skipped = k;
            return true;
        }
        false
    }
}

/// rr/wrr: the next entry of the service's sequence. The cursor is one
/// counter for all CPUs; a real that cannot take the flow is passed over
/// and its turn consumed, as IPVS moves its cursor past it.
#[inline(always)]
pub fn sequence(service: &ServiceInfo) -> Option<u32> {
    let size = MAGLEV_TABLE_SIZE.load();
    let len = service.table_len;
    if len == 0 || len > size / 2 {
        return None;
    }
    crate::probe::hit(lb_common::probe::SCHED_STATE);
    let cursor = SCHED_CURSORS.get_ptr_mut(service.id)?;
    // An atomic add that returns the old value (BPF_FETCH): the BPF target
    // has no compare-and-swap, so core's atomic types lack fetch_add. SeqCst,
    // because LLVM lowers a relaxed add to the non-fetching BPF_ADD and hands
    // back the operand instead of the old value.
    // SAFETY: an aligned u64 in a map value.
    let advance =
        |by: u64| unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(cursor, by) };
    let mut walk = Sequence {
        service_id: service.id,
        base: buffer_base(service, size),
        len,
        start: advance(1),
        found: REAL_NONE,
        skipped: 0,
    };
    each(PROBES, &mut walk);
    if walk.found == REAL_NONE {
        return None;
    }
    if walk.skipped > 0 {
        advance(walk.skipped as u64);
    }
    Some(walk.found)
}
