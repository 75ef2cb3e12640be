//! Live forwarding inside the qemu guest (tests/src/qemu.rs), where the
//! kernel has IPVS: the live section's topology (`live.rs`: gen, director
//! and real namespaces on veth, the same generator and counter) built once
//! inside the guest, with the director being the kernel's IPVS (DR,
//! programmed by xlb's IPVS data plane) and then xlb's XDP (DR, native on
//! veth). The guest is emulated (TCG), so both figures are slow alike and
//! only their ratio counts.
//!
//! The host copies this very xtask binary into the guest, whose job runs its
//! hidden `bench-guest-inner` command; that prints one line per case on
//! stdout, which the host reads back.

use super::{
    Progress,
    live::{self, Artefacts, Forwarder, Topology},
    report::{Row, Section},
    stats::Summary,
};
use anyhow::{Context, Result, bail, ensure};
use std::{path::PathBuf, sync::atomic::AtomicBool, time::Duration};
use xlb_testbed::qemu::Guest;

pub const IPVS: &str = "IPVS DR, qemu guest";
pub const XLB: &str = "xlb DR, qemu guest";

/// The guest's cases, in the order they run; the second is reported as a
/// ratio to the first.
const CASES: [(&str, Forwarder); 2] = [(IPVS, Forwarder::IpvsDr), (XLB, Forwarder::XlbDr)];

/// Where the host's files are in the guest.
const FLOOR: &str = "/bench/bench-floor";
const OBJECT: &str = "/bench/xlb-ebpf";
/// Marks the lines of the inner command's results on stdout.
const ROW: &str = "xlb-guest-bench-row";
const FAILED: &str = "xlb-guest-bench-failed";
/// Marks the line with the guest kernel's release.
const KERNEL: &str = "xlb-guest-bench-kernel";

/// The inner command, run inside the guest.
#[derive(clap::Args)]
pub struct InnerArgs {
    #[arg(long)]
    xlb: PathBuf,
    #[arg(long)]
    floor: PathBuf,
    #[arg(long)]
    object: PathBuf,
    #[arg(long)]
    runs: usize,
    #[arg(long)]
    seconds: f64,
}

/// Inside the guest: both cases on one topology, one line each on stdout:
/// `ROW <case index> <share delivered> <Mpps of each run>…`, or
/// `FAILED <case index> <why>` when the case could not run (the other still does).
pub fn inner(args: &InnerArgs) -> Result<()> {
    let topo = Topology::build(&args.floor)?;
    let art = Artefacts {
        xlb: &args.xlb,
        xlb_object: &args.object,
        floor_object: &args.floor,
    };
    let opts = live::Opts {
        runs: args.runs,
        seconds: args.seconds,
    };
    let never = AtomicBool::new(false);
    for (i, (name, forwarder)) in CASES.iter().enumerate() {
        match live::measure_one_cpu(&topo, &art, *forwarder, &opts, &never) {
            Ok((summary, delivered)) => {
                let runs: Vec<String> = summary.runs.iter().map(|r| format!("{r:e}")).collect();
                println!("{ROW} {i} {delivered:e} {}", runs.join(" "));
            }
            Err(e) => {
                let e = format!("{e:#}");
                eprintln!("guest case {name}: {e}");
                println!("{FAILED} {i} {}", short_reason(&e));
            }
        }
    }
    Ok(())
}

/// One line of an error for the table: the first line without a verifier
/// log, plus the verifier's verdict (its line before "verification time").
fn short_reason(e: &str) -> String {
    let first = e.lines().next().unwrap_or_default();
    let head = first.split(" Verifier output:").next().unwrap_or(first);
    let lines: Vec<&str> = e.lines().collect();
    let verdict = lines
        .iter()
        .position(|l| l.starts_with("verification time"))
        .and_then(|i| i.checked_sub(1))
        .map(|i| format!(": {}", lines[i].trim()));
    format!("{head}{}", verdict.unwrap_or_default())
}

/// What [`inner`] reported for one case: (Mpps per run, share delivered),
/// or why the case did not run.
type Figures = Result<(Vec<f64>, f64), String>;

/// Each case's [`Figures`], by case index.
fn parse(stdout: &str) -> Result<Vec<Figures>> {
    let mut out: Vec<Option<Figures>> = vec![None; CASES.len()];
    for line in stdout.lines() {
        let mut f = line.splitn(3, ' ');
        let (tag, index, rest) = (f.next(), f.next(), f.next().unwrap_or_default());
        if tag != Some(ROW) && tag != Some(FAILED) {
            continue;
        }
        let i: usize = index
            .and_then(|i| i.parse().ok())
            .filter(|&i| i < CASES.len())
            .with_context(|| format!("a result line for no case: {line}"))?;
        if tag == Some(FAILED) {
            out[i] = Some(Err(rest.to_string()));
            continue;
        }
        let nums: Vec<f64> = rest
            .split_whitespace()
            .map(str::parse::<f64>)
            .collect::<Result<_, _>>()
            .with_context(|| format!("a malformed result line: {line}"))?;
        ensure!(nums.len() >= 2, "a result line without runs: {line}");
        out[i] = Some(Ok((nums[1..].to_vec(), nums[0])));
    }
    out.into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("the guest reported nothing for {}", CASES[i].0)))
        .collect()
}

