//! The agent under systemd's notify protocol (`Type=notify`), with this
//! test standing in for systemd: NOTIFY_SOCKET names a datagram socket the
//! test reads. READY comes once the agent forwards (never before), a
//! reload is framed by RELOADING and READY with the outcome in STATUS, the
//! loop keeps the watchdog fed (WatchdogSec), and a stop says STOPPING.

mod common;

use common::vrrp::{Director, FAST, instance};
use std::{os::unix::net::UnixDatagram, time::Duration};
use xlb_testbed::vrrp::{VrrpLab, temp_dir};

/// Every message systemd would have received by now, then `want` within 20 s.
fn until(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    }
    panic!("no {want} among {seen:#?}");
}

#[test]
fn ready_once_forwarding_reloading_around_reloads_stopping_at_the_end() {
    let lab = VrrpLab::build(1).unwrap();
    let dir = temp_dir("sdnotify").unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // SAFETY: set before any agent (or other thread of this one-test binary) starts.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "400000");
    }
    let body = instance(150, FAST);
    let mut d = Director::start(&lab.nodes[0], &dir, &body);
    let mut seen = Vec::new();
    let ready = until(&sock, &mut seen, "READY=1");
    assert!(
        ready.contains("STATUS=forwarding 0 services with XDP on eth0")
            && ready.contains("1 VRRP instances"),
        "{ready}"
    );
    let log = d.log();
    assert!(
        log.iter().any(|l| l.contains("xlb forwarding")),
        "READY before the agent forwarded: {log:#?}"
    );

    until(&sock, &mut seen, "WATCHDOG=1");

    let out = d.xlb_reload(&body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reloading = until(&sock, &mut seen, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let after = until(&sock, &mut seen, "READY=1");
    assert!(!after.contains("reload failed"), "{after}");

    let out = d.xlb_reload(&body.replace("priority = 150", "priority = 300"));
    assert!(!out.status.success());
    until(&sock, &mut seen, "RELOADING=1");
    let after = until(&sock, &mut seen, "READY=1");
    assert!(
        after.contains("last reload failed, nothing changed"),
        "{after}"
    );

    d.stop();
    until(&sock, &mut seen, "STOPPING=1");
}
