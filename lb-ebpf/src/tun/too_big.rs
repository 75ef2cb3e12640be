//! Path MTU discovery for tunnelled flows: when the encapsulated packet would
//! not fit the egress MTU, the frame is turned in place into ICMP
//! "fragmentation needed" (IPv4) or ICMPv6 "packet too big" from the VIP to
//! the client, quoting the start of the client's packet, and sent back out
//! of the interface it came in on (as Katran does).

use super::csum;
use crate::{parse::ptr_at, stats::Fate};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len},
    programs::XdpContext,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};

/// Bytes of the client's IPv4 packet quoted: the largest IPv4 header plus
/// the 8 bytes RFC 792 asks for, so ports are always included.
pub const QUOTE_V4: usize = 68;
/// Bytes of the client's IPv6 packet quoted: its header, room for extension
/// headers and the transport ports (RFC 4443 allows any amount up to 1280).
pub const QUOTE_V6: usize = 128;
const ICMP_HDR: usize = 8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const TTL: u8 = 64;

/// The Ethernet (and optional 802.1Q) header of the reply: MACs swapped,
/// the tag kept, `ether_type` for the new IP header. `l3` is 14 or 18.
#[inline(always)]
fn write_link(ctx: &XdpContext, l3: usize, link: &Link, ether_type: u16) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    unsafe {
        (*eth).dst_addr = link.src;
        (*eth).src_addr = link.dst;
    }
    if l3 == EthHdr::LEN {
        unsafe { (*eth).ether_type = ether_type };
    } else {
        let vlan: *mut VlanHdr = ptr_at(ctx, EthHdr::LEN)?;
        unsafe {
            (*eth).ether_type = EtherType::Ieee8021q as u16;
            (*vlan).tci = link.tci;
            (*vlan).ether_type = ether_type;
        }
    }
    Some(())
}

/// What is kept of the incoming link header.
struct Link {
    dst: [u8; 6],
    src: [u8; 6],
    tci: [u8; 2],
}

#[inline(always)]
fn read_link(ctx: &XdpContext, l3: usize) -> Option<Link> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let mut link = Link {
        dst: unsafe { (*eth).dst_addr },
        src: unsafe { (*eth).src_addr },
        tci: [0; 2],
    };
    if l3 != EthHdr::LEN {
        let vlan: *const VlanHdr = ptr_at(ctx, EthHdr::LEN)?;
        link.tci = unsafe { (*vlan).tci };
    }
    Some(link)
}

/// Grows the frame at the front by `head` bytes and sets its length to
/// `len`: the client's packet then starts `head` bytes further in.
#[inline(always)]
fn reshape(ctx: &XdpContext, head: usize, len: usize) -> Option<()> {
    crate::probe::hit(lb_common::probe::ADJUST);
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(head as i32)) } != 0 {
        return None;
    }
    // The helper, not data_end - data: the verifier forbids arithmetic on data_end.
    crate::probe::hit(lb_common::probe::BUFF_LEN);
    let now = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let delta = len as i64 - now as i64;
    crate::probe::hit(lb_common::probe::ADJUST);
    (unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0).then_some(())
}

/// ICMP type 3 code 4 with next-hop MTU `mtu`, for the IPv4 packet at `l3`
/// (the caller checked it is IPv4 with DF).
#[inline(always)]
pub fn icmp4(ctx: &XdpContext, l3: usize, mtu: u16) -> (u32, Fate) {
    if ptr_at::<[u8; QUOTE_V4]>(ctx, l3).is_none() {
        // Only with an egress MTU below any real link's: let the stack judge.
        return (xdp_action::XDP_PASS, Fate::Pass);
    }
    match build4(ctx, l3, mtu) {
        Some(()) => (xdp_action::XDP_TX, Fate::TooBig),
        None => (xdp_action::XDP_ABORTED, Fate::Error),
    }
}

