//! `xlb decap`'s XDP program, for real servers behind a TUN director: frames
//! carrying IPIP, IPv6-in-IPv6, IPv4-in-IPv6, IPv6-in-IPv4 or GUE whose inner
//! destination is one of this host's VIPs lose their outer headers and go to
//! the stack as the client sent them. Everything else passes untouched.
//!
//! A separate object from the director, so a real server creates only these
//! small maps.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    btf_maps::HashMap,
    helpers::bpf_xdp_adjust_head,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use core::mem::size_of;
use lb_common::{DecapVip, FAMILY_V4, FAMILY_V6, PROTO_IPIP, PROTO_IPV6, PROTO_UDP, decap};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// IPv4 "more fragments" and offset bits: a fragment cannot be unwrapped alone.
const IPV4_FRAGMENT: [u8; 2] = [0x3f, 0xff];
const GUE_HDR: usize = 4;

/// GUE UDP port in network byte order; 0 leaves UDP alone. Set at load.
#[unsafe(no_mangle)]
static DECAP_GUE_PORT: Global<u16> = Global::new(0);

/// Inner destinations to unwrap (this host's VIPs), filled by `xlb decap`.
#[btf_map]
static DECAP_VIPS: HashMap<DecapVip, u8, { decap::MAX_VIPS as usize }> = HashMap::new();

#[xdp]
pub fn xlb_decap(ctx: XdpContext) -> u32 {
    let _ = decapsulate(&ctx);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Unwraps the frame if it is a tunnelled packet for a local VIP; `None`
/// leaves it as it was.
#[inline(always)]
fn decapsulate(ctx: &XdpContext) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3 = EthHdr::LEN;
    if ether_type == EtherType::Ieee8021q as u16 {
        let vlan: *const VlanHdr = ptr_at(ctx, l3)?;
        ether_type = unsafe { (*vlan).ether_type };
        l3 += VlanHdr::LEN;
    }
    let (inner_at, inner_proto) = if ether_type == EtherType::Ipv4 as u16 {
        outer_v4(ctx, l3)?
    } else if ether_type == EtherType::Ipv6 as u16 {
        outer_v6(ctx, l3)?
    } else {
        return None;
    };
    let inner_type = inner_is_local(ctx, inner_at, inner_proto)?;

    // Move the link header up against the inner packet, then drop what is before it.
    let mut link = [0u8; EthHdr::LEN + VlanHdr::LEN];
    let old: *const [u8; EthHdr::LEN + VlanHdr::LEN] = ptr_at(ctx, 0)?;
    link.copy_from_slice(unsafe { &*old });
    let strip = inner_at - l3;
    if l3 == EthHdr::LEN {
        let new: *mut EthHdr = ptr_at(ctx, strip)?;
        let new = unsafe { &mut *new };
        new.dst_addr.copy_from_slice(&link[0..6]);
        new.src_addr.copy_from_slice(&link[6..12]);
        new.ether_type = inner_type;
    } else {
        let new: *mut [u8; EthHdr::LEN + VlanHdr::LEN] = ptr_at(ctx, strip)?;
        let new = unsafe { &mut *new };
        new[..16].copy_from_slice(&link[..16]);
        new[16..18].copy_from_slice(&inner_type.to_ne_bytes());
    }
    (unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } == 0).then_some(())
}

/// The offset and kind (4 or 41) of the packet inside an IPv4 tunnel header at `l3`.
#[inline(always)]
fn outer_v4(ctx: &XdpContext, l3: usize) -> Option<(usize, u8)> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3)?;
    let ip = unsafe { &*ip };
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ip.vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return None;
    }
    if ip.frags[0] & IPV4_FRAGMENT[0] != 0 || ip.frags[1] & IPV4_FRAGMENT[1] != 0 {
        return None;
    }
    payload(ctx, l3 + (ihl & 0x3c), ip.proto)
}

/// The same for an IPv6 header at `l3` (extension headers are not unwrapped).
#[inline(always)]
fn outer_v6(ctx: &XdpContext, l3: usize) -> Option<(usize, u8)> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3)?;
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return None;
    }
    payload(ctx, l3 + Ipv6Hdr::LEN, ip.next_hdr)
}

/// Where the inner packet starts after the outer IP header's payload of
/// protocol `proto` beginning at `at`.
#[inline(always)]
fn payload(ctx: &XdpContext, at: usize, proto: u8) -> Option<(usize, u8)> {
    match proto {
        PROTO_IPIP | PROTO_IPV6 => Some((at, proto)),
        PROTO_UDP => gue(ctx, at),
        _ => None,
    }
}

/// GUE on the configured port: variant 0 (what IPVS sends: a 4-byte header,
/// options skipped, data messages only) or variant 1 (the IP header directly).
#[inline(always)]
fn gue(ctx: &XdpContext, at: usize) -> Option<(usize, u8)> {
    let port = DECAP_GUE_PORT.load();
    let udp: *const UdpHdr = ptr_at(ctx, at)?;
    if port == 0 || u16::from_ne_bytes(unsafe { (*udp).dst }) != port {
        return None;
    }
    let g: *const [u8; GUE_HDR] = ptr_at(ctx, at + UdpHdr::LEN)?;
    let g = unsafe { *g };
    match g[0] >> 6 {
        0 if g[0] & 0x20 == 0 => {
            let options = ((g[0] & 0x1f) as usize) * 4;
            Some((at + UdpHdr::LEN + GUE_HDR + options, g[1]))
        }
        1 => match g[0] >> 4 {
            4 => Some((at + UdpHdr::LEN, PROTO_IPIP)),
            6 => Some((at + UdpHdr::LEN, PROTO_IPV6)),
            _ => None,
        },
        _ => None,
    }
}

/// The ether type for the inner packet at `at` if it is well formed and
/// addressed to one of the VIPs.
#[inline(always)]
fn inner_is_local(ctx: &XdpContext, at: usize, proto: u8) -> Option<u16> {
    let (key, ether_type) = if proto == PROTO_IPIP {
        let ip: *const Ipv4Hdr = ptr_at(ctx, at)?;
        let ip = unsafe { &*ip };
        if ip.vihl >> 4 != 4 {
            return None;
        }
        let mut addr = [0u32; 4];
        addr[0] = u32::from_ne_bytes(ip.dst_addr);
        (vip(addr, FAMILY_V4), EtherType::Ipv4 as u16)
    } else if proto == PROTO_IPV6 {
        let ip: *const Ipv6Hdr = ptr_at(ctx, at)?;
        let ip = unsafe { &*ip };
        if ip.vcf[0] >> 4 != 6 {
            return None;
        }
        let d = ip.dst_addr;
        let addr = [
            u32::from_ne_bytes([d[0], d[1], d[2], d[3]]),
            u32::from_ne_bytes([d[4], d[5], d[6], d[7]]),
            u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            u32::from_ne_bytes([d[12], d[13], d[14], d[15]]),
        ];
        (vip(addr, FAMILY_V6), EtherType::Ipv6 as u16)
    } else {
        return None;
    };
    unsafe { DECAP_VIPS.get(key) }?;
    Some(ether_type)
}

#[inline(always)]
fn vip(addr: [u32; 4], family: u8) -> DecapVip {
    DecapVip {
        addr,
        family,
        _pad: [0; 3],
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
