//! The one frame builder of the tests, the fixture table, the fuzz model's
//! self-checks and the bench: Ethernet (802.1Q tag optional), IPv4 (options,
//! fragments, every header field), IPv6 (traffic class, flow label,
//! extension headers), TCP, UDP, ICMP/ICMPv6 messages, IPIP and GUE, with
//! the checksums computed here, independently of the data plane (a real
//! kernel drops anything with a bad one). Malformed variants are made by
//! cutting or editing what these return.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;
pub const ETH_ARP: u16 = 0x0806;

pub const IP_ICMP: u8 = 1;
pub const IP_IPIP: u8 = 4;
pub const IP_TCP: u8 = 6;
pub const IP_UDP: u8 = 17;
/// IPv6 in IP (an IPv6 inner packet in IPIP or GUE).
pub const IP_IPV6: u8 = 41;
pub const IP_ICMPV6: u8 = 58;
/// IPv6 extension headers.
pub const IP6_HOP: u8 = 0;
pub const IP6_FRAG: u8 = 44;
pub const IP6_DEST: u8 = 60;

/// TCP flags.
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const FIN_ACK: u8 = 0x11;

/// An Ethernet II frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An 802.1Q-tagged frame.
pub fn eth_vlan(dst: [u8; 6], src: [u8; 6], vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = vid.to_be_bytes().to_vec();
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    eth(dst, src, ETH_VLAN, &inner)
}

/// `frame` with its destination and source MACs replaced.
pub fn with_macs(frame: &[u8], dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
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

/// An IPv4 header with every field chosen; [`Ipv4::packet`] adds the
/// payload and the header checksum.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub id: u16,
    /// Flags and fragment offset (0x4000: DF; 0x2000: MF).
    pub frag: u16,
    /// A multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl Ipv4 {
    /// TOS 0, id 0x1234, no flags, no options, TTL 64.
    pub fn new(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>, proto: u8) -> Ipv4 {
        Ipv4 {
            src: src.into(),
            dst: dst.into(),
            proto,
            tos: 0,
            id: 0x1234,
            frag: 0,
            options: Vec::new(),
        }
    }

    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0, "IPv4 options in 4-byte words");
        let hlen = 20 + self.options.len();
        let total = u16::try_from(hlen + payload.len()).expect("IPv4 packet over 64 KiB");
        let mut h = vec![0u8; hlen];
        h[0] = 0x40 | (hlen / 4) as u8;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6..8].copy_from_slice(&self.frag.to_be_bytes());
        h[8] = 64;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        h[20..].copy_from_slice(&self.options);
        let c = checksum(0, &h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// An IPv4 packet (id 0x1234, TTL 64) with `options` (a multiple of 4
/// bytes) and `frag` (the flags and offset word), header checksum set.
pub fn ipv4(
    src: impl Into<Ipv4Addr>,
    dst: impl Into<Ipv4Addr>,
    proto: u8,
    options: &[u8],
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    Ipv4 {
        options: options.to_vec(),
        frag,
        ..Ipv4::new(src, dst, proto)
    }
    .packet(payload)
}

/// An IPv6 packet (hop limit 64) with traffic class `tc` and flow label `label`.
pub fn ipv6_tc(
    tc: u8,
    label: u32,
    next: u8,
    src: impl Into<Ipv6Addr>,
    dst: impl Into<Ipv6Addr>,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    let vcf = (6u32 << 28) | (u32::from(tc) << 20) | (label & 0xf_ffff);
    h[0..4].copy_from_slice(&vcf.to_be_bytes());
    let len = u16::try_from(payload.len()).expect("IPv6 payload over 64 KiB");
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src.into().octets());
    h[24..40].copy_from_slice(&dst.into().octets());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet, traffic class and flow label 0.
pub fn ipv6(
    src: impl Into<Ipv6Addr>,
    dst: impl Into<Ipv6Addr>,
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    ipv6_tc(0, 0, next, src, dst, payload)
}

/// An 8-byte IPv6 extension header (hop-by-hop, routing or destination
/// options: a PadN option) whose next header is `next`, then `body`.
pub fn ipv6_ext(next: u8, body: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(body);
    h
}

/// An IPv6 fragment header (offset 0, more fragments, id 7) then `body`.
pub fn ipv6_frag(next: u8, body: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 0, 0x01, 0, 0, 0, 7];
    h.extend_from_slice(body);
    h
}

