//! PING_CHECK: one ICMP or ICMPv6 echo request over a raw socket (the agent
//! runs with CAP_NET_RAW); up when the matching echo reply arrives within
//! `wait`.

use super::{Probe, Target};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::{io, mem::MaybeUninit, net::SocketAddr, time::Duration};
use tokio::io::unix::AsyncFd;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub async fn probe(target: &Target, wait: Duration) -> Probe {
    match tokio::time::timeout(wait, echo(target)).await {
        Ok(Ok(())) => Probe::pass(),
        Ok(Err(e)) => Probe::fail(format!("ping {}: {e}", target.addr.ip())),
        Err(_) => Probe::fail(format!(
            "ping {}: no reply within {wait:?}",
            target.addr.ip()
        )),
    }
}

async fn echo(target: &Target) -> io::Result<()> {
    let v6 = target.addr.is_ipv6();
    let sock = if v6 {
        Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?
    } else {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?
    };
    sock.set_nonblocking(true)?;
    if let Some(mark) = target.fwmark {
        sock.set_mark(mark)?;
    }
    if let Some(bind) = target.bind {
        sock.bind(&SockAddr::from(SocketAddr::new(bind.ip(), 0)))?;
    }
    let id = fastrand::u16(..);
    let request = request(v6, id);
    // SAFETY: the Socket owns its descriptor until the AsyncFd drops it.
    let sock = unsafe { AsyncFd::register(sock) }?;
    let dest = SockAddr::from(SocketAddr::new(target.addr.ip(), 0));
    sock.async_io(tokio::io::Interest::WRITABLE, |s| {
        s.send_to(&request, &dest)
    })
    .await?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let (n, from) = sock
            .async_io(tokio::io::Interest::READABLE, |s| s.recv_from(&mut buf))
            .await?;
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let from_target = from.as_socket().map(|a| a.ip()) == Some(target.addr.ip());
        if from_target && is_reply(v6, id, &data) {
            return Ok(());
        }
    }
}

/// An echo request with identifier `id`, sequence 1 and a short payload.
/// The kernel fills in the ICMPv6 checksum; ICMP's is computed here.
fn request(v6: bool, id: u16) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(b"xlb-check");
    if !v6 {
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    m
}

/// Whether `data` (with the IPv4 header on a raw IPv4 socket) is the echo
/// reply to our request.
fn is_reply(v6: bool, id: u16, data: &[u8]) -> bool {
    let icmp = if v6 {
        data
    } else {
        let ihl = usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4;
        data.get(ihl..).unwrap_or_default()
    };
    let kind = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    icmp.len() >= 8 && icmp[0] == kind && icmp[4..6] == id.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksum_verifies() {
        let r = request(false, 0xabcd);
        assert_eq!(r[0], 8);
        assert_eq!(checksum(&r), 0, "a packet with its checksum sums to zero");
        assert_eq!(&r[4..6], &[0xab, 0xcd]);
    }

    #[test]
    fn replies_match_by_type_and_id() {
        let mut v4 = vec![0x45; 20];
        v4.extend_from_slice(&[0, 0, 0, 0, 0xab, 0xcd, 0, 1]);
        assert!(is_reply(false, 0xabcd, &v4));
        assert!(!is_reply(false, 0x1111, &v4));
        v4[20] = 8; // our own request, looped back
        assert!(!is_reply(false, 0xabcd, &v4));
        assert!(is_reply(true, 7, &[129, 0, 0, 0, 0, 7, 0, 1]));
        assert!(!is_reply(true, 7, &[129, 0, 0]));
    }
}
