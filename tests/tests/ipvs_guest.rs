//! xlb's IPVS data plane against a real kernel IPVS, in a qemu guest
//! (tests/src/qemu.rs): every scheduler × DR/NAT/TUN × TCP/UDP/fwmark
//! service applied by `xlb run` with `kind = "ipvs"` reads back through the
//! real ipvsadm as configured and exactly as `xlb ipvsadm` prints it; a
//! changed config reaches the kernel by reconciling (untouched services keep
//! their counters); `xlb status`, the dumps and the Prometheus endpoint
//! read the kernel's IPVS; and kernel IPVS schedules new connections as xlb's
//! scheduler model predicts (rr, wrr, dh, sh, lc, wlc, mh; lc and wlc also
//! over TCP connections opened and closed in a scripted pattern; mh with
//! xlb's table builder at the default `maglev_table_size`, IPVS's 4093).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    time::Duration,
};
use xlb::{
    maglev,
    sched::{
        model::{self, Real, Rule},
        tables,
    },
};
use xlb_testbed::qemu::{Guest, job::WAIT_AGENT};

/// Every kernel scheduler module, in the order the services below use them.
const SCHEDULERS: [&str; 13] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf",
];
const METHODS: [&str; 3] = ["dr", "nat", "tun"];
const KINDS: [&str; 3] = ["tcp", "udp", "fwmark"];

fn modules() -> Vec<String> {
    let mut m = vec!["ip_vs".to_string(), "dummy".to_string()];
    m.extend(SCHEDULERS.iter().map(|s| format!("ip_vs_{s}")));
    m
}

/// One configured service, with what `ipvsadm -S -n` must print for it.
struct Case {
    toml: String,
    rules: Vec<String>,
}

/// Service `n` of the matrix: scheduler `s`, method `m`, kind `k`, with
/// `weights` on its two reals (`None`: the real is not configured).
fn case(si: usize, mi: usize, ki: usize, weights: [Option<u32>; 2]) -> Case {
    let (sched, method, kind) = (SCHEDULERS[si], METHODS[mi], KINDS[ki]);
    let vip = format!("10.{}.{si}.{}", 10 + ki, mi + 1);
    let mark = 1000 + 10 * si as u32 + mi as u32;
    let (svc, mut toml) = match kind {
        "fwmark" => (
            format!("-f {mark}"),
            format!("[[service]]\nfwmark = {mark}\n"),
        ),
        p => (
            format!("-{} {vip}:80", &p[..1]),
            format!("[[service]]\nvip = \"{vip}\"\nport = 80\nprotocol = \"{p}\"\n"),
        ),
    };
    let _ = writeln!(toml, "scheduler = \"{sched}\"\nmethod = \"{method}\"");
    let mut head = format!("-A {svc} -s {sched}");
    // Persistence on every third scheduler, with a netmask on half of those.
    if si.is_multiple_of(3) {
        toml.push_str("persistence_timeout = 300\n");
        head.push_str(" -p 300");
        if mi == 1 {
            toml.push_str("persistence_granularity = \"255.255.255.0\"\n");
            head.push_str(" -M 255.255.255.0");
        }
    }
    let flags: &[&str] = match (sched, mi) {
        ("sh", 0) => &["sh-port"],
        ("sh", 1) => &["sh-fallback", "sh-port"],
        ("mh", 2) => &["mh-fallback"],
        _ => &[],
    };
    if !flags.is_empty() {
        let quoted: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
        let _ = writeln!(toml, "scheduler_flags = [{}]", quoted.join(", "));
        // ipvsadm names the flags in bit order: fallback (1) before port (2).
        let mut sorted = flags.to_vec();
        sorted.sort_by_key(|f| !f.ends_with("fallback"));
        let _ = write!(head, " -b {}", sorted.join(","));
    }
    let gue = method == "tun" && si.is_multiple_of(2);
    if gue {
        toml.push_str("tunnel = \"gue\"\ngue_port = 6080\n");
    }
    let mut rules = vec![head];
    for (ri, w) in weights.iter().enumerate() {
        let Some(w) = w else { continue };
        let addr = format!("10.20.{si}.{}", mi * 10 + ki * 3 + ri + 1);
        // NAT may change the port; DR and TUN keep it; fwmark reals keep theirs (0).
        let port = match (kind, method) {
            ("fwmark", _) => 0,
            (_, "nat") => 8080,
            _ => 80,
        };
        let _ = write!(
            toml,
            "[[service.real]]\naddress = \"{addr}\"\nweight = {w}\n"
        );
        if kind != "fwmark" && method == "nat" {
            toml.push_str("port = 8080\n");
        }
        if ri == 1 {
            toml.push_str("uthreshold = 100\nlthreshold = 50\n");
        }
        let sw = match method {
            "dr" => "-g",
            "nat" => "-m",
            _ => "-i",
        };
        let mut rule = format!("-a {svc} -r {addr}:{port} {sw} -w {w}");
        if method == "tun" {
            rule.push_str(if gue {
                " --tun-type gue --tun-port 6080 --tun-nocsum"
            } else {
                " --tun-type ipip"
            });
        }
        rules.push(rule);
    }
    Case { toml, rules }
}

