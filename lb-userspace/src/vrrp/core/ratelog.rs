//! Log lines that a peer can provoke at will (discarded adverts,
//! lower-priority adverts), rate-limited per kind: the first one is logged
//! with its details, later ones within the window only counted, and the
//! count logged when the window ends. A flood costs a line per window.

use std::{collections::BTreeMap, time::Duration};
use tokio::time::Instant;

/// How long later occurrences of one kind are only counted.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
pub struct RateLog {
    /// Per kind: when its window ends, and how many were held back in it.
    open: BTreeMap<&'static str, (Instant, u64)>,
}

impl RateLog {
    /// An occurrence of `kind` at `now`: true when it is to be logged in
    /// full, false when it was only counted.
    pub fn hit(&mut self, kind: &'static str, now: Instant) -> bool {
        match self.open.get_mut(kind) {
            Some((_, held)) => {
                *held += 1;
                false
            }
            None => {
                self.open.insert(kind, (now + WINDOW, 0));
                true
            }
        }
    }

    /// When the next window ends.
    pub fn next(&self) -> Option<Instant> {
        self.open.values().map(|(end, _)| *end).min()
    }

    /// The windows that ended by `now`, with what they held back (kinds
    /// with nothing held back close silently; the next one logs in full).
    pub fn ended(&mut self, now: Instant) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        self.open.retain(|kind, (end, held)| {
            if *end > now {
                return true;
            }
            if *held > 0 {
                out.push((*kind, *held));
                // Still noisy: keep counting in a new window.
                *end = now + WINDOW;
                *held = 0;
                return true;
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_in_full_then_a_count_per_window() {
        let t0 = Instant::now();
        let mut l = RateLog::default();
        assert!(l.hit("ttl", t0));
        assert!(!l.hit("ttl", t0));
        assert!(!l.hit("ttl", t0 + Duration::from_secs(1)));
        assert!(l.hit("auth_pass", t0), "kinds are limited apart");
        assert_eq!(l.next(), Some(t0 + WINDOW));
        assert_eq!(l.ended(t0 + WINDOW), vec![("ttl", 2)]);
        // auth_pass held nothing back: closed; ttl counts on.
        assert!(!l.hit("ttl", t0 + WINDOW));
        assert!(l.hit("auth_pass", t0 + WINDOW));
        assert_eq!(l.ended(t0 + WINDOW * 2), vec![("ttl", 1)]);
        assert!(l.ended(t0 + WINDOW * 3).is_empty());
        assert!(l.hit("ttl", t0 + WINDOW * 3), "quiet again: in full");
    }
}
