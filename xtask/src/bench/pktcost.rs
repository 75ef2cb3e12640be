//! Per-packet cost through BPF_PROG_TEST_RUN, inside a private network
//! namespace (nothing is attached). Its veth `fa` is the ingress device of
//! every frame and the way to every real; it holds the client and real
//! subnets with permanent neighbours, so NAT's FIB lookups answer and every
//! forwarded frame leaves by XDP_TX.
//!
//! Two timings, each with its own floor so ratios compare like with like:
//! - `Repeat`: one call repeats the frame `repeat` times; the kernel reports
//!   the mean time per repeat. Valid only where every repeat takes the same
//!   path on the same (reused) buffer: stateless programs and existing flows.
//! - `PerCall`: one frame per call, the kernel's time for that one run; the
//!   bench deletes the flow's conntrack entry between calls (outside the timed
//!   region), so each call is a genuine new flow. The kernel's timer overhead
//!   is in every per-call figure, the floor's included. Paths that rewrite
//!   the frame (NAT, TUN) are timed this way too: a reused buffer would take
//!   another path on its second repeat.

use super::{
    Progress,
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
    Counters, FAMILY_V4, FAMILY_V6, FlowKey, FlowState, GlobalCounters, PROG_DIRECTOR,
    REAL_F_PRESENT, REAL_F_REACHABLE, RealInfo, SERVICE_F_ACTIVE, SETTINGS_F_NAT, ServiceInfo,
    ServiceKey, Settings, addr_words, bench, globals, map_names, method, probe, sched,
    sched_layout, tun,
};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};
use xlb_testbed::{
    fixtures::{self, CLIENT_MAC, DIRECTOR_MAC, REAL_A_MAC},
    frames::{self, ETH_IPV4, ETH_IPV6, IP_TCP},
    netns::Netns,
    xdp::xdp_md,
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// The bench namespace's veth: ingress of every frame, egress to every real.
const WIRE: &str = "fa";
const TABLE: u32 = 65537;
const REALS_PER_SERVICE: u32 = 10;
/// Distinct client ports the new-flow case cycles through, so it does not
/// hit one cache-hot Maglev slot.
const NEW_FLOW_PORTS: u16 = 1024;

// The fixture table's addresses and MACs (xlb_testbed::fixtures), so a
// bench frame is the frame of the row for its path.
const REAL_MAC: [u8; 6] = REAL_A_MAC;
const CLIENT4: Ipv4Addr = Ipv4Addr::from_octets(fixtures::CLIENT4);
const VIP4: Ipv4Addr = Ipv4Addr::from_octets(fixtures::VIP4);
const OTHER4: Ipv4Addr = Ipv4Addr::from_octets(fixtures::OTHER4);
const CLIENT6: Ipv6Addr = Ipv6Addr::from_octets(fixtures::CLIENT6);
const VIP6: Ipv6Addr = Ipv6Addr::from_octets(fixtures::VIP6);
/// Service `i` listens on `VIP_PORT + i`.
const VIP_PORT: u16 = 80;
const CLIENT_PORT: u16 = 40000;
/// NAT reals listen here; GUE tunnels go to `GUE_PORT`.
const REAL_PORT: u16 = 8080;
const GUE_PORT: u16 = 6080;
/// The director's address on the real subnet: the tunnels' outer source.
const TUN_SRC4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const TUN_SRC6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1);

/// Real `r` (0-based) of a service of family `v6`: 10.1.0.11.. / fd01::11..
fn real_addr(v6: bool, r: u32) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0x11 + r as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 11 + r as u8))
    }
}

/// A service the bench installs (one per distinct value in `CASES`), each
/// with `REALS_PER_SERVICE` reals on its own port of the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Svc {
    pub v6: bool,
    pub sched: u8,
    pub method: u8,
    /// `tun::*` for TUN services.
    pub tun: u8,
}

const fn svc(v6: bool, sched: u8, method: u8, tun: u8) -> Svc {
    Svc {
        v6,
        sched,
        method,
        tun,
    }
}

