//! Failover between two directors in one VRRP group: the DR lab with a
//! standby director, both running xlb (or keepalived), a UDP prober on the
//! client that shows when replies through the VIP stop and resume, and
//! held TCP connections whose survival is counted. Shared by
//! `cargo xtask lab --failover` and the failover rows of `cargo xtask bench`.
//!
//! keepalived cannot forward here (this kernel has no IPVS): its directors
//! answer the VIP themselves, with servers bound to it in their own
//! namespace, so only the VRRP part (election, VIP move, gratuitous ARP) is
//! compared with xlb's.

use crate::{
    advert_watch::{self, AdvertWatch, Heard},
    agent::Agent,
    http::{HttpConn, HttpServer, serve_name},
    lab::{DrLab, LabMethod, LabOptions},
    netns::Netns,
    udp::{UdpServer, serve_udp_name, udp_ask},
    vrrp::{Keepalived, TempDir, temp_dir},
};
use anyhow::{Context, Result, bail};
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// The Master's and the Backup's priorities, the same for both daemons.
pub const MASTER_PRIORITY: u8 = 150;
pub const BACKUP_PRIORITY: u8 = 100;
/// The group's virtual router id.
pub const VRID: u8 = 51;
/// The UDP service the prober asks (every real answers with its name).
pub const PROBE_PORT: u16 = 7070;
/// How often the prober sends a datagram.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
static SEQ: AtomicU32 = AtomicU32::new(0);

/// VRRP version and advertisement interval, as both daemons are configured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vrrp {
    pub version: u8,
    pub advert_int: f64,
}

impl Vrrp {
    /// Generous bound for an election or a takeover: the Backup's
    /// Master_Down_Interval (3 intervals + skew) with room for slow starts.
    pub fn takeover_limit(&self) -> Duration {
        Duration::from_secs_f64(4.0 * self.advert_int + 10.0)
    }

    /// Skew_Time of a Backup with `priority`: (256 − Priority)/256 s for
    /// v2; for v3 the same share of the interval, which the wire carries in
    /// centiseconds (so it is rounded to them first, as both daemons do).
    pub fn skew(&self, priority: u8) -> Duration {
        let share = 256 - u32::from(priority);
        let base = if self.version == 2 {
            Duration::from_secs(1)
        } else {
            self.interval()
        };
        base * share / 256
    }

    /// Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time.
    pub fn master_down_interval(&self, priority: u8) -> Duration {
        self.interval() * 3 + self.skew(priority)
    }

    /// What the RFC lets the Backup wait between the Master's last advert
    /// and taking over: Master_Down_Interval after a silent death, Skew_Time
    /// after a priority-0 advert.
    pub fn expected_after_advert(&self, how: Stop) -> Duration {
        match how {
            Stop::Kill => self.master_down_interval(BACKUP_PRIORITY),
            Stop::Term => self.skew(BACKUP_PRIORITY),
        }
    }

    /// The advert interval as sent: whole seconds for v2, centiseconds for v3.
    pub fn interval(&self) -> Duration {
        if self.version == 2 {
            Duration::from_secs(self.advert_int.round() as u64)
        } else {
            Duration::from_millis((self.advert_int * 100.0).round() as u64 * 10)
        }
    }

    /// `v3 100 ms`, `v2 1 s`.
    pub fn label(&self) -> String {
        if self.advert_int < 1.0 {
            format!(
                "v{} {} ms",
                self.version,
                (self.advert_int * 1000.0).round()
            )
        } else {
            format!("v{} {} s", self.version, self.advert_int)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Xlb,
    Keepalived,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Xlb => "xlb",
            Daemon::Keepalived => "keepalived",
        }
    }
}

/// How the Master goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL of the daemon and its switch port out of the bridge at the
    /// same instant: the host dies. (A killed xlb alone leaves its XDP
    /// program forwarding and the VIP on the interface, by design, so
    /// traffic would never stop.)
    Kill,
    /// SIGTERM: the Master leaves with a priority-0 advert.
    Term,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Kill => "SIGKILL",
            Stop::Term => "SIGTERM",
        }
    }
}

