//! Live forwarding on veth, native XDP everywhere it runs:
//!
//! ```text
//!  gen ns               dir ns (the director)             real ns
//!  g0 10.201.1.2 ──── d0 10.201.1.1   d1 10.201.2.1 ──── r0 10.201.2.2
//!  bench_gen          xlb (agent: DR, or NAT on          bench_count
//!  (live frames)      d0 + d1) or xlb_pass +             (counts, drops)
//!                     nftables DNAT
//! ```
//!
//! The generator is the bench-floor object's `bench_gen` run by
//! BPF_PROG_TEST_RUN in live-frames mode: each repeat sends one 60-byte
//! UDP frame out of g0 to the VIP, cycling through `GEN_FLOWS` source ports.
//! Each call is bounded in frames, each run in time and frames. The receiving
//! end counts what arrives; packets per second = counted / run time.

use super::{
    Progress,
    frames::{self, ETH_IPV4, UDP},
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, anyhow, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use lb_common::bench;
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use xlb_testbed::{agent::Agent, netns::Netns, xdp::xdp_md};

pub struct Opts {
    pub runs: usize,
    /// Length of one run.
    pub seconds: f64,
}

pub struct Artefacts<'a> {
    pub xlb: &'a Path,
    pub xlb_object: &'a Path,
    pub floor_object: &'a Path,
}

/// Frames per BPF_PROG_TEST_RUN call, and per kernel batch within it.
const CHUNK: u32 = 1 << 17;
const BATCH: u32 = 64;
/// No run sends more than this many frames per second of its length.
const MAX_PPS: f64 = 20e6;
const WARMUP: Duration = Duration::from_millis(300);

const GEN_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0, 1];
const D0_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0, 2];
const D1_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0, 3];
const REAL_MAC: [u8; 6] = [0x02, 0xb0, 0, 0, 0, 4];
const GEN_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
const REAL_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarder {
    /// The real agent, DR, mh, one real.
    XlbDr,
    /// The real agent, NAT (two-armed: d0 and d1), mh, one real.
    XlbNat,
    /// The kernel: an XDP_PASS program on d0 (native XDP on veth needs one to
    /// receive the generator's frames), then nftables DNAT to the real.
    NftDnat,
    /// The kernel's IPVS, DR, mh, one real, programmed by the agent's IPVS
    /// data plane; the VIP on the director's lo and XDP_PASS on d0 as for
    /// nftables. Only in the qemu guest (guest.rs): this kernel has no IPVS.
    IpvsDr,
}

pub struct Case {
    pub name: &'static str,
    /// `Err(why)`: a slot for a figure that cannot be measured yet.
    pub forwarder: Result<Forwarder, &'static str>,
    /// Reported as a ratio to this case's median.
    pub vs: Option<&'static str>,
}

pub const NFT_DNAT: &str = "nftables DNAT (peer), veth";

pub const CASES: &[Case] = &[
    Case {
        name: "xlb DR, veth",
        forwarder: Ok(Forwarder::XlbDr),
        vs: Some(NFT_DNAT),
    },
    Case {
        name: NFT_DNAT,
        forwarder: Ok(Forwarder::NftDnat),
        vs: None,
    },
    Case {
        name: "xlb NAT, veth",
        forwarder: Ok(Forwarder::XlbNat),
        vs: Some(NFT_DNAT),
    },
];

pub fn run(
    opts: &Opts,
    art: &Artefacts<'_>,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    progress.step(Section::Live, "building gen / director / real namespaces");
    let topo = Topology::build(art.floor_object)?;
    let mut measured: Vec<(&Case, Summary, f64)> = Vec::new();
    let mut rows = Vec::new();
    for case in CASES {
        let forwarder = match case.forwarder {
            Ok(f) => f,
            Err(why) => {
                rows.push(Row::not_measured(Section::Live, case.name, "Mpps", why));
                continue;
            }
        };
        progress.step(Section::Live, case.name);
        let (summary, delivered) = measure(&topo, art, forwarder, opts, stop)?;
        progress.done(&format!(
            "{:.3} Mpps, {:.1}% of sent frames arrived",
            summary.median,
            delivered * 100.0
        ));
        measured.push((case, summary, delivered));
    }
    for (case, summary, delivered) in &measured {
        let base = case.vs.and_then(|vs| {
            measured
                .iter()
                .find(|(c, ..)| c.name == vs)
                .map(|(_, s, _)| s.median)
        });
        let row = Row::measured(Section::Live, case.name, "Mpps", summary.clone())
            .method(format!(
                "UDP, {} flows, 60-byte frames, {} runs x {:.1} s, {:.1}% of sent frames arrived",
                bench::GEN_FLOWS,
                opts.runs,
                opts.seconds,
                delivered * 100.0
            ))
            .ratio_to(case.vs.unwrap_or(""), base);
        rows.push(row);
    }
    // Keep the table in case order.
    rows.sort_by_key(|r| CASES.iter().position(|c| c.name == r.case));
    Ok(rows)
}

