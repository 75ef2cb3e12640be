//! The VRRP advert decoder on arbitrary IP packets (as captured on the wire:
//! an IPv4 header as a raw socket returns it, or an IPv6 header standing for
//! what the socket's ancillary data reports). Decoding never panics, and an
//! advert that decodes re-encodes to the same bytes wherever the format
//! carries nothing the decoder ignores (and but for the checksum's two
//! forms of zero); the re-encoding always decodes back to the same advert.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv6Addr};
use xlb::vrrp::packet::{self, Advert, Expect, Received};

fuzz_target!(|data: &[u8]| {
    let Some((rx, msg)) = split(data) else {
        return;
    };
    let ipv6 = rx.src.is_ipv6();
    // An instance configured as the message claims to be, so that valid
    // adverts get past the vrid/auth/interval checks and reach the round trip.
    let version = msg.first().map_or(3, |b| b >> 4);
    let v2_pass = version == 2 && msg.get(4) == Some(&1);
    let count = usize::from(msg.get(3).copied().unwrap_or(0));
    let auth_at = 8 + count * if ipv6 { 16 } else { 4 };
    let expect = Expect {
        version,
        vrid: msg.get(1).copied().unwrap_or(0),
        ipv6,
        auth: v2_pass
            .then(|| msg.get(auth_at..auth_at + packet::AUTH_LEN))
            .flatten()
            .map(|d| <[u8; packet::AUTH_LEN]>::try_from(d).unwrap()),
        interval_cs: u16::from(msg.get(5).copied().unwrap_or(0)) * 100,
        peers: vec![],
        own: vec![],
        // The addresses it lists, so the address check passes too.
        addrs: msg
            .get(8..auth_at)
            .unwrap_or_default()
            .chunks_exact(if ipv6 { 16 } else { 4 })
            .map(|c| match <[u8; 16]>::try_from(c) {
                Ok(b) => IpAddr::from(b),
                Err(_) => IpAddr::from([c[0], c[1], c[2], c[3]]),
            })
            .collect(),
    };
    let Ok(adv) = packet::decode(msg, &rx, &expect) else {
        return;
    };
    // A v2 interval of 0 s decodes, but the encoder sends at least 1 s:
    // no round trip starts there.
    if adv.version == 2 && adv.interval_cs == 0 {
        return;
    }
    let again = packet::encode(&adv, rx.src, rx.dst);
    assert_eq!(
        packet::decode(&again, &rx, &expect).as_ref(),
        Ok(&adv),
        "re-encoding of {adv:?} does not decode back"
    );
    if !ignored_bits(&adv, msg) && again != msg {
        // One's complement has two zeros: a checksum field of 0x0000 and one
        // of 0xffff are both right for a message summing to zero.
        let zeros = [[0, 0], [0xff, 0xff]];
        let (c1, c2) = ([again[6], again[7]], [msg[6], msg[7]]);
        assert!(
            again.len() == msg.len()
                && again[..6] == msg[..6]
                && again[8..] == msg[8..]
                && zeros.contains(&c1)
                && zeros.contains(&c2),
            "{adv:?} re-encodes to other bytes:\n{again:02x?}\n{msg:02x?}"
        );
    }
});

/// The receiver's view and the VRRP message of an IP packet.
fn split(data: &[u8]) -> Option<(Received, &[u8])> {
    match data.first()? >> 4 {
        4 => packet::split_ipv4(data).ok(),
        6 if data.len() >= 40 && data[6] == packet::PROTO => {
            let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
            let addr = |at: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&data[at..at + 16]).unwrap(),
                ))
            };
            let rx = Received {
                src: addr(8),
                dst: addr(24),
                ttl: data[7],
            };
            Some((rx, data.get(40..40 + len)?))
        }
        _ => None,
    }
}

/// Whether `msg` carries something the decoder reads past and the encoder
/// writes as zero: v3's reserved bits above the interval, v2's
/// authentication data without authentication.
fn ignored_bits(adv: &Advert, msg: &[u8]) -> bool {
    if adv.version == 3 {
        return msg[4] >> 4 != 0;
    }
    let auth_data = &msg[msg.len() - packet::AUTH_LEN..];
    adv.auth.is_none() && auth_data.iter().any(|&b| b != 0)
}
