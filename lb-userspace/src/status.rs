//! `xlb status`: an ipvsadm-style listing of what the running data plane
//! holds ([`crate::snapshot`]: the pinned maps, or the kernel's IPVS), so it
//! shows what the kernel really forwards, not what a config file says.

use crate::{
    config::{Persistence, SocketText},
    snapshot::{
        Detail, FlowSummary, PacketCounts, PersistenceStatus, Plane, RealStatus, read_running,
    },
};
use anyhow::Result;
use std::{
    fmt::Write,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

const LEFT: usize = 70;

/// What `xlb status` shows per real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// ipvsadm -L -n with --stats columns after the connection counts.
    Default,
    /// ipvsadm -L -n --persistent-conn.
    PersistentConn,
}

/// ` persistent N` and ` mask M` as ipvsadm prints them after the scheduler.
fn persistence_text(p: Option<PersistenceStatus>) -> String {
    let Some(p) = p else {
        return String::new();
    };
    let mut s = format!(" persistent {}", p.timeout_s);
    let full = match p.mask {
        IpAddr::V4(m) => m == Ipv4Addr::BROADCAST,
        IpAddr::V6(m) => u128::from(m) == u128::MAX,
    };
    if !full {
        let mask = Persistence {
            timeout_s: p.timeout_s,
            mask: p.mask,
        };
        s.push_str(&format!(" mask {}", mask.mask_text()));
    }
    s
}

/// Renders `view` for the maps pinned under `dir`, else the kernel's IPVS.
pub fn render(dir: &Path, view: View) -> Result<String> {
    let snap = read_running(
        dir,
        Detail {
            persistent_conns: view == View::PersistentConn,
            map_fill: false,
        },
    )?;
    let mut out = String::new();
    match snap.data_plane {
        Plane::Xdp => writeln!(out, "xlb data plane, maps pinned at {}", dir.display())?,
        Plane::Ipvs => writeln!(out, "xlb data plane: the kernel's IPVS")?,
    }
    match view {
        View::Default => {
            writeln!(out, "Prot LocalAddress:Port Scheduler Flags")?;
            writeln!(
                out,
                "{:<LEFT$}{:>9} {:>9} {:>9}",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                "Conns",
                "InPkts",
                "InBytes"
            )?;
        }
        View::PersistentConn => writeln!(
            out,
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )?,
    }
    for svc in &snap.services {
        let flags = if svc.active { "" } else { " inactive" };
        let local = match svc.fwmark {
            Some(mark) => mark.to_string(),
            None => SocketText(svc.vip, svc.port).to_string(),
        };
        let head = format!(
            "{:<4} {local} {}{}{flags}",
            svc.protocol,
            svc.scheduler,
            persistence_text(svc.persistence)
        );
        let c = svc.stats;
        match view {
            View::Default => writeln!(
                out,
                "{head:<LEFT$}{:>9} {:>9} {:>9}",
                c.connections, c.packets, c.bytes
            )?,
            View::PersistentConn => writeln!(out, "{head}")?,
        }
        // Reals that left the service but still carry flows (nodest `keep`):
        // not members (ipvsadm does not list them either), shown apart.
        let (draining, members): (Vec<&RealStatus>, Vec<&RealStatus>) =
            svc.reals.iter().partition(|r| r.draining);
        for r in members {
            let name = SocketText(r.address, r.port).to_string();
            if view == View::PersistentConn {
                writeln!(
                    out,
                    "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                    r.weight,
                    r.persistent_conns.unwrap_or(0),
                    r.active_conns,
                    r.inactive_conns
                )?;
                continue;
            }
            let line = format!(
                "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                r.forward, r.weight, r.active_conns, r.inactive_conns
            );
            let note = if r.reachable { "" } else { "  unreachable" };
            let c = r.stats;
            writeln!(
                out,
                "{line:<LEFT$}{:>9} {:>9} {:>9}{note}",
                c.connections, c.packets, c.bytes
            )?;
        }
        for r in draining {
            writeln!(
                out,
                "  draining {} ActiveConn {} InActConn {}",
                SocketText(r.address, r.port),
                r.active_conns,
                r.inactive_conns
            )?;
        }
    }
    if snap.data_plane == Plane::Ipvs {
        return Ok(out);
    }
    let g = snap.packets;
    writeln!(
        out,
        "Packets: tx {} (icmp too big {}) redirect {} pass {} (malformed {}, fragments {}) drop {} (nodest expired {}) error {}",
        g.tx,
        g.icmp_too_big,
        g.redirect,
        g.pass,
        g.malformed,
        g.fragments,
        g.drop,
        g.nodest_expired,
        g.error
    )?;
    if let Some(f) = &snap.flows {
        writeln!(out, "{}", flows_text(f, g))?;
    }
    Ok(out)
}

/// The flow table's line: what the upkeep's last pass found and what the
/// director did with flows.
fn flows_text(f: &FlowSummary, g: PacketCounts) -> String {
    let states: Vec<String> = f.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let pass = if f.passes == 0 {
        "no upkeep pass yet".to_string()
    } else {
        format!(
            "upkeep pass {} took {:.0} ms, {:.1} s ago",
            f.passes, f.last_pass_ms, f.last_pass_age_s
        )
    };
    format!(
        "Flows: {} ({}) expired {} evicted {}; new: pickups {} reused {} stale {}; {pass}",
        f.flows,
        states.join(", "),
        f.expired,
        f.evicted,
        g.pickups,
        g.reused,
        g.stale
    )
}

/// `xlb status --json`: the whole [`crate::snapshot::Snapshot`], persistence and map fill included.
pub fn render_json(dir: &Path) -> Result<String> {
    let snap = read_running(
        dir,
        Detail {
            persistent_conns: true,
            map_fill: true,
        },
    )?;
    let mut json = serde_json::to_value(&snap)?;
    // The agent's own state beside the data plane's: null without VRRP
    // instances or checks (or without an agent).
    json["vrrp"] = serde_json::to_value(crate::vrrp::counters::read(dir)?)?;
    json["checks"] = serde_json::to_value(crate::check::board::read(dir)?)?;
    json["bgp"] = serde_json::to_value(crate::bgp::read(dir)?)?;
    Ok(serde_json::to_string_pretty(&json)?)
}

/// The agent's VRRP instances and checks as `xlb status` prints them after
/// the data plane (nothing for what the agent does not run).
pub fn render_agent(dir: &Path) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = String::new();
    if let Some(v) = crate::vrrp::counters::read(dir)? {
        out.push_str(&crate::vrrp::counters::render(&v, now));
    }
    if let Some(c) = crate::check::board::read(dir)? {
        out.push_str(&crate::check::board::render(&c, now));
    }
    if let Some(b) = crate::bgp::read(dir)? {
        out.push_str(&crate::bgp::render(&b));
    }
    Ok(out)
}
