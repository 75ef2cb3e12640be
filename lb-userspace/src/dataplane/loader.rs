//! Loading the XDP object with the configured map sizes, attaching it to
//! interfaces, and pinning its maps.

use crate::config::{self, XdpMode};
use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, xdp::XdpLinkId},
};
use lb_common::{PROG_DIRECTOR, PROG_UPKEEP, globals, map_names, sizes};
use std::path::Path;
use tracing::{debug, info, warn};

/// `max_entries` of every map whose size comes from the config.
pub fn map_sizes(dp: &config::Dataplane) -> Result<Vec<(&'static str, u32)>> {
    dp.max_services
        .checked_mul(dp.maglev_table_size)
        .context("max_services × maglev_table_size overflows")?;
    let maglev_entries = sizes::maglev(dp.max_services, dp.maglev_table_size);
    Ok(vec![
        (map_names::SERVICES, dp.max_services),
        (map_names::SERVICE_STATS, dp.max_services),
        (map_names::REALS, dp.max_reals),
        (map_names::REAL_STATS, dp.max_reals),
        (map_names::MAGLEV, maglev_entries),
        (map_names::REAL_CONNS, dp.max_reals),
        (map_names::CONNTRACK, dp.conntrack_size),
        (map_names::NAT_REPLIES, dp.conntrack_size),
        (
            map_names::SERVICE_REALS,
            sizes::service_reals(dp.max_services),
        ),
        (map_names::SCHED_CURSORS, dp.max_services),
        (map_names::REAL_OVERLOAD, dp.max_reals),
    ])
}

/// Loads the embedded object sized for `dp`, with kernel-side logging enabled up to `log_level`
/// (aya-log's numbering: 1 error … 5 trace), and verifies the director and upkeep programs.
/// With `adopt`, every map is the one pinned in that directory instead of a new one
/// (the caller has checked they match, see `adopt.rs`).
pub fn load(
    object: &[u8],
    dp: &config::Dataplane,
    log_level: u8,
    adopt: Option<&Path>,
) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader
        .override_global(globals::MAGLEV_TABLE_SIZE, &dp.maglev_table_size, true)
        .override_global("AYA_LOG_LEVEL", &log_level, false);
    for (name, size) in map_sizes(dp)? {
        loader.map_max_entries(name, size);
    }
    if let Some(dir) = adopt {
        for name in map_names::ALL {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let mut ebpf = loader.load(object).map_err(LoadError::Object)?;
    for name in [PROG_DIRECTOR, PROG_UPKEEP] {
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()?;
        prog.load()
            .map_err(|source| LoadError::Verifier { name, source })?;
    }
    Ok(ebpf)
}

/// Loading the object failed: nothing here passes with time (a map the
/// kernel cannot make, a program it refuses), so each is fatal.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the XDP object into the kernel")]
    Object(#[source] aya::EbpfError),
    #[error("the XDP object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the kernel verifier rejected the program {name}")]
    Verifier {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
}

impl crate::fault::Classify for LoadError {
    fn kind(&self) -> crate::fault::Kind {
        crate::fault::Kind::Fatal
    }
}

/// Attaches the director to `ifname` in `mode`; returns the link and the mode in effect.
pub fn attach(ebpf: &mut Ebpf, ifname: &str, mode: XdpMode) -> Result<(XdpLinkId, XdpMode)> {
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_DIRECTOR)
        .context("the XDP object has no director program")?
        .try_into()?;
    attach_program(prog, ifname, mode)
}

/// Attaches a loaded XDP program to `ifname` in `mode` (auto: native, else
/// generic with the reason logged); returns the link and the mode in effect.
pub fn attach_program(prog: &mut Xdp, ifname: &str, mode: XdpMode) -> Result<(XdpLinkId, XdpMode)> {
    use aya::programs::xdp::XdpMode as Flags;
    let attached = match mode {
        XdpMode::Native => prog
            .attach(ifname, Flags::Driver)
            .map(|l| (l, XdpMode::Native))
            .with_context(|| format!("attaching XDP in native mode to {ifname}")),
        XdpMode::Generic => prog
            .attach(ifname, Flags::Skb)
            .map(|l| (l, XdpMode::Generic))
            .with_context(|| format!("attaching XDP in generic mode to {ifname}")),
        XdpMode::Auto => match prog.attach(ifname, Flags::Driver) {
            Ok(l) => Ok((l, XdpMode::Native)),
            Err(e) => {
                warn!(interface = ifname, reason = %error_chain(&e), "native XDP unavailable, using generic mode");
                prog.attach(ifname, Flags::Skb)
                    .map(|l| (l, XdpMode::Generic))
                    .with_context(|| format!("attaching XDP in generic mode to {ifname}"))
            }
        },
    }?;
    if attached.1 == XdpMode::Native {
        match super::veth::peer_warning(ifname) {
            Ok(Some(w)) => warn!(interface = ifname, "{w}"),
            Ok(None) => {}
            Err(e) => {
                debug!(interface = ifname, error = %error_chain(e.as_ref()), "could not look at the link's peer")
            }
        }
    }
    Ok(attached)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPF_FS_ROOT: &str = "/sys/fs/bpf";

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Whether this process may have a mount namespace of its own: not known
/// to share PID 1's (whose namespace is unreadable in some containers,
/// which then counts as private).
fn private_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(mine), Ok(init)) => mine != init,
        _ => true,
    }
}

/// Makes sure `dir` can live on bpffs: mounts bpffs at /sys/fs/bpf when the
/// pin path is under it and nothing is mounted there yet (as bpftool does).
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new(BPF_FS_ROOT);
    if !dir.starts_with(root) || is_bpffs(root) {
        return Ok(());
    }
    // SAFETY: plain mount(2) with static NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"bpffs".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "{BPF_FS_ROOT} is not a bpffs mount and mounting one failed ({}): mount it with \
             `mount -t bpf bpf {BPF_FS_ROOT}` (systemd does at boot), or set pin_path to a \
             directory on a bpffs mount",
            std::io::Error::last_os_error()
        );
    }
    if private_mount_namespace() {
        // As under `ip netns exec`, which gives each command its own /sys:
        // the maps pinned here are invisible from the host's shells.
        warn!(
            pin_path = %dir.display(),
            "mounted a bpffs at {BPF_FS_ROOT} private to this mount namespace (as under \
             `ip netns exec`): the pinned maps are visible only here, so run `xlb status` \
             the same way (`ip netns exec NS xlb status`), or mount bpffs before starting"
        );
    } else {
        info!("mounted bpffs at {BPF_FS_ROOT}");
    }
    Ok(())
}

/// Pins every xlb map under `dir` (created if needed).
pub fn pin_maps(ebpf: &Ebpf, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !is_bpffs(dir) {
        bail!(
            "{} is not on a bpffs mount: set pin_path to a directory under one",
            dir.display()
        );
    }
    for name in map_names::ALL {
        let map = ebpf
            .map(name)
            .with_context(|| format!("map {name} missing from the object"))?;
        map.pin(dir.join(name))
            .with_context(|| format!("pinning {name} under {}", dir.display()))?;
    }
    info!(dir = %dir.display(), "maps pinned");
    Ok(())
}

/// Removes xlb's pins from `dir` and the directory if it is then empty.
pub fn unpin_maps(dir: &Path) -> Result<()> {
    for name in map_names::ALL {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("removing pin {}: {e}", dir.join(name).display()),
        }
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
