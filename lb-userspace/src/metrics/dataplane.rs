//! The data plane's families, read from the pinned maps at each scrape (as
//! `xlb status` reads them): per-service and per-real packets, bytes, new
//! connections, live active/inactive connections, weights, reachability;
//! the XDP program's fates per packet; and map fill levels.

use crate::status::{Detail, RealStatus, ServiceStatus, Snapshot};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use std::path::{Path, PathBuf};
use tracing::warn;

#[derive(Debug)]
pub struct DataplaneCollector {
    pin_dir: PathBuf,
}

impl DataplaneCollector {
    pub fn new(pin_dir: &Path) -> DataplaneCollector {
        DataplaneCollector {
            pin_dir: pin_dir.to_path_buf(),
        }
    }
}

pub(super) type Labels = Vec<(&'static str, String)>;

/// A family read off each service or real: name, help, type, value.
type Spec<'a, T> = (&'a str, &'a str, MetricType, &'a dyn Fn(&T) -> u64);

/// One family: its samples, each a label set and a value.
pub(super) fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let sample = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*value).encode(sample)?,
            _ => ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX)).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for DataplaneCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let detail = Detail {
            persistent_conns: false,
            map_fill: true,
        };
        let snap = match Snapshot::read(&self.pin_dir, detail) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "metrics: reading the data plane's maps failed");
                None
            }
        };
        let up = u64::from(snap.is_some());
        family(
            &mut encoder,
            "xlb_dataplane_up",
            "1 if the data plane's maps could be read for this scrape",
            MetricType::Gauge,
            &[(Vec::new(), up)],
        )?;
        let Some(snap) = snap else { return Ok(()) };

        let svc_labels = |s: &ServiceStatus| -> Labels {
            vec![
                ("protocol", s.protocol.clone()),
                ("vip", s.vip.to_string()),
                ("port", s.port.to_string()),
            ]
        };
        let per_service = |f: &dyn Fn(&ServiceStatus) -> u64| -> Vec<(Labels, u64)> {
            snap.services
                .iter()
                .map(|s| (svc_labels(s), f(s)))
                .collect()
        };
        let per_real = |f: &dyn Fn(&RealStatus) -> u64| -> Vec<(Labels, u64)> {
            snap.services
                .iter()
                .flat_map(|s| {
                    s.reals.iter().map(move |r| {
                        let mut l = svc_labels(s);
                        l.push(("real", r.address.to_string()));
                        l.push(("real_port", r.port.to_string()));
                        (l, f(r))
                    })
                })
                .collect()
        };
        use MetricType::{Counter, Gauge};
        let service_families: [Spec<ServiceStatus>; 3] = [
            (
                "xlb_service_packets",
                "Packets the director forwarded for the service",
                Counter,
                &|s| s.stats.packets,
            ),
            (
                "xlb_service_bytes",
                "Bytes the director forwarded for the service",
                Counter,
                &|s| s.stats.bytes,
            ),
            (
                "xlb_service_connections",
                "New connections scheduled for the service",
                Counter,
                &|s| s.stats.connections,
            ),
        ];
        for (name, help, kind, f) in service_families {
            family(&mut encoder, name, help, kind, &per_service(f))?;
        }
        let real_families: [Spec<RealStatus>; 7] = [
            (
                "xlb_real_packets",
                "Packets the director forwarded to the real server",
                Counter,
                &|r| r.stats.packets,
            ),
            (
                "xlb_real_bytes",
                "Bytes the director forwarded to the real server",
                Counter,
                &|r| r.stats.bytes,
            ),
            (
                "xlb_real_connections",
                "New connections scheduled to the real server",
                Counter,
                &|r| r.stats.connections,
            ),
            (
                "xlb_real_active_connections",
                "Live connections in SYN_RECV or ESTABLISHED (ipvsadm ActiveConn)",
                Gauge,
                &|r| r.active_conns,
            ),
            (
                "xlb_real_inactive_connections",
                "Other live connections (ipvsadm InActConn)",
                Gauge,
                &|r| r.inactive_conns,
            ),
            ("xlb_real_weight", "Configured weight", Gauge, &|r| {
                u64::from(r.weight)
            }),
            (
                "xlb_real_reachable",
                "1 while the real's next hop is known (it takes new connections)",
                Gauge,
                &|r| u64::from(r.reachable),
            ),
        ];
        for (name, help, kind, f) in real_families {
            family(&mut encoder, name, help, kind, &per_real(f))?;
        }

        let p = snap.packets;
        let action = |a: &str, v: u64| (vec![("fate", a.to_string())], v);
        family(
            &mut encoder,
            "xlb_xdp_packets",
            "Packets by what the XDP program did with them (fate)",
            Counter,
            &[
                action("tx", p.tx),
                action("redirect", p.redirect),
                action("pass", p.pass),
                action("drop", p.drop),
                action("error", p.error),
            ],
        )?;
        let reason = |a: &str, v: u64| (vec![("reason", a.to_string())], v);
        family(
            &mut encoder,
            "xlb_xdp_pass_reason_packets",
            "Of the passed packets: why, when it was not simply traffic for no service",
            Counter,
            &[
                reason("malformed", p.malformed),
                reason("fragment", p.fragments),
            ],
        )?;
        family(
            &mut encoder,
            "xlb_xdp_icmp_too_big",
            "ICMP fragmentation-needed / packet-too-big answers sent to clients (of tx)",
            Counter,
            &[(Vec::new(), p.icmp_too_big)],
        )?;
        let fill: Vec<(Labels, u64)> = snap
            .maps
            .iter()
            .map(|m| (vec![("map", m.name.clone())], m.entries))
            .collect();
        family(
            &mut encoder,
            "xlb_map_entries",
            "Entries in the map",
            Gauge,
            &fill,
        )?;
        let capacity: Vec<(Labels, u64)> = snap
            .maps
            .iter()
            .map(|m| (vec![("map", m.name.clone())], m.capacity))
            .collect();
        family(
            &mut encoder,
            "xlb_map_capacity",
            "The map's max_entries",
            Gauge,
            &capacity,
        )?;
        Ok(())
    }
}
