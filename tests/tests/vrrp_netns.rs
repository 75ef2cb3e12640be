//! VRRP between real `xlb run` agents, each in its own namespace on one
//! bridge, with an observer that captures and crafts adverts. States are
//! read from each agent's status file; every wait is a bounded poll for a
//! condition, never a timing assertion.

mod common;

use common::{
    vrrp::{Director, ELECTION, FAST, capture_during, instance},
    xlb_bin,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};
use xlb::vrrp::{counters, packet};
use xlb_testbed::{
    netns::Netns,
    vrrp::{VrrpLab, temp_dir, wait_until},
};

/// The VIP of [`instance`].
const VIP: &str = "10.9.0.100";

fn lab(n: usize) -> VrrpLab {
    VrrpLab::build(n).unwrap()
}

fn masters(ds: &[&Director]) -> usize {
    ds.iter().filter(|d| d.state() == "MASTER").count()
}

#[test]
fn election_by_priority_then_hard_failover_and_preemption() {
    let lab = lab(2);
    let dir = temp_dir("elect").unwrap();
    let mut d1 = Director::start(&lab.nodes[0], &dir, &instance(150, ""));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, ""));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    wait_until("d2 hears d1", ELECTION, || {
        d2.status().is_some_and(|s| s.adverts_received >= 2)
    })
    .unwrap();
    assert_eq!(d2.state(), "BACKUP");

    d1.kill();
    d2.wait_state("MASTER");

    // The restarted agent adopts the XDP program the killed one left, then preempts.
    d1.restart(&lab.nodes[0]);
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
}

#[test]
fn sigterm_sends_priority_zero_and_backup_takes_over() {
    let lab = lab(2);
    let dir = temp_dir("term").unwrap();
    let mut d1 = Director::start(&lab.nodes[0], &dir, &instance(150, FAST));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    let seen = capture_during(&lab.observer, Duration::from_secs(3), || {
        d1.stop();
        d2.wait_state("MASTER");
    });
    let d1_addr: IpAddr = VrrpLab::addr(0).parse().unwrap();
    assert!(
        seen.contains(&(d1_addr, 0)),
        "the stopping Master sent priority 0: {seen:?}"
    );
    assert!(
        !counters::status_path(&d1.pin).exists(),
        "a clean stop removes the status file"
    );
}

#[test]
fn nopreempt_keeps_the_master_and_preempt_takes_over() {
    let lab = lab(3);
    let dir = temp_dir("preempt").unwrap();
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d2.wait_state("MASTER");
    let quiet = Director::start(
        &lab.nodes[0],
        &dir,
        &instance(150, &format!("{FAST}preempt = false\n")),
    );
    quiet.wait_state("BACKUP");
    wait_until("many adverts at the nopreempt node", ELECTION, || {
        quiet.status().is_some_and(|s| s.adverts_received >= 20)
    })
    .unwrap();
    assert_eq!(quiet.state(), "BACKUP", "nopreempt: a weaker Master stays");
    assert_eq!(d2.state(), "MASTER");

    let eager = Director::start(&lab.nodes[2], &dir, &instance(200, FAST));
    eager.wait_state("MASTER");
    d2.wait_state("BACKUP");
    assert_eq!(quiet.state(), "BACKUP");
}

#[test]
fn preempt_delay_holds_off_then_preempts() {
    let lab = lab(2);
    let dir = temp_dir("delay").unwrap();
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d2.wait_state("MASTER");
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &instance(150, &format!("{FAST}preempt_delay = 4\n")),
    );
    // Without the delay it would preempt after 3 adverts' silence-equivalent.
    wait_until("adverts during the delay", ELECTION, || {
        d1.status().is_some_and(|s| s.adverts_received >= 8)
    })
    .unwrap();
    assert_eq!(d1.state(), "BACKUP", "no preemption during preempt_delay");
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
}

