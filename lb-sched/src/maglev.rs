//! IPVS's Maglev lookup table (net/netfilter/ipvs/ip_vs_mh.c; Eisenbud et
//! al., NSDI 2016), slot for slot, so the XDP mh scheduler picks the real
//! kernel IPVS picks for the same client.
//!
//! Each real walks its own permutation of the table, from a first slot and
//! with a stride that hsiphash derives from its address and port under
//! IPVS's constant keys, and claims the next free slot on its turn. Rounds
//! go through the reals in IPVS's list order; in each a real takes
//! `weight / gcd` turns (shifted right so the largest fits in half the
//! table's bits), one if that comes to 0. The weight is IPVS's
//! `last_weight`: a real set to weight 0 keeps its slots (it is drained,
//! not removed); only a real added with weight 0 gets none.

use lb_common::sched_hash;

/// One real server as IPVS mh sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Its address folded in the service's family (`sched_hash::fold`).
    pub fold: u32,
    pub port: u16,
    /// IPVS's `last_weight`: the latest nonzero weight, or 0 if it was
    /// added with 0 and never had another.
    pub weight: u32,
}

/// A real's walk through the table: its first slot, its stride and how many
/// slots it claims per round (IPVS's `ip_vs_mh_dest_setup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    pub offset: u32,
    pub skip: u32,
    pub turns: u32,
}

