//! The director program, packet by packet, through BPF_PROG_TEST_RUN:
//! each fixture is an input frame, the XDP action expected, and the frame
//! expected out. Runs inside a private network namespace (its `lo` is the
//! ingress device, a veth pair the redirect target); nothing is attached.

mod common;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, xdp::DevMapHash},
    programs::Xdp,
};
use common::*;
use lb_common::{
    ConnCounts, Counters, FAMILY_V4, FAMILY_V6, FlowKey, FlowState, GlobalCounters, PROG_DIRECTOR,
    PROG_UPKEEP, REAL_F_PRESENT, REAL_F_REACHABLE, RealConns, RealInfo, SERVICE_F_ACTIVE,
    SETTINGS_F_CONN_REUSE, SETTINGS_F_CONN_REUSE_FIN_WAIT, SETTINGS_F_NAT, ServiceInfo, ServiceKey,
    Settings, globals, map_names, method, nat_ports, sched, upkeep,
};
use xlb_testbed::{netns::Netns, xdp};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const TABLE: u32 = 13;
const LO: u32 = 1;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const EGRESS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const REAL_A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const REAL_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const REAL_C_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];

const CLIENT4: [u8; 4] = [10, 0, 0, 1];
const VIP4: [u8; 4] = [10, 0, 0, 100];
const OTHER4: [u8; 4] = [10, 0, 0, 99];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

fn addr4(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

fn addr6(a: [u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| {
        u32::from_ne_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
    })
}

/// The loaded director with helpers to program its maps and run frames.
struct Director {
    ebpf: Ebpf,
    /// ifindex of the veth used as a redirect target.
    other_if: u32,
}

impl Director {
    fn load(other_if: u32) -> Director {
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
            .map_max_entries(map_names::MAGLEV, TABLE * lb_common::defaults::MAX_SERVICES)
            .map_max_entries(map_names::CONNTRACK, 4096)
            .load(xlb::EBPF_OBJECT)
            .expect("load object");
        let prog: &mut Xdp = ebpf.program_mut(PROG_DIRECTOR).unwrap().try_into().unwrap();
        prog.load().expect("verifier accepts the director");
        let upkeep: &mut Xdp = ebpf.program_mut(PROG_UPKEEP).unwrap().try_into().unwrap();
        upkeep.load().expect("verifier accepts the upkeep program");
        let mut d = Director { ebpf, other_if };
        let mut s: Array<_, Settings> =
            Array::try_from(d.ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
        s.set(0, Settings::ipvs_defaults(), 0).unwrap();
        let mut ports: DevMapHash<_> =
            DevMapHash::try_from(d.ebpf.map_mut(map_names::TX_PORTS).unwrap()).unwrap();
        ports.insert(other_if, other_if, None, 0).unwrap();
        d
    }

    /// The MAC of interface `ifindex` (`LO` or the other one), which the
    /// agent writes into each real it reaches through it.
    fn iface_mac(&self, ifindex: u32) -> [u8; 6] {
        if ifindex == self.other_if {
            EGRESS_MAC
        } else {
            DIRECTOR_MAC
        }
    }

    fn service(&mut self, addr: [u32; 4], family: u8, port: u16, proto: u8, id: u32, active: bool) {
        let key = ServiceKey {
            addr,
            port: port.to_be(),
            proto,
            family,
        };
        let info = ServiceInfo {
            id,
            flags: if active { SERVICE_F_ACTIVE } else { 0 },
            sched: sched::MH,
            method: method::DR,
            ..ServiceInfo::default()
        };
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(self.ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        m.insert(key, info, 0).unwrap();
    }

    /// A service forwarding with `method` (`service` is a DR one).
    #[allow(clippy::too_many_arguments)]
    fn service_with(
        &mut self,
        addr: [u32; 4],
        family: u8,
        port: u16,
        proto: u8,
        id: u32,
        method: u8,
    ) {
        self.service(addr, family, port, proto, id, true);
        let key = ServiceKey {
            addr,
            port: port.to_be(),
            proto,
            family,
        };
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(self.ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        let mut info = m.get(&key, 0).unwrap();
        info.method = method;
        m.insert(key, info, 0).unwrap();
    }

    /// A NAT real server `addr`:`port`, next hop left to the FIB.
    fn nat_real(&mut self, id: u32, service_id: u32, addr: [u32; 4], family: u8, port: u16) {
        let info = RealInfo {
            addr,
            port: port.to_be(),
            family,
            method: method::NAT,
            weight: 1,
            service_id,
            flags: REAL_F_PRESENT | REAL_F_REACHABLE,
            ..RealInfo::default()
        };
        let mut m: Array<_, RealInfo> =
            Array::try_from(self.ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
        m.set(id, info, 0).unwrap();
    }

    /// Sets or clears `SETTINGS_F_NAT`, which the agent keeps set while it
    /// has NAT services.
    fn nat_flag(&mut self, on: bool) {
        let mut m: Array<_, Settings> =
            Array::try_from(self.ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
        let mut settings = m.get(&0, 0).unwrap();
        settings.flags = if on {
            settings.flags | SETTINGS_F_NAT
        } else {
            settings.flags & !SETTINGS_F_NAT
        };
        m.set(0, settings, 0).unwrap();
    }

    fn conns(&self, real_id: u32) -> ConnCounts {
        let m: Array<&MapData, RealConns> =
            Array::try_from(self.ebpf.map(map_names::REAL_CONNS).unwrap()).unwrap();
        m.get(&real_id, 0).unwrap().live
    }

    fn nat_reply(&self, key: &FlowKey) -> Option<FlowKey> {
        let m: HashMap<&MapData, FlowKey, FlowKey> =
            HashMap::try_from(self.ebpf.map(map_names::NAT_REPLIES).unwrap()).unwrap();
        m.get(key, 0).ok()
    }

    fn real(&mut self, id: u32, service_id: u32, mac: [u8; 6], ifindex: u32, reachable: bool) {
        let info = RealInfo {
            method: method::DR,
            mac,
            ifindex,
            src_mac: self.iface_mac(ifindex),
            mtu: 1500,
            weight: 1,
            service_id,
            flags: REAL_F_PRESENT | if reachable { REAL_F_REACHABLE } else { 0 },
            ..RealInfo::default()
        };
        let mut m: Array<_, RealInfo> =
            Array::try_from(self.ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
        m.set(id, info, 0).unwrap();
    }

    /// Points every slot of `service_id`'s Maglev table at `real_id`.
    fn table(&mut self, service_id: u32, real_id: u32) {
        let mut m: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut(map_names::MAGLEV).unwrap()).unwrap();
        for slot in 0..TABLE {
            m.set(service_id * TABLE + slot, real_id, 0).unwrap();
        }
    }

    fn run(&self, frame: &[u8], ingress: u32) -> (u32, Vec<u8>) {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_DIRECTOR)
            .unwrap()
            .try_into()
            .unwrap();
        xdp::test_run(prog, frame, ingress).expect("BPF_PROG_TEST_RUN")
    }

    fn conntrack(&self, key: &FlowKey) -> Option<FlowState> {
        let m: HashMap<&MapData, FlowKey, FlowState> =
            HashMap::try_from(self.ebpf.map(map_names::CONNTRACK).unwrap()).unwrap();
        m.get(key, 0).ok()
    }

    fn counters(&self, name: &str, index: u32) -> Counters {
        let m: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(self.ebpf.map(name).unwrap()).unwrap();
        m.get(&index, 0)
            .unwrap()
            .iter()
            .fold(Counters::default(), |a, c| a + *c)
    }

    fn global(&self) -> GlobalCounters {
        let m: PerCpuArray<&MapData, GlobalCounters> =
            PerCpuArray::try_from(self.ebpf.map(map_names::GLOBAL_STATS).unwrap()).unwrap();
        m.get(&0, 0)
            .unwrap()
            .iter()
            .fold(GlobalCounters::default(), |a, c| a + *c)
    }
}

/// Runs `f` against a freshly loaded director inside a private namespace.
fn with_director(f: impl FnOnce(&mut Director) + Send) {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("fix").unwrap();
    ns.run(
        "ip",
        &[
            "link", "add", "name", "fa", "type", "veth", "peer", "name", "fb",
        ],
    )
    .unwrap();
    ns.run("ip", &["link", "set", "fa", "up"]).unwrap();
    ns.run("ip", &["link", "set", "fb", "up"]).unwrap();
    ns.enter(|| {
        // SAFETY: the name is NUL-terminated.
        let other = unsafe { libc::if_nametoindex(c"fa".as_ptr()) };
        assert_ne!(other, 0);
        let mut d = Director::load(other);
        f(&mut d);
    })
    .unwrap();
}

/// The standard setup: TCP 80 and UDP 53 on VIP4 (services 0 and 1), TCP 80 on
/// VIP6 (service 2), each with its whole table on one real reached via `lo`.
fn standard(d: &mut Director) {
    d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, true);
    d.service(addr4(VIP4), FAMILY_V4, 53, IP_UDP, 1, true);
    d.service(addr6(VIP6), FAMILY_V6, 80, IP_TCP, 2, true);
    d.real(1, 0, REAL_A_MAC, LO, true);
    d.real(2, 1, REAL_B_MAC, LO, true);
    d.real(3, 2, REAL_C_MAC, LO, true);
    d.table(0, 1);
    d.table(1, 2);
    d.table(2, 3);
}

struct Fixture {
    what: &'static str,
    input: Vec<u8>,
    action: u32,
    /// `None`: the frame must come out unchanged.
    output: Option<Vec<u8>>,
}

fn run_fixtures(d: &Director, fixtures: &[Fixture]) {
    for fx in fixtures {
        let (action, out) = d.run(&fx.input, LO);
        assert_eq!(action, fx.action, "{}: action", fx.what);
        let want = fx.output.as_deref().unwrap_or(&fx.input);
        assert_eq!(out, want, "{}: output frame", fx.what);
    }
}

fn tcp4(dst: [u8; 4], dport: u16) -> Vec<u8> {
    eth(
        DIRECTOR_MAC,
        CLIENT_MAC,
        ETH_IPV4,
        &ipv4(CLIENT4, dst, IP_TCP, &[], 0, &tcp(40000, dport)),
    )
}

#[test]
fn direct_routing_rewrites_only_the_macs() {
    with_director(|d| {
        standard(d);
        let t4 = tcp4(VIP4, 80);
        let u4 = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_UDP, &[], 0, &udp(5353, 53, b"query")),
        );
        let t6 = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, IP_TCP, &tcp(40000, 80)),
        );
        let opts = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(
                CLIENT4,
                VIP4,
                IP_TCP,
                &[0x01, 0x01, 0x01, 0x00],
                0,
                &tcp(40001, 80),
            ),
        );
        let tagged = eth_vlan(
            DIRECTOR_MAC,
            CLIENT_MAC,
            42,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_TCP, &[], 0, &tcp(40002, 80)),
        );
        run_fixtures(
            d,
            &[
                Fixture {
                    what: "TCP/IPv4",
                    output: Some(with_macs(&t4, REAL_A_MAC, DIRECTOR_MAC)),
                    input: t4,
                    action: XDP_TX,
                },
                Fixture {
                    what: "UDP/IPv4",
                    output: Some(with_macs(&u4, REAL_B_MAC, DIRECTOR_MAC)),
                    input: u4,
                    action: XDP_TX,
                },
                Fixture {
                    what: "TCP/IPv6",
                    output: Some(with_macs(&t6, REAL_C_MAC, DIRECTOR_MAC)),
                    input: t6,
                    action: XDP_TX,
                },
                Fixture {
                    what: "IPv4 with options",
                    output: Some(with_macs(&opts, REAL_A_MAC, DIRECTOR_MAC)),
                    input: opts,
                    action: XDP_TX,
                },
                Fixture {
                    what: "802.1Q tag kept",
                    output: Some(with_macs(&tagged, REAL_A_MAC, DIRECTOR_MAC)),
                    input: tagged,
                    action: XDP_TX,
                },
            ],
        );
        let g = d.global();
        assert_eq!((g.tx, g.pass, g.drop, g.error), (5, 0, 0, 0));
    });
}

