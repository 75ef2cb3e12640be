//! The stress lab's figures, computed from what was recorded (adverts as
//! the wire carried them, VIP holders as polled, scrape times): pure
//! functions, so each rule is unit-tested.

use crate::advert_watch::Heard;
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

/// Arrival times of `src`'s adverts with a non-zero priority (a Master's)
/// within `[from, to]`.
pub fn master_adverts(heard: &[Heard], src: IpAddr, from: Instant, to: Instant) -> Vec<Instant> {
    heard
        .iter()
        .filter(|h| IpAddr::V4(h.advert.src) == src && h.advert.priority > 0)
        .map(|h| h.at)
        .filter(|&t| t >= from && t <= to)
        .collect()
}

/// The longest stretch of `[from, to]` without an advert in `adverts`
/// (sorted): the window's edges count, so a Master that falls silent for
/// good shows the silence up to `to`.
pub fn largest_gap(adverts: &[Instant], from: Instant, to: Instant) -> Duration {
    std::iter::once(from)
        .chain(adverts.iter().copied())
        .chain(std::iter::once(to))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// How long two sources were both advertising as Master: each advert
/// claims mastership for `interval` from its arrival, and the figure is
/// the total time both `a` and `b` (each sorted) held a claim.
pub fn both_advertising(a: &[Instant], b: &[Instant], interval: Duration) -> Duration {
    let (ca, cb) = (claims(a, interval), claims(b, interval));
    let mut total = Duration::ZERO;
    for &(s1, e1) in &ca {
        for &(s2, e2) in &cb {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if e > s {
                total += e - s;
            }
        }
    }
    total
}

/// The union of `[t, t + interval)` over `times` (sorted), as disjoint spans.
fn claims(times: &[Instant], interval: Duration) -> Vec<(Instant, Instant)> {
    let mut spans: Vec<(Instant, Instant)> = Vec::new();
    for &t in times {
        match spans.last_mut() {
            Some(last) if t <= last.1 => last.1 = last.1.max(t + interval),
            _ => spans.push((t, t + interval)),
        }
    }
    spans
}

/// One poll of who holds the VIP: when, the Master, the Backup.
pub type Holders = (Instant, bool, bool);

/// How long both directors held the VIP: each poll that found both holding
/// counts until the next poll (the last one counts nothing).
pub fn both_holding(polls: &[Holders]) -> Duration {
    polls
        .windows(2)
        .filter(|w| w[0].1 && w[0].2)
        .map(|w| w[1].0.saturating_duration_since(w[0].0))
        .sum()
}

/// The `q`-quantile (0 to 1) of `xs` by the nearest-rank rule; `None` when empty.
pub fn quantile(xs: &[Duration], q: f64) -> Option<Duration> {
    let mut v = xs.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advert_watch::Advert;
    use std::net::Ipv4Addr;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_largest_gap_counts_the_windows_edges() {
        let t0 = Instant::now();
        let ads = [at(t0, 50), at(t0, 150), at(t0, 600), at(t0, 700)];
        assert_eq!(
            largest_gap(&ads, t0, at(t0, 800)),
            Duration::from_millis(450)
        );
        // Silent from 700 ms to the end of a 2 s window.
        assert_eq!(
            largest_gap(&ads, t0, at(t0, 2000)),
            Duration::from_millis(1300)
        );
        // No advert at all: the whole window.
        assert_eq!(
            largest_gap(&[], t0, at(t0, 900)),
            Duration::from_millis(900)
        );
    }

    #[test]
    fn only_the_sources_master_adverts_in_the_window_count() {
        let t0 = Instant::now();
        let (m, o) = (Ipv4Addr::new(10, 250, 0, 2), Ipv4Addr::new(10, 250, 0, 200));
        let h = |ms, src, priority| Heard {
            at: at(t0, ms),
            advert: Advert {
                src,
                version: 3,
                vrid: 51,
                priority,
            },
        };
        let heard = [
            h(10, m, 150),
            h(20, o, 50),
            h(110, m, 150),
            h(120, m, 0),
            h(300, m, 150),
        ];
        assert_eq!(
            master_adverts(&heard, IpAddr::V4(m), at(t0, 100), at(t0, 200)),
            [at(t0, 110)]
        );
    }

    #[test]
    fn two_masters_overlap_only_while_both_claim() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(100);
        // A steady Master every 100 ms from 0 to 1 s.
        let a: Vec<Instant> = (0..=10).map(|i| at(t0, i * 100)).collect();
        // The Backup advertised twice, at 430 and 530 ms: it claimed 430..630.
        let b = [at(t0, 430), at(t0, 530)];
        assert_eq!(both_advertising(&a, &b, iv), Duration::from_millis(200));
        // Taking turns (the Backup only after the Master fell silent) is not two Masters.
        let a = [at(t0, 0), at(t0, 100)];
        let b = [at(t0, 200), at(t0, 300)];
        assert_eq!(both_advertising(&a, &b, iv), Duration::ZERO);
        assert_eq!(both_advertising(&a, &[], iv), Duration::ZERO);
    }

    #[test]
    fn both_holding_counts_until_the_next_poll() {
        let t0 = Instant::now();
        let polls = [
            (at(t0, 0), true, false),
            (at(t0, 100), true, true),
            (at(t0, 250), true, true),
            (at(t0, 300), false, true),
            (at(t0, 400), true, true),
        ];
        assert_eq!(both_holding(&polls), Duration::from_millis(200));
        assert_eq!(both_holding(&polls[..1]), Duration::ZERO);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let xs = ms(&[5, 1, 4, 2, 3]);
        assert_eq!(quantile(&xs, 0.5), Some(Duration::from_millis(3)));
        assert_eq!(quantile(&xs, 0.99), Some(Duration::from_millis(5)));
        assert_eq!(quantile(&xs, 0.0), Some(Duration::from_millis(1)));
        let hundred = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(quantile(&hundred, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