/// The service the guest sends traffic to: VIP and reals local (on dummy0),
/// so the kernel forwards to them as Local.
const TRAFFIC_SERVICE: &str = "[[service]]\nvip = \"10.30.0.1\"\nport = 80\nprotocol = \"udp\"\nscheduler = \"rr\"\n\
[[service.real]]\naddress = \"10.30.0.2\"\n[[service.real]]\naddress = \"10.30.0.3\"\n";
const TRAFFIC_RULES: [&str; 3] = [
    "-A -u 10.30.0.1:80 -s rr",
    "-a -u 10.30.0.1:80 -r 10.30.0.2:80 -g -w 1",
    "-a -u 10.30.0.1:80 -r 10.30.0.3:80 -g -w 1",
];

/// An IPv6 service with a prefix-length persistence granularity.
const V6_SERVICE: &str = "[[service]]\nvip = \"2001:db8::1\"\nport = 443\nscheduler = \"wrr\"\n\
persistence_timeout = 10\npersistence_granularity = 64\n\
[[service.real]]\naddress = \"2001:db8::2\"\nweight = 4\n";
const V6_RULES: [&str; 2] = [
    "-A -t [2001:db8::1]:443 -s wrr -p 10 -M 64",
    "-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -g -w 4",
];

const DATAPLANE: &str = "[dataplane]\nkind = \"ipvs\"\ninterfaces = []\n\
tcp_timeout = 800\ntcp_fin_timeout = 100\nudp_timeout = 200\n";

/// XDP first, on an interface the guest does not have.
const AUTO_CONFIG: &str = "[dataplane]\nkind = \"auto\"\ninterfaces = [\"xlb-none0\"]\n\
[[service]]\nvip = \"10.50.0.1\"\nport = 80\nscheduler = \"wlc\"\n[[service.real]]\naddress = \"10.50.0.2\"\n";

/// Config A: the whole matrix. Config B changes three services: a weight,
/// a removed real, a removed service.
fn configs() -> (String, BTreeSet<String>, String, BTreeSet<String>) {
    let (mut a, mut b) = (DATAPLANE.to_string(), DATAPLANE.to_string());
    let (mut ra, mut rb) = (BTreeSet::new(), BTreeSet::new());
    for text in [&mut a, &mut b] {
        text.push_str(TRAFFIC_SERVICE);
        text.push_str(V6_SERVICE);
    }
    for rules in [&mut ra, &mut rb] {
        rules.extend(TRAFFIC_RULES.iter().chain(&V6_RULES).map(|r| r.to_string()));
    }
    for si in 0..SCHEDULERS.len() {
        for mi in 0..METHODS.len() {
            for ki in 0..KINDS.len() {
                let ca = case(si, mi, ki, [Some(1), Some(3)]);
                a.push_str(&ca.toml);
                ra.extend(ca.rules);
                let changed = match (si, mi, ki) {
                    (1, 0, 0) => Some([Some(5), Some(3)]), // wrr DR TCP: weight 1 → 5
                    (3, 1, 1) => Some([Some(1), None]),    // wlc NAT UDP: second real removed
                    (7, 2, 2) => None,                     // sh TUN fwmark: service removed
                    _ => Some([Some(1), Some(3)]),
                };
                if let Some(w) = changed {
                    let cb = case(si, mi, ki, w);
                    b.push_str(&cb.toml);
                    rb.extend(cb.rules);
                }
            }
        }
    }
    (a, ra, b, rb)
}

