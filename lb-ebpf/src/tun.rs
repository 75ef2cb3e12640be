//! LVS tunnelling (IPVS `-i`, keepalived `lb_kind TUN`): the client's IP
//! packet travels unchanged inside a new IP header from the director to the
//! real server, which unwraps it and answers the client directly.
//!
//! The outer family is the real's, the inner the VIP's, so all four of
//! IPv4-in-IPv4 (protocol 4), IPv6-in-IPv6 (41), IPv4-in-IPv6 (4) and
//! IPv6-in-IPv4 (41) come out of one path. With GUE the outer header is
//! followed by UDP to the real's port and the 4-byte GUE header IPVS sends
//! (variant 0, no options, protocol = the inner one), so a kernel `fou`
//! receiver set up with `encap gue` or `xlb decap --gue-port` accepts it.

mod csum;
mod too_big;

use crate::{
    forward,
    maps::SETTINGS,
    parse::{l3_offset, ptr_at},
    stats::Fate,
};
use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{FAMILY_V4, FAMILY_V6, PROTO_IPIP, PROTO_IPV6, PROTO_UDP, RealInfo, tun};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};

const GUE_HDR: usize = 4;
const TTL: u8 = 64;
/// DF in the first byte of the IPv4 flags/offset field.
const IPV4_DF: u8 = 0x40;
/// GUE source ports come from the flow hash, within the dynamic range
/// 49152–65535, so routers hashing on UDP ports spread flows (ECMP).
const GUE_SPORT_BASE: u16 = 0xc000;
const GUE_SPORT_MASK: u32 = 0x3fff;

/// What the outer header copies or derives from the client's packet.
struct Inner {
    /// Outer protocol / next header naming the inner packet: 4 or 41.
    proto: u8,
    /// Length of the inner IP packet (its header's own count, so Ethernet
    /// padding is not counted).
    len: usize,
    /// DSCP and ECN, copied to the outer header as IPVS does.
    tos: u8,
    /// IPv4 identification, reused by an outer IPv4 header.
    id: [u8; 2],
    /// Whether the outer IPv4 header gets DF; see [`inner`].
    df: bool,
}

/// Encapsulates the frame (of a flow of `family` with `flow_hash` `hash`,
/// which only an IPv6 outer header and GUE use) for `real` and sends it to the real's next hop, or answers the client with
/// ICMP when it would not fit the egress MTU.
// A BPF-to-BPF call: its locals get their own stack frame instead of adding
// to the director's (BPF allows 512 bytes per frame). The caller hashes the
// flow: hashed here, the flow's words were loaded before the head adjustment
// and spilled across it, and the director, this frame and a memmove called
// from it outgrew the 512 bytes Linux 6.1 allows a chain of calls (it rounds
// each frame up to 32 bytes, an empty one included).
#[inline(never)]
pub fn encapsulate(ctx: &XdpContext, real: &RealInfo, family: u8, hash: u32) -> (u32, Fate) {
    // The egress interface's MTU and MAC come with the real.
    let mtu = real.mtu as usize;
    let Some(l3) = l3_offset(ctx) else {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    };
    let Some(inner) = inner(ctx, l3, family) else {
        return (xdp_action::XDP_PASS, Fate::Malformed);
    };
    let outer_ip = if real.family == FAMILY_V6 {
        Ipv6Hdr::LEN
    } else {
        Ipv4Hdr::LEN
    };
    let gue = real.tun_type == tun::GUE;
    let overhead = outer_ip + if gue { UdpHdr::LEN + GUE_HDR } else { 0 };

    if inner.len + overhead > mtu {
        let room = mtu.saturating_sub(overhead);
        return if family == FAMILY_V6 {
            too_big::icmp6(ctx, l3, room as u32)
        } else if inner.df {
            too_big::icmp4(ctx, l3, room as u16)
        } else {
            // XDP cannot fragment the tunnelled packet; the client allowed
            // fragmentation, so the stack (which can) gets it rather than a drop.
            (xdp_action::XDP_PASS, Fate::Pass)
        };
    }

    let built = match prepend(ctx, l3, overhead) {
        Some(()) if real.family == FAMILY_V6 => outer_v6(ctx, l3, real, &inner, overhead, hash),
        Some(()) => outer_v4(ctx, l3, real, &inner, overhead),
        None => None,
    };
    let built = built.and_then(|()| {
        if gue {
            gue_header(ctx, l3 + outer_ip, real, &inner, hash)
        } else {
            Some(())
        }
    });
    match built {
        Some(()) => forward::to_next_hop(ctx, real),
        None => (xdp_action::XDP_ABORTED, Fate::Error),
    }
}

