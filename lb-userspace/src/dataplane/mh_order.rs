//! What IPVS's mh table depends on besides the reals' addresses: the
//! service's list of reals, newest first (IPVS adds each new real at the
//! head of its list), and each real's last nonzero weight (IPVS's
//! `last_weight`: a real set to weight 0 keeps its slots). The XDP data plane
//! keeps both across applies, so its mh table is the one kernel IPVS holds
//! after the same changes; xlb's IPVS data plane, like keepalived, removes
//! reals before it adds new ones and adds them in configured order.

use std::{collections::BTreeMap, net::IpAddr};

/// A real by address and port.
pub type RealAddr = (IpAddr, u16);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MhOrder {
    /// Newest first, with each real's last weight.
    dests: Vec<(RealAddr, u32)>,
}

impl MhOrder {
    /// Follows a change of the service's reals to `reals` (configured order,
    /// current weights): reals gone leave the list, new ones go to its head
    /// one by one, and a nonzero weight becomes a real's last weight.
    pub fn update(&mut self, reals: &[(RealAddr, u32)]) {
        let wanted: BTreeMap<RealAddr, u32> = reals.iter().copied().collect();
        self.dests.retain(|(k, _)| wanted.contains_key(k));
        for (k, last) in &mut self.dests {
            if wanted[k] != 0 {
                *last = wanted[k];
            }
        }
        for &(k, weight) in reals {
            if !self.dests.iter().any(|(d, _)| *d == k) {
                self.dests.insert(0, (k, weight));
            }
        }
    }

    /// The reals in IPVS's list order, each with its last weight.
    pub fn dests(&self) -> &[(RealAddr, u32)] {
        &self.dests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> RealAddr {
        (IpAddr::from([10, 0, 0, n]), 80)
    }

    #[test]
    fn follows_ipvs_through_adds_drains_and_removals() {
        let mut o = MhOrder::default();
        o.update(&[(key(1), 3), (key(2), 2), (key(3), 1)]);
        assert_eq!(o.dests(), [(key(3), 1), (key(2), 2), (key(1), 3)]);
        // Drained to 0: keeps its place and its last weight.
        o.update(&[(key(1), 3), (key(2), 0), (key(3), 1)]);
        assert_eq!(o.dests(), [(key(3), 1), (key(2), 2), (key(1), 3)]);
        // Removed, then back: it is new again, at the head.
        o.update(&[(key(1), 3), (key(3), 1)]);
        o.update(&[(key(1), 3), (key(2), 5), (key(3), 4)]);
        assert_eq!(o.dests(), [(key(2), 5), (key(3), 4), (key(1), 3)]);
        // Added with weight 0: its last weight is 0.
        o.update(&[(key(1), 3), (key(2), 5), (key(3), 4), (key(4), 0)]);
        assert_eq!(o.dests()[0], (key(4), 0));
    }
}
