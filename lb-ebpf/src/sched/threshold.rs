//! Connection thresholds, as IPVS applies them: a real becomes overloaded
//! when its connections (active + inactive) reach `u_threshold`, and takes
//! new flows again once they fall below `l_threshold`, or below 3/4 of
//! `u_threshold` when no lower threshold is set.

use crate::maps::REAL_OVERLOAD;
use core::ptr::{read_volatile, write_volatile};
use lb_common::{ConnCounts, RealInfo};

/// Whether real `id` is overloaded now; keeps the flag between the thresholds.
#[inline(always)]
pub fn overloaded(id: u32, real: &RealInfo, load: ConnCounts) -> bool {
    crate::probe::hit(lb_common::probe::SCHED_STATE);
    let Some(flag) = REAL_OVERLOAD.get_ptr_mut(id) else {
        return false;
    };
    let was = unsafe { read_volatile(flag) } != 0;
    let total = load.active + load.inactive;
    let upper = real.u_threshold as u64;
    let now = if upper == 0 {
        false
    } else if total >= upper {
        true
    } else if !was {
        false
    } else if real.l_threshold != 0 {
        total >= real.l_threshold as u64
    } else {
        total * 4 >= upper * 3
    };
    if now != was {
        unsafe { write_volatile(flag, now as u32) };
    }
    now
}
