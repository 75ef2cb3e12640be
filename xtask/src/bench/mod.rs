//! `cargo xtask bench`: how fast xlb is, next to what it replaces, measured in
//! one run on this machine. Sections: per-packet cost (`pktcost.rs`), live
//! forwarding on veth (`live.rs`, and in the qemu guest, IPVS against xlb:
//! `guest.rs`), control plane (`control.rs`, with the health-check load in
//! `checks_load.rs` and the flow table's upkeep in `upkeep.rs`), VRRP
//! failover against keepalived (`failover.rs`), VRRP under load and attack
//! (`stress.rs`); `report.rs` prints the table and writes
//! `bench/results/<date>-<sha>.json`, and `charts.rs` draws SVG charts from it.
//! Everything runs in namespaces the bench creates and removes, and every
//! loop is bounded in packets and time.

mod charts;
mod checks_load;
mod control;
mod failover;
pub mod guest;
mod live;
mod pktcost;
mod report;
mod stats;
mod stress;
mod upkeep;

use crate::{build, setup::Need};
use anyhow::{Context, Result, bail};
use report::{Facts, Row, Section};
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

#[derive(clap::Args)]
pub struct Args {
    /// A subset with fewer runs (under 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Run one section only.
    #[arg(long, value_parser = ["pktcost", "live", "control", "failover", "stress"])]
    only: Option<String>,
    /// Measure nothing: redraw the SVG charts of an existing results file,
    /// next to it (`<results>-<chart>.svg`).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["quick", "only"])]
    charts: Option<std::path::PathBuf>,
}

/// One progress line per step on stderr, with the time since the start.
pub struct Progress {
    start: Instant,
    step: u32,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            step: 0,
        }
    }

    pub fn step(&mut self, section: Section, what: &str) {
        self.step += 1;
        eprintln!(
            "bench [{:>3}s] {:>2}. {}: {what}",
            self.start.elapsed().as_secs(),
            self.step,
            section.name()
        );
    }

    pub fn done(&self, result: &str) {
        eprintln!("               -> {result}");
    }
}

