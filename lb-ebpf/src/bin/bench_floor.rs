//! XDP programs for `cargo xtask bench` only, built as their own object so the
//! production object carries no bench code: the floors (drop, MAC swap) that
//! xlb's per-packet cost is compared with, the live section's floor (the same
//! redirect xlb does, and nothing else) and a counter for the receiving end.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, DevMapHash, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::{
    PROTO_IPIP, PROTO_UDP,
    bench::{PORT, Redirect},
};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const ETH_P_IPV4: [u8; 2] = [0x08, 0x00];

#[btf_map]
static BENCH_REDIRECT_TO: Array<Redirect, 1> = Array::new();

#[btf_map]
static BENCH_TX_PORTS: DevMapHash<8> = DevMapHash::new();

#[btf_map]
static BENCH_RX: PerCpuArray<u64, 1> = PerCpuArray::new();

/// `len` bytes at the start of the frame, if it has that many.
#[inline(always)]
fn head(ctx: &XdpContext, len: usize) -> Option<*mut u8> {
    (ctx.data() + len <= ctx.data_end()).then_some(ctx.data() as *mut u8)
}

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_mac_swap(ctx: XdpContext) -> u32 {
    let Some(p) = head(&ctx, ETH_LEN) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: the first 12 bytes are inside the frame (checked above).
    unsafe {
        let dst = p as *mut [u8; 6];
        let src = p.add(6) as *mut [u8; 6];
        core::ptr::swap(dst, src);
    }
    xdp_action::XDP_TX
}

/// Writes the Ethernet addresses from `BENCH_REDIRECT_TO` and redirects the
/// frame to its interface through `BENCH_TX_PORTS`, as xlb's DR path sends a
/// frame on (`forward::send`), with no parsing, lookup or state: what the
/// live section's veth path carries with the least a forwarder can do.
#[xdp]
pub fn bench_redirect(ctx: XdpContext) -> u32 {
    let (Some(p), Some(to)) = (head(&ctx, ETH_LEN), BENCH_REDIRECT_TO.get(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: the first 12 bytes are inside the frame (checked above).
    unsafe {
        *(p as *mut [u8; 6]) = to.dst;
        *(p.add(6) as *mut [u8; 6]) = to.src;
    }
    BENCH_TX_PORTS
        .redirect(to.ifindex, 0)
        .unwrap_or(xdp_action::XDP_ABORTED)
}

/// Whether `ip` starts an IPv4 header without options carrying UDP to `PORT`.
///
/// # Safety
/// `ip` must have `IPV4_LEN + 4` readable bytes.
#[inline(always)]
unsafe fn udp_to_port(ip: *const u8) -> bool {
    unsafe {
        *ip == 0x45
            && *ip.add(9) == PROTO_UDP
            && *(ip.add(IPV4_LEN + 2) as *const [u8; 2]) == PORT.to_be_bytes()
    }
}

/// Counts and drops IPv4 UDP frames to `PORT`, bare (DR, NAT, the floor)
/// or inside IPIP (TUN); everything else (ARP) passes.
#[xdp]
pub fn bench_count(ctx: XdpContext) -> u32 {
    let Some(p) = head(&ctx, ETH_LEN + IPV4_LEN + 8) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: every offset read is inside the checked length (the inner
    // header's only once the longer length is checked).
    let ours = unsafe {
        let ip = p.add(ETH_LEN);
        *(p.add(12) as *const [u8; 2]) == ETH_P_IPV4
            && if *ip == 0x45 && *ip.add(9) == PROTO_IPIP {
                head(&ctx, ETH_LEN + 2 * IPV4_LEN + 8).is_some() && udp_to_port(ip.add(IPV4_LEN))
            } else {
                udp_to_port(ip)
            }
    };
    if !ours {
        return xdp_action::XDP_PASS;
    }
    if let Some(rx) = BENCH_RX.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *rx += 1 };
    }
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
