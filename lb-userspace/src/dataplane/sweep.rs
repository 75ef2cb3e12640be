//! Expiry of idle flows. The data plane only creates and updates flow
//! entries; the agent walks the table, deletes flows idle longer than their
//! state's timeout (IPVS's timers, `lb_common::conn::timeout_s`) together
//! with their NAT reply entries, and records them in `REAL_CONNS_GONE` so
//! that each real's live connection counts stay true. Flows the LRU evicted
//! when the table was full (a SYN flood fills it) were counted but are no
//! longer in the table: the same walk finds each real's shortfall and
//! records those as gone too, so a flood does not leave the counts that
//! lc/wlc and the thresholds read inflated for good.

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
    /// Flows counted but no longer in the table (evicted by the LRU since
    /// the last walk), now recorded as gone.
    pub evicted: u64,
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
    // Read before the walk: a flow added meanwhile can only make the
    // shortfall look smaller, never larger.
    let live_before = live_counts(ebpf)?;
    let mut walked: BTreeMap<u32, ConnCounts> = BTreeMap::new();
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
                    tally(&mut walked, value.real_id, value.state as u32);
                }
            }
        }
    }
    let mut gone = expire(ebpf, doomed, &mut done)?;
    for (real_id, live) in live_before {
        let expired = gone.get(&real_id).copied().unwrap_or_default();
        let seen = walked.get(&real_id).copied().unwrap_or_default();
        let lost = evicted(live, expired, seen);
        if lost != ConnCounts::default() {
            done.evicted += lost.active + lost.inactive;
            let g = gone.entry(real_id).or_default();
            g.active += lost.active;
            g.inactive += lost.inactive;
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

fn tally(counts: &mut BTreeMap<u32, ConnCounts>, real_id: u32, state: u32) {
    let c = counts.entry(real_id).or_default();
    if conn::is_active(state) {
        c.active += 1;
    } else {
        c.inactive += 1;
    }
}

/// Each real's live connection count (counted minus gone), for the reals
/// that have any.
fn live_counts(ebpf: &Ebpf) -> Result<BTreeMap<u32, ConnCounts>> {
    let counted: Array<&MapData, ConnCounts> = Array::try_from(
        ebpf.map(map_names::REAL_CONNS)
            .context("REAL_CONNS map missing")?,
    )?;
    let gone: Array<&MapData, ConnCounts> = Array::try_from(
        ebpf.map(map_names::REAL_CONNS_GONE)
            .context("REAL_CONNS_GONE map missing")?,
    )?;
    let mut live = BTreeMap::new();
    for (real_id, (c, g)) in (0u32..).zip(counted.iter().zip(gone.iter())) {
        let l = c?.live(g?);
        if l != ConnCounts::default() {
            live.insert(real_id, l);
        }
    }
    Ok(live)
}

/// How many of a real's `live` connections (per class, active/inactive) are
/// neither `expired` by this walk nor `seen` in the table: flows the LRU
/// evicted. Never more in all than the total shortfall, so a flow that
/// changed class during the walk is not taken for an evicted one; a count
/// that wrapped below zero (a real being reset) is left alone.
pub fn evicted(live: ConnCounts, expired: ConnCounts, seen: ConnCounts) -> ConnCounts {
    const WRAPPED: u64 = 1 << 63;
    if live.active >= WRAPPED || live.inactive >= WRAPPED {
        return ConnCounts::default();
    }
    let short = |l: u64, e: u64, s: u64| l.saturating_sub(e).saturating_sub(s);
    let total = short(
        live.active + live.inactive,
        expired.active + expired.inactive,
        seen.active + seen.inactive,
    );
    let active = short(live.active, expired.active, seen.active).min(total);
    let inactive = short(live.inactive, expired.inactive, seen.inactive).min(total - active);
    ConnCounts { active, inactive }
}

/// Deletes the `doomed` flows (and their NAT reply entries) and returns, per
/// real, the connections this removed.
fn expire(
    ebpf: &mut Ebpf,
    doomed: Vec<(FlowKey, FlowState)>,
    done: &mut Swept,
) -> Result<BTreeMap<u32, ConnCounts>> {
    let mut gone: BTreeMap<u32, ConnCounts> = BTreeMap::new();
    if doomed.is_empty() {
        return Ok(gone);
    }
    let reals: Array<&MapData, RealInfo> =
        Array::try_from(ebpf.map(map_names::REALS).context("REALS map missing")?)?;
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
                    tally(&mut gone, value.real_id, state);
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
    Ok(gone)
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

    fn counts(active: u64, inactive: u64) -> ConnCounts {
        ConnCounts { active, inactive }
    }

    #[test]
    fn evicted_flows_are_the_shortfall_and_nothing_else() {
        let none = ConnCounts::default();
        // A flood's half-open flows, evicted: all but the ten in the table.
        assert_eq!(
            evicted(counts(1000, 5), none, counts(10, 5)),
            counts(990, 0)
        );
        // Expired by this walk is not evicted.
        assert_eq!(evicted(counts(10, 4), counts(3, 4), counts(7, 0)), none);
        // A flow that went from active to inactive during the walk.
        assert_eq!(evicted(counts(5, 0), none, counts(4, 1)), none);
        // Flows added during the walk make the table hold more: nothing.
        assert_eq!(evicted(counts(5, 5), none, counts(9, 9)), none);
        // Both classes short.
        assert_eq!(evicted(counts(5, 5), none, counts(2, 1)), counts(3, 4));
        // A count wrapped below zero is left alone.
        assert_eq!(evicted(counts(u64::MAX, 0), none, none), none);
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