/// Reads what the outer header needs from the client's packet at `l3`.
///
/// DF: an IPv4 client that set DF asked for path MTU discovery, so the outer
/// header keeps DF and routers past the director report to it rather than
/// fragment; one that did not set DF allowed fragmentation, and the outer
/// header allows it too. IPv6 is never fragmented on the way, so an IPv6
/// inner packet gets DF (as Linux's sit does with its default `pmtudisc`).
#[inline(always)]
fn inner(ctx: &XdpContext, l3: usize, family: u8) -> Option<Inner> {
    let inner = if family == FAMILY_V4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3)?;
        let ip = unsafe { &*ip };
        Inner {
            proto: PROTO_IPIP,
            len: u16::from_be_bytes(ip.tot_len) as usize,
            tos: ip.tos,
            id: ip.id,
            df: ip.frags[0] & IPV4_DF != 0,
        }
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3)?;
        let ip = unsafe { &*ip };
        Inner {
            proto: PROTO_IPV6,
            len: Ipv6Hdr::LEN + u16::from_be_bytes(ip.payload_len) as usize,
            tos: ip.vcf[0] << 4 | ip.vcf[1] >> 4,
            id: [0; 2],
            df: true,
        }
    };
    // Compared as lengths, not as `data + l3 + len` pointers: Linux 6.1's
    // verifier loses the bounds of a byte-swapped value and refuses pointer
    // arithmetic with it.
    (l3 + inner.len <= ctx.data_end() - ctx.data()).then_some(inner)
}

/// Makes `overhead` bytes of room between the link header and the client's
/// packet: the frame grows at the front and the link header is rebuilt
/// there, with the outer family's ether type (MACs are set when sending).
#[inline(always)]
fn prepend(ctx: &XdpContext, l3: usize, overhead: usize) -> Option<()> {
    let tci = if l3 == EthHdr::LEN {
        [0; 2]
    } else {
        let vlan: *const VlanHdr = ptr_at(ctx, EthHdr::LEN)?;
        unsafe { (*vlan).tci }
    };
    crate::probe::hit(lb_common::probe::ADJUST);
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(overhead as i32)) } != 0 {
        return None;
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    if l3 != EthHdr::LEN {
        let vlan: *mut VlanHdr = ptr_at(ctx, EthHdr::LEN)?;
        unsafe {
            (*eth).ether_type = EtherType::Ieee8021q as u16;
            (*vlan).tci = tci;
        }
    }
    Some(())
}

/// Sets the ether type of the (possibly tagged) link header.
#[inline(always)]
fn set_ether_type(ctx: &XdpContext, l3: usize, ether_type: u16) -> Option<()> {
    if l3 == EthHdr::LEN {
        let eth: *mut EthHdr = ptr_at(ctx, 0)?;
        unsafe { (*eth).ether_type = ether_type };
    } else {
        let vlan: *mut VlanHdr = ptr_at(ctx, EthHdr::LEN)?;
        unsafe { (*vlan).ether_type = ether_type };
    }
    Some(())
}

