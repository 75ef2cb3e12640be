//! The stress lab: does VRRP keep its promises while the agent is loaded,
//! attacked and reloaded? A VRRPv3 pair at 100 ms adverts on the failover
//! lab (`failover::FailoverLab`: Master priority 150 in director 0, Backup
//! 100 in director 1, DR `mh` over three reals) plus an observer host on
//! the bridge, and loads aimed at the Master, each switchable:
//!
//! - a spoofed SYN flood that fills its flow table (`flood`);
//! - scrapers and idle connections on its metrics port (`metrics_load`);
//! - valid lower-priority adverts, crafted in the observer, or keepalived
//!   there as a peer that cannot hear the group (`adverts`);
//! - a MISC_CHECK script that never returns (`misc_timeout` bounds it);
//! - SIGHUP every second (`sighup`).
//!
//! Figures (`Figures`), from the wire where they can be: the advert
//! watcher on the observer's `eth0` (largest gap between the Master's
//! adverts, time both directors advertised), the directors' VIPs polled
//! (time both held it), their VRRP status files and logs (transitions),
//! SIGTERM to exit, scrape times, the Master's CPU, memory and descriptors.
//! Shared by `tests/tests/stress_netns.rs` (protocol facts asserted) and
//! `cargo xtask bench --only stress` (figures printed). Everything runs in
//! the lab's namespaces, every load is bounded in count and time, and
//! everything stops on drop, on panic too.

mod adverts;
mod figures;
mod flood;
mod metrics_load;
mod sighup;
mod watch;

pub use sighup::Reload;

use crate::{
    advert_watch::AdvertWatch,
    agent::Agent,
    failover::{self, BACKUP_PRIORITY, FailoverLab, MASTER_PRIORITY, VRID, Vrrp},
    netns::Netns,
    procfs,
    vrrp::{Keepalived, TempDir, temp_dir},
};
use anyhow::{Context, Result, bail, ensure};
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use lb_common::{FlowKey, FlowState, map_names};
use metrics_load::{Idle, Scrapers};
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// The pair's VRRP: version 3, 100 ms adverts.
pub const VRRP: Vrrp = Vrrp {
    version: 3,
    advert_int: 0.1,
};
/// The agent's default `conntrack_size` (1,048,576 flows).
pub const DEFAULT_CONNTRACK: u32 = lb_common::defaults::CONNTRACK_SIZE;
/// The soft descriptor limit the agents run with: what a systemd service
/// gets without `LimitNOFILE` (set with prlimit once each agent started).
pub const AGENT_NOFILE: u64 = 1024;
/// The observer on the lab's bridge: crafts adverts, hosts keepalived,
/// watches the wire.
const OBSERVER: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 200);
/// Priorities of the crafted adverts and of the keepalived peer (below the
/// Backup's, so only the Master answers them), distinct to tell them apart.
const CRAFTED_PRIORITY: u8 = 50;
const PEER_PRIORITY: u8 = 60;
/// The metrics endpoint, on the director's loopback (the default address).
const METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9477);
/// A service whose one real (real1's HTTP server) has a TCP_CHECK every
/// second: a verdict of down means the checks were starved or the agent
/// ran out of descriptors.
const CHECKED_PORT: u16 = 8080;
/// The service of the hung MISC_CHECK.
const MISC_PORT: u16 = 8081;
const MISC_TIMEOUT: u32 = 3;
/// The agent's log line for a VRRP state change.
const STATE_CHANGE: &str = "VRRP state change";
/// Without scrapers as a load, one scrape this often measures scrape time.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(15);
/// A liveness bound on SIGTERM: the agent is killed after it.
pub const SIGTERM_LIMIT: Duration = Duration::from_secs(30);
/// How long the idle connections are given to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
static SEQ: AtomicU32 = AtomicU32::new(0);