/// keepalived starts preempt_delay at each chance to preempt, not only at
/// start-up: a Master that lost mastership to a failing script waits the
/// delay again once the script recovers before it takes mastership back.
#[test]
fn preempt_delay_starts_again_when_a_tracked_script_recovers() {
    let lab = lab(2);
    let dir = temp_dir("delay2").unwrap();
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let script = format!(
        "[[vrrp_script]]\nname = \"chk\"\nscript = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = 0.2\nweight = -60\n\n",
        flag.display()
    );
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &format!(
            "{script}{}",
            instance(
                150,
                &format!("{FAST}preempt_delay = 4\ntrack_script = [{{ name = \"chk\" }}]\n")
            )
        ),
    );
    d1.wait_state("BACKUP");
    d1.wait_state("MASTER");
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d2.wait_state("BACKUP");
    std::fs::remove_file(&flag).unwrap();
    d2.wait_state("MASTER");
    d1.wait_state("BACKUP");
    // Long after start-up (more than the delay: 25 adverts, 5 s), the
    // script recovers: a new chance to preempt, so a new delay. Eight of
    // d2's adverts (1.6 s) later d1 still waits.
    let heard = d1.status().unwrap().adverts_received;
    wait_until("25 adverts from d2", ELECTION, || {
        d1.status().unwrap().adverts_received >= heard + 25
    })
    .unwrap();
    std::fs::write(&flag, "").unwrap();
    wait_until("d1 back at 150", ELECTION, || {
        d1.status().is_some_and(|s| s.priority == 150)
    })
    .unwrap();
    let heard = d1.status().unwrap().adverts_received;
    wait_until("eight more adverts", ELECTION, || {
        d1.status().unwrap().adverts_received >= heard + 8
    })
    .unwrap();
    assert_eq!(d1.state(), "BACKUP", "preempted before its delay");
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
}

#[test]
fn failing_track_script_moves_mastership() {
    let lab = lab(2);
    let dir = temp_dir("script").unwrap();
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let script = format!(
        "[[vrrp_script]]\nname = \"chk\"\nscript = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = 0.2\nweight = -60\n\n",
        flag.display()
    );
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &format!(
            "{script}{}",
            instance(
                150,
                &format!("{FAST}track_script = [{{ name = \"chk\" }}]\n")
            )
        ),
    );
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    std::fs::remove_file(&flag).unwrap();
    d2.wait_state("MASTER");
    d1.wait_state("BACKUP");
    assert_eq!(d1.status().unwrap().priority, 90);
    std::fs::write(&flag, "").unwrap();
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
}

#[test]
fn track_interface_down_means_fault() {
    let lab = lab(2);
    let dir = temp_dir("link").unwrap();
    lab.nodes[0]
        .run(
            "ip",
            &[
                "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
            ],
        )
        .unwrap();
    for dev in ["trk0", "trk1"] {
        lab.nodes[0].run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &instance(
            150,
            &format!("{FAST}track_interface = [{{ name = \"trk0\" }}]\n"),
        ),
    );
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d1.wait_state("MASTER");
    // The peer going down takes the carrier away: trk0 is up but not running.
    lab.nodes[0]
        .run("ip", &["link", "set", "trk1", "down"])
        .unwrap();
    d1.wait_state("FAULT");
    d2.wait_state("MASTER");
    lab.nodes[0]
        .run("ip", &["link", "set", "trk1", "up"])
        .unwrap();
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
}

#[test]
fn unicast_peers_elect_and_fail_over() {
    let lab = lab(2);
    let dir = temp_dir("unicast").unwrap();
    let uni = |me: usize, peer: usize| {
        format!(
            "{FAST}unicast_src_ip = \"{}\"\nunicast_peer = [\"{}\"]\ncheck_unicast_src = true\n",
            VrrpLab::addr(me),
            VrrpLab::addr(peer)
        )
    };
    let mut d1 = Director::start(&lab.nodes[0], &dir, &instance(150, &uni(0, 1)));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, &uni(1, 0)));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    // Multicast adverts from the observer are not from a listed peer.
    let seen = capture_during(&lab.observer, Duration::from_millis(600), || {});
    assert!(
        seen.is_empty(),
        "unicast adverts never reach the observer: {seen:?}"
    );
    d1.kill();
    d2.wait_state("MASTER");
}

#[test]
fn v3_at_100ms_fails_over() {
    let lab = lab(2);
    let dir = temp_dir("v3").unwrap();
    let fast = "version = 3\nadvert_int = 0.1\n";
    let mut d1 = Director::start(&lab.nodes[0], &dir, &instance(150, fast));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, fast));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    d1.kill();
    d2.wait_state("MASTER");
}

