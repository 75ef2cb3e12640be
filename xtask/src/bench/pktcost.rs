//! Per-packet cost through BPF_PROG_TEST_RUN, inside a private network
//! namespace (its `lo` is the ingress device; nothing is attached).
//!
//! Two timings, each with its own floor so ratios compare like with like:
//! - `Repeat`: one call repeats the frame `repeat` times; the kernel reports
//!   the mean time per repeat. Valid only where every repeat takes the same
//!   path on the same (reused) buffer: stateless programs and existing flows.
//! - `PerCall`: one frame per call, the kernel's time for that one run; the
//!   bench deletes the flow's conntrack entry between calls (outside the timed
//!   region), so each call is a genuine new flow. The kernel's timer overhead
//!   is in every per-call figure, the floor's included.

use super::{
    Progress,
    frames::{self, ETH_IPV4, ETH_IPV6, TCP},
    report::{Row, Section},
    stats::{Summary, mean},
};
use anyhow::{Context, Result, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{
    Counters, FAMILY_V4, FAMILY_V6, FlowKey, FlowState, GlobalCounters, IfaceInfo, PROG_DIRECTOR,
    REAL_F_PRESENT, REAL_F_REACHABLE, RealInfo, SERVICE_F_ACTIVE, ServiceInfo, ServiceKey,
    addr_words, bench, globals, map_names, method, sched,
};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};
use xlb_testbed::{netns::Netns, xdp::xdp_md};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// `lo` in a fresh namespace.
const LO: u32 = 1;
const TABLE: u32 = 65537;
const SERVICES: u32 = 2;
const REALS_PER_SERVICE: u32 = 10;
/// Distinct client ports the new-flow case cycles through, so it does not
/// hit one cache-hot Maglev slot.
const NEW_FLOW_PORTS: u16 = 1024;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const OTHER4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 99);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
const VIP_PORT: u16 = 80;
const CLIENT_PORT: u16 = 40000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// A program of the bench-floor object, by name.
    Floor(&'static str),
    /// xlb's director, from the production object.
    Director,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    Repeat,
    PerCall,
}

/// What every repeat or call must do, checked with the director's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowPath {
    /// No state involved (floor programs, traffic that is not a service).
    Stateless,
    /// The flow is in conntrack before timing starts; no repeat creates one.
    ExistingFlow,
    /// Every call creates the flow (its conntrack entry is removed after each).
    NewFlow,
}

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub program: Program,
    /// Destination of the TCP frame sent: the IPv4 or IPv6 VIP, or another address.
    pub dst: IpAddr,
    /// Scheduler of the service the frame is for (director cases).
    pub sched: u8,
    pub timing: Timing,
    pub path: FlowPath,
    pub action: u32,
    /// The case every other case of its timing is divided by.
    pub floor: bool,
}

const V4: IpAddr = IpAddr::V4(VIP4);
const V6: IpAddr = IpAddr::V6(VIP6);

/// Every per-packet figure. NAT, TUN and the other schedulers add rows here
/// (with what their services need in `Director::program`) as they land.
pub const CASES: &[Case] = &[
    Case {
        name: "XDP_DROP (trivial program)",
        program: Program::Floor(bench::PROG_DROP),
        dst: V4,
        sched: sched::MH,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_DROP,
        floor: false,
    },
    Case {
        name: "MAC swap + XDP_TX (floor)",
        program: Program::Floor(bench::PROG_MAC_SWAP),
        dst: V4,
        sched: sched::MH,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_TX,
        floor: true,
    },
    Case {
        name: "xlb: not a service (XDP_PASS)",
        program: Program::Director,
        dst: IpAddr::V4(OTHER4),
        sched: sched::MH,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_PASS,
        floor: false,
    },
    Case {
        name: "xlb DR: existing flow, IPv4",
        program: Program::Director,
        dst: V4,
        sched: sched::MH,
        timing: Timing::Repeat,
        path: FlowPath::ExistingFlow,
        action: XDP_TX,
        floor: false,
    },
    Case {
        name: "xlb DR: existing flow, IPv6",
        program: Program::Director,
        dst: V6,
        sched: sched::MH,
        timing: Timing::Repeat,
        path: FlowPath::ExistingFlow,
        action: XDP_TX,
        floor: false,
    },
    Case {
        name: "MAC swap + XDP_TX, 1/call (floor)",
        program: Program::Floor(bench::PROG_MAC_SWAP),
        dst: V4,
        sched: sched::MH,
        timing: Timing::PerCall,
        path: FlowPath::Stateless,
        action: XDP_TX,
        floor: true,
    },
    Case {
        name: "xlb DR: existing flow, IPv4, 1/call",
        program: Program::Director,
        dst: V4,
        sched: sched::MH,
        timing: Timing::PerCall,
        path: FlowPath::ExistingFlow,
        action: XDP_TX,
        floor: false,
    },
    Case {
        name: "xlb DR: new flow, mh, IPv4, 1/call",
        program: Program::Director,
        dst: V4,
        sched: sched::MH,
        timing: Timing::PerCall,
        path: FlowPath::NewFlow,
        action: XDP_TX,
        floor: false,
    },
];

