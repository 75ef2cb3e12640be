//! Rates for `xlb ipvsadm --rate` under the XDP data plane: the agent
//! samples every service's and real's counters every 2 s and runs IPVS's
//! estimator on them (ip_vs_est.c: the rate since the last sample, scaled
//! by 2^10 for connections and packets and 2^5 for bytes, folded into an
//! average that moves a quarter of the way each time), then keeps the
//! results in /run/xlb for readers, as IPVS keeps them in the kernel.

use super::xdp::{open, sum};
use anyhow::Result;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use lb_common::{Counters, REAL_F_PRESENT, RealInfo, ServiceInfo, ServiceKey, map_names};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

/// IPVS's estimator period.
pub const PERIOD: Duration = Duration::from_secs(2);

/// One service's or real's rates as ipvsadm prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// IPVS's estimator state for one counter set (`struct ip_vs_estimator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Counters,
    cps: i64,
    inpps: i64,
    inbps: i64,
}

impl Estimator {
    /// Starts from the counters as they are (IPVS starts a new service's
    /// estimator at its current totals).
    pub fn new(now: Counters) -> Estimator {
        Estimator {
            last: now,
            ..Estimator::default()
        }
    }

    /// One period's sample.
    pub fn sample(&mut self, now: Counters) {
        let step = |avg: &mut i64, new: u64, last: u64, shift: u32| {
            let rate = (new.wrapping_sub(last) << shift) as i64;
            *avg += (rate - *avg) >> 2;
        };
        step(&mut self.cps, now.new_conns, self.last.new_conns, 9);
        step(&mut self.inpps, now.packets, self.last.packets, 9);
        step(&mut self.inbps, now.bytes, self.last.bytes, 4);
        self.last = now;
    }

    /// The rates as IPVS reports them (`ip_vs_read_estimator`, rounded).
    /// XDP forwards towards the reals only, so the outbound rates are 0.
    pub fn rates(&self) -> Rates {
        let per_s = |avg: i64, round: i64, shift: u32| ((avg + round) >> shift).max(0) as u64;
        Rates {
            cps: per_s(self.cps, 0x1FF, 10),
            inpps: per_s(self.inpps, 0x1FF, 10),
            outpps: 0,
            inbps: per_s(self.inbps, 0xF, 5),
            outbps: 0,
        }
    }
}

/// What the agent keeps: rates by service id and by real id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateFile {
    pub services: BTreeMap<u32, Rates>,
    pub reals: BTreeMap<u32, Rates>,
}

/// Where the agent with maps pinned at `pin_path` keeps its rates.
pub fn path(pin_path: &Path) -> PathBuf {
    crate::runfiles::for_pins(pin_path, "rates-", ".json")
}

/// The rates the agent keeps for `pin_path`; empty without an agent (or
/// before its first period).
pub fn read(pin_path: &Path) -> Result<RateFile> {
    Ok(crate::runfiles::read_json(&path(pin_path))?.unwrap_or_default())
}

/// Every service's and present real's counters, summed over the CPUs.
fn counters(dir: &Path) -> Result<(BTreeMap<u32, Counters>, BTreeMap<u32, Counters>)> {
    let services: HashMap<MapData, ServiceKey, ServiceInfo> =
        open(dir, map_names::SERVICES)?.try_into()?;
    let svc_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::SERVICE_STATS)?.try_into()?;
    let mut svcs = BTreeMap::new();
    for entry in services.iter() {
        let (_, info) = entry?;
        svcs.insert(info.id, sum(&svc_stats.get(&info.id, 0)?));
    }
    let reals: Array<MapData, RealInfo> = open(dir, map_names::REALS)?.try_into()?;
    let real_stats: PerCpuArray<MapData, Counters> =
        open(dir, map_names::REAL_STATS)?.try_into()?;
    let mut rs = BTreeMap::new();
    for (id, r) in reals.iter().enumerate() {
        if r?.flags & REAL_F_PRESENT != 0 {
            let id = id as u32;
            rs.insert(id, sum(&real_stats.get(&id, 0)?));
        }
    }
    Ok((svcs, rs))
}

/// The agent's sampler: every [`PERIOD`] reads the counters (off the async
/// threads), runs the estimators and rewrites the rate file; ids that went
/// away are dropped, new ones start from their current totals. Runs until
/// the agent's runtime ends; the file is removed by [`remove`].
pub async fn sampler(pin_dir: PathBuf) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut est: (BTreeMap<u32, Estimator>, BTreeMap<u32, Estimator>) = Default::default();
    loop {
        tick.tick().await;
        let dir = pin_dir.clone();
        let read = tokio::task::spawn_blocking(move || counters(&dir)).await;
        let Ok(Ok((svcs, reals))) = read else {
            continue;
        };
        let fold = |est: &mut BTreeMap<u32, Estimator>, now: BTreeMap<u32, Counters>| {
            est.retain(|id, _| now.contains_key(id));
            for (id, c) in now {
                est.entry(id)
                    .and_modify(|e| e.sample(c))
                    .or_insert_with(|| Estimator::new(c));
            }
            est.iter().map(|(id, e)| (*id, e.rates())).collect()
        };
        let file = RateFile {
            services: fold(&mut est.0, svcs),
            reals: fold(&mut est.1, reals),
        };
        let written = serde_json::to_vec(&file)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(crate::runfiles::write_atomic(&path(&pin_dir), &b)?));
        if let Err(e) = written {
            tracing::warn!(error = %crate::logging::chain(&e), "writing the rate file failed");
        }
    }
}

/// Removes the rate file (the agent stops).
pub fn remove(pin_dir: &Path) {
    let _ = std::fs::remove_file(path(pin_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(conns: u64, packets: u64, bytes: u64) -> Counters {
        Counters {
            packets,
            bytes,
            new_conns: conns,
        }
    }

    #[test]
    fn a_steady_rate_converges_as_ipvs_s_estimator_does() {
        // 100 connections, 1000 packets and 1 MB per second, sampled every 2 s.
        let mut e = Estimator::new(at(0, 0, 0));
        let mut seen = Vec::new();
        for i in 1..=60u64 {
            e.sample(at(200 * i, 2000 * i, 2_000_000 * i));
            seen.push(e.rates());
        }
        // The first period moves a quarter of the way (IPVS's >> 2).
        assert_eq!(seen[0].cps, 25);
        assert_eq!(seen[0].inpps, 250);
        let last = seen.last().unwrap();
        assert_eq!((last.cps, last.inpps, last.inbps), (100, 1000, 1_000_000));
        assert_eq!((last.outpps, last.outbps), (0, 0));
        // Traffic stops: the rates fall back towards 0.
        for _ in 0..80 {
            e.sample(at(12_000, 120_000, 120_000_000));
        }
        assert_eq!(e.rates(), Rates::default());
    }
}
