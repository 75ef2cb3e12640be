//! The capabilities `xlb run` needs, checked before it touches anything, so
//! a missing one is one line naming it (as ipvsadm's "you must be root")
//! rather than whatever the first refused system call reports (a lock
//! file's "Permission denied", a verifier dump). CAP_SYS_ADMIN stands in for
//! CAP_BPF and CAP_PERFMON, as it does in kernels before 5.8.

use crate::config::{Config, DataplaneKind};
use anyhow::{Result, bail};

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// A capability the config needs and why.
struct Need {
    cap: u32,
    name: &'static str,
    why: &'static str,
}

/// What `config` needs, in the order they are reported.
fn needs(config: &Config) -> Vec<Need> {
    let mut n = Vec::new();
    if config.dataplane.kind == DataplaneKind::Xdp {
        n.push(Need {
            cap: CAP_BPF,
            name: "CAP_BPF",
            why: "maps and the XDP program",
        });
        n.push(Need {
            cap: CAP_PERFMON,
            name: "CAP_PERFMON",
            why: "the verifier accepts the director only with it",
        });
    }
    n.push(Need {
        cap: CAP_NET_ADMIN,
        name: "CAP_NET_ADMIN",
        why: "attaching to interfaces, routes, neighbours, IPVS",
    });
    if !config.vrrp.instances.is_empty() {
        n.push(Need {
            cap: CAP_NET_RAW,
            name: "CAP_NET_RAW",
            why: "VRRP's raw sockets",
        });
    }
    n
}

/// The effective set from /proc/self/status's `CapEff` (hex).
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The names (with why) of what `config` needs and `have` lacks.
fn missing(config: &Config, have: u64) -> Vec<String> {
    let has = |cap: u32| have & (1 << cap) != 0;
    needs(config)
        .into_iter()
        .filter(|n| {
            let stands_in = matches!(n.cap, CAP_BPF | CAP_PERFMON) && has(CAP_SYS_ADMIN);
            !has(n.cap) && !stands_in
        })
        .map(|n| format!("{} ({})", n.name, n.why))
        .collect()
}

/// Fails with one line naming every capability `config` needs and this
/// process lacks.
pub fn require(config: &Config) -> Result<()> {
    let Some(have) = effective() else {
        return Ok(());
    };
    refuse(
        "run",
        &missing(config, have).join(", "),
        " (packaging/xlb.service grants them)",
    )
}

/// Fails with one line naming what `xlb COMMAND` lacks, unless nothing.
fn refuse(command: &str, lacking: &str, hint: &str) -> Result<()> {
    if lacking.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let who = if root {
        "this process lacks"
    } else {
        "it is not running as root and lacks"
    };
    bail!("xlb {command} needs {lacking}; {who} them: run it as root{hint}")
}

/// What `xlb status` and `xlb ipvsadm` lack (with why) to read the running
/// data plane: its pinned maps need CAP_BPF (or CAP_SYS_ADMIN), the kernel's
/// IPVS CAP_NET_ADMIN.
fn reader_missing(have: u64) -> Vec<&'static str> {
    let has = |cap: u32| have & (1 << cap) != 0;
    let mut lacking = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        lacking.push("CAP_BPF (the data plane's pinned maps)");
    }
    if !has(CAP_NET_ADMIN) {
        lacking.push("CAP_NET_ADMIN (the kernel's IPVS)");
    }
    lacking
}

/// Fails with one line when this process cannot read the running data
/// plane, as ipvsadm's "you must be root", rather than "no maps pinned"
/// (a pin directory it may not search looks empty) or a netlink EPERM.
pub fn require_reader(command: &str) -> Result<()> {
    let Some(have) = effective() else {
        return Ok(());
    };
    refuse(command, &reader_missing(have).join(" and "), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        crate::config::parse(
            "x.toml",
            &format!("[dataplane]\ninterfaces = [\"eth0\"]\n{extra}"),
        )
        .unwrap()
    }

    #[test]
    fn a_reader_needs_bpf_or_sys_admin_and_net_admin() {
        assert!(reader_missing((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)).is_empty());
        assert!(reader_missing((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)).is_empty());
        assert_eq!(reader_missing(0).len(), 2);
        assert_eq!(
            reader_missing(1 << CAP_NET_ADMIN),
            ["CAP_BPF (the data plane's pinned maps)"]
        );
    }

    #[test]
    fn names_what_is_missing_for_the_plane() {
        let all = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN);
        let xdp = config("");
        assert!(missing(&xdp, all).is_empty());
        let lacking = missing(&xdp, all & !(1 << CAP_PERFMON));
        assert_eq!(lacking.len(), 1);
        assert!(lacking[0].starts_with("CAP_PERFMON ("), "{lacking:?}");
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON.
        assert!(missing(&xdp, (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)).is_empty());
        let ipvs = config("kind = \"ipvs\"\n");
        assert!(missing(&ipvs, 1 << CAP_NET_ADMIN).is_empty());
        assert_eq!(missing(&ipvs, 0).len(), 1);
    }
}