/// On the host: boots the guest, runs both cases and returns their rows
/// (xlb as a ratio to IPVS).
pub fn run(opts: &live::Opts, art: &Artefacts<'_>, progress: &mut Progress) -> Result<Vec<Row>> {
    progress.step(Section::Live, "qemu guest: IPVS, then xlb, DR on veth");
    let me = std::env::current_exe().context("locating the xtask binary")?;
    let name = me
        .file_name()
        .context("the xtask binary has no file name")?
        .to_string_lossy()
        .into_owned();
    let script = format!(
        "echo {KERNEL} $(uname -r)\n{name} bench-guest-inner --xlb /usr/local/bin/xlb --floor {FLOOR} --object {OBJECT} \
         --runs {} --seconds {}\n",
        opts.runs, opts.seconds
    );
    // Each generator call sends 2^17 frames whatever the run length, and
    // an emulated guest sends them slowly: allow minutes.
    let out = Guest::new(script)
        .program(&me)
        .program(art.xlb)
        .program("ip")
        .file(art.floor_object, FLOOR)
        .file(art.xlb_object, OBJECT)
        .modules(&["ip_vs", "ip_vs_mh", "veth"])
        .memory_mib(1536)
        .timeout(Duration::from_secs(600))
        .run()?;
    if out.status != 0 {
        bail!("the guest bench failed\n{out}");
    }
    let figures = parse(&out.stdout).with_context(|| format!("{out}"))?;
    let kernel = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(KERNEL))
        .map_or("?", str::trim);
    let mut rows = Vec::new();
    let mut base = None;
    for ((name, _), figures) in CASES.iter().zip(figures) {
        let (runs, delivered) = match figures {
            Ok(f) => f,
            Err(why) => {
                progress.done(&format!("{name}: not measured: {why}"));
                let why = format!("failed in the guest (kernel {kernel}): {why}");
                rows.push(Row::not_measured(Section::Live, name, "Mpps", &why));
                continue;
            }
        };
        let summary = Summary::of(&runs).context("no runs")?;
        progress.done(&format!(
            "{name}: {:.4} Mpps, {:.1}% of sent frames arrived",
            summary.median,
            delivered * 100.0
        ));
        let median = summary.median;
        let mut row = Row::measured(Section::Live, name, "Mpps", summary).method(format!(
            "emulated (TCG) guest, kernel {kernel}, 1 vCPU: UDP, {} flows, 60-byte frames, {} runs x {:.1} s, {:.1}% of sent frames arrived",
            live::FLOWS_PER_CPU,
            opts.runs,
            opts.seconds,
            delivered * 100.0
        ));
        if *name == XLB {
            row = row.ratio_to(IPVS, base);
        } else {
            base = Some(median);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The rows when the guest does not run.
pub fn skipped(why: &str) -> Vec<Row> {
    CASES
        .iter()
        .map(|(name, _)| Row::not_measured(Section::Live, name, "Mpps", why))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_come_back_by_case() {
        let out = "noise\nxlb-guest-bench-row 1 9.5e-1 2e-2 3e-2\nxlb-guest-bench-failed 0 no IPVS here\n";
        let got = parse(out).unwrap();
        assert_eq!(
            got,
            vec![
                Err("no IPVS here".to_string()),
                Ok((vec![0.02, 0.03], 0.95))
            ]
        );
    }

    #[test]
    fn a_missing_case_or_a_bad_line_is_an_error() {
        let e = parse("xlb-guest-bench-row 0 1 0.5\n").unwrap_err();
        assert!(e.to_string().contains(XLB), "{e}");
        assert!(parse("xlb-guest-bench-row 0 x 0.5\n").is_err());
        assert!(parse("xlb-guest-bench-row 5 1 0.5\n").is_err());
        assert!(parse("xlb-guest-bench-row 0 1\n").is_err());
    }

    #[test]
    fn a_verifier_rejection_is_one_line_with_its_verdict() {
        let e = "agent failed: rejected. Verifier output: 0: R1=ctx\n1: r0 += r3\nmath on pkt pointer\nverification time 5 usec\nstack depth 8";
        assert_eq!(
            short_reason(e),
            "agent failed: rejected.: math on pkt pointer"
        );
        assert_eq!(short_reason("plain"), "plain");
    }
}
