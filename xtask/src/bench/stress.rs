//! VRRP under stress (`stress`): the stress lab (`xlb_testbed::stress`), a
//! VRRPv3 pair at 100 ms adverts, with each load aimed at the Master alone
//! (which shows which load hurts) and then all together: a spoofed SYN
//! flood filling the default flow table (1,048,576 flows), 200 concurrent
//! scrapers, 1,000 idle connections on the metrics port, 200 valid
//! lower-priority adverts a second, keepalived 2.2.7 as a peer that cannot
//! hear the group, a MISC_CHECK that never returns, SIGHUP every second.
//! Per case: the largest gap between the Master's adverts (goal: at most
//! advert_int + 20 ms), spurious transitions and time with two Masters
//! (goal: 0), SIGTERM to exit, scrape latency, the Master's CPU and memory.

use super::{
    Progress,
    failover::which,
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, bail};
use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};
use xlb_testbed::stress::{
    DEFAULT_CONNTRACK, Figures, Loads, Plan, Reload, SIGTERM_LIMIT, StressLab, VRRP,
};

pub struct Opts {
    /// How long each load runs alone, at full strength.
    pub hold: Duration,
    /// How long all of them run together.
    pub all_hold: Duration,
    /// Bound on filling the flow table.
    pub fill_limit: Duration,
}

/// SYNs a second once the table is full: new flows keep replacing the
/// oldest, so the table stays full however long the case runs.
const SUSTAIN_RATE: u64 = 5_000;
const SCRAPERS: usize = 200;
const IDLE: usize = 1_000;
/// Crafted lower-priority adverts a second.
const ADVERT_RATE: u32 = 200;

/// Each case: its label and its loads.
fn cases() -> Vec<(&'static str, Loads)> {
    let none = Loads::default;
    let adverts = Some((ADVERT_RATE, u64::MAX));
    vec![
        ("no load", none()),
        (
            "SYN flood",
            Loads {
                flood: true,
                ..none()
            },
        ),
        (
            "200 scrapers",
            Loads {
                scrapers: SCRAPERS,
                ..none()
            },
        ),
        (
            "1,000 idle metrics connections",
            Loads {
                idle: IDLE,
                ..none()
            },
        ),
        ("200/s lower-priority adverts", Loads { adverts, ..none() }),
        (
            "keepalived peer",
            Loads {
                keepalived_peer: true,
                ..none()
            },
        ),
        (
            "hung MISC_CHECK",
            Loads {
                hung_check: true,
                ..none()
            },
        ),
        (
            "SIGHUP every second, config unchanged",
            Loads {
                sighup: Some(Reload::Unchanged),
                ..none()
            },
        ),
        (
            "SIGHUP every second, checkers restart",
            Loads {
                sighup: Some(Reload::CheckersRestart),
                ..none()
            },
        ),
        (
            "all together",
            Loads {
                flood: true,
                scrapers: SCRAPERS,
                idle: IDLE,
                adverts,
                keepalived_peer: false,
                hung_check: true,
                sighup: Some(Reload::Alternate),
            },
        ),
    ]
}

pub fn run(
    opts: &Opts,
    xlb: &Path,
    xlb_object: &Path,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    progress.step(
        Section::Stress,
        "building client, two directors, three reals and an observer",
    );
    let lab = StressLab::build(Some((
        xlb_object.to_path_buf(),
        lb_common::PROG_PASS.to_string(),
    )))?;
    let keepalived = which("keepalived");
    let mut rows = Vec::new();
    for (label, loads) in cases() {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if loads.keepalived_peer && !keepalived {
            rows.push(Row::not_measured(
                Section::Stress,
                &format!("{label}: largest gap between the Master's adverts"),
                "ms",
                "keepalived is not installed (apt-get install keepalived)",
            ));
            continue;
        }
        let all = loads.sighup == Some(Reload::Alternate);
        let plan = Plan {
            loads,
            conntrack_size: None,
            hold: if all { opts.all_hold } else { opts.hold },
            fill_limit: opts.fill_limit,
            sustain_rate: SUSTAIN_RATE,
        };
        progress.step(Section::Stress, &plan.loads.describe(plan.conntrack()));
        let f = lab
            .run(&plan, xlb, stop)
            .with_context(|| label.to_string())?;
        progress.done(&f.describe().replace('\n', "\n                  "));
        rows.extend(rows_of(label, &plan, &f));
    }
    Ok(rows)
}