/// The DR lab with two directors, reals answering TCP (HTTP) and UDP on
/// the VIP, and a directory for the daemons' configs.
pub struct FailoverLab {
    pub lab: DrLab,
    dir: TempDir,
}

/// A daemon running in director `index` (0: `lab.director`, 1: the standby).
pub struct Running {
    pub index: usize,
    process: Process,
    /// xlb's maps, removed when the director is cleared.
    pin: Option<PathBuf>,
    /// keepalived's stand-ins for a forwarder: servers on the VIP.
    _servers: Option<(HttpServer, UdpServer)>,
    isolated: bool,
}

enum Process {
    Xlb(Agent),
    Keepalived(Keepalived),
    Gone,
}

/// The group: Master first, then Backup.
pub struct Pair {
    pub master: Running,
    pub backup: Running,
}

impl FailoverLab {
    /// Builds the lab; `peer_xdp` as in [`LabOptions::peer_xdp`] (native XDP_TX on veth).
    pub fn build(peer_xdp: Option<(PathBuf, String)>) -> Result<FailoverLab> {
        let lab = DrLab::build(&LabOptions {
            weights: vec![1, 1, 1],
            peer_xdp,
            method: LabMethod::Dr,
            udp_port: Some(PROBE_PORT),
            standby_directors: 1,
            ..LabOptions::default()
        })?;
        let dir = temp_dir(&format!("failover-{}", SEQ.fetch_add(1, Ordering::Relaxed)))?;
        Ok(FailoverLab { lab, dir })
    }

    pub fn director(&self, index: usize) -> &Netns {
        match index {
            0 => &self.lab.director,
            i => &self.lab.standby[i - 1].ns,
        }
    }

    fn port(&self, index: usize) -> &str {
        match index {
            0 => self.lab.director_peer_if(),
            i => &self.lab.standby[i - 1].port,
        }
    }

    /// Director `index`'s address on `eth0`, which its adverts come from.
    pub fn address(&self, index: usize) -> IpAddr {
        match index {
            0 => self.lab.director_addr,
            i => self.lab.standby[i - 1].addr,
        }
    }

    /// Records the VRRP adverts the Backup (director 1) hears on `eth0`, for
    /// at most `limit`. Start it before the pair: then the Master's last
    /// advert is on record whenever it goes, and waiting to hear it first
    /// does not tie the moment it goes to its advert cycle.
    pub fn watch_adverts(&self, limit: Duration) -> Result<AdvertWatch> {
        AdvertWatch::start(self.director(1), "eth0", limit)
    }

    /// A bound for a watcher started before [`FailoverLab::start_pair`]: two
    /// agent starts, the settling, the failover and its takeover.
    pub fn watch_limit(vrrp: Vrrp) -> Duration {
        Duration::from_secs(120) + vrrp.takeover_limit() * 3
    }

    /// Name of director `index` as a reply shows it (keepalived's stand-in servers).
    pub fn director_name(index: usize) -> String {
        format!("dir{}", index + 1)
    }

    /// Whether director `index` holds the VIP on `eth0`.
    pub fn holds_vip(&self, index: usize) -> bool {
        self.director(index)
            .run("ip", &["-o", "addr", "show", "dev", "eth0"])
            .is_ok_and(|o| o.contains(&format!(" {}/", self.lab.vip)))
    }

    /// The config of an xlb director with maps pinned at `pin`: the lab's
    /// services (DR, `mh`) and VRRP instance `VI_1` with `priority`.
    pub fn xlb_config(&self, pin: &Path, priority: u8, vrrp: Vrrp) -> String {
        format!(
            "# Written by xlb's failover lab.\n{}\n[[vrrp_instance]]\nname = \"VI_1\"\n\
             interface = \"eth0\"\nvirtual_router_id = {VRID}\npriority = {priority}\n\
             version = {}\nadvert_int = {}\nvirtual_ipaddress = [\"{}/32\"]\n",
            self.lab.agent_config_pinned(pin, "mh", "dr", "auto"),
            vrrp.version,
            vrrp.advert_int,
            self.lab.vip
        )
    }

