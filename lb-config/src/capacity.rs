//! Map capacities of the XDP data plane: sized from the services when the
//! config sets none (a keepalived.conf never does), and the services that do
//! not fit when it does. Both front ends call these, so a config keepalived
//! loads fits from either.

use super::{Dataplane, Scheduler, Service};
use lb_common::{defaults, sched_layout, sizes::with_headroom};
use lb_sched::tables::wrr_len;

/// Largest Maglev table the agent accepts (tables are per service and preallocated).
pub const MAX_MAGLEV_TABLE: u32 = 1_048_573;

/// Slots a service needs in half a Maglev table (its rr/wrr sequence or
/// dh/sh buckets; the other half is the next table being written).
fn half_table_need(s: &Service) -> u64 {
    let weights: Vec<u32> = s.reals.iter().map(|r| r.weight).collect();
    match s.scheduler {
        Scheduler::Wrr => wrr_len(&weights),
        Scheduler::Rr => weights.len() as u64,
        Scheduler::Sh | Scheduler::Dh => u64::from(sched_layout::HASH_BUCKETS),
        _ => 0,
    }
}

/// `max_services` for these services when unset.
pub fn max_services(services: &[&Service]) -> u32 {
    with_headroom(services.len() as u32, defaults::MAX_SERVICES)
}

/// `max_reals` for these services when unset (one slot is reserved).
pub fn max_reals(services: &[&Service]) -> u32 {
    let reals: usize = services.iter().map(|s| s.reals.len()).sum();
    with_headroom(reals as u32 + 1, defaults::MAX_REALS)
}

/// `maglev_table_size` for these services when unset: IPVS's 4093, so mh
/// picks what IPVS picks, unless an rr/wrr sequence needs more, then the
/// smallest prime whose half holds it (up to [`MAX_MAGLEV_TABLE`]).
pub fn maglev_table_size(services: &[&Service]) -> u32 {
    let need = services
        .iter()
        .map(|s| half_table_need(s))
        .max()
        .unwrap_or(0);
    if need <= u64::from(defaults::MAGLEV_TABLE_SIZE / 2) {
        return defaults::MAGLEV_TABLE_SIZE;
    }
    let mut n = need
        .saturating_mul(2)
        .saturating_add(1)
        .min(u64::from(MAX_MAGLEV_TABLE)) as u32;
    while !is_prime(n) && n < MAX_MAGLEV_TABLE {
        n += 1;
    }
    n
}

/// A fragment of each message [`capacity_problems`] writes.
pub const MESSAGES: [&str; 5] = [
    "more services than `max_services`",
    "do not fit `max_reals`",
    "real servers; at most",
    "but half a Maglev table holds",
    "more than the Maglev table has slots",
];

/// Where the services do not fit the data plane's preallocated maps: the
/// index of the service at fault (`None`: the data plane as a whole) and
/// the message. Shared with the keepalived.conf front end.
pub fn capacity_problems(dp: &Dataplane, services: &[&Service]) -> Vec<(Option<usize>, String)> {
    let mut out = Vec::new();
    if services.len() > dp.max_services as usize {
        out.push((
            Some(dp.max_services as usize),
            format!("more services than `max_services` ({})", dp.max_services),
        ));
    }
    // Real id 0 is reserved, so one slot fewer than max_reals is usable.
    let reals: usize = services.iter().map(|s| s.reals.len()).sum();
    if reals >= dp.max_reals as usize {
        out.push((
            None,
            format!(
                "{reals} real servers in all do not fit `max_reals` ({}; one slot is reserved)",
                dp.max_reals
            ),
        ));
    }
    let half = dp.maglev_table_size / 2;
    for (i, s) in services.iter().enumerate() {
        if s.reals.len() > sched_layout::MAX_REALS_PER_SERVICE as usize {
            out.push((
                Some(i),
                format!(
                    "service {} has {} real servers; at most {} per service",
                    s.id,
                    s.reals.len(),
                    sched_layout::MAX_REALS_PER_SERVICE
                ),
            ));
        }
        let need = half_table_need(s);
        if need > u64::from(half) {
            let fix = if dp.maglev_table_size >= MAX_MAGLEV_TABLE {
                "use smaller weights with the same ratios (this is the largest table xlb builds)"
            } else {
                "raise `maglev_table_size` (or use smaller weights with the same ratios)"
            };
            out.push((Some(i), format!(
                "service {}: the {} table needs {need} slots but half a Maglev table holds {half}; {fix}",
                s.id, s.scheduler.name()
            )));
        }
        let live = s.reals.iter().filter(|r| r.weight > 0).count();
        if live > dp.maglev_table_size as usize {
            out.push((
                Some(i),
                format!(
                    "service {} has {live} real servers, more than the Maglev table has slots ({})",
                    s.id, dp.maglev_table_size
                ),
            ));
        }
    }
    out
}

pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}
