//! Failover (`failover`): two directors in one VRRP group on the DR lab
//! (`xlb_testbed::failover`, shared with `cargo xtask lab --failover`),
//! priorities 150 and 100, the Master taken away (its host dies: SIGKILL
//! and link cut; or SIGTERM: priority 0) while the client sends a UDP probe
//! through the VIP every 10 ms. Figures: the longest silence between two
//! replies once the Master went away; and, free of where in its advert
//! cycle the Master went, the time from its last advert (SIGKILL) or its
//! priority-0 advert (SIGTERM), as the Backup heard it, to the first reply
//! after the silence, beside the RFC's wait from that advert. For xlb, 100 TCP connections held
//! open across the failover (DR, mh) are asked again: the share answering.
//! keepalived (no IPVS on this kernel) answers the VIP itself in each
//! director, so its rows compare VRRP alone: election, VIP move, GARP.

use super::{
    Progress,
    report::{Outcome, Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, bail};
use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use xlb_testbed::advert_watch::AdvertWatch;
use xlb_testbed::failover::{
    self, BACKUP_PRIORITY, Daemon, FailoverLab, PROBE_EVERY, Pair, Prober, Stop, Vrrp,
};

pub struct Opts {
    /// Runs per VRRPv3 (100 ms) case: short, and the kill's phase in the
    /// advert cycle spreads them by up to an interval.
    pub runs_v3: usize,
    /// Runs per VRRPv2 (1 s) case.
    pub runs_v2: usize,
    /// Only xlb at v3 100 ms.
    pub quick: bool,
    /// TCP connections held across an xlb failover.
    pub connections: usize,
}

impl Opts {
    fn runs(&self, vrrp: Vrrp) -> usize {
        if vrrp.version == 3 {
            self.runs_v3
        } else {
            self.runs_v2
        }
    }
}

const V3: Vrrp = Vrrp {
    version: 3,
    advert_int: 0.1,
};
const V2: Vrrp = Vrrp {
    version: 2,
    advert_int: 1.0,
};
/// Probe replies that must arrive before the Master is taken away.
const STEADY: usize = 20;

#[derive(Clone, Copy)]
struct Case {
    daemon: Daemon,
    vrrp: Vrrp,
    how: Stop,
}

impl Case {
    /// `xlb, VRRPv3 100 ms, SIGKILL`; each row adds its figure.
    fn label(&self) -> String {
        format!(
            "{}, VRRP{}, {}",
            self.daemon.name(),
            self.vrrp.label(),
            self.how.name()
        )
    }

    /// The method column of the after-the-last-advert row: which advert,
    /// and the RFC's wait from it, so measured − expected is the daemon's
    /// own cost (takeover, VIP, gratuitous ARP) plus up to one probe interval.
    fn after_advert_method(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let skew = ms(self.vrrp.skew(BACKUP_PRIORITY));
        let expected = ms(self.vrrp.expected_after_advert(self.how));
        match self.how {
            Stop::Kill => format!(
                "from the old Master's last advert as the Backup heard it; expected \
                 Master_Down_Interval = 3 x {:.0} ms + Skew_Time {skew:.1} ms = {expected:.1} ms",
                self.vrrp.advert_int * 1e3
            ),
            Stop::Term => format!(
                "from the old Master's priority-0 advert as the Backup heard it; expected \
                 Skew_Time = (256 - {BACKUP_PRIORITY}) x {} / 256 = {expected:.1} ms",
                if self.vrrp.version == 2 {
                    "1 s".to_string()
                } else {
                    format!("{:.0} ms", self.vrrp.advert_int * 1e3)
                }
            ),
        }
    }
}

fn cases(quick: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let vrrps: &[Vrrp] = if quick { &[V3] } else { &[V3, V2] };
    let daemons: &[Daemon] = if quick {
        &[Daemon::Xlb]
    } else {
        &[Daemon::Xlb, Daemon::Keepalived]
    };
    for &vrrp in vrrps {
        for &daemon in daemons {
            for how in [Stop::Kill, Stop::Term] {
                out.push(Case { daemon, vrrp, how });
            }
        }
    }
    out
}

/// What one failover showed.
struct Run {
    /// The longest silence, ms.
    stopped: f64,
    /// Traffic back after the old Master's last (or priority-0) advert, ms.
    after_advert: f64,
    /// xlb: share of held connections still answering, %.
    survived: Option<f64>,
    /// When each probe reply arrived, ms from the Master going away, from
    /// `TIMELINE_MARGIN` before it to as long after traffic came back.
    timeline: Vec<f64>,
}

/// How much of the steady probing either side of the outage a timeline keeps.
const TIMELINE_MARGIN: Duration = Duration::from_millis(300);

const STOPPED: &str = "traffic stopped";
const AFTER_ADVERT: &str = "traffic back after the last advert";

pub fn run(
    opts: &Opts,
    xlb: &Path,
    xlb_object: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    progress.step(
        Section::Failover,
        "building client, two directors and three reals",
    );
    let fl = FailoverLab::build(Some((
        xlb_object.to_path_buf(),
        lb_common::PROG_PASS.to_string(),
    )))?;
    let keepalived = which("keepalived");
    let mut rows = Vec::new();
    for case in cases(opts.quick) {
        let label = case.label();
        if case.daemon == Daemon::Keepalived && !keepalived {
            for figure in [STOPPED, AFTER_ADVERT] {
                rows.push(Row::not_measured(
                    Section::Failover,
                    &format!("{label}: {figure}"),
                    "ms",
                    "keepalived is not installed (apt-get install keepalived)",
                ));
            }
            continue;
        }
        progress.step(Section::Failover, &label);
        let mut runs = Vec::new();
        for _ in 0..opts.runs(case.vrrp) {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            runs.push(
                one_run(&fl, case, xlb, opts.connections, stop).with_context(|| label.clone())?,
            );
        }
        let stopped: Vec<f64> = runs.iter().map(|r| r.stopped).collect();
        let after: Vec<f64> = runs.iter().map(|r| r.after_advert).collect();
        let survived: Vec<f64> = runs.iter().filter_map(|r| r.survived).collect();
        let (stopped, after) = (
            Summary::of(&stopped).context("no runs")?,
            Summary::of(&after).context("no runs")?,
        );
        progress.done(&format!(
            "{:.0} ms stopped, back {:.0} ms after the last advert (medians)",
            stopped.median, after.median
        ));
        let timeline = median_run(&runs, stopped.median).timeline.clone();
        let n = runs.len();
        rows.push(
            Row::measured(
                Section::Failover,
                &format!("{label}: {STOPPED}"),
                "ms",
                stopped,
            )
            .method(format!(
                "{n} runs; UDP probe every {} ms; {}",
                PROBE_EVERY.as_millis(),
                match case.how {
                    Stop::Kill => "host dies: SIGKILL + link cut",
                    Stop::Term => "SIGTERM: priority-0 advert",
                }
            ))
            .timeline_ms(timeline),
        );
        rows.push(
            Row::measured(
                Section::Failover,
                &format!("{label}: {AFTER_ADVERT}"),
                "ms",
                after,
            )
            .method(format!("{n} runs; {}", case.after_advert_method())),
        );
        if let Some(s) = Summary::of(&survived) {
            rows.push(
                Row::measured(
                    Section::Failover,
                    &format!("{label}: held connections surviving"),
                    "%",
                    s,
                )
                .method(format!(
                    "{} TCP connections, DR mh, asked again after the takeover",
                    opts.connections
                )),
            );
        }
    }
    with_ratios(&mut rows);
    if !opts.quick {
        rows.push(Row::not_measured(
            Section::Failover,
            "keepalived: held connections surviving",
            "%",
            "no IPVS on this kernel: keepalived's directors answer the VIP themselves, so a \
             connection ends with its director; IPVS would need its sync daemon",
        ));
    }
    Ok(rows)
}

/// The run whose silence is nearest the median (the one charted).
fn median_run(runs: &[Run], median: f64) -> &Run {
    runs.iter()
        .min_by(|a, b| {
            (a.stopped - median)
                .abs()
                .total_cmp(&(b.stopped - median).abs())
        })
        .expect("at least one run")
}

/// Reply arrival times in ms from `at`, those from `TIMELINE_MARGIN` before
/// it to `TIMELINE_MARGIN` after `resumed`.
fn timeline(replies: &[Instant], at: Instant, resumed: Instant) -> Vec<f64> {
    let ms = |t: Instant| match t.checked_duration_since(at) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(at - t).as_secs_f64() * 1e3,
    };
    let (from, to) = (
        -TIMELINE_MARGIN.as_secs_f64() * 1e3,
        ms(resumed) + TIMELINE_MARGIN.as_secs_f64() * 1e3,
    );
    replies
        .iter()
        .map(|&t| ms(t))
        .filter(|t| (from..=to).contains(t))
        .collect()
}