pub struct Opts {
    pub runs: usize,
    /// Repeats per call in `Repeat` timing.
    pub repeat: u32,
    /// Calls per run in `PerCall` timing.
    pub calls: u32,
}

pub fn run(
    opts: &Opts,
    xlb_object: &Path,
    floor_object: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    let ns = Netns::create("pkt")?;
    let measured: Vec<(Case, Summary)> = ns.enter(|| -> Result<Vec<(Case, Summary)>> {
        let mut floor = Ebpf::load_file(floor_object)
            .with_context(|| format!("loading {}", floor_object.display()))?;
        for name in [bench::PROG_DROP, bench::PROG_MAC_SWAP] {
            let p: &mut Xdp = floor
                .program_mut(name)
                .with_context(|| format!("no program {name} in the floor object"))?
                .try_into()?;
            p.load().with_context(|| format!("verifier on {name}"))?;
        }
        let mut director = Director::load(xlb_object)?;
        let mut out = Vec::new();
        for case in CASES {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            progress.step(Section::PktCost, case.name);
            let summary = match case.program {
                Program::Floor(name) => {
                    let prog: &Xdp = floor.program(name).expect("loaded above").try_into()?;
                    measure(prog, case, opts, |_| Ok(()))?
                }
                Program::Director => director.measure(case, opts)?,
            };
            progress.done(&format!("{:.2} ns/pkt", summary.median));
            out.push((*case, summary));
        }
        Ok(out)
    })??;

    let floor_of = |timing: Timing| {
        measured
            .iter()
            .find(|(c, _)| c.floor && c.timing == timing)
            .map(|(_, s)| s.median)
    };
    Ok(measured
        .iter()
        .map(|(case, summary)| {
            let how = match case.timing {
                Timing::Repeat => format!("{} runs x {} repeats", opts.runs, opts.repeat),
                Timing::PerCall => format!("{} runs x {} calls of 1 packet", opts.runs, opts.calls),
            };
            let floor = match case.timing {
                Timing::Repeat => "MAC-swap floor",
                Timing::PerCall => "1/call floor",
            };
            Row::measured(Section::PktCost, case.name, "ns/pkt", summary.clone())
                .method(how)
                .ratio_to(floor, floor_of(case.timing))
        })
        .collect())
}

fn frame(dst: IpAddr, sport: u16) -> Vec<u8> {
    let l4 = frames::l4(TCP, sport, VIP_PORT, &[]);
    match dst {
        IpAddr::V4(d) => frames::eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &frames::ipv4(CLIENT4, d, TCP, &l4),
        ),
        IpAddr::V6(d) => frames::eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &frames::ipv6(CLIENT6, d, TCP, &l4),
        ),
    }
}

/// The flow key the director builds for `frame(dst, sport)`.
fn flow_key(dst: IpAddr, sport: u16) -> FlowKey {
    let (src, dst, family) = match dst {
        IpAddr::V4(d) => (IpAddr::V4(CLIENT4), IpAddr::V4(d), FAMILY_V4),
        IpAddr::V6(d) => (IpAddr::V6(CLIENT6), IpAddr::V6(d), FAMILY_V6),
    };
    FlowKey {
        src: addr_words(src),
        dst: addr_words(dst),
        sport: sport.to_be(),
        dport: VIP_PORT.to_be(),
        proto: TCP,
        family,
        ..FlowKey::default()
    }
}

/// One BPF_PROG_TEST_RUN call: the action and the kernel's ns per repeat.
fn call(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
    let ctx = xdp_md(frame.len(), LO);
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok((r.return_value, r.duration.as_nanos() as u64))
}