#[test]
fn ipv6_instance_elects_and_fails_over() {
    let lab = lab(2);
    let dir = temp_dir("v6").unwrap();
    let v6 = |p: u8| instance(p, FAST).replace("10.9.0.100/24", "fd09::100/64");
    let mut d1 = Director::start(&lab.nodes[0], &dir, &v6(150));
    let d2 = Director::start(&lab.nodes[1], &dir, &v6(100));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    wait_until("d2 hears d1 over IPv6", ELECTION, || {
        d2.status().is_some_and(|s| s.adverts_received >= 3)
    })
    .unwrap();
    d1.kill();
    d2.wait_state("MASTER");
}

#[test]
fn partition_then_heal_leaves_exactly_one_master() {
    let lab = lab(2);
    let dir = temp_dir("split").unwrap();
    let d1 = Director::start(&lab.nodes[0], &dir, &instance(150, FAST));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    lab.set_port(0, false).unwrap();
    d2.wait_state("MASTER");
    assert_eq!(masters(&[&d1, &d2]), 2, "split brain while partitioned");
    lab.set_port(0, true).unwrap();
    d2.wait_state("BACKUP");
    d1.wait_state("MASTER");
    // Stable: a few more adverts later there is still one Master.
    let now = d2.status().unwrap().adverts_received;
    wait_until("more adverts", ELECTION, || {
        d2.status().unwrap().adverts_received >= now + 5
    })
    .unwrap();
    assert_eq!(masters(&[&d1, &d2]), 1);
    assert_eq!(
        d1.status().unwrap().became_master,
        1,
        "d1 never left Master"
    );
}

/// The MAC of `dev` in `ns`.
fn mac(ns: &Netns, dev: &str) -> String {
    let out = ns.run("ip", &["-j", "link", "show", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// The MAC the observer's neighbour entry for the VIP names.
fn vip_neighbour(obs: &Netns) -> String {
    let out = obs.run("ip", &["-j", "neigh", "show", VIP]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v[0]["lladdr"].as_str().unwrap_or_default().to_string()
}

/// Waits until the observer hears an advert from `src` (bounded by `limit`).
fn next_advert_from(obs: &Netns, src: &str, limit: Duration) {
    let src: IpAddr = src.parse().unwrap();
    let sock = obs
        .enter(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 18), &Ipv4Addr::new(10, 9, 0, 2))
                .unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .unwrap();
    let end = std::time::Instant::now() + limit;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            // SAFETY: recv initialised the first n bytes.
            let b: Vec<u8> = buf[..n]
                .iter()
                .map(|x| unsafe { x.assume_init() })
                .collect();
            if packet::split_ipv4(&b).is_ok_and(|(rx, _)| rx.src == src) {
                return;
            }
        }
    }
    panic!("no advert from {src} within {limit:?}");
}

/// A partition heals: the winner (d1, 150) and the loser (d2, 100) are both
/// Master. Whichever hears the other first, the client's neighbour entry
/// for the VIP must end up naming the winner (keepalived #166): the winner
/// announces when it hears the loser, and a loser that hears the winner
/// first says so with one last advert (higher_prio_send_advert).
fn heal(winner_int: &str, loser_int: &str, loser_hears_first: bool) {
    let lab = lab(2);
    let dir = temp_dir("heal").unwrap();
    // No second GARP burst: only what the heal provokes may move the client.
    let v3 =
        |int: &str| format!("version = 3\nadvert_int = {int}\ngarp = {{ master_delay = 0 }}\n");
    let d1 = Director::start(&lab.nodes[0], &dir, &instance(150, &v3(winner_int)));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, &v3(loser_int)));
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    let (m1, m2) = (mac(&lab.nodes[0], "eth0"), mac(&lab.nodes[1], "eth0"));
    // The client talks to the VIP: its neighbour entry names d1.
    lab.observer
        .enter(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"hello", (VIP, 9)).unwrap();
        })
        .unwrap();
    wait_until("the client resolved the VIP", ELECTION, || {
        vip_neighbour(&lab.observer) == m1
    })
    .unwrap();
    lab.set_port(0, false).unwrap();
    d2.wait_state("MASTER");
    wait_until("the client follows d2's announcements", ELECTION, || {
        vip_neighbour(&lab.observer) == m2
    })
    .unwrap();
    if loser_hears_first {
        // Just after the loser's advert its next one is a long interval
        // away, while the winner's comes within its short one.
        next_advert_from(&lab.observer, &VrrpLab::addr(1), ELECTION);
    }
    lab.set_port(0, true).unwrap();
    d2.wait_state("BACKUP");
    // Well within the client's neighbour timeouts (a stale entry would stay).
    wait_until(
        "the client's neighbour entry names the winner",
        Duration::from_secs(5),
        || vip_neighbour(&lab.observer) == m1,
    )
    .unwrap_or_else(|e| panic!("{e}: {} (d1 {m1}, d2 {m2})", vip_neighbour(&lab.observer)));
    assert_eq!(
        d1.status().unwrap().became_master,
        1,
        "d1 never left Master"
    );
}

