//! The schedulers in the XDP program, through BPF_PROG_TEST_RUN: for a
//! sequence of new flows the program must choose what the agent's reference
//! model (`xlb::sched::model`, written from IPVS's rules) chooses for the
//! same weights, connection counts and flags. Each real has its own MAC, so
//! the output frame names the choice.

mod common;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::Xdp,
};
use common::*;
use lb_common::{
    Affinity, ConnCounts, FAMILY_V4, PROG_DIRECTOR, REAL_F_PRESENT, REAL_F_REACHABLE, RealConns,
    RealInfo, SERVICE_F_ACTIVE, SERVICE_F_FALLBACK, SERVICE_F_HASH_PORT, SERVICE_F_PERSISTENT,
    SERVICE_F_TABLE_B, ServiceAddr, ServiceInfo, ServiceKey, Settings, globals, map_names, sched,
    sched_hash, sched_layout,
};
use xlb::{
    maglev,
    sched::{
        model::{self, Real, Rule},
        tables,
    },
};
use xlb_testbed::{netns::Netns, xdp};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;
/// A prime with halves of at least 256 slots (dh/sh buckets).
const TABLE: u32 = 1021;
const LO: u32 = 1;
const SERVICE: u32 = 3;
const VIP: [u8; 4] = [10, 0, 0, 100];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];

/// Real at list position `i` has id `i + 1` and MAC 02:00:00:00:hi:lo of its id.
fn real_id(i: usize) -> u32 {
    i as u32 + 1
}

fn mac_of(id: u32) -> [u8; 6] {
    [0x02, 0, 0, 0, (id >> 8) as u8, id as u8]
}

struct Director {
    ebpf: Ebpf,
}

impl Director {
    fn load() -> Director {
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
            .map_max_entries(map_names::MAGLEV, TABLE * lb_common::defaults::MAX_SERVICES)
            .map_max_entries(map_names::CONNTRACK, 4096)
            .load(xlb::EBPF_OBJECT)
            .expect("load object");
        let prog: &mut Xdp = ebpf.program_mut(PROG_DIRECTOR).unwrap().try_into().unwrap();
        prog.load().expect("verifier accepts the director");
        let mut s: Array<_, Settings> =
            Array::try_from(ebpf.map_mut(map_names::SETTINGS).unwrap()).unwrap();
        s.set(0, Settings::ipvs_defaults(), 0).unwrap();
        Director { ebpf }
    }

    fn array<T: aya::Pod>(&mut self, name: &str) -> Array<&mut MapData, T> {
        Array::try_from(self.ebpf.map_mut(name).unwrap()).unwrap()
    }

    /// Installs the service with `reals` in list order, as the agent would:
    /// real entries, the list and table in buffer A, then the service entry.
    fn install(&mut self, sched: u8, flags: u32, reals: &[Real], table: &[u32]) {
        let mut m = self.array::<RealInfo>(map_names::REALS);
        for (i, r) in reals.iter().enumerate() {
            m.set(
                real_id(i),
                RealInfo {
                    method: lb_common::method::DR,
                    mac: mac_of(real_id(i)),
                    ifindex: LO,
                    src_mac: DIRECTOR_MAC,
                    mtu: 1500,
                    weight: r.weight,
                    service_id: SERVICE,
                    flags: REAL_F_PRESENT | if r.reachable { REAL_F_REACHABLE } else { 0 },
                    u_threshold: r.u_threshold,
                    l_threshold: r.l_threshold,
                    ..RealInfo::default()
                },
                0,
            )
            .unwrap();
        }
        let mut list = self.array::<u32>(map_names::SERVICE_REALS);
        let base = sched_layout::reals_base(SERVICE, false);
        for i in 0..=reals.len() {
            let id = if i < reals.len() { real_id(i) } else { 0 };
            list.set(base + i as u32, id, 0).unwrap();
        }
        let mut t = self.array::<u32>(map_names::MAGLEV);
        let base = if sched == sched::MH {
            SERVICE * TABLE
        } else {
            sched_layout::table_base(SERVICE, TABLE, false)
        };
        for (i, &id) in table.iter().enumerate() {
            t.set(base + i as u32, id, 0).unwrap();
        }
        self.set_conns(reals);
        self.service(ServiceInfo {
            id: SERVICE,
            flags: SERVICE_F_ACTIVE | flags,
            sched,
            method: lb_common::method::DR,
            table_len: table.len() as u32,
            ..ServiceInfo::default()
        });
    }