/// Times `case` on `prog`; `after_call(sport)` runs after each per-call run,
/// outside the timed region.
fn measure(
    prog: &Xdp,
    case: &Case,
    opts: &Opts,
    mut after_call: impl FnMut(u16) -> Result<()>,
) -> Result<Summary> {
    let mut runs = Vec::with_capacity(opts.runs);
    let fixed = frame(case.dst, CLIENT_PORT);
    let fresh: Vec<Vec<u8>> = if case.path == FlowPath::NewFlow {
        (0..NEW_FLOW_PORTS)
            .map(|i| frame(case.dst, CLIENT_PORT + 1 + i))
            .collect()
    } else {
        Vec::new()
    };
    for _ in 0..opts.runs {
        match case.timing {
            Timing::Repeat => {
                let (action, ns) = call(prog, &fixed, opts.repeat)?;
                ensure!(
                    action == case.action,
                    "{}: action {action}, expected {}",
                    case.name,
                    case.action
                );
                runs.push(ns as f64);
            }
            Timing::PerCall => {
                let mut per_call = Vec::with_capacity(opts.calls as usize);
                for i in 0..opts.calls {
                    let (f, sport) = if fresh.is_empty() {
                        (&fixed, CLIENT_PORT)
                    } else {
                        let k = i as usize % fresh.len();
                        (&fresh[k], CLIENT_PORT + 1 + k as u16)
                    };
                    let (action, ns) = call(prog, f, 1)?;
                    ensure!(
                        action == case.action,
                        "{}: action {action}, expected {}",
                        case.name,
                        case.action
                    );
                    per_call.push(ns as f64);
                    after_call(sport)?;
                }
                runs.push(mean(&per_call).context("no calls")?);
            }
        }
    }
    Summary::of(&runs).context("no runs")
}

/// xlb's director loaded from the production object, with two DR services
/// (TCP 80 on an IPv4 and an IPv6 VIP), each with ten reals behind `lo`.
struct Director {
    ebpf: Ebpf,
    /// Taken out of `ebpf` so entries can be removed while the program is borrowed.
    conntrack: HashMap<MapData, FlowKey, FlowState>,
}