#[inline(always)]
fn build4(ctx: &XdpContext, l3: usize, mtu: u16) -> Option<()> {
    let link = read_link(ctx, l3)?;
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3)?;
    let (client, vip) = unsafe { ((*ip).src_addr, (*ip).dst_addr) };
    let head = Ipv4Hdr::LEN + ICMP_HDR;
    let total = head + QUOTE_V4;
    reshape(ctx, head, l3 + total)?;
    write_link(ctx, l3, &link, EtherType::Ipv4 as u16)?;

    let mut hdr = Ipv4Hdr {
        vihl: 0x45,
        tos: 0,
        tot_len: (total as u16).to_be_bytes(),
        id: [0; 2],
        frags: [0; 2],
        ttl: TTL,
        proto: IPPROTO_ICMP,
        check: [0; 2],
        src_addr: vip,
        dst_addr: client,
    };
    hdr.check = csum::ipv4_header(&hdr);
    let ip: *mut Ipv4Hdr = ptr_at(ctx, l3)?;
    unsafe { *ip = hdr };

    // Type, code, checksum, unused, next-hop MTU; then the quote already in place.
    let icmp: *mut [u8; ICMP_HDR + QUOTE_V4] = ptr_at(ctx, l3 + Ipv4Hdr::LEN)?;
    let m = mtu.to_be_bytes();
    let icmp = unsafe { &mut *icmp };
    icmp[..ICMP_HDR].copy_from_slice(&[3, 4, 0, 0, 0, 0, m[0], m[1]]);
    let c = csum::finish(csum::add(icmp.as_ptr(), icmp.len() as u32, 0));
    icmp[2] = c[0];
    icmp[3] = c[1];
    Some(())
}

/// ICMPv6 type 2 (packet too big) with MTU `mtu`, for the IPv6 packet at `l3`.
#[inline(always)]
pub fn icmp6(ctx: &XdpContext, l3: usize, mtu: u32) -> (u32, Fate) {
    if ptr_at::<[u8; QUOTE_V6]>(ctx, l3).is_none() {
        return (xdp_action::XDP_PASS, Fate::Pass);
    }
    match build6(ctx, l3, mtu) {
        Some(()) => (xdp_action::XDP_TX, Fate::TooBig),
        None => (xdp_action::XDP_ABORTED, Fate::Error),
    }
}

#[inline(always)]
fn build6(ctx: &XdpContext, l3: usize, mtu: u32) -> Option<()> {
    const ICMP_LEN: usize = ICMP_HDR + QUOTE_V6;
    let link = read_link(ctx, l3)?;
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3)?;
    let (client, vip) = unsafe { ((*ip).src_addr, (*ip).dst_addr) };
    let head = Ipv6Hdr::LEN + ICMP_HDR;
    reshape(ctx, head, l3 + Ipv6Hdr::LEN + ICMP_LEN)?;
    write_link(ctx, l3, &link, EtherType::Ipv6 as u16)?;

    let ip: *mut Ipv6Hdr = ptr_at(ctx, l3)?;
    unsafe {
        *ip = Ipv6Hdr {
            vcf: [0x60, 0, 0, 0],
            payload_len: (ICMP_LEN as u16).to_be_bytes(),
            next_hdr: IPPROTO_ICMPV6,
            hop_limit: TTL,
            src_addr: vip,
            dst_addr: client,
        };
    }
    let icmp: *mut [u8; ICMP_LEN] = ptr_at(ctx, l3 + Ipv6Hdr::LEN)?;
    let m = mtu.to_be_bytes();
    // The pseudo-header: both addresses (in the packet), length and next header.
    let addrs: *const [u8; 32] = ptr_at(ctx, l3 + 8)?;
    let len = (ICMP_LEN as u32).to_be_bytes();
    let pseudo: [u8; 8] = [len[0], len[1], len[2], len[3], 0, 0, 0, IPPROTO_ICMPV6];
    let icmp = unsafe { &mut *icmp };
    icmp[..ICMP_HDR].copy_from_slice(&[2, 0, 0, 0, m[0], m[1], m[2], m[3]]);
    let mut sum = csum::add(addrs as *const u8, 32, 0);
    sum = csum::add(pseudo.as_ptr(), 8, sum);
    sum = csum::add(icmp.as_ptr(), ICMP_LEN as u32, sum);
    let c = csum::finish(sum);
    icmp[2] = c[0];
    icmp[3] = c[1];
    Some(())
}
