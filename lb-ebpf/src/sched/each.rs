//! Bounded loops through `bpf_loop`: the verifier checks the body once
//! instead of once per iteration, so a scan over 256 reals stays cheap.

use aya_ebpf::{cty::c_void, helpers::bpf_loop};

/// One step of a scan; returns true to stop.
pub trait Step {
    fn step(&mut self, i: u32) -> bool;
}

unsafe extern "C" fn call<S: Step>(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `&mut S` handed to bpf_loop below, alive for the loop.
    let s = unsafe { &mut *(ctx as *mut S) };
    s.step(i as u32) as i64
}

/// Runs `s.step(0)`, `s.step(1)`, … up to `n` times or until it returns true.
#[inline(always)]
pub fn each<S: Step>(n: u32, s: &mut S) {
    // The callback must reach the kernel as a function reference (BPF_PSEUDO_FUNC).
    let f = call::<S> as unsafe extern "C" fn(u64, *mut c_void) -> i64;
    crate::probe::hit(lb_common::probe::LOOP);
    unsafe {
        bpf_loop(n, f as *mut c_void, s as *mut S as *mut c_void, 0);
    }
}
