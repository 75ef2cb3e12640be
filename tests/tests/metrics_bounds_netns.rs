//! The metrics endpoint under a flood of idle connections, in the lab's
//! director namespace: the agent (held to 1,024 descriptors, a common
//! default) keeps the descriptors its health check needs, closes every idle
//! connection itself, and answers scrapes again once they are gone. The
//! connection cap, the header timeout and the idle timeout one by one are
//! tested in `lb-userspace/src/metrics/server.rs`.

mod check_lab;
mod common;

use check_lab::*;
use std::{
    io::{ErrorKind, Read},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};
use xlb_testbed::scrape::{self, Samples, total};

const LISTEN: &str = "127.0.0.1:9477";
/// More idle connections than the agent has descriptors.
const IDLE: usize = 1_100;
const AGENT_DESCRIPTORS: u64 = 1_024;
/// The agent's own descriptors (maps, links, netlink, VRRP, the check) and
/// the endpoint's 8 connections stay far below this.
const DESCRIPTORS_BOUND: usize = 200;

/// Holds process `pid` to `n` open files, as a default `ulimit -n` does.
fn limit_descriptors(pid: u32, n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit on our own child; `limit` outlives the call, no old value asked.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Whether the agent has closed `s` (EOF or reset); reads what it sent first.
fn closed_by_agent(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn sum(m: &Samples, family: &str) -> u64 {
    total(m, family, &[])
}

#[test]
fn idle_connections_leave_the_agent_its_descriptors() {
    let (lab, dir) = lab(1, "metrics-bounds");
    let tcp = "[[service.real.check]]\ntype = \"tcp\"\nconnect_timeout = 0.5\nretry = 0\n";
    let text = format!(
        "{}\n[metrics]\nlisten = \"{LISTEN}\"\n",
        config(&lab, "", &[(lab.reals[0].addr, tcp.to_string())])
    );
    let agent = start(&lab, &dir, &text);
    limit_descriptors(agent.pid(), AGENT_DESCRIPTORS);
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let scrape = || scrape::scrape(&lab.director, addr);
    wait_for("the real's check to pass", || {
        scrape().is_ok_and(|m| sum(&m, "xlb_check_up") == 1)
    });
    let before = scrape().unwrap();

    let mut idle: Vec<TcpStream> = lab
        .director
        .enter(|| {
            (0..IDLE)
                .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .unwrap()
        .expect("connecting the idle clients");
    for s in &idle {
        s.set_nonblocking(true).unwrap();
    }
    // The agent closes every one itself: those over the cap at once, the
    // rest at the header timeout. Its descriptors stay few meanwhile.
    let deadline = Instant::now() + SETTLE;
    loop {
        let held = descriptors(agent.pid());
        assert!(
            held < DESCRIPTORS_BOUND,
            "the agent held {held} descriptors during the flood"
        );
        idle.retain_mut(|s| !closed_by_agent(s));
        if idle.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {IDLE} idle connections still open after {SETTLE:?}",
            idle.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    wait_for("a scrape to answer after the flood", || scrape().is_ok());
    let after = scrape().unwrap();
    assert_eq!(sum(&after, "xlb_check_up"), 1, "the real went down");
    assert_eq!(
        sum(&after, "xlb_check_failures_total"),
        sum(&before, "xlb_check_failures_total"),
        "the TCP check failed during the flood"
    );
    // Checks ran all along (every 0.3 s, the flood lasted at least the 5 s header timeout).
    assert!(
        sum(&after, "xlb_check_attempts_total") >= sum(&before, "xlb_check_attempts_total") + 10,
        "checks stalled during the flood"
    );
    assert_eq!(pool(&lab).len(), 1, "the real left the pool");
    let log = agent.log().join("\n");
    assert!(
        log.contains("metrics: connections over the cap of 8 refused"),
        "{log}"
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
