//! Tables built from a service's reals, in list (configured) order. Each
//! returns positions in the list given to it.

use lb_common::sched_layout::HASH_BUCKETS;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// IPVS's weighted round-robin cycle: the current weight starts at the
/// largest weight and steps down by the weights' gcd; on each step every
/// real with at least that weight, in list order, takes a turn. Weights
/// 4, 3, 2 give A A B A B C A B C. Reals of weight 0 never appear.
pub fn wrr_sequence(weights: &[u32]) -> Vec<usize> {
    let step = weights.iter().copied().fold(0, gcd);
    let Some(max) = weights.iter().copied().max().filter(|&m| m > 0) else {
        return Vec::new();
    };
    let mut seq = Vec::new();
    // IPVS starts at max − (gcd − 1), so the steps land on multiples of the gcd.
    let mut cw = i64::from(max - (step - 1));
    while cw > 0 {
        seq.extend((0..weights.len()).filter(|&i| i64::from(weights[i]) >= cw));
        cw -= i64::from(step);
    }
    seq
}

/// Length of [`wrr_sequence`] without building it: Σ weight / gcd.
pub fn wrr_len(weights: &[u32]) -> u64 {
    let step = weights.iter().copied().fold(0, gcd);
    if step == 0 {
        return 0;
    }
    weights.iter().map(|&w| u64::from(w / step)).sum()
}

/// Round robin: every real with weight, once, in list order.
pub fn rr_sequence(weights: &[u32]) -> Vec<usize> {
    (0..weights.len()).filter(|&i| weights[i] > 0).collect()
}

/// IPVS dh: bucket i goes to real i mod n (weights do not shape the table).
pub fn dh_buckets(n: usize) -> Vec<Option<usize>> {
    (0..HASH_BUCKETS as usize)
        .map(|i| (n > 0).then(|| i % n))
        .collect()
}

/// IPVS sh: reals take turns in list order, each `weight` consecutive
/// buckets (one if its weight is 0), round and round until all are dealt.
pub fn sh_buckets(weights: &[u32]) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(HASH_BUCKETS as usize);
    let (mut real, mut dealt) = (0, 0);
    for _ in 0..HASH_BUCKETS {
        if weights.is_empty() {
            out.push(None);
            continue;
        }
        out.push(Some(real));
        dealt += 1;
        if dealt >= weights[real] {
            real = (real + 1) % weights.len();
            dealt = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(seq: &[usize]) -> String {
        seq.iter().map(|&i| (b'A' + i as u8) as char).collect()
    }

    #[test]
    fn wrr_cycles_as_ipvs() {
        let cases: &[(&[u32], &str)] = &[
            (&[4, 3, 2], "AABABCABC"),
            (&[1, 1, 1], "ABC"),
            (&[1, 2, 3], "CBCABC"),
            (&[4, 2], "AAB"),
            (&[0, 2, 2], "BC"),
            (&[5, 0, 1], "AAAAAC"),
            (&[0, 0], ""),
            (&[], ""),
        ];
        for (weights, want) in cases {
            let seq = wrr_sequence(weights);
            assert_eq!(names(&seq), *want, "weights {weights:?}");
            assert_eq!(wrr_len(weights), seq.len() as u64, "weights {weights:?}");
        }
    }

    #[test]
    fn wrr_shares_follow_weights() {
        let seq = wrr_sequence(&[1, 2, 3]);
        let count = |i| seq.iter().filter(|&&x| x == i).count();
        assert_eq!((count(0), count(1), count(2)), (1, 2, 3));
    }

    #[test]
    fn rr_skips_weight_zero() {
        assert_eq!(rr_sequence(&[1, 0, 7]), vec![0, 2]);
    }

    #[test]
    fn dh_deals_buckets_in_turn() {
        let t = dh_buckets(3);
        assert_eq!(t.len(), 256);
        assert_eq!(&t[..5], &[Some(0), Some(1), Some(2), Some(0), Some(1)]);
        assert!(dh_buckets(0).iter().all(Option::is_none));
    }

    #[test]
    fn sh_deals_weight_buckets_each() {
        let t = sh_buckets(&[1, 2, 0, 3]);
        let want = [0, 1, 1, 2, 3, 3, 3, 0, 1, 1];
        assert_eq!(t[..10].iter().map(|b| b.unwrap()).collect::<Vec<_>>(), want);
        let count = |i| t.iter().filter(|&&b| b == Some(i)).count();
        // 256 buckets over cycles of 7: 36 full cycles (252) then 0, 1, 1, 2.
        assert_eq!((count(0), count(1), count(2), count(3)), (37, 74, 37, 108));
    }
}
