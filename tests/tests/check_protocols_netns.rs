//! SMTP_CHECK, DNS_CHECK, UDP_CHECK, PING_CHECK and SSL_GET against small
//! servers the test runs in the reals' namespaces (an SMTP dialogue, a DNS
//! responder, a UDP echo, the kernel's ICMP echo, a rustls HTTPS server with
//! a certificate made by rcgen). The test breaks each real in the ways each
//! checker must notice and repairs it: the real must leave the pool after
//! its retries, get no traffic while out, and come back.

mod check_lab;
mod common;

use check_lab::*;
use std::{
    cell::RefCell,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};
use xlb_testbed::netns::Netns;

/// How often the servers' loops look at their stop flag.
const POLL: Duration = Duration::from_millis(50);
/// md5("ok\n"), the SSL real's health body while it is fine.
const OK_DIGEST: &str = "eff5bc1ef8ec9d03e640fc4370f5eacd";

/// A server thread in a real's namespace whose answers follow `mode`,
/// stopped (its socket closed) on drop.
struct Served {
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts TCP connections on `port` in `ns` and hands each to `serve`
/// with the current mode, one at a time (checks of one real never overlap).
fn tcp_server(
    ns: &Netns,
    port: u16,
    serve: impl Fn(TcpStream, u8) -> std::io::Result<()> + Send + 'static,
) -> Served {
    let listener = ns
        .enter(|| TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let (mode, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let thread = {
        let (mode, stop) = (mode.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(TIMEOUT)).unwrap();
                        s.set_write_timeout(Some(TIMEOUT)).unwrap();
                        let _ = serve(s, mode.load(Ordering::SeqCst));
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        })
    };
    Served {
        mode,
        stop,
        thread: Some(thread),
    }
}

/// Answers each datagram to UDP `port` in `ns` with what `answer` returns
/// for it and the current mode (`None`: silence).
fn udp_server(
    ns: &Netns,
    port: u16,
    answer: impl Fn(&[u8], u8) -> Option<Vec<u8>> + Send + 'static,
) -> Served {
    let sock = ns
        .enter(|| UdpSocket::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(POLL)).unwrap();
    let (mode, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let thread = {
        let (mode, stop) = (mode.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf)
                    && let Some(reply) = answer(&buf[..n], mode.load(Ordering::SeqCst))
                {
                    let _ = sock.send_to(&reply, from);
                }
            }
        })
    };
    Served {
        mode,
        stop,
        thread: Some(thread),
    }
}

// ---- SMTP ----

const SMTP_OK: u8 = 0;
/// The banner is not a 220 greeting.
const SMTP_BUSY: u8 = 1;
/// The connection is accepted and closed without a word.
const SMTP_MUTE: u8 = 2;

fn smtp(s: TcpStream, mode: u8) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    match mode {
        SMTP_MUTE => return Ok(()),
        SMTP_BUSY => return w.write_all(b"554 too busy\r\n"),
        _ => w.write_all(b"220 real ESMTP test\r\n")?,
    }
    let mut r = BufReader::new(s);
    // A bounded dialogue: HELO, then QUIT (or the checker hangs up).
    for _ in 0..4 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "HELO" => w.write_all(b"250 real\r\n")?,
            "QUIT" => return w.write_all(b"221 bye\r\n"),
            _ => w.write_all(b"500 what\r\n")?,
        }
    }
    Ok(())
}

// ---- DNS ----

const DNS_OK: u8 = 0;
const DNS_SILENT: u8 = 1;
const DNS_NXDOMAIN: u8 = 2;

/// Answers a query with one record of the type asked (rdata 192.0.2.1),
/// or NXDOMAIN with no record, or nothing.
fn dns(query: &[u8], mode: u8) -> Option<Vec<u8>> {
    if mode == DNS_SILENT || query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let question = query.get(12..end + 5)?;
    let qtype = &question[question.len() - 4..question.len() - 2];
    let nx = mode == DNS_NXDOMAIN;
    let mut m = query[..2].to_vec();
    m.extend_from_slice(&[0x81, if nx { 0x83 } else { 0x80 }]);
    m.extend_from_slice(&[0, 1, 0, u8::from(!nx), 0, 0, 0, 0]);
    m.extend_from_slice(question);
    if !nx {
        m.extend_from_slice(&[0xc0, 12]); // the question's name
        m.extend_from_slice(qtype);
        m.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    }
    Some(m)
}

// ---- UDP ----

const UDP_OK: u8 = 0;
const UDP_WRONG: u8 = 1;

fn udp_echo(payload: &[u8], mode: u8) -> Option<Vec<u8>> {
    (payload == b"ping").then(|| match mode {
        UDP_WRONG => b"nope".to_vec(),
        _ => b"pong".to_vec(),
    })
}

// ---- SSL ----

const SSL_OK: u8 = 0;
const SSL_WRONG_BODY: u8 = 1;

/// A TLS server configuration with a fresh self-signed certificate.
fn tls_config(name: &str) -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    Arc::new(config)
}

