//! The schedulers that compare every real of the service: lc, wlc, sed, nq
//! (fewest connections, in IPVS's overhead terms), fo (highest weight) and
//! ovf (highest weight still under its weight in active connections).
//! Ties go to the first real in list order, as IPVS's strict comparisons do.

use super::{
    each::{Step, each},
    reals,
};
use lb_common::{ConnCounts, REAL_NONE, ServiceInfo, sched, sched_layout};

/// Running best of a scan over the service's list.
struct Least {
    base: u32,
    service_id: u32,
    rule: u8,
    best: u32,
    best_weight: u64,
    best_overhead: u64,
}

/// IPVS's load estimate per rule: lc/wlc count an active connection as 256
/// inactive ones; sed and nq count active connections plus the new one.
#[inline(always)]
fn overhead(rule: u8, load: ConnCounts) -> u64 {
    match rule {
        sched::SED | sched::NQ => load.active + 1,
        _ => ((load.active) << 8) + load.inactive,
    }
}

impl Step for Least {
    fn step(&mut self, i: u32) -> bool {
        let Some(id) = reals::nth(self.base, i) else {
            return true;
        };
        let Some((real, load)) = reals::usable(id, self.service_id) else {
            return false;
        };
        let w = real.weight as u64;
        let oh = overhead(self.rule, load);
        let first = self.best == REAL_NONE;
        let better = match self.rule {
            sched::LC => first || oh < self.best_overhead,
            sched::FO => w > self.best_weight,
            sched::OVF => (load.active) <= w && (first || w > self.best_weight),
            sched::NQ if load.active == 0 => {
                // An idle server is taken at once.
                self.best = id;
                return true;
            }
            // wlc, sed, nq: overhead / weight, compared by cross-multiplication.
            _ => first || self.best_overhead * w > oh * self.best_weight,
        };
        if better {
            self.best = id;
            self.best_weight = w;
            self.best_overhead = oh;
        }
        false
    }
}

/// The real `rule` (lc, wlc, sed, nq, fo or ovf) picks among the service's reals.
#[inline(always)]
pub fn pick(service: &ServiceInfo, rule: u8) -> Option<u32> {
    let mut scan = Least {
        base: reals::list_base(service),
        service_id: service.id,
        rule,
        best: REAL_NONE,
        best_weight: 0,
        best_overhead: 0,
    };
    each(sched_layout::MAX_REALS_PER_SERVICE, &mut scan);
    (scan.best != REAL_NONE).then_some(scan.best)
}