    fn service(&mut self, info: ServiceInfo) {
        let key = ServiceKey {
            addr: [u32::from_ne_bytes(VIP), 0, 0, 0],
            port: 80u16.to_be(),
            proto: IP_TCP,
            family: FAMILY_V4,
        };
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(self.ebpf.map_mut(map_names::SERVICES).unwrap()).unwrap();
        m.insert(key, info, 0).unwrap();
    }

    /// Writes the model's connection counts into REAL_CONNS.
    fn set_conns(&mut self, reals: &[Real]) {
        let mut m = self.array::<RealConns>(map_names::REAL_CONNS);
        for (i, r) in reals.iter().enumerate() {
            let live = ConnCounts {
                active: r.active.into(),
                inactive: r.inactive.into(),
            };
            let c = RealConns {
                live,
                ..RealConns::default()
            };
            m.set(real_id(i), c, 0).unwrap();
        }
    }

    /// Sends a SYN of a new flow from `client:sport`; the list position chosen, or None if dropped.
    fn new_flow(&self, client: [u8; 4], sport: u16) -> Option<usize> {
        let frame = eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &ipv4(client, VIP, IP_TCP, &[], 0, &tcp(sport, 80)),
        );
        let prog: &Xdp = self
            .ebpf
            .program(PROG_DIRECTOR)
            .unwrap()
            .try_into()
            .unwrap();
        let (action, out) = xdp::test_run(prog, &frame, LO).expect("BPF_PROG_TEST_RUN");
        match action {
            XDP_DROP => None,
            XDP_TX => {
                assert_eq!(out[6..12], DIRECTOR_MAC, "source MAC");
                assert_eq!(out[12..], frame[12..], "rest of the frame");
                let id = u32::from(out[4]) << 8 | u32::from(out[5]);
                Some(id as usize - 1)
            }
            other => panic!("unexpected XDP action {other}"),
        }
    }
}

/// Runs `f` against a freshly loaded director inside a private namespace.
fn with_director(f: impl FnOnce(&mut Director) + Send) {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("sched").unwrap();
    ns.enter(|| f(&mut Director::load())).unwrap();
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];

/// mh's reals (list positions) for clients 10.0.1.1-12, port not hashed.
const MH_PICKS: [usize; 12] = [2, 0, 1, 1, 1, 0, 0, 2, 1, 2, 2, 1];

fn ids(positions: &[usize]) -> Vec<u32> {
    positions.iter().map(|&i| real_id(i)).collect()
}

#[test]
fn wrr_and_rr_follow_ipvs_sequences_including_skips() {
    with_director(|d| {
        let mut reals = vec![Real::new(4), Real::new(3), Real::new(2)];
        let weights: Vec<u32> = reals.iter().map(|r| r.weight).collect();
        let mut m = model::Sequence {
            seq: tables::wrr_sequence(&weights),
            cursor: 0,
        };
        d.install(sched::WRR, 0, &reals, &ids(&m.seq));
        let got: Vec<usize> = (0..18)
            .map(|p| d.new_flow(CLIENT, 1000 + p).unwrap())
            .collect();
        assert_eq!(got[..9], [0, 0, 1, 0, 1, 2, 0, 1, 2], "A A B A B C A B C");
        let want: Vec<usize> = (0..18).map(|_| m.next(&mut reals).unwrap()).collect();
        assert_eq!(got, want);

        // Real A unreachable: its turns pass to the next entry, and are consumed.
        reals[0].reachable = false;
        d.install(sched::WRR, 0, &reals, &ids(&m.seq));
        let got: Vec<usize> = (0..9)
            .map(|p| d.new_flow(CLIENT, 2000 + p).unwrap())
            .collect();
        let want: Vec<usize> = (0..9).map(|_| m.next(&mut reals).unwrap()).collect();
        assert_eq!(got, want);
        assert!(!got.contains(&0));
    });
}

#[test]
fn rr_cycles_over_reals_with_weight() {
    with_director(|d| {
        let reals = vec![Real::new(1), Real::new(0), Real::new(5)];
        let weights: Vec<u32> = reals.iter().map(|r| r.weight).collect();
        d.install(sched::RR, 0, &reals, &ids(&tables::rr_sequence(&weights)));
        let got: Vec<usize> = (0..6)
            .map(|p| d.new_flow(CLIENT, 1000 + p).unwrap())
            .collect();
        assert_eq!(got, [0, 2, 0, 2, 0, 2]);
    });
}

