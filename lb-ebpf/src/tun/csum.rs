//! Internet checksums (RFC 1071) with the kernel's `bpf_csum_diff`, which sums
//! 32-bit words in memory order, or inline for an IPv4 header: the folded
//! result stored in memory order is the checksum's bytes, whatever the CPU's
//! endianness.

use aya_ebpf::helpers::bpf_csum_diff;
use network_types::ip::Ipv4Hdr;

/// Adds the `len` bytes at `ptr` (a multiple of 4, at most 512, checked
/// readable by the caller) to the partial sum `seed`.
#[inline(always)]
pub fn add(ptr: *const u8, len: u32, seed: u32) -> u32 {
    crate::probe::hit(lb_common::probe::CSUM_DIFF);
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, ptr as *mut u32, len, seed) };
    sum as u32
}

/// The checksum field's two bytes for the partial sum `sum`.
#[inline(always)]
pub fn finish(sum: u32) -> [u8; 2] {
    let mut s = (sum & 0xffff) + (sum >> 16);
    s = (s & 0xffff) + (s >> 16);
    (!(s as u16)).to_ne_bytes()
}

/// The checksum field's two bytes for a 20-byte IPv4 header (its own
/// checksum field zero), summed inline: cheaper than the helper call for
/// ten words, and a straight line for the verifier.
#[inline(always)]
pub fn ipv4_header(hdr: &Ipv4Hdr) -> [u8; 2] {
    // SAFETY: an Ipv4Hdr is 20 bytes with no padding: ten 16-bit words.
    let words = unsafe { &*(hdr as *const Ipv4Hdr as *const [[u8; 2]; 10]) };
    let mut sum = 0u32;
    let mut i = 0;
    while i < words.len() {
        sum += u16::from_ne_bytes(words[i]) as u32;
        i += 1;
    }
    finish(sum)
}