#[test]
fn udp_over_ipv6_is_forwarded() {
    with_director(|d| {
        d.service(addr6(VIP6), FAMILY_V6, 53, IP_UDP, 0, true);
        d.real(1, 0, REAL_B_MAC, LO, true);
        d.table(0, 1);
        let f = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, IP_UDP, &udp(5353, 53, b"q")),
        );
        run_fixtures(
            d,
            &[Fixture {
                what: "UDP/IPv6",
                output: Some(with_macs(&f, REAL_B_MAC, DIRECTOR_MAC)),
                input: f,
                action: XDP_TX,
            }],
        );
    });
}

#[test]
fn another_egress_interface_is_a_redirect() {
    with_director(|d| {
        d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, true);
        d.real(1, 0, REAL_A_MAC, d.other_if, true);
        d.table(0, 1);
        let f = tcp4(VIP4, 80);
        run_fixtures(
            d,
            &[Fixture {
                what: "redirect",
                output: Some(with_macs(&f, REAL_A_MAC, EGRESS_MAC)),
                input: f,
                action: XDP_REDIRECT,
            }],
        );
        assert_eq!(d.global().redirect, 1);
    });
}

#[test]
fn traffic_that_is_not_a_service_passes_untouched() {
    with_director(|d| {
        standard(d);
        let arp = eth([0xff; 6], CLIENT_MAC, ETH_ARP, &[0u8; 28]);
        let icmp = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_ICMP, &[], 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
        );
        let udp_on_tcp_port = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_UDP, &[], 0, &udp(1, 80, b"x")),
        );
        let qinq = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_QINQ,
            &[0, 1, 0x81, 0, 0, 2, 0x08, 0],
        );
        run_fixtures(
            d,
            &[
                Fixture {
                    what: "other port",
                    input: tcp4(VIP4, 81),
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "other address",
                    input: tcp4(OTHER4, 80),
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "UDP to a TCP-only port",
                    input: udp_on_tcp_port,
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "ARP",
                    input: arp,
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "ICMP to the VIP",
                    input: icmp,
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "802.1ad double tag",
                    input: qinq,
                    action: XDP_PASS,
                    output: None,
                },
            ],
        );
        let g = d.global();
        assert_eq!((g.pass, g.tx), (6, 0));
        assert_eq!(d.counters(map_names::SERVICE_STATS, 0).packets, 0);
    });
}

#[test]
fn malformed_frames_are_never_forwarded() {
    with_director(|d| {
        standard(d);
        let good = tcp4(VIP4, 80);
        let mut bad_ihl = good.clone();
        bad_ihl[14] = 0x44; // IHL 4: shorter than the fixed header
        let mut long_ihl = good.clone();
        long_ihl[14] = 0x4f; // IHL 15: 60 bytes of header the frame does not have
        long_ihl.truncate(14 + 40);
        let mut wrong_version = good.clone();
        wrong_version[14] = 0x65;
        let mut short_total = good.clone();
        short_total[16..18].copy_from_slice(&10u16.to_be_bytes()); // total length < header
        let mut bad_doff = good.clone();
        bad_doff[14 + 20 + 12] = 4 << 4;
        let t6 = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, IP_TCP, &tcp(40000, 80)),
        );
        let cases = [
            // Frames shorter than an Ethernet header never reach XDP (BPF_PROG_TEST_RUN
            // refuses them with EINVAL, as drivers drop them), so the shortest case is a
            // header announcing a VLAN tag that is not there.
            ("Ethernet header only", good[..14].to_vec()),
            (
                "truncated VLAN tag",
                eth_vlan(DIRECTOR_MAC, CLIENT_MAC, 1, ETH_IPV4, &[])[..16].to_vec(),
            ),
            ("truncated IPv4", good[..14 + 12].to_vec()),
            ("bad IHL", bad_ihl),
            ("IHL past the frame", long_ihl),
            ("IP version 6 in an IPv4 frame", wrong_version),
            ("total length below header", short_total),
            ("truncated TCP", good[..14 + 20 + 10].to_vec()),
            ("TCP data offset below 5", bad_doff),
            ("truncated IPv6", t6[..14 + 30].to_vec()),
            ("truncated TCP over IPv6", t6[..14 + 40 + 8].to_vec()),
            (
                "truncated UDP",
                eth(
                    DIRECTOR_MAC,
                    CLIENT_MAC,
                    ETH_IPV4,
                    &ipv4(CLIENT4, VIP4, IP_UDP, &[], 0, &udp(1, 53, b"")),
                )[..14 + 20 + 4]
                    .to_vec(),
            ),
        ];
        let fixtures: Vec<Fixture> = cases
            .into_iter()
            .map(|(what, input)| Fixture {
                what,
                input,
                action: XDP_PASS,
                output: None,
            })
            .collect();
        run_fixtures(d, &fixtures);
        let g = d.global();
        assert_eq!(g.malformed, fixtures.len() as u64);
        assert_eq!((g.tx, g.redirect, g.drop), (0, 0, 0));
        assert_eq!(d.counters(map_names::REAL_STATS, 1).packets, 0);
    });
}

#[test]
fn fragments_go_to_the_stack() {
    with_director(|d| {
        standard(d);
        let first = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_TCP, &[], 0x2000, &tcp(40000, 80)),
        );
        let later = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_TCP, &[], 0x0003, &[0u8; 24]),
        );
        let mut frag6 = vec![IP_TCP, 0, 0, 0x01, 0, 0, 0, 7];
        frag6.extend_from_slice(&tcp(40000, 80));
        let v6 = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, 44, &frag6),
        );
        run_fixtures(
            d,
            &[
                Fixture {
                    what: "IPv4 first fragment (MF)",
                    input: first,
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "IPv4 later fragment",
                    input: later,
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "IPv6 fragment header",
                    input: v6,
                    action: XDP_PASS,
                    output: None,
                },
            ],
        );
        assert_eq!(d.global().fragments, 3);
    });
}

#[test]
fn inactive_service_passes_and_empty_table_drops() {
    with_director(|d| {
        d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, false);
        d.real(1, 0, REAL_A_MAC, LO, true);
        d.table(0, 1);
        d.service(addr4(VIP4), FAMILY_V4, 443, IP_TCP, 1, true);
        run_fixtures(
            d,
            &[
                Fixture {
                    what: "inactive service",
                    input: tcp4(VIP4, 80),
                    action: XDP_PASS,
                    output: None,
                },
                Fixture {
                    what: "service without reals",
                    input: tcp4(VIP4, 443),
                    action: XDP_DROP,
                    output: None,
                },
            ],
        );
        let g = d.global();
        assert_eq!((g.pass, g.drop), (1, 1));
        // Becoming active is all it takes to forward.
        d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, true);
        assert_eq!(d.run(&tcp4(VIP4, 80), LO).0, XDP_TX);
    });
}

fn flow_of_tcp4(sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src: addr4(CLIENT4),
        dst: addr4(VIP4),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: IP_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

#[test]
fn an_existing_flow_stays_on_its_real() {
    with_director(|d| {
        standard(d);
        d.real(4, 0, REAL_B_MAC, LO, true);
        let syn = tcp4(VIP4, 80);
        let (action, out) = d.run(&syn, LO);
        assert_eq!(action, XDP_TX);
        assert_eq!(out[0..6], REAL_A_MAC);
        let state = d
            .conntrack(&flow_of_tcp4(40000, 80))
            .expect("flow recorded");
        assert_eq!((state.real_id, state.service_id), (1, 0));

        // The table now sends new flows to real 4, but the flow keeps real 1.
        d.table(0, 4);
        for _ in 0..3 {
            let (action, out) = d.run(&syn, LO);
            assert_eq!(action, XDP_TX);
            assert_eq!(out[0..6], REAL_A_MAC, "existing flow moved");
        }
        let other = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_TCP, &[], 0, &tcp(40001, 80)),
        );
        assert_eq!(
            d.run(&other, LO).1[0..6],
            REAL_B_MAC,
            "a new flow follows the table"
        );

        let a = d.counters(map_names::REAL_STATS, 1);
        assert_eq!((a.packets, a.new_conns), (4, 1));
        assert_eq!(a.bytes, 4 * syn.len() as u64);
        let s = d.counters(map_names::SERVICE_STATS, 0);
        assert_eq!((s.packets, s.new_conns), (5, 2));

        // Once its real is gone the flow is scheduled again, by the table.
        d.real(1, 0, REAL_A_MAC, LO, false);
        assert_eq!(d.run(&syn, LO).1[0..6], REAL_B_MAC);
        assert_eq!(d.conntrack(&flow_of_tcp4(40000, 80)).unwrap().real_id, 4);
    });
}

