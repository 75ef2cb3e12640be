//! LVS-NAT (masquerading): client → VIP:vport becomes client → RIP:rport on
//! the way in, and the real server's replies become VIP:vport → client on the
//! way out. The next hop of either comes from the kernel's FIB; when the FIB
//! has no neighbour yet the rewritten packet goes to the stack, which
//! resolves it and forwards.

use crate::{
    conntrack, csum,
    forward::send,
    icmp_nat::{self, Way},
    maps::{CONNTRACK, NAT_REPLIES, NAT_REPLY_PORTS, SETTINGS},
    parse::{self, Packet, ptr_at},
    stats::Fate,
};
use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup, xdp_action},
    helpers::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
};
use core::{
    intrinsics::{AtomicOrdering::Relaxed, atomic_or},
    mem::size_of,
};
use lb_common::{FAMILY_V4, PROTO_TCP, PROTO_UDP, RealInfo, SETTINGS_F_NAT, nat_ports};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Which end of the packet is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

/// Offsets of the address in the IP header, of the port and checksum (in
/// 16-bit words) in the L4 header.
#[inline(always)]
fn offsets(family: u8, proto: u8, end: End) -> (usize, usize, usize) {
    let addr = match (family == FAMILY_V4, end) {
        (true, End::Src) => 12,
        (true, End::Dst) => 16,
        (false, End::Src) => 8,
        (false, End::Dst) => 24,
    };
    let port = if end == End::Src { 0 } else { 1 };
    let check = if proto == PROTO_TCP { 8 } else { 3 };
    (addr, port, check)
}

/// Rewrites one end of the packet to `addr`:`port` (network order) and fixes
/// the IPv4 header checksum and the TCP/UDP checksum incrementally.
#[inline(always)]
fn rewrite(ctx: &XdpContext, pkt: &Packet, end: End, addr: &[u32; 4], port: u16) -> Option<()> {
    let flow = &pkt.flow;
    let (addr_off, port_off, check_off) = offsets(flow.family, flow.proto, end);
    let (old_addr, old_port) = match end {
        End::Src => (flow.src, flow.sport),
        End::Dst => (flow.dst, flow.dport),
    };
    let words = if flow.family == FAMILY_V4 { 1 } else { 4 };
    let at = parse::headers(ctx).ok()?;

    // One bounds check covering ports and checksum (the first 18 bytes of a
    // TCP header, 8 of UDP): separate checks get merged by LLVM in a way the
    // verifier cannot follow.
    let l4: *mut u16 = if flow.proto == PROTO_TCP {
        ptr_at::<[u16; 9]>(ctx, at.l4)? as *mut u16
    } else {
        ptr_at::<[u16; 4]>(ctx, at.l4)? as *mut u16
    };
    // SAFETY: the indices are within the bounds-checked header.
    let (l4_check, l4_port) = unsafe { (l4.add(check_off), l4.add(port_off)) };
    unsafe {
        let old_check = *l4_check;
        // IPv4 UDP with checksum 0 carries none; leave it so.
        if !(flow.proto == PROTO_UDP && flow.family == FAMILY_V4 && old_check == 0) {
            let mut c = csum::update_addr(old_check, &old_addr, addr, words);
            c = csum::update16(c, old_port, port);
            if flow.proto == PROTO_UDP && c == 0 {
                c = 0xffff;
            }
            *l4_check = c;
        }
        *l4_port = port;
    }

    if flow.family == FAMILY_V4 {
        let ip_addr: *mut u32 = ptr_at(ctx, at.l3 + addr_off)?;
        let ip_check: *mut u16 = ptr_at(ctx, at.l3 + 10)?;
        unsafe {
            *ip_check = csum::update32(*ip_check, old_addr[0], addr[0]);
            *ip_addr = addr[0];
        }
    } else {
        let ip_addr: *mut [u32; 4] = ptr_at(ctx, at.l3 + addr_off)?;
        unsafe { *ip_addr = *addr };
    }
    Some(())
}

