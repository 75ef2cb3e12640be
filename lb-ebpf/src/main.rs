//! xlb's XDP director: parse → service → conntrack or scheduler → forward →
//! stats; and the upkeep program the agent's reclaimer runs (`upkeep.rs`).
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
mod probe;
mod sched;
mod stats;
mod tun;
mod upkeep;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use lb_common::{
    FAMILY_V6, FlowKey, FlowState, PROTO_TCP, REAL_F_DRAINING, REAL_F_REACHABLE, RealInfo,
    SERVICE_F_ACTIVE, SERVICE_F_PERSISTENT, ServiceInfo, ServiceKey, Settings,
    conn::{self, Dir},
    flow_hash, method,
};
use maps::{REALS, SERVICES, SETTINGS};
use parse::Skip;
use stats::{Event, Fate};

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
    let key = ServiceKey {
        addr: flow.dst,
        port: flow.dport,
        proto: flow.proto,
        family: flow.family,
    };
    crate::probe::hit(lb_common::probe::SERVICES);
    let Some(service) = (unsafe { SERVICES.get(key) }) else {
        // Not for a service; perhaps a real server's reply to a NAT flow,
        // if there are NAT services and a NAT real uses its source port
        // (else the reply lookup is saved).
        if !nat::configured() || !nat::may_be_reply(flow.sport) {
            return (xdp_action::XDP_PASS, Fate::Pass);
        }
        return nat::reply(ctx, &pkt);
    };
    if service.flags & SERVICE_F_ACTIVE == 0 {
        return (xdp_action::XDP_PASS, Fate::Pass);
    }
    crate::probe::hit(lb_common::probe::SETTINGS);
    let Some(settings) = SETTINGS.get(0) else {
        return (xdp_action::XDP_ABORTED, Fate::Error);
    };
    // Read only now: traffic for no service needs no timestamp.
    let now = conntrack::now();

    // An existing flow keeps its real while it is live and that real is
    // still usable in this service. An ICMP error about a flow (say
    // "fragmentation needed" from a router near the client) goes to the
    // flow's real by the flow's method, through the same forwarding calls
    // (one call site each keeps the verifier's work down); it never creates
    // a flow or moves its state. An entry idle past its timeout is gone, as
    // in IPVS, whether or not the reclaimer deleted it yet.
    let opens = flow.proto == PROTO_TCP && conn::opens(pkt.tcp_flags);
    let found = conntrack::lookup(flow);
    let known = match found {
        Some(e) if conntrack::live(e, now, settings) => flow_real(e, service, opens, settings),
        Some(_) => Known::Stale,
        None => Known::None,
    };
    let (real_id, real, new_flow, new_conn) = match known {
        Known::Keep(e, id, real) => {
            if !pkt.icmp_error {
                conntrack::client_packet(e, flow.proto, pkt.tcp_flags, dir(real), now);
            }
            (id, real, false, false)
        }
        _ if pkt.icmp_error => return (xdp_action::XDP_PASS, Fate::Pass),
        _ => {
            if let Some(e) = found {
                // A flow whose real no longer serves the service: under
                // nodest `expire` its packets end with it; else it is
                // scheduled anew below (as is a new connection on its ports).
                if matches!(known, Known::Unusable) && !opens && conntrack::expire_nodest(settings)
                {
                    conntrack::forget(flow, e);
                    return (xdp_action::XDP_DROP, Fate::NodestExpired);
                }
                match known {
                    Known::Stale => stats::event(Event::Stale),
                    Known::Reused => stats::event(Event::Reused),
                    _ => {}
                }
            }
            let Some((id, real)) = sched::pick(service, flow)
                .and_then(|id| usable(id, service.id))
                .filter(|(_, r)| r.flags & REAL_F_DRAINING == 0)
            else {
                return (xdp_action::XDP_DROP, Fate::Drop);
            };
            // Whatever the entry held ends now, uncounted once by whoever
            // claims it: after scheduling, so that lc/wlc still see the old
            // connection when they choose, as IPVS (which expires it by
            // timer).
            if let Some(e) = found {
                conntrack::release(e);
            }
            let state = conn::first(flow.proto, flags_again(&pkt));
            if !conntrack::record(flow, service.id, id, state, now) {
                return (xdp_action::XDP_ABORTED, Fate::Error);
            }
            // A pickup is no new connection: the client opened it elsewhere.
            let new_conn = state != conn::PICKUP;
            if !new_conn {
                stats::event(Event::Pickup);
            }
            debug!(ctx, "new flow on service {} -> real {}", service.id, id);
            (id, real, true, new_conn)
        }
    };

    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let verdict = match real.method {
        method::DR => forward::direct_route(ctx, real),
        method::NAT => nat::inbound(ctx, &pkt, real, new_flow),
        method::TUN => tun::encapsulate(ctx, real, flow.family, tun_hash(flow, real)),
        _ => (xdp_action::XDP_ABORTED, Fate::Error),
    };
    if matches!(verdict.1, Fate::Tx | Fate::Redirect) {
        stats::forwarded(service.id, real_id, bytes, new_conn);
    }
    verdict
}

