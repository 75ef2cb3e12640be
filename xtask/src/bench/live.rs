//! Live forwarding on veth (`live`), native XDP everywhere it runs: frames
//! from AF_PACKET transmit rings in a generator namespace, through the
//! director namespace, counted by XDP at the real (`live/topology.rs`).
//! Each forwarder (the floor: a bare MAC rewrite and redirect; xlb DR, TUN
//! and NAT; nftables DNAT) is timed with one generator on CPU 0, then with
//! one on each of two CPUs at once. Figures: packets per second counted at
//! the real, and CPU time per packet (`live/cpu_time.rs`), whose rise from
//! one CPU to two would be a shared atomic or lock on the hot path.

mod cpu_time;
mod topology;

pub use topology::{Artefacts, Forwarder, Topology, remove_pin_dir};

use super::{
    Progress, first_line,
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
pub use topology::FLOWS_PER_CPU;
use topology::Run;

pub struct Opts {
    pub runs: usize,
    /// Length of one run.
    pub seconds: f64,
}

pub const FLOOR: &str = "floor: MAC rewrite + redirect, veth";
pub const NFT_DNAT: &str = "nftables DNAT (peer), veth";

pub struct Case {
    pub name: &'static str,
    pub forwarder: Forwarder,
    /// Reported as a ratio to this case (same number of CPUs).
    pub vs: Option<&'static str>,
}

pub const CASES: &[Case] = &[
    Case {
        name: FLOOR,
        forwarder: Forwarder::Floor,
        vs: None,
    },
    Case {
        name: "xlb DR, veth",
        forwarder: Forwarder::XlbDr,
        vs: Some(FLOOR),
    },
    Case {
        name: "xlb TUN (IPIP), veth",
        forwarder: Forwarder::XlbTun,
        vs: Some(FLOOR),
    },
    Case {
        name: "xlb NAT, veth",
        forwarder: Forwarder::XlbNat,
        vs: Some(NFT_DNAT),
    },
    Case {
        name: NFT_DNAT,
        forwarder: Forwarder::NftDnat,
        vs: None,
    },
];

/// The CPUs the generators run on, for one CPU and for two at once.
const ONE: &[usize] = &[0];
const TWO: &[usize] = &[0, 1];

/// What one case gave: its runs with one sending CPU and with two, or why not.
struct Outcome<'a> {
    case: &'a Case,
    one: Result<Vec<Run>, String>,
    two: Result<Vec<Run>, String>,
    /// xlb: the flows its director created over both (warm-ups included).
    flows_created: Option<u64>,
}

pub fn run(
    opts: &Opts,
    art: &Artefacts<'_>,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<Vec<Row>> {
    progress.step(Section::Live, "building gen / director / real namespaces");
    let topo = match Topology::build(art.floor_object) {
        Ok(t) => t,
        Err(e) => {
            let why = format!("the live topology could not be built: {}", first_line(&e));
            progress.done(&why);
            let all = CASES.iter().map(|case| Outcome {
                case,
                one: Err(why.clone()),
                two: Err(why.clone()),
                flows_created: None,
            });
            return Ok(rows(&all.collect::<Vec<_>>(), opts));
        }
    };
    let two_cpus = topology::online_cpus() >= TWO.len();
    let mut outcomes = Vec::new();
    for case in CASES {
        if stop.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted");
        }
        progress.step(Section::Live, case.name);
        let got = topo.with(art, case.forwarder, |t, maps| {
            let flows = || maps.map(topology::flows_created).transpose();
            let before = flows()?;
            let one = t.measure(ONE, opts.runs, opts.seconds, stop)?;
            let two = if two_cpus {
                t.measure(TWO, opts.runs, opts.seconds, stop)
                    .map_err(|e| first_line(&e))
            } else {
                Err(format!("this machine has {} CPU", topology::online_cpus()))
            };
            let created = flows()?.zip(before).map(|(after, before)| after - before);
            Ok((one, two, created))
        });
        let outcome = match got {
            Ok((one, two, flows_created)) => Outcome {
                case,
                one: Ok(one),
                two,
                flows_created,
            },
            Err(e) => Outcome {
                case,
                one: Err(first_line(&e)),
                two: Err(first_line(&e)),
                flows_created: None,
            },
        };
        progress.done(&summary_line(&outcome));
        outcomes.push(outcome);
    }
    Ok(rows(&outcomes, opts))
}

