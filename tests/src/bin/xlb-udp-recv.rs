//! `xlb-udp-recv ADDR:PORT READY_FILE STOP_HEX TIMEOUT_SECS`: binds a UDP
//! socket, creates READY_FILE, then prints each datagram as
//! `<source> <payload hex>` until one whose payload is STOP_HEX arrives
//! (exit 0, not printed) or TIMEOUT_SECS pass (exit 2).

use anyhow::{Context, Result, bail};
use std::{
    io::Write,
    net::UdpSocket,
    process::ExitCode,
    time::{Duration, Instant},
};

const MAX_DATAGRAMS: usize = 10_000;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("xlb-udp-recv: timed out before the stop datagram");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("xlb-udp-recv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, ready, stop, timeout] = args.as_slice() else {
        bail!("usage: xlb-udp-recv ADDR:PORT READY_FILE STOP_HEX TIMEOUT_SECS");
    };
    let stop = hex::decode(stop).context("STOP_HEX")?;
    let timeout = Duration::from_secs(timeout.parse().context("TIMEOUT_SECS")?);
    let sock = UdpSocket::bind(addr.as_str()).with_context(|| format!("binding {addr}"))?;
    std::fs::write(ready, b"").with_context(|| format!("creating {ready}"))?;
    let deadline = Instant::now() + timeout;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 65_536];
    for _ in 0..MAX_DATAGRAMS {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(false);
        };
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e).context("recv_from"),
        };
        if buf[..n] == stop[..] {
            return Ok(true);
        }
        writeln!(out, "{from} {}", hex::encode(&buf[..n]))?;
        out.flush()?;
    }
    bail!("more than {MAX_DATAGRAMS} datagrams")
}
