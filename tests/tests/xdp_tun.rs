//! TUN forwarding and `xlb decap`, packet by packet through BPF_PROG_TEST_RUN.
//! The director's TUN cases (every inner/outer family pair with IPIP and
//! GUE, DF set and clear, ICMP errors of tunnelled flows, the ICMP answers
//! when the tunnelled packet would not fit) are the TUN rows of the fixture
//! table (`xlb_testbed::fixtures::tun`); the decap program is tested here
//! unwrapping the frames those rows expect from the director (and leaving
//! everything else alone). Expected frames and checksums are built
//! independently of the data plane.

mod common;

use common::*;
use std::net::IpAddr;
use xlb_testbed::{
    fixtures::{
        self, CLIENT4, DIRECTOR_MAC, REAL_A_MAC, VIP4, VIP6,
        tun::{
            ALL, Fam, GUE_PORT, MTU, PORT, REAL4, SPORT, SRC4, client_frame, ether_type,
            expected_tunnel, inner, ipv4_hdr,
        },
    },
    netns::Netns,
    xdp::{Decap, LO, TunReal, XDP_PASS, XDP_TX, tun_output},
};

#[test]
fn every_tun_row_of_the_fixture_table() {
    let rows = fixtures::tun::rows();
    let failures = fixtures::run(xlb::EBPF_OBJECT, &rows).unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn the_testbed_helper_gives_the_same_frames() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("tun").unwrap();
    let out = ns
        .enter(|| {
            tun_output(
                xlb::EBPF_OBJECT,
                (IpAddr::from(VIP4), PORT, IP_TCP),
                &TunReal {
                    addr: IpAddr::from(REAL4),
                    mac: REAL_A_MAC,
                    ifindex: LO,
                    gue_port: None,
                },
                IpAddr::from(SRC4),
                (DIRECTOR_MAC, MTU),
                &[client_frame(Fam::V4, true, 0)],
            )
        })
        .unwrap()
        .unwrap();
    let want = expected_tunnel(Fam::V4, Fam::V4, false, true, &inner(Fam::V4, true, 0));
    assert_eq!(out, vec![(XDP_TX, want)]);
}

/// A decap program in a private namespace for the VIPs of both families.
fn with_decap(gue: Option<u16>, f: impl FnOnce(&Decap) + Send) {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("decap").unwrap();
    ns.enter(|| {
        let mut d = Decap::load(xlb::DECAP_OBJECT, gue).unwrap();
        d.vip(IpAddr::from(VIP4)).unwrap();
        d.vip(IpAddr::from(VIP6)).unwrap();
        f(&d);
    })
    .unwrap();
}

/// The frame the real's stack must see: the client's packet behind the tunnel's link header.
fn unwrapped(inner_f: Fam, inner_pkt: &[u8]) -> Vec<u8> {
    eth(REAL_A_MAC, DIRECTOR_MAC, ether_type(inner_f), inner_pkt)
}

