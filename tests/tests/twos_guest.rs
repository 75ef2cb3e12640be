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
//! xlb's XDP twos runs in the same kernel too (a second guest: `xlb run`
//! with `kind = "xdp"` on a director namespace, NAT, generic mode), and its
//! choices, read from which real received each client port, go through the
//! same replay; `xdp_sched.rs` holds the program to the model with the
//! counts held fixed (BPF_PROG_TEST_RUN on the host's kernel). The XDP list
//! order is the configured one, IPVS's newest first (docs/SCHEDULERS.md).

mod common;

use std::{fmt::Write, path::Path, time::Duration};
use xlb::sched::model::{self, Real};
use xlb_testbed::qemu::{
    Guest,
    job::{UNTIL_OK, WAIT_AGENT, client_director_real},
    kernel::KernelChoice,
};

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

    // The kernel's choice (a list position) for each flow, in sending order.
    let mut chosen = vec![None; FLOWS];
    for l in s["flows"].lines() {
        let (port, addr) = l.split_once(' ').unwrap();
        let k = usize::from(port.parse::<u16>().unwrap() - FIRST_PORT);
        let octet: usize = addr.strip_prefix("10.61.0.").unwrap().parse().unwrap();
        assert!(chosen[k].is_none(), "flow {k} listed twice\n{out}");
        chosen[k] = Some(position(octet - 1));
    }
    let chosen: Vec<usize> = chosen.into_iter().flatten().collect();
    assert_eq!(
        chosen.len(),
        FLOWS,
        "flows without a connection entry\n{out}"
    );

    let seen = replay(&order, &chosen, real_addr);
    // The replay's counts are the kernel's: UDP flows count as inactive connections.
    let after: Vec<u64> = listing(&s["after"]).iter().map(|&(_, n)| n).collect();
    assert_eq!(
        after, seen,
        "InActConn per real in list order\n{}",
        s["after"]
    );
}

