//! UDP_CHECK: sends `payload`. With `require_reply` the real must answer
//! (with that prefix when given); without it the real is up unless the
//! host answers with ICMP port unreachable within `wait` (keepalived's rule).

use super::{Probe, Target};
use std::time::Duration;

pub async fn probe(
    payload: &[u8],
    require_reply: Option<&[u8]>,
    target: &Target,
    wait: Duration,
) -> Probe {
    let sock = match target.connect_udp().await {
        Ok(s) => s,
        Err(e) => return Probe::fail(format!("UDP {}: {e}", target.addr)),
    };
    if let Err(e) = sock.send(payload).await {
        return Probe::fail(format!("UDP {}: {e}", target.addr));
    }
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => match require_reply {
            Some(prefix) if !buf[..n].starts_with(prefix) => {
                Probe::fail(format!("UDP {}: reply does not match", target.addr))
            }
            _ => Probe::pass(),
        },
        // ECONNREFUSED: the ICMP port unreachable of a connected socket.
        Ok(Err(e)) => Probe::fail(format!("UDP {}: {e}", target.addr)),
        Err(_) if require_reply.is_some() => {
            Probe::fail(format!("UDP {}: no reply within {wait:?}", target.addr))
        }
        Err(_) => Probe::pass(),
    }
}