#[test]
fn decap_unwraps_every_encapsulation() {
    with_decap(Some(GUE_PORT), |d| {
        for (inner_f, outer, gue) in ALL {
            let pkt = inner(inner_f, true, 7);
            let wrapped = expected_tunnel(inner_f, outer, gue, true, &pkt);
            let (action, out) = d.run(&wrapped).unwrap();
            assert_eq!(action, XDP_PASS);
            assert_eq!(
                out,
                unwrapped(inner_f, &pkt),
                "{inner_f:?} in {outer:?}, gue {gue}"
            );
        }
        // GUE variant 1: the IP header right after UDP.
        let pkt = inner(Fam::V6, true, 0);
        let v1 = eth(
            REAL_A_MAC,
            DIRECTOR_MAC,
            ETH_IPV4,
            &ipv4_hdr(0, 0, true, IP_UDP, SRC4, REAL4, &udp(50000, GUE_PORT, &pkt)),
        );
        assert_eq!(d.run(&v1).unwrap(), (XDP_PASS, unwrapped(Fam::V6, &pkt)));
        // GUE with 8 bytes of options (hlen 2) is skipped over.
        let pkt = inner(Fam::V4, true, 0);
        let mut g = vec![0x02, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        g.extend_from_slice(&pkt);
        let opts = eth(
            REAL_A_MAC,
            DIRECTOR_MAC,
            ETH_IPV4,
            &ipv4_hdr(0, 0, true, IP_UDP, SRC4, REAL4, &udp(50000, GUE_PORT, &g)),
        );
        assert_eq!(d.run(&opts).unwrap(), (XDP_PASS, unwrapped(Fam::V4, &pkt)));
        // A tag stays in front of the unwrapped packet.
        let wrapped = expected_tunnel(Fam::V4, Fam::V4, false, true, &pkt);
        let tagged = eth_vlan(REAL_A_MAC, DIRECTOR_MAC, 7, ETH_IPV4, &wrapped[14..]);
        assert_eq!(
            d.run(&tagged).unwrap(),
            (
                XDP_PASS,
                eth_vlan(REAL_A_MAC, DIRECTOR_MAC, 7, ETH_IPV4, &pkt)
            )
        );
    });
}

#[test]
fn decap_leaves_everything_else_untouched() {
    with_decap(Some(GUE_PORT), |d| {
        let other_dst = {
            let mut seg = tcp(SPORT, PORT);
            seg.push(0);
            ipv4_hdr(0, 1, true, IP_TCP, CLIENT4, [10, 0, 0, 99], &seg)
        };
        let not_vip = expected_tunnel(Fam::V4, Fam::V4, false, true, &other_dst);
        let plain = client_frame(Fam::V4, true, 0);
        let mut other_port =
            expected_tunnel(Fam::V4, Fam::V4, true, true, &inner(Fam::V4, true, 0));
        other_port[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&6081u16.to_be_bytes());
        let mut control = expected_tunnel(Fam::V4, Fam::V4, true, true, &inner(Fam::V4, true, 0));
        control[14 + 20 + 8] = 0x20; // GUE control message
        let mut fragment = expected_tunnel(Fam::V4, Fam::V4, false, true, &inner(Fam::V4, true, 0));
        fragment[14 + 6] = 0x20; // MF
        let mut version = expected_tunnel(Fam::V4, Fam::V6, false, true, &inner(Fam::V4, true, 0));
        version[14 + 40] = 0x65; // inner says IPv6 inside an IPv4 tunnel
        let good = expected_tunnel(Fam::V4, Fam::V4, false, true, &inner(Fam::V4, true, 0));
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44;
        let good6 = expected_tunnel(Fam::V6, Fam::V6, true, true, &inner(Fam::V6, true, 0));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("inner destination not a VIP", not_vip),
            ("not a tunnel", plain),
            ("GUE on another port", other_port),
            ("GUE control message", control),
            ("outer fragment", fragment),
            ("inner version mismatch", version),
            ("outer IHL below 5", bad_ihl),
            ("Ethernet header only", good[..14].to_vec()),
            ("truncated outer IPv4", good[..14 + 12].to_vec()),
            ("truncated inner IPv4", good[..14 + 20 + 10].to_vec()),
            ("truncated outer IPv6", good6[..14 + 30].to_vec()),
            ("truncated UDP", good6[..14 + 40 + 6].to_vec()),
            ("truncated GUE header", good6[..14 + 40 + 8 + 2].to_vec()),
            ("truncated inner IPv6", good6[..14 + 40 + 12 + 20].to_vec()),
            (
                "truncated VLAN tag",
                eth_vlan(REAL_A_MAC, DIRECTOR_MAC, 1, ETH_IPV4, &[])[..16].to_vec(),
            ),
        ];
        for (what, frame) in cases {
            assert_eq!(d.run(&frame).unwrap(), (XDP_PASS, frame.clone()), "{what}");
        }
    });
    // Without --gue-port, GUE is just UDP.
    with_decap(None, |d| {
        let gue = expected_tunnel(Fam::V4, Fam::V4, true, true, &inner(Fam::V4, true, 0));
        assert_eq!(d.run(&gue).unwrap(), (XDP_PASS, gue.clone()));
    });
}
