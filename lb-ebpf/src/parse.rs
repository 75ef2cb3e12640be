//! Bounds-checked header parsing: Ethernet (one optional 802.1Q tag), IPv4
//! (with options) or IPv6 (with up to `MAX_EXT_HEADERS` extension headers),
//! then TCP or UDP ports.

use aya_ebpf::programs::XdpContext;
use core::mem::size_of;
use lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// Why a packet is not balanced; each maps to a counter and XDP_PASS.
pub enum Skip {
    /// Not IP, not TCP/UDP, or another tag stack: not ours to judge.
    NotOurs,
    /// Too short or inconsistent headers.
    Malformed,
    /// An IP fragment; the stack reassembles it.
    Fragment,
}

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// More extension headers than this and the packet goes to the stack: the
/// bound keeps the verifier's loop short and real traffic rarely has two.
const MAX_EXT_HEADERS: usize = 4;
const IPV4_MF: u8 = 0x1;

/// A parsed packet: its flow and where its headers are.
pub struct Packet {
    pub flow: FlowKey,
    /// TCP flags (`lb_common::conn::TCP_*`); 0 for UDP.
    pub tcp_flags: u8,
    /// An ICMP error about a packet of `flow`: `flow` is the client's flow
    /// rebuilt from the quoted header (which is the reply, VIP → client).
    pub icmp_error: bool,
}

const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// For an ICMP / ICMPv6 error (destination unreachable, fragmentation needed
/// or packet too big, time exceeded, parameter problem) at `l4`, the client
/// flow its quoted packet belongs to. The quote is the VIP's reply to the
/// client, so the tuple is reversed.
#[inline(always)]
fn icmp_error_flow(ctx: &XdpContext, family: u8, l4: usize) -> Result<FlowKey, Skip> {
    let icmp: *const [u8; 8] = ptr_at(ctx, l4).ok_or(Skip::Malformed)?;
    let kind = unsafe { (*icmp)[0] };
    let error = if family == FAMILY_V4 {
        matches!(kind, 3 | 11 | 12)
    } else {
        matches!(kind, 1..=4)
    };
    if !error {
        return Err(Skip::NotOurs);
    }
    let quoted = l4 + 8;
    let mut flow = FlowKey {
        family,
        ..FlowKey::default()
    };
    let ports_at = if family == FAMILY_V4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, quoted).ok_or(Skip::Malformed)?;
        let ip = unsafe { &*ip };
        let ihl = ((ip.vihl & 0x0f) as usize) * 4;
        if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
            return Err(Skip::Malformed);
        }
        flow.proto = ip.proto;
        flow.src = words4(ip.dst_addr);
        flow.dst = words4(ip.src_addr);
        quoted + (ihl & 0x3c)
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, quoted).ok_or(Skip::Malformed)?;
        let ip = unsafe { &*ip };
        if ip.vcf[0] >> 4 != 6 {
            return Err(Skip::Malformed);
        }
        flow.proto = ip.next_hdr;
        flow.src = words16(ip.dst_addr);
        flow.dst = words16(ip.src_addr);
        quoted + Ipv6Hdr::LEN
    };
    if flow.proto != PROTO_TCP && flow.proto != PROTO_UDP {
        return Err(Skip::NotOurs);
    }
    // Source and destination port lead both TCP and UDP headers.
    let ports: *const [u16; 2] = ptr_at(ctx, ports_at).ok_or(Skip::Malformed)?;
    let [sport, dport] = unsafe { *ports };
    flow.sport = dport;
    flow.dport = sport;
    Ok(flow)
}

/// A pointer to a `T` at `offset`, or `None` if it would run past the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
fn words4(b: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(b), 0, 0, 0]
}

#[inline(always)]
fn words16(b: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// The offset of the upper-layer header after the IPv6 extension headers
/// starting at `off` with type `next`, and its protocol.
#[inline(always)]
fn skip_ipv6_ext(ctx: &XdpContext, mut next: u8, mut off: usize) -> Result<(u8, usize), Skip> {
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IPV6_FRAGMENT => return Err(Skip::Fragment),
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AUTH => {
                let hdr: *const [u8; 2] = ptr_at(ctx, off).ok_or(Skip::Malformed)?;
                let [nh, len] = unsafe { *hdr };
                // AH counts 4-byte units minus 2, the others 8-byte units minus 1.
                let size = if next == IPV6_AUTH {
                    (len as usize + 2) * 4
                } else {
                    (len as usize + 1) * 8
                };
                next = nh;
                off += size & 0x7ff;
            }
            _ => return Ok((next, off)),
        }
    }
    Err(Skip::NotOurs)
}

