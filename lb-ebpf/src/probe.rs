//! Per-site counters for the bench (`lb_common::probe`): with the `count`
//! feature every map access and helper call adds one to its slot; without
//! it `hit` is empty and the object has no `PROBES` map.

#[cfg(feature = "count")]
use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};

#[cfg(feature = "count")]
#[btf_map]
static PROBES: PerCpuArray<u64, { lb_common::probe::COUNT as usize }> = PerCpuArray::new();

/// Counts one pass through `site` (`lb_common::probe::*`).
#[inline(always)]
pub fn hit(site: u32) {
    #[cfg(feature = "count")]
    if let Some(c) = PROBES.get_ptr_mut(site) {
        // SAFETY: this CPU's slot; nothing else writes it meanwhile.
        unsafe { *c += 1 };
    }
    #[cfg(not(feature = "count"))]
    let _ = site;
}