/// One generator on CPU 0 through `forwarder`: Mpps per run and the share
/// of sent frames that arrived (the qemu guest's figure, guest.rs).
pub fn measure_one_cpu(
    topo: &Topology,
    art: &Artefacts<'_>,
    forwarder: Forwarder,
    opts: &Opts,
    stop: &AtomicBool,
) -> Result<(Summary, f64)> {
    let runs = topo.with(art, forwarder, |t, _| {
        t.measure(ONE, opts.runs, opts.seconds, stop)
    })?;
    let mpps: Vec<f64> = runs.iter().map(Run::mpps).collect();
    Ok((Summary::of(&mpps).context("no runs")?, delivered(&runs)))
}

/// Share of the frames sent that were counted at the real.
fn delivered(runs: &[Run]) -> f64 {
    let (sent, got) = runs
        .iter()
        .flat_map(|r| &r.cpus)
        .fold((0u64, 0u64), |(s, g), c| (s + c.sent, g + c.got));
    got as f64 / sent.max(1) as f64
}

/// Median wall-clock Mpps of the runs.
fn wall_mpps(runs: &[Run]) -> f64 {
    Summary::of(&runs.iter().map(Run::wall_mpps).collect::<Vec<_>>()).map_or(0.0, |s| s.median)
}

fn mpps(runs: &[Run]) -> Option<Summary> {
    Summary::of(&runs.iter().map(Run::mpps).collect::<Vec<_>>())
}

fn cpu_ns(runs: &[Run]) -> Option<Summary> {
    Summary::of(&runs.iter().filter_map(Run::cpu_ns).collect::<Vec<_>>())
}

/// The median Mpps of each sending CPU.
fn per_cpu(runs: &[Run]) -> Vec<f64> {
    let cpus = runs.iter().map(|r| r.cpus.len()).max().unwrap_or(0);
    (0..cpus)
        .filter_map(|c| {
            let each: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.mpps_per_cpu().get(c).copied())
                .collect();
            Summary::of(&each).map(|s| s.median)
        })
        .collect()
}

fn summary_line(o: &Outcome<'_>) -> String {
    let one = match &o.one {
        Ok(runs) => format!(
            "{:.3} Mpps with 1 CPU ({:.1}% arrived)",
            mpps(runs).map_or(0.0, |s| s.median),
            delivered(runs) * 100.0
        ),
        Err(why) => format!("not measured: {why}"),
    };
    match &o.two {
        Ok(runs) => format!(
            "{one}, {:.3} Mpps with 2",
            mpps(runs).map_or(0.0, |s| s.median)
        ),
        Err(_) => one,
    }
}

/// Row names of a case: Mpps with one CPU and with two, and CPU time per
/// packet with two.
fn names(case: &str) -> [String; 3] {
    [
        case.to_string(),
        format!("{case}, 2 CPUs"),
        format!("{case}: CPU time per packet, 2 CPUs"),
    ]
}