/// The flow hash a tunnel carries (IPv6 flow label, GUE source port), or 0
/// for IPv4 IPIP, whose header has no place for it: hashing costs ~20 ns.
#[inline(always)]
fn tun_hash(flow: &FlowKey, real: &RealInfo) -> u32 {
    if real.family == FAMILY_V6 || real.tun_type == lb_common::tun::GUE {
        flow_hash(flow)
    } else {
        0
    }
}

/// What the flow table entry means for the packet at hand.
enum Known {
    /// No entry.
    None,
    /// An entry idle past its timeout, or claimed by someone else: gone.
    Stale,
    /// The flow continues on this real.
    Keep(*mut FlowState, u32, &'static RealInfo),
    /// The entry names a real that cannot take its packets any more (gone,
    /// unreachable, another service's), or a draining one a SYN may not
    /// open a new connection on.
    Unusable,
    /// A SYN opens a new connection on a closed flow's ports (`conn_reuse_mode`).
    Reused,
}

/// The packet's TCP flags read again, not the value `opens` was computed
/// from: the verifier then does not follow the scheduler once with `opens`
/// true and once false.
#[inline(always)]
fn flags_again(pkt: &parse::Packet) -> u8 {
    // SAFETY: a plain read of a field of a live value.
    unsafe { core::ptr::read_volatile(&pkt.tcp_flags) }
}

/// The IPVS table a client packet moves a flow by: NAT sees the replies too.
#[inline(always)]
fn dir(real: &RealInfo) -> Dir {
    if real.method == method::NAT {
        Dir::Input
    } else {
        Dir::InputOnly
    }
}

/// What the live `entry` means for a packet of `service` (`opens`: a SYN
/// without RST). A draining real (nodest policy `keep`) takes its flows'
/// packets, but not a SYN opening a new connection on an old flow's ports;
/// a SYN on a flow in TIME_WAIT or CLOSE (or FIN_WAIT, or a pickup) opens a
/// new connection as IPVS's `conn_reuse_mode` decides, except in a
/// persistent service (IPVS: the template controls the connection).
#[inline(always)]
fn flow_real(
    entry: *mut FlowState,
    service: &ServiceInfo,
    opens: bool,
    settings: &Settings,
) -> Known {
    // SAFETY: `entry` points into the flow table.
    let (flow_service, real_id) = unsafe { ((*entry).service_id, (*entry).real_id) };
    if flow_service != service.id {
        return Known::Unusable;
    }
    let Some((id, real)) = usable(real_id, service.id) else {
        return Known::Unusable;
    };
    if opens && real.flags & REAL_F_DRAINING != 0 {
        return Known::Unusable;
    }
    if opens
        && service.flags & SERVICE_F_PERSISTENT == 0
        && conn::reused(
            conntrack::state_of(entry),
            settings.flags,
            real.method != method::NAT,
        )
    {
        return Known::Reused;
    }
    Known::Keep(entry, id, real)
}

/// The real server `id` if it belongs to `service_id` and can take packets.
#[inline(always)]
fn usable(id: u32, service_id: u32) -> Option<(u32, &'static RealInfo)> {
    crate::probe::hit(lb_common::probe::REALS);
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