#[test]
fn xlb_programs_ipvs_as_ipvsadm_reads_it_and_reconciles_changes() {
    xlb_testbed::require_root().unwrap();
    let (a, rules_a, b, rules_b) = configs();
    let views = [
        ("list", "-Ln"),
        ("stats", "-Ln --stats"),
        ("exact", "-Ln --stats --exact"),
        ("rate", "-Ln --rate"),
        ("thresholds", "-Ln --thresholds"),
        ("pconn", "-Ln --persistent-conn"),
        ("tuninfo", "-Ln --tun-info"),
        ("sort", "-Ln --sort"),
        ("tcp", "-Ln -t 10.10.3.2:80"),
        ("udp", "-Ln -u 10.30.0.1:80"),
        ("fwmark", "-Ln -f 1000"),
    ];
    let mut compare = String::new();
    for (name, args) in views {
        let _ = writeln!(
            compare,
            "echo ==ipvsadm-{name}; ipvsadm {args}\necho ==xlb-{name}; xlb ipvsadm {args}"
        );
    }
    let script = format!(
        r#"{WAIT_AGENT}
ip link add dummy0 type dummy && ip link set dummy0 up
ip addr add 10.30.0.1/32 dev dummy0
ip addr add 10.30.0.2/32 dev dummy0
ip addr add 10.30.0.3/32 dev dummy0
ip addr add 10.30.0.9/32 dev dummy0
# By path: $! must be the agent's pid, not a subshell running the shadowing function.
/usr/local/bin/xlb run -c /etc/xlb/a.toml --keep-dataplane 2>/tmp/a.log &
pid=$!
wait_agent /tmp/a.log $pid || exit 1
echo ==rules-a; ipvsadm -S -n
echo ==timeout; ipvsadm -L --timeout
echo ==xlb-timeout; xlb ipvsadm -L --timeout
{compare}
# Five flows to the local service (one datagram each, from a client address
# of this host and new ports): scheduled and counted.
for i in 1 2 3 4 5; do echo x | socat -u - UDP-SENDTO:10.30.0.1:80,bind=10.30.0.9; done
# IPVS copies its per-CPU counters to what it reports every 2 s: wait for them.
i=0
while [ $i -lt 40 ] && ! ipvsadm -Ln --stats --exact -u 10.30.0.1:80 | grep -q "^UDP  10.30.0.1:80  *5 "; do
    sleep 0.25; i=$((i+1))
done
echo ==stats-a; ipvsadm -Ln --stats -u 10.30.0.1:80
echo ==ipvsadm-conns; ipvsadm -Lnc
echo ==xlb-conns; xlb ipvsadm -Lnc
kill $pid; wait $pid
/usr/local/bin/xlb run -c /etc/xlb/b.toml 2>/tmp/b.log &
pid=$!
wait_agent /tmp/b.log $pid || exit 1
echo ==rules-b; ipvsadm -S -n
echo ==stats-b; ipvsadm -Ln --stats -u 10.30.0.1:80
echo ==ipvsadm-list-b; ipvsadm -Ln
echo ==xlb-list-b; xlb ipvsadm -Ln
# status and the SIGUSR1/SIGUSR2 dumps read the IPVS plane (no maps pinned).
echo ==status-b; xlb status
echo ==status-json-b; xlb status --json
# The Prometheus endpoint (on by default) reads the same IPVS listing.
echo ==metrics-b; wget -qO- http://127.0.0.1:9477/metrics
kill -USR1 $pid; kill -USR2 $pid
i=0
while [ $i -lt 40 ] && ! {{ [ -s /run/xlb/xlb.data ] && [ -s /run/xlb/xlb.stats ]; }}; do
    sleep 0.25; i=$((i+1))
done
echo ==state-b; cat /run/xlb/xlb.data
echo ==statsdump-b; cat /run/xlb/xlb.stats
# -Z zeroes one service's counters.
xlb ipvsadm -Z -u 10.30.0.1:80 || exit 1
echo ==zeroed; ipvsadm -Ln --stats --exact -u 10.30.0.1:80
kill $pid; wait $pid
echo ==after-stop; ipvsadm -Ln
# kind = "auto": XDP cannot attach to an interface that does not exist, so IPVS forwards.
/usr/local/bin/xlb run -c /etc/xlb/c.toml 2>/tmp/c.log &
pid=$!
wait_agent /tmp/c.log $pid || exit 1
echo ==rules-c; ipvsadm -S -n
echo ==fallback; grep -c "falling back to the kernel's IPVS" /tmp/c.log
echo ==metrics-c; wget -qO- http://127.0.0.1:9477/metrics
kill $pid; wait $pid
cat /tmp/a.log /tmp/b.log /tmp/c.log >&2
# Sync daemons (the agents, which had none configured, stopped any): one with
# the kernel's defaults, one with every option.
ip link set dummy0 multicast on
ipvsadm --start-daemon master --mcast-interface lo --syncid 5 || exit 1
ipvsadm --start-daemon backup --mcast-interface dummy0 --syncid 7 --sync-maxlen 1000 \
    --mcast-group 224.0.0.99 --mcast-port 9000 --mcast-ttl 3 || exit 1
echo ==ipvsadm-daemon; ipvsadm -L --daemon
echo ==xlb-daemon; xlb ipvsadm -L --daemon
"#
    );
    let mods = modules();
    let mods: Vec<&str> = mods.iter().map(String::as_str).collect();
    let out = Guest::new(script)
        .program(common::xlb_bin())
        .program("ipvsadm")
        .program("ip")
        .program("socat")
        .data("/etc/xlb/a.toml", a)
        .data("/etc/xlb/b.toml", b)
        .data("/etc/xlb/c.toml", AUTO_CONFIG)
        .modules(&mods)
        .memory_mib(768)
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    let s = out.sections();
    let rules = |name: &str| -> BTreeSet<String> { s[name].lines().map(str::to_string).collect() };
    let diff = |want: &BTreeSet<String>, got: &BTreeSet<String>| {
        format!(
            "missing {:#?}\nunexpected {:#?}",
            want.difference(got).collect::<Vec<_>>(),
            got.difference(want).collect::<Vec<_>>()
        )
    };
    let got_a = rules("rules-a");
    assert!(
        got_a == rules_a,
        "config A in the kernel:\n{}",
        diff(&rules_a, &got_a)
    );
    assert_eq!(s["timeout"], "Timeout (tcp tcpfin udp): 800 100 200\n");
    assert_eq!(s["xlb-timeout"], s["timeout"]);
    for (name, _) in views {
        let (theirs, ours) = (&s[&format!("ipvsadm-{name}")], &s[&format!("xlb-{name}")]);
        assert!(
            theirs == ours && theirs.lines().count() > 2,
            "ipvsadm and xlb ipvsadm differ ({name})\n--- ipvsadm ---\n{theirs}--- xlb ipvsadm ---\n{ours}--- guest console ---\n{}",
            out.console
        );
    }
    // The flows were scheduled over the two local reals and counted (not
    // necessarily all five: a datagram may reuse a recent source port).
    // The Conns column: third field of the service and of each real's line.
    let conns = |text: &str| -> Vec<u64> {
        text.lines()
            .filter(|l| l.starts_with("UDP") || l.starts_with("  -> 10."))
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect()
    };
    let before = conns(&s["stats-a"]);
    assert!(
        before.len() == 3 && before[0] > 0 && before[0] == before[1] + before[2],
        "{}\n{}",
        s["stats-a"],
        out.console
    );

    // The connection listing: the same entries; the seconds left may have
    // moved by one between the two commands.
    let rows = |text: &str| -> Vec<(Vec<String>, u64)> {
        text.lines()
            .skip(2)
            .map(|l| {
                let mut w: Vec<String> = l.split_whitespace().map(str::to_string).collect();
                let (m, sec) = w
                    .remove(1)
                    .split_once(':')
                    .map(|(m, s)| (m.to_string(), s.to_string()))
                    .unwrap();
                (
                    w,
                    m.parse::<u64>().unwrap() * 60 + sec.parse::<u64>().unwrap(),
                )
            })
            .collect()
    };
    let (theirs, ours) = (rows(&s["ipvsadm-conns"]), rows(&s["xlb-conns"]));
    assert_eq!(
        s["xlb-conns"].lines().take(2).collect::<Vec<_>>(),
        s["ipvsadm-conns"].lines().take(2).collect::<Vec<_>>()
    );
    assert!(
        !theirs.is_empty() && theirs.len() == ours.len(),
        "{}\n{}",
        s["ipvsadm-conns"],
        s["xlb-conns"]
    );
    for ((tw, te), (ow, oe)) in theirs.iter().zip(&ours) {
        assert!(
            tw == ow && te.abs_diff(*oe) <= 1,
            "{}\n{}",
            s["ipvsadm-conns"],
            s["xlb-conns"]
        );
    }
    let got_b = rules("rules-b");
    assert!(
        got_b == rules_b,
        "config B in the kernel:\n{}",
        diff(&rules_b, &got_b)
    );
    // Reconciling B left the untouched service (and its counters) alone.
    assert_eq!(conns(&s["stats-b"]), before, "{}", s["stats-b"]);
    assert_eq!(s["ipvsadm-list-b"], s["xlb-list-b"]);
    ipvs_status_and_dumps(&s, &got_b, before[0]);
    // After -Z, the service and its reals count nothing.
    assert_eq!(conns(&s["zeroed"]), vec![0, 0, 0], "{}", s["zeroed"]);
    ipvs_metrics(&s["metrics-b"], &got_b, &before);
    // Stopping without --keep-dataplane removes every service.
    assert_eq!(
        s["after-stop"],
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "{}",
        out.console
    );
    assert_eq!(
        s["rules-c"], "-A -t 10.50.0.1:80 -s wlc\n-a -t 10.50.0.1:80 -r 10.50.0.2:80 -g -w 1\n",
        "{}",
        out.console
    );
    assert_eq!(s["fallback"], "1\n", "{}", out.console);
    // The metrics follow the plane that started, not `kind = "auto"`'s first choice.
    let metrics_c = &s["metrics-c"];
    assert!(metrics_c.contains("\nxlb_dataplane_up 1\n"), "{metrics_c}");
    assert!(
        metrics_c.contains(
            "\nxlb_real_weight{protocol=\"TCP\",vip=\"10.50.0.1\",port=\"80\",real=\"10.50.0.2\",real_port=\"80\"} 1\n"
        ),
        "{metrics_c}"
    );
    assert!(!metrics_c.contains("xlb_xdp_"), "{metrics_c}");
    assert!(
        s["ipvsadm-daemon"].lines().count() == 2 && s["xlb-daemon"] == s["ipvsadm-daemon"],
        "--- ipvsadm ---\n{}--- xlb ipvsadm ---\n{}",
        s["ipvsadm-daemon"],
        s["xlb-daemon"]
    );
}