    /// Starts `daemon` in director `index` with `priority`.
    pub fn start(
        &self,
        daemon: Daemon,
        index: usize,
        priority: u8,
        vrrp: Vrrp,
        xlb: &Path,
        cancel: &AtomicBool,
    ) -> Result<Running> {
        let ns = self.director(index);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let vip = self.lab.vip;
        match daemon {
            Daemon::Xlb => {
                let pin = PathBuf::from(format!(
                    "/sys/fs/bpf/xlb-failover-{}-{n}",
                    std::process::id()
                ));
                let config = self.dir.join(format!("xlb-{n}.toml"));
                std::fs::write(&config, self.xlb_config(&pin, priority, vrrp))?;
                let agent =
                    Agent::start_within(ns, xlb, &config, &[], Duration::from_secs(30), cancel)
                        .with_context(|| format!("xlb in {}", ns.name()))?;
                Ok(Running {
                    index,
                    process: Process::Xlb(agent),
                    pin: Some(pin),
                    _servers: None,
                    isolated: false,
                })
            }
            Daemon::Keepalived => {
                // The servers bind the VIP before VRRP puts it there; the
                // kernel hands them packets only while it is local.
                ns.sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
                let name = Self::director_name(index);
                let http = serve_name(ns, SocketAddr::new(vip, self.lab.port), &name)?;
                let udp = serve_udp_name(ns, SocketAddr::new(vip, PROBE_PORT), &name)?;
                let conf = format!(
                    "global_defs {{\n  router_id {name}\n  vrrp_version {}\n}}\n\
                     vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  \
                     virtual_router_id {VRID}\n  priority {priority}\n  advert_int {}\n  \
                     virtual_ipaddress {{\n    {vip}/32\n  }}\n}}\n",
                    vrrp.version, vrrp.advert_int
                );
                let ka = Keepalived::start(ns, &self.dir, &format!("{n}"), &conf)?;
                Ok(Running {
                    index,
                    process: Process::Keepalived(ka),
                    pin: None,
                    _servers: Some((http, udp)),
                    isolated: false,
                })
            }
        }
    }

    /// Master in director 0, then (once the VIP answers through it) Backup
    /// in director 1, given time to hear the Master before anything is measured.
    pub fn start_pair(
        &self,
        daemon: Daemon,
        vrrp: Vrrp,
        xlb: &Path,
        cancel: &AtomicBool,
    ) -> Result<Pair> {
        let master = self.start(daemon, 0, MASTER_PRIORITY, vrrp, xlb, cancel)?;
        self.wait_for(
            "the VIP answering through the Master",
            vrrp.takeover_limit(),
            cancel,
            || {
                self.holds_vip(0)
                    && udp_ask(&self.lab.client, self.probe_target(), ASK_TIMEOUT).is_ok()
            },
        )?;
        let backup = self.start(daemon, 1, BACKUP_PRIORITY, vrrp, xlb, cancel)?;
        // Three adverts and a second: the Backup has heard the Master.
        let settle = Instant::now() + Duration::from_secs_f64(3.0 * vrrp.advert_int + 1.0);
        while Instant::now() < settle && !cancel.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.holds_vip(0) || self.holds_vip(1) {
            bail!("after the Backup started, the Master should hold the VIP alone");
        }
        Ok(Pair { master, backup })
    }

    /// Takes the Master away; returns the instant it happened.
    ///
    /// A dying host loses its link first: the port leaves the bridge before
    /// SIGKILL, so the last advert and the last forwarded probe leave at the
    /// same instant for both daemons. (Cutting after the kill let a daemon
    /// that is slow to reap keep its director answering meanwhile:
    /// keepalived's stand-in servers are not part of it and answered ~50 ms
    /// longer, which counted against xlb.)
    pub fn fail(&self, r: &mut Running, how: Stop) -> Result<Instant> {
        if matches!(r.process, Process::Gone) {
            bail!("director {} has no daemon", r.index);
        }
        let at = Instant::now();
        if how == Stop::Kill {
            // Joined again by `clear`.
            self.lab
                .switch
                .run("ip", &["link", "set", self.port(r.index), "nomaster"])?;
            r.isolated = true;
        }
        match (std::mem::replace(&mut r.process, Process::Gone), how) {
            (Process::Xlb(a), Stop::Kill) => a.kill()?,
            (Process::Keepalived(mut k), Stop::Kill) => k.signal(libc::SIGKILL)?,
            (Process::Xlb(a), Stop::Term) => a.stop()?,
            (Process::Keepalived(mut k), Stop::Term) => k.signal(libc::SIGTERM)?,
            (Process::Gone, _) => unreachable!("checked above"),
        }
        Ok(at)
    }

