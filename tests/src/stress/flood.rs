//! A spoofed SYN flood against the Master: one SYN per new flow (sources
//! from 198.18.0.0/15, RFC 2544's benchmarking range, then the next source
//! port), sent straight down the director's link from the switch side as
//! `synflood_netns` does (through the lab bridge most were dropped). First
//! as fast as veth's XDP ring takes them until the table's worth is sent,
//! then at a lower rate that keeps the table full (its LRU evicts the
//! oldest); bounded in frames and time.

use crate::{frames::tcp_syn, inject::FrameSender, netns::Netns, worker::Worker};
use anyhow::Result;
use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Sources in 198.18.0.0/15.
const SOURCES: u32 = 1 << 17;
/// Frames per burst; a burst larger than veth's XDP ring is dropped there.
const BURST: u64 = 32;
/// The pause after each burst while filling (as `synflood_netns`).
const FILL_PAUSE: Duration = Duration::from_micros(200);
const FROM_MAC: [u8; 6] = [0x02, 0x5f, 0x10, 0x0d, 0, 1];

/// Where and how hard to flood.
#[derive(Clone, Debug)]
pub struct FloodPlan {
    /// SYNs (new flows) sent at full speed first.
    pub fill: u64,
    /// SYNs per second afterwards.
    pub sustain_rate: u64,
    /// Frames sent at most, in all.
    pub max_frames: u64,
    /// The flood stops by itself after this.
    pub limit: Duration,
}

pub struct Flood {
    sent: Arc<AtomicU64>,
    fill: u64,
    worker: Worker<()>,
}

impl Flood {
    /// Floods `vip`:`port` through `link` of `switch` (the switch side of
    /// the director's veth), to `director_mac`.
    pub fn start(
        switch: &Netns,
        link: &str,
        director_mac: [u8; 6],
        vip: Ipv4Addr,
        port: u16,
        plan: FloodPlan,
    ) -> Result<Flood> {
        let link = link.to_string();
        let sender = switch.enter(move || FrameSender::open(&link))??;
        let sent = Arc::new(AtomicU64::new(0));
        let fill = plan.fill;
        let count = sent.clone();
        let worker = Worker::spawn("stress-flood", move |stop| {
            flood(&sender, director_mac, vip, port, &plan, &count, stop)
        })?;
        Ok(Flood { sent, fill, worker })
    }

    /// SYNs sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the fill is sent (or the flood ended early).
    pub fn filled(&self) -> bool {
        self.sent() >= self.fill || self.worker.is_finished()
    }

    /// Stops the flood: SYNs sent in all.
    pub fn finish(self) -> Result<u64> {
        self.worker.finish()?;
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

/// The `i`-th flow's source address and port: every source once, then the
/// next port.
fn flow(i: u64) -> (Ipv4Addr, u16) {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let src = Ipv4Addr::from(base + (i % u64::from(SOURCES)) as u32);
    let port = 1024 + ((i / u64::from(SOURCES)) % 60_000) as u16;
    (src, port)
}

fn flood(
    sender: &FrameSender,
    director_mac: [u8; 6],
    vip: Ipv4Addr,
    port: u16,
    plan: &FloodPlan,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    let start = Instant::now();
    let mut sustain_from: Option<(Instant, u64)> = None;
    let mut i = 0u64;
    while i < plan.max_frames && start.elapsed() < plan.limit && !stop.load(Ordering::Relaxed) {
        let (src, sport) = flow(i);
        // A frame the ring refused is a SYN the attacker lost; go on.
        if sender
            .send(&tcp_syn((director_mac, FROM_MAC), src, sport, vip, port))
            .is_ok()
        {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
        if !i.is_multiple_of(BURST) {
            continue;
        }
        if i < plan.fill {
            std::thread::sleep(FILL_PAUSE);
            continue;
        }
        // Sustaining: the next burst when the rate allows it.
        let (t0, i0) = *sustain_from.get_or_insert((Instant::now(), i));
        let due = t0 + Duration::from_secs_f64((i - i0) as f64 / plan.sustain_rate.max(1) as f64);
        while let Some(wait) = due.checked_duration_since(Instant::now()) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flow_is_new_until_all_ports_are_used() {
        assert_eq!(flow(0), (Ipv4Addr::new(198, 18, 0, 0), 1024));
        assert_eq!(flow(1), (Ipv4Addr::new(198, 18, 0, 1), 1024));
        assert_eq!(
            flow(u64::from(SOURCES) - 1),
            (Ipv4Addr::new(198, 19, 255, 255), 1024)
        );
        assert_eq!(
            flow(u64::from(SOURCES)),
            (Ipv4Addr::new(198, 18, 0, 0), 1025)
        );
        // 2 M flows (two default tables) are all distinct.
        let distinct: std::collections::HashSet<(Ipv4Addr, u16)> =
            (0..2_000_000).step_by(997).map(flow).collect();
        assert_eq!(distinct.len(), (0..2_000_000).step_by(997).count());
    }
}