const DR4: Svc = svc(false, sched::MH, method::DR, 0);
const DR6: Svc = svc(true, sched::MH, method::DR, 0);
const NAT4: Svc = svc(false, sched::MH, method::NAT, 0);
const NAT6: Svc = svc(true, sched::MH, method::NAT, 0);
const IPIP4: Svc = svc(false, sched::MH, method::TUN, tun::IPIP);
const IPIP6: Svc = svc(true, sched::MH, method::TUN, tun::IPIP);
const GUE4: Svc = svc(false, sched::MH, method::TUN, tun::GUE);
const GUE6: Svc = svc(true, sched::MH, method::TUN, tun::GUE);
const fn dr4(sched: u8) -> Svc {
    svc(false, sched, method::DR, 0)
}

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
    /// A NAT flow exists (made untimed); the frames are its real's replies.
    Reply,
    /// The flow exists (made untimed); the frames are ICMP errors about it
    /// (fragmentation needed, from a router near the client), which go to
    /// the flow's real.
    IcmpError,
}

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub program: Program,
    /// The service the TCP frame is for; `None`: an address no service has.
    pub service: Option<Svc>,
    pub timing: Timing,
    pub path: FlowPath,
    pub action: u32,
    /// The case every other case of its timing is divided by.
    pub floor: bool,
    /// `SETTINGS_F_NAT` while the case runs, as the agent sets it when it
    /// has NAT services (the bench has; clearing it shows what it costs).
    pub nat_flag: bool,
}

const V4: IpAddr = IpAddr::V4(VIP4);
const V6: IpAddr = IpAddr::V6(VIP6);

/// A director case timed one packet per call.
const fn per_call(name: &'static str, service: Svc, path: FlowPath) -> Case {
    Case {
        name,
        program: Program::Director,
        service: Some(service),
        timing: Timing::PerCall,
        path,
        action: XDP_TX,
        floor: false,
        nat_flag: true,
    }
}

/// Every per-packet figure; a new path adds a row (its service is set up
/// from the row).
pub const CASES: &[Case] = &[
    Case {
        name: "XDP_DROP (trivial program)",
        program: Program::Floor(bench::PROG_DROP),
        service: None,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_DROP,
        floor: false,
        nat_flag: true,
    },
    Case {
        name: "MAC swap + XDP_TX (floor)",
        program: Program::Floor(bench::PROG_MAC_SWAP),
        service: None,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_TX,
        floor: true,
        nat_flag: true,
    },
    Case {
        name: "xlb: not a service, no NAT service (XDP_PASS)",
        program: Program::Director,
        service: None,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_PASS,
        floor: false,
        nat_flag: false,
    },
    Case {
        name: "xlb: not a service (XDP_PASS)",
        program: Program::Director,
        service: None,
        timing: Timing::Repeat,
        path: FlowPath::Stateless,
        action: XDP_PASS,
        floor: false,
        nat_flag: true,
    },
    Case {
        name: "xlb DR: ICMP error to a flow, IPv4",
        program: Program::Director,
        service: Some(DR4),
        timing: Timing::Repeat,
        path: FlowPath::IcmpError,
        action: XDP_TX,
        floor: false,
        nat_flag: true,
    },
    Case {
        name: "xlb DR: existing flow, IPv4",
        program: Program::Director,
        service: Some(DR4),
        timing: Timing::Repeat,
        path: FlowPath::ExistingFlow,
        action: XDP_TX,
        floor: false,
        nat_flag: true,
    },
    Case {
        name: "xlb DR: existing flow, IPv6",
        program: Program::Director,
        service: Some(DR6),
        timing: Timing::Repeat,
        path: FlowPath::ExistingFlow,
        action: XDP_TX,
        floor: false,
        nat_flag: true,
    },
    Case {
        name: "MAC swap + XDP_TX, 1/call (floor)",
        program: Program::Floor(bench::PROG_MAC_SWAP),
        service: None,
        timing: Timing::PerCall,
        path: FlowPath::Stateless,
        action: XDP_TX,
        floor: true,
        nat_flag: true,
    },
    Case {
        name: "xlb: not a service, 1/call (XDP_PASS)",
        program: Program::Director,
        service: None,
        timing: Timing::PerCall,
        path: FlowPath::Stateless,
        action: XDP_PASS,
        floor: false,
        nat_flag: true,
    },
    per_call(
        "xlb DR: existing flow, IPv4, 1/call",
        DR4,
        FlowPath::ExistingFlow,
    ),
    per_call("xlb DR: new flow, mh, IPv4, 1/call", DR4, FlowPath::NewFlow),
    per_call(
        "xlb DR: new flow, rr, IPv4, 1/call",
        dr4(sched::RR),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, wrr, IPv4, 1/call",
        dr4(sched::WRR),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, wlc, IPv4, 1/call",
        dr4(sched::WLC),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, sh, IPv4, 1/call",
        dr4(sched::SH),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, lblc, IPv4, 1/call",
        dr4(sched::LBLC),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, lblcr, IPv4, 1/call",
        dr4(sched::LBLCR),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, dh, IPv4, 1/call",
        dr4(sched::DH),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, lc, IPv4, 1/call",
        dr4(sched::LC),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, sed, IPv4, 1/call",
        dr4(sched::SED),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, nq, IPv4, 1/call",
        dr4(sched::NQ),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, fo, IPv4, 1/call",
        dr4(sched::FO),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, ovf, IPv4, 1/call",
        dr4(sched::OVF),
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb DR: new flow, twos, IPv4, 1/call",
        dr4(sched::TWOS),
        FlowPath::NewFlow,
    ),
    per_call("xlb NAT: new flow, IPv4, 1/call", NAT4, FlowPath::NewFlow),
    per_call("xlb NAT: new flow, IPv6, 1/call", NAT6, FlowPath::NewFlow),
    per_call(
        "xlb NAT: existing flow, IPv4, 1/call",
        NAT4,
        FlowPath::ExistingFlow,
    ),
    per_call("xlb NAT: reply, IPv4, 1/call", NAT4, FlowPath::Reply),
    per_call(
        "xlb NAT: existing flow, IPv6, 1/call",
        NAT6,
        FlowPath::ExistingFlow,
    ),
    per_call("xlb NAT: reply, IPv6, 1/call", NAT6, FlowPath::Reply),
    per_call(
        "xlb NAT: ICMP error to a flow, IPv4, 1/call",
        NAT4,
        FlowPath::IcmpError,
    ),
    per_call(
        "xlb TUN: IPIP, new flow, mh, IPv4, 1/call",
        IPIP4,
        FlowPath::NewFlow,
    ),
    per_call(
        "xlb TUN: IPIP, existing flow, IPv4, 1/call",
        IPIP4,
        FlowPath::ExistingFlow,
    ),
    per_call(
        "xlb TUN: ip6ip6, existing flow, IPv6, 1/call",
        IPIP6,
        FlowPath::ExistingFlow,
    ),
    per_call(
        "xlb TUN: GUE, existing flow, IPv4, 1/call",
        GUE4,
        FlowPath::ExistingFlow,
    ),
    per_call(
        "xlb TUN: GUE, existing flow, IPv6, 1/call",
        GUE6,
        FlowPath::ExistingFlow,
    ),
];

