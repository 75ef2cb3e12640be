//! lblc and lblcr: locality-based least connections, keyed by the
//! destination address (cache clusters). lblc ties each destination to one
//! real, lblcr to a set of reals; both fall back to wlc over the service
//! when the tied real is overloaded in IPVS's sense: more active
//! connections than its weight while another real is under half load.

use super::{
    each::{Step, each},
    least, reals,
};
use crate::maps::{LBLC, LBLCR, LBLCR_SCRATCH};
use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{
    Affinity, ConnCounts, FlowKey, REAL_NONE, ReplicaSet, ServiceAddr, ServiceInfo, sched,
    sched_layout, sched_time::LOCALITY_EXPIRE_NS,
};

const MAX: u32 = sched_layout::MAX_REALS_PER_SERVICE;

/// Looks for a real of the service under half load (active × 2 < weight).
struct HalfLoaded {
    base: u32,
    service_id: u32,
    found: bool,
}

impl Step for HalfLoaded {
    fn step(&mut self, i: u32) -> bool {
        let Some(id) = reals::nth(self.base, i) else {
            return true;
        };
        if let Some((real, load)) = reals::member(id, self.service_id)
            && (load.active) * 2 < real.weight as u64
        {
            self.found = true;
            return true;
        }
        false
    }
}

/// IPVS's lblc/lblcr `is_overloaded`.
#[inline(always)]
fn overloaded(service: &ServiceInfo, weight: u32, load: ConnCounts) -> bool {
    if load.active <= u64::from(weight) {
        return false;
    }
    let mut scan = HalfLoaded {
        base: reals::list_base(service),
        service_id: service.id,
        found: false,
    };
    each(MAX, &mut scan);
    scan.found
}

#[inline(always)]
fn key(service: &ServiceInfo, flow: &FlowKey) -> ServiceAddr {
    ServiceAddr {
        service_id: service.id,
        addr: flow.dst,
    }
}

/// lblc: the destination's real while it is usable, else wlc's choice, remembered.
#[inline(always)]
pub fn lblc(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let key = key(service, flow);
    crate::probe::hit(lb_common::probe::KTIME);
    let now = unsafe { bpf_ktime_get_ns() };
    crate::probe::hit(lb_common::probe::LOCALITY);
    if let Some(entry) = LBLC.get_ptr_mut(key) {
        let entry = unsafe { &mut *entry };
        if now.wrapping_sub(entry.last_ns) < LOCALITY_EXPIRE_NS {
            entry.last_ns = now;
            if let Some((real, load)) = reals::member(entry.real_id, service.id)
                && real.weight > 0
                && !overloaded(service, real.weight, load)
            {
                return Some(entry.real_id);
            }
        }
    }
    let id = least::pick(service, sched::WLC)?;
    let entry = Affinity {
        real_id: id,
        _pad: 0,
        last_ns: now,
    };
    crate::probe::hit(lb_common::probe::AFFINITY_UPDATE);
    let _ = LBLC.insert(key, entry, 0);
    Some(id)
}

/// Scans a set, newest member first (IPVS adds at the head of its list),
/// for the least (or, with `most`, the most) loaded member by wlc's measure.
struct SetScan {
    service_id: u32,
    set: *const ReplicaSet,
    most: bool,
    best: u32,
    best_index: u32,
    best_weight: u64,
    best_overhead: u64,
}

impl Step for SetScan {
    fn step(&mut self, i: u32) -> bool {
        // SAFETY: the set is a map value that outlives the loop.
        let set = unsafe { &*self.set };
        if i >= set.len || i >= MAX {
            return true;
        }
        let index = set.len - 1 - i;
        let Some(&id) = set.reals.get(index as usize) else {
            return true;
        };
        let Some((real, load)) = reals::member(id, self.service_id) else {
            return false;
        };
        let w = real.weight as u64;
        let oh = ((load.active) << 8) + load.inactive;
        let better = if self.most {
            // The first member with weight, then any heavier per weight.
            w > 0 && (self.best == REAL_NONE || self.best_overhead * w < oh * self.best_weight)
        } else {
            // Overloaded members (thresholds) are skipped, then as wlc.
            reals::usable(id, self.service_id).is_some()
                && (self.best == REAL_NONE || self.best_overhead * w > oh * self.best_weight)
        };
        if better {
            self.best = id;
            self.best_index = index;
            self.best_weight = w;
            self.best_overhead = oh;
        }
        false
    }
}