/// Packets per second through `forwarder` on `topo` (Mpps per run) and the
/// share of sent frames that arrived.
pub fn measure(
    topo: &Topology,
    art: &Artefacts<'_>,
    forwarder: Forwarder,
    opts: &Opts,
    stop: &AtomicBool,
) -> Result<(Summary, f64)> {
    match forwarder {
        Forwarder::XlbDr | Forwarder::XlbNat | Forwarder::IpvsDr => {
            let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-bench-{}", std::process::id()));
            let result = with_agent(topo, art, &pin, forwarder, |t| t.measure(opts, stop));
            remove_pin_dir(&pin);
            result
        }
        Forwarder::NftDnat => topo.with_nft(art.xlb_object, |t| t.measure(opts, stop)),
    }
}

/// The three namespaces with the generator loaded and the counter attached.
/// Fields drop in order: programs first, then the namespaces.
pub struct Topology {
    gen_ebpf: Ebpf,
    count_ebpf: Ebpf,
    g0: u32,
    sender: Netns,
    dir: Netns,
    /// Held so the namespace lives as long as the topology.
    _real: Netns,
}

/// The generator's frame: 60 bytes of UDP to the VIP (the source port varies per frame).
fn gen_frame() -> Vec<u8> {
    frames::eth(
        D0_MAC,
        GEN_MAC,
        ETH_IPV4,
        &frames::ipv4(
            GEN_IP,
            VIP,
            UDP,
            &frames::l4(UDP, bench::GEN_SPORT_BASE, bench::PORT, &[0; 18]),
        ),
    )
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Topology {
    pub fn build(floor_object: &Path) -> Result<Topology> {
        let sender = Netns::create("gen")?;
        let dir = Netns::create("dir")?;
        let real = Netns::create("real")?;
        sender.run(
            "ip",
            &[
                "link",
                "add",
                "g0",
                "type",
                "veth",
                "peer",
                "name",
                "d0",
                "netns",
                dir.name(),
            ],
        )?;
        dir.run(
            "ip",
            &[
                "link",
                "add",
                "d1",
                "type",
                "veth",
                "peer",
                "name",
                "r0",
                "netns",
                real.name(),
            ],
        )?;
        for (ns, dev, m, addr) in [
            (&sender, "g0", GEN_MAC, "10.201.1.2/24"),
            (&dir, "d0", D0_MAC, "10.201.1.1/24"),
            (&dir, "d1", D1_MAC, "10.201.2.1/24"),
            (&real, "r0", REAL_MAC, "10.201.2.2/24"),
        ] {
            ns.run("ip", &["link", "set", dev, "address", &mac(m)])?;
            ns.run("ip", &["addr", "add", addr, "dev", dev])?;
            ns.run("ip", &["link", "set", dev, "up"])?;
        }
        dir.sysctl("net.ipv4.ip_forward", "1")?;
        for dev in ["all", "default", "d0", "d1"] {
            dir.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
        }
        // Both forwarders find the real's MAC here; no ARP timing in the figures.
        dir.run(
            "ip",
            &[
                "neigh",
                "replace",
                &REAL_IP.to_string(),
                "lladdr",
                &mac(REAL_MAC),
                "dev",
                "d1",
                "nud",
                "permanent",
            ],
        )?;

        let load = |what: &str| -> Result<Ebpf> {
            let mut ebpf = Ebpf::load_file(floor_object)
                .with_context(|| format!("loading {}", floor_object.display()))?;
            let p: &mut Xdp = ebpf
                .program_mut(what)
                .ok_or_else(|| anyhow!("no program {what} in the floor object"))?
                .try_into()?;
            p.load().with_context(|| format!("verifier on {what}"))?;
            Ok(ebpf)
        };
        let mut gen_ebpf = load(bench::PROG_GEN)?;
        let mut headers: Array<_, [u8; bench::GEN_HEADERS_LEN]> = Array::try_from(
            gen_ebpf
                .map_mut(bench::MAP_GEN_HEADERS)
                .context("no generator headers map")?,
        )?;
        let frame = gen_frame();
        headers.set(
            0,
            <[u8; bench::GEN_HEADERS_LEN]>::try_from(&frame[..bench::GEN_HEADERS_LEN])?,
            0,
        )?;
        let mut count_ebpf = load(bench::PROG_COUNT)?;
        let counter: &mut Xdp = count_ebpf
            .program_mut(bench::PROG_COUNT)
            .expect("loaded")
            .try_into()?;
        real.enter(|| counter.attach("r0", XdpMode::Driver))?
            .context("attaching the counter to r0 (native)")?;
        let g0 = sender.enter(|| {
            // SAFETY: NUL-terminated name.
            unsafe { libc::if_nametoindex(c"g0".as_ptr()) }
        })?;
        ensure!(g0 != 0, "g0 has no ifindex");
        Ok(Topology {
            gen_ebpf,
            count_ebpf,
            g0,
            sender,
            dir,
            _real: real,
        })
    }

    fn received(&self) -> Result<u64> {
        let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.count_ebpf
                .map(bench::MAP_RX)
                .context("no counter map")?,
        )?;
        Ok(m.get(&0, 0)?.iter().sum())
    }

    /// Sends for up to `limit` (and at most `MAX_PPS` × its length frames);
    /// returns (frames sent, frames counted at the real, seconds).
    fn blast(&self, limit: Duration, stop: &AtomicBool) -> Result<(u64, u64, f64)> {
        let frame = gen_frame();
        let ctx = xdp_md(frame.len(), self.g0);
        let cap = (limit.as_secs_f64() * MAX_PPS) as u64;
        let prog: &Xdp = self
            .gen_ebpf
            .program(bench::PROG_GEN)
            .expect("loaded")
            .try_into()?;
        let before = self.received()?;
        let start = Instant::now();
        let sent = self.sender.enter(|| -> Result<u64> {
            let mut sent = 0u64;
            while sent < cap && start.elapsed() < limit && !stop.load(Ordering::SeqCst) {
                prog.test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat: CHUNK,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::new()
                })
                .context("BPF_PROG_TEST_RUN in live-frames mode")?;
                sent += u64::from(CHUNK);
            }
            Ok(sent)
        })??;
        let secs = start.elapsed().as_secs_f64();
        // Frames still in veth rings land within microseconds.
        std::thread::sleep(Duration::from_millis(20));
        Ok((sent, self.received()? - before, secs))
    }

    /// Warm up (flows into the conntrack tables), then time `opts.runs` runs.
    /// Returns Mpps per run and the share of sent frames that arrived.
    pub fn measure(&self, opts: &Opts, stop: &AtomicBool) -> Result<(Summary, f64)> {
        let (sent, got, _) = self.blast(WARMUP, stop)?;
        ensure!(
            got > 0,
            "none of {sent} warm-up frames reached the real: the forwarder is not forwarding"
        );
        let mut runs = Vec::new();
        let (mut all_sent, mut all_got) = (0u64, 0u64);
        for _ in 0..opts.runs {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            let (sent, got, secs) = self.blast(Duration::from_secs_f64(opts.seconds), stop)?;
            runs.push(got as f64 / secs / 1e6);
            all_sent += sent;
            all_got += got;
        }
        let summary = Summary::of(&runs).context("no runs")?;
        Ok((summary, all_got as f64 / all_sent.max(1) as f64))
    }

    /// xlb_pass natively on d0 for the duration of `f`: native XDP on veth
    /// needs a program on the receiving side to take the generator's frames.
    fn with_pass<R>(&self, xlb_object: &Path, f: impl FnOnce(&Topology) -> Result<R>) -> Result<R> {
        let mut pass = Ebpf::load_file(xlb_object)
            .with_context(|| format!("loading {}", xlb_object.display()))?;
        let p: &mut Xdp = pass
            .program_mut(lb_common::PROG_PASS)
            .context("no pass program in xlb's object")?
            .try_into()?;
        p.load()?;
        self.dir
            .enter(|| p.attach("d0", XdpMode::Driver))?
            .context("attaching xlb_pass to d0 (native)")?;
        f(self)
    }

    /// xlb_pass on d0 and a DNAT rule for the VIP, for the duration of `f`.
    fn with_nft<R>(&self, xlb_object: &Path, f: impl FnOnce(&Topology) -> Result<R>) -> Result<R> {
        self.with_pass(xlb_object, |t| t.nft(f))
    }

    fn nft<R>(&self, f: impl FnOnce(&Topology) -> Result<R>) -> Result<R> {
        self.dir.run("nft", &["add", "table", "ip", "xlbbench"])?;
        let result = self
            .dir
            .run(
                "nft",
                &[
                    "add",
                    "chain",
                    "ip",
                    "xlbbench",
                    "pre",
                    "{ type nat hook prerouting priority dstnat; policy accept; }",
                ],
            )
            .and_then(|_| {
                self.dir.run(
                    "nft",
                    &[
                        "add",
                        "rule",
                        "ip",
                        "xlbbench",
                        "pre",
                        "ip",
                        "daddr",
                        &VIP.to_string(),
                        "udp",
                        "dport",
                        &bench::PORT.to_string(),
                        "dnat",
                        "to",
                        &REAL_IP.to_string(),
                    ],
                )
            })
            .and_then(|_| f(self));
        let removed = self.dir.run("nft", &["delete", "table", "ip", "xlbbench"]);
        let r = result?;
        removed?;
        Ok(r)
    }
}

