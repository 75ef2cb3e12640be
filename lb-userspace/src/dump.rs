//! keepalived-style dumps on signals: SIGUSR1 writes the agent's state
//! (`[agent] state_dump`, /run/xlb/xlb.data), SIGUSR2 its counters
//! (`[agent] stats_dump`, /run/xlb/xlb.stats). Both are plain text,
//! written as keepalived's `fopen_safe` does since CVE-2018-19044: to a new
//! file of a random name beside the dump, created with `O_EXCL |
//! O_NOFOLLOW` (so no planted file or symlink is ever written through),
//! then renamed over the dump (which replaces a symlink there instead of
//! following it); a reader never sees half a dump.

use crate::{
    check::board::CheckState,
    config::{Config, SocketText},
    dataplane::{DataPlane, DesiredService},
    snapshot::{Detail, Plane, Snapshot},
    vrrp::counters::VrrpStatus,
};
use anyhow::{Context, Result};
use std::{
    fmt::Write,
    io::Write as _,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the agent itself runs, for the state dump (keepalived's dump has
/// its VRRP instances and checkers too).
pub struct AgentState {
    pub vrrp: VrrpStatus,
    pub checks: Vec<CheckState>,
}

/// The state dump: data plane, VRRP instances, then each service with its
/// config, and each real with its next hop, what the maps say (weight,
/// connections) and its checks.
pub fn state_text(
    config: &Config,
    desired: &[DesiredService],
    plane: &str,
    snap: &Snapshot,
    agent: &AgentState,
) -> Result<String> {
    let mut o = String::new();
    writeln!(o, "------< xlb data plane >------")?;
    writeln!(o, " pid = {}", std::process::id())?;
    if snap.data_plane == Plane::Xdp {
        writeln!(o, " pin path = {}", config.dataplane.pin_path.display())?;
    }
    writeln!(o, " data plane = {plane}")?;
    let t = &config.dataplane.timeouts;
    writeln!(
        o,
        " timeouts tcp/tcpfin/udp = {}/{}/{} s",
        t.tcp, t.tcp_fin, t.udp
    )?;
    match config.metrics.listen {
        Some(a) => writeln!(o, " metrics = http://{a}/metrics")?,
        None => writeln!(o, " metrics = off")?,
    }
    if !agent.vrrp.instances.is_empty() {
        writeln!(o, "------< VRRP Topology >------")?;
    }
    for i in &agent.vrrp.instances {
        writeln!(o, " VRRP Instance = {}", i.name)?;
        writeln!(o, "   State = {}", i.state)?;
        writeln!(
            o,
            "   Priority = {} (configured {})",
            i.priority, i.base_priority
        )?;
        match i.master {
            Some(m) => writeln!(o, "   Master = {m}")?,
            None => writeln!(o, "   Master = unknown")?,
        }
        if let Some(g) = &i.sync_group {
            writeln!(o, "   Sync group = {g}")?;
        }
        writeln!(
            o,
            "   Transitions = {}, adverts sent = {}, received = {}",
            i.transitions, i.adverts_sent, i.adverts_received
        )?;
    }
    writeln!(o, "------< Virtual servers >------")?;
    for d in desired {
        let s = d;
        let in_maps = snap.services.iter().find(|m| m.is(&s.id));
        writeln!(o, " VS = {}", s.id)?;
        writeln!(
            o,
            "   scheduler = {}, method = {:?}, active = {}",
            s.scheduler.name(),
            s.method,
            s.active
        )?;
        if let Some(p) = s.persistence {
            writeln!(
                o,
                "   persistence = {} s, mask {}",
                p.timeout_s,
                p.mask_text()
            )?;
        }
        match in_maps {
            Some(m) => writeln!(
                o,
                "   service id = {}, connections = {}",
                m.id, m.stats.connections
            )?,
            None => writeln!(o, "   not in the data plane")?,
        }
        for r in &d.reals {
            let mapped = in_maps.and_then(|m| {
                m.reals
                    .iter()
                    .find(|x| x.address == r.address && x.port == r.port)
            });
            writeln!(
                o,
                "   RS = {}, weight = {}",
                SocketText(r.address, r.port),
                r.effective_weight
            )?;
            match r.next_hop {
                Some(h) => writeln!(
                    o,
                    "     next hop = ifindex {} MAC {}",
                    h.ifindex,
                    mac_text(h.mac)
                )?,
                None => writeln!(o, "     next hop = unreachable")?,
            }
            if let Some(m) = mapped {
                writeln!(
                    o,
                    "     real id = {}, ActiveConn = {}, InActConn = {}",
                    m.id, m.active_conns, m.inactive_conns
                )?;
            }
            let at = std::net::SocketAddr::new(r.address, r.port);
            for c in agent
                .checks
                .iter()
                .filter(|c| c.real == at && c.service == s.id.to_string())
            {
                write!(
                    o,
                    "     {} #{} = {}",
                    c.check,
                    c.slot,
                    if c.up { "up" } else { "down" }
                )?;
                match &c.last_failure {
                    Some(why) => writeln!(o, ", last failure: {why}")?,
                    None => writeln!(o)?,
                }
            }
        }
    }
    Ok(o)
}

/// The statistics dump: per service and real, the XDP fates, map fill.
pub fn stats_text(snap: &Snapshot) -> Result<String> {
    let mut o = String::new();
    writeln!(o, "------< xlb statistics >------")?;
    for s in &snap.services {
        let local = match s.fwmark {
            Some(mark) => mark.to_string(),
            None => SocketText(s.vip, s.port).to_string(),
        };
        writeln!(
            o,
            " VS = {} {local}: connections {}, packets {}, bytes {}",
            s.protocol, s.stats.connections, s.stats.packets, s.stats.bytes
        )?;
        for r in &s.reals {
            writeln!(
                o,
                "   RS = {}: connections {}, packets {}, bytes {}, ActiveConn {}, InActConn {}",
                SocketText(r.address, r.port),
                r.stats.connections,
                r.stats.packets,
                r.stats.bytes,
                r.active_conns,
                r.inactive_conns
            )?;
        }
    }
    if snap.data_plane == Plane::Ipvs {
        return Ok(o);
    }
    let p = snap.packets;
    writeln!(
        o,
        " XDP: tx {} redirect {} pass {} (malformed {}, fragments {}) drop {} error {} icmp too big {}",
        p.tx, p.redirect, p.pass, p.malformed, p.fragments, p.drop, p.error, p.icmp_too_big
    )?;
    for m in &snap.maps {
        writeln!(o, " map {} = {} of {}", m.name, m.entries, m.capacity)?;
    }
    Ok(o)
}

/// Tries at a fresh random name before giving up (each fails only if a
/// file of that name exists).
const TEMP_TRIES: usize = 8;

/// Writes `text` to `path` through a new file of a random name in the same
/// directory (created, with its parents, if missing; mode 0755).
pub fn write(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{}: names no file", path.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let (tmp, mut file) = (0..TEMP_TRIES)
        .find_map(|_| {
            let tmp = dir.join(format!(
                ".{}.{:016x}",
                name.to_string_lossy(),
                fastrand::u64(..)
            ));
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp);
            match opened {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                other => Some(other.map(|f| (tmp, f))),
            }
        })
        .unwrap_or_else(|| {
            Err(std::io::Error::other(format!(
                "{TEMP_TRIES} random names taken"
            )))
        })
        .with_context(|| format!("creating a file beside {}", path.display()))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// SIGUSR1: the state dump of `plane` to `config.agent.state_dump`.
pub fn write_state(
    config: &Config,
    desired: &[DesiredService],
    plane: &mut dyn DataPlane,
    agent: &AgentState,
) -> Result<()> {
    let detail = Detail {
        persistent_conns: true,
        map_fill: false,
    };
    let snap = plane.snapshot(detail)?;
    write(
        &config.agent.state_dump,
        &state_text(config, desired, &plane.describe(), &snap, agent)?,
    )
}

/// SIGUSR2: the statistics dump of `plane` to `config.agent.stats_dump`.
pub fn write_stats(config: &Config, plane: &mut dyn DataPlane) -> Result<()> {
    let detail = Detail {
        persistent_conns: false,
        map_fill: true,
    };
    let snap = plane.snapshot(detail)?;
    write(&config.agent.stats_dump, &stats_text(&snap)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_planted_beside_the_dump_are_never_followed() {
        let dir = std::env::temp_dir().join(format!("xlb-dump-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let victim = dir.join("victim");
        let dump = dir.join("run/xlb.data");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::write(&victim, "precious\n").unwrap();
        // At the dump itself and at the temporary name the agent used to use.
        std::os::unix::fs::symlink(&victim, &dump).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("run/xlb.tmp")).unwrap();
        write(&dump, "dump\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = std::fs::symlink_metadata(&dump).unwrap();
        assert!(meta.is_file(), "the dump is still a symlink");
        assert_eq!(std::fs::read_to_string(&dump).unwrap(), "dump\n");
        // No temporary file left behind; the planted link stays as it was.
        let mut left: Vec<String> = std::fs::read_dir(dir.join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["xlb.data", "xlb.tmp"]);
        // A missing directory is created.
        let fresh = dir.join("new/dir/xlb.stats");
        write(&fresh, "stats\n").unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "stats\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dumps_go_to_run_xlb_by_default() {
        let files = crate::config::AgentFiles::default();
        assert_eq!(files.state_dump, Path::new("/run/xlb/xlb.data"));
        assert_eq!(files.stats_dump, Path::new("/run/xlb/xlb.stats"));
    }
}
