//! Schedulers with real TCP connections: the namespace lab (client,
//! director running `xlb run`, real HTTP servers), each connection a new
//! flow through the VIP, the answering real's name counted.

mod common;

use common::xlb_bin;
use std::{collections::BTreeMap, path::PathBuf, time::Duration};
use xlb_testbed::{
    agent::Agent,
    http::HttpConn,
    lab::{DrLab, LabMethod, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A lab with `weights`, the agent running `scheduler` with `extra` service
/// lines; returns the lab, the agent and its config directory.
fn start(weights: &[u32], scheduler: &str, extra: &str) -> (DrLab, Agent, PathBuf) {
    start_with(weights, scheduler, |lab| {
        lab.agent_config_with(scheduler, "dr", "generic", extra)
    })
}

/// As [`start`], the agent's config written by `config`.
fn start_with(
    weights: &[u32],
    scheduler: &str,
    config: impl FnOnce(&DrLab) -> String,
) -> (DrLab, Agent, PathBuf) {
    start_on(LabMethod::Dr, weights, scheduler, config)
}

/// As [`start_with`], on a lab built for `method`.
fn start_on(
    method: LabMethod,
    weights: &[u32],
    scheduler: &str,
    config: impl FnOnce(&DrLab) -> String,
) -> (DrLab, Agent, PathBuf) {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: weights.to_vec(),
        peer_xdp: common::peer_pass(),
        method,
        ..LabOptions::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("xlb-sched-{}-{scheduler}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xlb.toml");
    std::fs::write(&path, config(&lab)).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
    (lab, agent, dir)
}

fn counts(seen: &BTreeMap<String, usize>, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| seen.get(*n).copied().unwrap_or(0))
        .collect()
}

fn finish(agent: Agent, dir: PathBuf) {
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn wrr_splits_90_connections_40_30_20() {
    let (lab, agent, dir) = start(&[4, 3, 2], "wrr", "");
    let seen = lab.spread(90, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [40, 30, 20]);
    finish(agent, dir);
}

#[test]
fn rr_splits_evenly_whatever_the_weights() {
    let (lab, agent, dir) = start(&[1, 2, 3], "rr", "");
    let seen = lab.spread(30, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [10, 10, 10]);
    finish(agent, dir);
}

#[test]
fn sh_keeps_a_client_on_one_real_and_sh_port_spreads_it() {
    let (lab, agent, dir) = start(&[1, 1, 1], "sh", "");
    let seen = lab.spread(20, TIMEOUT).unwrap();
    assert_eq!(seen.len(), 1, "one client, one real: {seen:?}");
    finish(agent, dir);
    drop(lab);

    let (lab, agent, dir) = start(&[1, 1, 1], "sh", "scheduler_flags = [\"sh-port\"]\n");
    let seen = lab.spread(30, TIMEOUT).unwrap();
    assert!(seen.len() > 1, "sh-port hashes the port too: {seen:?}");
    finish(agent, dir);
}

#[test]
fn persistence_holds_a_client_across_connections() {
    let (lab, agent, dir) = start(&[1, 1, 1], "rr", "persistence_timeout = 300\n");
    let seen = lab.spread(12, TIMEOUT).unwrap();
    assert_eq!(
        seen.len(),
        1,
        "rr would rotate; persistence must not: {seen:?}"
    );
    let out = lab
        .director
        .command(xlb_bin())
        .args(["status", "--persistent-conn", "--pin-path"])
        .arg(&lab.pin_path)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{status}");
    assert!(status.contains(" rr persistent 300"), "{status}");
    // The client's template shows on its real: PersistConn 1.
    let real = lab
        .reals
        .iter()
        .find(|r| seen.contains_key(&r.name))
        .unwrap();
    let line = status
        .lines()
        .find(|l| l.contains(&format!("-> {}:80", real.addr)))
        .unwrap_or_else(|| panic!("{} missing:\n{status}", real.addr));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[3], "1", "PersistConn: {line}");
    finish(agent, dir);
}

/// The status line of real `addr`, split: `->`, address, Forward,
/// Weight, ActiveConn, InActConn, ...
fn real_columns(lab: &DrLab, addr: std::net::IpAddr) -> Vec<String> {
    let status = lab.status(&xlb_bin()).unwrap();
    status
        .lines()
        .find(|l| l.contains(&format!("-> {addr}:")))
        .unwrap_or_else(|| panic!("{addr} missing:\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// lc with the data plane's own connection counts: two long-lived
/// connections occupy real1 and real2 (ties go to the first real), so every
/// new connection goes to real3, whose finished connections count only as
/// inactive (overhead 1 each against 256 for an active one). Status shows the
/// counts ipvsadm would.
#[test]
fn lc_sends_new_connections_to_the_least_loaded_real() {
    let (lab, agent, dir) = start(&[1, 1, 1], "lc", "");
    let mut held: Vec<(HttpConn, String)> = (0..2)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let names: Vec<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["real1", "real2"]);

    let seen = lab.spread(12, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [0, 0, 12]);

    // ActiveConn / InActConn: one established each on real1 and real2; real3
    // holds the 12 closed ones (FIN seen: inactive until they expire).
    let cols = |i: usize| real_columns(&lab, lab.reals[i].addr);
    assert_eq!(cols(0)[4..6], ["1", "0"], "{:?}", cols(0));
    assert_eq!(cols(1)[4..6], ["1", "0"], "{:?}", cols(1));
    assert_eq!(cols(2)[4..6], ["0", "12"], "{:?}", cols(2));

    // The held connections still work and stayed on their reals.
    for (c, name) in &mut held {
        assert_eq!(&c.ask().unwrap(), name);
    }
    drop(held);
    finish(agent, dir);
}

/// Opens `n` connections one after the other and keeps them open (each is
/// active on its real until dropped): the connections and the real each
/// one reached.
fn hold(lab: &DrLab, n: usize) -> (Vec<HttpConn>, Vec<String>) {
    (0..n)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .unzip()
}

fn names(reals: &[usize]) -> Vec<String> {
    reals.iter().map(|i| format!("real{i}")).collect()
}

/// wlc, weights 1, 2, 3, every connection held (overhead 256 each): the
/// least overhead per weight, ties to the first real. lc would go 1 2 3 1 2 3.
#[test]
fn wlc_follows_active_connections_per_weight() {
    let (lab, agent, dir) = start(&[1, 2, 3], "wlc", "");
    // Per weight before each: (0,0,0) (256,0,0) (256,0,0) (256,128,85)
    // (256,128,170) (256,256,170); the seventh sees 256 everywhere.
    let (held, seen) = hold(&lab, 7);
    assert_eq!(seen, names(&[1, 2, 3, 3, 2, 3, 1]));
    drop(held);
    finish(agent, dir);
}

/// sed: (active + 1) / weight, no idle preference: the heaviest real first.
#[test]
fn sed_counts_the_new_connection_against_each_weight() {
    let (lab, agent, dir) = start(&[1, 2, 3], "sed", "");
    // (1,1/2,1/3) (1,1/2,2/3) (1,1,2/3) (1,1,1) (2,1,1) (2,3/2,1)
    let (held, seen) = hold(&lab, 6);
    assert_eq!(seen, names(&[3, 2, 3, 1, 2, 3]));
    drop(held);
    finish(agent, dir);
}

/// nq: any idle real first (in list order), then sed's rule; sed itself
/// would start with real3.
#[test]
fn nq_sends_to_an_idle_real_first() {
    let (lab, agent, dir) = start(&[1, 2, 3], "nq", "");
    // Three idle reals in turn; then sed over (2, 2/2, 2/3), (2, 1, 1).
    let (held, seen) = hold(&lab, 5);
    assert_eq!(seen, names(&[1, 2, 3, 3, 2]));
    drop(held);
    finish(agent, dir);
}

/// fo: every new connection to the highest-weight real, however loaded.
#[test]
fn fo_sends_everything_to_the_highest_weight() {
    let (lab, agent, dir) = start(&[1, 3, 2], "fo", "");
    let (held, seen) = hold(&lab, 4);
    assert_eq!(seen, names(&[2, 2, 2, 2]));
    let more = lab.spread(6, TIMEOUT).unwrap();
    assert_eq!(counts(&more, &["real1", "real2", "real3"]), [0, 6, 0]);
    drop(held);
    finish(agent, dir);
}

/// ovf: the highest-weight real until its active connections exceed its
/// weight, then the next weight down.
#[test]
fn ovf_overflows_to_the_next_weight_when_active_exceeds_weight() {
    let (lab, agent, dir) = start(&[1, 3, 2], "ovf", "");
    // real2 takes active 0..=3, real3 0..=2, real1 0..=1.
    let (held, seen) = hold(&lab, 9);
    assert_eq!(seen, names(&[2, 2, 2, 2, 3, 3, 3, 1, 1]));
    drop(held);
    finish(agent, dir);
}

/// lblc and lblcr on one VIP (one destination address): closed connections
/// all stay on the destination's real (wlc alone would rotate); held ones
/// move on when the real is overloaded (active > weight while a real is
/// under half load). Then real1's connections close: lblcr takes the least
/// loaded of the destination's set (real1, two inactive), lblc stays on its
/// one real (real3, not overloaded).
fn locality(scheduler: &str, last: usize) {
    let (lab, agent, dir) = start(&[1, 1, 1], scheduler, "");
    let seen = lab.spread(6, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [6, 0, 0]);
    let (mut held, seen) = hold(&lab, 5);
    assert_eq!(seen, names(&[1, 1, 2, 2, 3]));
    held.drain(..2);
    let (more, seen) = hold(&lab, 1);
    assert_eq!(
        seen,
        names(&[last]),
        "{scheduler} after real1's connections closed"
    );
    drop((held, more));
    finish(agent, dir);
}

#[test]
fn lblc_keeps_the_destination_on_its_real_until_overloaded() {
    locality("lblc", 3);
}

#[test]
fn lblcr_takes_the_least_loaded_of_the_destination_set() {
    locality("lblcr", 1);
}

/// uthreshold 2 / lthreshold 1 on real1 (fo's choice, weight 3): two
/// connections stop it (total active + inactive reaches 2), closing them
/// is not enough (inactive still counts), and only when they expire (total
/// 0, below lthreshold) does it take new connections again.
#[test]
fn thresholds_stop_and_resume_new_connections() {
    let (lab, agent, dir) = start_with(&[3, 2, 1], "fo", |lab| {
        lab.agent_config_with("fo", "dr", "generic", "")
            .replacen("[dataplane]\n", "[dataplane]\ntcp_fin_timeout = 1\n", 1)
            .replacen(
                "weight = 3\n",
                "weight = 3\nuthreshold = 2\nlthreshold = 1\n",
                1,
            )
    });
    let (held, seen) = hold(&lab, 3);
    assert_eq!(seen, names(&[1, 1, 2]));
    drop(held);
    let seen = lab.spread(2, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [0, 2, 0]);
    // Bounded wait for the closed flows to expire (1 s FIN timeout, 2 s sweep).
    let mut total = Vec::new();
    for _ in 0..100 {
        total = real_columns(&lab, lab.reals[0].addr)[4..6].to_vec();
        if total == ["0", "0"] {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(total, ["0", "0"], "real1's flows never expired");
    let seen = lab.spread(1, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1", "real2", "real3"]), [1, 0, 0]);
    finish(agent, dir);
}

#[test]
fn dh_sends_every_connection_to_the_vip_to_one_real() {
    // One VIP: dh's destination hash picks the same real for every client and port.
    let (lab, agent, dir) = start(&[1, 1, 1], "dh", "");
    let seen = lab.spread(20, TIMEOUT).unwrap();
    assert_eq!(seen.len(), 1, "one destination, one real: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 20);
    finish(agent, dir);
}

#[test]
fn weight_zero_takes_no_new_connections_under_every_scheduler() {
    // Not dh: as in IPVS, a destination hashed to a weight-0 real gets no
    // real at all (dh never falls back), so those connections fail.
    for scheduler in ["rr", "wrr", "wlc", "mh", "sh", "nq"] {
        let (lab, agent, dir) = start(&[0, 1, 1], scheduler, "");
        let seen = lab.spread(12, TIMEOUT).unwrap();
        assert_eq!(seen.get("real1"), None, "{scheduler}: {seen:?}");
        assert_eq!(seen.values().sum::<usize>(), 12, "{scheduler}: {seen:?}");
        finish(agent, dir);
        drop(lab);
    }
}

/// `n` connections in a row from one client port, each asking once with
/// `Connection: close` (the real closes first, as behind a proxy): the
/// name of the real that answered each.
fn reuse_one_port(lab: &DrLab, port: u16, n: usize) -> Vec<String> {
    let source = std::net::SocketAddr::new(lab.client_addr, port);
    (0..n)
        .map(|i| {
            // The previous connection's socket may still be closing (LAST_ACK).
            let mut conn = None;
            for _ in 0..100 {
                match HttpConn::open_bound(&lab.client, source, lab.vip_socket(), TIMEOUT) {
                    Ok(c) => {
                        conn = Some(c);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let mut conn = conn.unwrap_or_else(|| panic!("connection {i} from port {port}"));
            let name = conn.request(true).unwrap();
            conn.close_after_server().unwrap();
            name
        })
        .collect()
}

/// The Conns column (connections scheduled) of each of `lab`'s reals.
fn scheduled(lab: &DrLab) -> Vec<u64> {
    lab.reals
        .iter()
        .map(|r| real_columns(lab, r.addr)[6].parse().unwrap())
        .collect()
}

/// A proxy's short connections from one client port (curl --local-port):
/// each is a new connection, scheduled and counted, as IPVS's
/// conn_reuse_mode decides. NAT sees both directions, so a connection the
/// real closes ends in TIME_WAIT, which the default mode 1 reuses. DR sees
/// only the client, whose close leaves the flow in FIN_WAIT: mode 1 keeps
/// such a flow (every connection on the first one's real, one counted),
/// mode 3 (bit 2, meant for DR) reuses it. With wlc the closed connection
/// still counts when the next one is scheduled, as in IPVS, so two reals
/// alternate.
#[test]
fn connections_from_one_client_port_are_each_scheduled_as_conn_reuse_mode_decides() {
    let alternate: Vec<String> = (0..12).map(|i| format!("real{}", 1 + i % 2)).collect();
    let (lab, agent, dir) = start_on(LabMethod::Nat, &[1, 1, 1], "wlc", |lab| {
        lab.agent_config_with("wlc", "nat", "generic", "")
    });
    assert_eq!(reuse_one_port(&lab, 41233, 12), alternate);
    assert_eq!(scheduled(&lab), [6, 6, 0]);
    finish(agent, dir);
    drop(lab);

    let (lab, agent, dir) = start_with(&[1, 1, 1], "wlc", |lab| {
        lab.agent_config_with("wlc", "dr", "generic", "").replacen(
            "[dataplane]\n",
            "[dataplane]\nconn_reuse_mode = 3\n",
            1,
        )
    });
    assert_eq!(reuse_one_port(&lab, 41234, 12), alternate);
    assert_eq!(scheduled(&lab), [6, 6, 0]);
    let status = lab.status(&xlb_bin()).unwrap();
    assert!(status.contains("reused 11"), "{status}");
    finish(agent, dir);
    drop(lab);

    let (lab, agent, dir) = start(&[1, 1, 1], "wlc", "");
    let seen = reuse_one_port(&lab, 41235, 12);
    assert_eq!(seen, vec!["real1".to_string(); 12]);
    assert_eq!(scheduled(&lab), [1, 0, 0]);
    finish(agent, dir);
}

/// 40 bare ACKs from spoofed sources become 40 pickups: forwarded, but no
/// connections, so a real with uthreshold 30 still takes the legitimate
/// client (with IPVS's sloppy_tcp they would be 40 established connections).
#[test]
fn spoofed_bare_acks_do_not_make_a_real_refuse_a_client() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
    use xlb_testbed::{
        frames::{ETH_IPV4, eth, tcp4},
        inject::FrameSender,
    };
    let (lab, agent, dir) = start_with(&[1], "wlc", |lab| {
        lab.agent_config_with("wlc", "dr", "generic", "").replacen(
            "weight = 1\n",
            "weight = 1\nuthreshold = 30\n",
            1,
        )
    });
    let IpAddr::V4(vip) = lab.vip else {
        panic!("an IPv4 lab")
    };
    let mac = lab
        .director
        .run("cat", &["/sys/class/net/eth0/address"])
        .unwrap();
    let director_mac: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let director_mac: [u8; 6] = director_mac.try_into().unwrap();
    let link = lab.director_peer_if().to_string();
    lab.switch
        .enter(move || {
            let sender = FrameSender::open(&link).unwrap();
            for i in 0..40u32 {
                let src = SocketAddrV4::new(Ipv4Addr::from(0xc612_0000 + i), 40000);
                let to = SocketAddrV4::new(vip, 80);
                let frame = eth(
                    director_mac,
                    [0x02, 0x5f, 0x10, 0x0d, 0, 2],
                    ETH_IPV4,
                    &tcp4(src, to, 0x10, 1000 + i),
                );
                sender.send(&frame).unwrap();
            }
        })
        .unwrap();
    // Bounded wait for the director to have seen them all (forwarded or dropped).
    let handled = |status: &str| -> u64 {
        let packets = status
            .lines()
            .find(|l| l.starts_with("Packets:"))
            .unwrap_or("");
        let word = |w: &str| -> u64 {
            packets
                .split_whitespace()
                .skip_while(|x| *x != w)
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        word("tx") + word("drop")
    };
    let mut status = String::new();
    for _ in 0..100 {
        status = lab.status(&xlb_bin()).unwrap();
        if handled(&status) >= 40 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(handled(&status) >= 40, "{status}");
    let seen = lab.spread(3, TIMEOUT).unwrap();
    assert_eq!(counts(&seen, &["real1"]), [3]);
    // Forwarded all the same, as pickups that count for nothing: the real
    // counts the client's 3 connections only.
    assert!(status.contains("pickups 40"), "{status}");
    let columns = real_columns(&lab, lab.reals[0].addr);
    let total: u64 = columns[4..6]
        .iter()
        .map(|c| c.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 3, "{columns:?}");
    finish(agent, dir);
}
