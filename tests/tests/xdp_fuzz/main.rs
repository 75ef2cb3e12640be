//! Differential fuzzing of the director: random and mutated frames through
//! BPF_PROG_TEST_RUN, each compared with an independent userspace model of
//! what the program must do with it, action and output bytes.
//!
//! The model is the parse rules (Ethernet, one 802.1Q tag, IPv4 with options
//! and fragments, IPv6 with extension headers, TCP/UDP, ICMP errors quoting
//! a flow), the service table, the flow table (which flows exist), and the
//! scheduler from lb-userspace (`maglev::build` for the tables,
//! `sched::model::hashed` for the choice, lb-common's hashes) for DR services.
//! A frame for an active DR service leaves by XDP_TX with only its MACs
//! changed; anything else passes unchanged.
//!
//! `XLB_FUZZ_FRAMES` (default 10 000) and `XLB_FUZZ_SEED` (default 1) size and
//! seed a run; `cargo xtask fuzz` runs 100 000 frames with a fresh seed.

mod common;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap},
    programs::Xdp,
};
use lb_common::{
    FAMILY_V4, FAMILY_V6, IfaceInfo, PROG_DIRECTOR, REAL_F_PRESENT, REAL_F_REACHABLE, RealInfo,
    SERVICE_F_ACTIVE, SERVICE_F_HASH_PORT, ServiceInfo, ServiceKey, addr_words, family_of, globals,
    map_names, method, sched, sched_hash,
};
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};
use xlb::{maglev, sched::model};
use xlb_testbed::{netns::Netns, xdp};

/// Maglev table size (a prime; small so the tables load fast).
const TABLE: u32 = 251;
/// Flow table size: larger than any run's number of flows, so none is evicted
/// and the model's set of flows stays exact.
const CONNTRACK: u32 = 1 << 18;
const DIRECTOR_MAC: [u8; 6] = [0x02, 0xd1, 0, 0, 0, 1];
const REALS_PER_SERVICE: usize = 3;
const MAX_FRAME: usize = 1514;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

fn vip4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))
}
fn vip6() -> IpAddr {
    IpAddr::V6("fd00::100".parse().unwrap())
}

/// One service as configured and as the model sees it.
struct Service {
    id: u32,
    vip: IpAddr,
    port: u16,
    proto: u8,
    active: bool,
    hash_port: bool,
    /// Maglev slot → index into `reals`.
    table: Vec<Option<usize>>,
    /// (real id, MAC).
    reals: Vec<(u32, [u8; 6])>,
}

fn services() -> Vec<Service> {
    let plan = [
        (vip4(), 80, TCP, true, false),
        (vip4(), 53, UDP, true, true),
        (vip6(), 80, TCP, true, true),
        (vip6(), 53, UDP, true, false),
        (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101)),
            80,
            TCP,
            false,
            false,
        ),
    ];
    let mut next_real = 1;
    plan.iter()
        .enumerate()
        .map(|(id, &(vip, port, proto, active, hash_port))| {
            let reals: Vec<(u32, [u8; 6])> = (0..if active { REALS_PER_SERVICE } else { 0 })
                .map(|i| {
                    let rid = next_real;
                    next_real += 1;
                    (rid, [0x02, 0xee, 0, 0, id as u8, i as u8])
                })
                .collect();
            let keys: Vec<Vec<u8>> = reals
                .iter()
                .map(|(rid, _)| format!("real-{rid}").into_bytes())
                .collect();
            let backends: Vec<maglev::Backend> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| maglev::Backend {
                    key: k,
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
                table,
                reals,
            }
        })
        .collect()
}

