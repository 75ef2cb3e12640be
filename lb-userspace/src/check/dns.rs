//! DNS_CHECK: one query over UDP (`type`, `name`, class IN, recursion
//! desired); up when the answer carries the query's id, is a response
//! with NOERROR and has at least one answer record.

use super::{Probe, Target};
use crate::config::check::DnsType;

/// Largest DNS message over UDP without EDNS.
const MAX_MESSAGE: usize = 512;

pub async fn probe(qtype: DnsType, name: &str, target: &Target) -> Probe {
    let id = fastrand::u16(..);
    let Some(query) = query(id, qtype, name) else {
        return Probe::fail(format!("`{name}` is not a valid DNS name"));
    };
    let sock = match target.connect_udp().await {
        Ok(s) => s,
        Err(e) => return Probe::fail(format!("DNS {}: {e}", target.addr)),
    };
    if let Err(e) = sock.send(&query).await {
        return Probe::fail(format!("DNS {}: {e}", target.addr));
    }
    let mut buf = [0u8; MAX_MESSAGE];
    // Stray datagrams are skipped; the caller's timeout ends the wait.
    loop {
        match sock.recv(&mut buf).await {
            Ok(n) => match judge(id, &buf[..n]) {
                Some(Ok(())) => return Probe::pass(),
                Some(Err(why)) => return Probe::fail(format!("DNS {}: {why}", target.addr)),
                None => continue,
            },
            Err(e) => return Probe::fail(format!("DNS {}: {e}", target.addr)),
        }
    }
}

/// The query message; `None` when `name` has an empty or over-long label.
fn query(id: u16, qtype: DnsType, name: &str) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // standard query, RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|_| name != ".")
    {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.code().to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // IN
    (m.len() <= MAX_MESSAGE).then_some(m)
}

/// `None`: not an answer to our query (ignored); otherwise the verdict.
fn judge(id: u16, reply: &[u8]) -> Option<Result<(), String>> {
    if reply.len() < 12 || reply[..2] != id.to_be_bytes() || reply[2] & 0x80 == 0 {
        return None;
    }
    let rcode = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    Some(match (rcode, answers) {
        (0, 0) => Err("no answer records".into()),
        (0, _) => Ok(()),
        (r, _) => Err(format!("response code {r}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = query(0x1234, DnsType::A, "example.com").unwrap();
        let mut want = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7];
        want.extend_from_slice(b"example");
        want.push(3);
        want.extend_from_slice(b"com");
        want.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(q, want);
        let root = query(1, DnsType::Soa, ".").unwrap();
        assert_eq!(&root[12..], &[0, 0, 6, 0, 1]);
        assert!(query(1, DnsType::A, "a..b").is_none());
    }

    #[test]
    fn answers() {
        let mut r = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        assert_eq!(judge(0x1234, &r), Some(Ok(())));
        assert_eq!(judge(0x9999, &r), None, "another query's answer");
        r[7] = 0;
        assert!(matches!(judge(0x1234, &r), Some(Err(_))));
        r[3] = 0x83; // NXDOMAIN
        assert!(matches!(judge(0x1234, &r), Some(Err(_))));
        assert_eq!(judge(0x1234, &r[..5]), None);
        r[2] = 0x01; // a query, not a response
        assert_eq!(judge(0x1234, &r), None);
    }
}
