//! The agent's load under 10,000 health checks: 100 services × 100 reals,
//! each real with a TCP_CHECK every second (delay_loop 1 s) against
//! listeners the bench runs on the loopback of the agent's namespace (one
//! port per service, one 127.0.r.1 address per real, so no two checks share
//! a connection's addresses). Measured over bounded windows once the checks
//! run: the agent's CPU time (`/proc/<pid>/stat` utime + stime) per second
//! of wall time, its resident memory (`VmRSS`), and how many connections
//! the listeners accepted, which shows the checks ran at the rate asked.

use super::{
    Progress,
    control::{REALS_PER_SERVICE, reals_ns},
    live::remove_pin_dir,
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, bail};
use std::{
    fmt::Write as _,
    io::{ErrorKind, Read},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    procfs::{cpu_seconds, rss_mib},
};

pub struct Opts {
    /// Windows measured, each `window` long, after `warmup`.
    pub windows: usize,
    pub window: Duration,
    pub warmup: Duration,
}

const SERVICES: u32 = 100;
const REALS: u32 = REALS_PER_SERVICE;
/// The listener of service `s` is on port `BASE_PORT + s`.
const BASE_PORT: u16 = 10000;
/// Longest wait for the agent to start forwarding.
const START_LIMIT: Duration = Duration::from_secs(120);

/// 10,000 TCP-checked reals, reachable through the namespace's permanent
/// neighbours (so they are scheduled as in production); the checks
/// themselves connect to `connect_ip` on loopback.
fn config(pin: &Path) -> String {
    let mut s = format!(
        "# Written by `cargo xtask bench`.\n[dataplane]\ninterfaces = [\"c0\"]\nxdp_mode = \"generic\"\n\
         pin_path = \"{}\"\nmaglev_table_size = 1021\nmax_services = 128\nmax_reals = 16384\n",
        pin.display()
    );
    for i in 0..SERVICES {
        let _ = write!(
            s,
            "\n[[service]]\nvip = \"10.203.0.{}\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 1\n",
            i + 1
        );
        for r in 0..REALS {
            let _ = write!(
                s,
                "[[service.real]]\naddress = \"10.202.0.{}\"\n[[service.real.check]]\ntype = \"tcp\"\n\
                 connect_ip = \"127.0.{r}.1\"\nconnect_port = {}\nconnect_timeout = 2\n",
                r + 1,
                BASE_PORT + i as u16
            );
        }
    }
    s
}