/// Each xlb row gets the ratio of its median to keepalived's row of the same case.
fn with_ratios(rows: &mut [Row]) {
    let medians: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Measured { summary, .. } => Some((r.case.clone(), summary.median)),
            Outcome::NotMeasured(_) => None,
        })
        .collect();
    for row in rows.iter_mut() {
        let Some(rest) = row.case.strip_prefix("xlb, ") else {
            continue;
        };
        let twin = format!("keepalived, {rest}");
        let base = medians.iter().find(|(c, _)| *c == twin).map(|(_, m)| *m);
        *row = row.clone().ratio_to("keepalived", base);
    }
}

/// One failover: the pair started, probes flowing and the Backup's adverts
/// recorded, the Master taken away, the Backup's takeover seen.
fn one_run(
    fl: &FailoverLab,
    case: Case,
    xlb: &Path,
    connections: usize,
    stop: &AtomicBool,
) -> Result<Run> {
    // Before the pair, so the Master's last advert is on record wherever
    // in its cycle it goes.
    let adverts = fl.watch_adverts(FailoverLab::watch_limit(case.vrrp))?;
    let mut pair = fl.start_pair(case.daemon, case.vrrp, xlb, stop)?;
    let result = measure(fl, &mut pair, adverts, case, connections, stop);
    let cleared = fl.clear(pair.backup).and_then(|()| fl.clear(pair.master));
    let got = result?;
    cleared?;
    Ok(got)
}

