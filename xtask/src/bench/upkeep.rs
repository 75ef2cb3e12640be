//! The flow table's upkeep at scale: an agent with the default
//! `conntrack_size` (1M), its table filled by the bench (writes to the
//! pinned CONNTRACK, as many flows as a flood would leave), and what that
//! costs: the reclaimer's pass (wall time, pauses included, as the agent
//! publishes it in `UPKEEP`), the CPU its thread uses per pass (its share
//! is bounded by its pacing), and a scrape with 10 flows against one with
//! 1M (a scrape reads the summary, so both should cost the same).

use super::{
    Progress,
    control::{REALS_PER_SERVICE, reals_ns},
    live::remove_pin_dir,
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, bail, ensure};
use aya::maps::{Array, HashMap, Map, MapData};
use lb_common::{
    FAMILY_V4, FlowKey, FlowState, PROTO_TCP, RealConns, conn, map_names, upkeep::Summary as Pass,
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use xlb_testbed::{agent::Agent, netns::Netns, procfs::rss_mib, scrape};

pub struct Opts {
    /// Flows in the full table (live plus the expired share).
    pub flows: u32,
    /// Of those, idle past their timeout when the first pass meets them.
    pub expired: u32,
    /// Passes timed once the table is full.
    pub passes: usize,
    /// Scrapes timed at each table size.
    pub scrapes: usize,
}

const METRICS: &str = "127.0.0.1:9479";
const VIP: [u8; 4] = [10, 203, 0, 1];

fn config(pin: &Path) -> String {
    let mut s = format!(
        "# Written by `cargo xtask bench`.\n[dataplane]\ninterfaces = [\"u0\"]\nxdp_mode = \"native\"\n\
         pin_path = \"{}\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n[[service]]\nvip = \"10.203.0.1\"\n\
         port = 80\nprotocol = \"tcp\"\nscheduler = \"mh\"\nmethod = \"dr\"\n",
        pin.display()
    );
    for r in 1..=REALS_PER_SERVICE.min(4) {
        s.push_str(&format!(
            "[[service.real]]\naddress = \"10.202.0.{r}\"\nweight = 1\n"
        ));
    }
    s
}

fn map(pin: &Path, name: &str) -> Result<Map> {
    Ok(Map::from_map_data(MapData::from_pin(pin.join(name))?)?)
}

/// The pinned summary of the reclaimer's last pass.
fn last_pass(pin: &Path) -> Result<Pass> {
    let m: Array<MapData, Pass> = map(pin, map_names::UPKEEP)?.try_into()?;
    Ok(m.get(&0, 0)?)
}

/// Waits (at most `limit`) until the reclaimer has finished pass `n`.
fn wait_pass(pin: &Path, n: u64, limit: Duration, stop: &AtomicBool) -> Result<Pass> {
    let deadline = Instant::now() + limit;
    loop {
        let p = last_pass(pin)?;
        if p.passes >= n {
            return Ok(p);
        }
        ensure!(
            Instant::now() < deadline,
            "no upkeep pass {n} within {limit:?}"
        );
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) of the agent's thread named `xlb-upkeep`, in ms.
fn upkeep_cpu_ms(pid: u32) -> Result<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        if std::fs::read_to_string(task.join("comm"))?.trim() != "xlb-upkeep" {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat"))?;
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').context("stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        return Ok(ticks * 1000.0 / hz);
    }
    bail!("the agent has no xlb-upkeep thread")
}

/// Writes `live` established flows (counted on real 1, as the director
/// would have) and `expired` pickups idle for 100 s into the pinned table.
fn fill(pin: &Path, live: u32, expired: u32) -> Result<()> {
    let mut ct: HashMap<MapData, FlowKey, FlowState> =
        map(pin, map_names::CONNTRACK)?.try_into()?;
    let now = {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    let vip = [u32::from_ne_bytes(VIP), 0, 0, 0];
    for n in 0..live + expired {
        let key = FlowKey {
            src: [u32::from_be(0xc612_0000 + (n >> 16)), 0, 0, 0],
            dst: vip,
            sport: (n as u16).to_be(),
            dport: 80u16.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let (state, idle) = if n < live {
            (conn::ESTABLISHED, 0)
        } else {
            (conn::PICKUP, 100_000_000_000)
        };
        let value = FlowState {
            real_id: 1,
            service_id: 0,
            created_ns: now - idle,
            seen_ns: now - idle,
            state: state.into(),
        };
        ct.insert(key, value, 0)?;
    }
    let mut conns: Array<MapData, RealConns> = map(pin, map_names::REAL_CONNS)?.try_into()?;
    let mut c = conns.get(&1, 0)?;
    c.live.active += u64::from(live);
    conns.set(1, c, 0)?;
    Ok(())
}

/// Median time of `n` scrapes, in ms.
fn scrape_ms(ns: &Netns, n: usize) -> Result<Summary> {
    let addr: SocketAddr = METRICS.parse()?;
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        scrape::scrape(ns, addr)?;
        took.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Summary::of(&took).context("no scrapes")
}

pub fn run(
    opts: &Opts,
    xlb: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    progress.step(Section::Control, "upkeep: agent with a 1M-flow table");
    let ns = reals_ns("upk", "u")?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-bench-{}-upk", std::process::id()));
    let work = std::env::temp_dir().join(format!("xlb-bench-upk-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let path = work.join("xlb.toml");
    std::fs::write(&path, config(&pin))?;
    let result = (|| -> Result<Vec<Row>> {
        let agent = Agent::start_within(&ns, xlb, &path, &[], Duration::from_secs(60), stop)?;
        let limit = Duration::from_secs(120);
        // Ten flows: the baseline.
        fill(&pin, 10, 0)?;
        let first = last_pass(&pin)?.passes;
        let small = wait_pass(&pin, first + 2, limit, stop)?;
        let scrape_small = scrape_ms(&ns, opts.scrapes)?;
        let rss_small = rss_mib(agent.pid())?;
        progress.done(&format!(
            "10 flows: pass {:.2} ms, scrape {:.2} ms",
            small.pass_ns as f64 / 1e6,
            scrape_small.median
        ));
        progress.step(
            Section::Control,
            &format!(
                "upkeep: {} flows written, {} of them expired",
                opts.flows, opts.expired
            ),
        );
        fill(&pin, opts.flows - opts.expired - 10, opts.expired)?;
        // The next pass to start walks the full table and reaps the expired.
        let start = last_pass(&pin)?.passes + 1;
        let reaping = wait_pass(&pin, start + 1, limit, stop)?;
        ensure!(
            reaping.expired >= u64::from(opts.expired),
            "the pass reaped {} of {} expired flows",
            reaping.expired,
            opts.expired
        );
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        let mut cpu = upkeep_cpu_ms(agent.pid())?;
        let mut at = reaping.passes;
        for _ in 0..opts.passes {
            let p = wait_pass(&pin, at + 1, limit, stop)?;
            let now = upkeep_cpu_ms(agent.pid())?;
            walls.push(p.pass_ns as f64 / 1e6);
            cpus.push((now - cpu) / (p.passes - at) as f64);
            (cpu, at) = (now, p.passes);
        }
        let scrape_big = scrape_ms(&ns, opts.scrapes)?;
        let rss_big = rss_mib(agent.pid())?;
        let flows = last_pass(&pin)?.flows();
        agent.stop()?;
        let wall = Summary::of(&walls).context("no passes")?;
        let cpu = Summary::of(&cpus).context("no passes")?;
        progress.done(&format!(
            "{flows} flows: pass {:.0} ms (CPU {:.0} ms), scrape {:.2} ms, RSS {rss_big:.1} MiB",
            wall.median, cpu.median, scrape_big.median
        ));
        let million = format!("{:.2}M flows", f64::from(opts.flows) / 1e6);
        Ok(vec![
            Row::measured(
                Section::Control,
                &format!("upkeep pass over {million}, expiring {}", opts.expired),
                "ms",
                Summary::of(&[reaping.pass_ns as f64 / 1e6]).expect("one value"),
            )
            .method("wall time, pauses included (paced to 1/4 CPU)"),
            Row::measured(
                Section::Control,
                &format!("upkeep pass over {million}"),
                "ms",
                wall,
            )
            .method(format!(
                "wall time, pauses included; {} passes",
                walls.len()
            )),
            Row::measured(
                Section::Control,
                &format!("upkeep CPU per pass over {million}"),
                "ms",
                cpu,
            )
            .method("the xlb-upkeep thread's user + system time"),
            Row::measured(
                Section::Control,
                &format!("scrape with {million}"),
                "ms",
                scrape_big,
            )
            .method(format!("{} scrapes", opts.scrapes))
            .ratio_to("10 flows", Some(scrape_small.median)),
            Row::measured(Section::Control, "scrape with 10 flows", "ms", scrape_small)
                .method(format!("{} scrapes", opts.scrapes)),
            Row::measured(
                Section::Control,
                &format!("agent RSS with {million}"),
                "MiB",
                Summary::of(&[rss_big]).expect("one value"),
            )
            .ratio_to("10 flows", Some(rss_small)),
        ])
    })();
    remove_pin_dir(&pin);
    let _ = std::fs::remove_dir_all(&work);
    result
}