/// (weight, active, inactive) of each real.
type Spec = [(u32, u32, u32)];

#[test]
fn least_connection_family_matches_the_model() {
    let cases: &[(u8, Rule, &Spec)] = &[
        (sched::LC, Rule::Lc, &[(1, 1, 0), (1, 0, 200), (1, 0, 300)]),
        (sched::LC, Rule::Lc, &[(0, 0, 0), (1, 3, 0), (1, 3, 0)]),
        (sched::WLC, Rule::Wlc, &[(1, 1, 0), (3, 2, 0), (2, 1, 5)]),
        (sched::WLC, Rule::Wlc, &[(1, 1, 0), (2, 2, 0)]),
        (sched::SED, Rule::Sed, &[(1, 0, 0), (3, 2, 0)]),
        (sched::SED, Rule::Sed, &[(1, 1, 0), (3, 2, 0)]),
        (sched::NQ, Rule::Nq, &[(5, 1, 0), (1, 0, 0)]),
        (sched::NQ, Rule::Nq, &[(5, 1, 0), (1, 1, 0)]),
        (sched::FO, Rule::Fo, &[(2, 9, 9), (5, 9, 9), (5, 0, 0)]),
        (sched::OVF, Rule::Ovf, &[(5, 6, 0), (3, 3, 0), (1, 0, 0)]),
        (sched::OVF, Rule::Ovf, &[(1, 2, 0)]),
        (sched::WLC, Rule::Wlc, &[(0, 0, 0), (0, 0, 0)]),
    ];
    with_director(|d| {
        for (n, (code, rule, spec)) in cases.iter().enumerate() {
            let mut reals: Vec<Real> = spec
                .iter()
                .map(|&(w, a, i)| Real::new(w).with_conns(a, i))
                .collect();
            d.install(*code, 0, &reals, &[]);
            let want = model::least(&mut reals, *rule);
            assert_eq!(
                d.new_flow(CLIENT, 3000 + n as u16),
                want,
                "{rule:?} over {spec:?}"
            );
        }
    });
}

/// twos draws at random in the kernel (`get_random_u32_below`) and in XDP
/// (`bpf_get_prandom_u32`), so no two runs agree flow by flow. The model
/// (`model::twos`, ip_vs_twos.c as written) gives the exact probability of
/// each real over every pair of draws: the program must never choose a real
/// the model cannot, and over many flows (with the counts held fixed) each
/// real's share must match its probability within 5 standard deviations.
#[test]
fn twos_chooses_as_the_kernel_algorithm_distributes() {
    let cases: &[&Spec] = &[
        &[(1, 4, 0), (2, 0, 0), (3, 2, 0)],
        &[(5, 0, 0), (1, 0, 0)],
        &[(0, 0, 0), (2, 1, 7), (1, 0, 3)],
        &[(1, 0, 0)],
    ];
    const FLOWS: u32 = 3000;
    with_director(|d| {
        for (n, spec) in cases.iter().enumerate() {
            let mut reals: Vec<Real> = spec
                .iter()
                .map(|&(w, a, i)| Real::new(w).with_conns(a, i))
                .collect();
            let span = model::twos_span(&mut reals);
            let mut exact = vec![0u64; reals.len()];
            for r1 in 0..span {
                for r2 in 0..span {
                    exact[model::twos(&mut reals, r1, r2).unwrap()] += 1;
                }
            }
            d.install(sched::TWOS, 0, &reals, &[]);
            let mut seen = vec![0u32; reals.len()];
            for f in 0..FLOWS {
                // The new flow counts on its real: put the counts back.
                d.set_conns(&reals);
                let client = [10, 1 + n as u8, (f >> 8) as u8, f as u8];
                let got = d.new_flow(client, 5000).expect("a usable real");
                assert!(
                    exact[got] > 0,
                    "{spec:?}: chose {got}, which the model never does"
                );
                seen[got] += 1;
            }
            let pairs = (span * span) as f64;
            for (i, (&e, &s)) in exact.iter().zip(&seen).enumerate() {
                let p = e as f64 / pairs;
                let mean = p * f64::from(FLOWS);
                let sd = (f64::from(FLOWS) * p * (1.0 - p)).sqrt();
                assert!(
                    (f64::from(s) - mean).abs() <= 5.0 * sd + 1.0,
                    "{spec:?}: real {i} chosen {s} times of {FLOWS}, the model says {mean:.0} ± {sd:.0}"
                );
            }
        }
        // Nobody usable: dropped.
        let reals = [Real::new(0), Real::new(0)];
        d.install(sched::TWOS, 0, &reals, &[]);
        assert_eq!(d.new_flow(CLIENT, 5999), None);
    });
}

