//! The flow table's families: what the upkeep's last pass found (flows by
//! state, expired and evicted totals, the pass itself), read from `UPKEEP`
//! with the rest of the snapshot, and what the director counted as it
//! created flows (pickups, reused ports, stale entries). A scrape reads a
//! summary of fixed size: it costs the same with 10 flows or 1M.

use super::family::{Labels, family};
use crate::snapshot::{FlowSummary, PacketCounts};
use prometheus_client::{
    encoding::DescriptorEncoder,
    metrics::MetricType::{Counter, Gauge},
};

/// The families of `flows` and the director's flow counters `p`.
pub fn encode(
    encoder: &mut DescriptorEncoder,
    flows: &FlowSummary,
    p: PacketCounts,
) -> Result<(), std::fmt::Error> {
    let by_state: Vec<(Labels, u64)> = flows
        .states
        .iter()
        .map(|(s, n)| (vec![("state", s.clone())], *n))
        .collect();
    family(
        encoder,
        "xlb_flows",
        "Flows in the flow table by state, at the upkeep's last pass (PICKUP: first seen mid-stream)",
        Gauge,
        &by_state,
    )?;
    let counters = [
        (
            "xlb_flows_expired",
            "Flows the upkeep removed from the flow table after idling past their state's timeout",
            flows.expired,
        ),
        (
            "xlb_flows_evicted",
            "Flows the full flow table evicted (least recently used first) before they expired",
            flows.evicted,
        ),
        (
            "xlb_flows_pickup",
            "TCP flows created from a packet that is not a SYN (counted as no connection until proven)",
            p.pickups,
        ),
        (
            "xlb_flows_reused",
            "SYNs on a closed flow's ports that opened a new connection (conn_reuse_mode)",
            p.reused,
        ),
        (
            "xlb_flows_stale",
            "Flows found idle past their timeout by a packet, which was handled as a new flow",
            p.stale,
        ),
        (
            "xlb_upkeep_passes",
            "Passes of the flow table's upkeep over the whole table",
            flows.passes,
        ),
    ];
    for (name, help, value) in counters {
        family(encoder, name, help, Counter, &[(Vec::new(), value)])?;
    }
    // Seconds, Prometheus' base unit (promtool warns on milliseconds).
    let gauges = [
        (
            "xlb_upkeep_last_pass_seconds",
            "How long the upkeep's last pass took, pauses included",
            flows.last_pass_ms / 1000.0,
        ),
        (
            "xlb_upkeep_last_pass_age_seconds",
            "Time since the upkeep's last pass started (grows without bound if it is stuck)",
            flows.last_pass_age_s,
        ),
    ];
    for (name, help, value) in gauges {
        let metric = encoder.encode_descriptor(name, help, None, Gauge)?;
        prometheus_client::encoding::EncodeMetric::encode(
            &prometheus_client::metrics::gauge::ConstGauge::new(value),
            metric,
        )?;
    }
    Ok(())
}
