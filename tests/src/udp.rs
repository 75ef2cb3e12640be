//! UDP on std::net: each real server answers any datagram with its name, so
//! a client can tell which real served it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// How often the server looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Datagrams a client sends before giving up (each waits a third of its timeout).
const ATTEMPTS: u32 = 3;

/// A server started by [`serve_udp_name`]; its thread stops on Drop.
#[derive(Debug)]
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` inside `ns` and answers every datagram with `"<name>\n"`.
/// Bind the VIP itself (not a wildcard) so replies leave from the VIP.
pub fn serve_udp_name(ns: &Netns, addr: SocketAddr, name: &str) -> Result<UdpServer> {
    let sock = ns
        .enter(|| UdpSocket::bind(addr))?
        .with_context(|| format!("bind UDP {addr} in {}", ns.name()))?;
    sock.set_read_timeout(Some(POLL))?;
    let stop = Arc::new(AtomicBool::new(false));
    let body = format!("{name}\n").into_bytes();
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("udp-{name}"))
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&body, from);
                    }
                }
            })?
    };
    Ok(UdpServer {
        stop,
        thread: Some(thread),
    })
}

/// Sends a datagram from a fresh socket in `ns` (so a new flow) to `target`
/// and returns the name in the reply from `target`.
pub fn udp_ask(ns: &Netns, target: SocketAddr, timeout: Duration) -> Result<String> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let sock = ns.enter(|| UdpSocket::bind(bind))??;
    // Connected: only datagrams from `target` itself are received.
    sock.connect(target)?;
    sock.set_read_timeout(Some(timeout / ATTEMPTS))?;
    let mut buf = [0u8; 256];
    for _ in 0..ATTEMPTS {
        sock.send(b"who\n")?;
        if let Ok(n) = sock.recv(&mut buf) {
            let text = std::str::from_utf8(&buf[..n]).context("reply is not UTF-8")?;
            return Ok(text.trim_end().to_string());
        }
    }
    bail!("no UDP reply from {target} within {timeout:?}")
}
