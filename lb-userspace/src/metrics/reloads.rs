//! Reloads (SIGHUP, `xlb reload`) by outcome: a failed one left the
//! previous config in force, which an operator wants to alert on.

use super::family::family;
use prometheus_client::{
    collector::Collector, encoding::DescriptorEncoder, metrics::MetricType::Counter,
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Totals since the agent started; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ReloadCounters(Arc<[AtomicU64; 2]>);

impl ReloadCounters {
    pub fn count(&self, ok: bool) {
        self.0[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct ReloadCollector {
    counters: ReloadCounters,
}

impl ReloadCollector {
    pub fn new(counters: ReloadCounters) -> ReloadCollector {
        ReloadCollector { counters }
    }
}

impl Collector for ReloadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples: Vec<_> = ["ok", "failed"]
            .into_iter()
            .zip(self.counters.0.iter())
            .map(|(result, n)| {
                (
                    vec![("result", result.to_string())],
                    n.load(Ordering::Relaxed),
                )
            })
            .collect();
        family(
            &mut encoder,
            "xlb_reloads",
            "Config reloads by result; a failed one changed nothing",
            Counter,
            &samples,
        )
    }
}
