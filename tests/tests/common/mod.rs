//! Shared by the integration tests: frame builders and where the built artefacts are.
#![allow(dead_code, unused_imports)] // each test file uses a different part

pub mod vrrp;

use std::path::PathBuf;
pub use xlb_testbed::frames::{checksum, eth};

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;
pub const ETH_ARP: u16 = 0x0806;
pub use lb_common::{PROTO_TCP as IP_TCP, PROTO_UDP as IP_UDP};
pub const IP_ICMP: u8 = 1;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The agent binary: `XLB_BIN` (set by `cargo xtask test`) or the release build.
pub fn xlb_bin() -> PathBuf {
    let p = std::env::var_os("XLB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/xlb"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask test`",
        p.display()
    );
    p
}

/// Runs `cmd` to its end, fails the test with its stderr unless it
/// succeeded, and returns its stdout.
#[track_caller]
pub fn succeed(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `xlb ARGS` from this process, which must succeed: its stdout.
#[track_caller]
pub fn xlb(args: &[&str]) -> String {
    succeed(std::process::Command::new(xlb_bin()).args(args))
}

/// An 802.1Q-tagged frame.
pub fn eth_vlan(dst: [u8; 6], src: [u8; 6], vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = vid.to_be_bytes().to_vec();
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    eth(dst, src, ETH_VLAN, &inner)
}

/// IPv4 header (with `options`, a multiple of 4 bytes) and payload; `frag` is the flags+offset word.
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let hlen = 20 + options.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h[20..].copy_from_slice(options);
    let c = checksum(0, &h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// A 20-byte TCP SYN header (checksum left zero: the data plane never reads it).
pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// `frame` with its destination and source MACs replaced.
pub fn with_macs(frame: &[u8], dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// Recomputes from scratch the TCP or UDP checksum of an untagged Ethernet
/// frame carrying IPv4 (no options) or IPv6 (no extension headers), so tests
/// can state expected frames independently of the data plane's incremental
/// updates. An IPv4 UDP checksum of 0 ("none") is left alone.
pub fn fix_l4_checksum(frame: &mut [u8]) {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (pseudo, proto, l4) = if ethertype == ETH_IPV4 {
        let ip = &frame[14..34];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let mut p = ip[12..20].to_vec();
        p.extend_from_slice(&[0, ip[9]]);
        p.extend_from_slice(&((total - 20) as u16).to_be_bytes());
        (p, ip[9], 34)
    } else {
        let ip = &frame[14..54];
        let mut p = ip[8..40].to_vec();
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&ip[4..6]);
        p.extend_from_slice(&[0, 0, 0, ip[6]]);
        (p, ip[6], 54)
    };
    let off = if proto == IP_TCP { 16 } else { 6 };
    if proto == IP_UDP && ethertype == ETH_IPV4 && frame[l4 + 6..l4 + 8] == [0, 0] {
        return;
    }
    frame[l4 + off..l4 + off + 2].copy_from_slice(&[0, 0]);
    // The pseudo-header is of even length, so it can simply lead the data.
    let mut c = checksum(0, &[&pseudo[..], &frame[l4..]].concat());
    if proto == IP_UDP && c == 0 {
        c = 0xffff;
    }
    frame[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the frame's IPv4 header checksum and TCP/UDP checksum are right
/// (checked by summing, independently of `fix_l4_checksum`).
pub fn checksums_valid(frame: &[u8]) -> bool {
    let mut copy = frame.to_vec();
    fix_l4_checksum(&mut copy);
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip_ok = ethertype != ETH_IPV4 || checksum(0, &frame[14..34]) == 0;
    ip_ok && copy == frame
}

/// The lab's `peer_xdp`: xlb's pass program on the switch side of the veths,
/// which native XDP on veth needs to deliver the director's XDP_TX frames.
pub fn peer_pass() -> Option<(PathBuf, String)> {
    Some((
        xlb::EBPF_OBJECT_PATH.into(),
        lb_common::PROG_PASS.to_string(),
    ))
}

/// A scratch directory for one test, `xlb-test-<pid>-<tag>` under the
/// system's temp dir, created if missing.
pub fn test_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xlb-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