/// `xlb status` (text and JSON) and the SIGUSR1/SIGUSR2 dumps of the
/// agent running config B show the kernel's IPVS: a line per service and
/// destination of `rules` (`ipvsadm -S`), and the UDP service's `udp_conns`.
fn ipvs_status_and_dumps(s: &BTreeMap<String, String>, rules: &BTreeSet<String>, udp_conns: u64) {
    let services = rules.iter().filter(|r| r.starts_with("-A ")).count();
    let dests = rules.iter().filter(|r| r.starts_with("-a ")).count();
    let status = &s["status-b"];
    assert!(
        status.starts_with("xlb data plane: the kernel's IPVS\n"),
        "{status}"
    );
    let heads = status
        .lines()
        .filter(|l| ["TCP ", "UDP ", "FWM "].iter().any(|p| l.starts_with(p)))
        .count();
    let reals = status
        .lines()
        .filter(|l| l.starts_with("  -> 10.") || l.starts_with("  -> ["))
        .count();
    assert_eq!((heads, reals), (services, dests), "{status}");
    assert!(status.contains("FWM  1000 "), "{status}");
    assert!(!status.contains("Packets:"), "{status}");

    let json: serde_json::Value = serde_json::from_str(&s["status-json-b"]).unwrap();
    assert_eq!(json["data_plane"], "ipvs");
    assert!(json["pin_path"].is_null());
    let listed = json["services"].as_array().unwrap();
    assert_eq!(listed.len(), services);
    let udp = listed
        .iter()
        .find(|v| v["protocol"] == "UDP" && v["vip"] == "10.30.0.1" && v["port"] == 80)
        .unwrap();
    assert_eq!(udp["stats"]["connections"], udp_conns);

    let state = &s["state-b"];
    assert!(
        state.contains(" data plane = kernel IPVS (generic netlink)"),
        "{state}"
    );
    assert_eq!(
        state.matches("   service id = ").count(),
        services,
        "{state}"
    );
    assert!(!state.contains("not in the data plane"), "{state}");
    let stats = &s["statsdump-b"];
    assert!(
        stats.contains(&format!(" VS = UDP 10.30.0.1:80: connections {udp_conns},")),
        "{stats}"
    );
    assert!(!stats.contains(" XDP: "), "{stats}");
}

