//! keepalived-style dumps on signals: SIGUSR1 writes the agent's state
//! (`[agent] state_dump`, /tmp/xlb.data), SIGUSR2 its counters
//! (`[agent] stats_dump`, /tmp/xlb.stats). Both are plain text, written to
//! a temporary file and renamed, so a reader never sees half a dump.

use crate::{
    config::{Config, SocketText},
    dataplane::DesiredService,
    status::Snapshot,
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
    writeln!(o, " pin path = {}", config.dataplane.pin_path.display())?;
    writeln!(o, " data plane = {plane}")?;
    let t = &config.dataplane.timeouts;
    writeln!(
        o,
        " timeouts tcp/tcpfin/udp = {}/{}/{} s",
        t.tcp, t.tcp_fin, t.udp
    )?;
    match config.metrics {
        Some(a) => writeln!(o, " metrics = http://{a}/metrics")?,
        None => writeln!(o, " metrics = off")?,
    }
    writeln!(o, "------< Virtual servers >------")?;
    for d in desired {
        let s = &d.service;
        let in_maps = s.id.addr().and_then(|(vip, port, protocol)| {
            snap.services
                .iter()
                .find(|m| m.vip == vip && m.port == port && m.protocol == protocol.to_string())
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
            None => writeln!(o, "   not in the maps")?,
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

/// The statistics dump: per service and real, the XDP fates, map fill.
pub fn stats_text(snap: &Snapshot) -> Result<String> {
    let mut o = String::new();
    writeln!(o, "------< xlb statistics >------")?;
    for s in &snap.services {
        writeln!(
            o,
            " VS = {} {}: connections {}, packets {}, bytes {}",
            s.protocol,
            SocketText(s.vip, s.port),
            s.stats.connections,
            s.stats.packets,
            s.stats.bytes
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

/// SIGUSR1: the state dump to `config.agent.state_dump`.
pub fn write_state(config: &Config, desired: &[DesiredService], plane: &str) -> Result<()> {
    let detail = crate::status::Detail {
        persistent_conns: true,
        map_fill: false,
    };
    let snap = Snapshot::read(&config.dataplane.pin_path, detail)?;
    write(
        &config.agent.state_dump,
        &state_text(config, desired, plane, &snap)?,
    )
}

/// SIGUSR2: the statistics dump to `config.agent.stats_dump`.
pub fn write_stats(config: &Config) -> Result<()> {
    let detail = crate::status::Detail {
        persistent_conns: false,
        map_fill: true,
    };
    let snap = Snapshot::read(&config.dataplane.pin_path, detail)?;
    write(&config.agent.stats_dump, &stats_text(&snap)?)
}
