//! Control-plane figures: Maglev table build time and disruption (the
//! lb-userspace bench target `maglev`), the agent applying a large config
//! (time from start to maps ready, its resident memory once applied, and the
//! time it takes to apply one real's health change in that config), a pass
//! over the next hops of 25,000 reals (start-up and refresh, with the
//! neighbour table dumps each made), the agent's load under 10,000 health
//! checks (`checks_load.rs`), and the flow table's upkeep over 1M flows
//! (`upkeep.rs`).

use super::{
    Progress, checks_load,
    live::remove_pin_dir,
    report::{Row, Section},
    stats::Summary,
    upkeep,
};
use crate::build::root;
use anyhow::{Context, Result, bail, ensure};
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use xlb_testbed::{agent::Agent, netns::Netns, procfs::rss_mib};

pub struct Opts {
    /// Maglev builds.
    pub runs: usize,
    /// The configs the agent applies, smallest first.
    pub apply: Vec<ApplySize>,
    /// Health changes timed in each applied config (half down, half up).
    pub flips: usize,
    /// Refresh passes over the next hops of [`NEXT_HOP_REALS`] reals timed
    /// (one every 5 s), after the start-up pass.
    pub next_hop_refreshes: usize,
    pub checks: checks_load::Opts,
    pub upkeep: upkeep::Opts,
}

/// One apply figure: `services` services with `REALS_PER_SERVICE` reals each.
pub struct ApplySize {
    pub services: u32,
    pub starts: usize,
    /// Longest wait for one start; beyond it the figure is only a lower bound.
    pub limit: Duration,
}

pub const REALS_PER_SERVICE: u32 = 100;
/// A prime above 100 × reals per service (Maglev's 1% rule), small enough
/// that 1,000 tables stay at 40 MB.
pub const APPLY_TABLE_SIZE: u32 = 10007;

pub fn run(
    opts: &Opts,
    xlb: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    let mut rows = maglev(opts, progress)?;
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    rows.extend(apply(opts, xlb, progress, stop)?);
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    rows.extend(next_hops(opts, xlb, progress, stop)?);
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    rows.extend(checks_load::run(&opts.checks, xlb, progress, stop)?);
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    rows.extend(upkeep::run(&opts.upkeep, xlb, progress, stop)?);
    Ok(rows)
}

/// Runs the `maglev` bench target and reads its `name value` lines.
fn maglev(opts: &Opts, progress: &mut Progress) -> Result<Vec<Row>> {
    progress.step(
        Section::Control,
        "Maglev: M = 65537, 1,000 reals (cargo bench -p lb-userspace --bench maglev)",
    );
    let out = Command::new("cargo")
        .args([
            "bench",
            "-q",
            "-p",
            "lb-userspace",
            "--bench",
            "maglev",
            "--",
            "--runs",
        ])
        .arg(opts.runs.to_string())
        .current_dir(root())
        .output()
        .context("running cargo bench")?;
    ensure!(
        out.status.success(),
        "cargo bench --bench maglev failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures = parse_figures(&String::from_utf8_lossy(&out.stdout));
    let get = |k: &str| {
        figures
            .get(k)
            .with_context(|| format!("the maglev bench printed no {k}"))
    };
    let build = Summary::of(get("build_ms")?).context("no build times")?;
    let moved = get("moved_share")?[0] * 100.0;
    let minimum = get("minimum_share")?[0] * 100.0;
    progress.done(&format!(
        "{:.2} ms per build; {moved:.2}% of slots moved (minimum {minimum:.2}%)",
        build.median
    ));
    Ok(vec![
        Row::measured(
            Section::Control,
            "Maglev build, M=65537, 1,000 reals",
            "ms",
            build,
        )
        .method(format!("{} builds, weights 1", opts.runs)),
        Row::measured(
            Section::Control,
            "Maglev slots moved when 1 of 1,000 leaves",
            "%",
            Summary::of(&[moved]).expect("one value"),
        )
        .method("M=65537")
        .ratio_to("minimum (the leaver's slots)", Some(minimum)),
    ])
}

/// `name value` lines to name → values (in order).
fn parse_figures(text: &str) -> BTreeMap<String, Vec<f64>> {
    let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.trim().split_once(' ')
            && let Ok(v) = v.trim().parse::<f64>()
        {
            m.entry(k.to_string()).or_default().push(v);
        }
    }
    m
}