/// The metrics of the agent running config B come from the kernel's IPVS:
/// up, a series per service and destination of `rules` (`ipvsadm -S`), none
/// twice, the UDP service's connections as `ipvsadm --stats` counted them
/// (`conns`: the service's, then its two reals'), and no XDP families.
fn ipvs_metrics(text: &str, rules: &BTreeSet<String>, conns: &[u64]) {
    assert!(text.contains("\nxlb_dataplane_up 1\n"), "{text}");
    let samples: Vec<(&str, u64)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        // Process metrics (CPU seconds, start time) are not whole numbers.
        .map(|(series, v)| (series, v.parse::<f64>().unwrap() as u64))
        .collect();
    let series: BTreeSet<&str> = samples.iter().map(|(s, _)| *s).collect();
    assert_eq!(series.len(), samples.len(), "a series twice\n{text}");
    let family = |name: &str| -> Vec<(&str, u64)> {
        samples
            .iter()
            .filter(|(s, _)| s.strip_prefix(name).is_some_and(|l| l.starts_with('{')))
            .copied()
            .collect()
    };
    let services = rules.iter().filter(|r| r.starts_with("-A ")).count();
    let dests = rules.iter().filter(|r| r.starts_with("-a ")).count();
    assert_eq!(
        (
            family("xlb_service_connections_total").len(),
            family("xlb_real_weight").len()
        ),
        (services, dests),
        "{text}"
    );
    let udp = r#"{protocol="UDP",vip="10.30.0.1",port="80""#;
    let service: Vec<u64> = family("xlb_service_connections_total")
        .iter()
        .filter(|(s, _)| s.ends_with(&format!("{udp}}}")))
        .map(|(_, v)| *v)
        .collect();
    let reals: Vec<u64> = family("xlb_real_connections_total")
        .iter()
        .filter(|(s, _)| s.contains(&format!("{udp},real=")))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(service, [conns[0]], "{text}");
    // ipvsadm lists destinations in the kernel's order, the metrics by address.
    let (mut reals, mut want) = (reals, conns[1..].to_vec());
    reals.sort_unstable();
    want.sort_unstable();
    assert_eq!(reals, want, "{text}");
    assert!(!text.contains("xlb_xdp_"), "{text}");
    assert!(!text.contains("xlb_map_"), "{text}");
}

const DIFFERENTIAL: [&str; 7] = ["rr", "wrr", "dh", "sh", "lc", "wlc", "mh"];

/// The VIPs scheduler `n` of [`DIFFERENTIAL`] serves, one service each; flow
/// c goes to `vips[c % len]`. dh hashes the VIP, so it gets eight.
fn vips(n: usize) -> Vec<[u8; 4]> {
    let count = if DIFFERENTIAL[n] == "dh" { 8 } else { 1 };
    (1..=count).map(|k| [10, 40, n as u8, k]).collect()
}

