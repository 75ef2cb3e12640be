//! Differential fuzzing of the director: random and mutated frames through
//! BPF_PROG_TEST_RUN, each compared with an independent userspace model of
//! what the program must do with it, action and output bytes, over DR, NAT
//! (both directions, ICMP errors included) and TUN (IPIP, IPv6 tunnels,
//! GUE, across families) services.
//!
//! The program runs in a namespace of its own with two veths, as a two-armed
//! director: clients behind `fb` (through a gateway), NAT reals on `fa`, so
//! NAT's FIB lookups find next hops (model.rs keeps the same FIB). Besides
//! exact bytes, every NAT output whose input carried correct checksums is
//! checked to carry correct checksums, computed from scratch.
//!
//! Not covered here (see xdp_fixtures.rs and xdp_tun.rs): the TUN "too big"
//! answers (the tunnel MTU is set high enough that no frame needs one),
//! schedulers other than mh, thresholds, draining and nodest policies.
//!
//! `XLB_FUZZ_FRAMES` (default 10 000) and `XLB_FUZZ_SEED` (default 1) size and
//! seed a run; `cargo xtask fuzz` runs 100 000 frames with a fresh seed.

mod csum;
mod generator;
mod model;
mod rows;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, MapData},
    programs::Xdp,
};
use lb_common::{
    FlowKey, FlowState, PROG_DIRECTOR, REAL_F_PRESENT, REAL_F_REACHABLE, RealConns, RealInfo,
    SERVICE_F_ACTIVE, SERVICE_F_HASH_PORT, SETTINGS_F_NAT, ServiceInfo, ServiceKey, Settings,
    addr_words, family_of, globals, map_names, method, sched, tun,
};
use model::{FB_MAC, Fib, GW_MAC, ICMP, Method, Model, Real, Service, TABLE, TCP, UDP, tun_src};
use std::net::{IpAddr, Ipv4Addr};
use xlb::maglev;
use xlb_testbed::{netns::Netns, xdp};

/// Flow table size: larger than any run's number of flows, so none is evicted
/// and the model's set of flows stays exact.
const CONNTRACK: u32 = 1 << 18;
/// The MTU the director is told for tunnels: no generated frame needs a
/// "too big" answer.
const TUN_MTU: u16 = 9000;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A real: address, port (NAT), GUE port (TUN).
type RealPlan = (IpAddr, u16, Option<u16>);
/// A service: VIP, port, protocol, active, hash the port, method, reals.
type Plan = (IpAddr, u16, u8, bool, bool, Method, Vec<RealPlan>);

/// The services: one of each method per family and protocol that matters,
/// with reals of mixed families and tunnel types under TUN.
fn services() -> Vec<Service> {
    let nat4 = |n: u8, port| (v4(&format!("10.1.0.{n}")), port, None);
    let nat6 = |n: u8, port| (ip(&format!("fd01::{n:x}")), port, None);
    let dr = || vec![(v4("0.0.0.0"), 0, None); 3];
    #[rustfmt::skip]
    let plan: Vec<Plan> = vec![
        (v4("10.0.0.100"), 80, TCP, true, false, Method::Dr, dr()),
        (v4("10.0.0.100"), 53, UDP, true, true, Method::Dr, dr()),
        (ip("fd00::100"), 80, TCP, true, true, Method::Dr, dr()),
        (ip("fd00::100"), 53, UDP, true, false, Method::Dr, dr()),
        (v4("10.0.0.101"), 80, TCP, false, false, Method::Dr, vec![]),
        (v4("10.0.0.100"), 8080, TCP, true, false, Method::Nat,
            vec![nat4(11, 8000), nat4(12, 8001), nat4(13, 8002)]),
        (v4("10.0.0.100"), 5353, UDP, true, true, Method::Nat,
            vec![nat4(14, 53), nat4(15, 53), nat4(16, 5300)]),
        (ip("fd00::100"), 8080, TCP, true, true, Method::Nat,
            vec![nat6(0x11, 80), nat6(0x12, 80), nat6(0x13, 8080)]),
        (ip("fd00::100"), 5353, UDP, true, false, Method::Nat,
            vec![nat6(0x14, 53), nat6(0x15, 5353), nat6(0x16, 5300)]),
        (v4("10.0.0.100"), 443, TCP, true, false, Method::Tun,
            vec![(v4("10.2.0.1"), 443, None), (ip("fd02::2"), 443, None),
                 (v4("10.2.0.3"), 443, Some(6080))]),
        (ip("fd00::100"), 443, UDP, true, true, Method::Tun,
            vec![(ip("fd02::4"), 443, Some(6081)), (v4("10.2.0.5"), 443, None),
                 (ip("fd02::6"), 443, None)]),
    ];
    let mut next_real = 1;
    plan.into_iter()
        .enumerate()
        .map(
            |(id, (vip, port, proto, active, hash_port, method, reals))| {
                let reals: Vec<Real> = reals
                    .into_iter()
                    .enumerate()
                    .map(|(i, (addr, rport, gue_port))| {
                        let rid = next_real;
                        next_real += 1;
                        Real {
                            id: rid,
                            addr,
                            port: rport,
                            mac: [0x02, 0xee, 0, 0, id as u8, i as u8],
                            gue_port,
                            egress: None,
                        }
                    })
                    .collect();
                // The harness writes the table itself: any distinct folds do.
                let backends: Vec<maglev::Backend> = reals
                    .iter()
                    .enumerate()
                    .map(|(i, r)| maglev::Backend {
                        fold: 0x0aee_0000 | r.id,
                        port: r.port,
                        weight: i as u32 + 1,
                    })
                    .collect();
                let table = maglev::build(&backends, TABLE)
                    .map(|t| t.into_iter().map(|i| Some(i as usize)).collect())
                    .unwrap_or_else(|| vec![None; TABLE as usize]);
                Service {
                    id: id as u32,
                    vip,
                    port,
                    proto,
                    active,
                    hash_port,
                    method,
                    table,
                    reals,
                }
            },
        )
        .collect()
}