fn load(services: &[Service]) -> Ebpf {
    let mut ebpf = EbpfLoader::new()
        .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
        .map_max_entries(map_names::MAGLEV, TABLE * lb_common::defaults::MAX_SERVICES)
        .map_max_entries(map_names::CONNTRACK, CONNTRACK)
        .load(xlb::EBPF_OBJECT)
        .unwrap();
    let prog: &mut Xdp = ebpf.program_mut(PROG_DIRECTOR).unwrap().try_into().unwrap();
    prog.load().unwrap();
    {
        let mut m: HashMap<_, u32, IfaceInfo> =
            HashMap::try_from(ebpf.map_mut(map_names::IFACES).unwrap()).unwrap();
        m.insert(
            xdp::LO,
            IfaceInfo {
                mac: DIRECTOR_MAC,
                mtu: 1500,
            },
            0,
        )
        .unwrap();
    }
    for s in services {
        {
            let mut m: Array<_, RealInfo> =
                Array::try_from(ebpf.map_mut(map_names::REALS).unwrap()).unwrap();
            for &(rid, mac) in &s.reals {
                let info = RealInfo {
                    addr: addr_words(IpAddr::V4(Ipv4Addr::new(10, 0, 1, rid as u8))),
                    port: s.port.to_be(),
                    family: FAMILY_V4,
                    method: method::DR,
                    mac,
                    ifindex: xdp::LO,
                    weight: 1,
                    service_id: s.id,
                    flags: REAL_F_PRESENT | REAL_F_REACHABLE,
                    ..RealInfo::default()
                };
                m.set(rid, info, 0).unwrap();
            }
        }
        {
            let mut t: Array<_, u32> =
                Array::try_from(ebpf.map_mut(map_names::MAGLEV).unwrap()).unwrap();
            for (slot, r) in s.table.iter().enumerate() {
                let rid = r.map_or(lb_common::REAL_NONE, |i| s.reals[i].0);
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
                method: method::DR,
                ..ServiceInfo::default()
            },
            0,
        )
        .unwrap();
    }
    ebpf
}

/// A flow as the model keys it: family, protocol, addresses, ports (as on the wire).
type Flow = (u8, u8, IpAddr, IpAddr, u16, u16);

/// What the director must do with a frame.
struct Model {
    services: Vec<Service>,
    flows: HashSet<Flow>,
    /// ICMP errors the model sends to a flow's real (coverage).
    icmp_forwarded: usize,
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn ip_at(f: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let b: [u8; 16] = f[at..at + 16].try_into().unwrap();
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        let b: [u8; 4] = f[at..at + 4].try_into().unwrap();
        IpAddr::V4(Ipv4Addr::from(b))
    }
}

/// The parse rules: the flow of a TCP/UDP frame or of the flow an ICMP error
/// quotes (reversed), or `None` when the frame is not the director's to balance.
fn parse(f: &[u8]) -> Option<(Flow, bool)> {
    if f.len() < 14 {
        return None;
    }
    let mut ether = be16(f, 12);
    let mut l3 = 14;
    if ether == 0x8100 {
        if f.len() < 18 {
            return None;
        }
        ether = be16(f, 16);
        l3 = 18;
    }
    let (family, proto, src, dst, l4) = match ether {
        0x0800 => {
            if f.len() < l3 + 20 {
                return None;
            }
            let ihl = (f[l3] & 0x0f) as usize * 4;
            if f[l3] >> 4 != 4 || ihl < 20 {
                return None;
            }
            if (be16(f, l3 + 2) as usize) < ihl || l3 + ihl > f.len() {
                return None;
            }
            let frag = be16(f, l3 + 6);
            if (frag >> 13) & 1 != 0 || frag & 0x1fff != 0 {
                return None;
            }
            let (src, dst) = (ip_at(f, l3 + 12, false), ip_at(f, l3 + 16, false));
            (FAMILY_V4, f[l3 + 9], src, dst, l3 + ihl)
        }
        0x86dd => {
            if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                return None;
            }
            let (mut next, mut off) = (f[l3 + 6], l3 + 40);
            let mut upper = None;
            for _ in 0..4 {
                match next {
                    44 => return None,
                    0 | 43 | 60 | 51 => {
                        if f.len() < off + 2 {
                            return None;
                        }
                        let len = f[off + 1] as usize;
                        let size = if next == 51 {
                            (len + 2) * 4
                        } else {
                            (len + 1) * 8
                        };
                        next = f[off];
                        off += size & 0x7ff;
                    }
                    _ => {
                        upper = Some((next, off));
                        break;
                    }
                }
            }
            let (proto, l4) = upper?;
            let (src, dst) = (ip_at(f, l3 + 8, true), ip_at(f, l3 + 24, true));
            (FAMILY_V6, proto, src, dst, l4)
        }
        _ => return None,
    };
    if (proto == ICMP && family == FAMILY_V4) || (proto == ICMPV6 && family == FAMILY_V6) {
        if f.len() < l4 + 8 {
            return None;
        }
        let kind = f[l4];
        let error = if family == FAMILY_V4 {
            matches!(kind, 3 | 11 | 12)
        } else {
            matches!(kind, 1..=4)
        };
        if !error {
            return None;
        }
        let q = l4 + 8;
        let (qproto, qsrc, qdst, ports) = if family == FAMILY_V4 {
            if f.len() < q + 20 {
                return None;
            }
            let ihl = (f[q] & 0x0f) as usize * 4;
            if ihl < 20 {
                return None;
            }
            (
                f[q + 9],
                ip_at(f, q + 12, false),
                ip_at(f, q + 16, false),
                q + (ihl & 0x3c),
            )
        } else {
            if f.len() < q + 40 {
                return None;
            }
            (
                f[q + 6],
                ip_at(f, q + 8, true),
                ip_at(f, q + 24, true),
                q + 40,
            )
        };
        if qproto != TCP && qproto != UDP {
            return None;
        }
        if f.len() < ports + 4 {
            return None;
        }
        let (qsport, qdport) = (be16(f, ports), be16(f, ports + 2));
        return Some(((family, qproto, qdst, qsrc, qdport, qsport), true));
    }
    let ok = match proto {
        TCP => f.len() >= l4 + 20 && f[l4 + 12] >> 4 >= 5,
        UDP => f.len() >= l4 + 8,
        _ => false,
    };
    ok.then(|| {
        (
            (family, proto, src, dst, be16(f, l4), be16(f, l4 + 2)),
            false,
        )
    })
}