/// Every case's three rows, in case order: Mpps with one CPU and with two
/// (each as a ratio to its `vs` with as many CPUs, and as a share of the
/// floor in the method column when `vs` is not the floor), and CPU time per
/// packet with two CPUs as a ratio to one CPU's: 1× means forwarding on two
/// CPUs at once costs each packet nothing more.
fn rows(outcomes: &[Outcome<'_>], opts: &Opts) -> Vec<Row> {
    let median = |name: &str, two: bool| {
        outcomes
            .iter()
            .find(|o| o.case.name == name)
            .and_then(|o| if two { &o.two } else { &o.one }.as_ref().ok())
            .and_then(|r| mpps(r))
            .map(|s| s.median)
    };
    let mut out = Vec::new();
    for o in outcomes {
        let [n1, n2, ns2] = names(o.case.name);
        for (two, name, runs) in [(false, &n1, &o.one), (true, &n2, &o.two)] {
            let row = match runs.as_ref().map(|r| (r, mpps(r))) {
                Ok((runs, Some(s))) => {
                    let mut method = format!(
                        "{}; wall clock {:.3} Mpps; UDP, {FLOWS_PER_CPU} flows per CPU, \
                         60-byte frames by sendmmsg, {} runs x {:.1} s; {:.1}% of sent frames arrived",
                        if two {
                            let each: Vec<String> =
                                per_cpu(runs).iter().map(|m| format!("{m:.3}")).collect();
                            format!(
                                "{} CPUs sending at once ({} Mpps)",
                                TWO.len(),
                                each.join(" + ")
                            )
                        } else {
                            "1 CPU sending".to_string()
                        },
                        wall_mpps(runs),
                        opts.runs,
                        opts.seconds,
                        delivered(runs) * 100.0
                    );
                    if o.case.name != FLOOR
                        && o.case.vs != Some(FLOOR)
                        && let Some(floor) = median(FLOOR, two)
                    {
                        method += &format!("; {:.0}% of the floor", s.median / floor * 100.0);
                    }
                    if let (false, Some(n)) = (two, o.flows_created) {
                        let distinct = u64::from(FLOWS_PER_CPU)
                            * if o.two.is_ok() { TWO.len() } else { ONE.len() } as u64;
                        method += &format!(
                            "; xlb created {n} flows for {distinct} distinct ones (1 and 2 CPUs, \
                             warm-ups included{})",
                            if n > distinct {
                                ": flows were created again while timed"
                            } else {
                                ""
                            }
                        );
                    }
                    let vs = o.case.vs.map(|vs| {
                        if two {
                            names(vs)[1].clone()
                        } else {
                            vs.to_string()
                        }
                    });
                    Row::measured(Section::Live, name, "Mpps", s)
                        .method(method)
                        .ratio_to(
                            vs.as_deref().unwrap_or(""),
                            o.case.vs.and_then(|vs| median(vs, two)),
                        )
                }
                Ok((_, None)) => Row::not_measured(Section::Live, name, "Mpps", "no runs"),
                Err(why) => Row::not_measured(Section::Live, name, "Mpps", why),
            };
            out.push(row);
        }
        let one_ns = o.one.as_ref().ok().and_then(|r| cpu_ns(r));
        out.push(match o.two.as_ref().map(|r| cpu_ns(r)) {
            Ok(Some(s)) => Row::measured(Section::Live, &ns2, "ns/pkt", s)
                .method(format!(
                    "CPU time of the sending threads and their CPUs' ksoftirqd / packets counted; \
                     1 CPU: {}",
                    one_ns
                        .as_ref()
                        .map_or("not measured".to_string(), |s| format!(
                            "{:.0} ns",
                            s.median
                        ))
                ))
                .ratio_to("1 CPU", one_ns.as_ref().map(|s| s.median)),
            Ok(None) => Row::not_measured(Section::Live, &ns2, "ns/pkt", "no packet arrived"),
            Err(why) => Row::not_measured(Section::Live, &ns2, "ns/pkt", why),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::Outcome as Figure;
    use std::time::Duration;
    use topology::{CpuRun, MAX_CPUS};

    #[test]
    fn every_ratio_names_a_case() {
        for c in CASES {
            if let Some(vs) = c.vs {
                assert!(CASES.iter().any(|o| o.name == vs), "{} vs {vs}", c.name);
                assert_ne!(vs, c.name);
            }
        }
        assert!(MAX_CPUS >= TWO.len());
    }

    /// Runs of `mpps` per CPU over one second, at `ns` of CPU per packet.
    fn runs(mpps: &[f64], ns: f64) -> Vec<Run> {
        (0..3)
            .map(|_| Run {
                secs: 1.0,
                cpus: mpps
                    .iter()
                    .map(|&m| {
                        let got = (m * 1e6) as u64;
                        CpuRun {
                            sent: got,
                            got,
                            cpu: Duration::from_nanos((got as f64 * ns) as u64),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    fn ratio(r: &Row) -> Option<(String, f64)> {
        match &r.outcome {
            Figure::Measured { ratio, .. } => ratio.as_ref().map(|q| (q.to.clone(), q.value)),
            Figure::NotMeasured(_) => None,
        }
    }

    fn median(r: &Row) -> Option<f64> {
        match &r.outcome {
            Figure::Measured { summary, .. } => Some(summary.median),
            Figure::NotMeasured(_) => None,
        }
    }

    #[test]
    fn rows_compare_with_the_floor_or_the_peer_and_two_cpus_with_one() {
        let opts = Opts {
            runs: 3,
            seconds: 1.0,
        };
        // Per-CPU rates at 1 Mpps per 1000 ns of CPU per packet.
        let outcome = |i: usize, ns_one: f64, ns_two: f64| Outcome {
            case: &CASES[i],
            one: Ok(runs(&[0.1], ns_one)),
            two: Ok(runs(&[0.1, 0.1], ns_two)),
            flows_created: (i == 1).then_some(8192),
        };
        let outcomes = vec![
            outcome(0, 500.0, 500.0),
            outcome(1, 625.0, 1000.0),
            Outcome {
                case: &CASES[2],
                one: Err("agent failed".into()),
                two: Err("agent failed".into()),
                flows_created: None,
            },
            outcome(3, 1000.0, 1000.0),
            outcome(4, 4000.0, 4000.0),
        ];
        let rows = rows(&outcomes, &opts);
        assert_eq!(rows.len(), 3 * CASES.len());
        let row = |name: &str| rows.iter().find(|r| r.case == name).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let dr = row("xlb DR, veth");
        assert!(close(median(dr).unwrap(), 1.6), "{dr:?}");
        let (to, q) = ratio(dr).unwrap();
        assert_eq!(to, FLOOR);
        assert!(close(q, 0.8));
        assert!(
            dr.method
                .starts_with("1 CPU sending; wall clock 0.100 Mpps"),
            "{}",
            dr.method
        );
        let dr2 = row("xlb DR, veth, 2 CPUs");
        assert!(close(median(dr2).unwrap(), 2.0), "two CPUs add up");
        let (to, q) = ratio(dr2).unwrap();
        assert_eq!(to, format!("{FLOOR}, 2 CPUs"));
        assert!(close(q, 0.5));
        assert!(
            dr2.method.contains("(1.000 + 1.000 Mpps)"),
            "{}",
            dr2.method
        );
        let ns2 = row("xlb DR, veth: CPU time per packet, 2 CPUs");
        assert!(close(median(ns2).unwrap(), 1000.0));
        let (to, q) = ratio(ns2).unwrap();
        assert_eq!(to, "1 CPU");
        assert!(close(q, 1.6), "each packet costs more with two CPUs");
        assert!(ns2.method.ends_with("1 CPU: 625 ns"), "{}", ns2.method);
        let nat = row("xlb NAT, veth");
        let (to, q) = ratio(nat).unwrap();
        assert_eq!(to, NFT_DNAT);
        assert!(close(q, 4.0));
        assert!(nat.method.ends_with("50% of the floor"), "{}", nat.method);
        for tun in names("xlb TUN (IPIP), veth") {
            assert_eq!(
                row(&tun).outcome,
                Figure::NotMeasured("agent failed".into()),
                "a case that failed keeps its slots"
            );
        }
    }

    #[test]
    fn a_second_cpu_that_cannot_run_leaves_the_one_cpu_row() {
        let outcomes = vec![Outcome {
            case: &CASES[0],
            one: Ok(runs(&[2.0], 250.0)),
            two: Err("this machine has 1 CPU".into()),
            flows_created: Some(4097),
        }];
        let rows = rows(
            &outcomes,
            &Opts {
                runs: 3,
                seconds: 1.0,
            },
        );
        assert!((median(&rows[0]).unwrap() - 4.0).abs() < 1e-6);
        assert!(
            rows[0].method.ends_with(
                "xlb created 4097 flows for 4096 distinct ones (1 and 2 CPUs, warm-ups included: \
                 flows were created again while timed)"
            ),
            "{}",
            rows[0].method
        );
        assert_eq!(
            rows[1].outcome,
            Figure::NotMeasured("this machine has 1 CPU".into())
        );
        assert!(matches!(rows[2].outcome, Figure::NotMeasured(_)));
    }
}