impl Director {
    fn load(object: &Path) -> Result<Director> {
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
            // The agent's level unless run with debug logging: the program skips its debug records.
            .override_global("AYA_LOG_LEVEL", &2u8, false)
            .map_max_entries(map_names::SERVICES, SERVICES)
            .map_max_entries(map_names::SERVICE_STATS, SERVICES)
            .map_max_entries(map_names::MAGLEV, TABLE * SERVICES)
            .map_max_entries(map_names::CONNTRACK, 65536)
            .load_file(object)
            .with_context(|| format!("loading {}", object.display()))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_DIRECTOR)
            .context("no director program")?
            .try_into()?;
        prog.load().context("verifier on the director")?;
        let conntrack = HashMap::try_from(
            ebpf.take_map(map_names::CONNTRACK)
                .context("no conntrack map")?,
        )?;
        let mut d = Director { ebpf, conntrack };
        d.program()?;
        Ok(d)
    }

    fn map(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("no map {name}"))
    }

    /// Services 0 (IPv4) and 1 (IPv6), reals 1..=10 and 11..=20, their
    /// Maglev tables dealt round-robin (the lookup costs the same whoever fills it).
    fn program(&mut self) -> Result<()> {
        let mut ifaces: HashMap<_, u32, IfaceInfo> =
            HashMap::try_from(self.map(map_names::IFACES)?)?;
        ifaces.insert(
            LO,
            IfaceInfo {
                mac: DIRECTOR_MAC,
                mtu: 1500,
            },
            0,
        )?;
        for (id, vip) in [(0u32, V4), (1, V6)] {
            let mut reals: Array<_, RealInfo> = Array::try_from(self.map(map_names::REALS)?)?;
            for r in 0..REALS_PER_SERVICE {
                let rid = 1 + id * REALS_PER_SERVICE + r;
                let info = RealInfo {
                    method: method::DR,
                    mac: [0x02, 0, 0, 0, id as u8, r as u8],
                    ifindex: LO,
                    weight: 1,
                    service_id: id,
                    flags: REAL_F_PRESENT | REAL_F_REACHABLE,
                    ..RealInfo::default()
                };
                reals.set(rid, info, 0)?;
            }
            let mut table: Array<_, u32> = Array::try_from(self.map(map_names::MAGLEV)?)?;
            for slot in 0..TABLE {
                table.set(
                    id * TABLE + slot,
                    1 + id * REALS_PER_SERVICE + slot % REALS_PER_SERVICE,
                    0,
                )?;
            }
            let key = ServiceKey {
                addr: addr_words(vip),
                port: VIP_PORT.to_be(),
                proto: TCP,
                family: if vip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 },
            };
            let info = ServiceInfo {
                id,
                flags: SERVICE_F_ACTIVE,
                sched: sched::MH,
                method: method::DR,
                ..ServiceInfo::default()
            };
            let mut services: HashMap<_, ServiceKey, ServiceInfo> =
                HashMap::try_from(self.map(map_names::SERVICES)?)?;
            services.insert(key, info, 0)?;
        }
        Ok(())
    }

    /// Packets and new connections counted over both services.
    fn service_counters(&self) -> Result<Counters> {
        let m: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(self.ebpf.map(map_names::SERVICE_STATS).context("stats")?)?;
        let mut sum = Counters::default();
        for id in 0..SERVICES {
            sum = m.get(&id, 0)?.iter().fold(sum, |a, c| a + *c);
        }
        Ok(sum)
    }

    fn passed(&self) -> Result<u64> {
        let m: PerCpuArray<&MapData, GlobalCounters> =
            PerCpuArray::try_from(self.ebpf.map(map_names::GLOBAL_STATS).context("stats")?)?;
        Ok(m.get(&0, 0)?.iter().map(|c| c.pass).sum())
    }

    fn measure(&mut self, case: &Case, opts: &Opts) -> Result<Summary> {
        ensure!(
            case.sched == sched::MH,
            "{}: only mh services are set up",
            case.name
        );
        let prog: &Xdp = self
            .ebpf
            .program(PROG_DIRECTOR)
            .context("director")?
            .try_into()?;
        if case.path == FlowPath::ExistingFlow {
            // The one call that creates the flow, untimed.
            call(prog, &frame(case.dst, CLIENT_PORT), 1)?;
        }
        let packets = u64::from(opts.runs as u32)
            * match case.timing {
                Timing::Repeat => u64::from(opts.repeat),
                Timing::PerCall => u64::from(opts.calls),
            };
        let (before, passed_before) = (self.service_counters()?, self.passed()?);
        let summary = {
            let ct = &mut self.conntrack;
            measure(prog, case, opts, |sport| {
                if case.path == FlowPath::NewFlow {
                    // Fails if the call did not record the flow: it was not a new flow.
                    ct.remove(&flow_key(case.dst, sport)).with_context(|| {
                        format!("{}: no conntrack entry after the call", case.name)
                    })?;
                }
                Ok(())
            })?
        };
        let (after, passed_after) = (self.service_counters()?, self.passed()?);
        // Every repeat must have taken the path the case names.
        let (fwd, new) = (
            after.packets - before.packets,
            after.new_conns - before.new_conns,
        );
        let (want_fwd, want_new, want_pass) = match case.path {
            FlowPath::Stateless => (0, 0, packets),
            FlowPath::ExistingFlow => (packets, 0, 0),
            FlowPath::NewFlow => (packets, packets, 0),
        };
        ensure!(
            (fwd, new, passed_after - passed_before) == (want_fwd, want_new, want_pass),
            "{}: {packets} packets forwarded {fwd}, new flows {new}, passed {}; expected {want_fwd}, {want_new}, {want_pass}",
            case.name,
            passed_after - passed_before
        );
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_timing_has_exactly_one_floor_measured_first() {
        for timing in [Timing::Repeat, Timing::PerCall] {
            let of_timing: Vec<&Case> = CASES.iter().filter(|c| c.timing == timing).collect();
            assert_eq!(
                of_timing.iter().filter(|c| c.floor).count(),
                1,
                "{timing:?}"
            );
            assert!(
                of_timing.iter().position(|c| c.floor).unwrap() < 2,
                "{timing:?}"
            );
        }
    }

    #[test]
    fn new_flows_are_timed_one_call_at_a_time() {
        // A repeat would run the reused buffer through conntrack as an existing flow.
        for c in CASES.iter().filter(|c| c.path == FlowPath::NewFlow) {
            assert_eq!(c.timing, Timing::PerCall, "{}", c.name);
            assert_eq!(c.program, Program::Director, "{}", c.name);
        }
    }

    #[test]
    fn case_names_are_unique() {
        let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CASES.len());
    }

    #[test]
    fn flow_key_matches_the_frame() {
        let f = frame(V4, 40001);
        let k = flow_key(V4, 40001);
        assert_eq!(&f[26..30], &CLIENT4.octets());
        assert_eq!(k.src[0].to_ne_bytes(), CLIENT4.octets());
        assert_eq!(k.dst[0].to_ne_bytes(), VIP4.octets());
        assert_eq!(u16::from_be(k.sport), u16::from_be_bytes([f[34], f[35]]));
        assert_eq!(u16::from_be(k.dport), VIP_PORT);
        let k6 = flow_key(V6, 1);
        assert_eq!(
            k6.dst
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect::<Vec<_>>(),
            VIP6.octets()
        );
    }
}
