//! VRRP that never starves (issue 17): the stress lab's loads
//! (`xlb_testbed::stress`), one test each, against a VRRPv3 pair at 100 ms
//! adverts. What is asserted are protocol facts, never timings: during the
//! load neither director changed state, the two never both advertised as
//! Master nor both held the VIP, and the Master answered SIGTERM (it
//! exited within a liveness bound of 30 s). Each test also checks that its
//! load really happened, so a quiet run cannot pass by accident. The
//! figures (advert gaps, scrape times, CPU) are printed; `cargo xtask
//! bench --only stress` runs the full-size loads and reports them.

mod common;

use common::{peer_pass, xlb_bin};
use std::{
    sync::{Mutex, PoisonError, atomic::AtomicBool},
    time::Duration,
};
use xlb_testbed::stress::{AGENT_NOFILE, Figures, Loads, Plan, Reload, StressLab};

/// The flow table the flood fills (the default is 1,048,576).
const CONNTRACK: u32 = 262_144;

/// One load at a time: each run's figures are its own load's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(loads: Loads, conntrack_size: Option<u32>, hold: Duration) -> Figures {
    xlb_testbed::require_root().unwrap();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let lab = StressLab::build(peer_pass()).unwrap();
    let plan = Plan {
        loads,
        conntrack_size,
        hold,
        fill_limit: Duration::from_secs(40),
        sustain_rate: 2_000,
    };
    let what = plan.loads.describe(plan.conntrack());
    let figures = lab.run(&plan, &xlb_bin(), &AtomicBool::new(false)).unwrap();
    eprintln!("{what}:\n{}", figures.describe());
    figures
}

/// What every load must leave true.
fn assert_vrrp_held(f: &Figures) {
    let all = f.describe();
    assert_eq!(
        f.transitions,
        (0, 0),
        "a director changed state during the load:\n{all}"
    );
    assert_eq!(
        f.two_masters,
        Duration::ZERO,
        "both directors advertised as Master:\n{all}"
    );
    assert_eq!(
        f.two_holders,
        Duration::ZERO,
        "both directors held the VIP:\n{all}"
    );
    assert!(
        f.sigterm.is_some(),
        "the Master did not exit within 30 s of SIGTERM:\n{all}"
    );
    assert!(
        f.master_adverts > 0,
        "no advert from the Master heard:\n{all}"
    );
}

#[test]
fn a_full_flow_table_does_not_starve_vrrp() {
    let f = run(
        Loads {
            flood: true,
            ..Loads::default()
        },
        Some(CONNTRACK),
        Duration::from_secs(10),
    );
    let flows = f.flows.unwrap();
    assert!(
        flows >= CONNTRACK as usize / 2,
        "the flood filled {flows} of {CONNTRACK} flows:\n{}",
        f.describe()
    );
    assert_vrrp_held(&f);
}

#[test]
fn lower_priority_adverts_do_not_silence_the_master() {
    // 1,000 valid priority-50 adverts over 5 s, as in the issue.
    let f = run(
        Loads {
            adverts: Some((200, 1_000)),
            ..Loads::default()
        },
        None,
        Duration::from_secs(8),
    );
    assert_eq!(f.crafted_adverts, 1_000, "{}", f.describe());
    assert_vrrp_held(&f);
}

#[test]
fn a_deaf_keepalived_peer_does_not_make_the_pair_flap() {
    // keepalived 2.2.7 in the group, unable to hear it: Master at its lower
    // priority, it advertises ten times a second.
    let f = run(
        Loads {
            keepalived_peer: true,
            ..Loads::default()
        },
        None,
        Duration::from_secs(10),
    );
    assert!(
        f.peer_adverts >= 20,
        "keepalived's adverts were not heard:\n{}",
        f.describe()
    );
    assert_vrrp_held(&f);
}

#[test]
fn concurrent_scrapers_do_not_starve_vrrp() {
    // 200 scrapers, each asking again as soon as it has its answer.
    let f = run(
        Loads {
            scrapers: 200,
            ..Loads::default()
        },
        None,
        Duration::from_secs(10),
    );
    assert!(
        f.scrapes >= 200,
        "the scrapers did not run:\n{}",
        f.describe()
    );
    assert_vrrp_held(&f);
}

#[test]
fn idle_connections_exhaust_neither_descriptors_nor_checks() {
    // More idle connections on the metrics port than the agent has descriptors.
    let idle = AGENT_NOFILE as usize + 76;
    let f = run(
        Loads {
            idle,
            ..Loads::default()
        },
        None,
        Duration::from_secs(8),
    );
    let all = f.describe();
    // Established, whether the agent accepted them or its backlog holds them.
    assert!(
        f.idle_attempted == idle && f.idle_open > AGENT_NOFILE as usize / 2,
        "the idle connections did not open:\n{all}"
    );
    assert_vrrp_held(&f);
    assert!(
        (f.peak_fds as u64) < f.fd_limit,
        "the Master ran out of descriptors:\n{all}"
    );
    assert_eq!(
        f.check_downs, 0,
        "the TCP-checked real (always up) was reported down:\n{all}"
    );
}

#[test]
fn a_hung_check_and_sighup_every_second_do_not_disturb_vrrp() {
    let f = run(
        Loads {
            hung_check: true,
            sighup: Some(Reload::Alternate),
            ..Loads::default()
        },
        None,
        Duration::from_secs(10),
    );
    assert!(f.sighups >= 8, "{}", f.describe());
    assert_vrrp_held(&f);
    assert_eq!(
        f.check_downs,
        0,
        "the TCP-checked real (always up) was reported down:\n{}",
        f.describe()
    );
}
