//! The XDP data plane: one agent owns a pin directory, loads the director,
//! pins its maps, attaches it, and keeps the maps equal to the desired state.

use super::{
    DataPlane, DesiredService, loader, sweep,
    tables::{Tables, TunnelSources},
};
use crate::config::{self, NodestPolicy, XdpMode};
use anyhow::{Context, Result, bail};
use aya::maps::{Array, xdp::DevMapHash};
use aya::{
    Ebpf,
    programs::{Xdp, links::FdLink, xdp::XdpLinkId},
};
use lb_common::{PROG_DIRECTOR, SETTINGS_F_NAT, SETTINGS_F_NODEST_EXPIRE, Settings, map_names};
use std::{
    fs::File,
    path::{Path, PathBuf},
};
use tracing::{debug, info, warn};

pub struct XdpDataPlane {
    ebpf: Ebpf,
    tables: Tables,
    pin_dir: PathBuf,
    attached: Vec<(String, XdpLinkId, XdpMode)>,
    settings: Settings,
    /// Held for the agent's life: one agent per pin directory.
    _lock: File,
}

/// Lock file guarding a pin directory; kept outside bpffs, which holds no regular files.
fn lock_path(pin_dir: &Path) -> PathBuf {
    let flat = pin_dir
        .to_string_lossy()
        .trim_matches('/')
        .replace('/', "_");
    PathBuf::from("/run/xlb").join(format!("{flat}.lock"))
}

fn link_pin(pin_dir: &Path, ifname: &str) -> PathBuf {
    pin_dir.join(format!("link_{ifname}"))
}

impl XdpDataPlane {
    /// Loads and attaches the director per `dp`. On any failure nothing stays
    /// attached or pinned.
    pub fn start(object: &[u8], dp: &config::Dataplane, log_level: u8) -> Result<XdpDataPlane> {
        let lock = take_lock(&dp.pin_path)?;
        loader::ensure_bpffs(&dp.pin_path)?;
        clear_stale(&dp.pin_path)?;
        let ebpf = loader::load(object, dp, log_level)?;
        let mut plane = XdpDataPlane {
            ebpf,
            tables: Tables::new(dp.maglev_table_size, dp.max_services, dp.max_reals),
            pin_dir: dp.pin_path.clone(),
            attached: Vec::new(),
            settings: Settings {
                tcp_timeout_s: dp.timeouts.tcp,
                tcp_fin_timeout_s: dp.timeouts.tcp_fin,
                udp_timeout_s: dp.timeouts.udp,
                flags: match dp.nodest {
                    NodestPolicy::Expire => SETTINGS_F_NODEST_EXPIRE,
                    NodestPolicy::Keep | NodestPolicy::Reschedule => 0,
                },
                ..Settings::default()
            },
            _lock: lock,
        };
        plane
            .tables
            .set_keep_draining(dp.nodest == NodestPolicy::Keep);
        plane.tables.set_configured_sources(TunnelSources {
            v4: dp.tunnel_source_v4,
            v6: dp.tunnel_source_v6,
        });
        if let Err(e) = plane.pin_and_attach(dp) {
            plane.detach_all();
            let _ = loader::unpin_maps(&plane.pin_dir);
            return Err(e);
        }
        Ok(plane)
    }

    fn pin_and_attach(&mut self, dp: &config::Dataplane) -> Result<()> {
        loader::pin_maps(&self.ebpf, &self.pin_dir)?;
        let mut settings: Array<_, Settings> = Array::try_from(
            self.ebpf
                .map_mut(map_names::SETTINGS)
                .context("SETTINGS map missing")?,
        )?;
        settings.set(0, self.settings, 0)?;
        for ifname in &dp.interfaces {
            // Every attached interface is a redirect target: NAT replies leave
            // through the client side, which need not hold any real server.
            let ifindex = ifindex(ifname)?;
            let mut ports: DevMapHash<_> = DevMapHash::try_from(
                self.ebpf
                    .map_mut(map_names::TX_PORTS)
                    .context("TX_PORTS map missing")?,
            )?;
            ports
                .insert(ifindex, ifindex, None, 0)
                .with_context(|| format!("adding {ifname} to TX_PORTS"))?;
            let (link, mode) = loader::attach(&mut self.ebpf, ifname, dp.xdp_mode)?;
            info!(interface = %ifname, mode = ?mode, "XDP director attached");
            self.attached.push((ifname.clone(), link, mode));
        }
        Ok(())
    }

