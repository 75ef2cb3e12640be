//! `cargo xtask setup`: installs what building the XDP side needs, and the
//! tools the lab and tests use (the qemu guest tests' kernel and promtool
//! included), when missing. Idempotent; where it cannot install (not root, not Debian/Ubuntu)
//! it prints the commands to run.

use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// What a step needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Building the XDP object.
    Build,
    /// Building plus the lab's and tests' tools (ethtool, bpftool).
    Lab,
    /// All of the above plus the qemu guest tests' qemu, busybox, ipvsadm
    /// and guest kernels (Debian's release and backports ones, downloaded
    /// into the guest cache).
    Test,
    /// The lab's needs plus the bench's peer (nftables).
    Bench,
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(name).is_file())
}

/// The LLVM major version of the nightly toolchain's rustc: bpf-linker must be built against it.
pub fn nightly_llvm_major() -> Result<u32> {
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"])).context(
        "no nightly toolchain: run `rustup toolchain install nightly --component rust-src`",
    )?;
    let line = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV printed no LLVM version")?;
    line.split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .context("unparsable LLVM version")
}

pub fn llvm_bin(major: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/llvm-{major}/bin"))
}

fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// PATH with LLVM's tools and cargo's bin first, as bpf-linker wants.
pub fn build_path(major: u32) -> std::ffi::OsString {
    let mut dirs = vec![llvm_bin(major), cargo_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH entries have no separator")
}

/// bpf-linker is installed and was built for LLVM `major` (cargo records the
/// features of what it installed in .crates2.json).
fn bpf_linker_ok(major: u32) -> bool {
    if !cargo_bin().join("bpf-linker").is_file() {
        return false;
    }
    let Some(home) = cargo_bin().parent().map(Path::to_path_buf) else {
        return true;
    };
    let Ok(record) = std::fs::read_to_string(home.join(".crates2.json")) else {
        return true;
    };
    let Some(at) = record.find("\"bpf-linker ") else {
        return true;
    };
    let entry = &record[at..];
    let entry = &entry[..entry.find('}').unwrap_or(entry.len())];
    entry.contains(&format!("\"llvm-{major}\""))
}

/// While bird2 or frr is installed: a policy-rc.d that refuses to start
/// services (when the host has none of its own), and afterwards their units
/// disabled, so no routing daemon runs in the host's namespace, now or at boot.
struct RoutingDaemonsStayDown {
    policy: Option<PathBuf>,
    units: Vec<&'static str>,
}

impl RoutingDaemonsStayDown {
    fn new(apt: &[String]) -> Result<RoutingDaemonsStayDown> {
        let units: Vec<&'static str> = [("bird2", "bird.service"), ("frr", "frr.service")]
            .into_iter()
            .filter(|(pkg, _)| apt.iter().any(|p| p == pkg))
            .map(|(_, unit)| unit)
            .collect();
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        let policy = if units.is_empty() || path.exists() {
            None
        } else {
            std::fs::write(
                &path,
                "#!/bin/sh\n# cargo xtask setup: no service starts while it installs\nexit 101\n",
            )?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            Some(path)
        };
        Ok(RoutingDaemonsStayDown { policy, units })
    }

    fn finish(self) {
        if let Some(p) = &self.policy {
            let _ = std::fs::remove_file(p);
        }
        if !self.units.is_empty() && Path::new("/run/systemd/system").is_dir() {
            let _ = Command::new("systemctl")
                .arg("disable")
                .arg("--now")
                .args(&self.units)
                .status();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn is_debian_like() -> bool {
    std::fs::read_to_string("/etc/os-release")
        .map(|s| {
            s.lines().any(|l| {
                (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
                    && (l.contains("debian") || l.contains("ubuntu"))
            })
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("setup: {cmd:?}");
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

/// Checks everything `need` requires and installs what is missing.
pub fn ensure(need: Need) -> Result<()> {
    install(need)?;
    if need == Need::Test {
        guest_kernel()?;
        // tests/tests/metrics_exposition_netns.rs checks the endpoint with it.
        xlb_testbed::promtool::path()?;
    }
    Ok(())
}

/// The guest tests' kernels, in their cache: the release's (apt's package
/// lists are fetched first if they do not know it yet) and bookworm-backports'
/// (for twos_guest; fetched with the cache's own apt state).
fn guest_kernel() -> Result<()> {
    use xlb_testbed::qemu::kernel::{Kernel, KernelChoice};
    if Kernel::get().is_err() {
        if is_root() && is_debian_like() {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
        }
        Kernel::get().context("fetching the qemu guest tests' kernel")?;
    }
    Kernel::choose(KernelChoice::Backports)
        .map(|_| ())
        .context("fetching the qemu guest tests' backports kernel")
}

fn install(need: Need) -> Result<()> {
    let major = nightly_llvm_major()?;
    let mut apt: Vec<String> = Vec::new();
    let mut steps: Vec<String> = Vec::new();

    let rust_src = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .is_some_and(|s| s.lines().any(|l| l.starts_with("rust-src")));
    if !rust_src {
        steps.push("rustup component add rust-src --toolchain nightly".into());
    }
    let llvm_dev = llvm_bin(major).join("llvm-config").is_file();
    if !llvm_dev {
        apt.push(format!("llvm-{major}-dev"));
    }
    let linker = bpf_linker_ok(major);
    if !linker {
        steps.push(format!(
            "PATH={}:$PATH cargo install bpf-linker --no-default-features --features llvm-{major}",
            llvm_bin(major).display()
        ));
    }
    let mut tools = Vec::new();
    if need != Need::Build {
        tools.extend([("ethtool", "ethtool"), ("bpftool", "bpftool")]);
        // BGP scale-out: bird2 beside each director, FRR as the ECMP lab's router.
        tools.extend([("bird", "bird2"), ("vtysh", "frr")]);
    }
    if need == Need::Test {
        tools.extend([
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("busybox", "busybox-static"),
            ("ipvsadm", "ipvsadm"),
            // The IPVS guest tests send connections with it (busybox nc binds no source).
            ("socat", "socat"),
            // The backports guest kernel is zstd-compressed.
            ("zstd", "zstd"),
            // VRRP interop tests: the peer, the capture and its decoder.
            ("keepalived", "keepalived"),
            ("tcpdump", "tcpdump"),
            ("tshark", "tshark"),
        ]);
    }
    // The bench's peer (nftables DNAT); the tests check no_accept's rules with it.
    if matches!(need, Need::Test | Need::Bench) {
        tools.push(("nft", "nftables"));
    }
    for (tool, pkg) in tools {
        if !has_program(tool) {
            apt.push(pkg.into());
        }
    }
    if apt.is_empty() && steps.is_empty() {
        return Ok(());
    }

    let apt_cmd = format!("apt-get update && apt-get install -y {}", apt.join(" "));
    let can_apt = is_root() && is_debian_like();
    if !apt.is_empty() && !can_apt {
        let mut msg = String::from("missing build tools; run these, then try again:\n");
        msg.push_str(&format!(
            "  sudo sh -c '{apt_cmd}'   (or your distribution's LLVM {major} development package)\n"
        ));
        for s in &steps {
            msg.push_str(&format!("  {s}\n"));
        }
        bail!(msg);
    }
    if !apt.is_empty() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        // Routing daemons started on the host by their packages would peer
        // and route in the host's namespace: tests and labs run their own.
        let quiet = RoutingDaemonsStayDown::new(&apt)?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&apt)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        quiet.finish();
    }
    if !rust_src {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !linker {
        run(Command::new("cargo")
            .args([
                "install",
                "--force",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("PATH", build_path(major)))?;
    }
    Ok(())
}