/// The agent in the director namespace, native XDP on d0, DR to the one
/// real; or NAT, on d0 and d1 (the real's side, a redirect target); or the
/// kernel's IPVS, DR, programmed by the agent, with the VIP on lo and
/// xlb_pass on d0.
fn with_agent<R>(
    topo: &Topology,
    art: &Artefacts<'_>,
    pin: &Path,
    forwarder: Forwarder,
    f: impl FnOnce(&Topology) -> Result<R>,
) -> Result<R> {
    let (plane, method) = match forwarder {
        Forwarder::XlbNat => (
            "interfaces = [\"d0\", \"d1\"]\nxdp_mode = \"native\"",
            "nat",
        ),
        Forwarder::IpvsDr => ("kind = \"ipvs\"\ninterfaces = []", "dr"),
        _ => ("interfaces = [\"d0\"]\nxdp_mode = \"native\"", "dr"),
    };
    let dir = std::env::temp_dir().join(format!("xlb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("live.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo xtask bench`.\n\
             [dataplane]\n{plane}\npin_path = \"{}\"\n\
             conntrack_size = 65536\n\n\
             [[service]]\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"udp\"\nscheduler = \"mh\"\nmethod = \"{method}\"\n\n\
             [[service.real]]\naddress = \"{REAL_IP}\"\nport = {port}\nweight = 1\n",
            pin.display(),
            port = bench::PORT
        ),
    )?;
    let run = |t: &Topology| {
        Agent::start(&t.dir, art.xlb, &config).and_then(|agent| {
            let r = f(t);
            agent.stop()?;
            r
        })
    };
    let result = if forwarder == Forwarder::IpvsDr {
        // IPVS takes packets for local addresses only.
        let vip = format!("{VIP}/32");
        topo.dir.run("ip", &["addr", "add", &vip, "dev", "lo"])?;
        let r = topo.with_pass(art.xlb_object, run);
        let removed = topo.dir.run("ip", &["addr", "del", &vip, "dev", "lo"]);
        r.and_then(|r| removed.map(|_| r))
    } else {
        run(topo)
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The agent unpins its maps when it exits cleanly, not when it is killed;
/// its private pin directory and lock file are ours to remove.
pub fn remove_pin_dir(pin: &Path) {
    let _ = std::fs::remove_dir_all(pin);
    let flat = pin.to_string_lossy().trim_matches('/').replace('/', "_");
    let _ = std::fs::remove_file(format!("/run/xlb/{flat}.lock"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ratio_names_a_case() {
        for c in CASES {
            if let Some(vs) = c.vs {
                assert!(CASES.iter().any(|o| o.name == vs), "{} vs {vs}", c.name);
                assert_ne!(vs, c.name);
            }
        }
    }

    #[test]
    fn generated_frame_is_the_minimum_ethernet_size_with_udp_last_in_the_headers() {
        let f = gen_frame();
        assert_eq!(f.len(), 60);
        // The generator rewrites the source port at the start of the UDP header.
        let udp = bench::GEN_HEADERS_LEN - 8;
        assert_eq!(
            u16::from_be_bytes([f[udp], f[udp + 1]]),
            bench::GEN_SPORT_BASE
        );
        assert_eq!(u16::from_be_bytes([f[udp + 2], f[udp + 3]]), bench::PORT);
        assert_eq!(f[23], UDP, "IPv4 protocol");
    }
}