/// The loads of one run; `Loads::default()` is none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loads {
    /// A spoofed SYN flood fills the Master's flow table.
    pub flood: bool,
    /// Concurrent scrapers on the Master's metrics port.
    pub scrapers: usize,
    /// Idle connections on it.
    pub idle: usize,
    /// Crafted lower-priority adverts: how many a second, and in all
    /// (bounded by the run's length too).
    pub adverts: Option<(u32, u64)>,
    /// keepalived as a deaf peer in the group, at a lower priority.
    pub keepalived_peer: bool,
    /// A MISC_CHECK whose script sleeps forever.
    pub hung_check: bool,
    /// SIGHUP to the Master every second.
    pub sighup: Option<Reload>,
}

impl Loads {
    /// What the loads are, in a few words (progress lines, test output).
    pub fn describe(&self, conntrack: u32) -> String {
        let mut parts = Vec::new();
        if self.flood {
            parts.push(format!("SYN flood filling {conntrack} flows"));
        }
        if self.scrapers > 0 {
            parts.push(format!("{} scrapers", self.scrapers));
        }
        if self.idle > 0 {
            parts.push(format!("{} idle metrics connections", self.idle));
        }
        if let Some((rate, _)) = self.adverts {
            parts.push(format!("{rate}/s priority-{CRAFTED_PRIORITY} adverts"));
        }
        if self.keepalived_peer {
            parts.push(format!("keepalived peer at priority {PEER_PRIORITY}"));
        }
        if self.hung_check {
            parts.push("hung MISC_CHECK".to_string());
        }
        if let Some(r) = self.sighup {
            parts.push(format!("SIGHUP every second ({})", r.name()));
        }
        if parts.is_empty() {
            "no load".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// One run: the loads, sizes and how long.
#[derive(Clone, Debug)]
pub struct Plan {
    pub loads: Loads,
    /// The directors' `conntrack_size`; `None`: the agent's default.
    pub conntrack_size: Option<u32>,
    /// How long the loads run at full strength (after the flood's fill).
    pub hold: Duration,
    /// Bound on the flood's fill.
    pub fill_limit: Duration,
    /// SYNs a second once the table is full (the LRU keeps it full).
    pub sustain_rate: u64,
}

impl Plan {
    pub fn conntrack(&self) -> u32 {
        self.conntrack_size.unwrap_or(DEFAULT_CONNTRACK)
    }

    /// Longest the loads can run: fill and hold, with room to spare.
    fn limit(&self) -> Duration {
        self.fill_limit + self.hold + Duration::from_secs(30)
    }
}

/// What one run showed. The window is from the loads' start to the
/// Master's SIGTERM.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub window: Duration,
    /// The Master's adverts heard on the wire in the window, and those it
    /// counted as sent (its status file, rewritten every second, so the two
    /// agree within about ten): far more sent than heard were lost on the
    /// way, not starved in the agent.
    pub master_adverts: usize,
    pub master_adverts_sent: u64,
    /// Longest stretch of the window without one.
    pub largest_gap: Duration,
    /// VRRP state changes of the Master and of the Backup in the window:
    /// the larger of what their status files and their logs show.
    pub transitions: (u64, u64),
    /// Time both directors advertised as Master (each advert claims an
    /// interval).
    pub two_masters: Duration,
    /// Time both directors held the VIP (polled every 100 ms).
    pub two_holders: Duration,
    /// SIGTERM to the Master's exit; `None`: still running after
    /// [`SIGTERM_LIMIT`] (then killed).
    pub sigterm: Option<Duration>,
    /// Scrapes started in the window: how many, how many failed (timed out
    /// or refused), and their median and 99th percentile.
    pub scrapes: usize,
    pub scrape_failures: usize,
    pub scrape_p50: Option<Duration>,
    pub scrape_p99: Option<Duration>,
    /// The Master's CPU over the window, % of one core.
    pub cpu_percent: f64,
    /// Its peak resident memory (VmHWM at the window's end).
    pub peak_rss_mib: f64,
    /// Its most descriptors open at once, and its limit.
    pub peak_fds: usize,
    pub fd_limit: u64,
    /// Times the TCP-checked real was reported down.
    pub check_downs: usize,
    /// Flows in the Master's table once the flood's fill was sent.
    pub flows: Option<usize>,
    pub syns: u64,
    pub crafted_adverts: u64,
    /// The keepalived peer's adverts heard in the window.
    pub peer_adverts: usize,
    pub sighups: u64,
    /// Idle connections tried, and those established.
    pub idle_attempted: usize,
    pub idle_open: usize,
}

impl Figures {
    /// The figures in a few lines, for logs and assertion messages.
    pub fn describe(&self) -> String {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        let opt = |d: Option<Duration>| d.map_or("-".to_string(), ms);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "window {}: {} Master adverts heard ({} sent), largest gap {}; transitions Master {} \
             Backup {}; two Masters {} on the wire, two VIP holders {}",
            ms(self.window),
            self.master_adverts,
            self.master_adverts_sent,
            ms(self.largest_gap),
            self.transitions.0,
            self.transitions.1,
            ms(self.two_masters),
            ms(self.two_holders)
        );
        let _ = writeln!(
            s,
            "SIGTERM to exit {}; scrapes {} ({} failed) p50 {} p99 {}; Master CPU {:.0}% of a core, \
             peak RSS {:.1} MiB, peak {} of {} descriptors; TCP-checked real down {} times",
            self.sigterm
                .map_or(format!("over {SIGTERM_LIMIT:?} (killed)"), ms),
            self.scrapes,
            self.scrape_failures,
            opt(self.scrape_p50),
            opt(self.scrape_p99),
            self.cpu_percent,
            self.peak_rss_mib,
            self.peak_fds,
            self.fd_limit,
            self.check_downs
        );
        let _ = write!(
            s,
            "loads: {} SYNs, flows in the table {}, {} crafted adverts, {} peer adverts heard, \
             {} SIGHUPs, {} of {} idle connections open",
            self.syns,
            self.flows.map_or("-".to_string(), |f| f.to_string()),
            self.crafted_adverts,
            self.peer_adverts,
            self.sighups,
            self.idle_open,
            self.idle_attempted
        );
        s
    }
}

/// The failover lab, an observer on its bridge, and a directory for configs.
pub struct StressLab {
    pub fl: FailoverLab,
    pub observer: Netns,
    dir: TempDir,
}

/// An xlb director of the pair; its pins are removed on drop.
struct Director {
    index: usize,
    agent: Option<Agent>,
    pin: PathBuf,
    config: PathBuf,
    /// The config it started with, and the same with the checked real's
    /// weight changed (what a checkers-restart SIGHUP flips between).
    versions: [String; 2],
}

impl Director {
    /// Its agent's log lines from the `from`-th on.
    fn log_since(&self, from: usize) -> Vec<String> {
        let mut log = self.agent.as_ref().map(Agent::log).unwrap_or_default();
        log.drain(..from.min(log.len()));
        log
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        drop(self.agent.take());
        failover::remove_pins(&self.pin);
    }
}

impl StressLab {
    /// Builds the lab; `peer_xdp` as in `LabOptions::peer_xdp` (native
    /// XDP on veth, which the flood goes through).
    pub fn build(peer_xdp: Option<(PathBuf, String)>) -> Result<StressLab> {
        let fl = FailoverLab::build(peer_xdp)?;
        let observer = crate::lab::add_host(&fl.lab.switch, "obs", "obs")?;
        crate::lab::add_addr(&observer, "eth0", IpAddr::V4(OBSERVER), false)?;
        adverts::prepare_deaf_peer(&observer)?;
        let dir = temp_dir(&format!("stress-{}", SEQ.fetch_add(1, Ordering::Relaxed)))?;
        Ok(StressLab { fl, observer, dir })
    }