#[test]
fn a_flow_recorded_for_another_service_is_not_reused() {
    with_director(|d| {
        standard(d);
        // A stale entry naming a real of service 1 must not steer service 0's flow.
        let mut ct: HashMap<_, FlowKey, FlowState> =
            HashMap::try_from(d.ebpf.map_mut(map_names::CONNTRACK).unwrap()).unwrap();
        ct.insert(
            flow_of_tcp4(40000, 80),
            FlowState {
                real_id: 2,
                service_id: 1,
                state: lb_common::conn::ESTABLISHED as u64,
                ..FlowState::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(d.run(&tcp4(VIP4, 80), LO).1[0..6], REAL_A_MAC);
    });
}

#[test]
fn missing_interface_data_aborts_instead_of_sending_garbage() {
    with_director(|d| {
        d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, true);
        d.real(1, 0, REAL_A_MAC, 9999, true); // no IFACES entry for 9999
        d.table(0, 1);
        assert_eq!(d.run(&tcp4(VIP4, 80), LO).0, XDP_ABORTED);
        assert_eq!(d.global().error, 1);
    });
}

// ---- Connection states and counts ----

fn tcp4_flags(sport: u16, flags: u8) -> Vec<u8> {
    let mut t = tcp(sport, 80);
    t[13] = flags;
    eth(
        DIRECTOR_MAC,
        CLIENT_MAC,
        ETH_IPV4,
        &ipv4(CLIENT4, VIP4, IP_TCP, &[], 0, &t),
    )
}

#[test]
fn tcp_states_follow_ipvs_and_move_the_connection_counts() {
    use lb_common::conn;
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const FIN_ACK: u8 = 0x11;
    const RST: u8 = 0x04;
    with_director(|d| {
        standard(d);
        let state = |d: &Director, sport| d.conntrack(&flow_of_tcp4(sport, 80)).unwrap().state;
        let counts = |d: &Director| {
            let c = d.conns(1);
            (c.active, c.inactive)
        };
        // Handshake: SYN_RECV counts as active (IPVS since Linux 4.8), then ESTABLISHED.
        d.run(&tcp4_flags(41000, SYN), LO);
        assert_eq!(state(d, 41000), u64::from(conn::SYN_RECV));
        assert_eq!(counts(d), (1, 0));
        d.run(&tcp4_flags(41000, ACK), LO);
        assert_eq!(state(d, 41000), u64::from(conn::ESTABLISHED));
        assert_eq!(counts(d), (1, 0));
        // Repeated packets in a state change nothing.
        d.run(&tcp4_flags(41000, ACK), LO);
        assert_eq!(counts(d), (1, 0));
        // Client FIN: FIN_WAIT, inactive.
        d.run(&tcp4_flags(41000, FIN_ACK), LO);
        assert_eq!(state(d, 41000), u64::from(conn::FIN_WAIT));
        assert_eq!(counts(d), (0, 1));
        // A second connection reset mid-handshake stays SYN_RECV (IPVS's table);
        // reset once established, it closes.
        d.run(&tcp4_flags(41001, SYN), LO);
        d.run(&tcp4_flags(41001, RST), LO);
        assert_eq!(state(d, 41001), u64::from(conn::SYN_RECV));
        d.run(&tcp4_flags(41001, ACK), LO);
        d.run(&tcp4_flags(41001, RST), LO);
        assert_eq!(state(d, 41001), u64::from(conn::CLOSE));
        assert_eq!(counts(d), (0, 2));
        // A flow first seen mid-stream (after a failover, or spoofed) is a
        // pickup: forwarded, but no connection, and not a new one.
        let new_before = d.counters(map_names::REAL_STATS, 1).new_conns;
        d.run(&tcp4_flags(41002, ACK), LO);
        assert_eq!(state(d, 41002), u64::from(conn::PICKUP));
        assert_eq!(counts(d), (0, 2));
        assert_eq!(d.counters(map_names::REAL_STATS, 1).new_conns, new_before);
        assert_eq!(d.global().pickups, 1);
        // UDP flows are inactive connections, as in IPVS.
        let u4 = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_UDP, &[], 0, &udp(5353, 53, b"q")),
        );
        d.run(&u4, LO);
        let c = d.conns(2);
        assert_eq!((c.active, c.inactive), (0, 1));
    });
}

#[test]
fn a_flow_moved_off_a_vanished_real_is_uncounted_there() {
    with_director(|d| {
        standard(d);
        d.real(4, 0, REAL_B_MAC, LO, true);
        d.run(&tcp4_flags(42000, 0x02), LO);
        assert_eq!(d.conns(1).active, 1);
        d.real(1, 0, REAL_A_MAC, LO, false);
        d.table(0, 4);
        d.run(&tcp4_flags(42000, 0x10), LO);
        assert_eq!(d.conns(1).active, 0, "old real still counts the flow");
        // A mid-stream packet made it a pickup there; a SYN counts.
        assert_eq!(d.conns(4), ConnCounts::default());
        d.real(4, 0, REAL_B_MAC, LO, false);
        d.real(5, 0, REAL_C_MAC, LO, true);
        d.table(0, 5);
        d.run(&tcp4_flags(42000, 0x02), LO);
        assert_eq!(d.conns(5).active, 1);
    });
}

// ---- IPv6 extension headers ----

/// An 8-byte extension header (hop-by-hop, routing or destination options)
/// whose next header is `inner_next`, followed by `body`.
fn ipv6_ext(inner_next: u8, body: &[u8]) -> Vec<u8> {
    let mut h = vec![inner_next, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(body);
    h
}

#[test]
fn ipv6_extension_headers_are_skipped_up_to_a_bound() {
    const HOP: u8 = 0;
    const DEST: u8 = 60;
    const FRAG: u8 = 44;
    with_director(|d| {
        standard(d);
        let t = tcp(40000, 80);
        // Hop-by-hop then destination options, then TCP: balanced.
        let two = ipv6_ext(DEST, &ipv6_ext(IP_TCP, &t));
        let f = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, HOP, &two),
        );
        let (action, out) = d.run(&f, LO);
        assert_eq!(action, XDP_TX);
        assert_eq!(out, with_macs(&f, REAL_C_MAC, DIRECTOR_MAC));
        // Five of them: more than the bound, so the stack gets it.
        let mut body = t.clone();
        for _ in 0..4 {
            body = ipv6_ext(if body == t { IP_TCP } else { DEST }, &body);
        }
        let five = ipv6_ext(DEST, &body);
        let f = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, HOP, &five),
        );
        assert_eq!(d.run(&f, LO), (XDP_PASS, f.clone()));
        // A fragment header behind hop-by-hop: a fragment, to the stack.
        let frag = ipv6_ext(FRAG, &[IP_TCP, 0, 0, 1, 0, 0, 0, 1]);
        let f = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, HOP, &frag),
        );
        let before = d.global().fragments;
        assert_eq!(d.run(&f, LO), (XDP_PASS, f.clone()));
        assert_eq!(d.global().fragments, before + 1);
        // An extension header running past the frame: malformed, to the stack.
        let cut = vec![IP_TCP, 200, 0, 0, 0, 0, 0, 0];
        let f = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, DEST, &cut),
        );
        let before = d.global().malformed;
        assert_eq!(d.run(&f, LO), (XDP_PASS, f.clone()));
        assert_eq!(d.global().malformed, before + 1);
    });
}

// ---- NAT ----

const FA_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfa];
const FB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfb];
const RIP4: [u8; 4] = [10, 1, 0, 11];
const RIP4_NO_NEIGH: [u8; 4] = [10, 1, 0, 12];
const RIP6: [u8; 16] = [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];

