//! `cargo xtask vm-test`: only the qemu guest tests (the harness's own, the
//! IPVS data plane's against a real kernel IPVS: services, health checks,
//! sync daemons; twos against the kernel's ip_vs_twos on bookworm-backports'
//! 6.12; and the XDP data plane on the guest's older kernel): the guests
//! tier of `cargo xtask test` alone, without fmt and clippy.

use crate::{
    build,
    setup::Need,
    test::{Tier, root_tier},
};
use anyhow::Result;

pub fn run() -> Result<()> {
    xlb_testbed::require_root()?;
    // The XDP object is embedded in the agent; building it also installs
    // qemu, busybox, ipvsadm and the guest kernel when missing.
    build::ebpf(Need::Test)?;
    root_tier(Tier::Guests, None)
}
