//! A reference model of each scheduler's choice, written from IPVS's rules
//! (net/netfilter/ipvs/ip_vs_*.c) rather than from the XDP code. Reals are
//! given in list order; choices are positions in that list.

use lb_common::sched_layout::MAX_REALS_PER_SERVICE;

/// One real as a scheduler sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    pub weight: u32,
    /// False: left out of scheduling (no next hop).
    pub reachable: bool,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub active: u32,
    pub inactive: u32,
    /// IPVS's IP_VS_DEST_F_OVERLOAD, kept between the thresholds.
    pub overloaded: bool,
}

impl Real {
    pub fn new(weight: u32) -> Real {
        Real {
            weight,
            reachable: true,
            ..Real::default()
        }
    }

    pub fn with_conns(self, active: u32, inactive: u32) -> Real {
        Real {
            active,
            inactive,
            ..self
        }
    }

    /// Updates and returns the overload flag: set at `u_threshold`
    /// connections, cleared below `l_threshold` (or 3/4 of `u_threshold`).
    pub fn check_overload(&mut self) -> bool {
        let total = u64::from(self.active) + u64::from(self.inactive);
        let upper = u64::from(self.u_threshold);
        self.overloaded = if upper == 0 {
            false
        } else if total >= upper {
            true
        } else if !self.overloaded {
            false
        } else if self.l_threshold != 0 {
            total >= u64::from(self.l_threshold)
        } else {
            total * 4 >= upper * 3
        };
        self.overloaded
    }

    /// May take a new flow: reachable, weight above 0, not overloaded.
    pub fn usable(&mut self) -> bool {
        self.reachable && self.weight > 0 && !self.check_overload()
    }

    /// lc/wlc/lblc load: an active connection weighs as 256 inactive ones.
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }
}

/// The schedulers that compare all reals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Lc,
    Wlc,
    Sed,
    Nq,
    Fo,
    Ovf,
}

/// lc, wlc, sed, nq, fo or ovf over `reals`; ties go to the first in list order.
pub fn least(reals: &mut [Real], rule: Rule) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None; // (index, weight, overhead)
    for (i, r) in reals.iter_mut().enumerate() {
        if !r.usable() {
            continue;
        }
        let w = u64::from(r.weight);
        let oh = match rule {
            Rule::Sed | Rule::Nq => u64::from(r.active) + 1,
            _ => r.overhead(),
        };
        if rule == Rule::Nq && r.active == 0 {
            return Some(i);
        }
        let better = match (rule, best) {
            (Rule::Ovf, _) if u64::from(r.active) > w => false,
            (_, None) => true,
            (Rule::Lc, Some((_, _, boh))) => oh < boh,
            (Rule::Fo | Rule::Ovf, Some((_, bw, _))) => w > bw,
            // overhead / weight, compared by cross-multiplication.
            (_, Some((_, bw, boh))) => boh * w > oh * bw,
        };
        if better {
            best = Some((i, w, oh));
        }
    }
    best.map(|(i, _, _)| i)
}

/// twos, as net/netfilter/ipvs/ip_vs_twos.c (Linux 6.2+) picks, given its
/// two random draws `r1` and `r2` (each below the usable reals' weight sum
/// plus one, `total_weight + 1` there): each draw walks the usable reals in
/// list order, subtracting weights, and lands on the first where it reaches
/// 0 or less (so the first real has one chance more than its weight); the
/// second draw wins when its overhead per weight is strictly smaller
/// (`weight2 × overhead1 > weight1 × overhead2`).
pub fn twos(reals: &mut [Real], r1: u64, r2: u64) -> Option<usize> {
    let usable: Vec<usize> = (0..reals.len()).filter(|&i| reals[i].usable()).collect();
    let last = *usable.last()?;
    let draw = |r: u64| -> Option<usize> {
        let mut left = r as i64;
        usable.iter().copied().find(|&i| {
            left -= i64::from(reals[i].weight);
            left <= 0
        })
    };
    // A draw that lands nowhere leaves choice1 as the last usable real with
    // weight −1 and overhead 0, as the kernel's initial values.
    let (c1, w1, oh1) = match draw(r1) {
        Some(i) => (i, i64::from(reals[i].weight), reals[i].overhead() as i64),
        None => (last, -1, 0),
    };
    match draw(r2) {
        Some(c2) if i64::from(reals[c2].weight) * oh1 > w1 * reals[c2].overhead() as i64 => {
            Some(c2)
        }
        _ => Some(c1),
    }
}