/// A two-armed NAT director: clients behind `fb` (10.0.0.0/24, fd00::/64),
/// reals behind `fa` (10.1.0.0/24, fd01::/64), neighbours permanent so the
/// FIB answers; forwarding on, as an LVS-NAT director needs.
fn with_nat_director(f: impl FnOnce(&mut Director, u32, u32) + Send) {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("nat").unwrap();
    let ip = |args: &[&str]| ns.run("ip", args).unwrap();
    ip(&[
        "link", "add", "name", "fa", "type", "veth", "peer", "name", "fb",
    ]);
    ip(&["link", "set", "fa", "address", "02:00:00:00:00:fa", "up"]);
    ip(&["link", "set", "fb", "address", "02:00:00:00:00:fb", "up"]);
    ip(&["addr", "add", "10.1.0.1/24", "dev", "fa"]);
    ip(&["addr", "add", "10.0.0.254/24", "dev", "fb"]);
    ip(&["-6", "addr", "add", "fd01::1/64", "dev", "fa", "nodad"]);
    ip(&["-6", "addr", "add", "fd00::fe/64", "dev", "fb", "nodad"]);
    for (addr, dev, mac) in [
        ("10.1.0.11", "fa", "02:00:00:00:00:0a"),
        ("fd01::11", "fa", "02:00:00:00:00:0a"),
        ("10.0.0.1", "fb", "02:00:00:00:00:cc"),
        ("fd00::1", "fb", "02:00:00:00:00:cc"),
    ] {
        ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    ns.enter(|| {
        let fa = unsafe { libc::if_nametoindex(c"fa".as_ptr()) };
        let fb = unsafe { libc::if_nametoindex(c"fb".as_ptr()) };
        let mut d = Director::load(fa);
        let mut ports: DevMapHash<_> =
            DevMapHash::try_from(d.ebpf.map_mut(map_names::TX_PORTS).unwrap()).unwrap();
        ports.insert(fb, fb, None, 0).unwrap();
        // As the agent does when it has NAT services.
        d.nat_flag(true);
        f(&mut d, fa, fb);
    })
    .unwrap();
}

fn frame4(src: [u8; 4], dst: [u8; 4], l4: &[u8], proto: u8, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let mut f = eth(macs.0, macs.1, ETH_IPV4, &ipv4(src, dst, proto, &[], 0, l4));
    fix_l4_checksum(&mut f);
    f
}

fn frame6(src: [u8; 16], dst: [u8; 16], l4: &[u8], proto: u8, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let mut f = eth(macs.0, macs.1, ETH_IPV6, &ipv6(src, dst, proto, l4));
    fix_l4_checksum(&mut f);
    f
}

#[test]
fn nat_rewrites_both_directions_with_valid_checksums_ipv4_tcp() {
    with_nat_director(|d, fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 8080);
        d.table(0, 1);
        let mut payload = tcp(40000, 80);
        payload.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        let input = frame4(CLIENT4, VIP4, &payload, IP_TCP, (DIRECTOR_MAC, CLIENT_MAC));
        let mut rewritten = payload.clone();
        rewritten[2..4].copy_from_slice(&8080u16.to_be_bytes());
        let want = frame4(CLIENT4, RIP4, &rewritten, IP_TCP, (REAL_A_MAC, FA_MAC));
        let (action, out) = d.run(&input, fb);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, want, "inbound frame");
        assert!(checksums_valid(&out));
        // The reply tuple is remembered.
        let reply_key = FlowKey {
            src: addr4(RIP4),
            dst: addr4(CLIENT4),
            sport: 8080u16.to_be(),
            dport: 40000u16.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        assert_eq!(d.nat_reply(&reply_key), Some(flow_of_tcp4(40000, 80)));

        // The real's SYN-ACK goes back to the client from the VIP.
        let mut back = tcp(8080, 40000);
        back[13] = 0x12;
        let reply = frame4(RIP4, CLIENT4, &back, IP_TCP, (FA_MAC, REAL_A_MAC));
        let mut restored = back.clone();
        restored[0..2].copy_from_slice(&80u16.to_be_bytes());
        let want = frame4(VIP4, CLIENT4, &restored, IP_TCP, (CLIENT_MAC, FB_MAC));
        let (action, out) = d.run(&reply, fa);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, want, "reply frame");
        assert!(checksums_valid(&out));

        // A packet from the real that belongs to no flow is not ours.
        let stray = frame4(
            RIP4,
            CLIENT4,
            &tcp(8080, 40001),
            IP_TCP,
            (FA_MAC, REAL_A_MAC),
        );
        assert_eq!(d.run(&stray, fa), (XDP_PASS, stray.clone()));
    });
}

/// Without NAT services (the agent clears `SETTINGS_F_NAT`) traffic for no
/// service is not looked up as a reply: even a reply tuple passes untouched.
#[test]
fn without_nat_services_replies_are_not_looked_up() {
    with_nat_director(|d, fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 8080);
        d.table(0, 1);
        let syn = frame4(
            CLIENT4,
            VIP4,
            &tcp(40000, 80),
            IP_TCP,
            (DIRECTOR_MAC, CLIENT_MAC),
        );
        assert_eq!(d.run(&syn, fb).0, XDP_REDIRECT);
        let reply = frame4(
            RIP4,
            CLIENT4,
            &tcp(8080, 40000),
            IP_TCP,
            (FA_MAC, REAL_A_MAC),
        );
        d.nat_flag(false);
        assert_eq!(d.run(&reply, fa), (XDP_PASS, reply.clone()));
        d.nat_flag(true);
        assert_eq!(d.run(&reply, fa).0, XDP_REDIRECT);
    });
}

#[test]
fn only_source_ports_nat_reals_answer_from_are_looked_up_as_replies() {
    with_nat_director(|d, fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 8080);
        d.table(0, 1);
        let ports: Array<&MapData, u64> =
            Array::try_from(d.ebpf.map(map_names::NAT_REPLY_PORTS).unwrap()).unwrap();
        let (word, bit) = nat_ports::bit(8080u16.to_be());
        assert_eq!(ports.get(&word, 0).unwrap() & bit, 0);
        let syn = frame4(
            CLIENT4,
            VIP4,
            &tcp(40000, 80),
            IP_TCP,
            (DIRECTOR_MAC, CLIENT_MAC),
        );
        assert_eq!(d.run(&syn, fb).0, XDP_REDIRECT);
        // The flow marked its real's port, and only that one.
        let ports: Array<&MapData, u64> =
            Array::try_from(d.ebpf.map(map_names::NAT_REPLY_PORTS).unwrap()).unwrap();
        let marked: u32 = (0..nat_ports::WORDS)
            .map(|w| ports.get(&w, 0).unwrap().count_ones())
            .sum();
        assert_eq!((ports.get(&word, 0).unwrap() & bit, marked), (bit, 1));
        // A reply entry for another source port (as if it were stale, or
        // made by anything but a flow) is never consulted: that traffic
        // passes without the NAT_REPLIES lookup.
        let from_9090 = FlowKey {
            src: addr4(RIP4),
            dst: addr4(CLIENT4),
            sport: 9090u16.to_be(),
            dport: 40000u16.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let mut replies: HashMap<_, FlowKey, FlowKey> =
            HashMap::try_from(d.ebpf.map_mut(map_names::NAT_REPLIES).unwrap()).unwrap();
        replies
            .insert(from_9090, flow_of_tcp4(40000, 80), 0)
            .unwrap();
        let other = frame4(
            RIP4,
            CLIENT4,
            &tcp(9090, 40000),
            IP_TCP,
            (FA_MAC, REAL_A_MAC),
        );
        assert_eq!(d.run(&other, fa), (XDP_PASS, other.clone()));
        // The real's own port is still a reply.
        let reply = frame4(
            RIP4,
            CLIENT4,
            &tcp(8080, 40000),
            IP_TCP,
            (FA_MAC, REAL_A_MAC),
        );
        assert_eq!(d.run(&reply, fa).0, XDP_REDIRECT);
    });
}

#[test]
fn nat_over_ipv6_udp_rewrites_both_directions() {
    with_nat_director(|d, fa, fb| {
        d.service_with(addr6(VIP6), FAMILY_V6, 53, IP_UDP, 0, method::NAT);
        d.nat_real(1, 0, addr6(RIP6), FAMILY_V6, 5300);
        d.table(0, 1);
        let input = frame6(
            CLIENT6,
            VIP6,
            &udp(5353, 53, b"query"),
            IP_UDP,
            (DIRECTOR_MAC, CLIENT_MAC),
        );
        let want = frame6(
            CLIENT6,
            RIP6,
            &udp(5353, 5300, b"query"),
            IP_UDP,
            (REAL_A_MAC, FA_MAC),
        );
        let (action, out) = d.run(&input, fb);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, want);
        assert!(checksums_valid(&out));
        let reply = frame6(
            RIP6,
            CLIENT6,
            &udp(5300, 5353, b"answer"),
            IP_UDP,
            (FA_MAC, REAL_A_MAC),
        );
        let want = frame6(
            VIP6,
            CLIENT6,
            &udp(53, 5353, b"answer"),
            IP_UDP,
            (CLIENT_MAC, FB_MAC),
        );
        let (action, out) = d.run(&reply, fa);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, want);
        assert!(checksums_valid(&out));
    });
}

#[test]
fn nat_keeps_an_absent_ipv4_udp_checksum_absent() {
    with_nat_director(|d, _fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 53, IP_UDP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 53);
        d.table(0, 1);
        // udp() leaves the checksum 0: "no checksum" in IPv4.
        let input = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_UDP, &[], 0, &udp(5353, 53, b"q")),
        );
        let want = eth(
            REAL_A_MAC,
            FA_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, RIP4, IP_UDP, &[], 0, &udp(5353, 53, b"q")),
        );
        assert_eq!(d.run(&input, fb), (XDP_REDIRECT, want));
    });
}

#[test]
fn nat_without_a_neighbour_hands_the_rewritten_packet_to_the_stack() {
    with_nat_director(|d, _fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4_NO_NEIGH), FAMILY_V4, 80);
        d.table(0, 1);
        let input = frame4(
            CLIENT4,
            VIP4,
            &tcp(40000, 80),
            IP_TCP,
            (DIRECTOR_MAC, CLIENT_MAC),
        );
        // MACs untouched: the kernel resolves the neighbour and forwards.
        let want = frame4(
            CLIENT4,
            RIP4_NO_NEIGH,
            &tcp(40000, 80),
            IP_TCP,
            (DIRECTOR_MAC, CLIENT_MAC),
        );
        let (action, out) = d.run(&input, fb);
        assert_eq!(action, XDP_PASS);
        assert_eq!(out, want);
        assert!(checksums_valid(&out));
    });
}

// ---- ICMP errors ----

/// An ICMP(v6) error of `kind` from a router to the VIP, quoting the
/// VIP's reply `quoted` (an IP packet).
fn icmp_error4(kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut body = vec![kind, code, 0, 0, 0, 0, 0x05, 0xdc];
    body.extend_from_slice(quoted);
    eth(
        DIRECTOR_MAC,
        CLIENT_MAC,
        ETH_IPV4,
        &ipv4([192, 0, 2, 1], VIP4, IP_ICMP, &[], 0, &body),
    )
}

