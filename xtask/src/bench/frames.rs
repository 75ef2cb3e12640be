//! The frames the bench feeds its programs: Ethernet, IPv4 or IPv6, TCP or UDP,
//! with a valid IPv4 header checksum. Transport checksums are left 0: no path
//! measured here reads them (UDP over IPv4 allows 0 for "none").

use std::net::{Ipv4Addr, Ipv6Addr};
use xlb_testbed::frames::checksum;
pub use xlb_testbed::frames::eth;

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const TCP: u8 = lb_common::PROTO_TCP;
pub const UDP: u8 = lb_common::PROTO_UDP;
pub const ICMP: u8 = 1;

/// A TCP header (SYN, no options) or a UDP header with `payload`.
pub fn l4(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ports = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
    if proto == TCP {
        let mut h = ports;
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        h.extend_from_slice(payload);
        h
    } else {
        let len = (8 + payload.len()) as u16;
        [&ports[..], &len.to_be_bytes(), &[0, 0], payload].concat()
    }
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(0, &h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[proto, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(l4);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksums_to_zero() {
        let p = ipv4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            UDP,
            &l4(UDP, 1, 2, b"x"),
        );
        assert_eq!(checksum(0, &p[..20]), 0);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
    }

    #[test]
    fn headers_have_their_sizes() {
        assert_eq!(l4(TCP, 1, 2, &[]).len(), 20);
        assert_eq!(l4(UDP, 1, 2, b"abc").len(), 11);
        let f = eth(
            [1; 6],
            [2; 6],
            ETH_IPV6,
            &ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, TCP, &[0; 20]),
        );
        assert_eq!(f.len(), 14 + 40 + 20);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
    }
}
