//! The data plane's families, read at each scrape where the running plane
//! keeps its state (as `xlb status` reads it): XDP's pinned maps, or the
//! kernel's IPVS. Per-service and per-real packets, bytes, new connections,
//! live active/inactive connections, weights, reachability; and, from XDP
//! only, the program's fates per packet and map fill levels (IPVS has
//! neither, so those families are left out rather than sent as zeros).

use super::family::{Labels, family};
use crate::snapshot::{Detail, Plane, RealStatus, Running, ServiceStatus, Snapshot};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, metrics::MetricType};
use std::path::Path;
use tracing::warn;

#[derive(Debug)]
pub struct DataplaneCollector {
    source: Running,
}

impl DataplaneCollector {
    pub fn new(plane: Plane, pin_dir: &Path) -> DataplaneCollector {
        DataplaneCollector {
            source: Running::of(plane, pin_dir),
        }
    }

    fn read(&self) -> anyhow::Result<Snapshot> {
        self.source.read(Detail {
            persistent_conns: false,
            map_fill: true,
        })
    }
}

/// A family read off each service or real: name, help, type, value.
type Spec<'a, T> = (&'a str, &'a str, MetricType, &'a dyn Fn(&T) -> u64);

impl Collector for DataplaneCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = match self.read() {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %crate::logging::chain(&e), "metrics: reading the data plane failed");
                None
            }
        };
        encode_snapshot(encoder, snap.as_ref())
    }
}

