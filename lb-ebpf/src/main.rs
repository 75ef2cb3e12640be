//! xlb's XDP director: parse → service → conntrack or scheduler → forward → stats.
#![no_std]
#![no_main]
// atomic_xadd: the rr/wrr cursor's fetch-and-add (see sched/table.rs).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod conntrack;
mod forward;
mod maps;
mod parse;
mod sched;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use lb_common::{REAL_F_REACHABLE, RealInfo, SERVICE_F_ACTIVE, ServiceKey, method};
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
    let flow = match parse::parse(ctx) {
        Ok(flow) => flow,
        Err(Skip::NotOurs) => return (xdp_action::XDP_PASS, Fate::Pass),
        Err(Skip::Malformed) => return (xdp_action::XDP_PASS, Fate::Malformed),
        Err(Skip::Fragment) => return (xdp_action::XDP_PASS, Fate::Fragment),
    };
    let key = ServiceKey {
        addr: flow.dst,
        port: flow.dport,
        proto: flow.proto,
        family: flow.family,
    };
    let Some(service) = (unsafe { SERVICES.get(key) }) else {
        return (xdp_action::XDP_PASS, Fate::Pass);
    };
    if service.flags & SERVICE_F_ACTIVE == 0 {
        return (xdp_action::XDP_PASS, Fate::Pass);
    }

    // An existing flow keeps its real while that real is still usable in this service.
    let existing = conntrack::lookup(&flow, service.id).and_then(|id| usable(id, service.id));
    let (real_id, real, new_conn) = match existing {
        Some((id, real)) => (id, real, false),
        None => {
            let Some((id, real)) =
                sched::pick(service, &flow).and_then(|id| usable(id, service.id))
            else {
                return (xdp_action::XDP_DROP, Fate::Drop);
            };
            if !conntrack::record(&flow, service.id, id) {
                return (xdp_action::XDP_ABORTED, Fate::Error);
            }
            debug!(ctx, "new flow on service {} -> real {}", service.id, id);
            (id, real, true)
        }
    };

    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let verdict = match real.method {
        method::DR => forward::direct_route(ctx, real),
        _ => (xdp_action::XDP_ABORTED, Fate::Error),
    };
    if matches!(verdict.1, Fate::Tx | Fate::Redirect) {
        stats::forwarded(service.id, real_id, bytes, new_conn);
    }
    verdict
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
