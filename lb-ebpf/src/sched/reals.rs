//! A real server as the schedulers see it: configured in the service,
//! reachable, and its live connection counts.

use super::threshold;
use crate::maps::{REAL_CONNS, REALS, SERVICE_REALS};
use core::ptr::read_volatile;
use lb_common::{
    ConnCounts, REAL_F_DRAINING, REAL_F_REACHABLE, REAL_NONE, RealInfo, SERVICE_F_TABLE_B,
    ServiceInfo, sched_layout,
};

/// Active and inactive connections now (`REAL_CONNS`, kept live by the
/// director and the upkeep program).
#[inline(always)]
pub fn load(id: u32) -> ConnCounts {
    // Other CPUs add to these atomically; a volatile read sees a whole word.
    REAL_CONNS
        .get_ptr_mut(id)
        .map_or(ConnCounts::default(), |p| unsafe {
            read_volatile(&raw const (*p).live)
        })
}

/// Real `id` if it belongs to `service_id`, is reachable and not draining
/// (IPVS: in the service's list and available), with its load.
#[inline(always)]
pub fn member(id: u32, service_id: u32) -> Option<(&'static RealInfo, ConnCounts)> {
    if id == REAL_NONE {
        return None;
    }
    crate::probe::hit(lb_common::probe::REALS);
    let real = REALS.get(id)?;
    if real.service_id != service_id
        || real.flags & (REAL_F_REACHABLE | REAL_F_DRAINING) != REAL_F_REACHABLE
    {
        return None;
    }
    Some((real, load(id)))
}

/// A member that may take new flows: weight above 0 and not over its
/// thresholds (IPVS's `is_unavailable` turned around).
#[inline(always)]
pub fn usable(id: u32, service_id: u32) -> Option<(&'static RealInfo, ConnCounts)> {
    let (real, load) = member(id, service_id)?;
    (real.weight > 0 && !threshold::overloaded(id, real, load)).then_some((real, load))
}

/// First `SERVICE_REALS` slot of the service's live list.
#[inline(always)]
pub fn list_base(service: &ServiceInfo) -> u32 {
    sched_layout::reals_base(service.id, service.flags & SERVICE_F_TABLE_B != 0)
}

/// The `i`th real of the list starting at `base`, `None` past its end.
#[inline(always)]
pub fn nth(base: u32, i: u32) -> Option<u32> {
    if i >= sched_layout::MAX_REALS_PER_SERVICE {
        return None;
    }
    crate::probe::hit(lb_common::probe::SCHED_TABLES);
    let id = *SERVICE_REALS.get(base + i)?;
    (id != REAL_NONE).then_some(id)
}