impl Model {
    /// The action and output frame for `f`, updating the flow table.
    fn expect(&mut self, f: &[u8]) -> (u32, Vec<u8>) {
        let pass = (xdp::XDP_PASS, f.to_vec());
        let Some((flow, icmp_error)) = parse(f) else {
            return pass;
        };
        let (family, proto, src, dst, sport, _) = flow;
        let Some(svc) = self.services.iter().find(|s| {
            s.vip == dst && s.port == flow.5 && s.proto == proto && family_of(s.vip) == family
        }) else {
            return pass;
        };
        if !svc.active {
            return pass;
        }
        if icmp_error && !self.flows.contains(&flow) {
            return pass;
        }
        // The flow keeps its real; with a fixed table that is the scheduler's
        // choice for it, which the model computes either way.
        let port = if svc.hash_port { sport } else { 0 };
        let fold = sched_hash::fold(family, &addr_words(src));
        let first = (sched_hash::mh(fold, port, 0) % TABLE) as usize;
        let mut reals: Vec<model::Real> = svc.reals.iter().map(|_| model::Real::new(1)).collect();
        let Some(i) = model::hashed(&svc.table, &mut reals, false, first, |_| 0) else {
            return (xdp::XDP_DROP, f.to_vec());
        };
        if icmp_error {
            self.icmp_forwarded += 1;
        } else {
            self.flows.insert(flow);
        }
        let mut out = f.to_vec();
        out[0..6].copy_from_slice(&svc.reals[i].1);
        out[6..12].copy_from_slice(&DIRECTOR_MAC);
        (xdp::XDP_TX, out)
    }
}

/// Frames from a grammar of what reaches a director, mutated now and then.
struct Generator {
    rng: fastrand::Rng,
    /// Flows sent so far (IPv4, IPv6), for ICMP errors that quote them.
    sent: [Vec<Flow>; 2],
}