#[test]
fn icmp_errors_follow_the_flow_they_quote() {
    const ICMPV6: u8 = 58;
    with_director(|d| {
        standard(d);
        // No flow yet: the error is not ours.
        let reply = ipv4(VIP4, CLIENT4, IP_TCP, &[], 0, &tcp(80, 40000));
        let frag_needed = icmp_error4(3, 4, &reply);
        assert_eq!(d.run(&frag_needed, LO), (XDP_PASS, frag_needed.clone()));
        // Once the flow exists, the error goes to its real, like the flow.
        d.run(&tcp4(VIP4, 80), LO);
        assert_eq!(
            d.run(&frag_needed, LO),
            (XDP_TX, with_macs(&frag_needed, REAL_A_MAC, DIRECTOR_MAC))
        );
        // It creates no flow and counts no connection.
        assert_eq!(d.conns(1).active, 1);
        // An echo request to the VIP is not an error: the stack answers it.
        let echo = icmp_error4(8, 0, b"ping");
        assert_eq!(d.run(&echo, LO), (XDP_PASS, echo.clone()));
        // A quote cut short is malformed.
        let cut = icmp_error4(3, 4, &reply[..22]);
        assert_eq!(d.run(&cut, LO).0, XDP_PASS);

        // ICMPv6 packet too big about an IPv6 flow.
        let t6 = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(CLIENT6, VIP6, IP_TCP, &tcp(40000, 80)),
        );
        d.run(&t6, LO);
        let mut body = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
        body.extend_from_slice(&ipv6(VIP6, CLIENT6, IP_TCP, &tcp(80, 40000)));
        let router6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let too_big = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(router6, VIP6, ICMPV6, &body),
        );
        assert_eq!(
            d.run(&too_big, LO),
            (XDP_TX, with_macs(&too_big, REAL_C_MAC, DIRECTOR_MAC))
        );
    });
}

// ---- ICMP errors of NAT flows ----

const ROUTER4: [u8; 4] = [192, 0, 2, 1];
const ROUTER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ICMPV6: u8 = 58;

/// An ICMP message: type, code, checksum (computed here over the whole
/// message), the 4 bytes `rest`, then `quoted`.
fn icmp4_msg(kind: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quoted);
    let c = checksum(0, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 message from `src` to `dst`, its checksum over the pseudo-header.
fn icmp6_msg(src: [u8; 16], dst: [u8; 16], kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0, 0, 0, 0x05, 0x00];
    m.extend_from_slice(quoted);
    let mut pseudo = [src, dst].concat();
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    let c = checksum(0, &[&pseudo[..], &m[..]].concat());
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A TCP segment `sport` → `dport` with a checksum valid for `src` → `dst`
/// (IPv4): the quoted copy must carry it through unchanged.
fn tcp4_segment(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let f = frame4(
        src,
        dst,
        &tcp(sport, dport),
        IP_TCP,
        (CLIENT_MAC, CLIENT_MAC),
    );
    f[34..].to_vec()
}

/// `segment` with its ports replaced and nothing else (its checksum stays).
fn with_ports(segment: &[u8], sport: u16, dport: u16) -> Vec<u8> {
    let mut s = segment.to_vec();
    s[0..2].copy_from_slice(&sport.to_be_bytes());
    s[2..4].copy_from_slice(&dport.to_be_bytes());
    s
}

/// NAT service 0 on VIP4:80/TCP to RIP4:8080 with the client's flow made.
fn nat_tcp4_flow(d: &mut Director, fb: u32) {
    d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
    d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 8080);
    d.table(0, 1);
    let syn = frame4(
        CLIENT4,
        VIP4,
        &tcp(40000, 80),
        IP_TCP,
        (DIRECTOR_MAC, CLIENT_MAC),
    );
    assert_eq!(d.run(&syn, fb).0, XDP_REDIRECT);
}

#[test]
fn icmp_error_about_a_nat_flow_reaches_its_real_rewritten() {
    with_nat_director(|d, _fa, fb| {
        nat_tcp4_flow(d, fb);
        let before = d.conntrack(&flow_of_tcp4(40000, 80)).unwrap();
        let conns = (d.conns(1).active, d.conns(1).inactive);
        let seg = tcp4_segment(VIP4, CLIENT4, 80, 40000);
        let seen = with_ports(&seg, 8080, 40000);
        // Whole quote, a quote cut after 8 bytes of TCP (the minimum ICMP
        // requires: no TCP checksum in it), a quoted header with options.
        let nop: &[u8] = &[1, 1, 1, 0];
        let cases = [
            ("whole quote", &[][..], &seg[..], &seen[..]),
            ("quote cut after the ports", &[], &seg[..8], &seen[..8]),
            ("quoted IPv4 options", nop, &seg[..], &seen[..]),
        ];
        for (what, options, quoted_l4, rewritten_l4) in cases {
            let quote = ipv4(VIP4, CLIENT4, IP_TCP, options, 0, quoted_l4);
            let error = eth(
                DIRECTOR_MAC,
                CLIENT_MAC,
                ETH_IPV4,
                &ipv4(
                    ROUTER4,
                    VIP4,
                    IP_ICMP,
                    &[],
                    0,
                    &icmp4_msg(3, 4, [0, 0, 0x05, 0xdc], &quote),
                ),
            );
            // Built from scratch: outer destination and quoted source are the
            // real's, every checksum computed here but the quoted TCP one,
            // which stays as it was (as IPVS leaves it).
            let quote = ipv4(RIP4, CLIENT4, IP_TCP, options, 0, rewritten_l4);
            let want = eth(
                REAL_A_MAC,
                FA_MAC,
                ETH_IPV4,
                &ipv4(
                    ROUTER4,
                    RIP4,
                    IP_ICMP,
                    &[],
                    0,
                    &icmp4_msg(3, 4, [0, 0, 0x05, 0xdc], &quote),
                ),
            );
            let (action, out) = d.run(&error, fb);
            assert_eq!(action, XDP_REDIRECT, "{what}: action");
            assert_eq!(out, want, "{what}: frame");
        }
        // Errors neither make nor move the flow.
        assert_eq!(
            d.conntrack(&flow_of_tcp4(40000, 80)).unwrap().state,
            before.state
        );
        assert_eq!((d.conns(1).active, d.conns(1).inactive), conns);
    });
}

#[test]
fn icmp_error_from_a_nat_real_leaves_from_the_vip() {
    with_nat_director(|d, fa, fb| {
        nat_tcp4_flow(d, fb);
        // What the real got from the client, and the error it answers with.
        let seg = tcp4_segment(CLIENT4, RIP4, 40000, 8080);
        let quote = ipv4(CLIENT4, RIP4, IP_TCP, &[], 0, &seg);
        let msg = icmp4_msg(3, 3, [0; 4], &quote);
        let error = eth(
            FA_MAC,
            REAL_A_MAC,
            ETH_IPV4,
            &ipv4(RIP4, CLIENT4, IP_ICMP, &[], 0, &msg),
        );
        let quote = ipv4(CLIENT4, VIP4, IP_TCP, &[], 0, &with_ports(&seg, 40000, 80));
        let msg = icmp4_msg(3, 3, [0; 4], &quote);
        let want = eth(
            CLIENT_MAC,
            FB_MAC,
            ETH_IPV4,
            &ipv4(VIP4, CLIENT4, IP_ICMP, &[], 0, &msg),
        );
        assert_eq!(d.run(&error, fa), (XDP_REDIRECT, want));

        // One about another flow (no reply entry) is the stack's.
        let other = ipv4(
            CLIENT4,
            RIP4,
            IP_TCP,
            &[],
            0,
            &with_ports(&seg, 40001, 8080),
        );
        let msg = icmp4_msg(3, 3, [0; 4], &other);
        let stray = eth(
            FA_MAC,
            REAL_A_MAC,
            ETH_IPV4,
            &ipv4(RIP4, CLIENT4, IP_ICMP, &[], 0, &msg),
        );
        assert_eq!(d.run(&stray, fa), (XDP_PASS, stray.clone()));
    });
}

#[test]
fn malformed_icmp_errors_of_nat_flows_go_to_the_stack_untouched() {
    with_nat_director(|d, fa, fb| {
        nat_tcp4_flow(d, fb);
        let quote = ipv4(VIP4, CLIENT4, IP_TCP, &[], 0, &tcp(80, 40000));
        let to_vip = |msg: &[u8]| {
            eth(
                DIRECTOR_MAC,
                CLIENT_MAC,
                ETH_IPV4,
                &ipv4(ROUTER4, VIP4, IP_ICMP, &[], 0, msg),
            )
        };
        let mut bad_ihl = quote.clone();
        bad_ihl[0] = 0x44;
        let mut not_v4 = quote.clone();
        not_v4[0] = 0x65;
        let cases = [
            ("ICMP header cut short", to_vip(&[3, 4, 0, 0])),
            (
                "quote cut in its IP header",
                to_vip(&icmp4_msg(3, 4, [0; 4], &quote[..16])),
            ),
            (
                "quote cut before the ports",
                to_vip(&icmp4_msg(3, 4, [0; 4], &quote[..22])),
            ),
            (
                "quoted IHL below 5",
                to_vip(&icmp4_msg(3, 4, [0; 4], &bad_ihl)),
            ),
            (
                "quoted version not 4",
                to_vip(&icmp4_msg(3, 4, [0; 4], &not_v4)),
            ),
        ];
        for (what, frame) in cases {
            assert_eq!(d.run(&frame, fb), (XDP_PASS, frame.clone()), "{what}");
        }
        let from_real = ipv4(CLIENT4, RIP4, IP_TCP, &[], 0, &tcp(40000, 8080));
        let cut = eth(
            FA_MAC,
            REAL_A_MAC,
            ETH_IPV4,
            &ipv4(
                RIP4,
                CLIENT4,
                IP_ICMP,
                &[],
                0,
                &icmp4_msg(3, 3, [0; 4], &from_real[..22]),
            ),
        );
        assert_eq!(
            d.run(&cut, fa),
            (XDP_PASS, cut.clone()),
            "reply side, cut quote"
        );
    });
}