/// Sizes for a full run and for `--quick`.
struct Plan {
    pktcost: pktcost::Opts,
    live: live::Opts,
    /// None: the qemu guest does not run.
    guest: Option<live::Opts>,
    control: control::Opts,
    failover: failover::Opts,
    /// None: the stress lab does not run.
    stress: Option<stress::Opts>,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                pktcost: pktcost::Opts {
                    runs: 5,
                    repeat: 1_000_000,
                    calls: 20_000,
                },
                live: live::Opts {
                    runs: 3,
                    seconds: 1.0,
                },
                guest: None,
                control: control::Opts {
                    runs: 3,
                    apply: vec![control::ApplySize {
                        services: 100,
                        starts: 3,
                        limit: Duration::from_secs(60),
                    }],
                    flips: 4,
                    next_hop_refreshes: 1,
                    checks: checks_load::Opts {
                        windows: 3,
                        window: Duration::from_secs(2),
                        warmup: Duration::from_secs(3),
                    },
                    upkeep: upkeep::Opts {
                        flows: 1_000_000,
                        expired: 50_000,
                        passes: 2,
                        scrapes: 10,
                    },
                },
                failover: failover::Opts {
                    runs_v3: 5,
                    runs_v2: 3,
                    quick: true,
                    connections: 100,
                },
                stress: None,
            }
        } else {
            Plan {
                pktcost: pktcost::Opts {
                    runs: 5,
                    repeat: 5_000_000,
                    calls: 200_000,
                },
                live: live::Opts {
                    runs: 5,
                    seconds: 2.0,
                },
                guest: Some(live::Opts {
                    runs: 3,
                    seconds: 2.0,
                }),
                control: control::Opts {
                    runs: 5,
                    // Three sizes show how the start time grows with the number
                    // of map entries, and that one health change costs the same
                    // whatever the size.
                    apply: vec![
                        control::ApplySize {
                            services: 100,
                            starts: 3,
                            limit: Duration::from_secs(60),
                        },
                        control::ApplySize {
                            services: 300,
                            starts: 1,
                            limit: Duration::from_secs(180),
                        },
                        control::ApplySize {
                            services: 1000,
                            starts: 1,
                            limit: Duration::from_secs(240),
                        },
                    ],
                    flips: 6,
                    next_hop_refreshes: 3,
                    checks: checks_load::Opts {
                        windows: 5,
                        window: Duration::from_secs(4),
                        warmup: Duration::from_secs(5),
                    },
                    upkeep: upkeep::Opts {
                        flows: 1_000_000,
                        expired: 50_000,
                        passes: 5,
                        scrapes: 20,
                    },
                },
                failover: failover::Opts {
                    runs_v3: 5,
                    runs_v2: 3,
                    quick: false,
                    connections: 100,
                },
                stress: Some(stress::Opts {
                    hold: Duration::from_secs(15),
                    all_hold: Duration::from_secs(20),
                    fill_limit: Duration::from_secs(120),
                }),
            }
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if let Some(json) = &args.charts {
        return charts::redraw(json);
    }
    xlb_testbed::require_root().context("cargo xtask bench")?;
    let xlb_object = build::ebpf(Need::Bench)?;
    let floor_object = build::bench_floor_object();
    // The per-path call counts are an explanation, not a figure: without
    // the counting build the rows go on without them.
    let counting_object = if args.only.as_deref().is_none_or(|o| o == "pktcost") {
        build::ebpf_counting()
            .inspect_err(|e| eprintln!("bench: no per-path call counts: {e:#}"))
            .ok()
    } else {
        None
    };
    let xlb = build::agent()?;
    let stop = crate::interrupt_flag()?;
    xlb_testbed::sweep_stale()?;

    let facts = Facts::gather(&build::root(), args.quick, args.only.clone())?;
    let plan = Plan::new(args.quick);
    let wanted = |s: Section| args.only.as_deref().is_none_or(|o| o == s.name());
    let mut progress = Progress::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = Vec::new();
    for section in Section::ALL.into_iter().filter(|&s| wanted(s)) {
        let got = match section {
            Section::PktCost => pktcost::run(
                &plan.pktcost,
                &xlb_object,
                &floor_object,
                counting_object.as_deref(),
                &mut progress,
                &stop,
            ),
            Section::Live => {
                let art = live::Artefacts {
                    xlb: &xlb,
                    xlb_object: &xlb_object,
                    floor_object: &floor_object,
                };
                live::run(&plan.live, &art, &mut progress, &stop).map(|mut rows| {
                    rows.extend(match &plan.guest {
                        Some(opts) => guest::run(opts, &art, &mut progress).unwrap_or_else(|e| {
                            eprintln!("bench: the qemu guest failed: {e:#}");
                            guest::skipped(&format!("the qemu guest failed: {}", first_line(&e)))
                        }),
                        None => guest::skipped("not in --quick (the qemu guest takes minutes)"),
                    });
                    rows
                })
            }
            Section::Control => control::run(&plan.control, &xlb, &mut progress, &stop),
            Section::Failover => {
                failover::run(&plan.failover, &xlb, &xlb_object, &mut progress, &stop)
            }
            Section::Stress => match &plan.stress {
                Some(opts) => stress::run(opts, &xlb, &xlb_object, &mut progress, &stop),
                None => Ok(vec![Row::not_measured(
                    Section::Stress,
                    "VRRP under load",
                    "ms",
                    "not in --quick (ten cases of 20 s or more; run --only stress)",
                )]),
            },
        };
        match got {
            Ok(got) => rows.extend(got),
            Err(e) if stop.load(Ordering::SeqCst) => {
                return Err(e.context(format!("bench section {}", section.name())));
            }
            // One section that cannot run does not cost the others their figures.
            Err(e) => {
                eprintln!("bench: section {} failed: {e:#}", section.name());
                rows.push(section_failed(section, &e));
                failed.push(section.name());
            }
        }
    }

    println!("{}", report::table(&rows));
    let dir = build::root().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(facts.result_name());
    let results = report::json(&facts, &rows);
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    // The figures are safe on disk: a chart that cannot be drawn only says so.
    let drawn = charts::write(&results, &path);
    println!(
        "{} on {} ({} CPUs, kernel {}), commit {}{}; results in {}",
        if args.quick { "quick run" } else { "full run" },
        facts.cpu,
        facts.nproc,
        facts.kernel,
        &facts.git_sha[..12.min(facts.git_sha.len())],
        if facts.git_dirty { " (dirty)" } else { "" },
        path.strip_prefix(build::root()).unwrap_or(&path).display()
    );
    match &drawn {
        Ok(svgs) => {
            for svg in svgs {
                println!(
                    "chart: {}",
                    svg.strip_prefix(build::root()).unwrap_or(svg).display()
                );
            }
        }
        Err(e) => eprintln!("bench: drawing the charts failed: {e:#}"),
    }
    if !failed.is_empty() {
        bail!(
            "section(s) {} could not run; their rows say why, the others were measured",
            failed.join(", ")
        );
    }
    drawn.map(|_| ())
}

/// The row that stands for a whole section that failed.
fn section_failed(section: Section, e: &anyhow::Error) -> Row {
    Row::not_measured(
        section,
        "(whole section)",
        "",
        &format!("the section failed: {}", first_line(e)),
    )
}

/// An error and its causes on one line, without a verifier log or a guest's console.
fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::Outcome;

    #[test]
    fn a_failed_section_is_one_row_with_the_first_line_of_its_error() {
        let e = anyhow::anyhow!("verifier said no\n0: r1 = ctx\n1: exit").context("loading");
        let row = section_failed(Section::Live, &e);
        assert_eq!(row.section, Section::Live);
        assert_eq!(row.case, "(whole section)");
        assert_eq!(
            row.outcome,
            Outcome::NotMeasured("the section failed: loading: verifier said no".into())
        );
    }
}