impl Generator {
    fn client(&mut self, v6: bool) -> IpAddr {
        let n = self.rng.u8(1..=16);
        if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, n as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
        }
    }

    fn target(&mut self, v6: bool) -> (IpAddr, u16, u8) {
        let vip = if v6 { vip6() } else { vip4() };
        match self.rng.u8(0..10) {
            0 => (
                if v6 {
                    IpAddr::V6("fd00::200".parse().unwrap())
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200))
                },
                80,
                TCP,
            ),
            1 => (vip, 8080, TCP),
            2 if !v6 => (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101)), 80, TCP),
            3 | 4 => (vip, 53, UDP),
            _ => (vip, 80, TCP),
        }
    }

    fn transport(&mut self, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        if proto == TCP {
            t.extend((0..8).map(|_| self.rng.u8(..)));
            let doff = if self.rng.u8(0..20) == 0 {
                self.rng.u8(0..16)
            } else {
                5
            };
            t.push(doff << 4);
            t.push(self.rng.u8(..)); // flags
            t.extend((0..6).map(|_| self.rng.u8(..)));
        } else {
            t.extend_from_slice(&[0, 8, 0, 0]);
        }
        let payload = self.rng.usize(0..48);
        t.extend((0..payload).map(|_| self.rng.u8(..)));
        t
    }

    fn ipv4(&mut self, proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            unreachable!()
        };
        let words = if self.rng.u8(0..8) == 0 {
            self.rng.u8(5..=8)
        } else {
            5
        };
        let ihl = words as usize * 4;
        let mut h = vec![0x40 | words, 0];
        let total = if self.rng.u8(0..30) == 0 {
            self.rng.u16(..)
        } else {
            (ihl + payload.len()) as u16
        };
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        let frag: u16 = match self.rng.u8(0..25) {
            0 => 0x2000,
            1 => self.rng.u16(1..0x2000),
            2 => 0x4000, // DF only
            _ => 0,
        };
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&s.octets());
        h.extend_from_slice(&d.octets());
        h.extend((20..ihl).map(|_| 1u8)); // NOP options
        h.extend_from_slice(payload);
        h
    }

    fn ipv6(&mut self, proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
            unreachable!()
        };
        // Extension headers, most packets none.
        let mut chain: Vec<u8> = Vec::new();
        if self.rng.u8(0..4) == 0 {
            for _ in 0..self.rng.usize(1..=5) {
                chain.push([0, 43, 60, 51, 44][self.rng.usize(0..5)]);
            }
        }
        let mut ext = Vec::new();
        for (i, &kind) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(proto);
            let units = self.rng.u8(0..2);
            let size = if kind == 51 {
                (units as usize + 2) * 4
            } else if kind == 44 {
                8
            } else {
                (units as usize + 1) * 8
            };
            let mut hdr = vec![next, if kind == 44 { 0 } else { units }];
            hdr.resize(size, 0);
            ext.extend(hdr);
        }
        let first = chain.first().copied().unwrap_or(proto);
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[first, 64]);
        h.extend_from_slice(&s.octets());
        h.extend_from_slice(&d.octets());
        h.extend(ext);
        h.extend_from_slice(payload);
        h
    }

    fn ip(&mut self, proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> (u16, Vec<u8>) {
        if src.is_ipv6() {
            (0x86dd, self.ipv6(proto, src, dst, payload))
        } else {
            (0x0800, self.ipv4(proto, src, dst, payload))
        }
    }

    /// An ICMP error quoting the VIP's reply to a flow sent earlier (or a made-up one).
    fn icmp_error(&mut self, v6: bool) -> (u16, Vec<u8>) {
        let known = &self.sent[usize::from(v6)];
        let pick =
            (!known.is_empty() && self.rng.bool()).then(|| known[self.rng.usize(0..known.len())]);
        let (proto, client, vip, sport, dport) = match pick {
            Some((_, p, c, v, s, d)) => (p, c, v, s, d),
            None => {
                let (vip, port, proto) = self.target(v6);
                let c = self.client(v6);
                (proto, c, vip, self.rng.u16(1024..), port)
            }
        };
        // The quoted packet: VIP:dport → client:sport, its first 8 transport bytes.
        let mut ports = dport.to_be_bytes().to_vec();
        ports.extend_from_slice(&sport.to_be_bytes());
        ports.extend_from_slice(&[0, 0, 0, 0]);
        let (_, quoted) = self.ip(proto, vip, client, &ports);
        let kind = if v6 {
            [1, 2, 3, 4, 128, 135][self.rng.usize(0..6)]
        } else {
            [3, 11, 12, 0, 8, 5][self.rng.usize(0..6)]
        };
        let mut icmp = vec![kind, self.rng.u8(0..5), 0, 0, 0, 0, 0, 0];
        icmp.extend(quoted);
        let router = if v6 {
            IpAddr::V6("fd00:9::1".parse().unwrap())
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
        };
        self.ip(if v6 { ICMPV6 } else { ICMP }, router, vip, &icmp)
    }

    fn frame(&mut self) -> Vec<u8> {
        let v6 = self.rng.u8(0..3) == 0;
        let (ether, l3) = match self.rng.u8(0..20) {
            0 => (0x0806, (0..28).map(|_| self.rng.u8(..)).collect()),
            1 => (self.rng.u16(..), (0..40).map(|_| self.rng.u8(..)).collect()),
            2 | 3 => self.icmp_error(v6),
            _ => {
                let (dst, dport, proto) = self.target(v6);
                let src = self.client(v6);
                let sport = self.rng.u16(40000..40064);
                let t = self.transport(proto, sport, dport);
                let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
                self.sent[usize::from(v6)].push((family, proto, src, dst, sport, dport));
                self.ip(proto, src, dst, &t)
            }
        };
        let mut f = vec![0x02, 0xd1, 0, 0, 0, 1, 0x02, 0xcc, 0, 0, 0, 1];
        if self.rng.u8(0..10) == 0 {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&self.rng.u16(..0x1000).to_be_bytes());
        }
        f.extend_from_slice(&ether.to_be_bytes());
        f.extend(l3);
        if self.rng.u8(0..4) == 0 {
            self.mutate(&mut f);
        }
        f
    }

    /// Bit flips, byte overwrites, truncation, extension.
    fn mutate(&mut self, f: &mut Vec<u8>) {
        for _ in 0..self.rng.usize(1..=4) {
            match self.rng.u8(0..4) {
                0 => {
                    let i = self.rng.usize(0..f.len());
                    f[i] ^= 1 << self.rng.u8(0..8);
                }
                1 => {
                    let i = self.rng.usize(0..f.len());
                    f[i] = self.rng.u8(..);
                }
                2 => f.truncate(self.rng.usize(14..=f.len())),
                _ => {
                    let more = self.rng.usize(1..64).min(MAX_FRAME - f.len());
                    f.extend((0..more).map(|_| self.rng.u8(..)));
                }
            }
        }
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_director_does_what_the_model_says_for_random_and_mutated_frames() {
    xlb_testbed::require_root().unwrap();
    let frames = env("XLB_FUZZ_FRAMES", 10_000);
    let seed = env("XLB_FUZZ_SEED", 1);
    let ns = Netns::create("fuzz").unwrap();
    let (kinds, mismatches) = ns
        .enter(|| {
            let services = services();
            let ebpf = load(&services);
            let prog: &Xdp = ebpf.program(PROG_DIRECTOR).unwrap().try_into().unwrap();
            let mut model = Model {
                services,
                flows: HashSet::new(),
                icmp_forwarded: 0,
            };
            let mut generator = Generator {
                rng: fastrand::Rng::with_seed(seed),
                sent: [Vec::new(), Vec::new()],
            };
            let mut kinds = [0usize; 5];
            let mut mismatches = Vec::new();
            for n in 0..frames {
                let frame = generator.frame();
                let want = model.expect(&frame);
                let got = xdp::test_run(prog, &frame, xdp::LO).unwrap();
                kinds[want.0.min(4) as usize] += 1;
                if got != want && mismatches.len() < 5 {
                    mismatches.push(format!(
                        "frame {n}: {}\n  model {} {}\n  xdp   {} {}",
                        hex(&frame),
                        want.0,
                        hex(&want.1),
                        got.0,
                        hex(&got.1)
                    ));
                }
            }
            assert!(model.icmp_forwarded > 0, "no ICMP error reached a real");
            (kinds, mismatches)
        })
        .unwrap();
    eprintln!(
        "{frames} frames (seed {seed}): {} passed, {} sent by XDP_TX, {} dropped",
        kinds[xdp::XDP_PASS as usize],
        kinds[xdp::XDP_TX as usize],
        kinds[xdp::XDP_DROP as usize]
    );
    assert!(
        mismatches.is_empty(),
        "seed {seed}: the director and the model disagree:\n{}",
        mismatches.join("\n")
    );
    // The run covered both outcomes in earnest.
    assert!(kinds[xdp::XDP_TX as usize] > frames as usize / 4);
    assert!(kinds[xdp::XDP_PASS as usize] > frames as usize / 10);
}
