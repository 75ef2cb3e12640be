//! When a Master announces its addresses (gratuitous ARP / unsolicited NA),
//! as deadlines rather than tasks: a burst on becoming Master, a second
//! burst `garp_master_delay` later (switches that missed the first), a
//! refresh burst every `garp_master_refresh`, and `garp_lower_prio_repeat`
//! rounds when a lower-priority advert shows that another node believes it
//! is Master (again `garp_lower_prio_delay` later). Each round is one packet
//! per address; rounds of a burst are `garp_interval` apart.

use crate::config::vrrp::Garp;
use std::time::Duration;
use tokio::time::Instant;

/// More rounds than this waiting means a flood of triggers: drop the excess.
const MAX_PENDING: usize = 256;

#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// Rounds to send, earliest first.
    due: Vec<Instant>,
    /// The next refresh burst, and how often they come.
    refresh: Option<(Instant, Duration)>,
    /// No lower-priority burst before this (one per advert interval at most,
    /// however many lower-priority adverts arrive).
    quiet_until: Option<Instant>,
    /// A delayed lower-priority burst is already waiting.
    delayed_lower: Option<Instant>,
}

impl Schedule {
    /// Everything a new Master sends, from `now`.
    pub fn as_master(&mut self, now: Instant, g: &Garp) {
        *self = Schedule::default();
        self.burst(now, g.master_repeat, g.interval);
        if !g.master_delay.is_zero() {
            self.burst(now + g.master_delay, g.master_repeat, g.interval);
        }
        self.refresh = g
            .master_refresh
            .filter(|d| !d.is_zero())
            .map(|every| (now + every, every));
    }

    /// A lower-priority advert arrived while Master; `advert_int` bounds how
    /// often this announces.
    pub fn lower_priority(&mut self, now: Instant, g: &Garp, advert_int: Duration) {
        if g.lower_prio_repeat == 0 || self.quiet_until.is_some_and(|t| now < t) {
            return;
        }
        self.quiet_until = Some(now + advert_int);
        self.burst(now, g.lower_prio_repeat, g.interval);
        if !g.lower_prio_delay.is_zero() && self.delayed_lower.is_none() {
            let at = now + g.lower_prio_delay;
            self.delayed_lower = Some(at);
            self.burst(at, g.lower_prio_repeat, g.interval);
        }
    }

    /// Nothing more to send (no longer Master).
    pub fn clear(&mut self) {
        *self = Schedule::default();
    }

    /// When the next round is due.
    pub fn next(&self) -> Option<Instant> {
        let refresh = self.refresh.map(|r| r.0);
        match (self.due.first().copied(), refresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many rounds are due at `now` (taken off the schedule), with
    /// refreshes of `g` turned into their bursts.
    pub fn take_due(&mut self, now: Instant, g: &Garp) -> u32 {
        if let Some((at, every)) = self.refresh
            && at <= now
        {
            self.refresh = Some((now + every, every));
            self.burst(now, g.master_refresh_repeat, g.interval);
        }
        if self.delayed_lower.is_some_and(|t| t <= now) {
            self.delayed_lower = None;
        }
        let n = self.due.partition_point(|t| *t <= now);
        self.due.drain(..n);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn burst(&mut self, from: Instant, count: u32, interval: Duration) {
        for i in 0..count {
            if self.due.len() >= MAX_PENDING {
                return;
            }
            let at = from + interval * i;
            let pos = self.due.partition_point(|t| *t <= at);
            self.due.insert(pos, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn garp() -> Garp {
        Garp {
            master_delay: Duration::from_secs(5),
            master_repeat: 3,
            master_refresh: None,
            master_refresh_repeat: 1,
            interval: Duration::ZERO,
            lower_prio_repeat: 2,
            lower_prio_delay: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_new_master_sends_a_burst_now_and_another_after_the_delay() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.as_master(t0, &garp());
        assert_eq!(s.take_due(t0, &garp()), 3);
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(s.take_due(t0 + Duration::from_secs(5), &garp()), 3);
        assert_eq!(s.next(), None);
    }

    #[test]
    fn rounds_of_a_burst_are_garp_interval_apart_and_refreshes_repeat() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let g = Garp {
            interval: ms(10),
            master_delay: Duration::ZERO,
            master_refresh: Some(Duration::from_secs(60)),
            master_refresh_repeat: 2,
            ..garp()
        };
        let mut s = Schedule::default();
        s.as_master(t0, &g);
        assert_eq!(s.take_due(t0, &g), 1);
        assert_eq!(s.take_due(t0 + ms(19), &g), 1);
        assert_eq!(s.take_due(t0 + ms(20), &g), 1);
        assert_eq!(s.next(), Some(t0 + Duration::from_secs(60)));
        let r = t0 + Duration::from_secs(60);
        assert_eq!(s.take_due(r, &g), 1);
        assert_eq!(s.take_due(r + ms(10), &g), 1);
        assert_eq!(s.next(), Some(r + Duration::from_secs(60)));
    }

    #[test]
    fn lower_priority_adverts_announce_at_most_once_per_interval() {
        let t0 = Instant::now();
        let g = garp();
        let int = Duration::from_millis(100);
        let mut s = Schedule::default();
        for i in 0..50u32 {
            // A flood: 50 adverts in 50 ms.
            s.lower_priority(t0 + Duration::from_millis(u64::from(i)), &g, int);
        }
        assert_eq!(s.take_due(t0 + Duration::from_millis(50), &g), 2);
        s.lower_priority(t0 + int, &g, int);
        assert_eq!(s.take_due(t0 + int, &g), 2);
        // One delayed burst waits, not one per advert.
        assert_eq!(s.take_due(t0 + Duration::from_secs(6), &g), 2);
        assert_eq!(s.next(), None);
    }

    #[test]
    fn lower_prio_repeat_zero_sends_nothing() {
        let t0 = Instant::now();
        let g = Garp {
            lower_prio_repeat: 0,
            ..garp()
        };
        let mut s = Schedule::default();
        s.lower_priority(t0, &g, Duration::from_secs(1));
        assert_eq!(s.next(), None);
    }
}