/// The services `CASES` need, in order of first use: service `i` is the `i`th.
fn services() -> Vec<Svc> {
    let mut all: Vec<Svc> = Vec::new();
    for s in CASES.iter().filter_map(|c| c.service) {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all
}

pub struct Opts {
    pub runs: usize,
    /// Repeats per call in `Repeat` timing.
    pub repeat: u32,
    /// Calls per run in `PerCall` timing.
    pub calls: u32,
}

/// Times every case with `xlb_object`; with `counting_object` (the
/// director built with lb-ebpf's `count` feature) also runs each director
/// case's frame once through it and notes on the row which map accesses and
/// helper calls the path made.
pub fn run(
    opts: &Opts,
    xlb_object: &Path,
    floor_object: &Path,
    counting_object: Option<&Path>,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    let ns = Netns::create("pkt")?;
    wire(&ns)?;
    type Measured = Vec<(Case, Summary, Option<String>)>;
    let measured: Measured = ns.enter(|| -> Result<Measured> {
        let name = std::ffi::CString::new(WIRE)?;
        // SAFETY: a NUL-terminated name.
        let ingress = unsafe { libc::if_nametoindex(name.as_ptr()) };
        ensure!(ingress != 0, "no {WIRE} in the bench namespace");
        let mut floor = Ebpf::load_file(floor_object)
            .with_context(|| format!("loading {}", floor_object.display()))?;
        for name in [bench::PROG_DROP, bench::PROG_MAC_SWAP] {
            let p: &mut Xdp = floor
                .program_mut(name)
                .with_context(|| format!("no program {name} in the floor object"))?
                .try_into()?;
            p.load().with_context(|| format!("verifier on {name}"))?;
        }
        // Loaded first so that a failure shows at once; without it the rows
        // go on without their call counts.
        let mut counting = counting_object.and_then(|object| {
            Director::load(object, ingress)
                .inspect_err(|e| eprintln!("bench: no per-path call counts: {e:#}"))
                .ok()
        });
        let mut director = Director::load(xlb_object, ingress)?;
        let mut out = Vec::new();
        for case in CASES {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            progress.step(Section::PktCost, case.name);
            let summary = match case.program {
                Program::Floor(name) => {
                    let prog: &Xdp = floor.program(name).expect("loaded above").try_into()?;
                    let fixed = frame(
                        IpAddr::V4(CLIENT4),
                        IpAddr::V4(OTHER4),
                        CLIENT_PORT,
                        VIP_PORT,
                    );
                    measure(prog, case, opts, ingress, &fixed, &[], |_| Ok(()))?
                }
                Program::Director => director.measure(case, opts)?,
            };
            progress.done(&format!("{:.2} ns/pkt", summary.median));
            out.push((*case, summary, None));
        }
        if let Some(counting) = counting.as_mut() {
            for (case, _, calls) in out.iter_mut() {
                if case.program == Program::Director {
                    *calls = Some(counting.calls(case)?);
                }
            }
        }
        Ok(out)
    })??;

    let floor_of = |timing: Timing| {
        measured
            .iter()
            .find(|(c, _, _)| c.floor && c.timing == timing)
            .map(|(_, s, _)| s.median)
    };
    Ok(measured
        .iter()
        .map(|(case, summary, calls)| {
            let how = match case.timing {
                Timing::Repeat => format!("{} runs x {} repeats", opts.runs, opts.repeat),
                Timing::PerCall => format!("{} runs x {} calls of 1 packet", opts.runs, opts.calls),
            };
            let floor = match case.timing {
                Timing::Repeat => "MAC-swap floor",
                Timing::PerCall => "1/call floor",
            };
            let row = Row::measured(Section::PktCost, case.name, "ns/pkt", summary.clone())
                .method(how)
                .ratio_to(floor, floor_of(case.timing));
            match calls {
                Some(calls) => row.note(calls.clone()),
                None => row,
            }
        })
        .collect())
}

/// The bench namespace's wiring: veth `fa` (peer `fb`) with the client
/// subnets (10.0.0.0/24, fd00::/64) and the real subnets (10.1.0.0/24,
/// fd01::/64), permanent neighbours for the client and every real, and
/// forwarding on, as bpf_fib_lookup requires.
fn wire(ns: &Netns) -> Result<()> {
    let ip = |args: &[&str]| ns.run("ip", args).map(|_| ());
    ip(&[
        "link", "add", "name", WIRE, "type", "veth", "peer", "name", "fb",
    ])?;
    ip(&[
        "link",
        "set",
        WIRE,
        "address",
        &mac_text(DIRECTOR_MAC),
        "up",
    ])?;
    ip(&["link", "set", "fb", "up"])?;
    for net in ["10.0.0.254/24", "10.1.0.1/24"] {
        ip(&["addr", "add", net, "dev", WIRE])?;
    }
    for net in ["fd00::fe/64", "fd01::1/64"] {
        ip(&["addr", "add", net, "dev", WIRE, "nodad"])?;
    }
    let mut neighbours = vec![
        (IpAddr::V4(CLIENT4), CLIENT_MAC),
        (IpAddr::V6(CLIENT6), CLIENT_MAC),
    ];
    for r in 0..REALS_PER_SERVICE {
        neighbours.push((real_addr(false, r), REAL_MAC));
        neighbours.push((real_addr(true, r), REAL_MAC));
    }
    for (addr, mac) in neighbours {
        let (addr, mac) = (addr.to_string(), mac_text(mac));
        ip(&[
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "dev",
            WIRE,
            "nud",
            "permanent",
        ])?;
    }
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    Ok(())
}

fn mac_text(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// A TCP SYN from `src`:`sport` to `dst`:`dport`, as it arrives at the director.
fn frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let l4 = frames::tcp(sport, dport);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => frames::eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV4,
            &frames::ipv4(s, d, IP_TCP, &[], 0, &l4),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => frames::eth(
            DIRECTOR_MAC,
            CLIENT_MAC,
            ETH_IPV6,
            &frames::ipv6(s, d, IP_TCP, &l4),
        ),
        _ => unreachable!("one family per frame"),
    }
}

