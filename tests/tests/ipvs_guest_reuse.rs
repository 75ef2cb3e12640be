//! Port reuse against kernel IPVS: one scripted pattern of TCP connections
//! opened, closed (with a RST or a FIN) and opened again from the same
//! client port, run through the kernel's IPVS in a qemu guest and through
//! xlb's director with BPF_PROG_TEST_RUN on the host, for
//! `conn_reuse_mode` 1, 0 and 3. The guest's reals are local, so IPVS sees
//! their replies and follows each connection with its INPUT and OUTPUT
//! tables, as for NAT: xlb's side is a NAT service fed the same packets
//! both ways. (DR's INPUT-ONLY rules, where a client's close ends in
//! FIN_WAIT, are checked by the fixtures.) The guest waits after each step
//! until IPVS's per-real counts equal what xlb's director counted
//! (bounded, as the scheduler differential test does); the real each
//! (re)opened connection went to is compared afterwards.

mod common;

use aya::maps::{Array, HashMap, MapData};
use common::*;
use lb_common::{
    FAMILY_V4, FlowKey, FlowState, REAL_F_PRESENT, REAL_F_REACHABLE, RealConns, RealInfo,
    SERVICE_F_ACTIVE, SETTINGS_F_NAT, ServiceInfo, ServiceKey, Settings, conn, map_names, method,
    sched, sched_layout,
};
use std::{fmt::Write, time::Duration};
use xlb_testbed::{netns::Netns, qemu::Guest, xdp};

/// The reals' weights in the order they are added; IPVS lists the newest
/// first, so its list (and xlb's, as the agent writes it) is the reverse.
const WEIGHTS: [u32; 4] = [4, 3, 2, 1];

#[derive(Clone, Copy, Debug)]
enum Step {
    Open(usize),
    /// The client aborts (SO_LINGER 0): RST, CLOSE.
    CloseRst(usize),
    /// The client closes, then the server: TIME_WAIT.
    CloseFin(usize),
    /// A new connection from the port of a closed one.
    Reopen(usize),
}

const PATTERN: [Step; 15] = {
    use Step::*;
    [
        Open(1),
        Open(2),
        Open(3),
        Open(4),
        CloseRst(1),
        Reopen(1),
        CloseFin(2),
        Reopen(2),
        CloseRst(3),
        Open(5),
        Reopen(3),
        CloseFin(4),
        CloseRst(2),
        Reopen(4),
        Open(6),
    ]
};
const MODES: [u8; 3] = [1, 0, 3];

fn client_port(mode: u8, c: usize) -> u16 {
    31000 + 100 * u16::from(mode) + c as u16
}

/// Whether client `c`'s connection made at step `at` ends with a RST.
fn aborts(at: usize, c: usize) -> bool {
    PATTERN[at + 1..].iter().find_map(|s| match *s {
        Step::CloseRst(x) if x == c => Some(true),
        Step::CloseFin(x) if x == c => Some(false),
        _ => None,
    }) == Some(true)
}

/// What xlb's director did with the pattern: the list position each open
/// and reopen went to, and every real's counts (list order) after each step.
struct Run {
    picks: Vec<(usize, usize)>,
    counts: Vec<String>,
}

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];

/// The address of the real at IPVS list position `p`.
fn real_of(p: usize) -> [u8; 4] {
    [10, 41, 0, (WEIGHTS.len() - p) as u8]
}