/// Sends the rewritten packet towards `dst` using the kernel's FIB, or hands
/// it to the stack when the FIB cannot give a next hop.
#[inline(always)]
fn route(ctx: &XdpContext, family: u8, proto: u8, src: &[u32; 4], dst: &[u32; 4]) -> (u32, Fate) {
    // SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and unions of them).
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.l4_protocol = proto;
    params.ifindex = ctx.ingress_ifindex() as u32;
    // The FIB compares this with the egress MTU: the IP packet's size, not
    // the frame's (counting the link header sent full-size packets to the stack).
    let Some(l3) = parse::l3_offset(ctx) else {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    };
    params.__bindgen_anon_1.tot_len = (ctx.data_end() - ctx.data()).saturating_sub(l3) as u16;
    if family == FAMILY_V4 {
        params.family = AF_INET;
        params.__bindgen_anon_3.ipv4_src = src[0];
        params.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_3.ipv6_src = *src;
        params.__bindgen_anon_4.ipv6_dst = *dst;
    }
    crate::probe::hit(lb_common::probe::FIB_LOOKUP);
    let rc = unsafe {
        fib_lookup(
            ctx.ctx as *mut _,
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return (xdp_action::XDP_PASS, Fate::Pass);
    }
    send(ctx, params.ifindex, params.smac, params.dmac)
}

/// Client → VIP: rewrite to the real server and send it there. A new flow
/// also gets its reply entry. An ICMP error about the flow goes to the same
/// real, rewritten as the flow is (icmp_nat.rs).
// Not inlined: the FIB lookup's parameters get a stack frame of their own
// rather than enlarging the director's, which the scheduler's calls add to.
#[inline(never)]
pub fn inbound(ctx: &XdpContext, pkt: &Packet, real: &RealInfo, new_flow: bool) -> (u32, Fate) {
    if pkt.icmp_error {
        let Some(src) = icmp_nat::rewrite(ctx, Way::ToReal, &real.addr, real.port) else {
            return (xdp_action::XDP_ABORTED, Fate::Error);
        };
        return route(ctx, pkt.flow.family, pkt.flow.proto, &src, &real.addr);
    }
    if new_flow {
        crate::probe::hit(lb_common::probe::NAT_REPLIES_UPDATE);
    }
    if new_flow
        && NAT_REPLIES
            .insert(pkt.flow.nat_reply(real), pkt.flow, 0)
            .is_err()
    {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    }
    if new_flow {
        reply_port(real.port);
    }
    if rewrite(ctx, pkt, End::Dst, &real.addr, real.port).is_none() {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    }
    route(
        ctx,
        pkt.flow.family,
        pkt.flow.proto,
        &pkt.flow.src,
        &real.addr,
    )
}

/// Marks `port` (network order) as one NAT replies come from. Atomic: other
/// CPUs set other bits of the same word.
#[inline(always)]
fn reply_port(port: u16) {
    let (word, bit) = nat_ports::bit(port);
    crate::probe::hit(lb_common::probe::NAT_REPLY_PORTS);
    let Some(w) = NAT_REPLY_PORTS.get_ptr_mut(word) else {
        return;
    };
    // SAFETY: the map value lives as long as the map. Read first: the
    // common case (already set) then writes nothing to a shared line.
    unsafe {
        if *w & bit == 0 {
            atomic_or::<u64, u64, { Relaxed }>(w, bit);
        }
    }
}

/// Whether traffic for no service from `sport` (network order) may be a
/// NAT reply: some NAT real has had a flow with that source port.
#[inline(always)]
pub fn may_be_reply(sport: u16) -> bool {
    let (word, bit) = nat_ports::bit(sport);
    crate::probe::hit(lb_common::probe::NAT_REPLY_PORTS);
    NAT_REPLY_PORTS.get(word).is_some_and(|w| w & bit != 0)
}

/// Whether the agent has NAT services (`SETTINGS_F_NAT`): only then can
/// traffic for no service be a NAT reply.
#[inline(always)]
pub fn configured() -> bool {
    crate::probe::hit(lb_common::probe::SETTINGS);
    SETTINGS
        .get(0)
        .is_some_and(|s| s.flags & SETTINGS_F_NAT != 0)
}

/// Real server → client: if this is the reply of a NAT flow, rewrite its
/// source back to the VIP and send it to the client; anything else is not
/// ours and goes to the stack. An ICMP error quoting a packet of the flow
/// (client → real) leaves from the VIP, quoting client → VIP:vport; it does
/// not move the flow's state.
// Not inlined, as `inbound`.
#[inline(never)]
pub fn reply(ctx: &XdpContext, pkt: &Packet) -> (u32, Fate) {
    const NOT_OURS: (u32, Fate) = (xdp_action::XDP_PASS, Fate::Pass);
    crate::probe::hit(lb_common::probe::NAT_REPLIES);
    let Some(client) = (unsafe { NAT_REPLIES.get(pkt.flow) }) else {
        return NOT_OURS;
    };
    let client = *client;
    crate::probe::hit(lb_common::probe::CONNTRACK);
    let Some(entry) = CONNTRACK.get_ptr_mut(client) else {
        return NOT_OURS;
    };
    // An expired flow is gone (IPVS: no connection, the reply is not ours).
    crate::probe::hit(lb_common::probe::SETTINGS);
    let Some(settings) = SETTINGS.get(0) else {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    };
    // Read only for a reply: traffic that is no flow's needs no timestamp.
    let now = conntrack::now();
    if !conntrack::live(entry, now, settings) {
        return NOT_OURS;
    }
    if pkt.icmp_error {
        let Some(dst) = icmp_nat::rewrite(ctx, Way::ToClient, &client.dst, client.dport) else {
            return (xdp_action::XDP_ABORTED, Fate::Error);
        };
        return route(ctx, pkt.flow.family, pkt.flow.proto, &client.dst, &dst);
    }
    conntrack::reply_packet(entry, pkt.flow.proto, pkt.tcp_flags, now);
    if rewrite(ctx, pkt, End::Src, &client.dst, client.dport).is_none() {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    }
    route(
        ctx,
        pkt.flow.family,
        pkt.flow.proto,
        &client.dst,
        &client.src,
    )
}
