//! keepalived-style dumps on signals: SIGUSR1 writes the agent's state
//! (`[agent] state_dump`, /tmp/xlb.data), SIGUSR2 its counters
//! (`[agent] stats_dump`, /tmp/xlb.stats). Both are plain text, written to
//! a temporary file and renamed, so a reader never sees half a dump.

use crate::{
    config::{Config, SocketText},
    dataplane::{DataPlane, DesiredService},
    status::{Detail, Plane, Snapshot},
};
use anyhow::{Context, Result};
use std::{fmt::Write, path::Path};

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The state dump: data plane, then each service with its config, and each
/// real with its next hop and what the maps say (weight, connections).
pub fn state_text(
    config: &Config,
    desired: &[DesiredService],
    plane: &str,
    snap: &Snapshot,
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
    writeln!(o, "------< Virtual servers >------")?;
    for d in desired {
        let s = &d.service;
        let in_maps = snap.services.iter().find(|m| match s.id.addr() {
            Some((vip, port, protocol)) => {
                m.fwmark.is_none()
                    && m.vip == vip
                    && m.port == port
                    && m.protocol == protocol.to_string()
            }
            None => m.fwmark.is_some_and(|mark| s.id == fwmark_id(mark, m.vip)),
        });
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
                    .find(|x| x.address == r.real.address && x.port == r.real.port)
            });
            writeln!(
                o,
                "   RS = {}, weight = {}",
                SocketText(r.real.address, r.real.port),
                r.real.weight
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
        }
    }
    Ok(o)
}

/// The [`crate::config::ServiceId`] of an FWM service of the snapshot.
fn fwmark_id(mark: u32, vip: std::net::IpAddr) -> crate::config::ServiceId {
    crate::config::ServiceId::Fwmark {
        mark,
        ipv6: vip.is_ipv6(),
    }
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

/// Writes `text` to `path` through a temporary file in the same directory.
pub fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// SIGUSR1: the state dump of `plane` to `config.agent.state_dump`.
pub fn write_state(
    config: &Config,
    desired: &[DesiredService],
    plane: &mut dyn DataPlane,
) -> Result<()> {
    let detail = Detail {
        persistent_conns: true,
        map_fill: false,
    };
    let snap = plane.snapshot(detail)?;
    write(
        &config.agent.state_dump,
        &state_text(config, desired, &plane.describe(), &snap)?,
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
