//! The XDP data plane: one agent owns a pin directory, loads the director,
//! pins its maps, attaches it, and keeps the maps equal to the desired state.

use super::{
    DataPlane, DesiredService,
    adopt::{self, Previous},
    loader,
    maps::Maps,
    tables::{Tables, TunnelSources},
    upkeep::{self, Pacing, Report, Upkeep},
};
use crate::config::{self, NodestPolicy, XdpMode};
use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    programs::{
        Xdp,
        links::{FdLink, LinkError, LinkType, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use lb_common::{
    MAP_LAYOUT_VERSION, PROG_DIRECTOR, PROG_UPKEEP, SETTINGS_F_CONN_REUSE,
    SETTINGS_F_CONN_REUSE_FIN_WAIT, SETTINGS_F_NAT, SETTINGS_F_NODEST_EXPIRE, Settings, conn,
};
use std::{
    fs::File,
    path::{Path, PathBuf},
};
use tokio::sync::watch;
use tracing::{info, warn};

pub struct XdpDataPlane {
    ebpf: Ebpf,
    tables: Tables,
    pin_dir: PathBuf,
    attached: Vec<Attached>,
    settings: Settings,
    /// Taken over from a previous agent (a failed start leaves it running).
    adopted: bool,
    /// The flow table's reclaimer, once started.
    upkeep: Option<Upkeep>,
    /// Held for the agent's life: one agent per pin directory.
    _lock: File,
}

/// The director on one interface.
struct Attached {
    ifname: String,
    /// The mode asked for or in effect; for an adopted link, the configured one.
    mode: XdpMode,
    link: AttachedLink,
}

enum AttachedLink {
    /// A bpf_link pinned at `link_<ifname>` in the pin directory: it keeps the
    /// program attached when the agent dies, and the next agent adopts it.
    Pinned(XdpLink),
    /// A netlink attachment (a kernel refused bpf_link): held by the program.
    Netlink(XdpLinkId),
}

/// Lock file guarding a pin directory; kept outside bpffs, which holds no regular files.
fn lock_path(pin_dir: &Path) -> PathBuf {
    crate::runfiles::for_pins(pin_dir, "", ".lock")
}

fn link_pin(pin_dir: &Path, ifname: &str) -> PathBuf {
    pin_dir.join(format!("{LINK_PREFIX}{ifname}"))
}

const LINK_PREFIX: &str = "link_";

impl XdpDataPlane {
    /// Loads and attaches the director per `dp`. When a previous agent left
    /// a compatible data plane pinned (it was killed, or stopped with
    /// `--keep-dataplane`), its maps are adopted and the new program replaces
    /// the old one in place on each link; otherwise a fresh data plane
    /// replaces whatever was there. On failure a fresh start leaves nothing
    /// attached or pinned, and an adopting one leaves the old data plane as it was.
    pub fn start(
        object: &[u8],
        dp: &config::Dataplane,
        log_level: u8,
        lock: PinLock,
    ) -> Result<XdpDataPlane> {
        let lock = lock.0;
        loader::ensure_bpffs(&dp.pin_path)?;
        let adopting = match adopt::examine(&dp.pin_path, object, dp)? {
            Previous::Nothing => false,
            Previous::Adoptable => true,
            Previous::Incompatible(reason) => {
                warn!(dir = %dp.pin_path.display(), %reason, "cannot adopt the data plane a previous agent left: starting a fresh one (its flows are lost)");
                false
            }
        };
        if !adopting {
            clear_stale(&dp.pin_path)?;
        }
        let ebpf = loader::load(object, dp, log_level, adopting.then_some(&*dp.pin_path))?;
        let maps = Maps::of(&ebpf)?;
        let (table_size, services, reals) = (dp.maglev_table_size, dp.max_services, dp.max_reals);
        let tables = if adopting {
            Tables::adopt(maps, table_size, services, reals).context("reading the adopted maps")?
        } else {
            Tables::new(maps, table_size, services, reals)
        };
        let mut plane = XdpDataPlane {
            ebpf,
            tables,
            pin_dir: dp.pin_path.clone(),
            attached: Vec::new(),
            settings: Settings::default(),
            adopted: adopting,
            upkeep: None,
            _lock: lock,
        };
        plane
            .tables
            .set_keep_draining(dp.nodest == NodestPolicy::Keep);
        plane.tables.set_configured_sources(TunnelSources {
            v4: dp.tunnel_source_v4,
            v6: dp.tunnel_source_v6,
        });
        if adopting {
            plane.adopt_and_attach(dp)?;
            info!(dir = %plane.pin_dir.display(), services = plane.tables.service_count(), "adopted the data plane a previous agent left: flows, counters and scheduler state kept");
        } else if let Err(e) = plane.pin_and_attach(dp) {
            plane.release();
            let _ = loader::unpin_maps(&plane.pin_dir);
            return Err(e);
        }
        Ok(plane)
    }

    fn pin_and_attach(&mut self, dp: &config::Dataplane) -> Result<()> {
        loader::pin_maps(&self.ebpf, &self.pin_dir)?;
        self.write_settings(dp, false)?;
        for ifname in &dp.interfaces {
            self.attach(ifname, dp.xdp_mode)?;
        }
        Ok(())
    }

    /// Swaps the new program into the links the previous agent pinned,
    /// attaches where there is none, and detaches from interfaces no longer configured.
    fn adopt_and_attach(&mut self, dp: &config::Dataplane) -> Result<()> {
        self.write_settings(dp, true)?;
        for ifname in &dp.interfaces {
            let pin = link_pin(&self.pin_dir, ifname);
            if !pin.exists() {
                self.attach(ifname, dp.xdp_mode)?;
                continue;
            }
            let fd: FdLink = PinnedLink::from_pin(&pin)
                .with_context(|| format!("opening {}", pin.display()))?
                .into();
            let old = XdpLink::try_from(fd)?;
            let prog = self.program().context("director program missing")?;
            let id = match prog.attach_to_link(old) {
                Ok(id) => id,
                Err(e) if severed(&e) => {
                    warn!(interface = %ifname, "the pinned XDP link was severed (its interface went away or was made anew): attaching afresh");
                    std::fs::remove_file(&pin)
                        .with_context(|| format!("removing {}", pin.display()))?;
                    self.attach(ifname, dp.xdp_mode)?;
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("replacing the XDP program on {ifname}"));
                }
            };
            let link = prog.take_link(id)?;
            self.add_tx_port(ifname)?;
            info!(interface = %ifname, "XDP director replaced in place");
            self.attached.push(Attached {
                ifname: ifname.clone(),
                mode: dp.xdp_mode,
                link: AttachedLink::Pinned(link),
            });
        }
        for entry in std::fs::read_dir(&self.pin_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(ifname) = name.strip_prefix(LINK_PREFIX)
                && !dp.interfaces.iter().any(|i| i == ifname)
            {
                // The pin held the link: removing it detaches the old program.
                std::fs::remove_file(entry.path())?;
                info!(interface = %ifname, "XDP director detached (interface no longer configured)");
            }
        }
        Ok(())
    }

    /// Writes the timeouts and layout version into `SETTINGS`; adopting,
    /// the tunnel sources already there stay until the first apply.
    fn write_settings(&mut self, dp: &config::Dataplane, adopting: bool) -> Result<()> {
        let m = &mut self.tables.maps_mut().settings;
        let base = if adopting {
            m.get(&0)?.unwrap_or_default()
        } else {
            Settings::default()
        };
        let nodest = match dp.nodest {
            NodestPolicy::Expire => SETTINGS_F_NODEST_EXPIRE,
            NodestPolicy::Keep | NodestPolicy::Reschedule => 0,
        };
        let reuse = conn::reuse_flags(dp.conn_reuse_mode);
        let ours =
            SETTINGS_F_NODEST_EXPIRE | SETTINGS_F_CONN_REUSE | SETTINGS_F_CONN_REUSE_FIN_WAIT;
        self.settings = Settings {
            tcp_timeout_s: dp.timeouts.tcp,
            tcp_fin_timeout_s: dp.timeouts.tcp_fin,
            udp_timeout_s: dp.timeouts.udp,
            // The NAT flag stays as the adopted maps have it until the first apply.
            flags: (base.flags & !ours) | nodest | reuse,
            layout_version: MAP_LAYOUT_VERSION,
            ..base
        };
        m.put(&0, &self.settings)?;
        Ok(())
    }

    /// Every attached interface is a redirect target: NAT replies leave
    /// through the client side, which need not hold any real server.
    fn add_tx_port(&mut self, ifname: &str) -> Result<()> {
        let ifindex = ifindex(ifname)?;
        self.tables
            .maps_mut()
            .tx_ports
            .add(ifindex)
            .with_context(|| format!("adding {ifname} to TX_PORTS"))?;
        Ok(())
    }

    /// Attaches the director to `ifname` and pins the link, so the program
    /// stays attached (and forwarding) if the agent dies.
    fn attach(&mut self, ifname: &str, mode: XdpMode) -> Result<()> {
        self.add_tx_port(ifname)?;
        let (id, mode) = loader::attach(&mut self.ebpf, ifname, mode)?;
        let pin = link_pin(&self.pin_dir, ifname);
        let pinned_before = self
            .attached
            .iter()
            .filter(|a| matches!(a.link, AttachedLink::Pinned(_)))
            .count();
        let prog = self.program().context("director program missing")?;
        let prog_id = prog.info()?.id();
        let link = if xdp_links_of(prog_id).is_none_or(|n| n > pinned_before) {
            let fd = FdLink::try_from(prog.take_link(id)?)?;
            let pinned = fd
                .pin(&pin)
                .with_context(|| format!("pinning the XDP link at {}", pin.display()))?;
            AttachedLink::Pinned(XdpLink::try_from(FdLink::from(pinned))?)
        } else {
            warn!(interface = %ifname, "XDP attached through netlink (no bpf_link): a restarted agent cannot adopt it");
            AttachedLink::Netlink(id)
        };
        info!(interface = %ifname, %mode, "XDP director attached");
        self.attached.push(Attached {
            ifname: ifname.to_string(),
            mode,
            link,
        });
        Ok(())
    }

    /// The object, for forwarding its log ring to the agent's log.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Interfaces and the XDP mode in effect on each.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, XdpMode)> {
        self.attached.iter().map(|a| (a.ifname.as_str(), a.mode))
    }

    fn program(&mut self) -> Option<&mut Xdp> {
        self.ebpf.program_mut(PROG_DIRECTOR)?.try_into().ok()
    }

    /// Detaches the director from every interface: link pins removed, links closed.
    fn release(&mut self) {
        for a in std::mem::take(&mut self.attached) {
            match a.link {
                AttachedLink::Pinned(link) => {
                    let pin = link_pin(&self.pin_dir, &a.ifname);
                    if let Err(e) = std::fs::remove_file(&pin) {
                        warn!(interface = %a.ifname, error = %e, "removing the XDP link pin failed");
                    }
                    // The last reference: closing it detaches the program.
                    drop(link);
                }
                AttachedLink::Netlink(id) => {
                    if let Some(prog) = self.program()
                        && let Err(e) = prog.detach(id)
                    {
                        warn!(interface = %a.ifname, error = %e, "detaching XDP failed");
                    }
                }
            }
        }
    }

    /// Stops forwarding: detaches and unpins, or with `keep` leaves the
    /// program attached (links pinned next to the maps) and the maps pinned.
    /// The reclaimer stops first, between two batches.
    pub fn stop(mut self, keep: bool) -> Result<()> {
        if let Some(u) = self.upkeep.take() {
            u.stop();
        }
        if !keep {
            self.release();
            loader::unpin_maps(&self.pin_dir)?;
            // Unlinked while still held: take_lock sees a removed file and retries.
            let _ = std::fs::remove_file(lock_path(&self.pin_dir));
            info!("XDP detached and maps unpinned");
            return Ok(());
        }
        for a in std::mem::take(&mut self.attached) {
            match a.link {
                // Its pin keeps it attached once this handle closes.
                AttachedLink::Pinned(link) => drop(link),
                AttachedLink::Netlink(id) => {
                    let prog = self.program().context("director program missing")?;
                    // Converting forgets the netlink link without detaching it:
                    // netlink attachments outlive the agent.
                    if let Err(e) = FdLink::try_from(prog.take_link(id)?)
                        && !matches!(e, LinkError::InvalidLink)
                    {
                        bail!("keeping the XDP link on {}: {e}", a.ifname);
                    }
                }
            }
        }
        info!(dir = %self.pin_dir.display(), "data plane kept running: XDP attached, maps and links pinned");
        Ok(())
    }
}