    /// Stops the director's daemon (SIGTERM) if it runs and undoes what a
    /// killed one left: its switch port joins the bridge again, the VIP
    /// leaves its `eth0`, its maps (and so its XDP links) are unpinned.
    pub fn clear(&self, mut r: Running) -> Result<()> {
        match std::mem::replace(&mut r.process, Process::Gone) {
            Process::Xlb(a) => a.stop()?,
            Process::Keepalived(mut k) => k.signal(libc::SIGTERM)?,
            Process::Gone => {}
        }
        self.drop_vip(r.index)?;
        if let Some(pin) = r.pin.take() {
            remove_pins(&pin);
        }
        if r.isolated {
            self.lab
                .switch
                .run("ip", &["link", "set", self.port(r.index), "master", "br0"])?;
        }
        Ok(())
    }

    /// Removes the VIP from director `index`'s `eth0` if it is there (a
    /// killed daemon leaves it).
    pub fn drop_vip(&self, index: usize) -> Result<()> {
        if self.holds_vip(index) {
            self.director(index).run(
                "ip",
                &[
                    "addr",
                    "del",
                    &format!("{}/32", self.lab.vip),
                    "dev",
                    "eth0",
                ],
            )?;
        }
        Ok(())
    }

    pub fn probe_target(&self) -> SocketAddr {
        SocketAddr::new(self.lab.vip, PROBE_PORT)
    }