/// Accepts on every listener until `stop`. Each connection is held until
/// the check closes its side, then reset: closing first could reset a
/// connect the agent has not yet seen complete (a false failure), and a
/// plain close would leave 10,000 TIME_WAIT sockets a second.
fn acceptor(
    listeners: Vec<TcpListener>,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let mut got = 0;
            for l in &listeners {
                while let Ok((conn, _)) = l.accept() {
                    if conn.set_nonblocking(true).is_ok() {
                        held.push(conn);
                    }
                    got += 1;
                }
            }
            accepted.fetch_add(got, Ordering::Relaxed);
            let before = held.len();
            held.retain(|c| match (&*c).read(&mut [0; 64]) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                _ => {
                    reset_on_close(c);
                    false
                }
            });
            if got == 0 && held.len() == before {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

/// Makes closing `conn` send a reset instead of a FIN (no TIME_WAIT).
fn reset_on_close(conn: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a correctly sized value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

pub fn run(
    opts: &Opts,
    xlb: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    progress.step(
        Section::Control,
        "checks: namespace with 100 listeners for 10,000 TCP checks",
    );
    let ns = reals_ns("chk", "c")?;
    let listeners = (0..SERVICES as u16)
        .map(|i| {
            let l = ns.enter(|| TcpListener::bind(("0.0.0.0", BASE_PORT + i)))??;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .collect::<Result<Vec<_>>>()?;
    let accepted = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let thread = acceptor(listeners, accepted.clone(), done.clone());
    let work = std::env::temp_dir().join(format!("xlb-bench-chk-{}", std::process::id()));
    let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-bench-{}-chk", std::process::id()));
    let result = (|| -> Result<Vec<Row>> {
        std::fs::create_dir_all(&work)?;
        let path = work.join("checks.toml");
        std::fs::write(&path, config(&pin))?;
        let agent = Agent::start_within(&ns, xlb, &path, &[], START_LIMIT, stop)?;
        let rows = measure(opts, &agent, &accepted, progress, stop)?;
        // Slow to stop under this load is a finding, not a failed bench.
        Ok(match agent.stop() {
            Ok(()) => rows,
            Err(e) => {
                progress.done(&format!("stopping the agent: {e:#}"));
                let note = format!("; stopping: {e:#}");
                rows.into_iter()
                    .map(|r| {
                        let m = r.method.clone() + &note;
                        r.method(m)
                    })
                    .collect()
            }
        })
    })();
    done.store(true, Ordering::SeqCst);
    let _ = thread.join();
    remove_pin_dir(&pin);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(
    opts: &Opts,
    agent: &Agent,
    accepted: &AtomicU64,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    let pid = agent.pid();
    progress.step(
        Section::Control,
        &format!(
            "checks: {} windows of {:.0} s after {:.0} s of warm-up",
            opts.windows,
            opts.window.as_secs_f64(),
            opts.warmup.as_secs_f64()
        ),
    );
    std::thread::sleep(opts.warmup);
    let changes_before = verdict_changes(agent);
    let (mut cpu, mut rss, mut rate) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.windows {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let (t0, c0, a0) = (
            Instant::now(),
            cpu_seconds(pid)?,
            accepted.load(Ordering::Relaxed),
        );
        std::thread::sleep(opts.window);
        let wall = t0.elapsed().as_secs_f64();
        cpu.push((cpu_seconds(pid)? - c0) / wall * 100.0);
        rate.push((accepted.load(Ordering::Relaxed) - a0) as f64 / wall);
        rss.push(rss_mib(pid)?);
    }
    let changes = verdict_changes(agent) - changes_before;
    let cpu = Summary::of(&cpu).context("no windows")?;
    let rss = Summary::of(&rss).context("no windows")?;
    let rate = Summary::of(&rate).context("no windows")?;
    progress.done(&format!(
        "{:.1}% CPU, {:.1} MiB RSS, {:.0} checks/s answered, {changes} verdict changes",
        cpu.median, rss.median, rate.median
    ));
    let method = format!(
        "{SERVICES} services x {REALS} reals, TCP_CHECK to loopback listeners; {} windows of {:.0} s; \
         {:.0} checks/s answered, {changes} verdict changes",
        opts.windows,
        opts.window.as_secs_f64(),
        rate.median
    );
    Ok(vec![
        Row::measured(
            Section::Control,
            "agent CPU, 10,000 TCP checks at delay_loop 1 s",
            "% core",
            cpu,
        )
        .method(method.clone()),
        Row::measured(
            Section::Control,
            "agent RSS, 10,000 TCP checks at delay_loop 1 s",
            "MiB",
            rss,
        )
        .method(method),
    ])
}

/// How many verdict changes the agent logged so far (none is expected:
/// every listener answers; some mean the checks were starved).
fn verdict_changes(agent: &Agent) -> usize {
    agent
        .log()
        .iter()
        .filter(|l| l.contains("real server health changed") && l.contains("verdict"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_ten_thousand_checks_on_distinct_targets() {
        let c = config(Path::new("/sys/fs/bpf/x"));
        assert_eq!(c.matches("[[service]]").count(), 100);
        assert_eq!(c.matches("[[service.real.check]]").count(), 10_000);
        assert!(c.contains("connect_ip = \"127.0.99.1\"\nconnect_port = 10099\n"));
        assert_eq!(c.matches("delay_loop = 1\n").count(), 100);
    }
}