fn dotted(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

/// The differential test: per scheduler, the kernel's choices for a
/// sequence of new UDP flows, each from its own client address (read back
/// from the kernel's connection table), against xlb's scheduler model.
#[test]
fn kernel_ipvs_schedules_as_xlbs_model() {
    xlb_testbed::require_root().unwrap();
    let weights = [4u32, 3, 2, 1];
    let clients = 24;
    let mut script = String::from("ip link add dummy0 type dummy && ip link set dummy0 up\n");
    let mut addrs: Vec<String> = (1..=weights.len())
        .map(|r| format!("10.41.0.{r}"))
        .collect();
    addrs.extend((1..=clients).map(|c| format!("10.42.0.{c}")));
    for n in 0..DIFFERENTIAL.len() {
        addrs.extend(vips(n).into_iter().map(dotted));
    }
    for a in addrs {
        let _ = writeln!(script, "ip addr add {a}/32 dev dummy0");
    }
    for (n, sched) in DIFFERENTIAL.iter().enumerate() {
        let vips: Vec<String> = vips(n).into_iter().map(dotted).collect();
        for vip in &vips {
            let _ = writeln!(script, "ipvsadm -A -u {vip}:9 -s {sched} || exit 1");
            for (i, w) in weights.iter().enumerate() {
                let _ = writeln!(
                    script,
                    "ipvsadm -a -u {vip}:9 -r 10.41.0.{}:9 -g -w {w} || exit 1",
                    i + 1
                );
            }
        }
        // The kernel lists a service's reals newest first; --nosort shows that order.
        let _ = writeln!(
            script,
            "echo ==order-{sched}; ipvsadm -Ln --nosort -u {}:9",
            vips[0]
        );
        for c in 1..=clients {
            let _ = writeln!(
                script,
                "echo x | socat -u - UDP-SENDTO:{}:9,bind=10.42.0.{c}",
                vips[(c - 1) % vips.len()]
            );
        }
    }
    script.push_str(&mh_drain_script(&weights, clients));
    script.push_str(&open_close_script(&weights));
    script.push_str("echo ==conns; ipvsadm -Lnc\n");
    let mut modules = vec!["ip_vs".to_string(), "dummy".to_string()];
    modules.extend(DIFFERENTIAL.iter().map(|s| format!("ip_vs_{s}")));
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    let out = Guest::new(script)
        .program("ipvsadm")
        .program("ip")
        .program("socat")
        .modules(&modules)
        // About 70 s on a loaded 2-core host (TCG).
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let s = out.sections();
    let mut failures = Vec::new();
    for (n, sched) in DIFFERENTIAL.iter().enumerate() {
        let vips = vips(n);
        let virtuals: Vec<String> = vips.iter().map(|v| format!("{}:9", dotted(*v))).collect();
        // Which configured real (by its last octet) is at each list position.
        let order: Vec<usize> = s[&format!("order-{sched}")]
            .lines()
            .filter_map(|l| l.strip_prefix("  -> 10.41.0."))
            .map(|l| l.split(':').next().unwrap().parse::<usize>().unwrap() - 1)
            .collect();
        assert_eq!(order.len(), weights.len(), "{out}");
        let listed: Vec<u32> = order.iter().map(|&i| weights[i]).collect();
        let listed_addrs: Vec<[u8; 4]> = order.iter().map(|&i| [10, 41, 0, i as u8 + 1]).collect();
        // Each flow's real, by its position in the kernel's list.
        let octet = |field: &str, prefix: &str| -> usize {
            field
                .strip_prefix(prefix)
                .and_then(|x| x.split(':').next())
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("unexpected connection entry field {field}"))
        };
        let mut got = vec![None; clients];
        for l in s["conns"].lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 6 && f[0] == "UDP" && virtuals.iter().any(|v| v == f[4]) {
                let client = octet(f[3], "10.42.0.");
                let real = octet(f[5], "10.41.0.");
                got[client - 1] = order.iter().position(|&i| i == real - 1);
            }
        }
        let want = predict(sched, &listed, &listed_addrs, &vips, clients);
        if got != want {
            failures.push(format!(
                "{sched}: kernel {got:?}\n{:width$}model  {want:?}",
                "",
                width = sched.len() + 2
            ));
        }
    }
    failures.extend(check_mh_drain(&s, &weights, clients));
    for (n, sched) in ["lc", "wlc"].into_iter().enumerate() {
        let vip = format!("10.43.{n}.1:9");
        let order: Vec<usize> = s[&format!("order-tcp-{sched}")]
            .lines()
            .filter_map(|l| l.strip_prefix("  -> 10.41.0."))
            .map(|l| l.split(':').next().unwrap().parse::<usize>().unwrap() - 1)
            .collect();
        let listed: Vec<u32> = order.iter().map(|&i| weights[i]).collect();
        let mut got: Vec<Option<usize>> = vec![None; OPEN_CLOSE_CLIENTS];
        for l in s["conns"].lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 6 && f[0] == "TCP" && f[4] == vip {
                let client: usize = f[3][8..].split(':').next().unwrap().parse().unwrap();
                let real: usize = f[5][8..].split(':').next().unwrap().parse().unwrap();
                got[client - 1] = order.iter().position(|&i| i == real - 1);
            }
        }
        let want = predict_open_close(sched, &listed);
        if got != want {
            failures.push(format!(
                "{sched} open/close: kernel {got:?}\n{:width$}model  {want:?}",
                "",
                width = sched.len() + 13
            ));
        }
    }
    assert!(failures.is_empty(), "{}\n{out}", failures.join("\n"));
}

const MH_DRAIN_VIP: &str = "10.44.0.1:9";

