//! An HTTP_GET digest over a body far larger than any buffer the agent
//! should hold: the real answers 48 MiB (no Content-Length: the body ends
//! when the server closes), the check's digest is that body's MD5, and the
//! real must come up (it starts down: `alpha`) and stay up while the
//! agent's peak resident memory stays a small fraction of the body.

mod check_lab;
mod common;

use check_lab::*;
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use xlb_testbed::scrape::{self, total};

const BODY: usize = 48 << 20;
const LISTEN: &str = "127.0.0.1:9477";
/// The agent's peak resident memory must stay under this: well above what
/// it needs, well below one copy of the body.
const PEAK_BOUND_KIB: u64 = 40 * 1024;

fn body() -> Vec<u8> {
    (0..BODY).map(|i| (i * 7 % 251) as u8).collect()
}

/// MD5 of `bytes` as md5sum prints it.
fn md5_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

/// Answers every GET with `body`, then closes; counts the answers.
fn serve(
    listener: TcpListener,
    body: Arc<Vec<u8>>,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let Ok((s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = answer(s, &body);
        served.fetch_add(1, Ordering::SeqCst);
    }
}

fn answer(mut s: TcpStream, body: &[u8]) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")?;
    for part in body.chunks(64 << 10) {
        s.write_all(part)?;
    }
    Ok(())
}

/// `VmHWM` (peak resident memory) of `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_large_body_streams_into_the_digest_in_bounded_memory() {
    let (mut lab, dir) = lab(1, "http-body");
    lab.reals[0].server.stop();
    let body = Arc::new(body());
    let digest = md5_hex(&body);
    let listener = lab.reals[0]
        .ns
        .enter(|| TcpListener::bind("0.0.0.0:80"))
        .unwrap()
        .unwrap();
    let (served, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let server = {
        let (body, served, stop) = (body.clone(), served.clone(), stop.clone());
        std::thread::spawn(move || serve(listener, body, served, stop))
    };
    let check = format!(
        "[[service.real.check]]\ntype = \"http\"\nconnect_timeout = 20\nretry = 0\ndelay_loop = 1\nurl = [{{ path = \"/big\", digest = \"{digest}\" }}]\n"
    );
    let text = format!(
        "{}\n[metrics]\nlisten = \"{LISTEN}\"\n",
        config(&lab, "alpha = true\n", &[(lab.reals[0].addr, check)])
    );
    let agent = start(&lab, &dir, &text);
    let scrape = || scrape::scrape(&lab.director, LISTEN.parse().unwrap()).unwrap();
    wait_for("the real to come up on a matching digest", || {
        total(&scrape(), "xlb_check_up", &[]) == 1
    });
    wait_for("three whole bodies digested", || {
        served.load(Ordering::SeqCst) >= 3
    });
    let m = scrape();
    assert_eq!(total(&m, "xlb_check_up", &[]), 1);
    assert_eq!(total(&m, "xlb_check_failures_total", &[]), 0);
    let peak = peak_kib(agent.pid());
    assert!(
        peak < PEAK_BOUND_KIB,
        "the agent peaked at {peak} KiB digesting {} MiB bodies",
        BODY >> 20
    );
    agent.stop().unwrap();
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
