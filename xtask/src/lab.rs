//! `cargo xtask lab`: a client, a director running the agent, and three real
//! servers (weights 1, 2, 3) in network namespaces; HTTP requests through the
//! VIP show where the director sends them. Everything is removed at the end,
//! on failure and on Ctrl-C. With `--failover`, two directors in one VRRP
//! group and the Master taken away half-way (`lab/failover.rs`).

mod failover;

use crate::{build, setup::Need};
use anyhow::{Context, Result, bail};
use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};
use xlb_testbed::{
    agent::Agent,
    http::get_name,
    lab::{DrLab, LabMethod, LabOptions},
};

#[derive(clap::Args)]
pub struct Args {
    /// Forwarding method: dr (one bridge), nat (two-armed director, reals
    /// routing through it) or tun (reals unwrap with `xlb decap`).
    #[arg(long, default_value = "dr", value_parser = ["dr", "nat", "tun"])]
    method: String,
    /// LVS scheduler. wrr's default shows the weights exactly: 50/100/150
    /// of 300. With one client sending one connection at a time, some pick
    /// one real every time (see the summary line).
    #[arg(long, default_value = "wrr", value_parser = SCHEDULERS)]
    scheduler: String,
    /// Use IPv6 for every address and the VIP.
    #[arg(long)]
    ipv6: bool,
    /// How many HTTP requests (each a new connection) to send.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    requests: u32,
    /// XDP attach mode for the agent (native, generic, auto).
    #[arg(long, default_value = "auto")]
    xdp_mode: String,
    /// Leave the lab up after the requests and print how to enter it; Ctrl-C removes it.
    #[arg(long)]
    keep: bool,
    /// Where the agent pins its maps (another directory lets labs run side by side).
    #[arg(long, default_value = "/sys/fs/bpf/xlb")]
    pin_path: PathBuf,
    /// Two directors in one VRRP group (DR, mh, IPv4); the Master is taken
    /// away half-way through the requests (SIGKILL and its link cut: the host dies).
    #[arg(
        long,
        conflicts_with_all = ["keep", "ipv6", "method", "scheduler", "xdp_mode", "pin_path"]
    )]
    failover: bool,
    /// With --failover: stop the Master with SIGTERM (it sends priority 0) instead.
    #[arg(long, requires = "failover")]
    sigterm: bool,
    /// With --failover: the VRRP version (2 or 3).
    #[arg(long, requires = "failover", default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    vrrp_version: u8,
    /// With --failover: the advert interval in seconds (whole seconds with v2).
    #[arg(long, requires = "failover", default_value_t = 0.1)]
    advert_int: f64,
    /// With --failover: TCP connections held open across the failover.
    #[arg(long, requires = "failover", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=200))]
    connections: u32,
}

/// Every scheduler the agent accepts.
const SCHEDULERS: [&str; 13] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf",
];

/// Which reals the lab's traffic (one client, one VIP, each connection
/// closed before the next opens) must reach under a scheduler.
#[derive(Debug, PartialEq, Eq)]
enum Spread {
    /// Every real answers some requests.
    Every,
    /// One real answers them all: the one named, or any one (a hash).
    One(Option<&'static str>, &'static str),
}

fn spread(scheduler: &str) -> Spread {
    match scheduler {
        "sh" | "mh" => Spread::One(None, "one client address hashes to one real"),
        "dh" => Spread::One(None, "one destination address hashes to one real"),
        "lblc" | "lblcr" => Spread::One(
            None,
            "one destination address stays on its real while that is not overloaded",
        ),
        "fo" => Spread::One(Some("real3"), "the highest weight takes everything"),
        "ovf" => Spread::One(
            Some("real3"),
            "the highest weight takes connections while active <= weight",
        ),
        "sed" => Spread::One(
            Some("real3"),
            "with no connection open, (active + 1) / weight is least for the highest weight",
        ),
        "nq" => Spread::One(Some("real1"), "an idle real first, in list order"),
        _ => Spread::Every,
    }
}