#[test]
fn lc_follows_counts_as_connections_open_and_close() {
    with_director(|d| {
        let mut reals = vec![Real::new(1), Real::new(1), Real::new(1)];
        d.install(sched::LC, 0, &reals, &[]);
        for p in 0..12 {
            // Connections open on the chosen real; every fourth the first real's all close.
            let want = model::least(&mut reals, Rule::Lc);
            assert_eq!(d.new_flow(CLIENT, 4000 + p), want, "flow {p}");
            reals[want.unwrap()].active += 1;
            if p % 4 == 3 {
                reals[0].active = 0;
            }
            d.set_conns(&reals);
        }
    });
}

#[test]
fn thresholds_stop_and_resume_new_flows() {
    with_director(|d| {
        let mut reals = vec![
            Real {
                u_threshold: 4,
                ..Real::new(5)
            },
            Real::new(1),
        ];
        d.install(sched::FO, 0, &reals, &[]);
        // fo prefers real 0 (weight 5) until it reaches 4 connections, then
        // real 1 until real 0 falls below 3/4 of its threshold.
        let mut got = Vec::new();
        for (p, active) in [0, 3, 4, 3, 2, 3].into_iter().enumerate() {
            reals[0].active = active;
            d.set_conns(&reals);
            let want = model::least(&mut reals, Rule::Fo);
            let pick = d.new_flow(CLIENT, 5000 + p as u16);
            assert_eq!(pick, want, "real 0 at {active} connections");
            got.push(pick.unwrap());
        }
        assert_eq!(got, [0, 0, 1, 1, 0, 0]);
    });
}