    /// Starts the pair, runs `plan`'s loads against the Master, SIGTERMs it
    /// under load, and stops everything; the figures of the run.
    pub fn run(&self, plan: &Plan, xlb: &Path, cancel: &AtomicBool) -> Result<Figures> {
        let watch = AdvertWatch::start(&self.observer, "eth0", plan.limit() * 2)?;
        let mut master = self.start(0, MASTER_PRIORITY, plan, xlb, cancel)?;
        self.fl.wait_for(
            "the Master holding the VIP",
            VRRP.takeover_limit(),
            cancel,
            || self.fl.holds_vip(0),
        )?;
        let backup = self.start(1, BACKUP_PRIORITY, plan, xlb, cancel)?;
        // Three adverts and a second: the Backup has heard the Master.
        std::thread::sleep(Duration::from_secs_f64(3.0 * VRRP.advert_int + 1.0));
        let result = self.measure(plan, &mut master, &backup, watch, cancel);
        let cleared = self.clear(master).and(self.clear(backup));
        let figures = result?;
        cleared?;
        Ok(figures)
    }

    fn start(
        &self,
        index: usize,
        priority: u8,
        plan: &Plan,
        xlb: &Path,
        cancel: &AtomicBool,
    ) -> Result<Director> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-stress-{}-{n}", std::process::id()));
        let config = self.dir.join(format!("xlb-{n}.toml"));
        let versions = [1, 2].map(|w| self.config(&pin, priority, plan, w));
        std::fs::write(&config, &versions[0])?;
        let ns = self.fl.director(index);
        let mut director = Director {
            index,
            agent: None,
            pin,
            config,
            versions,
        };
        // Large tables take a while to create.
        let ready = Duration::from_secs(60);
        let agent = Agent::start_within(ns, xlb, &director.config, &[], ready, cancel)
            .with_context(|| format!("xlb in {}", ns.name()))?;
        procfs::set_nofile(agent.pid(), AGENT_NOFILE)?;
        director.agent = Some(agent);
        Ok(director)
    }

