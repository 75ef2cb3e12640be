//! The kernel's IPVS as a [`Snapshot`], so `xlb status`, the
//! SIGUSR1/SIGUSR2 dumps and the IPVS data plane show the same listing the
//! XDP maps give.

use super::{PacketCounts, PersistenceStatus, Plane, RealStatus, ServiceStatus, Snapshot};
use crate::config::ServiceId;
use crate::ipvs::{
    DestEntry, Ipvs, ServiceEntry,
    types::{fwd_name, mask, svc_flags},
};
use anyhow::Result;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Every service and destination the kernel's IPVS holds.
pub fn read(ipvs: &mut Ipvs) -> Result<Snapshot> {
    Ok(from_entries(ipvs.listing()?))
}

fn stats(s: crate::ipvs::Stats) -> super::Stats {
    super::Stats {
        connections: s.conns,
        packets: s.inpkts,
        bytes: s.inbytes,
    }
}

fn real(id: u32, d: &DestEntry) -> RealStatus {
    RealStatus {
        id,
        address: d.addr,
        port: d.port,
        forward: fwd_name(d.fwd).to_string(),
        weight: d.weight,
        // IPVS keeps no next hops and lists no removed destination.
        reachable: true,
        draining: false,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: d.tun_type,
        tun_port: d.tun_port,
        active_conns: u64::from(d.active),
        inactive_conns: u64::from(d.inactive),
        persistent_conns: Some(u64::from(d.persistent)),
        stats: stats(d.stats),
    }
}

/// Services in XDP's order (protocol, address, port; fwmark services last),
/// each with its destinations by address; ids number them in that order.
pub fn from_entries(mut listing: Vec<(ServiceEntry, Vec<DestEntry>)>) -> Snapshot {
    let key = |s: &ServiceEntry| match s.id {
        ServiceId::Addr {
            vip,
            port,
            protocol,
        } => (0, protocol.number(), vip, port, 0),
        ServiceId::Fwmark { mark, ipv6 } => (1, 0, unspecified(ipv6), 0, mark),
    };
    listing.sort_by_key(|(s, _)| key(s));
    let mut next_real = 0;
    let services = listing
        .iter_mut()
        .enumerate()
        .map(|(i, (s, dests))| {
            dests.sort_by_key(|d| (d.addr, d.port));
            let (protocol, vip, port, fwmark, ipv6) = match s.id {
                ServiceId::Addr {
                    vip,
                    port,
                    protocol,
                } => (protocol.to_string(), vip, port, None, vip.is_ipv6()),
                ServiceId::Fwmark { mark, ipv6 } => {
                    ("FWM".to_string(), unspecified(ipv6), 0, Some(mark), ipv6)
                }
            };
            let reals = dests
                .iter()
                .map(|d| {
                    next_real += 1;
                    real(next_real - 1, d)
                })
                .collect();
            ServiceStatus {
                id: i as u32,
                protocol,
                fwmark,
                vip,
                port,
                scheduler: s.scheduler.clone(),
                // IPVS has no inactive service: a Backup's stays programmed
                // and forwards nothing because the VIP is not local there.
                active: true,
                hash_port: s.flags & svc_flags::SCHED2 != 0,
                fallback: s.flags & svc_flags::SCHED1 != 0,
                persistence: (s.flags & svc_flags::PERSISTENT != 0).then(|| PersistenceStatus {
                    timeout_s: s.timeout,
                    mask: mask(s.netmask, ipv6),
                }),
                stats: stats(s.stats),
                reals,
            }
        })
        .collect();
    Snapshot {
        data_plane: Plane::Ipvs,
        pin_path: None,
        services,
        packets: PacketCounts::default(),
        maps: Vec::new(),
        flows: None,
    }
}