/// An mh service with mh-fallback and mh-port whose first real is drained
/// to weight 0 after all are added: IPVS keeps the real's slots (its last
/// weight) and the fallback walk rehashes its clients elsewhere. Client c
/// sends from port 20000 + c.
fn mh_drain_script(weights: &[u32], clients: usize) -> String {
    let vip = MH_DRAIN_VIP;
    let mut script = format!(
        "ip addr add 10.44.0.1/32 dev dummy0\n\
         ipvsadm -A -u {vip} -s mh -b mh-fallback,mh-port || exit 1\n"
    );
    for (i, w) in weights.iter().enumerate() {
        let _ = writeln!(
            script,
            "ipvsadm -a -u {vip} -r 10.41.0.{}:9 -g -w {w} || exit 1",
            i + 1
        );
    }
    let _ = writeln!(
        script,
        "ipvsadm -e -u {vip} -r 10.41.0.1:9 -g -w 0 || exit 1\n\
         echo ==order-mh-drain; ipvsadm -Ln --nosort -u {vip}"
    );
    for c in 1..=clients {
        let _ = writeln!(
            script,
            "echo x | socat -u - UDP-SENDTO:{vip},bind=10.42.0.{c}:{}",
            20000 + c
        );
    }
    script
}

/// The kernel's choices for [`mh_drain_script`] against xlb's: the table
/// built with the drained real's last weight, the lookup and fallback walk
/// of the model. A failure's description, if any.
fn check_mh_drain(
    s: &std::collections::BTreeMap<String, String>,
    weights: &[u32],
    clients: usize,
) -> Option<String> {
    let order: Vec<usize> = s["order-mh-drain"]
        .lines()
        .filter_map(|l| l.strip_prefix("  -> 10.41.0."))
        .map(|l| l.split(':').next().unwrap().parse::<usize>().unwrap() - 1)
        .collect();
    assert_eq!(order.len(), weights.len(), "{}", s["order-mh-drain"]);
    let size = lb_common::defaults::MAGLEV_TABLE_SIZE;
    let backends: Vec<maglev::Backend> = order
        .iter()
        .map(|&i| maglev::Backend {
            fold: u32::from_be_bytes([10, 41, 0, i as u8 + 1]),
            port: 9,
            weight: weights[i],
        })
        .collect();
    let table: Vec<Option<usize>> = maglev::build(&backends, size)
        .unwrap()
        .into_iter()
        .map(|i| Some(i as usize))
        .collect();
    let drained = order.iter().position(|&i| i == 0).unwrap();
    let mut reals: Vec<Real> = order
        .iter()
        .map(|&i| Real::new(if i == 0 { 0 } else { weights[i] }))
        .collect();
    let mut rehashed = 0;
    let want: Vec<Option<usize>> = (1..=clients)
        .map(|c| {
            let fold = u32::from_be_bytes([10, 42, 0, c as u8]);
            let port = 20000 + c as u16;
            let first = lb_common::sched_hash::mh(fold, port, 0) % size;
            rehashed += usize::from(table[first as usize] == Some(drained));
            model::hashed(&table, &mut reals, true, first as usize, |k| {
                (lb_common::sched_hash::mh(fold, port, (k + first) % size) % size) as usize
            })
        })
        .collect();
    assert!(rehashed > 0, "no client hashed to the drained real");
    let mut got = vec![None; clients];
    for l in s["conns"].lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 6 && f[0] == "UDP" && f[4] == MH_DRAIN_VIP {
            let field = |x: &str, prefix: &str| -> usize {
                x.strip_prefix(prefix)
                    .and_then(|x| x.split(':').next())
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected connection entry field {x}"))
            };
            let real = field(f[5], "10.41.0.") - 1;
            got[field(f[3], "10.42.0.") - 1] = order.iter().position(|&i| i == real);
        }
    }
    (got != want).then(|| format!("mh drained: kernel {got:?}\n{:13}model  {want:?}", ""))
}

/// The scripted pattern: `Open(c)` connects client c (10.42.0.c) and holds
/// the connection, `Close(c)` closes it (IPVS then counts it inactive).
#[derive(Clone, Copy)]
enum Step {
    Open(usize),
    Close(usize),
}

const OPEN_CLOSE: [Step; 17] = {
    use Step::*;
    [
        Open(1),
        Open(2),
        Open(3),
        Open(4),
        Open(5),
        Open(6),
        Close(2),
        Close(3),
        Open(7),
        Open(8),
        Close(1),
        Open(9),
        Open(10),
        Close(5),
        Open(11),
        Close(7),
        Open(12),
    ]
};
const OPEN_CLOSE_CLIENTS: usize = 12;