#[test]
fn sh_dh_and_mh_hash_like_the_model_with_flags() {
    with_director(|d| {
        let mut reals = vec![Real::new(1), Real::new(2), Real::new(3)];
        let weights: Vec<u32> = reals.iter().map(|r| r.weight).collect();
        let buckets = tables::sh_buckets(&weights);
        let table: Vec<u32> = buckets.iter().map(|b| b.map_or(0, real_id)).collect();
        let sources: Vec<[u8; 4]> = (1..=40).map(|h| [10, 0, 1, h]).collect();
        let fold = |c: [u8; 4]| u32::from_be_bytes(c);
        for (round, (flags, fallback)) in [(0, false), (SERVICE_F_FALLBACK, true)]
            .into_iter()
            .enumerate()
        {
            // Real 1 (the most buckets after real 2) cannot take flows.
            reals[1].weight = 0;
            d.install(sched::SH, flags, &reals, &table);
            for (n, &c) in sources.iter().enumerate() {
                let ihash = sched_hash::sh_bucket(fold(c), 0, 0);
                let want = model::hashed(&buckets, &mut reals, fallback, ihash as usize, |k| {
                    sched_hash::sh_bucket(fold(c), 0, (k + ihash) % 256) as usize
                });
                // Source hashing ignores the port: two ports, one answer.
                let port = 6000 + 100 * round as u16 + n as u16;
                for port in [port, port + 1000] {
                    assert_eq!(d.new_flow(c, port), want, "sh {c:?} fallback {fallback}");
                }
            }
        }
        reals[1].weight = 2;

        // sh-port: the port joins the hash.
        d.install(sched::SH, SERVICE_F_HASH_PORT, &reals, &table);
        let mut spread = std::collections::BTreeSet::new();
        for port in 8000..8040u16 {
            let want = buckets[sched_hash::sh_bucket(fold(CLIENT), port, 0) as usize];
            let got = d.new_flow(CLIENT, port);
            assert_eq!(got, want, "sh-port {port}");
            spread.insert(got);
        }
        assert!(spread.len() > 1, "sh-port spread one client's ports");

        // dh hashes the destination (the VIP): every flow goes to one bucket's real.
        let dh = tables::dh_buckets(reals.len());
        let dh_table: Vec<u32> = dh.iter().map(|b| b.map_or(0, real_id)).collect();
        d.install(sched::DH, 0, &reals, &dh_table);
        let want = dh[sched_hash::dh_bucket(fold(VIP)) as usize];
        for (n, &c) in sources.iter().enumerate() {
            assert_eq!(d.new_flow(c, 9000 + n as u16), want, "dh");
        }

        // mh: IPVS's table for reals 10.0.2.1-3:80 (weights 1, 2, 3) in
        // list order; the source address alone unless mh-port.
        let backends: Vec<maglev::Backend> = reals
            .iter()
            .enumerate()
            .map(|(i, r)| maglev::Backend {
                fold: fold([10, 0, 2, i as u8 + 1]),
                port: 80,
                weight: r.weight,
            })
            .collect();
        let mh: Vec<Option<usize>> = maglev::build(&backends, TABLE)
            .unwrap()
            .into_iter()
            .map(|i| Some(i as usize))
            .collect();
        let mh_table: Vec<u32> = mh.iter().map(|b| b.map_or(0, real_id)).collect();
        let mut picks = Vec::new();
        for (flags, with_port) in [(0, false), (SERVICE_F_HASH_PORT, true)] {
            d.install(sched::MH, flags, &reals, &mh_table);
            for (n, &c) in sources.iter().enumerate() {
                let port = 10_000 + 100 * with_port as u16 + n as u16;
                let p = if with_port { port } else { 0 };
                let want = mh[(sched_hash::mh(fold(c), p, 0) % TABLE) as usize];
                let got = d.new_flow(c, port);
                assert_eq!(got, want, "mh {c:?} port {with_port}");
                picks.push(got.unwrap());
            }
        }
        // The first clients' reals, written out: a change of the hash or the
        // table builder shows here (the guest test holds the same code to
        // kernel IPVS's choices).
        assert_eq!(picks[..12], MH_PICKS, "{picks:?}");

        // mh-fallback: real 1 drained to weight 0 keeps its slots (IPVS's
        // last weight) but takes no flow; the fallback walk rehashes past it.
        reals[1].weight = 0;
        let mut dropped = 0;
        for (round, (flags, fallback)) in [(0, false), (SERVICE_F_FALLBACK, true)]
            .into_iter()
            .enumerate()
        {
            d.install(sched::MH, flags, &reals, &mh_table);
            for (n, &c) in sources.iter().enumerate() {
                let ihash = sched_hash::mh(fold(c), 0, 0) % TABLE;
                let want = model::hashed(&mh, &mut reals, fallback, ihash as usize, |k| {
                    (sched_hash::mh(fold(c), 0, (k + ihash) % TABLE) % TABLE) as usize
                });
                let got = d.new_flow(c, 11_000 + 100 * round as u16 + n as u16);
                assert_eq!(got, want, "mh {c:?} fallback {fallback}");
                if fallback {
                    assert!(got.is_some(), "mh-fallback found no real for {c:?}");
                }
                dropped += usize::from(got.is_none());
            }
        }
        assert!(dropped > 0, "some client hashed to the drained real");
    });
}