/// A 20-byte TCP header from `sport` to `dport` with `flags`, sequence 1000,
/// window 64240; checksum 0 (see [`fix_l4_checksum`]).
pub fn tcp_flags(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

/// A TCP SYN header, checksum 0.
pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    tcp_flags(sport, dport, SYN)
}

/// A UDP header and `payload`, checksum 0 ("none" over IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP datagram over 64 KiB");
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&len.to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// An ICMP message: type, code, checksum (over the whole message), the 4
/// bytes `rest` (for "fragmentation needed": unused, then the MTU), `quoted`.
pub fn icmp4(kind: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quoted);
    let c = checksum(0, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 message from `src` to `dst` (`rest` as for [`icmp4`]; for
/// "packet too big", the MTU), checksum over the pseudo-header.
pub fn icmp6(
    (src, dst): ([u8; 16], [u8; 16]),
    kind: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quoted);
    let mut pseudo = [src, dst].concat();
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IP_ICMPV6]);
    let c = checksum(0, &[&pseudo[..], &m[..]].concat());
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A UDP datagram from `sport` to `port` carrying a GUE (variant 0) header
/// for `inner_proto` and `inner`, UDP checksum 0 (as xlb sends it).
pub fn gue(sport: u16, port: u16, inner_proto: u8, inner: &[u8]) -> Vec<u8> {
    let mut body = vec![0, inner_proto, 0, 0];
    body.extend_from_slice(inner);
    udp(sport, port, &body)
}

/// Recomputes from scratch the TCP or UDP checksum of an untagged Ethernet
/// frame carrying IPv4 (no options) or IPv6 (no extension headers), so tests
/// can state expected frames independently of the data plane's incremental
/// updates. An IPv4 UDP checksum of 0 ("none") is left alone.
pub fn fix_l4_checksum(frame: &mut [u8]) {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (pseudo, proto, l4) = if ethertype == ETH_IPV4 {
        let ip = &frame[14..34];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let mut p = ip[12..20].to_vec();
        p.extend_from_slice(&[0, ip[9]]);
        p.extend_from_slice(&((total - 20) as u16).to_be_bytes());
        (p, ip[9], 34)
    } else {
        let ip = &frame[14..54];
        let mut p = ip[8..40].to_vec();
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&ip[4..6]);
        p.extend_from_slice(&[0, 0, 0, ip[6]]);
        (p, ip[6], 54)
    };
    let off = if proto == IP_TCP { 16 } else { 6 };
    if proto == IP_UDP && ethertype == ETH_IPV4 && frame[l4 + 6..l4 + 8] == [0, 0] {
        return;
    }
    frame[l4 + off..l4 + off + 2].copy_from_slice(&[0, 0]);
    // The pseudo-header is of even length, so it can simply lead the data.
    let mut c = checksum(0, &[&pseudo[..], &frame[l4..]].concat());
    if proto == IP_UDP && c == 0 {
        c = 0xffff;
    }
    frame[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the frame's IPv4 header checksum and TCP/UDP checksum are right
/// (checked by summing, independently of `fix_l4_checksum`).
pub fn checksums_valid(frame: &[u8]) -> bool {
    let mut copy = frame.to_vec();
    fix_l4_checksum(&mut copy);
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip_ok = ethertype != ETH_IPV4 || checksum(0, &frame[14..34]) == 0;
    ip_ok && copy == frame
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
        &tcp4(from, to, SYN, u32::from(src)),
    )
}

/// An IPv4 packet carrying a UDP datagram, UDP checksum set.
pub fn udp4(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let p = ipv4(
        *src.ip(),
        *dst.ip(),
        IP_UDP,
        &[],
        0,
        &udp(src.port(), dst.port(), payload),
    );
    with_l4_checksum(&p)
}

