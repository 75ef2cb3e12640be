//! `twos` against the kernel's own `ip_vs_twos` (Linux 6.2+), in a qemu guest
//! booting bookworm-backports' 6.12 kernel (bookworm's 6.1 has no twos).
//!
//! twos draws at random, so the kernel and xlb agree in distribution, not
//! flow by flow. New UDP flows count on their real as an inactive
//! connection, so the odds change with every flow; rather than hold the
//! counts fixed (IPVS offers no way to), the test replays the kernel's own
//! run: one process opens the flows in order from consecutive source ports
//! (IPVS schedules each inside its `sendto`), the connection table tells
//! which real took each, and before flow k the counts are exactly those of
//! flows 0..k. For each flow the model (`model::twos` over every pair of
//! draws, ip_vs_twos.c as written; the same model `xdp_sched.rs` holds the
//! XDP program to) gives each real's exact probability in that state: the
//! kernel must never choose a real whose probability is 0 (weight 0, or
//! over its upper threshold), and each real's count must lie within 5
//! standard deviations of the sum of its probabilities (a sum of
//! independent-given-the-past choices: its variance is the sum of p(1−p)).
//!
//! xlb's XDP program is not run in this guest: it draws with
//! `bpf_get_prandom_u32`, so it too can only be compared in distribution,
//! which `xdp_sched.rs` does against the same model with the counts held
//! fixed (BPF_PROG_TEST_RUN on the host's kernel); the model ties the two.

use std::{fmt::Write, path::Path, time::Duration};
use xlb::sched::model::{self, Real};
use xlb_testbed::qemu::{Guest, kernel::KernelChoice};

const VIP: &str = "10.60.0.1:9";
/// Each real: (weight, upper threshold: 0 for none). In the kernel's list
/// (newest first) they appear reversed.
const REALS: [(u32, u32); 5] = [(3, 0), (0, 0), (2, 40), (2, 0), (1, 0)];
const CLIENT: &str = "10.62.0.1";
const FIRST_PORT: u16 = 10_000;
const FLOWS: usize = 10_000;

fn real_addr(i: usize) -> String {
    format!("10.61.0.{}", i + 1)
}

fn script() -> String {
    let mut s = String::from(
        "ip link add dummy0 type dummy && ip link set dummy0 up\n\
         ip addr add 10.60.0.1/32 dev dummy0\n\
         ip addr add 10.62.0.1/32 dev dummy0\n\
         # No flow may expire during the run: the replay assumes counts only grow.\n\
         ipvsadm --set 0 0 3600 || exit 1\n",
    );
    let _ = writeln!(s, "ipvsadm -A -u {VIP} -s twos || exit 1");
    for (i, (w, upper)) in REALS.iter().enumerate() {
        let a = real_addr(i);
        let _ = writeln!(s, "ip addr add {a}/32 dev dummy0");
        let _ = writeln!(
            s,
            "ipvsadm -a -u {VIP} -r {a}:9 -g -w {w} -x {upper} || exit 1"
        );
    }
    let _ = writeln!(
        s,
        "echo ==order; ipvsadm -Ln --nosort -u {VIP}\n\
         xlb-udp-flows {CLIENT} {FIRST_PORT} {FLOWS} {VIP} || exit 1\n\
         echo ==after; ipvsadm -Ln --nosort -u {VIP}\n\
         # Each flow: its source port and its real's address.\n\
         echo ==flows; ipvsadm -Lnc | awk '$5 == \"{VIP}\" {{ split($4, c, \":\"); split($6, r, \":\"); print c[2], r[1] }}'"
    );
    s
}

/// The reals (by index into [`REALS`]) in the kernel's list order, and each
/// one's InActConn, from an `ipvsadm -Ln --nosort` listing.
fn listing(text: &str) -> Vec<(usize, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("  -> 10.61.0."))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let octet: usize = f[0].split(':').next().unwrap().parse().unwrap();
            (octet - 1, f[4].parse().unwrap())
        })
        .collect()
}

#[test]
fn kernel_twos_chooses_as_xlbs_model_gives_odds() {
    xlb_testbed::require_root().unwrap();
    let out = Guest::new(script())
        .kernel(KernelChoice::Backports)
        .program("ipvsadm")
        .program("ip")
        .program(Path::new(env!("CARGO_BIN_EXE_xlb-udp-flows")))
        .modules(&["ip_vs", "ip_vs_twos", "dummy"])
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let s = out.sections();

    // The model's reals in the kernel's list order.
    let order: Vec<usize> = listing(&s["order"]).iter().map(|&(i, _)| i).collect();
    assert_eq!(order.len(), REALS.len(), "{out}");
    let position = |i: usize| order.iter().position(|&o| o == i).unwrap();
    let mut reals: Vec<Real> = order
        .iter()
        .map(|&i| Real {
            u_threshold: REALS[i].1,
            ..Real::new(REALS[i].0)
        })
        .collect();

    // The kernel's choice (a list position) for each flow, in sending order.
    let mut chosen = vec![None; FLOWS];
    for l in s["flows"].lines() {
        let (port, addr) = l.split_once(' ').unwrap();
        let k = usize::from(port.parse::<u16>().unwrap() - FIRST_PORT);
        let octet: usize = addr.strip_prefix("10.61.0.").unwrap().parse().unwrap();
        assert!(chosen[k].is_none(), "flow {k} listed twice\n{out}");
        chosen[k] = Some(position(octet - 1));
    }
    let missing = chosen.iter().filter(|c| c.is_none()).count();
    assert_eq!(missing, 0, "flows without a connection entry\n{out}");

    // Replay: before each flow, the model's odds in the counts so far.
    let mut seen = vec![0u64; reals.len()];
    let mut mean = vec![0f64; reals.len()];
    let mut var = vec![0f64; reals.len()];
    for (k, c) in chosen.iter().map(|c| c.unwrap()).enumerate() {
        let (odds, pairs) = model::twos_odds(&mut reals);
        assert!(
            odds[c] > 0,
            "flow {k}: the kernel chose {} (weight {}, {} connections), which the model never does in {reals:?}",
            real_addr(order[c]),
            reals[c].weight,
            reals[c].inactive
        );
        for (i, &o) in odds.iter().enumerate() {
            let p = o as f64 / pairs as f64;
            mean[i] += p;
            var[i] += p * (1.0 - p);
        }
        seen[c] += 1;
        reals[c].inactive += 1;
    }

    // The replay's counts are the kernel's: UDP flows count as inactive connections.
    let after: Vec<u64> = listing(&s["after"]).iter().map(|&(_, n)| n).collect();
    assert_eq!(
        after, seen,
        "InActConn per real in list order\n{}",
        s["after"]
    );

    let mut report = String::new();
    let mut bad = false;
    for (pos, &i) in order.iter().enumerate() {
        let sd = var[pos].sqrt();
        let off = (seen[pos] as f64 - mean[pos]).abs() > 5.0 * sd + 1.0;
        bad |= off;
        let _ = writeln!(
            report,
            "{} (weight {}, threshold {}): kernel {} of {FLOWS}, model {:.1} ± {sd:.1}{}",
            real_addr(i),
            REALS[i].0,
            REALS[i].1,
            seen[pos],
            mean[pos],
            if off { "  <- more than 5 sd" } else { "" }
        );
    }
    eprintln!("{report}");
    assert!(!bad, "{report}");
    // The weight-0 real never, the thresholded one up to its threshold exactly.
    assert_eq!(seen[position(1)], 0, "{report}");
    assert_eq!(seen[position(2)], 40, "{report}");
}