/// The two-armed director's links, addresses, routes and neighbours.
fn wire(ns: &Netns, services: &[Service]) {
    let run = |args: &[&str]| ns.run("ip", args).unwrap();
    run(&["link", "add", "fa", "type", "veth", "peer", "name", "fb"]);
    run(&["link", "set", "fa", "address", "02:00:00:00:00:fa", "up"]);
    run(&["link", "set", "fb", "address", "02:00:00:00:00:fb", "up"]);
    run(&["addr", "add", "10.1.0.1/24", "dev", "fa"]);
    run(&["addr", "add", "10.0.0.254/24", "dev", "fb"]);
    run(&["-6", "addr", "add", "fd01::1/64", "dev", "fa", "nodad"]);
    run(&["-6", "addr", "add", "fd00::fe/64", "dev", "fb", "nodad"]);
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let mut neighbours = vec![
        ("10.0.0.1".to_string(), "fb", mac(GW_MAC)),
        ("fd00::1".to_string(), "fb", mac(GW_MAC)),
    ];
    for s in services.iter().filter(|s| s.method == Method::Nat) {
        for r in &s.reals {
            neighbours.push((r.addr.to_string(), "fa", mac(r.mac)));
        }
    }
    for (addr, dev, lladdr) in &neighbours {
        run(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            lladdr,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    run(&[
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "10.0.0.1",
        "dev",
        "fb",
    ]);
    run(&[
        "-6",
        "route",
        "add",
        "fd00:1::/64",
        "via",
        "fd00::1",
        "dev",
        "fb",
    ]);
    ns.sysctl("net.ipv4.ip_forward", "1").unwrap();
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
}

fn load(services: &[Service], fib: &Fib) -> Ebpf {
    let mut ebpf = EbpfLoader::new()
        .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
        .map_max_entries(map_names::MAGLEV, TABLE * lb_common::defaults::MAX_SERVICES)
        .map_max_entries(map_names::CONNTRACK, CONNTRACK)
        .map_max_entries(map_names::NAT_REPLIES, CONNTRACK)
        .load(xlb::EBPF_OBJECT)
        .unwrap();
    let prog: &mut Xdp = ebpf.program_mut(PROG_DIRECTOR).unwrap().try_into().unwrap();
    prog.load().unwrap();
    {
        let mut ports: DevMapHash<_> =
            DevMapHash::try_from(ebpf.map_mut(map_names::TX_PORTS).unwrap()).unwrap();
        ports.insert(fib.fa, fib.fa, None, 0).unwrap();
        ports.insert(fib.fb, fib.fb, None, 0).unwrap();
    }
    {
        let mut m: Array<_, Settings> =
            Array::try_from(ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
        let s = Settings {
            tun_src_v4: addr_words(tun_src(false)),
            tun_src_v6: addr_words(tun_src(true)),
            flags: SETTINGS_F_NAT | Settings::ipvs_defaults().flags,
            ..Settings::ipvs_defaults()
        };
        m.set(0, s, 0).unwrap();
    }
    for s in services {
        {
            let mut m: Array<_, RealInfo> =
                Array::try_from(ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
            for r in &s.reals {
                let (addr, m_method) = match s.method {
                    Method::Dr => (s.vip, method::DR),
                    Method::Nat => (r.addr, method::NAT),
                    Method::Tun => (r.addr, method::TUN),
                };
                let info = RealInfo {
                    addr: addr_words(addr),
                    port: r.port.to_be(),
                    family: family_of(addr),
                    method: m_method,
                    mac: r.mac,
                    tun_type: if r.gue_port.is_some() {
                        tun::GUE
                    } else {
                        tun::IPIP
                    },
                    tun_port: r.gue_port.unwrap_or(0).to_be(),
                    ifindex: fib.fb,
                    src_mac: FB_MAC,
                    mtu: TUN_MTU,
                    weight: 1,
                    service_id: s.id,
                    flags: REAL_F_PRESENT | REAL_F_REACHABLE,
                    ..RealInfo::default()
                };
                m.set(r.id, info, 0).unwrap();
            }
        }
        {
            let mut t: Array<_, u32> =
                Array::try_from(ebpf.map_mut(map_names::MAGLEV).unwrap()).unwrap();
            for (slot, r) in s.table.iter().enumerate() {
                let rid = r.map_or(lb_common::REAL_NONE, |i| s.reals[i].id);
                t.set(s.id * TABLE + slot as u32, rid, 0).unwrap();
            }
        }
        let mut flags = 0;
        if s.active {
            flags |= SERVICE_F_ACTIVE;
        }
        if s.hash_port {
            flags |= SERVICE_F_HASH_PORT;
        }
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        m.insert(
            ServiceKey {
                addr: addr_words(s.vip),
                port: s.port.to_be(),
                proto: s.proto,
                family: family_of(s.vip),
            },
            ServiceInfo {
                id: s.id,
                flags,
                sched: sched::MH,
                method: match s.method {
                    Method::Dr => method::DR,
                    Method::Nat => method::NAT,
                    Method::Tun => method::TUN,
                },
                ..ServiceInfo::default()
            },
            0,
        )
        .unwrap();
    }
    ebpf
}

/// Whether the IP packet of frame `f` (and an ICMP error's quoted IPv4
/// header) carries correct checksums; `None` if `f` does not parse.
fn checksums_ok(f: &[u8]) -> Option<bool> {
    let p = model::parse(f)?;
    let mut ok = csum::valid(f, p.l3, p.l4, p.proto);
    if p.icmp_error && p.proto == ICMP {
        let q = p.l4 + 8;
        ok &= csum::ipv4_header(&f[q..]) == u16::from_be_bytes([f[q + 10], f[q + 11]]);
    }
    Some(ok)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A frame in hex, long ones cut (the first difference is reported apart).
fn hex(f: &[u8]) -> String {
    let shown: String = f.iter().take(96).map(|b| format!("{b:02x}")).collect();
    if f.len() > 96 {
        format!("{shown}… ({} bytes)", f.len())
    } else {
        shown
    }
}

/// Where two frames first differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Paths every run must take (at the default size and above).
const PATHS: [&str; 11] = [
    "DR",
    "DR ICMP error",
    "NAT to the real",
    "NAT reply",
    "NAT ICMP error to the real",
    "NAT ICMP error to the client",
    "NAT rewritten, to the stack",
    "TUN IPIP over IPv4",
    "TUN IPIP over IPv6",
    "TUN GUE over IPv4",
    "TUN GUE over IPv6",
];

/// Where the director's flow table and counts differ from the model's
/// after the run: every flow's state, every real's live counts.
fn states_and_counts(ebpf: &Ebpf, model: &Model) -> Vec<String> {
    let ct: HashMap<&MapData, FlowKey, FlowState> =
        HashMap::try_from(ebpf.map(map_names::CONNTRACK).unwrap()).unwrap();
    let mut differ = Vec::new();
    let mut seen = 0;
    for entry in ct.iter() {
        let (k, v) = entry.unwrap();
        seen += 1;
        let flow = (
            k.family,
            k.proto,
            lb_common::addr_ip(k.src, k.family),
            lb_common::addr_ip(k.dst, k.family),
            u16::from_be(k.sport),
            u16::from_be(k.dport),
        );
        let want = model.flows.get(&flow).map(|&(state, real)| (state, real));
        if want != Some((v.state as u32, v.real_id)) && differ.len() < 5 {
            differ.push(format!(
                "flow {flow:?}: director (state {}, real {}), model {want:?}",
                lb_common::conn::name(v.state as u32),
                v.real_id
            ));
        }
    }
    if seen != model.flows.len() {
        differ.push(format!(
            "{seen} flows in the director's table, {} in the model's",
            model.flows.len()
        ));
    }
    let conns: Array<&MapData, RealConns> =
        Array::try_from(ebpf.map(map_names::REAL_CONNS).unwrap()).unwrap();
    for (&real, &want) in &model.conns {
        let got = conns.get(&real, 0).unwrap().live;
        if got != want {
            differ.push(format!(
                "real {real}: director counts {got:?}, model {want:?}"
            ));
        }
    }
    differ
}

#[test]
fn the_director_does_what_the_model_says_for_random_and_mutated_frames() {
    xlb_testbed::require_root().unwrap();
    let frames = env("XLB_FUZZ_FRAMES", 10_000);
    let seed = env("XLB_FUZZ_SEED", 1);
    let ns = Netns::create("fuzz").unwrap();
    let services = services();
    wire(&ns, &services);
    let (model, kinds, checked, mismatches) = ns
        .enter(|| {
            let index = |name: &std::ffi::CStr| unsafe { libc::if_nametoindex(name.as_ptr()) };
            let fib = Fib {
                fa: index(c"fa"),
                fb: index(c"fb"),
                reals: services
                    .iter()
                    .filter(|s| s.method == Method::Nat)
                    .flat_map(|s| s.reals.iter().map(|r| (r.addr, r.mac)))
                    .collect(),
            };
            let ebpf = load(&services, &fib);
            let prog: &Xdp = ebpf.program(PROG_DIRECTOR).unwrap().try_into().unwrap();
            let mut generator = generator::Generator::new(seed, generator::targets(&services));
            let (fa, fb) = (fib.fa, fib.fb);
            let mut model = Model::new(services, fib);
            let mut kinds = [0usize; 5];
            let mut checked = 0;
            let mut mismatches = Vec::new();
            for n in 0..frames {
                let frame = generator.frame();
                let ingress = if frame.from_reals { fa } else { fb };
                let want = model.expect(&frame.bytes, ingress);
                let got = xdp::test_run(prog, &frame.bytes, ingress).unwrap();
                kinds[want.0.min(4) as usize] += 1;
                if got != want && mismatches.len() < 5 {
                    mismatches.push(format!(
                        "frame {n} (on {}, model path {:?}, outputs differ from byte {}): {}\n  model {} {}\n  xdp   {} {}",
                        if frame.from_reals { "fa" } else { "fb" },
                        model.last,
                        first_difference(&want.1, &got.1),
                        hex(&frame.bytes),
                        want.0,
                        hex(&want.1),
                        got.0,
                        hex(&got.1)
                    ));
                }
                // Correct checksums in, correct checksums out.
                if model.last.starts_with("NAT") && checksums_ok(&frame.bytes) == Some(true) {
                    checked += 1;
                    if checksums_ok(&got.1) != Some(true) && mismatches.len() < 5 {
                        mismatches.push(format!(
                            "frame {n}: valid checksums in, invalid out: {}\n  out {}",
                            hex(&frame.bytes),
                            hex(&got.1)
                        ));
                    }
                }
            }
            mismatches.extend(states_and_counts(&ebpf, &model));
            (model, kinds, checked, mismatches)
        })
        .unwrap();
    eprintln!(
        "{frames} frames (seed {seed}): {} passed, {} sent by XDP_TX, {} redirected, {} dropped; \
         {checked} NAT outputs checksum-checked\n{:#?}",
        kinds[xdp::XDP_PASS as usize],
        kinds[xdp::XDP_TX as usize],
        kinds[xdp::XDP_REDIRECT as usize],
        kinds[xdp::XDP_DROP as usize],
        model.paths
    );
    assert!(
        mismatches.is_empty(),
        "seed {seed}: the director and the model disagree:\n{}",
        mismatches.join("\n")
    );
    // The run covered every method's paths and both outcomes in earnest.
    for path in PATHS {
        assert!(
            model.paths.get(path).is_some_and(|&n| n > 0),
            "no frame took the path {path:?}"
        );
    }
    assert!(checked > frames as usize / 50, "{checked} checksum checks");
    assert!(kinds[xdp::XDP_TX as usize] > frames as usize / 5);
    assert!(kinds[xdp::XDP_REDIRECT as usize] > frames as usize / 20);
    assert!(kinds[xdp::XDP_PASS as usize] > frames as usize / 10);
}
