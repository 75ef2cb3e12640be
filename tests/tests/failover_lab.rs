//! The failover lab that `cargo xtask lab --failover` and the bench's
//! failover rows use: two xlb directors in one VRRP group (v3, 100 ms) on
//! the DR lab. The Master's host dies (SIGKILL and link cut), then on the
//! same lab a Master stops cleanly (SIGTERM); each time the Backup takes
//! over, probes through the VIP stop and resume, the Backup heard the
//! Master's adverts (and its priority-0 advert when it stopped), and every
//! held TCP connection still answers. Clearing a director leaves it as it was.

mod common;

use common::xlb_bin;
use std::{
    net::IpAddr,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};
use xlb_testbed::failover::{self, Daemon, FailoverLab, MASTER_PRIORITY, Prober, Stop, Vrrp};

const V3: Vrrp = Vrrp {
    version: 3,
    advert_int: 0.1,
};
const HELD: usize = 20;

fn fail_over(fl: &FailoverLab, how: Stop) {
    let never = AtomicBool::new(false);
    let adverts = fl.watch_adverts(FailoverLab::watch_limit(V3)).unwrap();
    let mut pair = fl.start_pair(Daemon::Xlb, V3, &xlb_bin(), &never).unwrap();
    assert!(fl.holds_vip(0) && !fl.holds_vip(1));
    let held = failover::hold(&fl.lab.client, fl.lab.vip_socket(), HELD).unwrap();
    let probe = Prober::start(&fl.lab.client, fl.probe_target(), Duration::from_secs(60)).unwrap();
    fl.wait_for("probe replies", Duration::from_secs(10), &never, || {
        probe.replies() >= 10
    })
    .unwrap();
    let at = fl.fail(&mut pair.master, how).unwrap();
    fl.wait_takeover(&probe, V3, &never).unwrap();
    assert!(fl.holds_vip(1), "the Backup holds the VIP");
    let (sent, replies) = probe.finish().unwrap();
    let heard = adverts.finish();
    assert!(sent as usize >= replies.len());
    // Every reply comes from a real server: directors only forward.
    assert!(
        replies.iter().all(|r| r.1.starts_with("real")),
        "{replies:?}"
    );
    let times: Vec<Instant> = replies.iter().map(|r| r.0).collect();
    let outage = failover::outage(&times, at).expect("replies before and after");
    assert!(outage.stopped > Duration::ZERO);
    // The Backup heard the Master advertise at its priority, and (SIGTERM)
    // leave with priority 0: the advert the failover is timed from.
    let master = fl.address(0);
    assert!(
        heard.iter().any(|h| IpAddr::V4(h.advert.src) == master
            && h.advert.priority == MASTER_PRIORITY
            && h.advert.version == 3),
        "{heard:?}"
    );
    assert_eq!(
        heard
            .iter()
            .any(|h| IpAddr::V4(h.advert.src) == master && h.advert.priority == 0),
        how == Stop::Term,
        "{heard:?}"
    );
    assert!(
        failover::after_advert(&heard, master, how, at, outage.resumed).is_some(),
        "{heard:?}"
    );
    assert_eq!(
        failover::survivors(held),
        HELD,
        "mh on the new Master sends every held connection to its real"
    );
    fl.clear(pair.backup).unwrap();
    fl.clear(pair.master).unwrap();
    assert!(!fl.holds_vip(0) && !fl.holds_vip(1), "cleared: no VIP left");
    let port = fl
        .lab
        .switch
        .run("ip", &["-o", "link", "show", fl.lab.director_peer_if()])
        .unwrap();
    assert!(port.contains("master br0"), "rejoined the bridge: {port}");
}

#[test]
fn backup_takes_over_when_the_master_dies_then_when_it_stops() {
    xlb_testbed::require_root().unwrap();
    let fl = FailoverLab::build(Some((
        xlb::EBPF_OBJECT_PATH.into(),
        lb_common::PROG_PASS.to_string(),
    )))
    .unwrap();
    fail_over(&fl, Stop::Kill);
    fail_over(&fl, Stop::Term);
}