/// One HTTPS request: `/health` answers "ok" (or something else in
/// `SSL_WRONG_BODY`), then the server closes.
fn https(s: TcpStream, mode: u8, config: &Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let body = if mode == SSL_WRONG_BODY {
        "changed\n"
    } else {
        "ok\n"
    };
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

// ---- PING ----

/// Drops ICMP echo requests in `ns` (nftables), or lets them through again.
fn block_ping(ns: &Netns, on: bool) {
    if on {
        ns.run("nft", &["add", "table", "inet", "xlbping"]).unwrap();
        ns.run(
            "nft",
            &["add chain inet xlbping input { type filter hook input priority 0 ; }"],
        )
        .unwrap();
        ns.run(
            "nft",
            &["add rule inet xlbping input icmp type echo-request drop"],
        )
        .unwrap();
    } else {
        ns.run("nft", &["delete", "table", "inet", "xlbping"])
            .unwrap();
    }
}

fn check(kind: &str, extra: &str) -> String {
    format!(
        "[[service.real.check]]\ntype = \"{kind}\"\nconnect_timeout = 0.5\nretry = 1\ndelay_before_retry = 0.2\n{extra}"
    )
}

#[test]
fn smtp_dns_udp_ping_and_ssl_checks_follow_breakage_and_repair() {
    let (lab, dir) = lab(5, "protocols");
    let ns = |i: usize| &lab.reals[i].ns;
    let smtp_server = tcp_server(ns(0), 25, smtp);
    let dns_server = udp_server(ns(1), 53, dns);
    let udp = RefCell::new(Some(udp_server(ns(2), 5000, udp_echo)));
    let tls = tls_config("real5");
    let ssl_server = tcp_server(ns(4), 443, move |s, mode| https(s, mode, &tls));
    let checks = [
        check("smtp", "connect_port = 25\nhelo_name = \"lb.test\"\n"),
        check(
            "dns",
            "connect_port = 53\ndns_type = \"A\"\ndns_name = \"example.com\"\n",
        ),
        check(
            "udp",
            "connect_port = 5000\npayload = \"70696e67\"\nrequire_reply = \"706f6e67\"\n",
        ),
        check("ping", ""),
        check(
            "ssl",
            &format!(
                "connect_port = 443\nurl = [{{ path = \"/health\", digest = \"{OK_DIGEST}\" }}]\n"
            ),
        ),
    ];
    let reals: Vec<(IpAddr, String)> = lab
        .reals
        .iter()
        .zip(&checks)
        .map(|(r, c)| (r.addr, c.clone()))
        .collect();
    let agent = start(&lab, &dir, &config(&lab, "", &reals));
    let addrs: Vec<IpAddr> = lab.reals.iter().map(|r| r.addr).collect();
    let everyone = || pool(&lab).len() == 5;
    wait_for("every real in the pool", everyone);

    // Each breakage of real i: out after its retries, no traffic, back after repair.
    let outage = |i: usize, what: &str, brk: &mut dyn FnMut(), repair: &mut dyn FnMut()| {
        brk();
        wait_for(&format!("{what}: real{} out", i + 1), || {
            !pool(&lab).contains_key(&addrs[i])
        });
        let seen = spread(&lab, 12);
        assert_eq!(seen.values().sum::<usize>(), 12);
        assert!(
            !seen.contains_key(&lab.reals[i].name),
            "{what}: traffic reached real{} while out: {seen:?}",
            i + 1
        );
        repair();
        wait_for(&format!("{what}: real{} back", i + 1), everyone);
    };

    outage(
        0,
        "SMTP banner 554",
        &mut || smtp_server.set(SMTP_BUSY),
        &mut || smtp_server.set(SMTP_OK),
    );
    outage(
        0,
        "SMTP silent close",
        &mut || smtp_server.set(SMTP_MUTE),
        &mut || smtp_server.set(SMTP_OK),
    );
    outage(
        1,
        "DNS silent",
        &mut || dns_server.set(DNS_SILENT),
        &mut || dns_server.set(DNS_OK),
    );
    outage(
        1,
        "DNS NXDOMAIN",
        &mut || dns_server.set(DNS_NXDOMAIN),
        &mut || dns_server.set(DNS_OK),
    );
    outage(
        2,
        "UDP wrong reply",
        &mut || udp.borrow().as_ref().unwrap().set(UDP_WRONG),
        &mut || udp.borrow().as_ref().unwrap().set(UDP_OK),
    );
    // Socket closed: the real's kernel answers ICMP port unreachable.
    outage(
        2,
        "UDP port unreachable",
        &mut || drop(udp.take()),
        &mut || *udp.borrow_mut() = Some(udp_server(ns(2), 5000, udp_echo)),
    );
    outage(
        3,
        "ICMP echo dropped",
        &mut || block_ping(ns(3), true),
        &mut || block_ping(ns(3), false),
    );
    outage(
        4,
        "SSL wrong digest",
        &mut || ssl_server.set(SSL_WRONG_BODY),
        &mut || ssl_server.set(SSL_OK),
    );

    // Back in the pool means back in the traffic.
    wait_for("every real takes traffic again", || {
        spread(&lab, 10).len() == 5
    });
    agent.stop().unwrap();
    drop((smtp_server, dns_server, udp, ssl_server));
    std::fs::remove_dir_all(&dir).unwrap();
}