/// Whether replacing a link's program failed because the link lost its
/// interface (ENOLINK): the interface was deleted since the link was pinned.
fn severed(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOLINK))
    })
}

/// How many XDP bpf_links run program `prog_id`: tells a bpf_link attachment
/// (counted) from a netlink one (not a link). `None` when the kernel does
/// not let us walk the links (that needs CAP_SYS_ADMIN): then it is a
/// bpf_link, as on every kernel the director runs on (bpf_loop, 5.17, is
/// younger than XDP links, 5.9).
fn xdp_links_of(prog_id: u32) -> Option<usize> {
    let mut n = 0;
    for link in aya::programs::loaded_links() {
        let link = link.ok()?;
        if link.program_id() == prog_id && matches!(link.link_type(), Ok(LinkType::Xdp)) {
            n += 1;
        }
    }
    Some(n)
}

impl DataPlane for XdpDataPlane {
    fn maglev_churn(
        &self,
    ) -> std::collections::BTreeMap<crate::config::ServiceId, super::MaglevChurn> {
        self.tables.maglev_churn().clone()
    }

    fn apply(&mut self, services: &[DesiredService]) -> Result<()> {
        // The data plane looks up NAT replies only under SETTINGS_F_NAT: it
        // goes up before the first NAT service is written and down after the
        // last one is removed.
        let nat = services.iter().any(|d| d.method == config::Method::Nat);
        if nat {
            self.set_nat_flag(true)?;
        }
        self.tables.apply(services)?;
        if !nat {
            self.set_nat_flag(false)?;
        }
        Ok(())
    }

