//! Many checks in one agent: 1000 TCP checks against a loopback listener
//! (each check its own 127.x.y.z address) and one HTTP check against a real
//! that accepts and never answers. Every TCP-checked real must come up
//! (they start down: `alpha`) within a generous bound while the hung one
//! holds its attempts to their timeout, and the hung real must go down.

mod common;

use common::xlb_bin;
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use xlb_testbed::{agent::Agent, netns::Netns};

/// Services of TCP-checked reals, and reals in each (at most 256 per service).
const SERVICES: u32 = 8;
const REALS_PER_SERVICE: u32 = 125;
/// How long all the verdicts may take: generous, not a measurement.
const BOUND: Duration = Duration::from_secs(120);

/// The TCP-checked real `n` (distinct addresses; none reachable, so the
/// data plane lists them as unreachable, which the checks do not care about).
fn real_addr(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, (n / 250) as u8, (n % 250 + 1) as u8)
}

/// Where real `n`'s check connects: one listener answers all of 127/8.
fn check_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8)
}

const HUNG_REAL: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);

/// Accepts on `listener` until stopped; `hold` keeps every connection open
/// without a word (a hung server), else each is closed at once.
fn acceptor(listener: TcpListener, hold: bool, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) if hold => held.push(s),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

/// Addresses of the reals `xlb status` lists (in the pool).
fn pool(ns: &Netns, pin: &std::path::Path) -> BTreeSet<IpAddr> {
    let out = ns
        .command(xlb_bin())
        .args(["status", "--pin-path"])
        .arg(pin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("-> "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .map(|a: std::net::SocketAddr| a.ip())
        .collect()
}

#[test]
fn a_thousand_tcp_checks_are_judged_while_one_real_hangs() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("scale").unwrap();
    ns.run("ip", &["link", "set", "lo", "up"]).unwrap();
    // Something to attach the director to; nothing is forwarded.
    ns.run(
        "ip",
        &["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
    )
    .unwrap();
    for dev in ["d0", "d1"] {
        ns.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/xlb-scale-{}", std::process::id()));
    let dir = std::env::temp_dir().join(format!("xlb-check-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let bind = |port: u16| {
        ns.enter(|| TcpListener::bind(("0.0.0.0", port)))
            .unwrap()
            .unwrap()
    };
    let threads = [
        acceptor(bind(9000), false, stop.clone()),
        acceptor(bind(9001), true, stop.clone()),
    ];

    let mut text = format!(
        "[dataplane]\ninterfaces = [\"d0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\nmax_reals = 2048\n",
        pin.display()
    );
    for s in 0..SERVICES {
        text.push_str(&format!(
            "\n[[service]]\nvip = \"10.250.0.{}\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 2\nalpha = true\n",
            s + 1
        ));
        for r in 0..REALS_PER_SERVICE {
            let n = s * REALS_PER_SERVICE + r;
            text.push_str(&format!(
                "\n[[service.real]]\naddress = \"{}\"\n[[service.real.check]]\ntype = \"tcp\"\nconnect_ip = \"{}\"\nconnect_port = 9000\nconnect_timeout = 2\n",
                real_addr(n),
                check_ip(n)
            ));
        }
    }
    text.push_str(&format!(
        "\n[[service]]\nvip = \"10.250.1.1\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 1\n\n[[service.real]]\naddress = \"{HUNG_REAL}\"\n[[service.real.check]]\ntype = \"http\"\nconnect_ip = \"127.0.0.1\"\nconnect_port = 9001\nconnect_timeout = 1\nretry = 1\ndelay_before_retry = 0.5\nurl = [{{ path = \"/\" }}]\n"
    ));
    let path = dir.join("xlb.toml");
    std::fs::write(&path, text).unwrap();
    let never = AtomicBool::new(false);
    let agent = Agent::start_within(&ns, &xlb_bin(), &path, &[], BOUND, &never).unwrap();

    let checked: BTreeSet<IpAddr> = (0..SERVICES * REALS_PER_SERVICE)
        .map(|n| IpAddr::V4(real_addr(n)))
        .collect();
    assert_eq!(checked.len(), 1000);
    let hung = IpAddr::V4(HUNG_REAL);
    let deadline = Instant::now() + BOUND;
    loop {
        let now = pool(&ns, &pin);
        if checked.is_subset(&now) && !now.contains(&hung) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {BOUND:?}: {} of 1000 checked reals up, hung real in the pool: {}",
            now.intersection(&checked).count(),
            now.contains(&hung)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // It was up (no `alpha`) and went down: the agent announced it.
    let down = format!("{HUNG_REAL}:80");
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("real server down") && l.contains(&down)),
        "no down notice for the hung real"
    );
    agent.stop().unwrap();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