/// IPVS's `IP_VS_MH_TAB_BITS`, half the bits of the table index
/// (`CONFIG_IP_VS_MH_TAB_INDEX / 2`, where IPVS's primes sit just below
/// 2^index): 6 for 4093. Other primes get the same rule.
pub fn table_bits(size: u32) -> u32 {
    (u32::BITS - (size - 1).leading_zeros()) / 2
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The walks of `backends` in a table of `size` slots (a prime),
/// as IPVS's `ip_vs_mh_permutate` with its gcd and shift.
pub fn walks(backends: &[Backend], size: u32) -> Vec<Walk> {
    assert!(size >= 2, "Maglev table size must be a prime >= 2");
    let g = backends
        .iter()
        .map(|b| b.weight)
        .filter(|&w| w > 0)
        .fold(0, gcd);
    let shift = match backends.iter().map(|b| b.weight).max() {
        Some(max) if g > 0 => {
            (u32::BITS - (max / g).leading_zeros()).saturating_sub(table_bits(size))
        }
        _ => 0,
    };
    backends
        .iter()
        .map(|b| Walk {
            offset: sched_hash::mh(b.fold, b.port, 0) % size,
            skip: sched_hash::mh_skip(b.fold, b.port) % (size - 1) + 1,
            turns: match (b.weight.checked_div(g).unwrap_or(0)) >> shift {
                0 => u32::from(b.weight != 0),
                t => t,
            },
        })
        .collect()
}

/// Fills a table of `size` slots (a prime) with the index of the walk that
/// owns each slot, as IPVS's `ip_vs_mh_populate`. `None` if no walk has a
/// turn (IPVS then empties the table).
///
/// Walking a permutation until a free slot costs `size / free` probes a
/// turn, so the last few hundred free slots would cost half the probes.
/// From there on a turn finds its slot directly instead: the free slot a
/// walk reaches first is the one with the smallest step count
/// `(slot - offset) / skip (mod size)`, the same slot the walk would
/// have probed its way to.
pub fn populate(walks: &[Walk], size: u32) -> Option<Vec<u32>> {
    if walks.iter().all(|w| w.turns == 0) {
        return None;
    }
    let mut table = vec![0u32; size as usize];
    let mut taken = vec![0u64; (size as usize).div_ceil(64)];
    let is_taken = |taken: &[u64], s: u32| taken[(s / 64) as usize] & (1 << (s % 64)) != 0;
    let mut next: Vec<u32> = walks.iter().map(|w| w.offset).collect();
    let mut free = size;
    // Probing costs about size / free loads a turn, scanning `free` steps.
    let scan_below = (size / 4).isqrt().max(1);
    // The free slots and each walk's inverse stride, once scanning.
    let mut scan: Option<(Vec<u32>, Vec<u64>)> = None;
    loop {
        for (i, (w, at)) in walks.iter().zip(next.iter_mut()).enumerate() {
            for _ in 0..w.turns {
                if free > scan_below {
                    // A stride below a prime size visits every slot, so this ends.
                    while is_taken(&taken, *at) {
                        *at += w.skip;
                        if *at >= size {
                            *at -= size;
                        }
                    }
                    taken[(*at / 64) as usize] |= 1 << (*at % 64);
                    table[*at as usize] = i as u32;
                } else {
                    let (slots, inverses) = scan.get_or_insert_with(|| {
                        let slots = (0..size).filter(|&s| !is_taken(&taken, s)).collect();
                        let inverses = walks
                            .iter()
                            .map(|w| u64::from(inverse(w.skip, size)))
                            .collect();
                        (slots, inverses)
                    });
                    let steps =
                        |s: u32| (u64::from(s + size - w.offset) * inverses[i]) % u64::from(size);
                    let nearest = (0..slots.len())
                        .min_by_key(|&j| steps(slots[j]))
                        .expect("a free slot while any is free");
                    table[slots.swap_remove(nearest) as usize] = i as u32;
                }
                free -= 1;
                if free == 0 {
                    return Some(table);
                }
            }
        }
    }
}

/// `x`'s inverse modulo the prime `p` (extended Euclid).
fn inverse(x: u32, p: u32) -> u32 {
    let (mut a, mut b) = (i64::from(x), i64::from(p));
    let (mut u, mut v) = (1i64, 0i64);
    while b != 0 {
        let q = a / b;
        (a, b) = (b, a - q * b);
        (u, v) = (v, u - q * v);
    }
    u.rem_euclid(i64::from(p)) as u32
}

/// The table for `backends` in IPVS's list order: each slot holds the
/// index in `backends` of its real. `None` if no real has a weight.
pub fn build(backends: &[Backend], size: u32) -> Option<Vec<u32>> {
    populate(&walks(backends, size), size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip_vs_mh_populate` as the kernel writes it, slot by slot: what
    /// [`populate`] must equal.
    fn populate_as_ipvs(walks: &[Walk], size: u32) -> Option<Vec<u32>> {
        if walks.iter().all(|w| w.turns == 0) {
            return None;
        }
        const FREE: u32 = u32::MAX;
        let mut table = vec![FREE; size as usize];
        let mut next: Vec<u32> = walks.iter().map(|w| w.offset).collect();
        let mut filled = 0;
        loop {
            for (i, w) in walks.iter().enumerate() {
                for _ in 0..w.turns {
                    while table[next[i] as usize] != FREE {
                        next[i] += w.skip;
                        if next[i] >= size {
                            next[i] -= size;
                        }
                    }
                    table[next[i] as usize] = i as u32;
                    filled += 1;
                    if filled == size {
                        return Some(table);
                    }
                }
            }
        }
    }

    #[test]
    fn populate_equals_ipvs_slot_for_slot() {
        for (weights, size) in [
            (vec![1; 1], 7),
            (vec![1; 3], 251),
            (vec![5, 0, 1, 9, 2], 4093),
            ((0..100).map(|i| i % 7).collect(), 10007),
            (vec![1; 1000], 65537),
            ((0..1000).map(|i| i * 37 % 1000 + 1).collect(), 65537),
        ] {
            let ws = walks(&backends(&weights), size);
            assert_eq!(
                populate(&ws, size),
                populate_as_ipvs(&ws, size),
                "{} reals, size {size}",
                weights.len()
            );
        }
    }

    fn backends(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Backend {
                fold: u32::from_be_bytes([10, 1, (i / 256) as u8, (i % 256) as u8]),
                port: 80,
                weight,
            })
            .collect()
    }

    fn counts(table: &[u32], n: usize) -> Vec<u64> {
        let mut c = vec![0u64; n];
        for &b in table {
            c[b as usize] += 1;
        }
        c
    }

    #[test]
    fn populate_follows_ipvs_by_hand() {
        // Size 7. A: slots 3, 5, 0, … (stride 2), one turn a round.
        // B: slots 3, 6, 2, 5, 1, 4, … (stride 3), two turns. C: no turn.
        // Round 1: A takes 3; B finds 3 taken, takes 6, then 2.
        // Round 2: A finds 3 taken, takes 5; B: 2, 5 taken, takes 1, then 4.
        // Round 3: A: 5 taken, takes 0, the last free slot.
        let walks = [
            Walk {
                offset: 3,
                skip: 2,
                turns: 1,
            },
            Walk {
                offset: 3,
                skip: 3,
                turns: 2,
            },
            Walk {
                offset: 0,
                skip: 1,
                turns: 0,
            },
        ];
        assert_eq!(populate(&walks, 7).unwrap(), [0, 1, 1, 0, 1, 0, 1]);
        // List order decides who gets a slot both want: B first takes 3.
        let swapped = [walks[1], walks[0]];
        assert_eq!(populate(&swapped, 7).unwrap()[3], 0);
    }

    #[test]
    fn turns_are_weight_over_gcd_shifted_into_half_the_table_bits() {
        assert_eq!(table_bits(4093), 6);
        assert_eq!(table_bits(251), 4);
        assert_eq!(table_bits(65521), 8);
        assert_eq!(table_bits(131071), 8);
        let turns =
            |w: &[u32]| -> Vec<u32> { walks(&backends(w), 4093).iter().map(|w| w.turns).collect() };
        assert_eq!(turns(&[4, 2, 0, 6]), [2, 1, 0, 3]);
        // 1000 / 1 needs 10 bits, 4 more than 6: 1000 >> 4 = 62; 1 >> 4 is 0, so 1.
        assert_eq!(turns(&[1000, 1, 0]), [62, 1, 0]);
        assert_eq!(turns(&[0, 0]), [0, 0]);
        assert!(build(&backends(&[0, 0]), 4093).is_none());
        assert!(build(&[], 4093).is_none());
    }

    #[test]
    fn a_walk_starts_and_strides_where_the_hashes_say() {
        for b in backends(&[1, 2, 3]) {
            let w = walks(&[b], 4093)[0];
            assert_eq!(w.offset, sched_hash::mh(b.fold, b.port, 0) % 4093);
            assert_eq!(w.skip, sched_hash::mh_skip(b.fold, b.port) % 4092 + 1);
        }
    }

    #[test]
    fn slot_counts_follow_turns_within_one_round() {
        // Every round gives each real its turns, so counts differ from the
        // turn share by less than one round's turns.
        for (weights, size) in [
            (vec![1; 3], 4093),
            (vec![1; 100], 4093),
            (vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1], 4093),
            ((0..300).map(|i| i % 3 + 1).collect(), 65521),
        ] {
            let bs = backends(&weights);
            let ws = walks(&bs, size);
            let c = counts(&build(&bs, size).unwrap(), bs.len());
            let total: u32 = ws.iter().map(|w| w.turns).sum();
            for (i, w) in ws.iter().enumerate() {
                let want = f64::from(size) * f64::from(w.turns) / f64::from(total);
                assert!(
                    (c[i] as f64 - want).abs() <= f64::from(w.turns),
                    "{} reals, real {i}: {} slots, want {want:.1}",
                    bs.len(),
                    c[i]
                );
            }
        }
    }

    #[test]
    fn a_weight_zero_real_that_was_added_so_gets_no_slot() {
        let bs = backends(&[1, 0, 2]);
        let c = counts(&build(&bs, 4093).unwrap(), 3);
        assert_eq!(c[1], 0);
        assert!(c[0] > 0 && c[2] > c[0]);
    }

    /// Maglev is near-minimal when the table has many slots per real and
    /// drifts from the minimum as that shrinks; the bounds are what IPVS's
    /// table achieves, so a regression shows.
    #[test]
    fn removing_one_real_moves_close_to_the_minimum() {
        for (n, size, bound) in [
            (3, 4093, 1.05),
            (10, 4093, 1.2),
            (100, 65521, 1.6),
            (1000, 131071, 7.0),
        ] {
            let all = backends(&vec![1; n]);
            let before = build(&all, size).unwrap();
            let gone = n / 2;
            let rest: Vec<Backend> = all
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != gone)
                .map(|(_, b)| *b)
                .collect();
            let after = build(&rest, size).unwrap();
            let moved = (0..size as usize)
                .filter(|&s| all[before[s] as usize] != rest[after[s] as usize])
                .count();
            let minimum = before.iter().filter(|&&b| b as usize == gone).count();
            let ratio = moved as f64 / minimum as f64;
            println!(
                "remove 1 of {n} reals: {moved} of {size} slots moved, theoretical minimum {minimum} (x{ratio:.2})"
            );
            assert!(moved >= minimum);
            assert!(
                ratio <= bound,
                "{n} reals, table {size}: moved {moved}, minimum {minimum}"
            );
        }
    }
}