/// TCP services on 10.43.{0,1}.1:9 (lc, wlc) with local reals and a local
/// listener; each step waits until IPVS's counts show it (bounded). socat
/// runs by path so that `$!` is its pid, not a subshell's.
fn open_close_script(weights: &[u32]) -> String {
    let mut script = String::from(
        "socat TCP-LISTEN:9,fork,reuseaddr EXEC:'sleep 600' >/dev/null 2>&1 &\n\
         counts() { ipvsadm -Ln -t $1 | awk '$1 == \"->\" && $2 != \"RemoteAddress:Port\" {a += $5; i += $6} END {print a, i}'; }\n\
         settle() { n=0; while [ \"$(counts $1)\" != \"$2\" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; \
         [ \"$(counts $1)\" = \"$2\" ] || { echo \"$1 never reached $2: $(counts $1)\" >&2; exit 1; }; }\n",
    );
    for (n, sched) in ["lc", "wlc"].into_iter().enumerate() {
        let vip = format!("10.43.{n}.1:9");
        let _ = writeln!(
            script,
            "ip addr add 10.43.{n}.1/32 dev dummy0\nipvsadm -A -t {vip} -s {sched} || exit 1"
        );
        for (i, w) in weights.iter().enumerate() {
            let _ = writeln!(
                script,
                "ipvsadm -a -t {vip} -r 10.41.0.{}:9 -g -w {w} || exit 1",
                i + 1
            );
        }
        let _ = writeln!(
            script,
            "echo ==order-tcp-{sched}; ipvsadm -Ln --nosort -t {vip}"
        );
        let (mut active, mut inactive) = (0, 0);
        for step in OPEN_CLOSE {
            match step {
                Step::Open(c) => {
                    active += 1;
                    let _ = writeln!(
                        script,
                        "/usr/local/bin/socat TCP:{vip},bind=10.42.0.{c} EXEC:'sleep 600' >/dev/null 2>&1 &\nc{n}_{c}=$!"
                    );
                }
                Step::Close(c) => {
                    active -= 1;
                    inactive += 1;
                    let _ = writeln!(script, "kill $c{n}_{c}");
                }
            }
            let _ = writeln!(script, "settle {vip} \"{active} {inactive}\"");
        }
    }
    script
}

/// The model's real (a list position) for each client of [`OPEN_CLOSE`].
fn predict_open_close(sched: &str, weights: &[u32]) -> Vec<Option<usize>> {
    let rule = if sched == "lc" { Rule::Lc } else { Rule::Wlc };
    let mut reals: Vec<Real> = weights.iter().map(|&w| Real::new(w)).collect();
    let mut chosen = vec![None; OPEN_CLOSE_CLIENTS];
    for step in OPEN_CLOSE {
        match step {
            Step::Open(c) => {
                let pick = model::least(&mut reals, rule);
                if let Some(i) = pick {
                    reals[i].active += 1;
                }
                chosen[c - 1] = pick;
            }
            Step::Close(c) => {
                let i = chosen[c - 1].expect("closed a connection that was opened");
                reals[i].active -= 1;
                reals[i].inactive += 1;
            }
        }
    }
    chosen
}

/// The model's real (a list position) for each of `clients` new flows:
/// flow c from 10.42.0.c to `vips[c % len]`; the reals, port 9, are at
/// `addrs` in list order.
fn predict(
    sched: &str,
    weights: &[u32],
    addrs: &[[u8; 4]],
    vips: &[[u8; 4]],
    clients: usize,
) -> Vec<Option<usize>> {
    let mut reals: Vec<Real> = weights.iter().map(|&w| Real::new(w)).collect();
    let fold = u32::from_be_bytes;
    let cycle = match sched {
        "rr" => tables::rr_sequence(weights),
        _ => tables::wrr_sequence(weights),
    };
    // IPVS's wrr starts a new service at current weight 0, where every real
    // qualifies: one pass in list order comes before the weighted cycle
    // (ip_vs_wrr_dest_changed). xlb's XDP wrr starts with the cycle.
    let warm_up: Vec<usize> = if sched == "wrr" {
        (0..weights.len()).collect()
    } else {
        Vec::new()
    };
    let mut seq = model::Sequence {
        seq: cycle,
        cursor: 0,
    };
    // mh: IPVS's table of the guest kernel's size (Debian's 4093).
    let backends: Vec<maglev::Backend> = addrs
        .iter()
        .zip(weights)
        .map(|(&a, &weight)| maglev::Backend {
            fold: fold(a),
            port: 9,
            weight,
        })
        .collect();
    let mh_size = lb_common::defaults::MAGLEV_TABLE_SIZE;
    let mh = maglev::build(&backends, mh_size).unwrap();
    (1..=clients)
        .map(|c| {
            let client = [10, 42, 0, c as u8];
            let vip = vips[(c - 1) % vips.len()];
            let pick = match sched {
                "wrr" if c <= warm_up.len() => Some(warm_up[c - 1]),
                "rr" | "wrr" => seq.next(&mut reals),
                "dh" => tables::dh_buckets(weights.len())
                    [lb_common::sched_hash::dh_bucket(fold(vip)) as usize],
                "sh" => tables::sh_buckets(weights)
                    [lb_common::sched_hash::sh_bucket(fold(client), 0, 0) as usize],
                "lc" => model::least(&mut reals, Rule::Lc),
                "wlc" => model::least(&mut reals, Rule::Wlc),
                "mh" => Some(
                    mh[(lb_common::sched_hash::mh(fold(client), 0, 0) % mh_size) as usize] as usize,
                ),
                other => panic!("no model for {other}"),
            };
            // A UDP flow counts as an inactive connection of its real.
            if let Some(i) = pick {
                reals[i].inactive += 1;
            }
            pick
        })
        .collect()
}
