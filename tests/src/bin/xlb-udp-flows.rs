//! `xlb-udp-flows SOURCE FIRST_PORT COUNT DEST:PORT`: opens COUNT new UDP
//! flows to DEST:PORT one after another, flow k from SOURCE:FIRST_PORT+k
//! with one datagram, each from its own socket. Used inside test guests,
//! where one process sending in order is what lets a test replay the flows
//! in the order a scheduler saw them (a shell loop of socats is 100 times
//! slower under TCG).

use anyhow::{Context, Result, bail, ensure};
use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::ExitCode,
};

/// Bound on one run.
const MAX_FLOWS: u32 = 20_000;

fn main() -> ExitCode {
    match run() {
        Ok(n) => {
            eprintln!("xlb-udp-flows: sent {n} flows");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xlb-udp-flows: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, first, count, dest] = args.as_slice() else {
        bail!("usage: xlb-udp-flows SOURCE FIRST_PORT COUNT DEST:PORT");
    };
    let source: Ipv4Addr = source.parse().context("SOURCE: not an IPv4 address")?;
    let first: u16 = first.parse().context("FIRST_PORT: not a port")?;
    let count: u32 = count.parse().context("COUNT: not a number")?;
    let dest: SocketAddr = dest.parse().context("DEST:PORT: not an address")?;
    ensure!(
        count <= MAX_FLOWS,
        "COUNT {count} is above the bound {MAX_FLOWS}"
    );
    ensure!(
        u32::from(first) + count <= 65_536,
        "FIRST_PORT + COUNT passes port 65535"
    );
    for k in 0..count {
        let port = first + u16::try_from(k).expect("checked against 65536 above");
        let socket =
            UdpSocket::bind((source, port)).with_context(|| format!("binding {source}:{port}"))?;
        socket
            .send_to(b"x", dest)
            .with_context(|| format!("sending from {source}:{port}"))?;
    }
    Ok(count)
}