#[test]
fn icmpv6_errors_of_nat_flows_are_rewritten_both_ways() {
    with_nat_director(|d, fa, fb| {
        d.service_with(addr6(VIP6), FAMILY_V6, 53, IP_UDP, 0, method::NAT);
        d.nat_real(1, 0, addr6(RIP6), FAMILY_V6, 5300);
        d.table(0, 1);
        let query = frame6(
            CLIENT6,
            VIP6,
            &udp(5353, 53, b"query"),
            IP_UDP,
            (DIRECTOR_MAC, CLIENT_MAC),
        );
        assert_eq!(d.run(&query, fb).0, XDP_REDIRECT);

        // Packet too big from a router on the client's side, quoting the answer.
        let answer = frame6(
            VIP6,
            CLIENT6,
            &udp(53, 5353, b"answer"),
            IP_UDP,
            (CLIENT_MAC, CLIENT_MAC),
        );
        let quote = answer[14..].to_vec();
        let mut seen = quote.clone();
        seen[8..24].copy_from_slice(&RIP6);
        seen[40..42].copy_from_slice(&5300u16.to_be_bytes());
        let error = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &ipv6(
                ROUTER6,
                VIP6,
                ICMPV6,
                &icmp6_msg(ROUTER6, VIP6, 2, 0, &quote),
            ),
        );
        let want = eth(
            REAL_A_MAC,
            FA_MAC,
            ETH_IPV6,
            &ipv6(
                ROUTER6,
                RIP6,
                ICMPV6,
                &icmp6_msg(ROUTER6, RIP6, 2, 0, &seen),
            ),
        );
        assert_eq!(d.run(&error, fb), (XDP_REDIRECT, want), "to the real");

        // Port unreachable from the real, quoting the query as it got it.
        let got = frame6(
            CLIENT6,
            RIP6,
            &udp(5353, 5300, b"query"),
            IP_UDP,
            (FA_MAC, FA_MAC),
        );
        let quote = got[14..].to_vec();
        let mut sent = quote.clone();
        sent[24..40].copy_from_slice(&VIP6);
        sent[42..44].copy_from_slice(&53u16.to_be_bytes());
        let error = eth(
            FA_MAC,
            REAL_A_MAC,
            ETH_IPV6,
            &ipv6(
                RIP6,
                CLIENT6,
                ICMPV6,
                &icmp6_msg(RIP6, CLIENT6, 1, 4, &quote),
            ),
        );
        let want = eth(
            CLIENT_MAC,
            FB_MAC,
            ETH_IPV6,
            &ipv6(
                VIP6,
                CLIENT6,
                ICMPV6,
                &icmp6_msg(VIP6, CLIENT6, 1, 4, &sent),
            ),
        );
        assert_eq!(d.run(&error, fa), (XDP_REDIRECT, want), "to the client");
    });
}

// ---- Flows whose real left the service (nodest policy) ----