/// The weight sum twos draws below (plus one): of the usable reals.
pub fn twos_span(reals: &mut [Real]) -> u64 {
    let mut sum = 0;
    for r in reals.iter_mut() {
        if r.usable() {
            sum += u64::from(r.weight);
        }
    }
    sum + 1
}

/// twos's exact odds over `reals` as they are: how many of the
/// [`twos_span`]² equally likely pairs of draws choose each real, and that
/// number of pairs.
pub fn twos_odds(reals: &mut [Real]) -> (Vec<u64>, u64) {
    let span = twos_span(reals);
    let mut odds = vec![0; reals.len()];
    for r1 in 0..span {
        for r2 in 0..span {
            if let Some(i) = twos(reals, r1, r2) {
                odds[i] += 1;
            }
        }
    }
    (odds, span * span)
}

/// rr/wrr: a sequence walked by a cursor; a real that cannot take the flow
/// is passed over and its turn consumed.
#[derive(Clone, Debug, Default)]
pub struct Sequence {
    pub seq: Vec<usize>,
    pub cursor: u64,
}

impl Sequence {
    pub fn next(&mut self, reals: &mut [Real]) -> Option<usize> {
        let len = self.seq.len() as u64;
        if len == 0 {
            return None;
        }
        let start = self.cursor;
        self.cursor += 1;
        for k in 0..len.min(u64::from(MAX_REALS_PER_SERVICE)) {
            let i = self.seq[((start + k) % len) as usize];
            if reals[i].usable() {
                self.cursor += k;
                return Some(i);
            }
        }
        None
    }
}

/// A hashed table lookup (dh, sh, mh): the real in slot `first`, or with
/// `fallback` the first usable real of slots `probe(0)`, `probe(1)`, … (256
/// probes at most); an empty slot ends the walk.
pub fn hashed(
    table: &[Option<usize>],
    reals: &mut [Real],
    fallback: bool,
    first: usize,
    probe: impl Fn(u32) -> usize,
) -> Option<usize> {
    let first = table[first]?;
    if reals[first].usable() {
        return Some(first);
    }
    if !fallback {
        return None;
    }
    for k in 0..MAX_REALS_PER_SERVICE {
        let i = table[probe(k)]?;
        if reals[i].usable() {
            return Some(i);
        }
    }
    None
}

/// lblc/lblcr's overload: more active connections than weight while some
/// real of the service is under half load.
pub fn locality_overloaded(reals: &[Real], i: usize) -> bool {
    reals[i].active > reals[i].weight
        && reals
            .iter()
            .any(|d| d.reachable && u64::from(d.active) * 2 < u64::from(d.weight))
}

/// lblc for one destination: its remembered real unless that one is
/// unusable or overloaded, else wlc's choice, remembered.
pub fn lblc(reals: &mut [Real], remembered: &mut Option<usize>) -> Option<usize> {
    if let Some(i) = *remembered
        && reals[i].reachable
        && reals[i].weight > 0
        && !locality_overloaded(reals, i)
    {
        return Some(i);
    }
    let i = least(reals, Rule::Wlc)?;
    *remembered = Some(i);
    Some(i)
}