    /// The object, for forwarding its log ring to the agent's log.
    /// How much each Maglev service's table moved on changes (for metrics).
    pub fn maglev_churn(
        &self,
    ) -> &std::collections::BTreeMap<crate::config::ServiceId, super::MaglevChurn> {
        self.tables.maglev_churn()
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Interfaces and the XDP mode in effect on each.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, XdpMode)> {
        self.attached.iter().map(|(n, _, m)| (n.as_str(), *m))
    }

    fn program(&mut self) -> Option<&mut Xdp> {
        self.ebpf.program_mut(PROG_DIRECTOR)?.try_into().ok()
    }

    fn detach_all(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        if let Some(prog) = self.program() {
            for (ifname, link, _) in attached {
                if let Err(e) = prog.detach(link) {
                    warn!(interface = %ifname, error = %e, "detaching XDP failed");
                }
            }
        }
    }

    /// Stops forwarding: detaches and unpins, or with `keep` leaves the
    /// program attached (links pinned next to the maps) and the maps pinned.
    pub fn shutdown(mut self, keep: bool) -> Result<()> {
        if !keep {
            self.detach_all();
            loader::unpin_maps(&self.pin_dir)?;
            info!("XDP detached and maps unpinned");
            return Ok(());
        }
        let attached = std::mem::take(&mut self.attached);
        let pin_dir = self.pin_dir.clone();
        let prog = self.program().context("director program missing")?;
        for (ifname, link, _) in attached {
            let link = prog.take_link(link)?;
            match FdLink::try_from(link) {
                Ok(fd_link) => {
                    fd_link.pin(link_pin(&pin_dir, &ifname))?;
                }
                // Netlink-attached programs stay attached once the agent exits.
                Err(aya::programs::links::LinkError::InvalidLink) => {}
                Err(e) => bail!("keeping the XDP link on {ifname}: {e}"),
            }
        }
        // The pinned links now hold the program, so dropping `self` unloads nothing.
        info!(dir = %pin_dir.display(), "data plane kept running: XDP attached, maps and links pinned");
        Ok(())
    }
}

impl DataPlane for XdpDataPlane {
    fn apply(&mut self, services: &[DesiredService]) -> Result<()> {
        // The data plane looks up NAT replies only under SETTINGS_F_NAT: it
        // goes up before the first NAT service is written and down after the
        // last one is removed.
        let nat = services
            .iter()
            .any(|d| d.service.method == config::Method::Nat);
        if nat {
            self.set_nat_flag(true)?;
        }
        self.tables.apply(&mut self.ebpf, services)?;
        if !nat {
            self.set_nat_flag(false)?;
        }
        Ok(())
    }

    fn maintain(&mut self) -> Result<()> {
        let swept = sweep::sweep(&mut self.ebpf, &self.settings, sweep::monotonic_ns())?;
        if swept.expired > 0 {
            debug!(
                expired = swept.expired,
                live = swept.live,
                "idle flows expired"
            );
        }
        self.tables
            .release_drained(&mut self.ebpf, &swept.reals_with_flows)?;
        Ok(())
    }
}

impl XdpDataPlane {
    /// Sets or clears `SETTINGS_F_NAT` (the entry also holds the tunnel
    /// sources `Tables` writes, so it is read and written back).
    fn set_nat_flag(&mut self, on: bool) -> Result<()> {
        let flags = if on {
            self.settings.flags | SETTINGS_F_NAT
        } else {
            self.settings.flags & !SETTINGS_F_NAT
        };
        if flags == self.settings.flags {
            return Ok(());
        }
        let mut m: Array<_, Settings> = Array::try_from(
            self.ebpf
                .map_mut(map_names::SETTINGS)
                .context("SETTINGS map missing")?,
        )?;
        let mut current = m.get(&0, 0)?;
        current.flags = flags;
        m.set(0, current, 0)?;
        self.settings.flags = flags;
        Ok(())
    }
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).context("interface name")?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("interface {name} does not exist"),
        i => Ok(i),
    }
}

fn take_lock(pin_dir: &Path) -> Result<File> {
    let path = lock_path(pin_dir);
    std::fs::create_dir_all(path.parent().expect("lock path has a parent"))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another xlb agent is running with pin directory {} (lock {})",
            pin_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).context(format!("locking {}", path.display()))
        }
    }
}

/// Removes what an agent that died or was stopped with `--keep-dataplane`
/// left: pinned links (which detaches their programs) and pinned maps.
fn clear_stale(pin_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return Ok(());
    };
    let mut found = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("link_") {
            found = true;
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing stale link pin {}", entry.path().display()))?;
        }
    }
    if found
        || lb_common::map_names::ALL
            .iter()
            .any(|m| pin_dir.join(m).exists())
    {
        warn!(dir = %pin_dir.display(), "replacing the data plane a previous agent left pinned");
    }
    loader::unpin_maps(pin_dir)
}