/// Service 0 (TCP 80 on VIP4) with real 1 (A) and real 4 (B); one flow
/// from port `sport` goes to A. Then A leaves the service: its slot becomes
/// `flags` (0: freed, as under `reschedule` / `expire`; or draining under
/// `keep`), and the table sends new flows to B.
fn flow_then_real_a_leaves(d: &mut Director, sport: u16, flags: u32) -> Vec<u8> {
    standard(d);
    d.real(4, 0, REAL_B_MAC, LO, true);
    let syn = tcp4_flags(sport, 0x02);
    let (action, out) = d.run(&syn, LO);
    assert_eq!(action, XDP_TX);
    assert_eq!(out, with_macs(&syn, REAL_A_MAC, DIRECTOR_MAC));
    assert_eq!(d.conns(1).active, 1);
    let mut m: Array<_, RealInfo> =
        Array::try_from(d.ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
    let a = m.get(&1, 0).unwrap();
    let left = if flags == 0 {
        RealInfo::default()
    } else {
        RealInfo { flags, ..a }
    };
    m.set(1, left, 0).unwrap();
    d.table(0, 4);
    tcp4_flags(sport, 0x10)
}

fn settings_flags(d: &mut Director, flags: u32) {
    let mut m: Array<_, Settings> =
        Array::try_from(d.ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
    let s = Settings {
        flags,
        ..m.get(&0, 0).unwrap()
    };
    m.set(0, s, 0).unwrap();
}

#[test]
fn nodest_keep_a_draining_real_keeps_its_flows_and_takes_no_new_ones() {
    use lb_common::{Affinity, REAL_F_DRAINING, SERVICE_F_PERSISTENT, ServiceAddr};
    with_director(|d| {
        let ack = flow_then_real_a_leaves(
            d,
            43000,
            REAL_F_PRESENT | REAL_F_REACHABLE | REAL_F_DRAINING,
        );
        for _ in 0..3 {
            let (action, out) = d.run(&ack, LO);
            assert_eq!(action, XDP_TX);
            assert_eq!(out, with_macs(&ack, REAL_A_MAC, DIRECTOR_MAC), "kept flow");
        }
        let state = d.conntrack(&flow_of_tcp4(43000, 80)).unwrap();
        assert_eq!(state.real_id, 1);
        assert_eq!(state.state, u64::from(lb_common::conn::ESTABLISHED));
        assert_eq!(d.conns(1).active, 1, "the kept flow still counts on A");

        // A new flow goes by the table, to B.
        let syn = tcp4_flags(43001, 0x02);
        let (action, out) = d.run(&syn, LO);
        assert_eq!(action, XDP_TX);
        assert_eq!(out, with_macs(&syn, REAL_B_MAC, DIRECTOR_MAC));

        // Nor does a persistence template still naming A bring it new flows.
        let key = ServiceKey {
            addr: addr4(VIP4),
            port: 80u16.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
        };
        let mut services: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(d.ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        let info = services.get(&key, 0).unwrap();
        let info = ServiceInfo {
            flags: info.flags | SERVICE_F_PERSISTENT,
            persist_timeout_s: 300,
            persist_mask: [u32::MAX, 0, 0, 0],
            ..info
        };
        services.insert(key, info, 0).unwrap();
        let mut persist: HashMap<_, ServiceAddr, Affinity> =
            HashMap::try_from(d.ebpf.map_mut(map_names::PERSIST).unwrap()).unwrap();
        let template = ServiceAddr {
            service_id: 0,
            addr: addr4(CLIENT4),
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        persist
            .insert(
                template,
                Affinity {
                    real_id: 1,
                    _pad: 0,
                    last_ns: now,
                },
                0,
            )
            .unwrap();
        let syn = tcp4_flags(43002, 0x02);
        assert_eq!(
            d.run(&syn, LO).1,
            with_macs(&syn, REAL_B_MAC, DIRECTOR_MAC),
            "persistence to a draining real"
        );
        assert_eq!(d.conns(1).active, 1);
        assert_eq!(d.conns(4).active, 2);

        // A bare SYN on the kept flow's ports is a new connection: not for A.
        let reuse = tcp4_flags(43000, 0x02);
        assert_eq!(
            d.run(&reuse, LO).1,
            with_macs(&reuse, REAL_B_MAC, DIRECTOR_MAC)
        );
        assert_eq!(d.conntrack(&flow_of_tcp4(43000, 80)).unwrap().real_id, 4);
        assert_eq!(d.conns(1).active, 0);
        assert_eq!(d.conns(4).active, 3);
        assert_eq!(d.global().nodest_expired, 0);
    });
}

#[test]
fn nodest_expire_drops_the_next_packet_and_forgets_the_flow() {
    with_director(|d| {
        settings_flags(d, lb_common::SETTINGS_F_NODEST_EXPIRE);
        let ack = flow_then_real_a_leaves(d, 44000, 0);
        let (action, out) = d.run(&ack, LO);
        assert_eq!(action, XDP_DROP);
        assert_eq!(out, ack, "a dropped frame is not rewritten");
        assert!(
            d.conntrack(&flow_of_tcp4(44000, 80)).is_none(),
            "flow deleted"
        );
        assert_eq!(d.conns(1).active, 0, "uncounted on the departed real");
        let g = d.global();
        assert_eq!((g.drop, g.nodest_expired), (1, 1));

        // The client's next packet on that port is a new flow, by the table.
        let syn = tcp4_flags(44000, 0x02);
        let (action, out) = d.run(&syn, LO);
        assert_eq!(action, XDP_TX);
        assert_eq!(out, with_macs(&syn, REAL_B_MAC, DIRECTOR_MAC));
        assert_eq!(d.conntrack(&flow_of_tcp4(44000, 80)).unwrap().real_id, 4);
        assert_eq!(d.conns(4).active, 1);

        // B leaves too, for C. A bare SYN on the ports of one of its flows
        // opens a new connection: scheduled, not dropped.
        let syn2 = tcp4_flags(44001, 0x02);
        assert_eq!(d.run(&syn2, LO).1[0..6], REAL_B_MAC);
        d.real(5, 0, REAL_C_MAC, LO, true);
        d.table(0, 5);
        d.real(4, 0, REAL_B_MAC, LO, false); // unreachable: no longer serving
        let (action, out) = d.run(&syn2, LO);
        assert_eq!(action, XDP_TX);
        assert_eq!(out, with_macs(&syn2, REAL_C_MAC, DIRECTOR_MAC));
        assert_eq!(d.global().nodest_expired, 1);
        // The other flow's next segment ends it.
        assert_eq!(d.run(&ack, LO).0, XDP_DROP);
        assert_eq!(d.global().nodest_expired, 2);
        assert_eq!(d.conns(4).active, 0);
        assert_eq!(d.conns(5).active, 1);
    });
}

#[test]
fn nodest_reschedule_moves_the_flow_to_the_table_s_real() {
    with_director(|d| {
        settings_flags(d, 0);
        let ack = flow_then_real_a_leaves(d, 45000, 0);
        let (action, out) = d.run(&ack, LO);
        assert_eq!(action, XDP_TX);
        assert_eq!(out, with_macs(&ack, REAL_B_MAC, DIRECTOR_MAC));
        let state = d.conntrack(&flow_of_tcp4(45000, 80)).unwrap();
        assert_eq!(state.real_id, 4);
        assert_eq!(d.conns(1).active, 0);
        // Moved mid-stream, the flow is a pickup on its new real: no
        // connection until it proves itself.
        assert_eq!(state.state, u64::from(lb_common::conn::PICKUP));
        assert_eq!(d.conns(4), ConnCounts::default());
        assert_eq!(d.global().nodest_expired, 0);
    });
}

// ---- Connection reuse, pickups and expiry on lookup ----

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const SEC: u64 = 1_000_000_000;

/// Moves flow `key`'s creation and last packet `secs` seconds into the
/// past, as if it had idled that long.
fn age(d: &mut Director, key: &FlowKey, secs: u64) {
    let mut ct: HashMap<_, FlowKey, FlowState> =
        HashMap::try_from(d.ebpf.map_mut(map_names::CONNTRACK).unwrap()).unwrap();
    let mut v = ct.get(key, 0).unwrap();
    // Creation too: a new entry's `created_ns` (now) then differs from the
    // old one's even within one tick of the director's coarse clock.
    v.seen_ns -= secs * SEC;
    v.created_ns -= secs * SEC;
    ct.insert(*key, v, 0).unwrap();
}

/// `conn_reuse_mode` `mode` in SETTINGS, the other flags kept.
fn reuse_mode(d: &mut Director, mode: u8) {
    let mut m: Array<_, Settings> =
        Array::try_from(d.ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
    let mut s = m.get(&0, 0).unwrap();
    s.flags = (s.flags & !(SETTINGS_F_CONN_REUSE | SETTINGS_F_CONN_REUSE_FIN_WAIT))
        | lb_common::conn::reuse_flags(mode);
    m.set(0, s, 0).unwrap();
}

/// The real (by MAC) a client segment from `sport` with `flags` went to.
fn sent_to(d: &Director, sport: u16, flags: u8) -> [u8; 6] {
    let (action, out) = d.run(&tcp4_flags(sport, flags), LO);
    assert_eq!(action, XDP_TX, "port {sport} flags {flags:#x}");
    out[0..6].try_into().unwrap()
}

fn state_of(d: &Director, sport: u16) -> u32 {
    d.conntrack(&flow_of_tcp4(sport, 80)).unwrap().state as u32
}

#[test]
fn a_syn_on_a_closed_flow_is_a_new_connection_as_conn_reuse_mode_decides() {
    use lb_common::conn;
    with_director(|d| {
        standard(d);
        d.real(4, 0, REAL_B_MAC, LO, true);
        // Default mode 1. A connection reset once established: CLOSE.
        assert_eq!(sent_to(d, 46000, SYN), REAL_A_MAC);
        sent_to(d, 46000, ACK);
        sent_to(d, 46000, RST);
        assert_eq!(state_of(d, 46000), conn::CLOSE);
        assert_eq!((d.conns(1).active, d.conns(1).inactive), (0, 1));
        // The client reuses its port: scheduled anew (the table now says B)
        // and counted there; the closed flow's count is gone.
        d.table(0, 4);
        assert_eq!(sent_to(d, 46000, SYN), REAL_B_MAC);
        assert_eq!(state_of(d, 46000), conn::SYN_RECV);
        assert_eq!(d.conns(1), ConnCounts::default());
        assert_eq!((d.conns(4).active, d.conns(4).inactive), (1, 0));
        assert_eq!(d.counters(map_names::REAL_STATS, 4).new_conns, 1);
        assert_eq!(d.global().reused, 1);

        // TIME_WAIT (a FIN during the handshake) is reused too.
        sent_to(d, 46001, SYN);
        sent_to(d, 46001, FIN_ACK);
        assert_eq!(state_of(d, 46001), conn::TIME_WAIT);
        d.table(0, 1);
        assert_eq!(sent_to(d, 46001, SYN), REAL_A_MAC);
        assert_eq!(d.global().reused, 2);

        // ESTABLISHED is not: a SYN there stays with its connection.
        sent_to(d, 46002, SYN);
        sent_to(d, 46002, ACK);
        d.table(0, 4);
        assert_eq!(sent_to(d, 46002, SYN), REAL_A_MAC);
        assert_eq!(state_of(d, 46002), conn::ESTABLISHED);
        assert_eq!(d.global().reused, 2);

        // DR's last state after a close is FIN_WAIT: mode 1 keeps it (the
        // SYN moves it to SYN_RECV on the same real, not a new connection)...
        d.table(0, 1);
        sent_to(d, 46003, SYN);
        sent_to(d, 46003, ACK);
        sent_to(d, 46003, FIN_ACK);
        assert_eq!(state_of(d, 46003), conn::FIN_WAIT);
        d.table(0, 4);
        let new_a = d.counters(map_names::REAL_STATS, 1).new_conns;
        assert_eq!(sent_to(d, 46003, SYN), REAL_A_MAC);
        assert_eq!(state_of(d, 46003), conn::SYN_RECV);
        assert_eq!(d.counters(map_names::REAL_STATS, 1).new_conns, new_a);
        // ...mode 2 (and 3) reuses it, for the methods whose replies bypass us.
        reuse_mode(d, 2);
        d.table(0, 1);
        sent_to(d, 46004, SYN);
        sent_to(d, 46004, ACK);
        sent_to(d, 46004, FIN_ACK);
        d.table(0, 4);
        assert_eq!(sent_to(d, 46004, SYN), REAL_B_MAC);
        assert_eq!(d.global().reused, 3);

        // Mode 0: no special case; TIME_WAIT and CLOSE keep their real.
        reuse_mode(d, 0);
        d.table(0, 1);
        sent_to(d, 46005, SYN);
        sent_to(d, 46005, ACK);
        sent_to(d, 46005, RST);
        d.table(0, 4);
        assert_eq!(sent_to(d, 46005, SYN), REAL_A_MAC);
        assert_eq!(state_of(d, 46005), conn::SYN_RECV);
        assert_eq!(d.global().reused, 3);
    });
}

#[test]
fn a_persistent_service_never_reuses_a_closed_flow() {
    use lb_common::{SERVICE_F_PERSISTENT, conn};
    with_director(|d| {
        standard(d);
        d.real(4, 0, REAL_B_MAC, LO, true);
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(d.ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        let key = ServiceKey {
            addr: addr4(VIP4),
            port: 80u16.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
        };
        let mut info = m.get(&key, 0).unwrap();
        info.flags |= SERVICE_F_PERSISTENT;
        info.persist_timeout_s = 300;
        info.persist_mask = [u32::MAX, 0, 0, 0];
        m.insert(key, info, 0).unwrap();
        sent_to(d, 47000, SYN);
        sent_to(d, 47000, ACK);
        sent_to(d, 47000, RST);
        assert_eq!(state_of(d, 47000), conn::CLOSE);
        let new_a = d.counters(map_names::REAL_STATS, 1).new_conns;
        // IPVS: the template controls the connection; no new one is made.
        assert_eq!(sent_to(d, 47000, SYN), REAL_A_MAC);
        assert_eq!(state_of(d, 47000), conn::SYN_RECV);
        assert_eq!(d.counters(map_names::REAL_STATS, 1).new_conns, new_a);
        assert_eq!(d.global().reused, 0);
    });
}

#[test]
fn a_bare_ack_is_a_pickup_that_counts_for_nothing_and_expires_soon() {
    use lb_common::conn;
    with_director(|d| {
        standard(d);
        // Forwarded (a Backup taking over keeps established connections),
        // but no connection of its real, active or not, and no new one.
        for _ in 0..3 {
            assert_eq!(sent_to(d, 48000, ACK), REAL_A_MAC);
        }
        assert_eq!(state_of(d, 48000), conn::PICKUP);
        assert_eq!(d.conns(1), ConnCounts::default());
        assert_eq!(d.counters(map_names::REAL_STATS, 1).new_conns, 0);
        assert_eq!(d.global().pickups, 1);
        // 40 of them (spoofed) do not make a real with uthreshold 30 refuse
        // a legitimate SYN.
        let mut m: Array<_, RealInfo> =
            Array::try_from(d.ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
        let mut a = m.get(&1, 0).unwrap();
        a.u_threshold = 30;
        m.set(1, a, 0).unwrap();
        for p in 0..40 {
            sent_to(d, 48100 + p, ACK);
        }
        assert_eq!(d.conns(1), ConnCounts::default());
        assert_eq!(sent_to(d, 48200, SYN), REAL_A_MAC);
        assert_eq!(d.conns(1).active, 1);
        // Idle 59 s it is still the same flow; idle past 60 s it is gone,
        // and its next packet makes a new pickup.
        let key = flow_of_tcp4(48000, 80);
        age(d, &key, 59);
        let created = d.conntrack(&key).unwrap().created_ns;
        sent_to(d, 48000, ACK);
        assert_eq!(d.conntrack(&key).unwrap().created_ns, created);
        assert_eq!(d.global().stale, 0);
        age(d, &key, 61);
        sent_to(d, 48000, ACK);
        assert_ne!(d.conntrack(&key).unwrap().created_ns, created);
        assert_eq!(d.global().stale, 1);
        assert_eq!(state_of(d, 48000), conn::PICKUP);
        // A SYN on a pickup's ports opens a real connection, counted.
        d.real(4, 0, REAL_B_MAC, LO, true);
        d.table(0, 4);
        assert_eq!(sent_to(d, 48000, SYN), REAL_B_MAC);
        assert_eq!(d.conns(4).active, 1);
        assert_eq!(d.counters(map_names::REAL_STATS, 4).new_conns, 1);
    });
}

#[test]
fn an_entry_past_its_timeout_is_a_new_flow_on_lookup() {
    use lb_common::conn;
    with_director(|d| {
        standard(d);
        d.real(4, 0, REAL_B_MAC, LO, true);
        sent_to(d, 49000, SYN);
        sent_to(d, 49000, ACK);
        sent_to(d, 49001, SYN);
        sent_to(d, 49001, ACK);
        assert_eq!(d.conns(1).active, 2);
        d.table(0, 4);
        // Idle 899 s: still the flow of real A.
        age(d, &flow_of_tcp4(49000, 80), 899);
        assert_eq!(sent_to(d, 49000, ACK), REAL_A_MAC);
        // Idle 901 s (tcp_timeout 900): gone, uncounted once, and the
        // packet is a new flow: mid-stream, a pickup on the table's real.
        age(d, &flow_of_tcp4(49000, 80), 901);
        assert_eq!(sent_to(d, 49000, ACK), REAL_B_MAC);
        assert_eq!(state_of(d, 49000), conn::PICKUP);
        assert_eq!(d.conns(1).active, 1);
        assert_eq!(d.conns(4), ConnCounts::default());
        assert_eq!(d.global().stale, 1);
        // A SYN on an expired flow's ports is a new connection, counted.
        age(d, &flow_of_tcp4(49001, 80), 901);
        assert_eq!(sent_to(d, 49001, SYN), REAL_B_MAC);
        assert_eq!(d.conns(1), ConnCounts::default());
        assert_eq!(d.conns(4).active, 1);
        // UDP after udp_timeout (300 s).
        let q = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(CLIENT4, VIP4, IP_UDP, &[], 0, &udp(5353, 53, b"q")),
        );
        d.run(&q, LO);
        assert_eq!(d.conns(2).inactive, 1);
        let ukey = FlowKey {
            proto: IP_UDP,
            sport: 5353u16.to_be(),
            dport: 53u16.to_be(),
            ..flow_of_tcp4(0, 0)
        };
        age(d, &ukey, 301);
        let created = d.conntrack(&ukey).unwrap().created_ns;
        d.run(&q, LO);
        assert_ne!(d.conntrack(&ukey).unwrap().created_ns, created);
        assert_eq!(d.conns(2).inactive, 1, "uncounted once, counted once");
        assert_eq!(d.global().stale, 3);
        // An ICMP error about an expired flow is for no flow: it passes.
        age(d, &flow_of_tcp4(49001, 80), 901);
        let error = icmp_error4(3, 4, &tcp4_segment(VIP4, CLIENT4, 80, 49001));
        assert_eq!(d.run(&error, LO).0, XDP_PASS);
    });
}

#[test]
fn a_nat_reply_proves_a_pickup_and_a_closed_nat_flow_is_reused() {
    use lb_common::conn;
    with_nat_director(|d, fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 8080);
        d.table(0, 1);
        let client = |sport: u16, flags: u8| {
            let mut t = tcp(sport, 80);
            t[13] = flags;
            frame4(CLIENT4, VIP4, &t, IP_TCP, (DIRECTOR_MAC, CLIENT_MAC))
        };
        let real = |dport: u16, flags: u8| {
            let mut t = tcp(8080, dport);
            t[13] = flags;
            frame4(RIP4, CLIENT4, &t, IP_TCP, (FA_MAC, REAL_A_MAC))
        };
        let state = |d: &Director, sport| d.conntrack(&flow_of_tcp4(sport, 80)).unwrap().state;
        // A mid-stream ACK: a pickup, forwarded with its reply entry.
        assert_eq!(d.run(&client(50000, ACK), fb).0, XDP_REDIRECT);
        assert_eq!(state(d, 50000), u64::from(conn::PICKUP));
        assert_eq!(d.conns(1), ConnCounts::default());
        // The real answering with a RST does not prove it; answering with
        // an ACK does: ESTABLISHED, an active connection.
        assert_eq!(d.run(&real(50000, RST | ACK), fa).0, XDP_REDIRECT);
        assert_eq!(state(d, 50000), u64::from(conn::PICKUP));
        assert_eq!(d.run(&real(50000, ACK), fa).0, XDP_REDIRECT);
        assert_eq!(state(d, 50000), u64::from(conn::ESTABLISHED));
        assert_eq!(d.conns(1).active, 1);
        // NAT follows both directions as IPVS does: the server closing
        // first ends in TIME_WAIT, whose ports mode 1 reuses.
        for (from_real, flags) in [
            (false, SYN),
            (true, SYN | ACK),
            (false, ACK),
            (true, FIN_ACK),
            (false, ACK),
            (false, FIN_ACK),
            (true, ACK),
        ] {
            let f = if from_real {
                real(50001, flags)
            } else {
                client(50001, flags)
            };
            d.run(&f, if from_real { fa } else { fb });
        }
        assert_eq!(state(d, 50001), u64::from(conn::TIME_WAIT));
        let new_conns = d.counters(map_names::REAL_STATS, 1).new_conns;
        assert_eq!(d.run(&client(50001, SYN), fb).0, XDP_REDIRECT);
        assert_eq!(state(d, 50001), u64::from(conn::SYN_RECV));
        assert_eq!(
            d.counters(map_names::REAL_STATS, 1).new_conns,
            new_conns + 1
        );
        assert_eq!(d.global().reused, 1);
        // Mode 3 does not reuse a NAT flow in FIN_WAIT: IPVS sees its
        // replies, so FIN_WAIT is not its last state.
        reuse_mode(d, 3);
        for f in [
            client(50002, SYN),
            client(50002, ACK),
            client(50002, FIN_ACK),
        ] {
            d.run(&f, fb);
        }
        assert_eq!(state(d, 50002), u64::from(conn::CLOSE_WAIT));
        d.run(&real(50002, FIN_ACK), fa);
        d.run(&client(50003, SYN), fb);
        d.run(&client(50003, ACK), fb);
        d.run(&real(50003, FIN_ACK), fa);
        assert_eq!(state(d, 50003), u64::from(conn::FIN_WAIT));
        d.run(&client(50003, SYN), fb);
        assert_eq!(d.global().reused, 1);
        // An expired flow's reply is nobody's: it goes to the stack.
        age(d, &flow_of_tcp4(50000, 80), 901);
        let reply = real(50000, ACK);
        assert_eq!(d.run(&reply, fa), (XDP_PASS, reply.clone()));
    });
}

// ---- The upkeep program ----

/// Runs `ops` through the upkeep program as the agent's reclaimer does
/// (written to UPKEEP_OPS, the count in the frame) and returns them done.
fn run_upkeep(d: &mut Director, ops: &[upkeep::Op]) -> Vec<upkeep::Op> {
    {
        let mut m: Array<_, upkeep::Op> =
            Array::try_from(d.ebpf.map_mut(map_names::UPKEEP_OPS).unwrap()).unwrap();
        for (i, op) in (0u32..).zip(ops) {
            m.set(i, *op, 0).unwrap();
        }
    }
    let prog: &Xdp = d.ebpf.program(PROG_UPKEEP).unwrap().try_into().unwrap();
    let mut frame = vec![0u8; upkeep::RUN_FRAME];
    frame[..4].copy_from_slice(&(ops.len() as u32).to_ne_bytes());
    assert_eq!(xdp::test_run(prog, &frame, LO).unwrap().0, XDP_DROP);
    let m: Array<&MapData, upkeep::Op> =
        Array::try_from(d.ebpf.map(map_names::UPKEEP_OPS).unwrap()).unwrap();
    (0..ops.len() as u32)
        .map(|i| m.get(&i, 0).unwrap())
        .collect()
}

fn reap(flow: FlowKey) -> upkeep::Op {
    upkeep::Op {
        kind: upkeep::OP_REAP,
        flow,
        ..upkeep::Op::default()
    }
}

#[test]
fn the_upkeep_program_reaps_only_what_expired_uncounting_it_once() {
    use lb_common::conn;
    with_nat_director(|d, _fa, fb| {
        d.service_with(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, method::NAT);
        d.nat_real(1, 0, addr4(RIP4), FAMILY_V4, 8080);
        d.table(0, 1);
        let client = |sport: u16, flags: u8| {
            let mut t = tcp(sport, 80);
            t[13] = flags;
            frame4(CLIENT4, VIP4, &t, IP_TCP, (DIRECTOR_MAC, CLIENT_MAC))
        };
        for p in [51000, 51001, 51002] {
            d.run(&client(p, SYN), fb);
            d.run(&client(p, ACK), fb);
        }
        d.run(&client(51003, ACK), fb);
        assert_eq!(d.conns(1).active, 3);
        let reply_of = |sport: u16| FlowKey {
            src: addr4(RIP4),
            dst: addr4(CLIENT4),
            sport: 8080u16.to_be(),
            dport: sport.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        // 51000 idled out; 51001 did not; 51003 is a pickup past 60 s; 51009 never was.
        age(d, &flow_of_tcp4(51000, 80), 901);
        age(d, &flow_of_tcp4(51001, 80), 100);
        age(d, &flow_of_tcp4(51003, 80), 61);
        let done = run_upkeep(
            d,
            &[
                reap(flow_of_tcp4(51000, 80)),
                reap(flow_of_tcp4(51001, 80)),
                reap(flow_of_tcp4(51003, 80)),
                reap(flow_of_tcp4(51009, 80)),
                reap(flow_of_tcp4(51000, 80)),
            ],
        );
        let outcome: Vec<(u32, u32, u32)> = done
            .iter()
            .map(|o| (o.outcome, o.state, o.target))
            .collect();
        assert_eq!(
            outcome,
            [
                (upkeep::REAPED, conn::ESTABLISHED, 1),
                (upkeep::ALIVE, conn::ESTABLISHED, 1),
                (upkeep::REAPED, conn::PICKUP, 1),
                (upkeep::GONE, 0, 0),
                (upkeep::GONE, 0, 0),
            ]
        );
        assert_eq!(d.conntrack(&flow_of_tcp4(51000, 80)), None);
        assert_eq!(
            d.nat_reply(&reply_of(51000)),
            None,
            "its NAT reply entry went too"
        );
        assert_eq!(d.nat_reply(&reply_of(51001)), Some(flow_of_tcp4(51001, 80)));
        assert_eq!(
            d.conns(1).active,
            2,
            "uncounted once; the pickup never counted"
        );
        let left = |d: &Director| {
            let m: Array<&MapData, RealConns> =
                Array::try_from(d.ebpf.map(map_names::REAL_CONNS).unwrap()).unwrap();
            m.get(&1, 0).unwrap().left
        };
        assert_eq!(left(d).active, 1);
        // Evicted connections are subtracted, never below zero; what left
        // is recorded.
        let uncount = upkeep::Op {
            kind: upkeep::OP_UNCOUNT,
            target: 1,
            counts: ConnCounts {
                active: 5,
                inactive: 0,
            },
            ..upkeep::Op::default()
        };
        let done = run_upkeep(d, &[uncount]);
        assert_eq!(done[0].outcome, upkeep::DONE);
        assert_eq!(d.conns(1), ConnCounts::default());
        assert_eq!(left(d).active, 6);
    });
}
