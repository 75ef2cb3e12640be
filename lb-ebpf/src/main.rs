//! xlb's XDP director: parse → service → conntrack or scheduler → forward → stats.
#![no_std]
#![no_main]
// Atomic intrinsics: connection counts (conntrack.rs), the rr/wrr cursor (sched/table.rs).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod conntrack;
mod csum;
mod forward;
mod icmp_nat;
mod maps;
mod nat;
mod parse;
mod sched;
mod stats;
mod tun;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use aya_log_ebpf::debug;
use lb_common::{
    FlowState, PROTO_TCP, REAL_F_DRAINING, REAL_F_REACHABLE, RealInfo, SERVICE_F_ACTIVE,
    ServiceKey, conn, flow_hash, method,
};
use maps::{REALS, SERVICES};
use parse::Skip;
use stats::Fate;

#[xdp]
pub fn xlb_director(ctx: XdpContext) -> u32 {
    let (action, fate) = director(&ctx);
    stats::global(fate);
    action
}

/// Passes every frame: attached to veth peers so native XDP_TX frames are received.
#[xdp]
pub fn xlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn director(ctx: &XdpContext) -> (u32, Fate) {
    let pkt = match parse::parse(ctx) {
        Ok(pkt) => pkt,
        Err(Skip::NotOurs) => return (xdp_action::XDP_PASS, Fate::Pass),
        Err(Skip::Malformed) => return (xdp_action::XDP_PASS, Fate::Malformed),
        Err(Skip::Fragment) => return (xdp_action::XDP_PASS, Fate::Fragment),
    };
    let flow = &pkt.flow;
    let now = unsafe { bpf_ktime_get_ns() };
    let key = ServiceKey {
        addr: flow.dst,
        port: flow.dport,
        proto: flow.proto,
        family: flow.family,
    };
    let Some(service) = (unsafe { SERVICES.get(key) }) else {
        // Not for a service; perhaps a real server's reply to a NAT flow,
        // if there are NAT services (else the reply lookup is saved).
        if !nat::configured() {
            return (xdp_action::XDP_PASS, Fate::Pass);
        }
        return nat::reply(ctx, &pkt, now);
    };
    if service.flags & SERVICE_F_ACTIVE == 0 {
        return (xdp_action::XDP_PASS, Fate::Pass);
    }

    // An existing flow keeps its real while that real is still usable in this
    // service. An ICMP error about a flow (say "fragmentation needed" from a
    // router near the client) goes to the flow's real by the flow's method,
    // through the same forwarding calls (one call site each keeps the
    // verifier's work down); it never creates a flow or moves its state.
    let entry = conntrack::lookup(flow);
    // A bare SYN opens a new connection, even on a port an old flow used.
    let syn = flow.proto == PROTO_TCP
        && pkt.tcp_flags & (conn::TCP_SYN | conn::TCP_ACK | conn::TCP_RST) == conn::TCP_SYN;
    let existing =
        entry.and_then(|e| flow_real(e, service.id, syn).map(|(id, real)| (e, id, real)));
    let (real_id, real, new_conn) = match existing {
        Some((_, id, real)) if pkt.icmp_error => (id, real, false),
        Some((e, id, real)) => {
            conntrack::client_packet(e, flow.proto, pkt.tcp_flags, now);
            (id, real, false)
        }
        None if pkt.icmp_error => return (xdp_action::XDP_PASS, Fate::Pass),
        None => {
            // A flow whose real no longer serves the service: under nodest
            // `expire` it ends here, else it is scheduled anew below (as is
            // a new connection reusing its ports).
            if let Some(e) = entry
                && !syn
                && conntrack::expire_nodest()
            {
                conntrack::forget(flow, e);
                return (xdp_action::XDP_DROP, Fate::NodestExpired);
            }
            let Some((id, real)) = sched::pick(service, flow)
                .and_then(|id| usable(id, service.id))
                .filter(|(_, r)| r.flags & REAL_F_DRAINING == 0)
            else {
                return (xdp_action::XDP_DROP, Fate::Drop);
            };
            if let Some(e) = entry {
                conntrack::release(e);
            }
            if !conntrack::record(flow, service.id, id, pkt.tcp_flags, now) {
                return (xdp_action::XDP_ABORTED, Fate::Error);
            }
            debug!(ctx, "new flow on service {} -> real {}", service.id, id);
            (id, real, true)
        }
    };

    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let verdict = match real.method {
        method::DR => forward::direct_route(ctx, real),
        method::NAT => nat::inbound(ctx, &pkt, real, new_conn),
        method::TUN => tun::encapsulate(ctx, real, flow.family, flow_hash(flow)),
        _ => (xdp_action::XDP_ABORTED, Fate::Error),
    };
    if matches!(verdict.1, Fate::Tx | Fate::Redirect) {
        stats::forwarded(service.id, real_id, bytes, new_conn);
    }
    verdict
}

/// The real a flow table entry names, if the entry was made for `service_id`
/// and that real can still take its packets. A draining real (nodest policy
/// `keep`) takes those of its flows, but not a `syn` opening a new
/// connection on an old flow's ports.
#[inline(always)]
fn flow_real(
    entry: *mut FlowState,
    service_id: u32,
    syn: bool,
) -> Option<(u32, &'static RealInfo)> {
    // SAFETY: `entry` points into the flow table.
    let (flow_service, real_id) = unsafe { ((*entry).service_id, (*entry).real_id) };
    if flow_service != service_id {
        return None;
    }
    usable(real_id, service_id).filter(|(_, r)| !(syn && r.flags & REAL_F_DRAINING != 0))
}

/// The real server `id` if it belongs to `service_id` and can take packets.
#[inline(always)]
fn usable(id: u32, service_id: u32) -> Option<(u32, &'static RealInfo)> {
    let real = REALS.get(id)?;
    (real.flags & REAL_F_REACHABLE != 0 && real.service_id == service_id).then_some((id, real))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
