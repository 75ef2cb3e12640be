//! `xlb ipvsadm -Z`: zeroes the packet, byte and connection counters of every
//! service and real (or of one service and its reals), in whichever data
//! plane runs: the XDP director's per-CPU stats maps, or the kernel's IPVS
//! (its ZERO command). Connection counts (ActiveConn/InActConn) are live
//! state, not counters, and stay, as in IPVS.

use crate::{
    config::ServiceId,
    ipvs::Ipvs,
    snapshot::{self, Running, xdp::open},
};
use anyhow::{Context, Result, bail};
use aya::{
    maps::{MapData, PerCpuArray, PerCpuValues},
    util::nr_cpus,
};
use lb_common::{Counters, GlobalCounters, map_names};
use std::path::Path;

/// Zeroes the counters of `only` (and its reals), or of everything.
pub fn zero(pin_dir: &Path, only: Option<&ServiceId>) -> Result<()> {
    match Running::find(pin_dir) {
        Running::Xdp(dir) => zero_xdp(&dir, only),
        Running::Ipvs => Ipvs::connect()?.zero(only),
    }
}

fn zero_xdp(dir: &Path, only: Option<&ServiceId>) -> Result<()> {
    let snap = snapshot::xdp::read(dir, snapshot::Detail::default())?;
    let services: Vec<&snapshot::ServiceStatus> = snap
        .services
        .iter()
        .filter(|s| only.is_none_or(|id| s.is(id)))
        .collect();
    if let (Some(id), true) = (only, services.is_empty()) {
        bail!("No such service: {}", super::args::describe(id));
    }
    let cpus = nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
    let zeros = || PerCpuValues::try_from(vec![Counters::default(); cpus]);
    let mut svc: PerCpuArray<MapData, Counters> =
        open(dir, map_names::SERVICE_STATS)?.try_into()?;
    let mut real: PerCpuArray<MapData, Counters> = open(dir, map_names::REAL_STATS)?.try_into()?;
    for s in &services {
        svc.set(s.id, zeros()?, 0)?;
        for r in &s.reals {
            real.set(r.id, zeros()?, 0)?;
        }
    }
    if only.is_none() {
        let mut global: PerCpuArray<MapData, GlobalCounters> =
            open(dir, map_names::GLOBAL_STATS)?.try_into()?;
        global.set(
            0,
            PerCpuValues::try_from(vec![GlobalCounters::default(); cpus])?,
            0,
        )?;
    }
    Ok(())
}
