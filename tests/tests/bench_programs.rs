//! The bench's own XDP programs (`lb-ebpf/src/bin/bench_floor.rs`), packet
//! by packet through BPF_PROG_TEST_RUN: the live section's figures are only
//! as true as its counter (what it counts, what it lets by) and its floor
//! (the same redirect xlb does, to the right interface and MACs). Runs in a
//! private namespace (a veth pair as the redirect target); nothing is attached.

mod common;

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, xdp::DevMapHash},
    programs::Xdp,
};
use common::*;
use lb_common::{
    PROTO_IPIP,
    bench::{self, Redirect},
};
use std::path::PathBuf;
use xlb_testbed::{netns::Netns, xdp};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const LO: u32 = 1;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const EGRESS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0e];

/// Built by `cargo xtask build-ebpf` (which `cargo xtask test` runs first).
fn object() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/ebpf/bpfel-unknown-none/release/bench-floor");
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask build-ebpf`",
        p.display()
    );
    p
}

fn load(program: &str) -> Ebpf {
    let mut ebpf = Ebpf::load_file(object()).expect("load the bench object");
    let p: &mut Xdp = ebpf.program_mut(program).unwrap().try_into().unwrap();
    p.load().expect("the verifier accepts it");
    ebpf
}

fn run(ebpf: &Ebpf, program: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    let p: &Xdp = ebpf.program(program).unwrap().try_into().unwrap();
    xdp::test_run(p, frame, LO).expect("BPF_PROG_TEST_RUN")
}

fn counted(ebpf: &Ebpf) -> u64 {
    let m: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map(bench::MAP_RX).unwrap()).unwrap();
    m.get(&0, 0).unwrap().iter().sum()
}

/// UDP to `dport` from the generator, padded to the Ethernet minimum.
fn udp_frame(dport: u16) -> Vec<u8> {
    eth(
        DST_MAC,
        SRC_MAC,
        ETH_IPV4,
        &ipv4(
            [10, 201, 1, 2],
            [10, 201, 0, 100],
            IP_UDP,
            &[],
            0,
            &udp(10000, dport, &[0; 18]),
        ),
    )
}

/// `inner` (an IPv4 packet) in IPIP, as xlb TUN sends it.
fn ipip(inner: &[u8]) -> Vec<u8> {
    eth(
        REAL_MAC,
        EGRESS_MAC,
        ETH_IPV4,
        &ipv4([10, 201, 2, 1], [10, 201, 2, 2], PROTO_IPIP, &[], 0, inner),
    )
}

#[test]
fn the_counter_counts_udp_to_the_bench_port_bare_or_in_ipip_and_passes_the_rest() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("bprog").unwrap();
    ns.enter(|| {
        let ebpf = load(bench::PROG_COUNT);
        let bare = udp_frame(bench::PORT);
        let cases: Vec<(&str, Vec<u8>, u32, u64)> = vec![
            (
                "UDP to the bench port (DR, NAT, floor)",
                bare.clone(),
                XDP_DROP,
                1,
            ),
            ("the same in IPIP (TUN)", ipip(&bare[14..]), XDP_DROP, 1),
            ("UDP to another port", udp_frame(53), XDP_PASS, 0),
            (
                "another port in IPIP",
                ipip(&udp_frame(53)[14..]),
                XDP_PASS,
                0,
            ),
            (
                "IPIP cut inside the inner header",
                ipip(&bare[14..14 + 24]),
                XDP_PASS,
                0,
            ),
            (
                "IPv4 with options",
                eth(
                    DST_MAC,
                    SRC_MAC,
                    ETH_IPV4,
                    &ipv4(
                        [10, 0, 0, 1],
                        [10, 0, 0, 2],
                        IP_UDP,
                        &[1, 1, 1, 0],
                        0,
                        &udp(1, bench::PORT, &[0; 14]),
                    ),
                ),
                XDP_PASS,
                0,
            ),
            (
                "ARP",
                eth([0xff; 6], SRC_MAC, ETH_ARP, &[0; 28]),
                XDP_PASS,
                0,
            ),
            (
                "a frame shorter than the headers",
                bare[..40].to_vec(),
                XDP_PASS,
                0,
            ),
        ];
        for (what, frame, action, count) in cases {
            let before = counted(&ebpf);
            let (got, out) = run(&ebpf, bench::PROG_COUNT, &frame);
            assert_eq!(got, action, "{what}");
            assert_eq!(out, frame, "{what}: the counter changes nothing");
            assert_eq!(counted(&ebpf) - before, count, "{what}");
        }
    })
    .unwrap();
}

#[test]
fn the_floor_redirects_to_its_interface_with_its_macs() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("bprog").unwrap();
    ns.run(
        "ip",
        &["link", "add", "fa", "type", "veth", "peer", "name", "fb"],
    )
    .unwrap();
    ns.run("ip", &["link", "set", "fa", "up"]).unwrap();
    ns.run("ip", &["link", "set", "fb", "up"]).unwrap();
    ns.enter(|| {
        // SAFETY: the name is NUL-terminated.
        let fa = unsafe { libc::if_nametoindex(c"fa".as_ptr()) };
        assert_ne!(fa, 0);
        let mut ebpf = load(bench::PROG_REDIRECT);
        let frame = udp_frame(bench::PORT);
        let (got, _) = run(&ebpf, bench::PROG_REDIRECT, &frame);
        assert_eq!(got, XDP_ABORTED, "no target set: nothing to redirect to");
        let mut to: Array<_, Redirect> =
            Array::try_from(ebpf.map_mut(bench::MAP_REDIRECT_TO).unwrap()).unwrap();
        to.set(
            0,
            Redirect {
                dst: REAL_MAC,
                src: EGRESS_MAC,
                ifindex: fa,
            },
            0,
        )
        .unwrap();
        let (got, _) = run(&ebpf, bench::PROG_REDIRECT, &frame);
        assert_eq!(got, XDP_ABORTED, "its interface is not in the device map");
        let mut ports: DevMapHash<_> =
            DevMapHash::try_from(ebpf.map_mut(bench::MAP_TX_PORTS).unwrap()).unwrap();
        ports.insert(fa, fa, None, 0).unwrap();
        let (got, out) = run(&ebpf, bench::PROG_REDIRECT, &frame);
        assert_eq!(got, XDP_REDIRECT);
        assert_eq!(out, with_macs(&frame, REAL_MAC, EGRESS_MAC));
    })
    .unwrap();
}