/// Replays flows that went to `chosen` (positions in `order`, the reals by
/// index into [`REALS`] in the data plane's list order) through the model:
/// before each flow, its odds over the counts of the flows before it. Panics
/// on a choice of probability 0, or a real's count more than 5 standard
/// deviations off the model's expectation. Returns each position's count.
fn replay(order: &[usize], chosen: &[usize], name: impl Fn(usize) -> String) -> Vec<u64> {
    let mut reals: Vec<Real> = order
        .iter()
        .map(|&i| Real {
            u_threshold: REALS[i].1,
            ..Real::new(REALS[i].0)
        })
        .collect();
    let mut seen = vec![0u64; reals.len()];
    let mut mean = vec![0f64; reals.len()];
    let mut var = vec![0f64; reals.len()];
    for (k, &c) in chosen.iter().enumerate() {
        let (odds, pairs) = model::twos_odds(&mut reals);
        assert!(
            odds[c] > 0,
            "flow {k}: chose {} (weight {}, {} connections), which the model never does in {reals:?}",
            name(order[c]),
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
    let flows = chosen.len();
    let mut report = String::new();
    let mut bad = false;
    for (pos, &i) in order.iter().enumerate() {
        let sd = var[pos].sqrt();
        let off = (seen[pos] as f64 - mean[pos]).abs() > 5.0 * sd + 1.0;
        bad |= off;
        let _ = writeln!(
            report,
            "{} (weight {}, threshold {}): chosen {} of {flows}, model {:.1} ± {sd:.1}{}",
            name(i),
            REALS[i].0,
            REALS[i].1,
            seen[pos],
            mean[pos],
            if off { "  <- more than 5 sd" } else { "" }
        );
    }
    eprintln!("{report}");
    assert!(!bad, "{report}");
    let position = |i: usize| order.iter().position(|&o| o == i).unwrap();
    // The weight-0 real never, the thresholded one up to its threshold exactly.
    assert_eq!(seen[position(1)], 0, "{report}");
    assert_eq!(seen[position(2)], 40, "{report}");
    seen
}

/// The XDP director's address toward the client, and the client's.
const XDP_CLIENT: &str = "10.81.0.10";
/// Routed nowhere on the director: a datagram to it reaches a real through XDP or not at all.
const XDP_VIP: &str = "10.90.0.100";
/// Flows through the XDP director.
const XDP_FLOWS: usize = 10_000;

fn xdp_real(i: usize) -> String {
    format!("10.80.0.{}", 11 + i)
}

/// `xlb run` with `kind = "xdp"`: the same reals behind a NAT twos service.
fn xdp_config() -> String {
    let mut s = format!(
        "[dataplane]\nkind = \"xdp\"\ninterfaces = [\"d1\", \"d0\"]\nxdp_mode = \"generic\"\n\
         pin_path = \"/sys/fs/bpf/xlb-twos\"\nudp_timeout = 3600\n\n\
         [[service]]\nvip = \"{XDP_VIP}\"\nport = 9\nprotocol = \"udp\"\nscheduler = \"twos\"\nmethod = \"nat\"\n"
    );
    for (i, (w, upper)) in REALS.iter().enumerate() {
        let _ = write!(
            s,
            "[[service.real]]\naddress = \"{}\"\nport = 9\nweight = {w}\n",
            xdp_real(i)
        );
        if *upper > 0 {
            let _ = writeln!(s, "uthreshold = {upper}");
        }
    }
    s
}

/// The job: client, director and reals' namespaces as in xdp_guest.rs, a
/// receiver per real, the agent, the flows; then each real's client ports.
fn xdp_script() -> String {
    let mut receivers = String::new();
    let mut results = String::new();
    for i in 0..REALS.len() {
        let a = xdp_real(i);
        let _ = writeln!(
            receivers,
            "in_r ip addr add {a}/24 dev r0\n\
             in_r xlb-udp-recv {a}:9 /tmp/{i}.ready 73746f70 300 > /tmp/{i}.out 2>/tmp/{i}.err &\n\
             echo $! >> /tmp/receivers\n\
             until_ok \"receiver {i}\" test -e /tmp/{i}.ready || exit 1"
        );
        let _ = writeln!(
            results,
            "echo ==sources-{i}; awk '$1 ~ /^{XDP_CLIENT}:/ {{ print $1 }}' /tmp/{i}.out"
        );
    }
    let topology = client_director_real(XDP_CLIENT);
    format!(
        r#"{WAIT_AGENT}{UNTIL_OK}{topology}
in_r ip link set r0 up
in_c ethtool -K c0 tx off >/dev/null
{receivers}
/usr/local/bin/nsenter --net=/run/netns/d /usr/local/bin/xlb run -c /etc/xlb/twos.toml 2>/tmp/agent.log &
pid=$!
wait_agent /tmp/agent.log $pid || exit 1
until_ok "the reals resolved" sh -c '! /usr/local/bin/nsenter --net=/run/netns/d /usr/local/bin/xlb status --pin-path /sys/fs/bpf/xlb-twos | grep -q unreachable'
in_c xlb-udp-flows {XDP_CLIENT} {FIRST_PORT} {XDP_FLOWS} {XDP_VIP}:9 || exit 1
# The agent's next-hop probes reach the receivers too: count the client's datagrams.
received() {{ [ "$(cat /tmp/*.out | grep -c '^{XDP_CLIENT}:')" -ge {XDP_FLOWS} ]; }}
until_ok "every flow received" received
echo ==status; in_d xlb status --pin-path /sys/fs/bpf/xlb-twos
kill $(cat /tmp/receivers)
{results}
kill $pid; wait $pid
cat /tmp/agent.log >&2
"#
    )
}

/// xlb's own XDP twos, in the same kernel, replayed through the same model:
/// the datagrams reach the reals in the order sent, each real's receiver
/// reports its flows' client ports, and XDP's list order is the configured one.
#[test]
fn xdp_twos_chooses_as_xlbs_model_gives_odds() {
    xlb_testbed::require_root().unwrap();
    let out = Guest::new(xdp_script())
        .kernel(KernelChoice::Backports)
        .program(common::xlb_bin())
        .program(Path::new(env!("CARGO_BIN_EXE_xlb-udp-recv")))
        .program(Path::new(env!("CARGO_BIN_EXE_xlb-udp-flows")))
        .program("ip")
        .program("ethtool")
        .program("nsenter")
        .data("/etc/xlb/twos.toml", xdp_config())
        .modules(&["veth"])
        .memory_mib(768)
        .timeout(Duration::from_secs(400))
        .run()
        .unwrap();
    let s = out.sections();
    let mut chosen = vec![None; XDP_FLOWS];
    for i in 0..REALS.len() {
        for source in s[&format!("sources-{i}")].lines() {
            let k = source
                .strip_prefix(&format!("{XDP_CLIENT}:"))
                .and_then(|p| p.parse::<u16>().ok())
                .and_then(|p| p.checked_sub(FIRST_PORT))
                .map(usize::from)
                .filter(|&k| k < XDP_FLOWS)
                .unwrap_or_else(|| panic!("{} received from {source}\n{out}", xdp_real(i)));
            assert!(chosen[k].is_none(), "flow {k} received twice\n{out}");
            chosen[k] = Some(i);
        }
    }
    let chosen: Vec<usize> = chosen.into_iter().flatten().collect();
    assert_eq!(chosen.len(), XDP_FLOWS, "flows never received\n{out}");
    let order: Vec<usize> = (0..REALS.len()).collect();
    let seen = replay(&order, &chosen, xdp_real);
    // The replay's counts are XDP's: UDP flows count as inactive connections.
    let counted: Vec<u64> = s["status"]
        .lines()
        .filter(|l| l.trim_start().starts_with("-> 10.80.0."))
        .map(|l| l.split_whitespace().nth(5).unwrap().parse().unwrap())
        .collect();
    assert_eq!(counted, seen, "InActConn per real\n{}", s["status"]);
}