#[test]
fn healed_partition_reannounces_when_the_winner_hears_the_loser_first() {
    heal("3", "0.1", false);
}

#[test]
fn healed_partition_reannounces_when_the_loser_hears_the_winner_first() {
    heal("0.1", "3", true);
}

#[test]
fn crafted_bad_adverts_are_counted_and_ignored() {
    let lab = lab(1);
    let dir = temp_dir("bad").unwrap();
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &instance(150, "auth_pass = \"secret\"\n"),
    );
    d1.wait_state("MASTER");
    let src: IpAddr = "10.9.0.2".parse().unwrap();
    let group: IpAddr = "224.0.0.18".parse().unwrap();
    // Each would make d1 yield if accepted (priority 254).
    let good = packet::Advert {
        version: 2,
        vrid: 51,
        priority: 254,
        interval_cs: 100,
        addrs: vec!["10.9.0.100".parse().unwrap()],
        auth: Some(packet::auth_data("secret")),
    };
    let enc = |a: &packet::Advert| packet::encode(a, src, group);
    let wrong_pass = enc(&packet::Advert {
        auth: Some(packet::auth_data("guess")),
        ..good.clone()
    });
    let no_auth = enc(&packet::Advert {
        auth: None,
        ..good.clone()
    });
    let v3 = enc(&packet::Advert {
        version: 3,
        auth: None,
        ..good.clone()
    });
    let slow = enc(&packet::Advert {
        interval_cs: 300,
        ..good.clone()
    });
    let mut bad_sum = enc(&good);
    bad_sum[6] ^= 0xff;
    let short = enc(&good)[..7].to_vec();
    let cases: Vec<(Vec<u8>, u32, &str)> = vec![
        (wrong_pass, 255, "auth_pass"),
        (no_auth, 255, "auth_type"),
        (v3, 255, "version"),
        (slow, 255, "interval"),
        (bad_sum, 255, "checksum"),
        (short, 255, "length"),
        (enc(&good), 1, "ttl"),
    ];
    lab.observer
        .enter(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.set_multicast_if_v4(&Ipv4Addr::new(10, 9, 0, 2)).unwrap();
            let to = SockAddr::from(SocketAddr::new(group, 0));
            for (msg, ttl, _) in &cases {
                s.set_multicast_ttl_v4(*ttl).unwrap();
                for _ in 0..3 {
                    s.send_to(msg, &to).unwrap();
                }
            }
        })
        .unwrap();
    for (_, _, reason) in &cases {
        wait_until(&format!("a `{reason}` discard"), ELECTION, || {
            d1.status()
                .is_some_and(|s| s.discards.get(*reason).copied().unwrap_or(0) >= 3)
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", d1.status()));
    }
    let s = d1.status().unwrap();
    assert_eq!(s.state, "MASTER", "no bad advert made the Master yield");
    assert_eq!(s.transitions, 2, "Initialize → Backup → Master only");
    assert_eq!(s.adverts_received, 0);
    // Each reason is a warning in the log, once (the other two only
    // counted until the 10 s window ends): RFC 3768/9568 SHOULD log, and a
    // password or interval mismatch splits the brain.
    let log = d1.log();
    for (_, _, reason) in &cases {
        let lines = log
            .iter()
            .filter(|l| l.contains("WARN") && l.contains(&format!("advert discarded ({reason})")))
            .count();
        assert_eq!(lines, 1, "`{reason}` logged once: {log:#?}");
    }
    // The agent is alive and still answers.
    let out = lab.nodes[0]
        .run(
            xlb_bin().to_str().unwrap(),
            &["status", "--pin-path", d1.pin.to_str().unwrap()],
        )
        .unwrap();
    assert!(out.contains("VI_1") && out.contains("auth_pass=3"), "{out}");
}

#[test]
fn service_active_flag_follows_mastership() {
    let lab = lab(2);
    let dir = temp_dir("active").unwrap();
    let svc = "[[service]]\nvip = \"10.9.0.100\"\nport = 80\nmethod = \"dr\"\n[[service.real]]\naddress = \"10.9.0.2\"\n\n";
    let mut d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &format!("{svc}{}", instance(150, FAST)),
    );
    let d2 = Director::start(
        &lab.nodes[1],
        &dir,
        &format!("{svc}{}", instance(100, FAST)),
    );
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
    wait_until("d1 active, d2 inactive", ELECTION, || {
        d1.services_active() == [true] && d2.services_active() == [false]
    })
    .unwrap();
    d1.kill();
    d2.wait_state("MASTER");
    wait_until("d2 active", ELECTION, || d2.services_active() == [true]).unwrap();
}

