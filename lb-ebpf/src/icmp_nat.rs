//! ICMP and ICMPv6 errors of NAT flows, rewritten as Linux IPVS rewrites
//! them (`ip_vs_nat_icmp`): the outer address on the real server's side and
//! the matching address and port in the quoted header change together.
//!
//! - To the real: an error about VIP:vport → client (say "fragmentation
//!   needed" from a router near the client) goes to the real with outer
//!   destination = real and quoted source = real:rport.
//! - To the client: an error from the real's side about client → real:rport
//!   leaves with outer source = VIP and quoted destination = VIP:vport.
//!
//! Checksums are updated incrementally (RFC 1624): the outer IPv4 header's,
//! the ICMP checksum (over every changed quoted byte, and for ICMPv6 its
//! pseudo-header's address), and the quoted IPv4 header's. The quoted TCP/UDP
//! checksum is left as it was, as IPVS leaves it: a quote is often cut
//! before it, and receivers do not check it.

use crate::{
    csum,
    parse::{self, ptr_at},
};
use aya_ebpf::programs::XdpContext;
use lb_common::FAMILY_V4;
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

/// Which way the error is going, so which ends are rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Outer destination and quoted source (VIP → real).
    ToReal,
    /// Outer source and quoted destination (real → VIP).
    ToClient,
}

/// The ICMP header's length before the quoted packet (type, code, checksum,
/// 4 bytes of rest-of-header), the same in ICMPv6.
const ICMP_HDR: usize = 8;

/// Rewrites the error in place to `addr`:`port` (network order) and returns
/// the outer address left alone (the other end, for the route lookup).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, way: Way, addr: &[u32; 4], port: u16) -> Option<[u32; 4]> {
    let at = parse::headers(ctx).ok()?;
    let to_real = way == Way::ToReal;
    // ICMP's checksum and, after it, the quoted IP header.
    let icmp_check: *mut u16 = ptr_at(ctx, at.l4 + 2)?;
    let quoted = at.l4 + ICMP_HDR;
    // The quoted source port is word 0 of the ports, the destination word 1.
    let port_word = if to_real { 0 } else { 1 };
    // SAFETY: every pointer below was bounds-checked by `ptr_at`.
    unsafe {
        let mut icmp = *icmp_check;
        let kept;
        if at.family == FAMILY_V4 {
            let (outer_off, quoted_off, kept_off) =
                if to_real { (16, 12, 12) } else { (12, 16, 16) };
            let outer: *mut u32 = ptr_at(ctx, at.l3 + outer_off)?;
            let outer_check: *mut u16 = ptr_at(ctx, at.l3 + 10)?;
            let other: *const u32 = ptr_at(ctx, at.l3 + kept_off)?;
            let q: *mut Ipv4Hdr = ptr_at(ctx, quoted)?;
            let ihl = (((*q).vihl & 0x0f) as usize) * 4;
            let ports: *mut [u16; 2] = ptr_at(ctx, quoted + (ihl & 0x3c))?;
            let q_addr = (q as *mut u8).add(quoted_off) as *mut u32;
            let q_check = (q as *mut u8).add(10) as *mut u16;

            *outer_check = csum::update32(*outer_check, *outer, addr[0]);
            *outer = addr[0];
            let (old_addr, old_check) = (*q_addr, *q_check);
            let new_check = csum::update32(old_check, old_addr, addr[0]);
            *q_addr = addr[0];
            *q_check = new_check;
            icmp = csum::update32(icmp, old_addr, addr[0]);
            icmp = csum::update16(icmp, old_check, new_check);
            let p = (ports as *mut u16).add(port_word);
            icmp = csum::update16(icmp, *p, port);
            *p = port;
            kept = [*other, 0, 0, 0];
        } else {
            let (outer_off, quoted_off, kept_off) = if to_real { (24, 8, 8) } else { (8, 24, 24) };
            let outer: *mut [u32; 4] = ptr_at(ctx, at.l3 + outer_off)?;
            let other: *const [u32; 4] = ptr_at(ctx, at.l3 + kept_off)?;
            let q: *mut Ipv6Hdr = ptr_at(ctx, quoted)?;
            let ports: *mut [u16; 2] = ptr_at(ctx, quoted + Ipv6Hdr::LEN)?;
            let q_addr = (q as *mut u8).add(quoted_off) as *mut [u32; 4];

            // ICMPv6's checksum covers the outer addresses (pseudo-header).
            icmp = csum::update_addr(icmp, &*outer, addr, 4);
            *outer = *addr;
            icmp = csum::update_addr(icmp, &*q_addr, addr, 4);
            *q_addr = *addr;
            let p = (ports as *mut u16).add(port_word);
            icmp = csum::update16(icmp, *p, port);
            *p = port;
            kept = *other;
        }
        *icmp_check = icmp;
        Some(kept)
    }
}