/// The pattern through xlb's director: a wlc NAT service over the reals in
/// IPVS's list order (ids 1..=4), `conn_reuse_mode` `mode`. Nothing is
/// forwarded (the namespace has no routes, so the rewritten packets go to
/// the stack), but every packet moves the flow's state first.
fn xlb_run(mode: u8) -> Run {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("reuse").unwrap();
    ns.enter(|| {
        let mut d = xdp::Director::load(xlb::EBPF_OBJECT).unwrap();
        let vip = [10, 46, mode, 1];
        let key = ServiceKey {
            addr: [u32::from_ne_bytes(vip), 0, 0, 0],
            port: 9u16.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
        };
        let info = ServiceInfo {
            id: 0,
            flags: SERVICE_F_ACTIVE,
            sched: sched::WLC,
            method: method::NAT,
            ..ServiceInfo::default()
        };
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(d.ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        m.insert(key, info, 0).unwrap();
        let listed: Vec<u32> = WEIGHTS.iter().rev().copied().collect();
        for (p, w) in listed.iter().enumerate() {
            let real = RealInfo {
                addr: [u32::from_ne_bytes(real_of(p)), 0, 0, 0],
                port: 9u16.to_be(),
                family: FAMILY_V4,
                method: method::NAT,
                weight: *w,
                service_id: 0,
                flags: REAL_F_PRESENT | REAL_F_REACHABLE,
                ..RealInfo::default()
            };
            let mut r: Array<_, RealInfo> =
                Array::try_from(d.ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
            r.set(p as u32 + 1, real, 0).unwrap();
            let mut l: Array<_, u32> =
                Array::try_from(d.ebpf.map_mut(map_names::SERVICE_REALS).unwrap()).unwrap();
            l.set(
                sched_layout::reals_base(0, false) + p as u32,
                p as u32 + 1,
                0,
            )
            .unwrap();
        }
        let mut s: Array<_, Settings> =
            Array::try_from(d.ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
        let settings = Settings {
            flags: SETTINGS_F_NAT | conn::reuse_flags(mode),
            ..Settings::ipvs_defaults()
        };
        s.set(0, settings, 0).unwrap();

        let flow = |c: usize| FlowKey {
            src: [u32::from_ne_bytes([10, 47, mode, c as u8]), 0, 0, 0],
            dst: key.addr,
            sport: client_port(mode, c).to_be(),
            dport: key.port,
            proto: IP_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let real_now = |d: &xdp::Director, c: usize| -> usize {
            let ct: HashMap<&MapData, FlowKey, FlowState> =
                HashMap::try_from(d.ebpf.map(map_names::CONNTRACK).unwrap()).unwrap();
            ct.get(&flow(c), 0).unwrap().real_id as usize - 1
        };
        // A segment from the client (`to_real` false) or from its real.
        let send = |d: &xdp::Director, c: usize, to_real: bool, flags: u8| {
            let client = [10, 47, mode, c as u8];
            let frame = if to_real {
                let mut t = tcp(client_port(mode, c), 9);
                t[13] = flags;
                ipv4(client, vip, IP_TCP, &[], 0, &t)
            } else {
                let mut t = tcp(9, client_port(mode, c));
                t[13] = flags;
                ipv4(real_of(real_now(d, c)), client, IP_TCP, &[], 0, &t)
            };
            let frame = eth(DIRECTOR_MAC, CLIENT_MAC, ETH_IPV4, &frame);
            let (action, _) = d.run(&frame, xdp::LO).unwrap();
            assert_eq!(
                action,
                xdp::XDP_PASS,
                "mode {mode} client {c} flags {flags:#x}"
            );
        };
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const FIN_ACK: u8 = 0x11;
        const RST_ACK: u8 = 0x14;
        let mut run = Run {
            picks: Vec::new(),
            counts: Vec::new(),
        };
        for step in PATTERN {
            match step {
                Step::Open(c) | Step::Reopen(c) => {
                    send(&d, c, true, SYN);
                    run.picks.push((c, real_now(&d, c)));
                    send(&d, c, false, SYN | ACK);
                    send(&d, c, true, ACK);
                }
                Step::CloseRst(c) => send(&d, c, true, RST_ACK),
                Step::CloseFin(c) => {
                    send(&d, c, true, FIN_ACK);
                    send(&d, c, false, FIN_ACK);
                    send(&d, c, true, ACK);
                }
            }
            let conns: Array<&MapData, RealConns> =
                Array::try_from(d.ebpf.map(map_names::REAL_CONNS).unwrap()).unwrap();
            let counts: Vec<String> = (1..=WEIGHTS.len() as u32)
                .map(|id| {
                    let c = conns.get(&id, 0).unwrap().live;
                    format!("{}/{}", c.active, c.inactive)
                })
                .collect();
            run.counts.push(counts.join(" "));
        }
        run
    })
    .unwrap()
}

/// The guest's script for `mode`: the service, the pattern, after each
/// step a wait until IPVS's counts are xlb's (`want`), after each open
/// the connection table.
fn mode_script(mode: u8, want: &[String]) -> String {
    let vip = format!("10.46.{mode}.1:9");
    let mut s = format!(
        "echo {mode} > /proc/sys/net/ipv4/vs/conn_reuse_mode\n\
         ip addr add 10.46.{mode}.1/32 dev dummy0\n\
         ipvsadm -A -t {vip} -s wlc || exit 1\n"
    );
    for (i, w) in WEIGHTS.iter().enumerate() {
        let _ = writeln!(
            s,
            "ipvsadm -a -t {vip} -r 10.41.0.{}:9 -g -w {w} || exit 1",
            i + 1
        );
    }
    let _ = writeln!(s, "echo ==order-{mode}; ipvsadm -Ln --nosort -t {vip}");
    for c in 1..=6 {
        let _ = writeln!(s, "ip addr add 10.47.{mode}.{c}/32 dev dummy0");
    }
    for (at, step) in PATTERN.iter().enumerate() {
        match *step {
            Step::Open(c) | Step::Reopen(c) => {
                if matches!(step, Step::Reopen(_)) {
                    // A client that closed first waits out TIME_WAIT's
                    // timestamp rule (tcp_tw_reuse: one second).
                    s.push_str("sleep 1.1\n");
                }
                let linger = if aborts(at, c) { ",linger=0" } else { "" };
                let _ = writeln!(
                    s,
                    "/usr/local/bin/socat TCP:{vip},bind=10.47.{mode}.{c}:{},reuseaddr{linger} EXEC:'sleep 600' >/dev/null 2>&1 &\nc{mode}_{c}=$!",
                    client_port(mode, c)
                );
            }
            Step::CloseRst(c) | Step::CloseFin(c) => {
                let _ = writeln!(s, "kill $c{mode}_{c}");
            }
        }
        let _ = writeln!(s, "settle {vip} \"{}\"", want[at]);
        if let Step::Open(c) | Step::Reopen(c) = *step {
            let _ = writeln!(
                s,
                "echo ==pick-{mode}-{at}; ipvsadm -Lnc | grep ' 10.47.{mode}.{c}:{} ' | grep -v CLOSE",
                client_port(mode, c)
            );
        }
    }
    s
}

#[test]
fn kernel_ipvs_reuses_ports_as_xlbs_director_does() {
    xlb_testbed::require_root().unwrap();
    let runs: Vec<(u8, Run)> = MODES.iter().map(|&m| (m, xlb_run(m))).collect();
    let mut script = String::from(
        "ip link add dummy0 type dummy && ip link set dummy0 up\n\
         for r in 1 2 3 4; do ip addr add 10.41.0.$r/32 dev dummy0; done\n\
         echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse\n\
         socat TCP-LISTEN:9,fork,reuseaddr EXEC:cat >/dev/null 2>&1 &\n\
         counts() { ipvsadm -Ln --nosort -t $1 | awk '$1 == \"->\" && $2 != \"RemoteAddress:Port\" {printf \"%s%s/%s\", s, $5, $6; s=\" \"}'; }\n\
         settle() { n=0; while [ \"$(counts $1)\" != \"$2\" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; \
         [ \"$(counts $1)\" = \"$2\" ] || { echo \"$1 never reached $2: $(counts $1)\" >&2; exit 1; }; }\n",
    );
    for (mode, run) in &runs {
        script.push_str(&mode_script(*mode, &run.counts));
    }
    let out = Guest::new(script)
        .program("ipvsadm")
        .program("ip")
        .program("socat")
        .modules(&["ip_vs", "ip_vs_wlc", "dummy"])
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let s = out.sections();
    let mut failures = Vec::new();
    for (mode, run) in &runs {
        // IPVS's list: newest first, the order xlb's director was given.
        let order: Vec<String> = s[&format!("order-{mode}")]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("-> 10.41.0."))
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(order, ["4", "3", "2", "1"], "{out}");
        let mut pick = run.picks.iter();
        for (at, step) in PATTERN.iter().enumerate() {
            if !matches!(step, Step::Open(_) | Step::Reopen(_)) {
                continue;
            }
            let (c, want) = *pick.next().unwrap();
            let section = &s[&format!("pick-{mode}-{at}")];
            let got: Vec<usize> = section
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter_map(|f| f.strip_prefix("10.41.0."))
                .filter_map(|f| f.split(':').next()?.parse::<usize>().ok())
                .map(|octet| 4 - octet)
                .collect();
            if got != [want] {
                failures.push(format!(
                    "mode {mode}, step {at} ({step:?}, client {c}): IPVS {got:?}, xlb [{want}]\n{section}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}\n{out}", failures.join("\n"));
}
