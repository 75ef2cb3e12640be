//! `cargo xtask lab --failover`: two xlb directors in one VRRP group on the
//! DR lab (mh, so both pick the same real for a flow), 100 held connections
//! and a stream of new ones from the client, and the Master taken away
//! half-way. The summary says how many requests failed, how long UDP probes
//! every 10 ms went unanswered, how long after the Master's last advert (or
//! priority-0 advert) they were answered again, and how many held
//! connections survived.

use anyhow::{Result, bail};
use std::{
    collections::BTreeMap,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use xlb_testbed::{
    failover::{
        self, BACKUP_PRIORITY, Daemon, FailoverLab, MASTER_PRIORITY, PROBE_EVERY, Prober, Stop,
        Vrrp,
    },
    http::get_name,
};

pub struct Opts {
    pub requests: u32,
    pub connections: usize,
    pub vrrp: Vrrp,
    pub how: Stop,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// New connections start this far apart, so the run spans the failover.
const PACE: Duration = Duration::from_millis(10);

pub fn run(opts: &Opts, xlb: &Path, object: &Path, stop: &AtomicBool) -> Result<()> {
    let fl = FailoverLab::build(Some((
        object.to_path_buf(),
        lb_common::PROG_PASS.to_string(),
    )))?;
    let (m, b) = (fl.director(0).name(), fl.director(1).name());
    eprintln!(
        "lab: VRRP{}: Master (priority {MASTER_PRIORITY}) in {m}, Backup ({BACKUP_PRIORITY}) in {b}",
        opts.vrrp.label()
    );
    let adverts = fl.watch_adverts(FailoverLab::watch_limit(opts.vrrp) + limit_of(opts))?;
    let mut pair = fl.start_pair(Daemon::Xlb, opts.vrrp, xlb, stop)?;
    let vip = fl.lab.vip_socket();
    let held = failover::hold(&fl.lab.client, vip, opts.connections)?;
    let limit = limit_of(opts);
    let probe = Prober::start(&fl.lab.client, fl.probe_target(), limit)?;

    let half = opts.requests / 2;
    let mut failed_at = None;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed = 0u32;
    let mut next = Instant::now();
    for i in 1..=opts.requests {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if i == half + 1 {
            failed_at = Some(fl.fail(&mut pair.master, opts.how)?);
            eprintln!(
                "lab: {i}/{}: {} of the Master ({m})",
                opts.requests,
                describe(opts.how)
            );
        }
        match get_name(&fl.lab.client, vip, REQUEST_TIMEOUT) {
            Ok(name) => *seen.entry(name).or_default() += 1,
            Err(_) => failed += 1,
        }
        if i % (opts.requests / 10).max(1) == 0 {
            eprintln!("lab: {i}/{} sent, {failed} failed", opts.requests);
        }
        next += PACE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let failed_at = failed_at.expect("at least two requests");
    fl.wait_takeover(&probe, opts.vrrp, stop)?;
    let (sent, replies) = probe.finish()?;
    let heard = adverts.finish();
    let survived = failover::survivors(held);
    let times: Vec<Instant> = replies.iter().map(|r| r.0).collect();
    let Some(outage) = failover::outage(&times, failed_at) else {
        bail!("no UDP probe was answered on both sides of the failover ({sent} sent)");
    };
    let after_advert =
        match failover::after_advert(&heard, fl.address(0), opts.how, failed_at, outage.resumed) {
            Some(d) => format!(
                "{:.0} ms after the Master's {} advert (RFC wait {:.0} ms)",
                d.as_secs_f64() * 1e3,
                match opts.how {
                    Stop::Kill => "last",
                    Stop::Term => "priority-0",
                },
                opts.vrrp.expected_after_advert(opts.how).as_secs_f64() * 1e3
            ),
            None => "the Master's last advert unheard".to_string(),
        };
    let dist: Vec<String> = seen.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!(
        "lab: {} of {sent} UDP probes answered; requests by real: {}",
        replies.len(),
        dist.join(" ")
    );
    println!(
        "lab: failover ({} of the Master at request {}): {}/{} requests ok, {failed} failed; \
         traffic stopped {:.0} ms (UDP probe every {} ms), back {:.0} ms after the {}, \
         {after_advert}; \
         {survived}/{} held connections survived; Master now {b}",
        describe(opts.how),
        half + 1,
        opts.requests - failed,
        opts.requests,
        outage.stopped.as_secs_f64() * 1e3,
        PROBE_EVERY.as_millis(),
        outage.resumed_after.as_secs_f64() * 1e3,
        opts.how.name(),
        opts.connections,
    );
    fl.clear(pair.backup)?;
    fl.clear(pair.master)?;
    Ok(())
}

/// How long the requests may take: every one timing out, and the takeover after.
fn limit_of(opts: &Opts) -> Duration {
    (PACE + REQUEST_TIMEOUT) * opts.requests + opts.vrrp.takeover_limit()
}

fn describe(how: Stop) -> &'static str {
    match how {
        Stop::Kill => "SIGKILL (and link cut)",
        Stop::Term => "SIGTERM",
    }
}