/// Where the health check of the first real of the first service connects
/// (a listener the bench opens and closes on the namespace's loopback).
const FLIP_PORT: u16 = 9100;

/// The agent config: `services` TCP services on 10.203.x.y:80, each with the
/// same 100 reals 10.202.0.1..=100 reached through `a0`. The first real of
/// the first service has a TCP check (every second, no retry) on
/// 127.0.0.1:[`FLIP_PORT`], so the bench can take it down and up again.
fn apply_config(services: u32, pin: &Path) -> String {
    let mut s = format!(
        "# Written by `cargo xtask bench`.\n[dataplane]\ninterfaces = [\"a0\"]\nxdp_mode = \"native\"\n\
         pin_path = \"{}\"\nmaglev_table_size = {APPLY_TABLE_SIZE}\nmax_services = {}\n\
         max_reals = {}\nconntrack_size = 65536\n",
        pin.display(),
        services.next_power_of_two(),
        (services * REALS_PER_SERVICE + 1).next_power_of_two(),
    );
    for i in 0..services {
        let _ = write!(
            s,
            "\n[[service]]\nvip = \"10.203.{}.{}\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"mh\"\nmethod = \"dr\"\n",
            i / 250,
            i % 250 + 1
        );
        if i == 0 {
            s.push_str("delay_loop = 1\n");
        }
        for r in 1..=REALS_PER_SERVICE {
            let _ = write!(
                s,
                "[[service.real]]\naddress = \"10.202.0.{r}\"\nweight = 1\n"
            );
            if i == 0 && r == 1 {
                let _ = write!(
                    s,
                    "[[service.real.check]]\ntype = \"tcp\"\nconnect_ip = \"127.0.0.1\"\n\
                     connect_port = {FLIP_PORT}\nconnect_timeout = 1\nretry = 0\n"
                );
            }
        }
    }
    s
}

