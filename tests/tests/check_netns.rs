//! Health checks against real servers in the namespace lab: the test breaks
//! a real (HTTP 500, wrong body, answer slower than the timeout, process
//! killed, port blocked with nftables, MISC_CHECK exit codes) and repairs
//! it; the real must leave the pool (or drop to weight 0 with
//! `inhibit_on_failure`), take no traffic while out, and come back.
//! Quorum scripts must fire on crossing, the sorry server must take the
//! traffic only while every real is down.

mod check_lab;
mod common;

use check_lab::*;
use common::xlb_bin;
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};
use xlb_testbed::{lab::DrLab, netns::Netns};

const HEALTH_PATH: &str = "/health";
/// md5("ok\n"): what the health URL answers while the real is fine.
const OK_DIGEST: &str = "eff5bc1ef8ec9d03e640fc4370f5eacd";

/// How a [`ModeServer`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Ok,
    Error500,
    WrongBody,
    /// Answers after 2 s, longer than the checks' 1 s timeout.
    Slow,
}

/// A real's HTTP server whose behaviour the test switches: `/health`
/// answers "ok" (or fails as the mode says); other paths answer the real's
/// name, as the lab's servers do, and are counted.
struct ModeServer {
    mode: Arc<AtomicU8>,
    traffic: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ModeServer {
    fn start(ns: &Netns, name: &str) -> ModeServer {
        let listener = ns
            .enter(|| TcpListener::bind("0.0.0.0:80"))
            .unwrap()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
        let traffic = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mode, traffic, stop, name) = (
                mode.clone(),
                traffic.clone(),
                stop.clone(),
                name.to_string(),
            );
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let (mode, traffic, name) =
                                (mode.clone(), traffic.clone(), name.clone());
                            conns.push(std::thread::spawn(move || {
                                let _ = answer(s, &mode, &traffic, &name);
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        ModeServer {
            mode,
            traffic,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn traffic(&self) -> usize {
        self.traffic.load(Ordering::SeqCst)
    }
}

impl Drop for ModeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(
    mut s: TcpStream,
    mode: &AtomicU8,
    traffic: &AtomicUsize,
    name: &str,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or_default().to_string();
    let (status, body) = if path == HEALTH_PATH {
        match mode.load(Ordering::SeqCst) {
            m if m == Mode::Error500 as u8 => ("500 Internal Server Error", "broken\n".to_string()),
            m if m == Mode::WrongBody as u8 => ("200 OK", "changed\n".to_string()),
            m if m == Mode::Slow as u8 => {
                std::thread::sleep(Duration::from_secs(2));
                ("200 OK", "ok\n".to_string())
            }
            _ => ("200 OK", "ok\n".to_string()),
        }
    } else {
        traffic.fetch_add(1, Ordering::SeqCst);
        ("200 OK", format!("{name}\n"))
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(response.as_bytes())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn http_check(retry: u32) -> String {
    format!(
        "[[service.real.check]]\ntype = \"http\"\nconnect_timeout = 1\nretry = {retry}\ndelay_before_retry = 0.2\nurl = [{{ path = \"{HEALTH_PATH}\", digest = \"{OK_DIGEST}\" }}]\n"
    )
}

#[test]
fn http_check_failures_remove_and_restore_reals_quorum_and_sorry_server() {
    let (mut lab, dir) = lab(4, "http");
    // real1..3 get switchable servers; real4 is only the sorry server.
    let mut servers: Vec<Option<ModeServer>> = Vec::new();
    for r in lab.reals.iter_mut().take(3) {
        r.server.stop();
        servers.push(Some(ModeServer::start(&r.ns, &r.name)));
    }
    let notify = dir.join("notify");
    let quorum = dir.join("quorum");
    let service = format!(
        "quorum_up = {}\nquorum_down = {}\nsorry_server = {{ address = \"{}\" }}",
        sh(&format!("echo up >> {}", quorum.display())),
        sh(&format!("echo down >> {}", quorum.display())),
        lab.reals[3].addr
    );
    let reals: Vec<(IpAddr, String)> = (0..3)
        .map(|i| {
            let name = &lab.reals[i].name;
            let lifecycle = format!(
                "{}notify_up = {}\nnotify_down = {}\n",
                if i == 2 {
                    "inhibit_on_failure = true\n"
                } else {
                    ""
                },
                sh(&format!("echo {name} up >> {}", notify.display())),
                sh(&format!("echo {name} down >> {}", notify.display())),
            );
            (lab.reals[i].addr, lifecycle + &http_check(2))
        })
        .collect();
    let agent = start(&lab, &dir, &config(&lab, &service, &reals));
    let [a1, a2, a3, a4] = [0, 1, 2, 3].map(|i| lab.reals[i].addr);
    wait_for("every checked real in the pool", || {
        pool(&lab) == BTreeMap::from([(a1, 1), (a2, 1), (a3, 1)])
    });
    let seen = spread(&lab, 30);
    assert!(!seen.contains_key("real4"), "sorry server unused: {seen:?}");

    // real2 breaks in each way in turn: out after the retries, no traffic, back after repair.
    // `None`: the process is killed.
    for breakage in [
        Some(Mode::Error500),
        Some(Mode::WrongBody),
        Some(Mode::Slow),
        None,
    ] {
        let killed = breakage.is_none();
        let mode = breakage.unwrap_or(Mode::Ok);
        if killed {
            servers[1] = None; // the process dies: connection refused
        } else {
            servers[1].as_ref().unwrap().set(mode);
        }
        wait_for(&format!("real2 out ({mode:?}, killed {killed})"), || {
            !pool(&lab).contains_key(&a2)
        });
        let before = servers[1].as_ref().map_or(0, ModeServer::traffic);
        let seen = spread(&lab, 30);
        assert!(!seen.contains_key("real2"), "{mode:?}: {seen:?}");
        assert_eq!(servers[1].as_ref().map_or(0, ModeServer::traffic), before);
        if killed {
            servers[1] = Some(ModeServer::start(&lab.reals[1].ns, "real2"));
        } else {
            servers[1].as_ref().unwrap().set(Mode::Ok);
        }
        wait_for(&format!("real2 back ({mode:?})"), || {
            pool(&lab).get(&a2) == Some(&1)
        });
        wait_for("real2 takes traffic again", || {
            spread(&lab, 9).contains_key("real2")
        });
    }
    wait_for("notify scripts of real2", || {
        let lines = file_lines(&notify);
        lines.iter().filter(|l| *l == "real2 down").count() == 4
            && lines.iter().filter(|l| *l == "real2 up").count() == 4
    });

    // inhibit_on_failure: real3 stays at weight 0 and gets no new connections.
    servers[2].as_ref().unwrap().set(Mode::Error500);
    wait_for("real3 at weight 0", || pool(&lab).get(&a3) == Some(&0));
    let before = servers[2].as_ref().unwrap().traffic();
    let seen = spread(&lab, 30);
    assert!(!seen.contains_key("real3"), "{seen:?}");
    assert_eq!(servers[2].as_ref().unwrap().traffic(), before);

    // Every real down: quorum lost, only the sorry server takes traffic.
    assert!(file_lines(&quorum).is_empty(), "no crossing yet");
    servers[0].as_ref().unwrap().set(Mode::Error500);
    servers[1].as_ref().unwrap().set(Mode::Error500);
    wait_for("the sorry server alone", || {
        pool(&lab) == BTreeMap::from([(a3, 0), (a4, 1)])
    });
    let seen = spread(&lab, 20);
    assert_eq!(seen, BTreeMap::from([("real4".to_string(), 20)]));
    wait_for("quorum_down", || file_lines(&quorum) == ["down"]);

    // One real back: quorum regained, the sorry server leaves.
    servers[0].as_ref().unwrap().set(Mode::Ok);
    wait_for("real1 back, sorry server gone", || {
        pool(&lab) == BTreeMap::from([(a1, 1), (a3, 0)])
    });
    let seen = spread(&lab, 20);
    assert_eq!(seen, BTreeMap::from([("real1".to_string(), 20)]));
    wait_for("quorum_up", || file_lines(&quorum) == ["down", "up"]);

    agent.stop().unwrap();
    drop(servers);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tcp_check_follows_kills_and_nftables_blocks_misc_check_follows_exit_codes() {
    let (mut lab, dir) = lab(2, "tcp-misc");
    let code = dir.join("real2.code");
    std::fs::write(&code, "0").unwrap();
    let tcp = "[[service.real.check]]\ntype = \"tcp\"\nconnect_timeout = 0.5\nretry = 2\ndelay_before_retry = 0.2\n".to_string();
    let misc = format!(
        "[[service.real.check]]\ntype = \"misc\"\nmisc_path = {}\nmisc_timeout = 2\nmisc_dynamic = true\n",
        sh(&format!("exit $(cat {})", code.display()))
    );
    let reals = vec![(lab.reals[0].addr, tcp), (lab.reals[1].addr, misc)];
    let agent = start(&lab, &dir, &config(&lab, "", &reals));
    let [a1, a2] = [0, 1].map(|i| lab.reals[i].addr);
    wait_for("both reals in the pool", || {
        pool(&lab) == BTreeMap::from([(a1, 1), (a2, 1)])
    });

    // TCP_CHECK: the server process dies, then comes back.
    lab.reals[0].server.stop();
    wait_for("real1 out after its server died", || {
        !pool(&lab).contains_key(&a1)
    });
    assert_eq!(
        spread(&lab, 10),
        BTreeMap::from([("real2".to_string(), 10)])
    );
    lab.reals[0].server =
        xlb_testbed::http::serve_name(&lab.reals[0].ns, "0.0.0.0:80".parse().unwrap(), "real1")
            .unwrap();
    wait_for("real1 back", || pool(&lab).get(&a1) == Some(&1));

    // TCP_CHECK: SYNs dropped by nftables, so the connect times out.
    let ns = &lab.reals[0].ns;
    ns.run("nft", &["add", "table", "inet", "xlbcheck"])
        .unwrap();
    ns.run(
        "nft",
        &["add chain inet xlbcheck input { type filter hook input priority 0 ; }"],
    )
    .unwrap();
    ns.run("nft", &["add rule inet xlbcheck input tcp dport 80 drop"])
        .unwrap();
    wait_for("real1 out while blocked", || !pool(&lab).contains_key(&a1));
    assert_eq!(
        spread(&lab, 10),
        BTreeMap::from([("real2".to_string(), 10)])
    );
    ns.run("nft", &["delete", "table", "inet", "xlbcheck"])
        .unwrap();
    wait_for("real1 back after unblocking", || {
        pool(&lab).get(&a1) == Some(&1)
    });

    // MISC_CHECK with misc_dynamic: 1 down, 0 up, 2–255 up with weight code − 2.
    std::fs::write(&code, "1").unwrap();
    wait_for("real2 out on exit 1", || !pool(&lab).contains_key(&a2));
    assert_eq!(
        spread(&lab, 10),
        BTreeMap::from([("real1".to_string(), 10)])
    );
    std::fs::write(&code, "7").unwrap();
    wait_for("real2 at weight 5 on exit 7", || {
        pool(&lab).get(&a2) == Some(&5)
    });
    std::fs::write(&code, "2").unwrap();
    wait_for("real2 at weight 0 on exit 2", || {
        pool(&lab).get(&a2) == Some(&0)
    });
    assert_eq!(
        spread(&lab, 10),
        BTreeMap::from([("real1".to_string(), 10)])
    );
    std::fs::write(&code, "0").unwrap();
    wait_for("real2 back at its weight on exit 0", || {
        pool(&lab).get(&a2) == Some(&1)
    });

    agent.stop().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A keep-alive HTTP connection from the lab's client through the VIP.
struct Held(TcpStream);

impl Held {
    fn open(lab: &DrLab) -> Held {
        let s = lab
            .client
            .enter(|| TcpStream::connect_timeout(&lab.vip_socket(), TIMEOUT))
            .unwrap()
            .unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        Held(s)
    }

    /// One `GET /` on the connection: the answering real's name.
    fn ask(&mut self) -> std::io::Result<String> {
        self.0
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: keep-alive\r\n\r\n")?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return Ok(String::from_utf8_lossy(&got[end + 4..end + 4 + len])
                        .trim()
                        .to_string());
                }
            }
            let n = self.0.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Ends the connection with a RST (SO_LINGER 0): the flow goes to
    /// IPVS's CLOSE state, which expires after 10 s.
    fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a linger struct of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_LINGER");
    }
}

#[test]
fn a_held_connection_to_a_real_taken_out_follows_the_nodest_policy() {
    let (lab, dir) = lab(2, "nodest");
    // The check watches a health port the test controls, so the service's
    // server (port 80) keeps serving the held connection.
    let health = |i: usize| {
        xlb_testbed::http::serve_name(&lab.reals[i].ns, "0.0.0.0:9000".parse().unwrap(), "health")
            .unwrap()
    };
    let check = "[[service.real.check]]\ntype = \"tcp\"\nconnect_port = 9000\nconnect_timeout = 0.5\nretry = 1\ndelay_before_retry = 0.2\n";
    let reals: Vec<(IpAddr, String)> = lab
        .reals
        .iter()
        .map(|r| (r.addr, check.to_string()))
        .collect();
    let mut servers = vec![Some(health(0)), Some(health(1))];
    for policy in ["keep", "expire", "reschedule"] {
        let text = config(&lab, "", &reals).replacen(
            "[dataplane]\n",
            &format!("[dataplane]\nnodest_policy = \"{policy}\"\n"),
            1,
        );
        let agent = start(&lab, &dir, &text);
        let addrs: Vec<IpAddr> = lab.reals.iter().map(|r| r.addr).collect();
        wait_for(&format!("{policy}: both reals in the pool"), || {
            pool(&lab).len() == 2
        });
        let mut held = Held::open(&lab);
        let name = held.ask().unwrap();
        let x = lab.reals.iter().position(|r| r.name == name).unwrap();
        let other = &lab.reals[1 - x].name;
        let expired_before = lab.nodest_expired(&xlb_bin()).unwrap();

        // The check takes the held connection's real out.
        servers[x] = None;
        wait_for(&format!("{policy}: {name} out"), || {
            !pool(&lab).contains_key(&addrs[x])
        });
        match policy {
            "keep" => {
                for _ in 0..3 {
                    assert_eq!(held.ask().unwrap(), name, "keep: the held connection moved");
                }
                let seen = spread(&lab, 10);
                assert_eq!(seen, BTreeMap::from([(other.clone(), 10)]));
                let draining = format!("draining {}:{}", addrs[x], lab.port);
                assert!(lab.status(&xlb_bin()).unwrap().contains(&draining));
                // Once the connection is gone (RST: CLOSE, 10 s), the slot is freed.
                held.reset();
                wait_for("keep: the drained real freed", || {
                    !lab.status(&xlb_bin()).unwrap().contains(&draining)
                });
            }
            // The next request is dropped and the flow forgotten; TCP's
            // retransmission is a new flow, scheduled to the other real,
            // which never saw the handshake and resets the connection.
            "expire" => {
                let err = held.ask().unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
                assert!(lab.nodest_expired(&xlb_bin()).unwrap() > expired_before);
            }
            // The request itself goes to the other real, which resets it (DR).
            _ => {
                let err = held.ask().unwrap_err();
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
                assert_eq!(lab.nodest_expired(&xlb_bin()).unwrap(), expired_before);
            }
        }
        servers[x] = Some(health(x));
        wait_for(&format!("{policy}: {name} back"), || pool(&lab).len() == 2);
        agent.stop().unwrap();
    }
    drop(servers);
    std::fs::remove_dir_all(&dir).unwrap();
}
