//! The director program, packet by packet, through BPF_PROG_TEST_RUN.
//! Single-frame cases are rows of the fixture table
//! (`xlb_testbed::fixtures`, DR and NAT rows here, TUN rows in xdp_tun.rs):
//! adding one is adding a row there. The tests below are sequences: flows
//! kept, moved, reused and expired, connection states and counts, map
//! contents the program writes, and the upkeep program. Each runs inside a
//! private network namespace (its `lo` is the ingress device, a veth pair
//! the redirect target); nothing is attached.

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
use xlb_testbed::{
    fixtures::{
        self, CLIENT_MAC, CLIENT4, DIRECTOR_MAC, EGRESS_MAC, FA_MAC, REAL_A_MAC, REAL_B_MAC,
        REAL_C_MAC, RIP4, ROUTER4, VIP4, VIP6, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX,
        dr::{icmp_error4, tcp4},
        nat::{client4, frame4, real4, tcp4_segment},
    },
    xdp::{LO, TABLE},
};
use xlb_testbed::{netns::Netns, xdp};

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

#[test]
fn every_dr_and_nat_row_of_the_fixture_table() {
    let mut rows = fixtures::dr::rows();
    rows.extend(fixtures::nat::rows());
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
fn becoming_active_is_all_a_service_needs_to_forward() {
    with_director(|d| {
        d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, false);
        d.real(1, 0, REAL_A_MAC, LO, true);
        d.table(0, 1);
        assert_eq!(d.run(&tcp4(VIP4, 80), LO).0, XDP_PASS);
        d.service(addr4(VIP4), FAMILY_V4, 80, IP_TCP, 0, true);
        assert_eq!(d.run(&tcp4(VIP4, 80), LO).0, XDP_TX);
    });
}

#[test]
fn an_icmp_error_of_a_flow_creates_no_flow_and_counts_no_connection() {
    with_director(|d| {
        standard(d);
        d.run(&tcp4(VIP4, 80), LO);
        let reply = ipv4(VIP4, CLIENT4, IP_TCP, &[], 0, &tcp(80, 40000));
        let frag_needed = icmp_error4(3, 4, &reply);
        assert_eq!(d.run(&frag_needed, LO).0, XDP_TX);
        assert_eq!(d.conns(1).active, 1);
        assert_eq!(d.counters(map_names::REAL_STATS, 1).new_conns, 1);
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

// ---- NAT ----

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

#[test]
fn a_nat_flow_records_its_reply_tuple() {
    with_nat_director(|d, _fa, fb| {
        nat_tcp4_flow(d, fb);
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

// ---- ICMP errors of NAT flows ----

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
fn icmp_errors_neither_make_nor_move_a_nat_flow() {
    with_nat_director(|d, fa, fb| {
        nat_tcp4_flow(d, fb);
        let before = d.conntrack(&flow_of_tcp4(40000, 80)).unwrap();
        let conns = d.conns(1);
        let quote = ipv4(
            VIP4,
            CLIENT4,
            IP_TCP,
            &[],
            0,
            &tcp4_segment(VIP4, CLIENT4, 80, 40000),
        );
        let to_real = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(
                ROUTER4,
                VIP4,
                IP_ICMP,
                &[],
                0,
                &icmp4(3, 4, [0, 0, 0x05, 0xdc], &quote),
            ),
        );
        assert_eq!(d.run(&to_real, fb).0, XDP_REDIRECT);
        let got = tcp4_segment(CLIENT4, RIP4, 40000, 8080);
        let from_real = eth(
            FA_MAC,
            REAL_A_MAC,
            ETH_IPV4,
            &ipv4(
                RIP4,
                CLIENT4,
                IP_ICMP,
                &[],
                0,
                &icmp4(3, 3, [0; 4], &ipv4(CLIENT4, RIP4, IP_TCP, &[], 0, &got)),
            ),
        );
        assert_eq!(d.run(&from_real, fa).0, XDP_REDIRECT);
        let after = d.conntrack(&flow_of_tcp4(40000, 80)).unwrap();
        assert_eq!((after.state, after.real_id), (before.state, before.real_id));
        assert_eq!(d.conns(1), conns);
        assert_eq!(d.global().pickups, 0);
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
        let (client, real) = (client4, real4);
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
        let client = client4;
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