    /// The pair's config: the failover lab's, the flow table sized, the
    /// TCP-checked service, and the hung MISC_CHECK when asked for.
    fn config(&self, pin: &Path, priority: u8, plan: &Plan, weight: u32) -> String {
        let mut text = self.fl.xlb_config(pin, priority, VRRP);
        if let Some(n) = plan.conntrack_size {
            text = text.replacen(
                "[dataplane]\n",
                &format!("[dataplane]\nconntrack_size = {n}\n"),
                1,
            );
        }
        let vip = self.fl.lab.vip;
        let real = |i: usize| self.fl.lab.reals[i].addr;
        let _ = write!(
            text,
            "\n[[service]]\nvip = \"{vip}\"\nport = {CHECKED_PORT}\nprotocol = \"tcp\"\n\
             scheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 1\n\
             [[service.real]]\naddress = \"{}\"\nport = {CHECKED_PORT}\nweight = {weight}\n\
             [[service.real.check]]\ntype = \"tcp\"\nconnect_port = {}\nconnect_timeout = 2\n",
            real(0),
            self.fl.lab.port
        );
        if plan.loads.hung_check {
            let _ = write!(
                text,
                "\n[[service]]\nvip = \"{vip}\"\nport = {MISC_PORT}\nprotocol = \"tcp\"\n\
                 scheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 1\n\
                 [[service.real]]\naddress = \"{}\"\nport = {MISC_PORT}\n\
                 [[service.real.check]]\ntype = \"misc\"\n\
                 misc_path = [\"/bin/sleep\", \"infinity\"]\nmisc_timeout = {MISC_TIMEOUT}\n",
                real(1)
            );
        }
        text
    }