#[test]
fn persistence_keeps_a_masked_client_until_its_template_expires() {
    with_director(|d| {
        let mut reals = vec![Real::new(1), Real::new(1), Real::new(1)];
        let seq = tables::rr_sequence(&[1, 1, 1]);
        d.install(sched::RR, SERVICE_F_PERSISTENT, &reals, &ids(&seq));
        let mut info = ServiceInfo {
            id: SERVICE,
            flags: SERVICE_F_ACTIVE | SERVICE_F_PERSISTENT,
            sched: sched::RR,
            method: lb_common::method::DR,
            table_len: 3,
            persist_timeout_s: 300,
            persist_mask: [u32::from_ne_bytes([255, 255, 255, 0]), 0, 0, 0],
            ..ServiceInfo::default()
        };
        d.service(info);
        let first = d.new_flow([10, 0, 7, 1], 1000).unwrap();
        assert_eq!(first, 0);
        // Same /24, other hosts and ports: the same real, while rr would move on.
        for (h, port) in [(1, 1001), (2, 1002), (200, 1003)] {
            assert_eq!(d.new_flow([10, 0, 7, h], port), Some(first));
        }
        // Another /24 is scheduled: rr's next real.
        assert_eq!(d.new_flow([10, 0, 8, 1], 1000), Some(1));

        // Age the template past its timeout: the client is scheduled again.
        let key = ServiceAddr {
            service_id: SERVICE,
            addr: [u32::from_ne_bytes([10, 0, 7, 0]), 0, 0, 0],
        };
        let mut templates: HashMap<_, ServiceAddr, Affinity> =
            HashMap::try_from(d.ebpf.map_mut(map_names::PERSIST).unwrap()).unwrap();
        let mut t = templates.get(&key, 0).expect("template for 10.0.7.0/24");
        assert_eq!(t.real_id, real_id(0));
        t.last_ns = t.last_ns.wrapping_sub(301_000_000_000);
        templates.insert(key, t, 0).unwrap();
        assert_eq!(d.new_flow([10, 0, 7, 9], 1100), Some(2));
        assert_eq!(
            d.new_flow([10, 0, 7, 10], 1101),
            Some(2),
            "new template holds"
        );

        // A drained real (weight 0) ends its templates.
        reals[2].weight = 0;
        d.install(sched::RR, SERVICE_F_PERSISTENT, &reals, &ids(&seq));
        info.table_len = 3;
        d.service(info);
        assert_ne!(d.new_flow([10, 0, 7, 11], 1102), Some(2));
    });
}

#[test]
fn lblc_keeps_a_destination_until_overloaded() {
    with_director(|d| {
        let mut reals = vec![Real::new(2), Real::new(2)];
        let mut remembered = None;
        d.install(sched::LBLC, 0, &reals, &[]);
        let mut check = |d: &mut Director, reals: &mut Vec<Real>, port: u16| {
            d.set_conns(reals);
            let want = model::lblc(reals, &mut remembered);
            assert_eq!(d.new_flow(CLIENT, port), want, "{reals:?}");
        };
        check(d, &mut reals, 1);
        reals[0].active = 3; // over its weight while real 1 is idle
        check(d, &mut reals, 2);
        reals[1].active = 3;
        check(d, &mut reals, 3);
        reals[0].active = 0;
        reals[1].active = 2;
        check(d, &mut reals, 4);
    });
}

#[test]
fn lblcr_adds_reals_to_a_destination_set() {
    with_director(|d| {
        let mut reals = vec![Real::new(2), Real::new(2), Real::new(2)];
        let mut set = Vec::new();
        d.install(sched::LBLCR, 0, &reals, &[]);
        for (port, loads) in [
            (1, [0, 0, 0]),
            (2, [3, 0, 0]),
            (3, [3, 3, 0]),
            (4, [0, 1, 0]),
        ] {
            for (r, a) in reals.iter_mut().zip(loads) {
                r.active = a;
            }
            d.set_conns(&reals);
            let want = model::lblcr(&mut reals, &mut set);
            assert_eq!(d.new_flow(CLIENT, port), want, "{loads:?}, set {set:?}");
        }
        assert_eq!(set, [0, 1, 2]);
    });
}

#[test]
fn two_hundred_fifty_six_reals_and_the_second_buffer() {
    with_director(|d| {
        let mut reals: Vec<Real> = (0..256).map(|_| Real::new(1).with_conns(1, 0)).collect();
        reals[255].active = 0;
        d.install(sched::WLC, 0, &reals, &[]);
        assert_eq!(d.new_flow(CLIENT, 1), Some(255), "the last of 256 reals");
        assert_eq!(model::least(&mut reals, Rule::Wlc), Some(255));

        // Buffer B holds another list; flipping the flag switches to it at once.
        let mut list = d.array::<u32>(map_names::SERVICE_REALS);
        let base = sched_layout::reals_base(SERVICE, true);
        list.set(base, real_id(7), 0).unwrap();
        list.set(base + 1, 0, 0).unwrap();
        d.service(ServiceInfo {
            id: SERVICE,
            flags: SERVICE_F_ACTIVE | SERVICE_F_TABLE_B,
            sched: sched::WLC,
            method: lb_common::method::DR,
            ..ServiceInfo::default()
        });
        assert_eq!(d.new_flow(CLIENT, 2), Some(7));
    });
}