fn measure(
    fl: &FailoverLab,
    pair: &mut Pair,
    adverts: AdvertWatch,
    case: Case,
    connections: usize,
    stop: &AtomicBool,
) -> Result<Run> {
    let held = if case.daemon == Daemon::Xlb {
        failover::hold(&fl.lab.client, fl.lab.vip_socket(), connections)?
    } else {
        Vec::new()
    };
    let limit = Duration::from_secs(10) + case.vrrp.takeover_limit();
    let probe = Prober::start(&fl.lab.client, fl.probe_target(), limit)?;
    fl.wait_for("steady probe replies", Duration::from_secs(5), stop, || {
        probe.replies() >= STEADY
    })?;
    let at = fl.fail(&mut pair.master, case.how)?;
    fl.wait_takeover(&probe, case.vrrp, stop)?;
    let (_, replies) = probe.finish()?;
    let heard = adverts.finish();
    if case.daemon == Daemon::Keepalived {
        // keepalived's directors answer themselves: the last reply names the new Master.
        let want = FailoverLab::director_name(1);
        if replies.last().is_none_or(|r| r.1 != want) {
            bail!("the last probe reply did not come from {want}");
        }
    }
    let times: Vec<Instant> = replies.iter().map(|r| r.0).collect();
    let outage = failover::outage(&times, at).context("no probe reply on both sides")?;
    let after = failover::after_advert(&heard, fl.address(0), case.how, at, outage.resumed)
        .with_context(|| {
            format!(
                "the Backup heard no {} from the Master ({} adverts recorded)",
                match case.how {
                    Stop::Kill => "advert",
                    Stop::Term => "priority-0 advert",
                },
                heard.len()
            )
        })?;
    let survived = (case.daemon == Daemon::Xlb && connections > 0)
        .then(|| failover::survivors(held) as f64 * 100.0 / connections as f64);
    Ok(Run {
        stopped: outage.stopped.as_secs_f64() * 1e3,
        after_advert: after.as_secs_f64() * 1e3,
        survived,
        timeline: timeline(&times, at, outage.resumed),
    })
}