    fn measure(
        &self,
        plan: &Plan,
        master: &mut Director,
        backup: &Director,
        watch: AdvertWatch,
        cancel: &AtomicBool,
    ) -> Result<Figures> {
        let pid = master.agent.as_ref().context("the Master's agent")?.pid();
        ensure!(
            self.fl.holds_vip(0) && !self.fl.holds_vip(1),
            "before the loads, the Master should hold the VIP alone"
        );
        let limit = plan.limit();
        metrics_load::make_room(plan.loads.idle + plan.loads.scrapers * 2 + 64)?;
        let names = [0, 1].map(|i| self.fl.director(i).name().to_string());
        let holders = watch::VipHolders::start(names, self.fl.lab.vip, limit)?;
        let fds = watch::PeakFds::start(pid, limit)?;
        let before = [vrrp_counts(&master.pin)?, vrrp_counts(&backup.pin)?];
        let logs_from = [master.log_since(0).len(), backup.log_since(0).len()];
        let cpu_from = procfs::cpu_seconds(pid)?;

        let from = Instant::now();
        let running = self.start_loads(plan, master)?;
        let flows = self.full_strength(plan, &running, &master.pin, cancel)?;

        // The window ends with SIGTERM to the Master, still under load.
        let to = Instant::now();
        let after = [vrrp_counts(&master.pin)?, vrrp_counts(&backup.pin)?];
        let cpu = procfs::cpu_seconds(pid)? - cpu_from;
        let peak_rss_mib = procfs::peak_rss_mib(pid)?;
        let fd_limit = procfs::nofile(pid)?.0;
        let logs = [
            master.log_since(logs_from[0]),
            backup.log_since(logs_from[1]),
        ];
        let checked_real = format!("{}:{CHECKED_PORT}", self.fl.lab.reals[0].addr);
        let check_downs = logs[0]
            .iter()
            .filter(|l| l.contains("real server down") && l.contains(&checked_real))
            .count();
        // The status file says what the agent counted, unless it could not
        // write it (out of descriptors); the log line is written to a pipe
        // already open. Either source may miss; neither invents one.
        let transitions = [0, 1].map(|i| {
            let logged = logs[i].iter().filter(|l| l.contains(STATE_CHANGE)).count() as u64;
            logged.max(after[i].transitions.saturating_sub(before[i].transitions))
        });
        let sigterm = master
            .agent
            .take()
            .context("the Master's agent")?
            .stop_within(SIGTERM_LIMIT)?;

        let done = running.stop()?;
        let scrapes: Vec<_> = done
            .scrapes
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        let peak_fds = fds.finish()?;
        let polls = holders.finish()?;
        let heard = watch.finish();

        let window = to - from;
        let mine = |i: usize| figures::master_adverts(&heard, self.fl.address(i), from, to);
        let (a, b) = (mine(0), mine(1));
        let times: Vec<Duration> = scrapes.iter().map(|s| s.took).collect();
        let in_window: Vec<_> = polls
            .into_iter()
            .filter(|p| p.0 >= from && p.0 <= to)
            .collect();
        Ok(Figures {
            window,
            master_adverts: a.len(),
            largest_gap: figures::largest_gap(&a, from, to),
            transitions: (transitions[0], transitions[1]),
            master_adverts_sent: after[0].adverts_sent.saturating_sub(before[0].adverts_sent),
            two_masters: figures::both_advertising(&a, &b, VRRP.interval()),
            two_holders: figures::both_holding(&in_window),
            sigterm,
            scrapes: scrapes.len(),
            scrape_failures: scrapes.iter().filter(|s| !s.ok).count(),
            scrape_p50: figures::quantile(&times, 0.5),
            scrape_p99: figures::quantile(&times, 0.99),
            cpu_percent: cpu / window.as_secs_f64() * 100.0,
            peak_rss_mib,
            peak_fds,
            fd_limit,
            check_downs,
            flows,
            syns: done.syns,
            crafted_adverts: done.crafted_adverts,
            peer_adverts: heard
                .iter()
                .filter(|h| {
                    h.advert.src == OBSERVER
                        && h.advert.priority == PEER_PRIORITY
                        && h.at >= from
                        && h.at <= to
                })
                .count(),
            sighups: done.sighups,
            idle_attempted: done.idle_attempted,
            idle_open: done.idle_open,
        })
    }