#[inline(always)]
fn scan_set(service: &ServiceInfo, set: &ReplicaSet, most: bool) -> SetScan {
    let mut scan = SetScan {
        service_id: service.id,
        set,
        most,
        best: REAL_NONE,
        best_index: 0,
        best_weight: 0,
        best_overhead: 0,
    };
    each(MAX, &mut scan);
    scan
}

/// Removes the member at `index`, keeping the order of the others.
struct Erase {
    set: *mut ReplicaSet,
    index: u32,
}

impl Step for Erase {
    fn step(&mut self, i: u32) -> bool {
        // SAFETY: the set is a map value that outlives the loop.
        let set = unsafe { &mut *self.set };
        let at = self.index + i;
        if at + 1 >= set.len || at + 1 >= MAX {
            return true;
        }
        let Some(&next) = set.reals.get(at as usize + 1) else {
            return true;
        };
        if let Some(slot) = set.reals.get_mut(at as usize) {
            *slot = next;
        }
        false
    }
}

/// Whether `id` is in the set.
struct Contains {
    set: *const ReplicaSet,
    id: u32,
    found: bool,
}

impl Step for Contains {
    fn step(&mut self, i: u32) -> bool {
        // SAFETY: the set is a map value that outlives the loop.
        let set = unsafe { &*self.set };
        if i >= set.len {
            return true;
        }
        if set.reals.get(i as usize).copied() == Some(self.id) {
            self.found = true;
            return true;
        }
        false
    }
}

/// lblcr: the least loaded member of the destination's set unless it is
/// overloaded; else wlc's choice joins the set. A set unchanged for the
/// expiry time drops its most loaded member.
#[inline(always)]
pub fn lblcr(service: &ServiceInfo, flow: &FlowKey) -> Option<u32> {
    let key = key(service, flow);
    crate::probe::hit(lb_common::probe::KTIME);
    let now = unsafe { bpf_ktime_get_ns() };
    crate::probe::hit(lb_common::probe::LOCALITY);
    if let Some(set) = LBLCR.get_ptr_mut(key) {
        let set = unsafe { &mut *set };
        if now.wrapping_sub(set.last_ns) < LOCALITY_EXPIRE_NS {
            set.last_ns = now;
            let least = scan_set(service, set, false).best;
            if set.len > 1 && now.wrapping_sub(set.modified_ns) > LOCALITY_EXPIRE_NS {
                let most = scan_set(service, set, true);
                if most.best != REAL_NONE {
                    each(
                        MAX,
                        &mut Erase {
                            set,
                            index: most.best_index,
                        },
                    );
                    set.len -= 1;
                    set.modified_ns = now;
                }
            }
            if let Some((real, load)) = reals::member(least, service.id)
                && !overloaded(service, real.weight, load)
            {
                return Some(least);
            }
            let id = least::pick(service, sched::WLC)?;
            let mut has = Contains {
                set,
                id,
                found: false,
            };
            each(MAX, &mut has);
            if !has.found
                && set.len < MAX
                && let Some(slot) = set.reals.get_mut(set.len as usize)
            {
                *slot = id;
                set.len += 1;
                set.modified_ns = now;
            }
            return Some(id);
        }
    }
    let id = least::pick(service, sched::WLC)?;
    crate::probe::hit(lb_common::probe::SCHED_STATE);
    let fresh = LBLCR_SCRATCH.get_ptr_mut(0)?;
    let fresh = unsafe { &mut *fresh };
    fresh.last_ns = now;
    fresh.modified_ns = now;
    fresh.len = 1;
    fresh.reals[0] = id;
    crate::probe::hit(lb_common::probe::AFFINITY_UPDATE);
    let _ = LBLCR.insert(key, fresh, 0);
    Some(id)
}
