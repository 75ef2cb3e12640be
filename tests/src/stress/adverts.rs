//! Lower-priority adverts aimed at the Master: a stream of valid VRRPv3
//! adverts crafted in the observer's namespace, or keepalived as a peer
//! that cannot hear the group (the observer drops incoming VRRP), so it
//! stays Master at its lower priority and advertises every interval.
//!
//! The advert is built here rather than with xlb's encoder, for the reason
//! `advert_watch` parses by hand: the lab is a peer of the daemon it
//! loads, not a reuse of its code.

use crate::{
    frames::checksum,
    netns::Netns,
    vrrp::{Keepalived, TempDir},
    worker::Worker,
};
use anyhow::Result;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const PROTO_VRRP: u8 = 112;
/// DSCP CS6, as keepalived sends its adverts.
const TOS_CS6: u32 = 0xc0;
/// keepalived's virtual addresses go on this veth of the observer's (its
/// peer `KA_PEER` is the only thing on the other end), so its gratuitous
/// ARPs reach no one on the lab's bridge.
const KA_DEV: &str = "ka0";
const KA_PEER: &str = "ka1";

/// A VRRPv3 advertisement (RFC 9568 §5.1) from `src` to 224.0.0.18: the
/// VRRP message alone, its checksum over the IPv4 pseudo-header.
pub fn v3_advert(
    src: Ipv4Addr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[Ipv4Addr],
) -> Vec<u8> {
    let mut m = vec![0x31, vrid, priority, vips.len() as u8];
    m.extend_from_slice(&(interval_cs & 0x0fff).to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    for v in vips {
        m.extend_from_slice(&v.octets());
    }
    let mut pseudo: u32 = 0;
    for a in [src.octets(), GROUP.octets()] {
        pseudo += u32::from(u16::from_be_bytes([a[0], a[1]]));
        pseudo += u32::from(u16::from_be_bytes([a[2], a[3]]));
    }
    pseudo += u32::from(PROTO_VRRP) + m.len() as u32;
    let c = checksum(pseudo, &m);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    m
}

/// Sends a crafted advert `rate` times a second until `count` are sent,
/// `limit` passes or it is stopped.
pub struct AdvertStream {
    worker: Worker<u64>,
}

impl AdvertStream {
    /// `advert` (from [`v3_advert`]) from `src`, an address of `ns`, with
    /// TTL 255 as the RFC requires.
    pub fn start(
        ns: &Netns,
        src: Ipv4Addr,
        advert: Vec<u8>,
        rate: u32,
        count: u64,
        limit: Duration,
    ) -> Result<AdvertStream> {
        let sock = ns.enter(move || -> Result<Socket> {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
            s.set_multicast_if_v4(&src)?;
            s.set_multicast_ttl_v4(255)?;
            s.set_multicast_loop_v4(false)?;
            s.set_tos_v4(TOS_CS6)?;
            Ok(s)
        })??;
        let worker = Worker::spawn("stress-adverts", move |stop| {
            let to = SockAddr::from(SocketAddr::new(IpAddr::V4(GROUP), 0));
            let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let start = Instant::now();
            let (mut n, mut sent) = (0u64, 0u64);
            while n < count && start.elapsed() < limit && !stop.load(Ordering::Relaxed) {
                if sock.send_to(&advert, &to).is_ok() {
                    sent += 1;
                }
                n += 1;
                let due = start + every.mul_f64(n as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sent
        })?;
        Ok(AdvertStream { worker })
    }

    /// Stops the stream: adverts sent.
    pub fn finish(self) -> Result<u64> {
        self.worker.finish()
    }
}

/// Makes `ns` deaf to VRRP (an nftables rule drops every incoming advert;
/// capture sockets still see them) and gives it the veth keepalived's
/// virtual addresses go on. Once per namespace.
pub fn prepare_deaf_peer(ns: &Netns) -> Result<()> {
    ns.run("nft", &["add", "table", "inet", "xlb_stress"])?;
    ns.run(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "xlb_stress",
            "input",
            "{ type filter hook input priority 0; }",
        ],
    )?;
    ns.run(
        "nft",
        &[
            "add",
            "rule",
            "inet",
            "xlb_stress",
            "input",
            "ip",
            "protocol",
            "vrrp",
            "drop",
        ],
    )?;
    ns.run(
        "ip",
        &[
            "link", "add", KA_DEV, "type", "veth", "peer", "name", KA_PEER,
        ],
    )?;
    for dev in [KA_DEV, KA_PEER] {
        ns.run("ip", &["link", "set", dev, "up"])?;
    }
    Ok(())
}

/// keepalived in `ns` (made deaf by [`prepare_deaf_peer`]) in the group
/// `vrid` at `priority`, VRRPv3 every `interval_cs`, announcing `vip`.
pub fn deaf_keepalived(
    ns: &Netns,
    dir: &TempDir,
    tag: &str,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vip: Ipv4Addr,
) -> Result<Keepalived> {
    let conf = format!(
        "global_defs {{\n  router_id stress-peer\n  vrrp_version 3\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  \
         priority {priority}\n  advert_int {}\n  virtual_ipaddress {{\n    {vip}/32 dev {KA_DEV}\n  }}\n}}\n",
        f64::from(interval_cs) / 100.0
    );
    Keepalived::start(ns, dir, tag, &conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{advert_watch, frames};

    #[test]
    fn the_advert_checksums_over_the_pseudo_header_and_parses() {
        let src = Ipv4Addr::new(10, 250, 0, 200);
        let vip = Ipv4Addr::new(10, 250, 0, 100);
        let m = v3_advert(src, 51, 50, 10, &[vip]);
        assert_eq!(m.len(), 12);
        assert_eq!(&m[..6], &[0x31, 51, 50, 1, 0, 10]);
        assert_eq!(&m[8..], &vip.octets());
        let mut pseudo = [src.octets(), GROUP.octets()].concat();
        pseudo.extend_from_slice(&[0, PROTO_VRRP, 0, m.len() as u8]);
        pseudo.extend_from_slice(&m);
        assert_eq!(checksum(0, &pseudo), 0, "the checksum verifies");
        // As the watcher on the wire reads it.
        let ip = frames::ipv4(src, GROUP, PROTO_VRRP, &[], 0, &m);
        let frame = frames::eth([1, 0, 0x5e, 0, 0, 0x12], [2; 6], frames::ETH_IPV4, &ip);
        let heard = advert_watch::parse(&frame).unwrap();
        assert_eq!(
            (heard.src, heard.version, heard.vrid, heard.priority),
            (src, 3, 51, 50)
        );
    }
}
