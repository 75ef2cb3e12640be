//! VRRP's families, read at each scrape from the instances' shared counters
//! ([`crate::vrrp::counters::Counters`], the same numbers `xlb status` shows).

use super::family::{Labels, family};
use crate::vrrp::{counters::Counters, state::State};
use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::MetricType::{Counter, Gauge},
};

#[derive(Debug)]
pub struct VrrpCollector {
    counters: Counters,
}

impl VrrpCollector {
    pub fn new(counters: Counters) -> VrrpCollector {
        VrrpCollector { counters }
    }
}

const STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

impl Collector for VrrpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.counters.snapshot();
        let name = |n: &str| -> Labels { vec![("instance", n.to_string())] };
        // One sample per state, 1 for the current one (the usual enum encoding).
        let states: Vec<(Labels, u64)> = snap
            .instances
            .iter()
            .flat_map(|i| {
                STATES.iter().map(move |s| {
                    let mut l = name(&i.name);
                    l.push(("state", s.name().to_string()));
                    (l, u64::from(i.state == s.name()))
                })
            })
            .collect();
        family(
            &mut encoder,
            "xlb_vrrp_state",
            "1 for the state the instance is in (INIT, BACKUP, MASTER, FAULT)",
            Gauge,
            &states,
        )?;
        type Field = fn(&crate::vrrp::counters::InstanceStatus) -> u64;
        let per_instance: [(&str, &str, _, Field); 7] = [
            (
                "xlb_vrrp_priority",
                "Effective priority (configured, moved by tracking)",
                Gauge,
                |i| u64::from(i.priority),
            ),
            (
                "xlb_vrrp_base_priority",
                "Configured priority",
                Gauge,
                |i| u64::from(i.base_priority),
            ),
            ("xlb_vrrp_transitions", "State changes", Counter, |i| {
                i.transitions
            }),
            (
                "xlb_vrrp_became_master",
                "Changes into MASTER",
                Counter,
                |i| i.became_master,
            ),
            ("xlb_vrrp_adverts_sent", "Adverts sent", Counter, |i| {
                i.adverts_sent
            }),
            (
                "xlb_vrrp_adverts_received",
                "Valid adverts received",
                Counter,
                |i| i.adverts_received,
            ),
            (
                "xlb_vrrp_lower_priority_adverts",
                "Valid adverts with a lower priority heard as Master (another node believed it was Master)",
                Counter,
                |i| i.lower_priority,
            ),
        ];
        for (metric, help, kind, f) in per_instance {
            let samples: Vec<(Labels, u64)> = snap
                .instances
                .iter()
                .map(|i| (name(&i.name), f(i)))
                .collect();
            family(&mut encoder, metric, help, kind, &samples)?;
        }
        let discards: Vec<(Labels, u64)> = snap
            .instances
            .iter()
            .flat_map(|i| {
                i.discards.iter().map(|(reason, n)| {
                    let mut l = name(&i.name);
                    l.push(("reason", reason.clone()));
                    (l, *n)
                })
            })
            .collect();
        family(
            &mut encoder,
            "xlb_vrrp_adverts_discarded",
            "Adverts dropped, by reason (ttl, version, vrid, checksum, auth_pass, ...)",
            Counter,
            &discards,
        )
    }
}