/// The figures of one case as rows.
fn rows_of(label: &str, plan: &Plan, f: &Figures) -> Vec<Row> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let one = |x: f64| Summary::of(&[x]).expect("a finite figure");
    let row = |figure: &str, unit: &'static str, x: f64| {
        Row::measured(Section::Stress, &format!("{label}: {figure}"), unit, one(x))
    };
    let window = format!("{:.1} s under load", f.window.as_secs_f64());
    let interval = ms(VRRP.interval());
    let mut flood = String::new();
    if plan.loads.flood {
        flood = format!(
            "; {} of {} flows in the table after {} SYNs",
            f.flows.map_or("?".to_string(), |n| n.to_string()),
            plan.conntrack_size.unwrap_or(DEFAULT_CONNTRACK),
            f.syns
        );
    }
    let mut rows = vec![
        row(
            "largest gap between the Master's adverts",
            "ms",
            ms(f.largest_gap),
        )
        .method(format!(
            "{} adverts heard in {window}; goal <= {:.0} ms (advert_int + 20 ms){flood}",
            f.master_adverts,
            interval + 20.0
        )),
        row(
            "spurious transitions",
            "count",
            (f.transitions.0 + f.transitions.1) as f64,
        )
        .method(format!(
            "Master {}, Backup {} (status files); goal 0",
            f.transitions.0, f.transitions.1
        )),
        row("time with two Masters", "ms", ms(f.two_masters)).method(format!(
            "both directors advertising (each advert claims {interval:.0} ms); goal 0"
        )),
        row("time both held the VIP", "ms", ms(f.two_holders))
            .method("`ip addr` in both directors, every 100 ms; goal 0"),
    ];
    rows.push(match f.sigterm {
        Some(d) => {
            row("SIGTERM to exit", "ms", ms(d)).method("signal to the Master's exit, under load")
        }
        None => row("SIGTERM to exit", "ms", ms(SIGTERM_LIMIT)).method(format!(
            "not exited {SIGTERM_LIMIT:?} after SIGTERM (killed): a lower bound"
        )),
    });
    if let Some(p99) = f.scrape_p99 {
        rows.push(row("scrape latency p99", "ms", ms(p99)).method(format!(
            "{} scrapes, {} failed (timed out at 15 s or refused), p50 {:.0} ms",
            f.scrapes,
            f.scrape_failures,
            f.scrape_p50.map_or(0.0, ms)
        )));
    }
    rows.push(
        row("Master agent CPU", "% core", f.cpu_percent)
            .method(format!("utime + stime over the {window}")),
    );
    rows.push(
        row("Master agent RSS", "MiB", f.peak_rss_mib).method(format!(
            "VmHWM; peak {} of {} descriptors open",
            f.peak_fds, f.fd_limit
        )),
    );
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_load_runs_alone_and_then_all_together() {
        let cases = cases();
        assert_eq!(cases.len(), 10);
        assert_eq!(cases[0].1, Loads::default());
        // Each single-load case has exactly one load.
        for (label, l) in &cases[1..9] {
            let n = [
                l.flood,
                l.scrapers > 0,
                l.idle > 0,
                l.adverts.is_some(),
                l.keepalived_peer,
                l.hung_check,
                l.sighup.is_some(),
            ]
            .iter()
            .filter(|&&b| b)
            .count();
            assert_eq!(n, 1, "{label}");
        }
        let (label, all) = &cases[9];
        assert_eq!(*label, "all together");
        assert!(all.flood && all.scrapers == 200 && all.idle == 1000 && all.hung_check);
        assert_eq!(all.adverts.map(|a| a.0), Some(200));
        assert_eq!(all.sighup, Some(Reload::Alternate));
    }

    #[test]
    fn a_case_gives_a_row_per_figure_and_says_the_goal() {
        let plan = Plan {
            loads: Loads::default(),
            conntrack_size: None,
            hold: Duration::from_secs(1),
            fill_limit: Duration::from_secs(1),
            sustain_rate: 0,
        };
        let f = Figures {
            window: Duration::from_secs(15),
            largest_gap: Duration::from_millis(130),
            transitions: (0, 2),
            sigterm: None,
            scrape_p50: Some(Duration::from_millis(4)),
            scrape_p99: Some(Duration::from_millis(9)),
            ..Figures::default()
        };
        let rows = rows_of("no load", &plan, &f);
        assert_eq!(rows.len(), 8);
        assert_eq!(
            rows[0].case,
            "no load: largest gap between the Master's adverts"
        );
        assert!(
            rows[0].method.contains("goal <= 120 ms"),
            "{}",
            rows[0].method
        );
        assert!(rows[1].method.contains("Master 0, Backup 2"));
        assert!(rows[4].method.contains("a lower bound"));
        let medians: Vec<f64> = rows
            .iter()
            .map(|r| match &r.outcome {
                super::super::report::Outcome::Measured { summary, .. } => summary.median,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(medians[..6], [130.0, 2.0, 0.0, 0.0, 30_000.0, 9.0]);
    }
}
