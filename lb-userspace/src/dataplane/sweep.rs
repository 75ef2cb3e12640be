//! Expiry of idle flows. The data plane only creates and updates flow
//! entries; the agent walks the table, deletes flows idle longer than their
//! state's timeout (IPVS's timers, `lb_common::conn::timeout_s`) together
//! with their NAT reply entries, and records them in `REAL_CONNS_GONE` so
//! that each real's live connection counts stay true.

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use lb_common::{ConnCounts, FlowKey, FlowState, RealInfo, Settings, conn, map_names};
use std::collections::{BTreeMap, BTreeSet};

/// Nanoseconds on the clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Flows still in the table.
    pub live: usize,
    /// Flows deleted because they were idle too long.
    pub expired: usize,
    /// Real ids that flows still in the table go to (draining reals are
    /// freed once they are not among them).
    pub reals_with_flows: BTreeSet<u32>,
}

/// Whether a flow last seen at `seen_ns` in `state` has expired at `now_ns`.
pub fn expired(state: u32, seen_ns: u64, now_ns: u64, settings: &Settings) -> bool {
    let timeout_ns = u64::from(conn::timeout_s(state, settings)) * 1_000_000_000;
    now_ns.saturating_sub(seen_ns) > timeout_ns
}

/// One walk over the flow table at time `now_ns`.
pub fn sweep(ebpf: &mut Ebpf, settings: &Settings, now_ns: u64) -> Result<Swept> {
    let mut done = Swept::default();
    // Collect first: deleting while walking would restart the kernel's key walk.
    let mut doomed: Vec<(FlowKey, FlowState)> = Vec::new();
    {
        let ct: HashMap<&MapData, FlowKey, FlowState> = HashMap::try_from(
            ebpf.map(map_names::CONNTRACK)
                .context("CONNTRACK map missing")?,
        )?;
        for item in ct.iter() {
            // An entry deleted by the LRU between two steps of the walk is simply gone.
            let Ok((key, value)) = item else { continue };
            if expired(value.state as u32, value.seen_ns, now_ns, settings) {
                doomed.push((key, value));
            } else {
                done.live += 1;
                if value.state as u32 != conn::RELEASED {
                    done.reals_with_flows.insert(value.real_id);
                }
            }
        }
    }
    if doomed.is_empty() {
        return Ok(done);
    }
    let reals: Array<&MapData, RealInfo> =
        Array::try_from(ebpf.map(map_names::REALS).context("REALS map missing")?)?;
    let mut gone: BTreeMap<u32, ConnCounts> = BTreeMap::new();
    let mut replies = Vec::new();
    let mut deleted = Vec::new();
    for (key, value) in doomed {
        let real = reals.get(&value.real_id, 0).unwrap_or_default();
        if real.method == lb_common::method::NAT && real.service_id == value.service_id {
            replies.push(key.nat_reply(&real));
        }
        deleted.push((key, value));
    }
    {
        let mut ct: HashMap<&mut MapData, FlowKey, FlowState> = HashMap::try_from(
            ebpf.map_mut(map_names::CONNTRACK)
                .context("CONNTRACK map missing")?,
        )?;
        for (key, value) in deleted {
            // Only a flow this sweep really removed is uncounted: the LRU or a
            // racing replacement may have taken it first.
            if ct.remove(&key).is_ok() {
                done.expired += 1;
                let state = value.state as u32;
                if state != conn::RELEASED {
                    let g = gone.entry(value.real_id).or_default();
                    if conn::is_active(state) {
                        g.active += 1;
                    } else {
                        g.inactive += 1;
                    }
                }
            }
        }
    }
    {
        let mut nat: HashMap<&mut MapData, FlowKey, FlowKey> = HashMap::try_from(
            ebpf.map_mut(map_names::NAT_REPLIES)
                .context("NAT_REPLIES map missing")?,
        )?;
        for key in replies {
            let _ = nat.remove(&key);
        }
    }
    let mut gone_map: Array<&mut MapData, ConnCounts> = Array::try_from(
        ebpf.map_mut(map_names::REAL_CONNS_GONE)
            .context("REAL_CONNS_GONE map missing")?,
    )?;
    for (real_id, add) in gone {
        let old = gone_map.get(&real_id, 0).unwrap_or_default();
        gone_map.set(
            real_id,
            ConnCounts {
                active: old.active.wrapping_add(add.active),
                inactive: old.inactive.wrapping_add(add.inactive),
            },
            0,
        )?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            tcp_timeout_s: 900,
            tcp_fin_timeout_s: 120,
            udp_timeout_s: 300,
            ..Settings::default()
        }
    }

    #[test]
    fn each_state_expires_after_its_own_timeout() {
        let s = settings();
        let sec = 1_000_000_000u64;
        for (state, timeout) in [
            (conn::ESTABLISHED, 900),
            (conn::FIN_WAIT, 120),
            (conn::UDP, 300),
            (conn::SYN_RECV, 60),
            (conn::CLOSE, 10),
            (conn::TIME_WAIT, 120),
        ] {
            let seen = 1000 * sec;
            assert!(!expired(state, seen, seen + timeout * sec, &s), "{state}");
            assert!(
                expired(state, seen, seen + timeout * sec + 1, &s),
                "{state}"
            );
        }
    }
}
