//! XDP programs for `cargo xtask bench` only, built as their own object so the
//! production object carries no bench code: the floor (drop, MAC swap) that
//! xlb's per-packet cost is compared with, a live-frames traffic generator and
//! a counter for the receiving end.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use lb_common::{
    PROTO_UDP,
    bench::{GEN_FLOWS, GEN_HEADERS_LEN, GEN_SPORT_BASE, PORT},
};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const ETH_P_IPV4: [u8; 2] = [0x08, 0x00];

#[btf_map]
static BENCH_GEN_SEQ: PerCpuArray<u64, 1> = PerCpuArray::new();

#[btf_map]
static BENCH_GEN_HEADERS: Array<[u8; GEN_HEADERS_LEN], 1> = Array::new();

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

/// Writes the headers from `BENCH_GEN_HEADERS` (Ethernet, IPv4 without
/// options, UDP with checksum 0) with the next of `GEN_FLOWS` source ports and
/// sends the frame (XDP_TX, which live-frames mode turns into a transmit on
/// the ingress interface). Live-frames mode recycles pages without restoring
/// their data, and forwarders rewrite headers in place, so every header byte
/// is written on every run.
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let Some(p) = head(&ctx, GEN_HEADERS_LEN) else {
        return xdp_action::XDP_ABORTED;
    };
    let (Some(seq), Some(headers)) = (BENCH_GEN_SEQ.get_ptr_mut(0), BENCH_GEN_HEADERS.get_ptr(0))
    else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: per-CPU slot, a map value of GEN_HEADERS_LEN bytes, and a frame
    // at least that long (checked above).
    unsafe {
        core::ptr::copy_nonoverlapping(headers as *const u8, p, GEN_HEADERS_LEN);
        let n = *seq;
        *seq = n + 1;
        let port = GEN_SPORT_BASE + (n % u64::from(GEN_FLOWS)) as u16;
        let sport = p.add(ETH_LEN + IPV4_LEN) as *mut [u8; 2];
        *sport = port.to_be_bytes();
    }
    xdp_action::XDP_TX
}

/// Counts and drops IPv4 UDP frames to `PORT`; everything else (ARP) passes.
#[xdp]
pub fn bench_count(ctx: XdpContext) -> u32 {
    let Some(p) = head(&ctx, ETH_LEN + IPV4_LEN + 8) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: every offset read is inside the checked length.
    let ours = unsafe {
        let ip = p.add(ETH_LEN);
        let ihl = usize::from(*ip & 0x0f) * 4;
        *(p.add(12) as *const [u8; 2]) == ETH_P_IPV4
            && ihl == IPV4_LEN
            && *ip.add(9) == PROTO_UDP
            && *(ip.add(IPV4_LEN + 2) as *const [u8; 2]) == PORT.to_be_bytes()
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