/// Whether `program` is in a directory of `PATH`.
pub(super) fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_runs_xlb_at_v3_only_and_full_runs_both_daemons_and_versions() {
        let quick = cases(true);
        assert_eq!(quick.len(), 2);
        assert!(
            quick
                .iter()
                .all(|c| c.daemon == Daemon::Xlb && c.vrrp == V3)
        );
        let full = cases(false);
        assert_eq!(full.len(), 8);
        assert_eq!(full[0].label(), "xlb, VRRPv3 100 ms, SIGKILL");
        assert!(
            full.iter()
                .any(|c| c.daemon == Daemon::Keepalived && c.vrrp == V2 && c.how == Stop::Term)
        );
    }

    #[test]
    fn the_timeline_is_relative_to_the_master_going_away_and_keeps_a_margin() {
        let at = Instant::now() + Duration::from_secs(1);
        let t = |ms: i64| {
            if ms >= 0 {
                at + Duration::from_millis(ms as u64)
            } else {
                at - Duration::from_millis(-ms as u64)
            }
        };
        let replies: Vec<Instant> = [-500, -300, -10, 350, 360, 650, 700]
            .into_iter()
            .map(t)
            .collect();
        let got = timeline(&replies, at, t(350));
        let rounded: Vec<i64> = got.iter().map(|ms| ms.round() as i64).collect();
        assert_eq!(rounded, vec![-300, -10, 350, 360, 650]);
    }

    #[test]
    fn the_charted_run_is_the_one_nearest_the_median() {
        let run = |stopped| Run {
            stopped,
            after_advert: 0.0,
            survived: None,
            timeline: vec![stopped],
        };
        let runs = [run(300.0), run(420.0), run(350.0)];
        assert_eq!(median_run(&runs, 350.0).timeline, vec![350.0]);
    }

    #[test]
    fn after_advert_method_names_the_rfc_wait() {
        let case = |how| Case {
            daemon: Daemon::Xlb,
            vrrp: V3,
            how,
        };
        assert!(
            case(Stop::Kill)
                .after_advert_method()
                .ends_with("3 x 100 ms + Skew_Time 60.9 ms = 360.9 ms"),
        );
        assert!(
            case(Stop::Term)
                .after_advert_method()
                .ends_with("Skew_Time = (256 - 100) x 100 ms / 256 = 60.9 ms"),
        );
    }

    #[test]
    fn xlb_rows_get_the_ratio_to_keepalived_in_the_same_case() {
        let row = |case: &str, median| {
            Row::measured(
                Section::Failover,
                case,
                "ms",
                Summary::of(&[median]).unwrap(),
            )
        };
        let mut rows = vec![
            row("xlb, VRRPv3 100 ms, SIGKILL: traffic stopped", 300.0),
            row(
                "xlb, VRRPv3 100 ms, SIGKILL: traffic back after the last advert",
                380.0,
            ),
            row(
                "xlb, VRRPv3 100 ms, SIGKILL: held connections surviving",
                100.0,
            ),
            row("keepalived, VRRPv3 100 ms, SIGKILL: traffic stopped", 200.0),
            row(
                "keepalived, VRRPv3 100 ms, SIGKILL: traffic back after the last advert",
                400.0,
            ),
        ];
        with_ratios(&mut rows);
        let ratio = |r: &Row| match &r.outcome {
            Outcome::Measured { ratio, .. } => ratio.as_ref().map(|r| (r.to.clone(), r.value)),
            Outcome::NotMeasured(_) => None,
        };
        assert_eq!(ratio(&rows[0]), Some(("keepalived".into(), 1.5)));
        assert_eq!(ratio(&rows[1]), Some(("keepalived".into(), 0.95)));
        assert_eq!(ratio(&rows[2]), None, "keepalived has no such row");
        assert_eq!(ratio(&rows[3]), None, "keepalived is the base");
    }
}