    /// Bounded poll (every 20 ms) for `cond`; stops early on `cancel`.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        cancel: &AtomicBool,
        mut cond: impl FnMut() -> bool,
    ) -> Result<()> {
        let end = Instant::now() + limit;
        loop {
            if cond() {
                return Ok(());
            }
            if cancel.load(Ordering::SeqCst) {
                bail!("interrupted while waiting for {what}");
            }
            if Instant::now() > end {
                bail!("no {what} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After `fail`: waits until the Backup holds the VIP and a probe reply
    /// has come after that, then probes a little longer.
    pub fn wait_takeover(&self, probe: &Prober, vrrp: Vrrp, cancel: &AtomicBool) -> Result<()> {
        let mut vip_at = None;
        self.wait_for(
            "takeover by the Backup",
            vrrp.takeover_limit(),
            cancel,
            || {
                if vip_at.is_none() && self.holds_vip(1) {
                    vip_at = Some(Instant::now());
                }
                vip_at.is_some_and(|t| probe.last_reply().is_some_and(|r| r >= t))
            },
        )?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}

/// Removes an agent's pin directory and the files in /run/xlb named after
/// it (VRRP status, checks' state, rates, data-plane lock), which outlive a
/// killed agent.
pub fn remove_pins(pin: &Path) {
    let _ = std::fs::remove_dir_all(pin);
    let flat = pin.to_string_lossy().trim_matches('/').replace('/', "_");
    let names = [
        format!("vrrp-{flat}.json"),
        format!("checks-{flat}.json"),
        format!("rates-{flat}.json"),
        format!("{flat}.lock"),
    ];
    for name in names {
        let _ = std::fs::remove_file(Path::new("/run/xlb").join(name));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The daemon stops as its own value drops; only the pins need help.
        if let Some(pin) = self.pin.take() {
            drop(std::mem::replace(&mut self.process, Process::Gone));
            remove_pins(&pin);
        }
    }
}

/// One datagram to the VIP every [`PROBE_EVERY`] from one client socket;
/// every reply is recorded with the time it arrived and who sent it.
pub struct Prober {
    replies: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64>>>,
}

impl Prober {
    /// Starts probing from `ns`; it stops by itself after `limit`.
    pub fn start(ns: &Netns, target: SocketAddr, limit: Duration) -> Result<Prober> {
        let bind: SocketAddr = match target.ip() {
            IpAddr::V4(_) => "0.0.0.0:0".parse()?,
            IpAddr::V6(_) => "[::]:0".parse()?,
        };
        let sock = ns.enter(|| UdpSocket::bind(bind))??;
        sock.connect(target)?;
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (replies, stop) = (replies.clone(), stop.clone());
            std::thread::Builder::new()
                .name("failover-probe".into())
                .spawn(move || probe_loop(&sock, limit, &replies, &stop))?
        };
        Ok(Prober {
            replies,
            stop,
            thread: Some(thread),
        })
    }

    /// How many replies have come so far.
    pub fn replies(&self) -> usize {
        self.lock().len()
    }

    /// When the latest reply arrived.
    pub fn last_reply(&self) -> Option<Instant> {
        self.lock().last().map(|r| r.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, String)>> {
        self.replies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops probing: how many datagrams were sent, and every reply.
    pub fn finish(mut self) -> Result<(u64, Vec<(Instant, String)>)> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r?,
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => 0,
        };
        Ok((sent, std::mem::take(&mut *self.lock())))
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn probe_loop(
    sock: &UdpSocket,
    limit: Duration,
    replies: &Mutex<Vec<(Instant, String)>>,
    stop: &AtomicBool,
) -> Result<u64> {
    let start = Instant::now();
    let max = (limit.as_nanos() / PROBE_EVERY.as_nanos()) as u64 + 1;
    let mut sent = 0u64;
    let mut next = start;
    let mut buf = [0u8; 256];
    while sent < max && start.elapsed() < limit && !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next {
            // A refused send (ICMP from an earlier datagram) is a lost probe.
            let _ = sock.send(b"probe\n");
            sent += 1;
            next += PROBE_EVERY;
            continue;
        }
        sock.set_read_timeout(Some((next - now).max(Duration::from_micros(100))))?;
        if let Ok(n) = sock.recv(&mut buf) {
            let name = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
            replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((Instant::now(), name));
        }
    }
    Ok(sent)
}

/// What the client saw around the instant the Master went away.
#[derive(Clone, Debug, PartialEq)]
pub struct Outage {
    /// The longest silence between two replies once the Master went away
    /// (from the last reply through the old Master to the first through the new).
    pub stopped: Duration,
    /// From the Master going away to the reply that ended that silence.
    pub resumed_after: Duration,
    /// When that reply arrived: traffic back.
    pub resumed: Instant,
}

/// The outage in `replies` (arrival times, in order) around `at`; `None`
/// when no reply came before `at` or none after it.
pub fn outage(replies: &[Instant], at: Instant) -> Option<Outage> {
    let before = replies.iter().rposition(|&r| r <= at)?;
    let (gap, end) = replies[before..]
        .windows(2)
        .map(|w| (w[1] - w[0], w[1]))
        .max_by_key(|(gap, _)| *gap)?;
    Some(Outage {
        stopped: gap,
        resumed_after: end - at,
        resumed: end,
    })
}

/// From the old Master's advert that set the Backup's takeover going to
/// traffic back (`resumed`), as the Backup heard the adverts (`heard`):
/// - SIGKILL: its last advert. The link was cut at `at`, so nothing from it
///   arrives later; any advert recorded before `resumed` counts, which keeps
///   one that crossed the wire just before the cut but was timestamped just
///   after `at`.
/// - SIGTERM: its first priority-0 advert after `at`.
///
/// `None` when that advert was not heard.
pub fn after_advert(
    heard: &[Heard],
    master: IpAddr,
    how: Stop,
    at: Instant,
    resumed: Instant,
) -> Option<Duration> {
    let advert = match how {
        Stop::Kill => advert_watch::last_advert(heard, master, resumed),
        Stop::Term => advert_watch::leaving_advert(heard, master, at),
    }?;
    resumed.checked_duration_since(advert)
}

/// Opens `n` keep-alive HTTP connections to the VIP and asks once on each.
pub fn hold(client: &Netns, vip: SocketAddr, n: usize) -> Result<Vec<HttpConn>> {
    (0..n)
        .map(|i| {
            let mut c = HttpConn::open(client, vip, Duration::from_secs(2))
                .with_context(|| format!("held connection {}", i + 1))?;
            c.ask()
                .with_context(|| format!("first request on held connection {}", i + 1))?;
            Ok(c)
        })
        .collect()
}

/// Asks once more on every connection (all at once, each bounded by its
/// timeout): how many answered.
pub fn survivors(conns: Vec<HttpConn>) -> usize {
    std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|mut c| s.spawn(move || c.ask().is_ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|&ok| ok)
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_is_the_longest_silence_after_the_event() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Replies every 10 ms, the event at 25 ms, silence until 340 ms.
        let replies = [at(0), at(10), at(20), at(340), at(350), at(360)];
        let o = outage(&replies, at(25)).unwrap();
        assert_eq!(o.stopped, Duration::from_millis(320));
        assert_eq!(o.resumed_after, Duration::from_millis(315));
        assert_eq!(o.resumed, at(340));
        // A silence before the event does not count.
        let replies = [at(0), at(500), at(510), at(600)];
        let o = outage(&replies, at(505)).unwrap();
        assert_eq!(o.stopped, Duration::from_millis(90));
        assert_eq!(o.resumed_after, Duration::from_millis(95));
    }

    #[test]
    fn no_outage_without_replies_on_both_sides() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(outage(&[ms(0), ms(10)], ms(20)), None);
        assert_eq!(outage(&[ms(30), ms(40)], ms(20)), None);
    }

    #[test]
    fn expected_waits_are_the_rfc_timers_for_the_backup() {
        let v3 = Vrrp {
            version: 3,
            advert_int: 0.1,
        };
        // (256 − 100) × 100 ms / 256 = 60.9375 ms.
        assert_eq!(v3.skew(BACKUP_PRIORITY), Duration::from_nanos(60_937_500));
        assert_eq!(
            v3.expected_after_advert(Stop::Kill),
            Duration::from_nanos(360_937_500)
        );
        assert_eq!(
            v3.expected_after_advert(Stop::Term),
            Duration::from_nanos(60_937_500)
        );
        let v2 = Vrrp {
            version: 2,
            advert_int: 1.0,
        };
        assert_eq!(
            v2.expected_after_advert(Stop::Kill),
            Duration::from_nanos(3_609_375_000)
        );
        assert_eq!(
            v2.expected_after_advert(Stop::Term),
            Duration::from_nanos(609_375_000)
        );
        // v3 carries centiseconds: 0.123 s is sent as 12 cs.
        let odd = Vrrp {
            version: 3,
            advert_int: 0.123,
        };
        assert_eq!(odd.master_down_interval(128), Duration::from_millis(420));
    }

    #[test]
    fn after_advert_starts_at_the_advert_that_set_the_takeover_going() {
        use crate::advert_watch::Advert;
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let master = std::net::Ipv4Addr::new(10, 250, 0, 2);
        let from = |at, priority| Heard {
            at,
            advert: Advert {
                src: master,
                version: 3,
                vrid: VRID,
                priority,
            },
        };
        let m = IpAddr::V4(master);
        // Killed at 250 ms: adverts at 0, 100, 200, one stamped just after the cut.
        let killed = [from(ms(0), 150), from(ms(100), 150), from(ms(252), 150)];
        assert_eq!(
            after_advert(&killed, m, Stop::Kill, ms(250), ms(640)),
            Some(Duration::from_millis(388))
        );
        // Stopped at 250 ms: the priority-0 advert at 255 ms.
        let stopped = [from(ms(200), 150), from(ms(255), 0)];
        assert_eq!(
            after_advert(&stopped, m, Stop::Term, ms(250), ms(330)),
            Some(Duration::from_millis(75))
        );
        // Never heard: nothing to measure from.
        assert_eq!(after_advert(&killed, m, Stop::Term, ms(250), ms(640)), None);
        assert_eq!(after_advert(&[], m, Stop::Kill, ms(250), ms(640)), None);
    }

    #[test]
    fn labels() {
        let v3 = Vrrp {
            version: 3,
            advert_int: 0.1,
        };
        assert_eq!(v3.label(), "v3 100 ms");
        let v2 = Vrrp {
            version: 2,
            advert_int: 1.0,
        };
        assert_eq!(v2.label(), "v2 1 s");
    }
}
