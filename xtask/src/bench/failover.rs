//! Failover (`failover`): two directors in one VRRP group on the DR lab
//! (`xlb_testbed::failover`, shared with `cargo xtask lab --failover`),
//! priorities 150 and 100, the Master taken away (its host dies: SIGKILL
//! and link cut; or SIGTERM: priority 0) while the client sends a UDP probe
//! through the VIP every 10 ms. Figure: the longest silence between two
//! replies once the Master went away. For xlb, 100 TCP connections held
//! open across the failover (DR, mh) are asked again: the share answering.
//! keepalived (no IPVS on this kernel) answers the VIP itself in each
//! director, so its rows compare VRRP alone: election, VIP move, GARP.

use super::{
    Progress,
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, bail};
use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use xlb_testbed::failover::{self, Daemon, FailoverLab, PROBE_EVERY, Pair, Prober, Stop, Vrrp};

pub struct Opts {
    /// Runs per case.
    pub runs: usize,
    /// Only xlb at v3 100 ms.
    pub quick: bool,
    /// TCP connections held across an xlb failover.
    pub connections: usize,
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
    fn name(&self) -> String {
        format!(
            "{}, VRRP{}, {}: traffic stopped",
            self.daemon.name(),
            self.vrrp.label(),
            self.how.name()
        )
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
    let mut medians: Vec<(Case, f64)> = Vec::new();
    for case in cases(opts.quick) {
        let name = case.name();
        if case.daemon == Daemon::Keepalived && !keepalived {
            rows.push(Row::not_measured(
                Section::Failover,
                &name,
                "ms",
                "keepalived is not installed (apt-get install keepalived)",
            ));
            continue;
        }
        progress.step(Section::Failover, &name);
        let mut stopped = Vec::new();
        let mut survived = Vec::new();
        for _ in 0..opts.runs {
            if stop.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            let (ms, share) =
                one_run(&fl, case, xlb, opts.connections, stop).with_context(|| name.clone())?;
            stopped.push(ms);
            survived.extend(share);
        }
        let summary = Summary::of(&stopped).context("no runs")?;
        progress.done(&format!("{:.0} ms (median)", summary.median));
        medians.push((case, summary.median));
        let row = Row::measured(Section::Failover, &name, "ms", summary).method(format!(
            "{} runs; UDP probe every {} ms; {}",
            stopped.len(),
            PROBE_EVERY.as_millis(),
            match case.how {
                Stop::Kill => "host dies: SIGKILL + link cut",
                Stop::Term => "SIGTERM: priority-0 advert",
            }
        ));
        rows.push(row);
        if let Some(s) = Summary::of(&survived) {
            rows.push(
                Row::measured(
                    Section::Failover,
                    &name.replace("traffic stopped", "held connections surviving"),
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
    // xlb's rows as a ratio to keepalived's in the same case.
    for row in &mut rows {
        let Some((case, _)) = medians
            .iter()
            .find(|(c, _)| c.daemon == Daemon::Xlb && c.name() == row.case)
        else {
            continue;
        };
        let base = medians
            .iter()
            .find(|(c, _)| {
                c.daemon == Daemon::Keepalived && c.vrrp == case.vrrp && c.how == case.how
            })
            .map(|(_, m)| *m);
        *row = row.clone().ratio_to("keepalived", base);
    }
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

/// One failover: the pair started, probes flowing, the Master taken away,
/// the Backup's takeover seen; the silence in ms, and for xlb the share (%)
/// of held connections still answering.
fn one_run(
    fl: &FailoverLab,
    case: Case,
    xlb: &Path,
    connections: usize,
    stop: &AtomicBool,
) -> Result<(f64, Option<f64>)> {
    let mut pair = fl.start_pair(case.daemon, case.vrrp, xlb, stop)?;
    let result = measure(fl, &mut pair, case, connections, stop);
    let cleared = fl.clear(pair.backup).and_then(|()| fl.clear(pair.master));
    let got = result?;
    cleared?;
    Ok(got)
}

fn measure(
    fl: &FailoverLab,
    pair: &mut Pair,
    case: Case,
    connections: usize,
    stop: &AtomicBool,
) -> Result<(f64, Option<f64>)> {
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
    if case.daemon == Daemon::Keepalived {
        // keepalived's directors answer themselves: the last reply names the new Master.
        let want = FailoverLab::director_name(1);
        if replies.last().is_none_or(|r| r.1 != want) {
            bail!("the last probe reply did not come from {want}");
        }
    }
    let times: Vec<Instant> = replies.iter().map(|r| r.0).collect();
    let outage = failover::outage(&times, at).context("no probe reply on both sides")?;
    let share = (case.daemon == Daemon::Xlb && connections > 0)
        .then(|| failover::survivors(held) as f64 * 100.0 / connections as f64);
    Ok((outage.stopped.as_secs_f64() * 1e3, share))
}

fn which(program: &str) -> bool {
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
        assert_eq!(
            full[0].name(),
            "xlb, VRRPv3 100 ms, SIGKILL: traffic stopped"
        );
        assert!(
            full.iter()
                .any(|c| c.daemon == Daemon::Keepalived && c.vrrp == V2 && c.how == Stop::Term)
        );
    }
}