/// `inner` (an IPv4 packet) encapsulated in IPv4 (protocol 4), as LVS-TUN sends it.
pub fn ipip(outer_src: Ipv4Addr, outer_dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    ipv4(outer_src, outer_dst, IP_IPIP, &[], 0, inner)
}

/// An IPv4 packet carrying a bare TCP segment (no options, no payload)
/// with `flags` and sequence number `seq`, TCP checksum set.
pub fn tcp4(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, seq: u32) -> Vec<u8> {
    let mut t = tcp_flags(src.port(), dst.port(), flags);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    with_l4_checksum(&ipv4(*src.ip(), *dst.ip(), IP_TCP, &[], 0, &t))
}

/// An IPv4 packet (no options) with its TCP/UDP checksum computed.
fn with_l4_checksum(packet: &[u8]) -> Vec<u8> {
    let mut f = eth([0; 6], [0; 6], ETH_IPV4, packet);
    // A UDP checksum of 0 says "none", which `fix_l4_checksum` keeps:
    // mark it present so that it is computed.
    if packet[9] == IP_UDP {
        f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0xff, 0xff]);
    }
    fix_l4_checksum(&mut f);
    f.split_off(14)
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
        let built = Ipv4 {
            id: 0,
            frag: 0x4000,
            ..Ipv4::new([192, 168, 0, 1], [192, 168, 0, 199], IP_UDP)
        }
        .packet(&[0; 0x73 - 20]);
        assert_eq!(&built[..20], &h[..]);
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
        pseudo.extend_from_slice(&[0, IP_UDP]);
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
        assert_eq!(ip[9], IP_TCP);
        assert_eq!(ip[20 + 13], SYN, "SYN alone");
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, IP_TCP, 0, 20]);
        pseudo.extend_from_slice(&ip[20..]);
        assert_eq!(ones_sum(&pseudo), 0xffff, "TCP checksum");
        assert!(checksums_valid(&f));
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
        assert_eq!(outer[9], IP_IPIP);
        assert_eq!(
            usize::from(u16::from_be_bytes([outer[2], outer[3]])),
            outer.len()
        );
        assert_eq!(&outer[20..], &inner[..]);
        assert_eq!(ones_sum(&outer[..20]), 0xffff);
    }

    #[test]
    fn options_and_fragments_are_in_the_header() {
        let p = ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IP_TCP,
            &[1, 1, 1, 0],
            0x2000,
            &[],
        );
        assert_eq!((p[0], p.len()), (0x46, 24));
        assert_eq!(&p[6..8], &[0x20, 0]);
        assert_eq!(ones_sum(&p), 0xffff);
    }

    #[test]
    fn ipv6_headers_carry_class_label_and_length() {
        let p = ipv6_tc(0xb8, 0xabcde, IP_TCP, [1; 16], [2; 16], &tcp(1, 2));
        assert_eq!(&p[0..4], &[0x6b, 0x8a, 0xbc, 0xde]);
        assert_eq!((u16::from_be_bytes([p[4], p[5]]), p[6]), (20, IP_TCP));
        let ext = ipv6_ext(IP_TCP, &[]);
        assert_eq!((ext.len(), ext[0]), (8, IP_TCP));
    }

    #[test]
    fn icmp_messages_checksum_to_zero() {
        assert_eq!(ones_sum(&icmp4(3, 4, [0, 0, 5, 0xdc], b"quote")), 0xffff);
        let (s, d) = ([1; 16], [2; 16]);
        let m = icmp6((s, d), 2, 0, [0, 0, 5, 0], b"quote");
        let mut pseudo = [s, d].concat();
        pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, IP_ICMPV6]);
        pseudo.extend_from_slice(&m);
        assert_eq!(ones_sum(&pseudo), 0xffff);
    }

    #[test]
    fn gue_carries_its_inner_protocol() {
        let g = gue(0xc001, 6080, IP_IPV6, &[0; 40]);
        assert_eq!(&g[2..4], &6080u16.to_be_bytes());
        assert_eq!(u16::from_be_bytes([g[4], g[5]]), 8 + 4 + 40);
        assert_eq!(&g[8..12], &[0, IP_IPV6, 0, 0]);
    }
}
