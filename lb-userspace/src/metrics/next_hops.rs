//! What keeping next hops fresh costs: passes over every real's next hop
//! (at start, at reload, every refresh), the neighbour table dumps they
//! made (one per pass unless a pass waited for missing entries), and how
//! long the latest pass took. Read from the resolver's counters at scrape time.

use super::family::family;
use crate::neigh::Counters;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType::{Counter, Gauge},
        gauge::ConstGauge,
    },
};

#[derive(Debug)]
pub struct NextHopCollector {
    counters: Counters,
}

impl NextHopCollector {
    pub fn new(counters: Counters) -> NextHopCollector {
        NextHopCollector { counters }
    }
}

impl Collector for NextHopCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = self.counters.get();
        family(
            &mut encoder,
            "xlb_next_hop_passes",
            "Passes over every real server's next hop (start, reload, each refresh)",
            Counter,
            &[(Vec::new(), t.passes)],
        )?;
        family(
            &mut encoder,
            "xlb_neighbour_dumps",
            "Reads of the whole neighbour table: one per pass, more only while a pass waits for missing entries",
            Counter,
            &[(Vec::new(), t.dumps)],
        )?;
        let metric = encoder.encode_descriptor(
            "xlb_next_hop_last_pass_seconds",
            "How long the latest pass over every real server's next hop took",
            None,
            Gauge,
        )?;
        ConstGauge::new(t.last_pass.as_secs_f64()).encode(metric)
    }
}