fn unspecified(ipv6: bool) -> IpAddr {
    if ipv6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use crate::ipvs::{Stats, types::fwd};

    fn dest(addr: &str, weight: u32, active: u32) -> DestEntry {
        DestEntry {
            addr: addr.parse().unwrap(),
            port: 80,
            fwd: fwd::DROUTE,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            active,
            inactive: 1,
            persistent: 2,
            stats: Stats {
                conns: 7,
                inpkts: 70,
                inbytes: 7000,
                ..Stats::default()
            },
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
        }
    }

    #[test]
    fn services_and_destinations_become_the_status_listing() {
        let persistent = ServiceEntry {
            id: ServiceId::Addr {
                vip: "10.0.0.1".parse().unwrap(),
                port: 443,
                protocol: Protocol::Tcp,
            },
            scheduler: "mh".into(),
            flags: svc_flags::PERSISTENT | svc_flags::HASHED | svc_flags::SCHED2,
            timeout: 300,
            netmask: u32::from_ne_bytes([255, 255, 255, 0]),
            pe_name: None,
            stats: Stats::default(),
        };
        let fwm = ServiceEntry {
            id: ServiceId::Fwmark {
                mark: 7,
                ipv6: true,
            },
            scheduler: "rr".into(),
            flags: svc_flags::PERSISTENT,
            timeout: 60,
            netmask: 64,
            pe_name: None,
            stats: Stats::default(),
        };
        let udp = ServiceEntry {
            id: ServiceId::Addr {
                vip: "10.0.0.1".parse().unwrap(),
                port: 53,
                protocol: Protocol::Udp,
            },
            scheduler: "wrr".into(),
            flags: svc_flags::HASHED,
            timeout: 0,
            netmask: u32::MAX,
            pe_name: None,
            stats: Stats {
                conns: 3,
                inpkts: 4,
                inbytes: 5,
                ..Stats::default()
            },
        };
        let snap = from_entries(vec![
            (fwm, vec![]),
            (udp, vec![]),
            (
                persistent,
                vec![dest("10.0.1.12", 2, 0), dest("10.0.1.11", 1, 3)],
            ),
        ]);
        assert_eq!(snap.data_plane, Plane::Ipvs);
        assert_eq!(snap.pin_path, None);
        let order: Vec<(&str, u16, Option<u32>)> = snap
            .services
            .iter()
            .map(|s| (s.protocol.as_str(), s.port, s.fwmark))
            .collect();
        assert_eq!(
            order,
            [("TCP", 443, None), ("UDP", 53, None), ("FWM", 0, Some(7))]
        );
        let tcp = &snap.services[0];
        assert!(tcp.hash_port && !tcp.fallback && tcp.active);
        assert_eq!(
            tcp.persistence,
            Some(PersistenceStatus {
                timeout_s: 300,
                mask: "255.255.255.0".parse().unwrap()
            })
        );
        let reals: Vec<(u32, String, u32, u64)> = tcp
            .reals
            .iter()
            .map(|r| (r.id, r.address.to_string(), r.weight, r.active_conns))
            .collect();
        assert_eq!(
            reals,
            [
                (0, "10.0.1.11".to_string(), 1, 3),
                (1, "10.0.1.12".to_string(), 2, 0)
            ]
        );
        let r = &tcp.reals[0];
        assert_eq!(r.forward, "Route");
        assert_eq!((r.inactive_conns, r.persistent_conns), (1, Some(2)));
        assert_eq!(
            r.stats,
            crate::snapshot::Stats {
                connections: 7,
                packets: 70,
                bytes: 7000
            }
        );
        assert_eq!(snap.services[1].persistence, None);
        assert_eq!(
            snap.services[1].stats,
            crate::snapshot::Stats {
                connections: 3,
                packets: 4,
                bytes: 5
            }
        );
        let fwm = &snap.services[2];
        assert_eq!(fwm.vip, IpAddr::from(Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            fwm.persistence.unwrap().mask,
            "ffff:ffff:ffff:ffff::".parse::<IpAddr>().unwrap()
        );
    }
}
