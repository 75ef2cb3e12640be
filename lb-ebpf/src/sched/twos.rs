//! twos: IPVS's power of two choices (`ip_vs_twos`, Linux 6.2+). Two reals
//! are drawn at random in proportion to their weights (a draw below the
//! usable reals' weight sum plus one, walked down the list until it reaches
//! 0 or less, so the first real has one chance more), and the second draw
//! wins only when its overhead per weight is strictly smaller.

use super::{
    each::{Step, each},
    reals,
};
use aya_ebpf::helpers::bpf_get_prandom_u32;
use lb_common::{ConnCounts, REAL_NONE, ServiceInfo, sched_layout};

/// IPVS's `ip_vs_dest_conn_overhead`.
#[inline(always)]
fn overhead(load: ConnCounts) -> i64 {
    ((load.active << 8) + load.inactive) as i64
}

/// First pass: the usable reals' weight sum and the last of them.
struct Total {
    base: u32,
    service_id: u32,
    sum: u64,
    last: u32,
}

impl Step for Total {
    fn step(&mut self, i: u32) -> bool {
        let Some(id) = reals::nth(self.base, i) else {
            return true;
        };
        if let Some((real, _)) = reals::usable(id, self.service_id) {
            self.sum += u64::from(real.weight);
            self.last = id;
        }
        false
    }
}

/// Second pass: where each draw lands (real, weight, overhead).
struct Draw {
    base: u32,
    service_id: u32,
    left: [i64; 2],
    landed: [(u32, i64, i64); 2],
}

impl Step for Draw {
    fn step(&mut self, i: u32) -> bool {
        let Some(id) = reals::nth(self.base, i) else {
            return true;
        };
        let Some((real, load)) = reals::usable(id, self.service_id) else {
            return false;
        };
        let w = i64::from(real.weight);
        for k in 0..2 {
            self.left[k] -= w;
            if self.left[k] <= 0 && self.landed[k].0 == REAL_NONE {
                self.landed[k] = (id, w, overhead(load));
            }
        }
        self.landed[0].0 != REAL_NONE && self.landed[1].0 != REAL_NONE
    }
}

/// The real twos picks among the service's reals.
#[inline(always)]
pub fn pick(service: &ServiceInfo) -> Option<u32> {
    let base = reals::list_base(service);
    let mut total = Total {
        base,
        service_id: service.id,
        sum: 0,
        last: REAL_NONE,
    };
    each(sched_layout::MAX_REALS_PER_SERVICE, &mut total);
    if total.last == REAL_NONE {
        return None;
    }
    let span = total.sum.saturating_add(1);
    // SAFETY: a helper without arguments. (checked_rem: no division-by-zero
    // panic path for the verifier to refuse, though span is never 0.)
    let draw = || {
        u64::from(unsafe { bpf_get_prandom_u32() })
            .checked_rem(span)
            .unwrap_or(0) as i64
    };
    crate::probe::hit(lb_common::probe::PRANDOM);
    crate::probe::hit(lb_common::probe::PRANDOM);
    let mut d = Draw {
        base,
        service_id: service.id,
        left: [draw(), draw()],
        landed: [(REAL_NONE, 0, 0); 2],
    };
    each(sched_layout::MAX_REALS_PER_SERVICE, &mut d);
    // A first draw that landed nowhere keeps the kernel's initial choice:
    // the last usable real, weight −1, overhead 0.
    let (c1, w1, oh1) = match d.landed[0] {
        (REAL_NONE, ..) => (total.last, -1, 0),
        first => first,
    };
    let (c2, w2, oh2) = d.landed[1];
    Some(if c2 != REAL_NONE && w2 * oh1 > w1 * oh2 {
        c2
    } else {
        c1
    })
}
