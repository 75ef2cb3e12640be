//! Building valid IPv4 frames by hand (checksums included), for tests that
//! hand frames to a real kernel, which drops anything with a bad checksum.

use std::net::{Ipv4Addr, SocketAddrV4};

pub const ETH_IPV4: u16 = 0x0800;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// An Ethernet II frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The Internet checksum (RFC 1071) of `data` (an odd length padded with a
/// zero byte), folded into `sum` (a partial sum, such as a pseudo-header's;
/// 0 for none). A correct header sums, checksum included, to 0.
pub fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte IPv4 header (TTL 64, DF clear, checksum set) followed by `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    let total = u16::try_from(20 + payload.len()).expect("IPv4 packet over 64 KiB");
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(0, &p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An Ethernet frame (`macs`: destination, source) carrying a TCP SYN
/// from `src`:`sport` to `dst`:`dport`, checksums set; the sequence number
/// is the source address, so each source's SYN differs.
pub fn tcp_syn(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
) -> Vec<u8> {
    let (from, to) = (SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport));
    eth(
        macs.0,
        macs.1,
        ETH_IPV4,
        &tcp4(from, to, 0x02, u32::from(src)),
    )
}

/// An IPv4 packet carrying a UDP datagram, with the UDP checksum computed over
/// the pseudo-header.
pub fn udp4(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP datagram over 64 KiB");
    let mut u = Vec::with_capacity(usize::from(len));
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let pseudo = pseudo_header(src, dst, IPPROTO_UDP, len);
    // A computed 0 is sent as 0xffff: 0 means "no checksum" in UDP over IPv4.
    let c = match checksum(pseudo, &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4(*src.ip(), *dst.ip(), IPPROTO_UDP, &u)
}

/// `inner` (an IPv4 packet) encapsulated in IPv4 (protocol 4), as LVS-TUN sends it.
pub fn ipip(outer_src: Ipv4Addr, outer_dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    ipv4(outer_src, outer_dst, IPPROTO_IPIP, inner)
}

/// An IPv4 packet carrying a bare TCP segment (no options, no payload)
/// with `flags` and sequence number `seq`, TCP checksum computed.
pub fn tcp4(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, seq: u32) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = pseudo_header(src, dst, IPPROTO_TCP, 20);
    let c = checksum(pseudo, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(*src.ip(), *dst.ip(), IPPROTO_TCP, &t)
}

/// The IPv4 pseudo-header's sum, for a TCP or UDP checksum.
fn pseudo_header(src: SocketAddrV4, dst: SocketAddrV4, proto: u8, len: u16) -> u32 {
    [src.ip().octets(), dst.ip().octets()]
        .iter()
        .flat_map(|a| {
            [
                u16::from_be_bytes([a[0], a[1]]),
                u16::from_be_bytes([a[2], a[3]]),
            ]
        })
        .map(u32::from)
        .sum::<u32>()
        + u32::from(proto)
        + u32::from(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ones'-complement sum of 16-bit words; a correct checksum makes it 0xffff.
    fn ones_sum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn ipv4_header_matches_a_known_checksum() {
        // The classic example header: 45 00 00 73 00 00 40 00 40 11 [b861] c0a8 0001 c0a8 00c7.
        let mut h = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00,
            0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = checksum(0, &h);
        assert_eq!(c, 0xb861);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(ones_sum(&h), 0xffff);
    }

    #[test]
    fn udp4_checksums_verify() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 7777);
        let p = udp4(src, dst, b"odd-length");
        assert_eq!(p.len(), 20 + 8 + 10);
        assert_eq!(ones_sum(&p[..20]), 0xffff, "IPv4 header checksum");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
        pseudo.extend_from_slice(&p[24..26]);
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(ones_sum(&pseudo), 0xffff, "UDP checksum");
    }

    #[test]
    fn tcp_syn_checksums_verify() {
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 9), Ipv4Addr::new(10, 250, 0, 100));
        let f = tcp_syn(([2; 6], [4; 6]), src, 1024, dst, 80);
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!((&f[..6], &f[6..12]), (&[2u8; 6][..], &[4u8; 6][..]));
        let ip = &f[14..];
        assert_eq!(ones_sum(&ip[..20]), 0xffff, "IPv4 header checksum");
        assert_eq!(ip[9], IPPROTO_TCP);
        assert_eq!(ip[20 + 13], 0x02, "SYN alone");
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, IPPROTO_TCP, 0, 20]);
        pseudo.extend_from_slice(&ip[20..]);
        assert_eq!(ones_sum(&pseudo), 0xffff, "TCP checksum");
    }

    #[test]
    fn ipip_wraps_the_inner_packet() {
        let inner = udp4(
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 1),
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 2),
            b"x",
        );
        let outer = ipip(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            &inner,
        );
        assert_eq!(outer[9], IPPROTO_IPIP);
        assert_eq!(
            usize::from(u16::from_be_bytes([outer[2], outer[3]])),
            outer.len()
        );
        assert_eq!(&outer[20..], &inner[..]);
        assert_eq!(ones_sum(&outer[..20]), 0xffff);
    }
}