    fn apply_changed(&mut self, services: &[DesiredService], changed: &[usize]) -> Result<()> {
        // The same services as before, so the same methods: the NAT flag stands.
        Ok(self.tables.apply_changed(services, changed)?)
    }

    fn start_upkeep(&mut self) -> Result<Option<watch::Receiver<Option<Report>>>> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_UPKEEP)
            .context("upkeep program missing")?
            .try_into()?;
        let fd = prog.fd()?.try_clone()?;
        let pacing = Pacing::default();
        let reclaimer = upkeep::pinned(&self.pin_dir, fd, pacing.batch)
            .context("opening the maps for the flow table's upkeep")?;
        let (handle, reports) = Upkeep::start(reclaimer, pacing)?;
        self.upkeep = Some(handle);
        Ok(Some(reports))
    }

    fn upkept(&mut self, report: &Report) -> Result<()> {
        self.tables
            .release_drained(&report.pass.reals_with_flows, report.started)?;
        Ok(())
    }

    fn describe(&self) -> String {
        let attached: Vec<String> = self
            .attachments()
            .map(|(i, m)| format!("{i} ({m})"))
            .collect();
        format!("XDP on {}", attached.join(", "))
    }

    fn plane(&self) -> crate::snapshot::Plane {
        crate::snapshot::Plane::Xdp
    }

    fn snapshot(&mut self, detail: crate::snapshot::Detail) -> Result<crate::snapshot::Snapshot> {
        crate::snapshot::xdp::read(&self.pin_dir, detail)
    }

    fn shutdown(self: Box<Self>, keep: bool) -> Result<()> {
        self.stop(keep)
    }

    fn abandon(self: Box<Self>) -> Result<()> {
        let adopted = self.adopted;
        if adopted {
            info!(
                "start-up failed: the adopted data plane keeps forwarding, its maps and flows kept"
            );
        }
        self.stop(adopted)
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
        let m = &mut self.tables.maps_mut().settings;
        let mut current = m.get(&0)?.unwrap_or_default();
        current.flags = flags;
        m.put(&0, &current)?;
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

/// The lock of a pin directory: one agent per directory. Taken first thing
/// at start, before anything is bound or touched.
pub struct PinLock(File);

impl PinLock {
    pub fn take(pin_dir: &Path) -> Result<PinLock> {
        take_lock(pin_dir).map(PinLock)
    }
}

fn take_lock(pin_dir: &Path) -> Result<File> {
    use std::os::unix::fs::MetadataExt;
    let path = lock_path(pin_dir);
    std::fs::create_dir_all(path.parent().expect("lock path has a parent"))?;
    // A stopping agent unlinks the file it holds; a lock won on that
    // unlinked file guards nothing, so open the path again (bounded: each
    // retry means another agent stopped in between).
    for _ in 0..8 {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another xlb agent is running with pin directory {} (lock {})",
                pin_dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).context(format!("locking {}", path.display()));
            }
        }
        let held = file.metadata()?.ino();
        if std::fs::metadata(&path).is_ok_and(|m| m.ino() == held) {
            return Ok(file);
        }
    }
    bail!("the lock {} keeps being removed under us", path.display())
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