const WEIGHTS: [u32; 3] = [1, 2, 3];
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn work_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xlb-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn run(args: &Args) -> Result<()> {
    xlb_testbed::require_root()?;
    let object = build::ebpf(Need::Lab)?;
    let xlb = build::agent()?;
    let stop = crate::interrupt_flag()?;
    xlb_testbed::sweep_stale()?;
    if args.failover {
        return failover::run(
            &failover::Opts {
                requests: args.requests.max(2),
                connections: args.connections as usize,
                vrrp: xlb_testbed::failover::Vrrp {
                    version: args.vrrp_version,
                    advert_int: args.advert_int,
                },
                how: if args.sigterm {
                    xlb_testbed::failover::Stop::Term
                } else {
                    xlb_testbed::failover::Stop::Kill
                },
            },
            &xlb,
            &object,
            &stop,
        );
    }

    let lab = DrLab::build(&LabOptions {
        weights: WEIGHTS.to_vec(),
        ipv6: args.ipv6,
        port: 80,
        peer_xdp: Some((object, lb_common::PROG_PASS.to_string())),
        method: match args.method.as_str() {
            "nat" => LabMethod::Nat,
            _ => LabMethod::Dr,
        },
        // The lab is for looking around with bpftool: the agent's default unless asked.
        pin_path: args.pin_path.clone(),
        udp_port: None,
        standby_directors: 0,
    })?;
    let dir = work_dir()?;
    let result = drive(args, &lab, &xlb, &dir, &stop);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn drive(args: &Args, lab: &DrLab, xlb: &Path, dir: &Path, stop: &AtomicBool) -> Result<()> {
    let config = dir.join("xlb.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo xtask lab`.\n{}",
            lab.agent_config(&args.scheduler, &args.method, &args.xdp_mode)
        ),
    )?;
    build::run_checked(
        std::process::Command::new(xlb)
            .arg("check")
            .arg("--config")
            .arg(&config),
    )
    .context("the lab's config was refused (see above)")?;
    // TUN reals unwrap the tunnel themselves; this kernel may lack the ipip module.
    let decaps = if args.method == "tun" {
        lab.start_decap(xlb, None)?
    } else {
        Vec::new()
    };
    let agent = Agent::start(&lab.director, xlb, &config)?;

    let vip = lab.vip_socket();
    let mut seen: BTreeMap<String, u32> = lab.reals.iter().map(|r| (r.name.clone(), 0)).collect();
    let mut failed = 0u32;
    let mut last_error = None;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for i in 1..=args.requests {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        match get_name(&lab.client, vip, REQUEST_TIMEOUT) {
            Ok(name) => *seen.entry(name).or_default() += 1,
            Err(e) => {
                failed += 1;
                last_error = Some(e);
            }
        }
        // On a terminal one line redrawn in place; in a log, a line every tenth of the run.
        if tty || i % (args.requests / 10).max(1) == 0 || i == args.requests {
            let dist: Vec<String> = seen.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let line = format!(
                "lab: {i}/{} sent, {failed} failed, {}",
                args.requests,
                dist.join(" ")
            );
            if tty {
                eprint!("\r{line}   ");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
        }
    }
    if tty {
        eprintln!();
    }
    let ok = args.requests - failed;
    let dist: Vec<String> = seen.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let weights: Vec<String> = lab
        .reals
        .iter()
        .map(|r| format!("{}={}", r.name, r.weight))
        .collect();
    eprintln!("lab: weights {}", weights.join(" "));
    println!("lab: {ok}/{} ok, {}", args.requests, dist.join(" "));

    if args.keep {
        eprintln!("\n{}", lab.describe());
        eprintln!(
            "Agent status: nsenter --net={} {} status\nMaps: bpftool map dump pinned /sys/fs/bpf/xlb/SERVICES\nPress Ctrl-C to remove the lab.",
            lab.director.path().display(),
            xlb.display()
        );
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    agent.stop()?;
    for d in decaps {
        d.stop()?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} requests failed; last error: {:#}",
            args.requests,
            last_error.expect("a failure")
        );
    }
    check_spread(&args.scheduler, &seen)
}

/// Whether the requests reached the reals `scheduler` must send them to.
fn check_spread(scheduler: &str, seen: &BTreeMap<String, u32>) -> Result<()> {
    let used: Vec<&str> = seen
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, _)| k.as_str())
        .collect();
    match spread(scheduler) {
        Spread::Every if used.len() < seen.len() => {
            bail!("{scheduler}: real servers never used (every one should be): {used:?} used")
        }
        Spread::Every => {}
        Spread::One(want, why) => {
            let right = used.len() == 1 && want.is_none_or(|w| used[0] == w);
            if !right {
                bail!(
                    "{scheduler} should send everything to {} ({why}); used: {used:?}",
                    want.unwrap_or("one real")
                );
            }
            println!("lab: {scheduler}: one real, as expected: {why}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Lab {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn failover_options_need_failover_and_exclude_the_single_director_ones() {
        use clap::Parser;
        let parse =
            |a: &[&str]| Lab::try_parse_from(std::iter::once("lab").chain(a.iter().copied()));
        let lab = parse(&[
            "--failover",
            "--sigterm",
            "--vrrp-version",
            "2",
            "--advert-int",
            "1",
        ])
        .unwrap();
        assert!(lab.args.failover && lab.args.sigterm);
        assert_eq!((lab.args.vrrp_version, lab.args.advert_int), (2, 1.0));
        assert!(parse(&["--sigterm"]).is_err());
        assert!(parse(&["--advert-int", "1"]).is_err());
        assert!(parse(&["--failover", "--method", "nat"]).is_err());
        assert!(parse(&["--failover", "--keep"]).is_err());
        assert!(parse(&["--failover", "--vrrp-version", "4"]).is_err());
        assert!(parse(&["--failover"]).is_ok());
    }

    #[test]
    fn one_real_schedulers_must_use_exactly_that_real() {
        let seen = |counts: [u32; 3]| -> BTreeMap<String, u32> {
            (1..=3)
                .map(|i| (format!("real{i}"), counts[i - 1]))
                .collect()
        };
        assert!(check_spread("wrr", &seen([50, 100, 150])).is_ok());
        assert!(check_spread("rr", &seen([0, 150, 150])).is_err());
        assert!(check_spread("sh", &seen([0, 300, 0])).is_ok());
        assert!(check_spread("sh", &seen([1, 299, 0])).is_err());
        assert!(check_spread("fo", &seen([0, 0, 300])).is_ok());
        assert!(check_spread("fo", &seen([0, 300, 0])).is_err());
    }
}
