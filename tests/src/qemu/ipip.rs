//! IPIP decapsulation by a real kernel, as an LVS-TUN real server does it:
//! frames are injected on one end of a veth pair inside a guest; the other
//! end sits in the guest namespace `rs`, which holds the fallback `tunl0`
//! device (it accepts IPIP from any source), the VIP on `lo`, rp_filter off
//! on `tunl0`, and a UDP receiver on the VIP that reports what arrives.
//!
//! Injected frames must be addressed to [`REAL_MAC`] / [`REAL`]; a frame the
//! kernel decapsulates and delivers to the receiver shows up in
//! [`Delivery::received`].

use super::{Guest, GuestOutput};
use crate::frames;
use anyhow::{Context, Result, bail};
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    time::Duration,
};

/// The real server's address inside the guest: the outer destination.
pub const REAL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// The real server's MAC (the veth end in its namespace).
pub const REAL_MAC: [u8; 6] = [0x02, 0x78, 0x6c, 0x62, 0x00, 0x02];
/// The injecting side's address and MAC (the real server's default gateway).
pub const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0x78, 0x6c, 0x62, 0x00, 0x01];
/// The receiver gives up this long after it is ready if the end-of-test frame never comes.
const RECV_TIMEOUT_SECS: u32 = 10;
/// The last frame injected; when it arrives, everything before it has been processed.
const SENTINEL: &[u8] = b"xlb-ipip-sentinel";

/// The test binaries the guest runs (built from tests/src/bin; in an
/// integration test, `env!("CARGO_BIN_EXE_xlb-inject")` and
/// `env!("CARGO_BIN_EXE_xlb-udp-recv")`).
pub struct Tools<'a> {
    pub inject: &'a Path,
    pub udp_recv: &'a Path,
}

/// A datagram the receiver on the VIP got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender as the receiver saw it (the inner source).
    pub from: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// What arrived, and the guest's output for failure messages.
pub struct Delivery {
    pub received: Vec<Datagram>,
    pub guest: GuestOutput,
}

/// An Ethernet frame from the director side to the real server carrying
/// `inner` (an IPv4 packet) in IPIP, outer source `outer_src`.
pub fn frame_to_real(outer_src: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    frames::eth(
        REAL_MAC,
        DIRECTOR_MAC,
        frames::ETH_IPV4,
        &frames::ipip(outer_src, REAL, inner),
    )
}

/// Boots a guest, injects `frames` (whole Ethernet frames) in order toward
/// the real server, whose UDP receiver listens on `vip`, and returns what
/// the receiver got. A final frame of its own (IPIP to `vip`) marks the end,
/// so the answer is complete, and an error says when even that one does not
/// arrive (the guest's tunnel itself is broken).
pub fn ipip_delivers(tools: &Tools, vip: SocketAddrV4, frames: &[Vec<u8>]) -> Result<Delivery> {
    let sentinel = frame_to_real(
        DIRECTOR,
        &frames::udp4(SocketAddrV4::new(DIRECTOR, 9), vip, SENTINEL),
    );
    let hex_lines: String = frames
        .iter()
        .chain(std::iter::once(&sentinel))
        .map(|f| hex::encode(f) + "\n")
        .collect();
    let guest = Guest::new(script(vip))
        .program("ip")
        .program(tools.inject)
        .program(tools.udp_recv)
        .modules(&["veth", "ipip"])
        .data("/frames.hex", hex_lines)
        .timeout(Duration::from_secs(60))
        .run()?;
    if guest.status != 0 {
        bail!(
            "the guest's IPIP test failed with status {} (2: the end-of-test frame never reached the receiver)\n{guest}",
            guest.status
        );
    }
    let received = parse_received(&guest.stdout).with_context(|| guest.to_string())?;
    Ok(Delivery { received, guest })
}

/// The guest's job: the topology, the receiver, the injection.
fn script(vip: SocketAddrV4) -> String {
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    format!(
        r#"set -ex
# Only the receiver's report goes to stdout (fd 3); everything else to the console.
exec 3>&1 1>&2
ip netns add rs
ip link add xlb-d type veth peer name xlb-r netns rs
ip link set xlb-d address {director_mac}
ip addr add {director}/24 dev xlb-d
ip link set xlb-d up
ip -n rs link set xlb-r address {real_mac}
ip -n rs addr add {real}/24 dev xlb-r
ip -n rs link set xlb-r up
ip -n rs link set lo up
ip -n rs addr add {vip_ip}/32 dev lo
ip -n rs link set tunl0 up
ip -n rs route add default via {director}
# Reverse-path filtering drops everything arriving on a device without an
# address (tunl0 here), even in loose mode: off on tunl0, as LVS-TUN real
# servers run it (the kernel uses the larger of `all` and the device's value).
ip netns exec rs sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0
ip netns exec rs xlb-udp-recv {vip} /tmp/recv.ready {sentinel} {timeout} > /tmp/recv.out &
recv=$!
i=0
while [ ! -e /tmp/recv.ready ]; do
    i=$((i + 1))
    [ $i -le 100 ]
    sleep 0.1
done
xlb-inject xlb-d /frames.hex
set +e
wait $recv
rc=$?
cat /tmp/recv.out >&3
if [ $rc != 0 ]; then
    # What the real server's kernel did with the frames, for the failure message.
    ip -n rs link show
    ip netns exec rs cat /proc/net/dev /proc/net/snmp /proc/net/netstat
fi
exit $rc
"#,
        director_mac = mac(DIRECTOR_MAC),
        director = DIRECTOR,
        real_mac = mac(REAL_MAC),
        real = REAL,
        vip_ip = vip.ip(),
        sentinel = hex::encode(SENTINEL),
        timeout = RECV_TIMEOUT_SECS,
    )
}

/// `xlb-udp-recv`'s lines: `<source addr:port> <payload hex>`.
fn parse_received(stdout: &str) -> Result<Vec<Datagram>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (from, payload) = line
                .split_once(' ')
                .with_context(|| format!("unexpected receiver line {line:?}"))?;
            Ok(Datagram {
                from: from
                    .parse()
                    .with_context(|| format!("bad source in {line:?}"))?,
                payload: hex::decode(payload.trim())
                    .with_context(|| format!("bad payload in {line:?}"))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_lines_parse() {
        let got = parse_received("198.51.100.7:40000 6869\n10.0.0.1:9 \n").unwrap();
        assert_eq!(
            got,
            [
                Datagram {
                    from: "198.51.100.7:40000".parse().unwrap(),
                    payload: b"hi".to_vec()
                },
                Datagram {
                    from: "10.0.0.1:9".parse().unwrap(),
                    payload: Vec::new()
                }
            ]
        );
        assert!(parse_received("nonsense").is_err());
    }

    #[test]
    fn frames_to_the_real_carry_ipip() {
        let f = frame_to_real(DIRECTOR, &[0x45; 20]);
        assert_eq!(&f[0..6], &REAL_MAC);
        assert_eq!(&f[12..14], &frames::ETH_IPV4.to_be_bytes());
        assert_eq!(f[14 + 9], frames::IP_IPIP);
        assert_eq!(&f[14 + 16..14 + 20], &REAL.octets());
    }
}
