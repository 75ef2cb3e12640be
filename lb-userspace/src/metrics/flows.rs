//! Flows the agent's sweep removed from the flow table: expired (idle past
//! their state's timeout) and evicted (pushed out by the LRU when the table
//! was full, as in a SYN flood). The agent loop adds each sweep's counts
//! here; the collector reads them at scrape time.

use super::dataplane::family;
use crate::dataplane::FlowsRemoved;
use prometheus_client::{
    collector::Collector, encoding::DescriptorEncoder, metrics::MetricType::Counter,
};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Totals since the agent started; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct FlowCounters(Arc<Totals>);

#[derive(Debug, Default)]
struct Totals {
    expired: AtomicU64,
    evicted: AtomicU64,
}

impl FlowCounters {
    pub fn add(&self, removed: FlowsRemoved) {
        self.0.expired.fetch_add(removed.expired, Ordering::Relaxed);
        self.0.evicted.fetch_add(removed.evicted, Ordering::Relaxed);
    }

    fn get(&self) -> FlowsRemoved {
        FlowsRemoved {
            expired: self.0.expired.load(Ordering::Relaxed),
            evicted: self.0.evicted.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
pub struct FlowCollector {
    counters: FlowCounters,
}

impl FlowCollector {
    pub fn new(counters: FlowCounters) -> FlowCollector {
        FlowCollector { counters }
    }
}

impl Collector for FlowCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.counters.get();
        let families = [
            (
                "xlb_flows_expired",
                "Flows removed from the flow table after idling past their state's timeout",
                totals.expired,
            ),
            (
                "xlb_flows_evicted",
                "Flows the full flow table evicted (least recently used first) before they expired",
                totals.evicted,
            ),
        ];
        for (name, help, value) in families {
            family(&mut encoder, name, help, Counter, &[(Vec::new(), value)])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_add_up_and_are_exported_as_counters() {
        let counters = FlowCounters::default();
        counters.add(FlowsRemoved {
            expired: 3,
            evicted: 1000,
        });
        counters.add(FlowsRemoved {
            expired: 2,
            evicted: 24,
        });
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(FlowCollector::new(counters)));
        let text = crate::metrics::render(&registry).unwrap();
        assert!(text.contains("# TYPE xlb_flows_evicted counter"), "{text}");
        assert!(text.contains("\nxlb_flows_expired_total 5\n"), "{text}");
        assert!(text.contains("\nxlb_flows_evicted_total 1024\n"), "{text}");
    }
}