/// `snap`'s families; `None` (the data plane could not be read) gives only
/// `xlb_dataplane_up 0`.
fn encode_snapshot(
    mut encoder: DescriptorEncoder,
    snap: Option<&Snapshot>,
) -> Result<(), std::fmt::Error> {
    let up = u64::from(snap.is_some());
    family(
        &mut encoder,
        "xlb_dataplane_up",
        "1 if the data plane (XDP's maps, or the kernel's IPVS) could be read for this scrape",
        MetricType::Gauge,
        &[(Vec::new(), up)],
    )?;
    let Some(snap) = snap else { return Ok(()) };

    // Firewall-mark services (IPVS only) as the checkers' and Maglev's
    // families name them: their address and port are all zero.
    let svc_labels = |s: &ServiceStatus| -> Labels {
        match s.fwmark {
            Some(mark) => vec![("service", format!("FWM {mark}"))],
            None => vec![
                ("protocol", s.protocol.clone()),
                ("vip", s.vip.to_string()),
                ("port", s.port.to_string()),
            ],
        }
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
    if snap.data_plane == Plane::Xdp {
        xdp_families(&mut encoder, snap)?;
    }
    Ok(())
}

/// What only the XDP program counts: its fates per packet, its maps' fill
/// (as the upkeep last counted it) and the flow table's families.
fn xdp_families(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let p = snap.packets;
    let action = |a: &str, v: u64| (vec![("fate", a.to_string())], v);
    family(
        encoder,
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
        encoder,
        "xlb_xdp_pass_reason_packets",
        "Of the passed packets: why, when it was not simply traffic for no service",
        Counter,
        &[
            reason("malformed", p.malformed),
            reason("fragment", p.fragments),
        ],
    )?;
    family(
        encoder,
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
        encoder,
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
        encoder,
        "xlb_map_capacity",
        "The map's max_entries",
        Gauge,
        &capacity,
    )?;
    if let Some(flows) = &snap.flows {
        super::flows::encode(encoder, flows, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{MapFill, PacketCounts, Stats};
    use prometheus_client::registry::Registry;

    /// A collector encoding a fixed snapshot, as the real one encodes what it read.
    #[derive(Debug)]
    struct Fixed(Option<Snapshot>);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            encode_snapshot(encoder, self.0.as_ref())
        }
    }

    fn render(collector: impl Collector) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        crate::metrics::render(&registry).unwrap()
    }

    fn stats(connections: u64) -> Stats {
        Stats {
            connections,
            packets: 10 * connections,
            bytes: 1000 * connections,
        }
    }

    /// A service with one real at 10.0.1.1:80 that took all its `conns`.
    fn service(protocol: &str, fwmark: Option<u32>, conns: u64) -> ServiceStatus {
        let vip = if fwmark.is_some() {
            "0.0.0.0"
        } else {
            "10.0.0.1"
        };
        ServiceStatus {
            id: 0,
            protocol: protocol.to_string(),
            fwmark,
            vip: vip.parse().unwrap(),
            port: if fwmark.is_some() { 0 } else { 80 },
            scheduler: "rr".into(),
            active: true,
            hash_port: false,
            fallback: false,
            persistence: None,
            stats: stats(conns),
            reals: vec![RealStatus {
                id: 0,
                address: "10.0.1.1".parse().unwrap(),
                port: 80,
                forward: "Route".into(),
                weight: 2,
                reachable: true,
                draining: false,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: 0,
                tun_port: 0,
                active_conns: 1,
                inactive_conns: 0,
                persistent_conns: None,
                stats: stats(conns),
            }],
        }
    }

    fn snapshot(data_plane: Plane) -> Snapshot {
        Snapshot {
            data_plane,
            pin_path: None,
            services: vec![service("TCP", None, 7), service("FWM", Some(9), 3)],
            packets: PacketCounts {
                tx: 5,
                ..PacketCounts::default()
            },
            maps: vec![MapFill {
                name: "CONNTRACK".into(),
                entries: 4,
                capacity: 64,
            }],
            flows: (data_plane == Plane::Xdp).then(|| crate::snapshot::FlowSummary {
                passes: 3,
                last_pass_age_s: 1.5,
                last_pass_ms: 2.0,
                flows: 4,
                states: [("ESTABLISHED".to_string(), 3), ("PICKUP".to_string(), 1)].into(),
                expired: 5,
                evicted: 1024,
            }),
        }
    }

    const TCP_REAL: &str =
        r#"{protocol="TCP",vip="10.0.0.1",port="80",real="10.0.1.1",real_port="80"}"#;

    #[test]
    fn ipvs_gives_services_and_reals_without_xdp_families() {
        let text = render(Fixed(Some(snapshot(Plane::Ipvs))));
        for line in [
            "xlb_dataplane_up 1".to_string(),
            format!("xlb_real_connections_total{TCP_REAL} 7"),
            format!("xlb_real_packets_total{TCP_REAL} 70"),
            format!("xlb_real_weight{TCP_REAL} 2"),
            // A fwmark service is named by its mark, so two never share labels.
            r#"xlb_service_connections_total{service="FWM 9"} 3"#.to_string(),
            r#"xlb_real_bytes_total{service="FWM 9",real="10.0.1.1",real_port="80"} 3000"#
                .to_string(),
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line}\n{text}");
        }
        assert!(!text.contains("xlb_xdp_"), "{text}");
        assert!(!text.contains("xlb_map_"), "{text}");
        assert!(!text.contains("xlb_flows"), "{text}");
    }

    #[test]
    fn xdp_adds_its_fates_and_map_fill() {
        let text = render(Fixed(Some(snapshot(Plane::Xdp))));
        for line in [
            format!("xlb_real_connections_total{TCP_REAL} 7"),
            r#"xlb_xdp_packets_total{fate="tx"} 5"#.to_string(),
            r#"xlb_map_entries{map="CONNTRACK"} 4"#.to_string(),
            r#"xlb_map_capacity{map="CONNTRACK"} 64"#.to_string(),
            r#"xlb_flows{state="PICKUP"} 1"#.to_string(),
            "xlb_flows_expired_total 5".to_string(),
            "xlb_flows_evicted_total 1024".to_string(),
            "xlb_upkeep_passes_total 3".to_string(),
            "xlb_upkeep_last_pass_age_seconds 1.5".to_string(),
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line}\n{text}");
        }
    }

    #[test]
    fn an_unreadable_plane_is_down_with_nothing_else() {
        let text = render(Fixed(None));
        assert!(text.contains("\nxlb_dataplane_up 0\n"), "{text}");
        assert!(!text.contains("xlb_real_"), "{text}");
        // The XDP source reads the pin directory it was given.
        let dir = Path::new("/nonexistent/xlb-metrics-test");
        let text = render(DataplaneCollector::new(Plane::Xdp, dir));
        assert!(text.contains("\nxlb_dataplane_up 0\n"), "{text}");
    }
}