/// lblcr for one destination whose set has not expired: the set's least
/// loaded member (newest first on ties) unless overloaded, else wlc's
/// choice joins the set.
pub fn lblcr(reals: &mut [Real], set: &mut Vec<usize>) -> Option<usize> {
    let mut least_member: Option<(usize, u64, u64)> = None;
    for &i in set.iter().rev() {
        if !reals[i].usable() {
            continue;
        }
        let (w, oh) = (u64::from(reals[i].weight), reals[i].overhead());
        if least_member.is_none_or(|(_, bw, boh)| boh * w > oh * bw) {
            least_member = Some((i, w, oh));
        }
    }
    if let Some((i, _, _)) = least_member
        && !locality_overloaded(reals, i)
    {
        return Some(i);
    }
    let i = least(reals, Rule::Wlc)?;
    if !set.contains(&i) {
        set.push(i);
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reals(spec: &[(u32, u32, u32)]) -> Vec<Real> {
        spec.iter()
            .map(|&(w, a, i)| Real::new(w).with_conns(a, i))
            .collect()
    }

    /// (weight, active, inactive) of each real.
    type Spec = [(u32, u32, u32)];

    /// ip_vs_twos.c as written, worked by hand: draws land where the
    /// running `rweight -= weight` reaches 0 or less; the second draw wins
    /// only with a strictly smaller overhead per weight.
    #[test]
    fn twos_as_the_kernel_writes_it() {
        // A (1), B (2), C (0, never drawn): draws below 1 + 2 + 1 = 4.
        let mut r = reals(&[(1, 0, 0), (2, 0, 0), (0, 0, 0)]);
        assert_eq!(twos_span(&mut r), 4);
        let landing: Vec<Option<usize>> = (0..4).map(|d| twos(&mut r, d, d)).collect();
        // 0 and 1 land on A (the first real has one chance more), 2 and 3 on B.
        assert_eq!(landing, [Some(0), Some(0), Some(1), Some(1)]);
        // All idle, the first draw always stays: half of the 16 pairs each.
        assert_eq!(twos_odds(&mut r), (vec![8, 8, 0], 16));
        // A busy (1 active: overhead 256), B idle: B wins as second draw …
        let mut r = reals(&[(1, 1, 0), (2, 0, 0)]);
        assert_eq!(twos(&mut r, 0, 2), Some(1));
        // … and as first draw (A, second, is not strictly better).
        assert_eq!(twos(&mut r, 2, 0), Some(1));
        // Equal overhead per weight: the first draw stays.
        let mut r = reals(&[(1, 1, 0), (2, 2, 0)]);
        assert_eq!(twos(&mut r, 0, 2), Some(0));
        assert_eq!(twos(&mut r, 2, 0), Some(1));
        // Weight counts: B (w 4, overhead 512) beats A (w 1, overhead 256): 4×256 > 1×512.
        let mut r = reals(&[(1, 1, 0), (4, 2, 0)]);
        assert_eq!(twos(&mut r, 0, 3), Some(1));
        // An overloaded real is never drawn; nobody usable: no real.
        let mut r = reals(&[(1, 0, 0), (1, 0, 0)]);
        r[0].u_threshold = 1;
        r[0].active = 1;
        assert_eq!(twos_span(&mut r), 2);
        assert_eq!(twos(&mut r, 0, 1), Some(1));
        let mut r = reals(&[(0, 0, 0)]);
        assert_eq!(twos(&mut r, 0, 0), None);
    }

    /// Reals → expected choice per rule.
    #[test]
    fn least_connection_family_as_ipvs() {
        use Rule::*;
        let cases: &[(&Spec, Rule, Option<usize>)] = &[
            // lc: overhead = active × 256 + inactive; weights ignored but 0.
            (&[(1, 1, 0), (1, 0, 200), (1, 0, 300)], Lc, Some(1)),
            (&[(1, 0, 5), (9, 0, 5)], Lc, Some(0)),
            (&[(0, 0, 0), (1, 3, 0)], Lc, Some(1)),
            // wlc: overhead / weight; ties to the first.
            (&[(1, 1, 0), (3, 2, 0)], Wlc, Some(1)),
            (&[(1, 1, 0), (2, 2, 0)], Wlc, Some(0)),
            (&[(2, 0, 0), (1, 0, 0)], Wlc, Some(0)),
            // sed: (active + 1) / weight.
            (&[(1, 0, 0), (3, 2, 0)], Sed, Some(0)),
            (&[(1, 1, 0), (3, 2, 0)], Sed, Some(1)),
            // nq: an idle real first, even of lower weight.
            (&[(5, 1, 0), (1, 0, 0)], Nq, Some(1)),
            (&[(5, 1, 0), (1, 1, 0)], Nq, Some(0)),
            // fo: highest weight, first on ties.
            (&[(2, 9, 9), (5, 9, 9), (5, 0, 0)], Fo, Some(1)),
            // ovf: highest weight while active ≤ weight.
            (&[(5, 6, 0), (3, 3, 0), (1, 0, 0)], Ovf, Some(1)),
            (&[(1, 2, 0)], Ovf, None),
            (&[(0, 0, 0)], Wlc, None),
        ];
        for (spec, rule, want) in cases {
            let mut r = reals(spec);
            assert_eq!(least(&mut r, *rule), *want, "{rule:?} over {spec:?}");
        }
    }

    #[test]
    fn lc_sends_new_connections_to_the_emptiest_real() {
        let mut r = reals(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let mut got = Vec::new();
        for _ in 0..6 {
            let i = least(&mut r, Rule::Lc).unwrap();
            r[i].active += 1;
            got.push(i);
        }
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn thresholds_stop_and_resume_with_hysteresis() {
        let mut r = Real {
            u_threshold: 4,
            ..Real::new(1)
        };
        let states: Vec<bool> = [3, 4, 3, 2, 3, 4]
            .into_iter()
            .map(|n| {
                r.active = n;
                r.check_overload()
            })
            .collect();
        // Over at 4; back only below 3/4 × 4 = 3.
        assert_eq!(states, [false, true, true, false, false, true]);
        r.l_threshold = 1;
        r.active = 2;
        assert!(r.check_overload(), "still at or above lthreshold");
        r.active = 0;
        assert!(!r.check_overload());
    }

    #[test]
    fn wrr_sequence_skips_overloaded_reals_and_consumes_their_turn() {
        let mut r = reals(&[(4, 0, 0), (3, 0, 0), (2, 0, 0)]);
        let mut s = Sequence {
            seq: crate::tables::wrr_sequence(&[4, 3, 2]),
            cursor: 0,
        };
        let picks: Vec<usize> = (0..9).map(|_| s.next(&mut r).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 1, 2, 0, 1, 2]);
        r[0].reachable = false;
        let picks: Vec<usize> = (0..5).map(|_| s.next(&mut r).unwrap()).collect();
        assert_eq!(picks, [1, 1, 2, 1, 2]);
    }

    #[test]
    fn hashed_lookup_falls_back_only_when_asked() {
        let table = vec![Some(0), Some(1), Some(2), None];
        let mut r = reals(&[(1, 0, 0), (0, 0, 0), (1, 0, 0)]);
        let probe = |k: u32| (2 + k as usize) % 4;
        assert_eq!(hashed(&table, &mut r, false, 1, probe), None);
        assert_eq!(hashed(&table, &mut r, true, 1, probe), Some(2));
        r[2].weight = 0;
        // The walk stops at the empty slot.
        assert_eq!(hashed(&table, &mut r, true, 1, probe), None);
    }

    #[test]
    fn lblc_keeps_a_destination_until_overloaded_with_a_half_loaded_peer() {
        let mut r = reals(&[(2, 0, 0), (2, 0, 0)]);
        let mut mem = None;
        assert_eq!(lblc(&mut r, &mut mem), Some(0));
        r[0].active = 3; // above its weight, and real 1 is idle (under half load)
        assert_eq!(lblc(&mut r, &mut mem), Some(1));
        assert_eq!(mem, Some(1));
        r[1].active = 3;
        r[0].active = 3; // both above weight, nobody under half load: stay
        assert_eq!(lblc(&mut r, &mut mem), Some(1));
    }

    #[test]
    fn lblcr_grows_its_set_when_members_overload() {
        let mut r = reals(&[(2, 0, 0), (2, 0, 0), (2, 0, 0)]);
        let mut set = Vec::new();
        assert_eq!(lblcr(&mut r, &mut set), Some(0));
        r[0].active = 3;
        assert_eq!(lblcr(&mut r, &mut set), Some(1));
        assert_eq!(set, [0, 1]);
        r[0].active = 0;
        // Newest member first on ties: real 1 (overhead 0 vs 0).
        assert_eq!(lblcr(&mut r, &mut set), Some(1));
    }
}
