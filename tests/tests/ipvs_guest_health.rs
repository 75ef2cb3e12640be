//! Health checks driving the kernel's IPVS, in a qemu guest
//! (tests/src/qemu.rs): `xlb run` with `kind = "ipvs"` checks real servers
//! that live in the guest (TCP_CHECK against socat listeners the script
//! kills and restarts, MISC_CHECK with `misc_dynamic` against a script whose
//! exit code the job rewrites). A failing real leaves the kernel's service,
//! or stays at weight 0 with `inhibit_on_failure`; it comes back when its
//! check passes; a `misc_dynamic` exit code becomes the kernel's weight; and
//! a service no check touches keeps its kernel counters through all of it.

mod common;

use std::{fmt::Write, time::Duration};
use xlb_testbed::qemu::{
    Guest,
    job::{UNTIL_OK, WAIT_AGENT},
};

const CHECKED: &str = "10.60.0.1:80";

/// The untouched service (its reals local, so the kernel forwards the
/// script's datagrams to them) and the checked one: a TCP-checked real
/// removed on failure, a TCP-checked real inhibited on failure, a MISC_CHECK
/// real with dynamic weights.
const CONFIG: &str = r#"[dataplane]
kind = "ipvs"
interfaces = []

[[service]]
vip = "10.30.0.1"
port = 80
protocol = "udp"
scheduler = "rr"
[[service.real]]
address = "10.30.0.2"
[[service.real]]
address = "10.30.0.3"

[[service]]
vip = "10.60.0.1"
port = 80
protocol = "tcp"
scheduler = "wrr"
delay_loop = 1

[[service.real]]
address = "10.60.0.2"
weight = 1
[[service.real.check]]
type = "tcp"
connect_timeout = 1
retry = 0

[[service.real]]
address = "10.60.0.3"
weight = 2
inhibit_on_failure = true
[[service.real.check]]
type = "tcp"
connect_timeout = 1
retry = 0

[[service.real]]
address = "10.60.0.4"
weight = 3
[[service.real.check]]
type = "misc"
misc_path = ["/bin/sh", "-c", "exit $(cat /tmp/misc.code)"]
misc_timeout = 2
misc_dynamic = true
retry = 0
"#;

/// The checked service as `ipvsadm -S -n` prints it, lines sorted bytewise
/// (as busybox `sort` does): `weights` of reals .2, .3, .4 (`None`: not in
/// the kernel).
fn rules(weights: [Option<u32>; 3]) -> String {
    let mut lines = vec![format!("-A -t {CHECKED} -s wrr")];
    for (i, w) in weights.iter().enumerate() {
        if let Some(w) = w {
            // Reals on a local address: the kernel reports them as Local (-g).
            lines.push(format!("-a -t {CHECKED} -r 10.60.0.{}:80 -g -w {w}", i + 2));
        }
    }
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Each phase: what the job does, then the kernel state it waits for.
const PHASES: [(&str, &str, [Option<u32>; 3]); 4] = [
    ("up", "", [Some(1), Some(2), Some(3)]),
    // misc_dynamic: exit 12 is up with weight 10.
    (
        "dynamic",
        "echo 12 > /tmp/misc.code",
        [Some(1), Some(2), Some(10)],
    ),
    // Both listeners die and the script says down (exit 1): .2 is removed,
    // .3 stays at weight 0 (inhibit_on_failure), .4 is removed.
    (
        "down",
        "kill $l2 $l3; echo 1 > /tmp/misc.code",
        [None, Some(0), None],
    ),
    // Listeners back; the script comes back up with weight 5 (exit 7).
    (
        "back",
        "listen 10.60.0.2; l2=$!; listen 10.60.0.3; l3=$!; echo 7 > /tmp/misc.code",
        [Some(1), Some(2), Some(5)],
    ),
];

#[test]
fn health_checks_remove_inhibit_reweigh_and_restore_reals_in_the_kernel() {
    xlb_testbed::require_root().unwrap();
    let mut phases = String::new();
    for (name, action, _) in PHASES {
        let _ = writeln!(
            phases,
            "{action}\nuntil_ok {name} rules_are /etc/expect/{name}\necho =={name}; checked"
        );
    }
    let script = format!(
        r#"{WAIT_AGENT}{UNTIL_OK}
# ipvsadm -S lists every service: keep the checked one's lines, sorted.
checked() {{ ipvsadm -S -n | grep -F -- "-t {CHECKED} " | sort; }}
rules_are() {{ checked | cmp -s - "$1"; }}
# By path, so that $! is socat's pid; EXEC:true answers and closes.
listen() {{ /usr/local/bin/socat TCP-LISTEN:80,bind=$1,fork,reuseaddr EXEC:true >/dev/null 2>&1 & }}
# Loading dummy made dummy0.
ip link set dummy0 up
for a in 10.30.0.1 10.30.0.2 10.30.0.3 10.30.0.9 10.60.0.1 10.60.0.2 10.60.0.3 10.60.0.4; do
    ip addr add $a/32 dev dummy0
done
listen 10.60.0.2; l2=$!
listen 10.60.0.3; l3=$!
echo 0 > /tmp/misc.code
/usr/local/bin/xlb run -c /etc/xlb/health.toml 2>/tmp/agent.log &
pid=$!
wait_agent /tmp/agent.log $pid || exit 1
# Five flows to the untouched service, counted by the kernel (which
# publishes its per-CPU counters every 2 s: wait for them).
for i in 1 2 3 4 5; do echo x | socat -u - UDP-SENDTO:10.30.0.1:80,bind=10.30.0.9; done
i=0
while [ $i -lt 40 ] && ! ipvsadm -Ln --stats --exact -u 10.30.0.1:80 | grep -q "^UDP  10.30.0.1:80  *5 "; do
    sleep 0.25; i=$((i+1))
done
echo ==stats-before; ipvsadm -Ln --stats --exact -u 10.30.0.1:80
{phases}
echo ==stats-after; ipvsadm -Ln --stats --exact -u 10.30.0.1:80
echo ==ipvsadm; ipvsadm -Ln
echo ==xlb; xlb ipvsadm -Ln
kill $pid; wait $pid
kill $l2 $l3
cat /tmp/agent.log >&2
"#
    );
    let mut guest = Guest::new(script)
        .program(common::xlb_bin())
        .program("ipvsadm")
        .program("ip")
        .program("socat")
        .data("/etc/xlb/health.toml", CONFIG);
    for (name, _, weights) in PHASES {
        guest = guest.data(&format!("/etc/expect/{name}"), rules(weights));
    }
    let out = guest
        .modules(&["ip_vs", "ip_vs_rr", "ip_vs_wrr", "dummy"])
        .memory_mib(768)
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let s = out.sections();
    for (name, _, weights) in PHASES {
        assert_eq!(
            s[name],
            rules(weights),
            "phase {name}: the checked service in the kernel\n{out}"
        );
    }
    // The untouched service was counted, and kept its counters while the
    // checked one changed in every phase.
    let conns: u64 = s["stats-before"]
        .lines()
        .find(|l| l.starts_with("UDP"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no service line\n{out}"));
    assert!(conns > 0, "{out}");
    assert_eq!(s["stats-after"], s["stats-before"], "{out}");
    assert_eq!(s["xlb"], s["ipvsadm"], "{out}");
}
