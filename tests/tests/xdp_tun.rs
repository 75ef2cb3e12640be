//! TUN forwarding and `xlb decap`, packet by packet through BPF_PROG_TEST_RUN:
//! every inner/outer family pair with IPIP and GUE, the ICMP answers when the
//! tunnelled packet would not fit, and the decap program unwrapping what the
//! director wraps (and leaving everything else alone). Expected frames and
//! checksums are built here, independently of the data plane.

mod common;

use common::*;
use lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, addr_words, flow_hash, method};
use std::net::IpAddr;
use xlb_testbed::{
    netns::Netns,
    xdp::{Decap, Director, LO, TunReal, XDP_ABORTED, XDP_PASS, XDP_TX, tun_output},
};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

const CLIENT4: [u8; 4] = [10, 0, 0, 1];
const VIP4: [u8; 4] = [10, 0, 0, 100];
const SRC4: [u8; 4] = [10, 0, 0, 2];
const REAL4: [u8; 4] = [10, 1, 0, 11];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const REAL6: [u8; 16] = [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const GUE_PORT: u16 = 6080;
const PORT: u16 = 80;
const SPORT: u16 = 40000;
/// DSCP EF: copied from the inner header to the outer.
const TOS: u8 = 0xb8;
const MTU: u16 = 1500;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fam {
    V4,
    V6,
}

fn ip(f: Fam, v4: [u8; 4], v6: [u8; 16]) -> IpAddr {
    match f {
        Fam::V4 => IpAddr::from(v4),
        Fam::V6 => IpAddr::from(v6),
    }
}

/// An IPv4 header with every field chosen, checksum computed here.
fn ipv4_hdr(
    tos: u8,
    id: u16,
    df: bool,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = if df { 0x40 } else { 0 };
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum(0, &h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 header with traffic class and flow label.
fn ipv6_hdr(tc: u8, label: u32, next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut h = ipv6(src, dst, next, payload);
    let vcf = (6u32 << 28) | (u32::from(tc) << 20) | (label & 0xf_ffff);
    h[0..4].copy_from_slice(&vcf.to_be_bytes());
    h
}

/// The client's packet (IP layer): TCP SYN to the VIP with `extra` payload bytes.
fn inner(f: Fam, df: bool, extra: usize) -> Vec<u8> {
    let mut seg = tcp(SPORT, PORT);
    seg.extend(std::iter::repeat_n(0x5a, extra));
    match f {
        Fam::V4 => ipv4_hdr(TOS, 0x1234, df, IP_TCP, CLIENT4, VIP4, &seg),
        Fam::V6 => ipv6_hdr(TOS, 0, IP_TCP, CLIENT6, VIP6, &seg),
    }
}

fn ether_type(f: Fam) -> u16 {
    match f {
        Fam::V4 => ETH_IPV4,
        Fam::V6 => ETH_IPV6,
    }
}

fn client_frame(f: Fam, df: bool, extra: usize) -> Vec<u8> {
    eth(
        DIRECTOR_MAC,
        CLIENT_MAC,
        ether_type(f),
        &inner(f, df, extra),
    )
}

fn flow(f: Fam) -> FlowKey {
    let (src, dst, family) = match f {
        Fam::V4 => (IpAddr::from(CLIENT4), IpAddr::from(VIP4), FAMILY_V4),
        Fam::V6 => (IpAddr::from(CLIENT6), IpAddr::from(VIP6), FAMILY_V6),
    };
    FlowKey {
        src: addr_words(src),
        dst: addr_words(dst),
        sport: SPORT.to_be(),
        dport: PORT.to_be(),
        proto: IP_TCP,
        family,
        _pad: [0; 2],
    }
}

/// What the director must send for the client's `inner` packet of family
/// `inner_f`, to a real of family `outer` (GUE when `gue`).
fn expected_tunnel(inner_f: Fam, outer: Fam, gue: bool, df: bool, inner_pkt: &[u8]) -> Vec<u8> {
    let hash = flow_hash(&flow(inner_f));
    let inner_proto = match inner_f {
        Fam::V4 => 4,
        Fam::V6 => 41,
    };
    let (payload, proto) = if gue {
        let mut g = udp(0xc000 | (hash & 0x3fff) as u16, GUE_PORT, &[]);
        g.extend_from_slice(&[0, inner_proto, 0, 0]);
        g.extend_from_slice(inner_pkt);
        let len = g.len() as u16;
        g[4..6].copy_from_slice(&len.to_be_bytes());
        (g, IP_UDP)
    } else {
        (inner_pkt.to_vec(), inner_proto)
    };
    let packet = match outer {
        Fam::V4 => {
            let id = if inner_f == Fam::V4 { 0x1234 } else { 0 };
            let df = inner_f == Fam::V6 || df;
            ipv4_hdr(TOS, id, df, proto, SRC4, REAL4, &payload)
        }
        Fam::V6 => ipv6_hdr(TOS, hash & 0xf_ffff, proto, SRC6, REAL6, &payload),
    };
    eth(REAL_MAC, DIRECTOR_MAC, ether_type(outer), &packet)
}

fn real(outer: Fam, gue: bool) -> TunReal {
    TunReal {
        addr: ip(outer, REAL4, REAL6),
        mac: REAL_MAC,
        ifindex: LO,
        gue_port: gue.then_some(GUE_PORT),
    }
}

/// A director in a private namespace with one TUN service per VIP family
/// (ids 0: IPv4, 1: IPv6), both to one real of family `outer`.
fn with_director(outer: Fam, gue: bool, mtu: u16, f: impl FnOnce(&mut Director) + Send) {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("tun").unwrap();
    ns.enter(|| {
        let mut d = Director::load(xlb::EBPF_OBJECT).unwrap();
        d.iface(LO, DIRECTOR_MAC, mtu);
        d.tunnel_sources(&[IpAddr::from(SRC4), IpAddr::from(SRC6)])
            .unwrap();
        let r = real(outer, gue);
        d.service(IpAddr::from(VIP4), PORT, IP_TCP, 0, method::TUN)
            .unwrap();
        d.service(IpAddr::from(VIP6), PORT, IP_TCP, 1, method::TUN)
            .unwrap();
        d.tun_real(1, 0, &r, PORT).unwrap();
        d.tun_real(2, 1, &r, PORT).unwrap();
        f(&mut d);
    })
    .unwrap();
}

const ALL: [(Fam, Fam, bool); 8] = [
    (Fam::V4, Fam::V4, false),
    (Fam::V6, Fam::V6, false),
    (Fam::V4, Fam::V6, false),
    (Fam::V6, Fam::V4, false),
    (Fam::V4, Fam::V4, true),
    (Fam::V6, Fam::V4, true),
    (Fam::V4, Fam::V6, true),
    (Fam::V6, Fam::V6, true),
];

#[test]
fn every_family_pair_and_gue_is_encapsulated_exactly() {
    for (inner_f, outer, gue) in ALL {
        with_director(outer, gue, MTU, |d| {
            for df in [true, false] {
                let what = format!("{inner_f:?} in {outer:?}, gue {gue}, df {df}");
                let (action, out) = d.run(&client_frame(inner_f, df, 0), LO).unwrap();
                assert_eq!(action, XDP_TX, "{what}");
                let want = expected_tunnel(inner_f, outer, gue, df, &inner(inner_f, df, 0));
                assert_eq!(out, want, "{what}");
            }
            let g = d.global().unwrap();
            assert_eq!((g.tx, g.error, g.pass), (2, 0, 0));
        });
    }
}

#[test]
fn a_vlan_tag_is_kept_outside_the_tunnel() {
    with_director(Fam::V4, false, MTU, |d| {
        let inner_pkt = inner(Fam::V4, true, 0);
        let tagged = eth_vlan(DIRECTOR_MAC, CLIENT_MAC, 42, ETH_IPV4, &inner_pkt);
        let (action, out) = d.run(&tagged, LO).unwrap();
        assert_eq!(action, XDP_TX);
        let plain = expected_tunnel(Fam::V4, Fam::V4, false, true, &inner_pkt);
        let want = eth_vlan(REAL_MAC, DIRECTOR_MAC, 42, ETH_IPV4, &plain[14..]);
        assert_eq!(out, want);
    });
}

#[test]
fn without_a_tunnel_source_nothing_is_sent() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("tun").unwrap();
    ns.enter(|| {
        let mut d = Director::load(xlb::EBPF_OBJECT).unwrap();
        d.iface(LO, DIRECTOR_MAC, MTU);
        d.service(IpAddr::from(VIP4), PORT, IP_TCP, 0, method::TUN)
            .unwrap();
        d.tun_real(1, 0, &real(Fam::V4, false), PORT).unwrap();
        let (action, _) = d.run(&client_frame(Fam::V4, true, 0), LO).unwrap();
        assert_eq!(action, XDP_ABORTED);
        assert_eq!(d.global().unwrap().error, 1);
    })
    .unwrap();
}

/// A router's ICMP error to the VIP about the VIP's reply to the client
/// (IP layer): fragmentation needed / packet too big, quoting the reply.
fn icmp_error_to_vip(f: Fam, df: bool) -> Vec<u8> {
    const ROUTER4: [u8; 4] = [192, 0, 2, 1];
    const ROUTER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let reply = tcp(PORT, SPORT);
    match f {
        Fam::V4 => {
            let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
            m.extend_from_slice(&ipv4_hdr(0, 1, true, IP_TCP, VIP4, CLIENT4, &reply));
            let c = checksum(0, &m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            ipv4_hdr(TOS, 0x1234, df, 1, ROUTER4, VIP4, &m)
        }
        Fam::V6 => {
            let mut m = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
            m.extend_from_slice(&ipv6(VIP6, CLIENT6, IP_TCP, &reply));
            let mut pseudo = [ROUTER6, VIP6].concat();
            pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            let c = checksum(0, &[&pseudo[..], &m[..]].concat());
            m[2..4].copy_from_slice(&c.to_be_bytes());
            ipv6_hdr(TOS, 0, 58, ROUTER6, VIP6, &m)
        }
    }
}

#[test]
fn icmp_errors_about_a_tunnelled_flow_are_tunnelled_to_its_real() {
    for (inner_f, outer, gue) in ALL {
        with_director(outer, gue, MTU, |d| {
            let what = format!("{inner_f:?} in {outer:?}, gue {gue}");
            let error = icmp_error_to_vip(inner_f, true);
            let frame = eth(DIRECTOR_MAC, CLIENT_MAC, ether_type(inner_f), &error);
            // No flow yet: the stack's.
            assert_eq!(
                d.run(&frame, LO).unwrap(),
                (XDP_PASS, frame.clone()),
                "{what}"
            );
            d.run(&client_frame(inner_f, true, 0), LO).unwrap();
            // The flow's real gets it, wrapped as the flow's packets are
            // (same flow hash, so the same GUE port and flow label).
            let (action, out) = d.run(&frame, LO).unwrap();
            assert_eq!(action, XDP_TX, "{what}");
            assert_eq!(
                out,
                expected_tunnel(inner_f, outer, gue, true, &error),
                "{what}"
            );
        });
    }
}

/// ICMP "fragmentation needed" from the VIP to the client quoting 68 bytes.
fn expected_frag_needed(original: &[u8], mtu: u16) -> Vec<u8> {
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&original[..68]);
    let c = checksum(0, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let packet = ipv4_hdr(0, 0, false, IP_ICMP, VIP4, CLIENT4, &icmp);
    eth(CLIENT_MAC, DIRECTOR_MAC, ETH_IPV4, &packet)
}

/// ICMPv6 "packet too big" from the VIP to the client quoting 128 bytes.
fn expected_packet_too_big(original: &[u8], mtu: u32) -> Vec<u8> {
    let mut icmp = vec![2, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&original[..128]);
    let mut pseudo = VIP6.to_vec();
    pseudo.extend_from_slice(&CLIENT6);
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let c = checksum(0, &pseudo);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    eth(
        CLIENT_MAC,
        DIRECTOR_MAC,
        ETH_IPV6,
        &ipv6(VIP6, CLIENT6, 58, &icmp),
    )
}

#[test]
fn too_big_for_the_tunnel_answers_the_client_with_icmp() {
    // IPIP over IPv4: 20 bytes of overhead, so 1481..1500-byte packets overflow.
    with_director(Fam::V4, false, MTU, |d| {
        let fits = client_frame(Fam::V4, true, 1480 - 40);
        assert_eq!(d.run(&fits, LO).unwrap().0, XDP_TX, "exactly the MTU fits");
        let big = inner(Fam::V4, true, 1481 - 40);
        let (action, out) = d
            .run(&eth(DIRECTOR_MAC, CLIENT_MAC, ETH_IPV4, &big), LO)
            .unwrap();
        assert_eq!(action, XDP_TX);
        assert_eq!(out, expected_frag_needed(&big, 1480));

        let big6 = inner(Fam::V6, true, 1481 - 60);
        let (action, out) = d
            .run(&eth(DIRECTOR_MAC, CLIENT_MAC, ETH_IPV6, &big6), LO)
            .unwrap();
        assert_eq!(action, XDP_TX);
        assert_eq!(out, expected_packet_too_big(&big6, 1480));
        let g = d.global().unwrap();
        assert_eq!((g.too_big, g.tx), (2, 3));
    });
    // GUE over IPv6: 40 + 8 + 4 = 52 bytes of overhead.
    with_director(Fam::V6, true, MTU, |d| {
        let big6 = inner(Fam::V6, true, 1449 - 60);
        let (action, out) = d
            .run(&eth(DIRECTOR_MAC, CLIENT_MAC, ETH_IPV6, &big6), LO)
            .unwrap();
        assert_eq!(action, XDP_TX);
        assert_eq!(out, expected_packet_too_big(&big6, 1448));
        let big = inner(Fam::V4, true, 1449 - 40);
        let (action, out) = d
            .run(&eth(DIRECTOR_MAC, CLIENT_MAC, ETH_IPV4, &big), LO)
            .unwrap();
        assert_eq!(action, XDP_TX);
        assert_eq!(out, expected_frag_needed(&big, 1448));
    });
}

#[test]
fn ipv4_without_df_that_does_not_fit_goes_to_the_stack() {
    with_director(Fam::V4, false, MTU, |d| {
        let big = client_frame(Fam::V4, false, 1481 - 40);
        let (action, out) = d.run(&big, LO).unwrap();
        assert_eq!(action, XDP_PASS);
        assert_eq!(out, big);
        let g = d.global().unwrap();
        assert_eq!((g.pass, g.too_big, g.tx), (1, 0, 0));
    });
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
                &real(Fam::V4, false),
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
    eth(REAL_MAC, DIRECTOR_MAC, ether_type(inner_f), inner_pkt)
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
            REAL_MAC,
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
            REAL_MAC,
            DIRECTOR_MAC,
            ETH_IPV4,
            &ipv4_hdr(0, 0, true, IP_UDP, SRC4, REAL4, &udp(50000, GUE_PORT, &g)),
        );
        assert_eq!(d.run(&opts).unwrap(), (XDP_PASS, unwrapped(Fam::V4, &pkt)));
        // A tag stays in front of the unwrapped packet.
        let wrapped = expected_tunnel(Fam::V4, Fam::V4, false, true, &pkt);
        let tagged = eth_vlan(REAL_MAC, DIRECTOR_MAC, 7, ETH_IPV4, &wrapped[14..]);
        assert_eq!(
            d.run(&tagged).unwrap(),
            (
                XDP_PASS,
                eth_vlan(REAL_MAC, DIRECTOR_MAC, 7, ETH_IPV4, &pkt)
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
                eth_vlan(REAL_MAC, DIRECTOR_MAC, 1, ETH_IPV4, &[])[..16].to_vec(),
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