/// An ICMP "fragmentation needed" (MTU 1400) from a router near the client
/// (`OTHER4`) to the VIP, quoting the start of the VIP's reply to the client
/// on the flow `client`:`sport` → `vip`:`dport` (the quote's checksums are 0:
/// nothing on the path reads them).
fn icmp_error(client: IpAddr, vip: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let (IpAddr::V4(client), IpAddr::V4(vip)) = (client, vip) else {
        unreachable!("the ICMP error rows are IPv4")
    };
    let quoted = frames::ipv4(vip, client, IP_TCP, &[], 0, &frames::tcp(dport, sport)[..8]);
    let icmp = frames::icmp4(3, 4, [0, 0, 0x05, 0x78], &quoted);
    frames::eth(
        DIRECTOR_MAC,
        CLIENT_MAC,
        ETH_IPV4,
        &frames::ipv4(OTHER4, vip, frames::IP_ICMP, &[], 0, &icmp),
    )
}

/// The client's and the VIP's address for a service of family `v6`.
fn ends(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        (IpAddr::V6(CLIENT6), V6)
    } else {
        (IpAddr::V4(CLIENT4), V4)
    }
}

/// The flow key the director builds for a client frame to `dst`:`dport`.
fn flow_key(dst: IpAddr, sport: u16, dport: u16) -> FlowKey {
    let (src, family) = match dst {
        IpAddr::V4(_) => (IpAddr::V4(CLIENT4), FAMILY_V4),
        IpAddr::V6(_) => (IpAddr::V6(CLIENT6), FAMILY_V6),
    };
    FlowKey {
        src: addr_words(src),
        dst: addr_words(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: IP_TCP,
        family,
        ..FlowKey::default()
    }
}

/// One BPF_PROG_TEST_RUN call: the action and the kernel's ns per repeat.
fn call(prog: &Xdp, frame: &[u8], ingress: u32, repeat: u32) -> Result<(u32, u64)> {
    let ctx = xdp_md(frame.len(), ingress);
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

/// Times `case` on `prog` with `fixed`, or per call with `fresh[k]` in
/// turn when given; `after_call(k)` runs after each per-call run, outside
/// the timed region.
#[allow(clippy::too_many_arguments)]
fn measure(
    prog: &Xdp,
    case: &Case,
    opts: &Opts,
    ingress: u32,
    fixed: &[u8],
    fresh: &[Vec<u8>],
    mut after_call: impl FnMut(usize) -> Result<()>,
) -> Result<Summary> {
    let mut runs = Vec::with_capacity(opts.runs);
    let check = |action: u32| {
        ensure!(
            action == case.action,
            "{}: action {action}, expected {}",
            case.name,
            case.action
        );
        Ok(())
    };
    for _ in 0..opts.runs {
        match case.timing {
            Timing::Repeat => {
                let (action, ns) = call(prog, fixed, ingress, opts.repeat)?;
                check(action)?;
                runs.push(ns as f64);
            }
            Timing::PerCall => {
                let mut per_call = Vec::with_capacity(opts.calls as usize);
                for i in 0..opts.calls {
                    let k = i as usize % fresh.len().max(1);
                    let f = fresh.get(k).map_or(fixed, Vec::as_slice);
                    let (action, ns) = call(prog, f, ingress, 1)?;
                    check(action)?;
                    per_call.push(ns as f64);
                    after_call(k)?;
                }
                runs.push(mean(&per_call).context("no calls")?);
            }
        }
    }
    Summary::of(&runs).context("no runs")
}

/// xlb's director loaded from the production object, with the services
/// `CASES` name (`services()`), each with ten reals behind `fa`.
struct Director {
    ebpf: Ebpf,
    ingress: u32,
    services: Vec<Svc>,
    /// Taken out of `ebpf` so entries can be removed while the program is borrowed.
    conntrack: HashMap<MapData, FlowKey, FlowState>,
}

impl Director {
    fn load(object: &Path, ingress: u32) -> Result<Director> {
        let services = services();
        let n = services.len() as u32;
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
            // The agent's level unless run with debug logging: the program skips its debug records.
            .override_global("AYA_LOG_LEVEL", &2u8, false)
            .map_max_entries(map_names::SERVICES, n)
            .map_max_entries(map_names::SERVICE_STATS, n)
            .map_max_entries(map_names::MAGLEV, TABLE * n)
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
        let mut d = Director {
            ebpf,
            ingress,
            services,
            conntrack,
        };
        d.program()?;
        Ok(d)
    }

    fn map(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("no map {name}"))
    }

    /// The tunnels' sources, then every service: service `i` on port
    /// `VIP_PORT + i` with reals `1 + 10 i ..`; Maglev tables and the other
    /// schedulers' tables dealt round-robin (a lookup costs the same whoever
    /// fills the slot).
    fn program(&mut self) -> Result<()> {
        let mut settings: Array<_, Settings> = Array::try_from(self.map(map_names::SETTINGS)?)?;
        let mut s = Settings::ipvs_defaults();
        s.tun_src_v4 = addr_words(IpAddr::V4(TUN_SRC4));
        s.tun_src_v6 = addr_words(IpAddr::V6(TUN_SRC6));
        settings.set(0, s, 0)?;
        for (id, svc) in self.services.clone().into_iter().enumerate() {
            self.install(id as u32, svc)?;
        }
        Ok(())
    }

    fn install(&mut self, id: u32, svc: Svc) -> Result<()> {
        let first = 1 + id * REALS_PER_SERVICE;
        let ingress = self.ingress;
        let mut reals: Array<_, RealInfo> = Array::try_from(self.map(map_names::REALS)?)?;
        for r in 0..REALS_PER_SERVICE {
            let addr = real_addr(svc.v6, r);
            let info = RealInfo {
                addr: addr_words(addr),
                port: if svc.method == method::NAT {
                    REAL_PORT.to_be()
                } else {
                    (VIP_PORT + id as u16).to_be()
                },
                family: if svc.v6 { FAMILY_V6 } else { FAMILY_V4 },
                method: svc.method,
                mac: REAL_MAC,
                tun_type: svc.tun,
                ifindex: ingress,
                src_mac: DIRECTOR_MAC,
                mtu: 1500,
                // ovf takes a real only while its active connections are
                // within its weight, and the new-flow rows count one per call
                // (their entries are deleted without uncounting): weight
                // enough for every call of a full run.
                weight: if svc.sched == sched::OVF {
                    1_000_000
                } else {
                    1
                },
                service_id: id,
                flags: REAL_F_PRESENT | REAL_F_REACHABLE,
                tun_port: if svc.tun == tun::GUE {
                    GUE_PORT.to_be()
                } else {
                    0
                },
                ..RealInfo::default()
            };
            reals.set(first + r, info, 0)?;
        }
        let mut list: Array<_, u32> = Array::try_from(self.map(map_names::SERVICE_REALS)?)?;
        let base = sched_layout::reals_base(id, false);
        for r in 0..=REALS_PER_SERVICE {
            let real = if r < REALS_PER_SERVICE { first + r } else { 0 };
            list.set(base + r, real, 0)?;
        }
        let (base, slots, table_len) = match svc.sched {
            sched::MH => (id * TABLE, TABLE, 0),
            // The rr / wrr sequence of ten weight-1 reals.
            sched::RR | sched::WRR => (
                sched_layout::table_base(id, TABLE, false),
                REALS_PER_SERVICE,
                REALS_PER_SERVICE,
            ),
            // dh / sh buckets; the other schedulers read only the list.
            _ => (
                sched_layout::table_base(id, TABLE, false),
                sched_layout::HASH_BUCKETS,
                sched_layout::HASH_BUCKETS,
            ),
        };
        let mut table: Array<_, u32> = Array::try_from(self.map(map_names::MAGLEV)?)?;
        for slot in 0..slots {
            table.set(base + slot, first + slot % REALS_PER_SERVICE, 0)?;
        }
        let key = ServiceKey {
            addr: addr_words(ends(svc.v6).1),
            port: (VIP_PORT + id as u16).to_be(),
            proto: IP_TCP,
            family: if svc.v6 { FAMILY_V6 } else { FAMILY_V4 },
        };
        let info = ServiceInfo {
            id,
            flags: SERVICE_F_ACTIVE,
            sched: svc.sched,
            method: svc.method,
            table_len,
            ..ServiceInfo::default()
        };
        let mut services: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(self.map(map_names::SERVICES)?)?;
        services.insert(key, info, 0)?;
        Ok(())
    }

    /// Packets and new connections counted over every service.
    fn service_counters(&self) -> Result<Counters> {
        let m: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(self.ebpf.map(map_names::SERVICE_STATS).context("stats")?)?;
        let mut sum = Counters::default();
        for id in 0..self.services.len() as u32 {
            sum = m.get(&id, 0)?.iter().fold(sum, |a, c| a + *c);
        }
        Ok(sum)
    }

    fn global(&self) -> Result<GlobalCounters> {
        let m: PerCpuArray<&MapData, GlobalCounters> =
            PerCpuArray::try_from(self.ebpf.map(map_names::GLOBAL_STATS).context("stats")?)?;
        Ok(m.get(&0, 0)?
            .iter()
            .fold(GlobalCounters::default(), |a, c| a + *c))
    }

    /// The frames `case` sends: the fixed one and, for new flows, one per
    /// client port cycled through. Existing and reply paths make their flow
    /// here, untimed.
    fn frames(&self, prog: &Xdp, case: &Case) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
        let Some(svc) = case.service else {
            let f = frame(
                IpAddr::V4(CLIENT4),
                IpAddr::V4(OTHER4),
                CLIENT_PORT,
                VIP_PORT,
            );
            return Ok((f, Vec::new()));
        };
        let (client, vip) = ends(svc.v6);
        let port = VIP_PORT + self.service_id(svc) as u16;
        let fixed = frame(client, vip, CLIENT_PORT, port);
        match case.path {
            FlowPath::Stateless => Ok((fixed, Vec::new())),
            FlowPath::NewFlow => {
                let fresh = (0..NEW_FLOW_PORTS)
                    .map(|i| frame(client, vip, CLIENT_PORT + 1 + i, port))
                    .collect();
                Ok((fixed, fresh))
            }
            FlowPath::ExistingFlow => {
                call(prog, &fixed, self.ingress, 1)?;
                Ok((fixed, Vec::new()))
            }
            FlowPath::IcmpError => {
                call(prog, &fixed, self.ingress, 1)?;
                Ok((icmp_error(client, vip, CLIENT_PORT, port), Vec::new()))
            }
            FlowPath::Reply => {
                call(prog, &fixed, self.ingress, 1)?;
                let flow = self
                    .conntrack
                    .get(&flow_key(vip, CLIENT_PORT, port), 0)
                    .with_context(|| format!("{}: the flow was not made", case.name))?;
                let r = (flow.real_id - 1) % REALS_PER_SERVICE;
                let reply = frame(real_addr(svc.v6, r), client, REAL_PORT, CLIENT_PORT);
                Ok((reply, Vec::new()))
            }
        }
    }

    fn service_id(&self, svc: Svc) -> u32 {
        self.services
            .iter()
            .position(|s| *s == svc)
            .expect("every case's service is installed") as u32
    }

    fn nat_flag(&mut self, on: bool) -> Result<()> {
        let mut m: Array<_, Settings> = Array::try_from(self.map(map_names::SETTINGS)?)?;
        let mut s = m.get(&0, 0)?;
        s.flags = if on {
            s.flags | SETTINGS_F_NAT
        } else {
            s.flags & !SETTINGS_F_NAT
        };
        m.set(0, s, 0)?;
        Ok(())
    }

    /// What `case`'s path does per packet, from one run of its frame through
    /// the counting build: hash-map work and helper calls by name, array
    /// reads (inlined by the verifier) as a number.
    fn calls(&mut self, case: &Case) -> Result<String> {
        self.nat_flag(case.nat_flag)?;
        let prog: &Xdp = self
            .ebpf
            .program(PROG_DIRECTOR)
            .context("director")?
            .try_into()?;
        let (fixed, fresh) = self.frames(prog, case)?;
        let before = self.probes()?;
        let (action, _) = call(prog, fresh.first().unwrap_or(&fixed), self.ingress, 1)?;
        ensure!(
            action == case.action,
            "{} (counting build): action {action}, expected {}",
            case.name,
            case.action
        );
        let after = self.probes()?;
        if let (FlowPath::NewFlow, Some(svc)) = (case.path, case.service) {
            let port = VIP_PORT + self.service_id(svc) as u16;
            self.conntrack
                .remove(&flow_key(ends(svc.v6).1, CLIENT_PORT + 1, port))
                .with_context(|| format!("{} (counting build): no new flow", case.name))?;
        }
        let mut named = Vec::new();
        let mut arrays = 0;
        for (kind_wanted, label) in [(probe::Kind::Hash, "hash"), (probe::Kind::Helper, "calls")] {
            let mut these = Vec::new();
            for &(slot, kind, name) in probe::SITES {
                let n = after[slot as usize] - before[slot as usize];
                if kind == probe::Kind::Array {
                    if kind_wanted == probe::Kind::Hash {
                        arrays += n;
                    }
                } else if kind == kind_wanted && n > 0 {
                    these.push(if n == 1 {
                        name.to_string()
                    } else {
                        format!("{name} x{n}")
                    });
                }
            }
            if !these.is_empty() {
                named.push(format!("{label}: {}", these.join(", ")));
            }
        }
        named.push(format!("{arrays} array reads"));
        Ok(named.join("; "))
    }

    /// `PROBES` summed over the CPUs, by slot.
    fn probes(&self) -> Result<Vec<u64>> {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(probe::MAP).context("no PROBES map")?)?;
        (0..probe::COUNT)
            .map(|slot| Ok(m.get(&slot, 0)?.iter().sum()))
            .collect()
    }

    fn measure(&mut self, case: &Case, opts: &Opts) -> Result<Summary> {
        self.nat_flag(case.nat_flag)?;
        let prog: &Xdp = self
            .ebpf
            .program(PROG_DIRECTOR)
            .context("director")?
            .try_into()?;
        let (fixed, fresh) = self.frames(prog, case)?;
        let packets = u64::from(opts.runs as u32)
            * match case.timing {
                Timing::Repeat => u64::from(opts.repeat),
                Timing::PerCall => u64::from(opts.calls),
            };
        let (before, global_before) = (self.service_counters()?, self.global()?);
        // The new-flow frames' destination, to remove each call's flow.
        let target = case
            .service
            .map(|s| (ends(s.v6).1, VIP_PORT + self.service_id(s) as u16));
        let summary = {
            let ct = &mut self.conntrack;
            measure(prog, case, opts, self.ingress, &fixed, &fresh, |k| {
                if let (FlowPath::NewFlow, Some((dst, port))) = (case.path, target) {
                    let key = flow_key(dst, CLIENT_PORT + 1 + k as u16, port);
                    // Fails if the call did not record the flow: it was not a new flow.
                    ct.remove(&key).with_context(|| {
                        format!("{}: no conntrack entry after the call", case.name)
                    })?;
                }
                Ok(())
            })?
        };
        let (after, global_after) = (self.service_counters()?, self.global()?);
        // Every repeat must have taken the path the case names.
        let got = (
            after.packets - before.packets,
            after.new_conns - before.new_conns,
            global_after.tx - global_before.tx,
            global_after.pass - global_before.pass,
        );
        let want = match case.path {
            FlowPath::Stateless => (0, 0, 0, packets),
            FlowPath::ExistingFlow | FlowPath::IcmpError => (packets, 0, packets, 0),
            FlowPath::NewFlow => (packets, packets, packets, 0),
            // Replies are counted globally, not per service.
            FlowPath::Reply => (0, 0, packets, 0),
        };
        ensure!(
            got == want,
            "{}: {packets} packets: (service packets, new flows, XDP_TX, XDP_PASS) {got:?}, expected {want:?}",
            case.name
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
    fn services_are_distinct_and_fit_the_maps() {
        let all = services();
        assert!(all.len() as u32 <= lb_common::defaults::MAX_SERVICES);
        for (i, a) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(a), "{a:?} twice");
        }
        // Replies and rewrites are timed per call: a reused buffer changes path.
        for c in CASES.iter().filter(|c| {
            c.path == FlowPath::Reply || c.service.is_some_and(|s| s.method != method::DR)
        }) {
            assert_eq!(c.timing, Timing::PerCall, "{}", c.name);
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
    fn the_dr_frame_is_the_fixture_rows_input() {
        let row = fixtures::dr::rows()
            .into_iter()
            .find(|c| c.name == "DR TCP/IPv4")
            .expect("the fixture table's DR TCP/IPv4 row");
        assert_eq!(frame(IpAddr::V4(CLIENT4), V4, 40000, 80), row.input);
    }

    #[test]
    fn flow_key_matches_the_frame() {
        let f = frame(IpAddr::V4(CLIENT4), V4, 40001, 81);
        let k = flow_key(V4, 40001, 81);
        assert_eq!(&f[26..30], &CLIENT4.octets());
        assert_eq!(k.src[0].to_ne_bytes(), CLIENT4.octets());
        assert_eq!(k.dst[0].to_ne_bytes(), VIP4.octets());
        assert_eq!(u16::from_be(k.sport), u16::from_be_bytes([f[34], f[35]]));
        assert_eq!(u16::from_be(k.dport), 81);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 81);
        let k6 = flow_key(V6, 1, 80);
        assert_eq!(
            k6.dst
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect::<Vec<_>>(),
            VIP6.octets()
        );
    }
}