    /// Starts `plan`'s loads against the Master (director 0).
    fn start_loads(&self, plan: &Plan, master: &Director) -> Result<Running> {
        let (loads, limit) = (&plan.loads, plan.limit());
        let pid = master.agent.as_ref().context("the Master's agent")?.pid();
        let ns = self.fl.director(0);
        let vip = vip4(self.fl.lab.vip)?;
        let interval_cs = (VRRP.advert_int * 100.0).round() as u16;
        let idle = Idle::open(ns, METRICS, loads.idle, CONNECT_TIMEOUT)?;
        let scrapers = match loads.scrapers {
            0 => Scrapers::start(ns, METRICS, 1, PROBE_EVERY, SCRAPE_TIMEOUT, limit)?,
            n => Scrapers::start(ns, METRICS, n, Duration::ZERO, SCRAPE_TIMEOUT, limit)?,
        };
        let flood = match loads.flood {
            true => Some(self.flood(plan)?),
            false => None,
        };
        let stream = match loads.adverts {
            Some((rate, count)) => {
                let advert =
                    adverts::v3_advert(OBSERVER, VRID, CRAFTED_PRIORITY, interval_cs, &[vip]);
                Some(adverts::AdvertStream::start(
                    &self.observer,
                    OBSERVER,
                    advert,
                    rate,
                    count,
                    limit,
                )?)
            }
            None => None,
        };
        let peer = match loads.keepalived_peer {
            true => Some(adverts::deaf_keepalived(
                &self.observer,
                &self.dir,
                &format!("peer-{}", SEQ.fetch_add(1, Ordering::Relaxed)),
                VRID,
                PEER_PRIORITY,
                interval_cs,
                vip,
            )?),
            false => None,
        };
        let sighup = match loads.sighup {
            Some(reload) => Some(sighup::Sighup::start(
                pid,
                master.config.clone(),
                master.versions.clone(),
                reload,
                Duration::from_secs(1),
                limit,
            )?),
            None => None,
        };
        Ok(Running {
            idle,
            scrapers,
            flood,
            stream,
            peer,
            sighup,
        })
    }

    /// Waits for the flood's fill (the flows in the table then), then holds
    /// the loads at full strength for `plan.hold`.
    fn full_strength(
        &self,
        plan: &Plan,
        running: &Running,
        pin: &Path,
        cancel: &AtomicBool,
    ) -> Result<Option<usize>> {
        let mut flows = None;
        if let Some(f) = &running.flood {
            // A fill cut short by its limit is still measured (the figure says how full).
            let filled = self
                .fl
                .wait_for("the flood's fill", plan.fill_limit, cancel, || f.filled());
            if cancel.load(Ordering::SeqCst) {
                filled?;
            }
            flows = Some(flows_in(pin)?);
        }
        let end = Instant::now() + plan.hold;
        while Instant::now() < end {
            if cancel.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(flows)
    }

    /// The SYN flood at the Master, down its link from the switch.
    fn flood(&self, plan: &Plan) -> Result<flood::Flood> {
        let fill = u64::from(plan.conntrack()) * 11 / 10;
        flood::Flood::start(
            &self.fl.lab.switch,
            self.fl.lab.director_peer_if(),
            self.fl.director(0).mac("eth0")?,
            vip4(self.fl.lab.vip)?,
            self.fl.lab.port,
            flood::FloodPlan {
                fill,
                sustain_rate: plan.sustain_rate,
                max_frames: fill + plan.sustain_rate * plan.limit().as_secs(),
                limit: plan.limit(),
            },
        )
    }

    /// Stops a director's agent if it runs and removes what it left: the
    /// VIP, its pins.
    fn clear(&self, mut d: Director) -> Result<()> {
        if let Some(a) = d.agent.take() {
            a.stop_within(SIGTERM_LIMIT)?;
        }
        self.fl.drop_vip(d.index)
    }
}

/// The loads of one run, as started.
struct Running {
    idle: Idle,
    scrapers: Scrapers,
    flood: Option<flood::Flood>,
    stream: Option<adverts::AdvertStream>,
    peer: Option<Keepalived>,
    sighup: Option<sighup::Sighup>,
}

/// What the loads did.
struct Done {
    scrapes: Vec<metrics_load::Scrape>,
    syns: u64,
    crafted_adverts: u64,
    sighups: u64,
    idle_attempted: usize,
    idle_open: usize,
}

impl Running {
    /// Stops every load.
    fn stop(self) -> Result<Done> {
        let sighups = self.sighup.map(sighup::Sighup::finish).transpose()?;
        drop(self.peer);
        let crafted_adverts = self.stream.map(adverts::AdvertStream::finish).transpose()?;
        let syns = self.flood.map(flood::Flood::finish).transpose()?;
        Ok(Done {
            sighups: sighups.unwrap_or(0),
            crafted_adverts: crafted_adverts.unwrap_or(0),
            syns: syns.unwrap_or(0),
            scrapes: self.scrapers.finish()?,
            idle_attempted: self.idle.attempted(),
            idle_open: self.idle.opened(),
        })
    }
}

/// `ip` as IPv4 (the lab is).
fn vip4(ip: IpAddr) -> Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => bail!("the stress lab is IPv4"),
    }
}