/// The listener that keeps the checked real up while it is open.
fn flip_listener(ns: &Netns) -> Result<TcpListener> {
    let l = ns.enter(|| TcpListener::bind(("127.0.0.1", FLIP_PORT)))??;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The line the agent logs once the data plane follows a health change,
/// with `took_us=` (recomposing and writing the maps).
const HEALTH_APPLIED: &str = "real server health changed: data plane updated";

/// `took_us=N` of a log line, in milliseconds.
fn took_ms(line: &str) -> Option<f64> {
    let v = line.split("took_us=").nth(1)?.split_whitespace().next()?;
    Some(v.parse::<f64>().ok()? / 1e3)
}

/// Takes the checked real down (its listener closes) and up again (it
/// reopens), `flips` changes in all, and reads from the agent's log how
/// long each took to apply. Each change waits at most 10 s.
fn health_changes(
    agent: &Agent,
    ns: &Netns,
    listener: TcpListener,
    flips: usize,
    stop: &AtomicBool,
) -> Result<Vec<f64>> {
    let applied = || {
        agent
            .log()
            .iter()
            .filter(|l| l.contains(HEALTH_APPLIED))
            .count()
    };
    let mut listener = Some(listener);
    let mut took = Vec::new();
    for _ in 0..flips {
        let before = applied();
        listener = match listener {
            Some(_) => None,
            None => Some(flip_listener(ns)?),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while applied() == before {
            ensure!(
                Instant::now() < deadline,
                "the agent applied no health change within 10 s"
            );
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            // Accepted connections free the backlog; the check only connects.
            while let Some(Ok(_)) = listener.as_ref().map(TcpListener::accept) {}
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = agent.log();
        let line = log
            .iter()
            .rfind(|l| l.contains(HEALTH_APPLIED))
            .context("no health line")?;
        took.push(took_ms(line).with_context(|| format!("no took_us in {line:?}"))?);
    }
    Ok(took)
}

/// A namespace where the agent's interface `<dev>0` (with a veth peer
/// `<dev>1`) reaches the reals 10.202.0.1 to 10.202.0.`REALS_PER_SERVICE`
/// through permanent neighbours, so no figure waits on ARP and every real
/// is scheduled.
pub fn reals_ns(tag: &str, dev: &str) -> Result<Netns> {
    let ns = Netns::create(tag)?;
    let (agent_dev, peer_dev) = (format!("{dev}0"), format!("{dev}1"));
    ns.run(
        "ip",
        &[
            "link", "add", &agent_dev, "type", "veth", "peer", "name", &peer_dev,
        ],
    )?;
    for d in ["lo", &agent_dev, &peer_dev] {
        ns.run("ip", &["link", "set", d, "up"])?;
    }
    ns.run("ip", &["addr", "add", "10.202.0.254/24", "dev", &agent_dev])?;
    let batch = std::env::temp_dir().join(format!(
        "xlb-bench-neigh-{}-{tag}.batch",
        std::process::id()
    ));
    let mut cmds = String::new();
    for r in 1..=REALS_PER_SERVICE {
        let _ = writeln!(
            cmds,
            "neigh replace 10.202.0.{r} lladdr 02:c0:00:00:00:{r:02x} dev {agent_dev} nud permanent"
        );
    }
    std::fs::write(&batch, cmds)?;
    let added = ns.run("ip", &["-batch", &batch.to_string_lossy()]);
    let _ = std::fs::remove_file(&batch);
    added?;
    Ok(ns)
}

/// The apply figures for every size in `opts.apply`, in one namespace.
fn apply(opts: &Opts, xlb: &Path, progress: &mut Progress, stop: &AtomicBool) -> Result<Vec<Row>> {
    progress.step(
        Section::Control,
        "apply: namespace with 100 reals' neighbours",
    );
    let ns = reals_ns("ctl", "a")?;
    let work = std::env::temp_dir().join(format!("xlb-bench-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-bench-{}-ctl", std::process::id()));
    let result = (|| -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for size in &opts.apply {
            rows.extend(apply_size(
                size, opts.flips, &ns, xlb, &work, &pin, progress, stop,
            )?);
        }
        Ok(rows)
    })();
    remove_pin_dir(&pin);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Starts the agent `size.starts` times on a config of `size.services`
/// services; a start that is not forwarding within `size.limit` ends the
/// size with a lower bound instead of a figure. The last start also times
/// `flips` health changes.
#[allow(clippy::too_many_arguments)]
fn apply_size(
    size: &ApplySize,
    flips: usize,
    ns: &Netns,
    xlb: &Path,
    work: &Path,
    pin: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    let what = format!("{} services x {REALS_PER_SERVICE} reals", size.services);
    let how = format!("maglev_table_size {APPLY_TABLE_SIZE}");
    let config = work.join(format!("apply-{}.toml", size.services));
    std::fs::write(&config, apply_config(size.services, pin))?;
    let (mut secs, mut rss, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    // Open from the start, so the checked real starts and stays up.
    let mut listener = Some(flip_listener(ns)?);
    for start in 1..=size.starts {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        progress.step(
            Section::Control,
            &format!("apply {what} ({how}): agent start {start}/{}", size.starts),
        );
        let t = Instant::now();
        let agent = Agent::start_within(ns, xlb, &config, &[], size.limit, stop);
        let elapsed = t.elapsed();
        let agent = match agent {
            Ok(a) => a,
            Err(e) if elapsed >= size.limit && !stop.load(Ordering::SeqCst) => {
                remove_pin_dir(pin);
                progress.done(&format!(
                    "not forwarding after {:.0} s: {e:#}",
                    elapsed.as_secs_f64()
                ));
                let why = format!(
                    "not forwarding after {:.0} s (limit)",
                    size.limit.as_secs_f64()
                );
                return Ok(vec![
                    Row::not_measured(
                        Section::Control,
                        &format!("apply {what}, start to maps ready"),
                        "s",
                        &why,
                    )
                    .method(how),
                ]);
            }
            Err(e) => return Err(e),
        };
        secs.push(elapsed.as_secs_f64());
        rss.push(rss_mib(agent.pid())?);
        if start == size.starts
            && flips > 0
            && let Some(l) = listener.take()
        {
            changes = health_changes(&agent, ns, l, flips, stop)?;
            progress.done(&format!(
                "{} health changes applied in {:.2} ms (median)",
                changes.len(),
                Summary::of(&changes).map_or(0.0, |s| s.median)
            ));
        }
        agent.stop()?;
        remove_pin_dir(pin);
        progress.done(&format!(
            "{:.2} s to forwarding, {:.1} MiB RSS",
            secs[secs.len() - 1],
            rss[rss.len() - 1]
        ));
    }
    let mut rows = vec![
        Row::measured(
            Section::Control,
            &format!("apply {what}, start to maps ready"),
            "s",
            Summary::of(&secs).context("no starts")?,
        )
        .method(format!("{how}; {} agent starts", size.starts)),
        Row::measured(
            Section::Control,
            &format!("agent RSS after applying {what}"),
            "MiB",
            Summary::of(&rss).context("no starts")?,
        )
        .method(how.clone()),
    ];
    if let Some(summary) = Summary::of(&changes) {
        rows.push(
            Row::measured(
                Section::Control,
                &format!("apply one health change, {what}"),
                "ms",
                summary,
            )
            .method(format!(
                "{how}; {} changes of one real (down, up), verdict to maps written",
                changes.len()
            )),
        );
    }
    Ok(rows)
}

/// Reals whose next hops the agent resolves in [`next_hops`].
pub const NEXT_HOP_REALS: u32 = 25_000;
const NEXT_HOP_METRICS: &str = "127.0.0.1:9477";

/// Real `n` of the next-hop figure: 10.64.0.1 onwards, 250 per /24.
fn next_hop_real(n: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(
        10,
        64 + (n / 62_500) as u8,
        (n / 250 % 250) as u8,
        (n % 250 + 1) as u8,
    )
}

/// The next-hop config: [`NEXT_HOP_REALS`] distinct reals, 100 per service,
/// reached through `n0`.
fn next_hop_config(pin: &Path) -> String {
    let services = NEXT_HOP_REALS.div_ceil(REALS_PER_SERVICE);
    let mut s = format!(
        "# Written by `cargo xtask bench`.\n[dataplane]\ninterfaces = [\"n0\"]\nxdp_mode = \"generic\"\n\
         pin_path = \"{}\"\nmax_services = {}\nmax_reals = {}\nconntrack_size = 65536\n\n\
         [metrics]\nlisten = \"{NEXT_HOP_METRICS}\"\n",
        pin.display(),
        services.next_power_of_two(),
        (NEXT_HOP_REALS + 1).next_power_of_two(),
    );
    for i in 0..services {
        let _ = write!(
            s,
            "\n[[service]]\nvip = \"10.203.{}.{}\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\n",
            i / 250,
            i % 250 + 1
        );
        for r in i * REALS_PER_SERVICE..((i + 1) * REALS_PER_SERVICE).min(NEXT_HOP_REALS) {
            let _ = write!(s, "[[service.real]]\naddress = \"{}\"\n", next_hop_real(r));
        }
    }
    s
}

/// The agent's next-hop counters: passes, neighbour dumps, last pass in ms.
fn next_hop_counters(ns: &Netns) -> Result<(u64, u64, f64)> {
    let m = xlb_testbed::scrape::scrape(ns, NEXT_HOP_METRICS.parse()?)?;
    let get = |k: &str| {
        m.get(k)
            .copied()
            .with_context(|| format!("no {k} in the metrics"))
    };
    Ok((
        get("xlb_next_hop_passes_total")? as u64,
        get("xlb_neighbour_dumps_total")? as u64,
        get("xlb_next_hop_last_pass_seconds")? * 1e3,
    ))
}

/// One agent resolving the next hops of [`NEXT_HOP_REALS`] reals, each with
/// a permanent neighbour entry: the start-up pass, then
/// `opts.next_hop_refreshes` refresh passes, each timed by the agent
/// (`xlb_next_hop_last_pass_seconds`) with the neighbour dumps it made.
fn next_hops(
    opts: &Opts,
    xlb: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    let what = format!("next hops of {NEXT_HOP_REALS} reals");
    progress.step(
        Section::Control,
        &format!("{what}: namespace with their neighbour entries"),
    );
    let ns = Netns::create("hops")?;
    ns.run(
        "ip",
        &["link", "add", "n0", "type", "veth", "peer", "name", "n1"],
    )?;
    for d in ["lo", "n0", "n1"] {
        ns.run("ip", &["link", "set", d, "up"])?;
    }
    ns.run("ip", &["addr", "add", "10.64.255.254/15", "dev", "n0"])?;
    let work = std::env::temp_dir().join(format!("xlb-bench-hops-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-bench-{}-hops", std::process::id()));
    let result = (|| -> Result<Vec<Row>> {
        let mut batch = String::new();
        for n in 0..NEXT_HOP_REALS {
            let _ = writeln!(
                batch,
                "neigh replace {} lladdr 02:64:00:00:{:02x}:{:02x} dev n0 nud permanent",
                next_hop_real(n),
                n / 256 % 256,
                n % 256
            );
        }
        let batch_file = work.join("neigh.batch");
        std::fs::write(&batch_file, batch)?;
        ns.run("ip", &["-batch", &batch_file.to_string_lossy()])?;
        let config = work.join("hops.toml");
        std::fs::write(&config, next_hop_config(&pin))?;
        progress.step(Section::Control, &format!("{what}: agent start"));
        let agent = Agent::start_within(&ns, xlb, &config, &[], Duration::from_secs(300), stop)?;
        let (passes, dumps, start_ms) = next_hop_counters(&ns)?;
        ensure!(passes == 1, "{passes} passes before the first refresh");
        progress.done(&format!(
            "start-up pass {start_ms:.0} ms, {dumps} neighbour dumps"
        ));
        let mut refresh_ms = Vec::new();
        let (mut seen, mut refresh_dumps) = (passes, 0);
        let deadline =
            Instant::now() + Duration::from_secs(10 * opts.next_hop_refreshes as u64 + 30);
        while refresh_ms.len() < opts.next_hop_refreshes {
            ensure!(
                Instant::now() < deadline,
                "the agent made no refresh pass in time"
            );
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            std::thread::sleep(Duration::from_millis(250));
            let (p, d, ms) = next_hop_counters(&ns)?;
            if p > seen {
                // One pass per sample: refreshes are 5 s apart.
                refresh_ms.push(ms);
                refresh_dumps = d - dumps;
                seen = p;
            }
        }
        let refreshes = seen - passes;
        progress.done(&format!(
            "{} refresh passes, {:.0} ms median, {refresh_dumps} neighbour dumps",
            refresh_ms.len(),
            Summary::of(&refresh_ms).map_or(0.0, |s| s.median)
        ));
        agent.stop()?;
        Ok(vec![
            Row::measured(
                Section::Control,
                &format!("{what}, start-up pass"),
                "ms",
                Summary::of(&[start_ms]).expect("one value"),
            )
            .method(format!(
                "permanent neighbour entries; {dumps} neighbour table dump(s); routes looked up per real, 64 in flight"
            )),
            Row::measured(
                Section::Control,
                &format!("{what}, refresh pass"),
                "ms",
                Summary::of(&refresh_ms).context("no refresh")?,
            )
            .method(format!(
                "{refreshes} refreshes (every 5 s), {refresh_dumps} neighbour table dumps"
            )),
        ])
    })();
    remove_pin_dir(&pin);
    let _ = std::fs::remove_dir_all(&work);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_parsed_by_name_in_order() {
        let m = parse_figures("build_ms 2.5\nnoise\nbuild_ms 3\nmoved_share 0.007\n");
        assert_eq!(m["build_ms"], vec![2.5, 3.0]);
        assert_eq!(m["moved_share"], vec![0.007]);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn took_is_read_from_the_log_line() {
        let line = "2026-11-22T10:00:00.123456Z  INFO xlb::agent: real server health changed: data plane updated took_us=1234 services=1";
        assert_eq!(took_ms(line), Some(1.234));
        assert_eq!(took_ms("data plane updated"), None);
    }

    #[test]
    fn next_hop_config_has_every_real_once() {
        let c = next_hop_config(Path::new("/sys/fs/bpf/x"));
        assert_eq!(
            c.matches("[[service.real]]").count(),
            NEXT_HOP_REALS as usize
        );
        let reals: std::collections::BTreeSet<_> = (0..NEXT_HOP_REALS).map(next_hop_real).collect();
        assert_eq!(reals.len(), NEXT_HOP_REALS as usize);
        assert!(
            reals
                .iter()
                .all(|a| a.octets()[1] < 66 && a.octets()[3] != 0)
        );
    }

    #[test]
    fn apply_config_has_every_service_and_real() {
        let c = apply_config(3, Path::new("/sys/fs/bpf/x"));
        assert_eq!(c.matches("[[service]]").count(), 3);
        assert_eq!(c.matches("[[service.real]]").count(), 300);
        assert!(c.contains("max_services = 4\n"));
        assert!(c.contains("max_reals = 512\n"));
        assert!(c.contains("vip = \"10.203.0.3\""));
        assert_eq!(c.matches("[[service.real.check]]").count(), 1);
        assert_eq!(c.matches("delay_loop = 1\n").count(), 1);
    }
}
