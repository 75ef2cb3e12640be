//! What the director does per packet, counted (bench only): an object built
//! with lb-ebpf's `count` feature adds one to `PROBES[site]` at every map
//! access and helper call, so `cargo xtask bench` can print, for each path it
//! times, the lookups and calls behind the figure. The production object has
//! neither the map nor the additions.

/// Name of the counting map (a per-CPU array of `u64`, one slot per site).
pub const MAP: &str = "PROBES";

/// What a site costs, roughly: hash-map work and helper calls are real
/// calls; array reads the verifier inlines into a few instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Lookup, insert or delete in a hash or LRU hash map.
    Hash,
    /// Read of an array or per-CPU array slot (inlined by the verifier).
    Array,
    /// A BPF helper call.
    Helper,
}

macro_rules! sites {
    ($($name:ident = $value:literal, $kind:ident, $text:literal;)*) => {
        $(pub const $name: u32 = $value;)*
        /// Every site: its slot, kind and printed name.
        pub const SITES: &[(u32, Kind, &str)] = &[$(($value, Kind::$kind, $text)),*];
    };
}

sites! {
    SERVICES = 0, Hash, "SERVICES";
    CONNTRACK = 1, Hash, "CONNTRACK";
    CONNTRACK_UPDATE = 2, Hash, "CONNTRACK update";
    NAT_REPLIES = 3, Hash, "NAT_REPLIES";
    NAT_REPLIES_UPDATE = 4, Hash, "NAT_REPLIES update";
    IFACES = 5, Hash, "IFACES";
    PERSIST = 6, Hash, "PERSIST";
    LOCALITY = 7, Hash, "LBLC/LBLCR";
    AFFINITY_UPDATE = 8, Hash, "PERSIST/LBLC/LBLCR update";
    SETTINGS = 9, Array, "SETTINGS";
    REALS = 10, Array, "REALS";
    REAL_CONNS = 11, Array, "REAL_CONNS";
    SCHED_TABLES = 12, Array, "MAGLEV/SERVICE_REALS";
    SCHED_STATE = 13, Array, "SCHED_CURSORS/REAL_OVERLOAD";
    NAT_REPLY_PORTS = 14, Array, "NAT_REPLY_PORTS";
    STATS = 15, Array, "stats";
    KTIME = 16, Helper, "ktime_get_ns";
    KTIME_COARSE = 17, Helper, "ktime_get_coarse_ns";
    FIB_LOOKUP = 18, Helper, "fib_lookup";
    REDIRECT = 19, Helper, "redirect_map";
    ADJUST = 20, Helper, "xdp_adjust_head/tail";
    CSUM_DIFF = 21, Helper, "csum_diff";
    LOOP = 22, Helper, "loop";
    PRANDOM = 23, Helper, "get_prandom_u32";
    BUFF_LEN = 24, Helper, "xdp_get_buff_len";
}

/// Slots in `PROBES`.
pub const COUNT: u32 = 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_is_one_site() {
        let mut seen = [false; COUNT as usize];
        for (slot, _, _) in SITES {
            assert!(!seen[*slot as usize], "slot {slot} twice");
            seen[*slot as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