#[test]
fn sync_group_moves_together_and_notifies() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let lab = lab(2);
    let dir = temp_dir("group").unwrap();
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let fifo = dir.join("vrrp.fifo");
    let log = dir.join("group.log");
    let two = |prio: u8, track: &str| {
        let vi2 = instance(prio, &format!("{FAST}{track}"))
            .replace("VI_1", "VI_2")
            .replace("= 51", "= 52")
            .replace("10.9.0.100", "10.9.0.101");
        format!("{}{vi2}", instance(prio, FAST))
    };
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &format!(
            "[global]\nvrrp_notify_fifo = {{ path = \"{}\" }}\n\n\
             [[vrrp_script]]\nname = \"chk\"\nscript = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = 0.2\n\n\
             [[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_2\"]\n\
             notify = [\"/bin/sh\", \"-c\", \"echo \\\"$*\\\" >> {}\", \"sh\"]\n\n{}",
            fifo.display(),
            flag.display(),
            log.display(),
            two(150, "track_script = [{ name = \"chk\" }]\n")
        ),
    );
    let d2 = Director::start(
        &lab.nodes[1],
        &dir,
        &format!(
            "[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_2\"]\n\n{}",
            two(100, "")
        ),
    );
    let state = |d: &Director, i: &str| d.instance(i).map(|s| s.state).unwrap_or_default();
    let all = |d: &Director, s: &str| state(d, "VI_1") == s && state(d, "VI_2") == s;
    wait_until("d1 Master of both", ELECTION, || all(&d1, "MASTER")).unwrap();
    wait_until("d2 Backup of both", ELECTION, || all(&d2, "BACKUP")).unwrap();

    // Only VI_2 tracks the script (weight 0: failure = Fault); VI_1 follows.
    std::fs::remove_file(&flag).unwrap();
    wait_until("d1 Fault of both", ELECTION, || all(&d1, "FAULT")).unwrap();
    wait_until("d2 Master of both", ELECTION, || all(&d2, "MASTER")).unwrap();

    wait_until("group notify ran", ELECTION, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("GROUP G FAULT 0"))
    })
    .unwrap();
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(l.starts_with("GROUP G BACKUP 0\nGROUP G MASTER 0\n"), "{l}");

    // Everything written so far; the agent holds the FIFO open, so the read ends at WouldBlock.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(bytes).unwrap();
    for line in [
        "INSTANCE \"VI_1\" MASTER 150",
        "INSTANCE \"VI_2\" MASTER 150",
        "INSTANCE \"VI_1\" FAULT 150",
        "INSTANCE \"VI_2\" FAULT 150",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {text:?}");
    }

    std::fs::write(&flag, "").unwrap();
    wait_until("d1 Master of both again", ELECTION, || all(&d1, "MASTER")).unwrap();
    wait_until("d2 Backup of both again", ELECTION, || all(&d2, "BACKUP")).unwrap();
}