/// Where the IP header starts: after Ethernet and the one 802.1Q tag `parse` allows.
#[inline(always)]
pub fn l3_offset(ctx: &XdpContext) -> Option<usize> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    if unsafe { (*eth).ether_type } == EtherType::Ieee8021q as u16 {
        Some(EthHdr::LEN + VlanHdr::LEN)
    } else {
        Some(EthHdr::LEN)
    }
}

/// Where a packet's IP and transport headers are.
pub struct Headers {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport (or ICMP) header.
    pub l4: usize,
    pub family: u8,
    pub proto: u8,
}

/// Walks Ethernet, VLAN and IP (options, extension headers) to the transport
/// header. Forwarding code that rewrites headers walks again rather than
/// carrying offsets from `parse`: offsets kept alive across the scheduler
/// would make the verifier check it once per header layout.
#[inline(always)]
pub fn headers(ctx: &XdpContext) -> Result<Headers, Skip> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Skip::Malformed)?;
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3 = EthHdr::LEN;
    if ether_type == EtherType::Ieee8021q as u16 {
        let vlan: *const VlanHdr = ptr_at(ctx, l3).ok_or(Skip::Malformed)?;
        ether_type = unsafe { (*vlan).ether_type };
        l3 += VlanHdr::LEN;
    }
    if ether_type == EtherType::Ipv4 as u16 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3).ok_or(Skip::Malformed)?;
        let ip = unsafe { &*ip };
        // Masking keeps the offset provably small for the verifier.
        let ihl = ((ip.vihl & 0x0f) as usize) * 4;
        if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
            return Err(Skip::Malformed);
        }
        if (ip.tot_len() as usize) < ihl || l3 + ihl > ctx.data_end() - ctx.data() {
            return Err(Skip::Malformed);
        }
        if ip.frag_flags() & IPV4_MF != 0 || ip.frag_offset() != 0 {
            return Err(Skip::Fragment);
        }
        Ok(Headers {
            l3,
            l4: l3 + (ihl & 0x3c),
            family: FAMILY_V4,
            proto: ip.proto,
        })
    } else if ether_type == EtherType::Ipv6 as u16 {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3).ok_or(Skip::Malformed)?;
        let ip = unsafe { &*ip };
        if ip.vcf[0] >> 4 != 6 {
            return Err(Skip::Malformed);
        }
        let (proto, l4) = skip_ipv6_ext(ctx, ip.next_hdr, l3 + Ipv6Hdr::LEN)?;
        Ok(Headers {
            l3,
            l4,
            family: FAMILY_V6,
            proto,
        })
    } else {
        Err(Skip::NotOurs)
    }
}

/// The flow of a TCP or UDP packet, or why the director leaves it alone.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Skip> {
    let Headers {
        l3,
        l4,
        family,
        proto,
    } = headers(ctx)?;
    let mut flow = FlowKey {
        family,
        proto,
        ..FlowKey::default()
    };
    if family == FAMILY_V4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3).ok_or(Skip::Malformed)?;
        let ip = unsafe { &*ip };
        flow.src = words4(ip.src_addr);
        flow.dst = words4(ip.dst_addr);
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3).ok_or(Skip::Malformed)?;
        let ip = unsafe { &*ip };
        flow.src = words16(ip.src_addr);
        flow.dst = words16(ip.dst_addr);
    }

    if flow.proto == ICMP && flow.family == FAMILY_V4
        || flow.proto == ICMPV6 && flow.family == FAMILY_V6
    {
        return Ok(Packet {
            flow: icmp_error_flow(ctx, flow.family, l4)?,
            tcp_flags: 0,
            icmp_error: true,
        });
    }
    let mut tcp_flags = 0;
    if flow.proto == PROTO_TCP {
        let tcp_ptr: *const TcpHdr = ptr_at(ctx, l4).ok_or(Skip::Malformed)?;
        let tcp = unsafe { &*tcp_ptr };
        if (tcp.doff() as usize) < 5 {
            return Err(Skip::Malformed);
        }
        flow.sport = u16::from_ne_bytes(tcp.source);
        flow.dport = u16::from_ne_bytes(tcp.dest);
        // Byte 13 holds CWR..FIN; the 20-byte header is known to be in bounds.
        tcp_flags = unsafe { *(tcp_ptr as *const u8).add(13) };
    } else if flow.proto == PROTO_UDP {
        let udp: *const UdpHdr = ptr_at(ctx, l4).ok_or(Skip::Malformed)?;
        let udp = unsafe { &*udp };
        flow.sport = u16::from_ne_bytes(udp.src);
        flow.dport = u16::from_ne_bytes(udp.dst);
    } else {
        return Err(Skip::NotOurs);
    }
    Ok(Packet {
        flow,
        tcp_flags,
        icmp_error: false,
    })
}