/// How many flows the table pinned at `pin` holds (one bpf(2) call a key).
fn flows_in(pin: &Path) -> Result<usize> {
    let data = MapData::from_pin(pin.join(map_names::CONNTRACK))
        .with_context(|| format!("opening {}", pin.join(map_names::CONNTRACK).display()))?;
    let map: BpfHashMap<MapData, FlowKey, FlowState> = Map::from_map_data(data)?.try_into()?;
    Ok(map.keys().filter(Result::is_ok).count())
}

/// Instance `VI_1`'s VRRP state changes and adverts sent so far, from the
/// status file of the agent with maps pinned at `pin`
/// (`/run/xlb/vrrp-<pin>.json`, which it rewrites on every change).
fn vrrp_counts(pin: &Path) -> Result<Counts> {
    let flat = pin.to_string_lossy().trim_matches('/').replace('/', "_");
    let path = Path::new("/run/xlb").join(format!("vrrp-{flat}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    counts_of(&text, "VI_1").with_context(|| format!("no counts of VI_1 in {}", path.display()))
}

/// What the lab reads from a status file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    transitions: u64,
    adverts_sent: u64,
}

/// `instances[name = instance]`'s counts in a VRRP status file.
fn counts_of(json: &str, instance: &str) -> Option<Counts> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let i = v
        .get("instances")?
        .as_array()?
        .iter()
        .find(|i| i.get("name").and_then(|n| n.as_str()) == Some(instance))?;
    let n = |k: &str| i.get(k).and_then(serde_json::Value::as_u64);
    Some(Counts {
        transitions: n("transitions")?,
        adverts_sent: n("adverts_sent")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_the_status_file() {
        let json = r#"{"pid": 7, "instances": [
            {"name": "VI_0", "state": "BACKUP", "transitions": 9, "adverts_sent": 0},
            {"name": "VI_1", "state": "MASTER", "transitions": 2, "became_master": 1,
             "adverts_sent": 40}]}"#;
        assert_eq!(
            counts_of(json, "VI_1"),
            Some(Counts {
                transitions: 2,
                adverts_sent: 40
            })
        );
        assert_eq!(counts_of(json, "VI_2"), None);
        assert_eq!(counts_of("{", "VI_1"), None);
    }

    #[test]
    fn loads_describe_themselves() {
        assert_eq!(Loads::default().describe(DEFAULT_CONNTRACK), "no load");
        let all = Loads {
            flood: true,
            scrapers: 200,
            idle: 1000,
            adverts: Some((200, 1000)),
            keepalived_peer: false,
            hung_check: true,
            sighup: Some(Reload::Alternate),
        };
        assert_eq!(
            all.describe(DEFAULT_CONNTRACK),
            "SYN flood filling 1048576 flows, 200 scrapers, 1000 idle metrics connections, \
             200/s priority-50 adverts, hung MISC_CHECK, \
             SIGHUP every second (config unchanged and checkers restart in turn)"
        );
    }
}
