//! Sending a rewritten frame on: XDP_TX out of the ingress interface, or a
//! redirect through `TX_PORTS` to another one; a real server's next hop; LVS
//! direct routing.

use crate::{maps::TX_PORTS, parse::ptr_at, stats::Fate};
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::RealInfo;
use network_types::eth::EthHdr;

/// Sets the frame's MACs and sends it out of `ifindex`.
#[inline(always)]
pub fn send(ctx: &XdpContext, ifindex: u32, src: [u8; 6], dst: [u8; 6]) -> (u32, Fate) {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    };
    unsafe {
        (*eth).dst_addr = dst;
        (*eth).src_addr = src;
    }
    if ifindex == ctx.ingress_ifindex() as u32 {
        return (xdp_action::XDP_TX, Fate::Tx);
    }
    crate::probe::hit(lb_common::probe::REDIRECT);
    match TX_PORTS.redirect(ifindex, 0) {
        Ok(action) => (action, Fate::Redirect),
        Err(_) => (xdp_action::XDP_ABORTED, Fate::Error),
    }
}

/// LVS direct routing: the frame leaves unchanged but for its MAC addresses,
/// towards a real server that holds the VIP on a non-ARPing interface.
#[inline(always)]
pub fn direct_route(ctx: &XdpContext, real: &RealInfo) -> (u32, Fate) {
    to_next_hop(ctx, real)
}

/// Sends the frame as it now stands to `real`'s next hop (its MAC, or for a
/// routed tunnel the gateway's): destination MAC `real.mac`, source the
/// egress interface's (`real.src_mac`, kept with the real so no interface
/// lookup is needed); XDP_TX if that is the ingress interface, else
/// XDP_REDIRECT through `TX_PORTS`.
#[inline(always)]
pub fn to_next_hop(ctx: &XdpContext, real: &RealInfo) -> (u32, Fate) {
    send(ctx, real.ifindex, real.src_mac, real.mac)
}