#[test]
fn own_interface_losing_carrier_means_fault() {
    let lab = lab(2);
    let dir = temp_dir("carrier").unwrap();
    let d1 = Director::start(&lab.nodes[0], &dir, &instance(150, FAST));
    let d2 = Director::start(&lab.nodes[1], &dir, &instance(100, FAST));
    d1.wait_state("MASTER");
    lab.set_carrier(0, false).unwrap();
    d1.wait_state("FAULT");
    d2.wait_state("MASTER");
    lab.set_carrier(0, true).unwrap();
    d1.wait_state("MASTER");
    d2.wait_state("BACKUP");
}

#[test]
fn dont_release_vrrp_leaves_addresses_and_routes_and_sends_no_priority_zero() {
    let lab = lab(1);
    let ns = &lab.nodes[0];
    let dir = temp_dir("norelease").unwrap();
    let body = instance(
        150,
        &format!("{FAST}virtual_routes = [{{ to = \"10.77.0.0/16\", via = \"10.9.0.2\" }}]\n"),
    );
    let mut d = Director::start_with(ns, &dir, &body, &["--dont-release-vrrp"]);
    d.wait_state("MASTER");
    let route = || {
        ns.run("ip", &["-o", "route", "show", "10.77.0.0/16"])
            .unwrap()
    };
    let addrs = || {
        ns.run("ip", &["-o", "-4", "addr", "show", "dev", "eth0"])
            .unwrap()
    };
    wait_until("the VIP and the route", ELECTION, || {
        addrs().contains("inet 10.9.0.100/24") && route().contains("via 10.9.0.2")
    })
    .unwrap();
    let sent = d.status().unwrap().adverts_sent;
    let seen = capture_during(&lab.observer, Duration::from_secs(3), || {
        wait_until("three more adverts", ELECTION, || {
            d.status().is_some_and(|s| s.adverts_sent >= sent + 3)
        })
        .unwrap();
        d.stop();
    });
    assert!(
        !seen.iter().any(|(_, p)| *p == 0),
        "no priority 0 with --dont-release-vrrp: {seen:?}"
    );
    assert!(
        seen.iter().any(|(_, p)| *p == 150),
        "adverts were captured: {seen:?}"
    );
    let left = addrs();
    assert!(left.contains("inet 10.9.0.100/24"), "the VIP stays: {left}");
    assert!(route().contains("via 10.9.0.2"), "the virtual route stays");
}

/// The scheduling of the agent's thread called `name`: (nice, rt_priority,
/// policy) from /proc (fields 19, 40 and 41 of its stat).
fn thread_sched(pid: u32, name: &str) -> Option<(i64, i64, i64)> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised command name, which may hold spaces.
        let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse().ok());
        return Some((field(19)?, field(40)?, field(41)?));
    }
    None
}

/// keepalived's vrrp_priority and vrrp_rt_priority apply to the VRRP
/// thread (SCHED_RR, policy 2), and only to it.
#[test]
fn vrrp_thread_runs_at_the_configured_priority() {
    let lab = lab(1);
    let dir = temp_dir("rt").unwrap();
    let d1 = Director::start(
        &lab.nodes[0],
        &dir,
        &format!(
            "[global]\nvrrp_rt_priority = 20\nvrrp_priority = -5\n\n{}",
            instance(150, FAST)
        ),
    );
    d1.wait_state("MASTER");
    let (nice, rt, policy) = thread_sched(d1.pid(), "xlb-vrrp").expect("an xlb-vrrp thread");
    assert_eq!((rt, policy), (20, 2), "SCHED_RR at priority 20");
    assert_eq!(nice, -5, "vrrp_priority's nice value, set too");
    let other = thread_sched(d1.pid(), "xlb-agent").expect("an xlb-agent thread");
    assert_eq!(other, (0, 0, 0), "the rest of the agent is left as it was");
    assert!(
        d1.log()
            .iter()
            .any(|l| l.contains("VRRP thread runs SCHED_RR")),
        "logged"
    );
}
