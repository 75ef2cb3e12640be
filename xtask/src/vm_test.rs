//! `cargo xtask vm-test`: only the qemu guest tests (the harness's own, the
//! IPVS data plane's against a real kernel IPVS: services, health checks,
//! sync daemons; twos against the kernel's ip_vs_twos on bookworm-backports'
//! 6.12; and the XDP data plane on the guest's older kernel). `cargo xtask test`
//! runs them too, with the rest of the workspace's tests.

use crate::{
    build::{self, root, run_checked},
    setup::Need,
};
use anyhow::Result;
use std::process::Command;

pub fn run() -> Result<()> {
    xlb_testbed::require_root()?;
    // The XDP object is embedded in the agent; building it also installs
    // qemu, busybox, ipvsadm and the guest kernel when missing.
    build::ebpf(Need::Test)?;
    let xlb = build::agent()?;
    run_checked(
        Command::new("cargo")
            .args([
                "test",
                "-p",
                "xlb-tests",
                "--test",
                "qemu_guest",
                "--test",
                "ipvs_guest",
                "--test",
                "ipvs_guest_health",
                "--test",
                "ipvs_guest_sync",
                "--test",
                "twos_guest",
                "--test",
                "xdp_guest",
            ])
            .env("XLB_BIN", &xlb)
            .args(["--", "--test-threads=1"])
            .current_dir(root()),
    )
}