/// The protocol the outer header names: UDP for GUE, else the inner packet's.
#[inline(always)]
fn outer_proto(real: &RealInfo, inner: &Inner) -> u8 {
    if real.tun_type == tun::GUE {
        PROTO_UDP
    } else {
        inner.proto
    }
}

#[inline(always)]
fn outer_v4(
    ctx: &XdpContext,
    l3: usize,
    real: &RealInfo,
    inner: &Inner,
    overhead: usize,
) -> Option<()> {
    crate::probe::hit(lb_common::probe::SETTINGS);
    let src = SETTINGS.get(0)?.tun_src_v4[0];
    if src == 0 {
        return None;
    }
    set_ether_type(ctx, l3, EtherType::Ipv4 as u16)?;
    let mut hdr = Ipv4Hdr {
        vihl: 0x45,
        tos: inner.tos,
        tot_len: ((overhead + inner.len) as u16).to_be_bytes(),
        id: inner.id,
        frags: [if inner.df { IPV4_DF } else { 0 }, 0],
        ttl: TTL,
        proto: outer_proto(real, inner),
        check: [0; 2],
        src_addr: src.to_ne_bytes(),
        dst_addr: real.addr[0].to_ne_bytes(),
    };
    hdr.check = csum::ipv4_header(&hdr);
    let ip: *mut Ipv4Hdr = ptr_at(ctx, l3)?;
    unsafe { *ip = hdr };
    Some(())
}

#[inline(always)]
fn outer_v6(
    ctx: &XdpContext,
    l3: usize,
    real: &RealInfo,
    inner: &Inner,
    overhead: usize,
    hash: u32,
) -> Option<()> {
    crate::probe::hit(lb_common::probe::SETTINGS);
    let src = SETTINGS.get(0)?.tun_src_v6;
    if src == [0; 4] {
        return None;
    }
    set_ether_type(ctx, l3, EtherType::Ipv6 as u16)?;
    // The flow label carries the flow hash so routers spread tunnels (ECMP), as Katran does.
    let label = hash & 0xf_ffff;
    let ip: *mut Ipv6Hdr = ptr_at(ctx, l3)?;
    unsafe {
        *ip = Ipv6Hdr {
            vcf: [
                0x60 | inner.tos >> 4,
                inner.tos << 4 | (label >> 16) as u8,
                (label >> 8) as u8,
                label as u8,
            ],
            payload_len: ((overhead - Ipv6Hdr::LEN + inner.len) as u16).to_be_bytes(),
            next_hdr: outer_proto(real, inner),
            hop_limit: TTL,
            src_addr: bytes16(src),
            dst_addr: bytes16(real.addr),
        };
    }
    Some(())
}

/// UDP (checksum 0: RFC 6935 allows it for tunnels over IPv6, and IPVS sends
/// it so over both families) and the GUE header at `at`.
#[inline(always)]
fn gue_header(
    ctx: &XdpContext,
    at: usize,
    real: &RealInfo,
    inner: &Inner,
    hash: u32,
) -> Option<()> {
    let udp: *mut UdpHdr = ptr_at(ctx, at)?;
    let gue: *mut [u8; GUE_HDR] = ptr_at(ctx, at + UdpHdr::LEN)?;
    let sport = GUE_SPORT_BASE | (hash & GUE_SPORT_MASK) as u16;
    unsafe {
        *udp = UdpHdr {
            src: sport.to_be_bytes(),
            dst: real.tun_port.to_ne_bytes(),
            len: ((UdpHdr::LEN + GUE_HDR + inner.len) as u16).to_be_bytes(),
            check: [0; 2],
        };
        // Version 0, no control flag, no options; flags 0.
        *gue = [0, inner.proto, 0, 0];
    }
    Some(())
}

#[inline(always)]
fn bytes16(w: [u32; 4]) -> [u8; 16] {
    let (a, b, c, d) = (
        w[0].to_ne_bytes(),
        w[1].to_ne_bytes(),
        w[2].to_ne_bytes(),
        w[3].to_ne_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}
