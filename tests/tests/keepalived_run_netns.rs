//! `xlb run --keepalived-conf FILE` end to end: a keepalived.conf with a
//! VRRP instance and a DR virtual_server (a TCP_CHECK per real) runs in the
//! namespace lab as it is — the Master holds the VIP, traffic is balanced
//! over both reals, a real whose server dies leaves the pool and gets no
//! more traffic, and comes back when it is repaired. The same file
//! converted with `xlb convert` and run as TOML sends every client to the
//! same real (mh hashes the client's address, so the Maglev tables must be
//! the same). And an LVS-only keepalived.conf (no VRRP, no interface)
//! attaches where the kernel routes its reals.

mod check_lab;
mod common;

use check_lab::{TIMEOUT, pool, wait_for};
use common::xlb_bin;
use std::{
    collections::BTreeMap,
    ffi::OsStr,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    sync::atomic::AtomicBool,
    time::Duration,
};
use xlb_testbed::{
    agent::Agent,
    http::{get_name_from, serve_name},
    lab::{DrLab, LabOptions},
};

/// Client addresses the test sends from (the lab's client holds them all).
const CLIENTS: u8 = 20;
const FIRST_CLIENT: u8 = 60;
const READY: Duration = Duration::from_secs(30);

fn keepalived_conf(lab: &DrLab) -> String {
    let real = |addr: IpAddr| {
        format!(
            "    real_server {addr} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 0.5\n            retry 1\n            delay_before_retry 0.2\n        }}\n    }}\n"
        )
    };
    let reals: String = lab.reals.iter().map(|r| real(r.addr)).collect();
    format!(
        "global_defs {{\n    router_id xlb_test\n    vrrp_version 3\n}}\n\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 0.2\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n\n\
         virtual_server {vip} 80 {{\n    delay_loop 0.3\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n\n{reals}}}\n",
        vip = lab.vip
    )
}

fn clients() -> Vec<IpAddr> {
    (FIRST_CLIENT..FIRST_CLIENT + CLIENTS)
        .map(|h| IpAddr::V4(Ipv4Addr::new(10, 250, 0, h)))
        .collect()
}

/// The real that answers a new connection from each client.
fn choices(lab: &DrLab) -> BTreeMap<IpAddr, String> {
    clients()
        .into_iter()
        .map(|c| {
            let name = get_name_from(&lab.client, c, lab.vip_socket(), TIMEOUT)
                .unwrap_or_else(|e| panic!("from {c}: {e:#}"));
            (c, name)
        })
        .collect()
}

/// Whether the director's eth0 holds the VIP.
fn holds_vip(lab: &DrLab) -> bool {
    let out = lab
        .director
        .run("ip", &["-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    out.contains(&format!(" {}/32 ", lab.vip))
}

fn vrrp_state(lab: &DrLab) -> String {
    xlb::vrrp::counters::read(&lab.pin_path)
        .ok()
        .flatten()
        .and_then(|s| s.instances.into_iter().find(|i| i.name == "VI_1"))
        .map(|i| i.state)
        .unwrap_or_default()
}

/// Runs the agent with `source` (the config arguments of `xlb run`), pinned
/// in the lab's directory, through: election, balancing, a real killed and
/// repaired. Returns the client → real choices with both reals up.
fn run_through(lab: &mut DrLab, source: &[&OsStr]) -> BTreeMap<IpAddr, String> {
    let pin = lab.pin_path.clone();
    let mut run = source.to_vec();
    run.extend(["--pin-path".as_ref(), pin.as_os_str()]);
    let never = AtomicBool::new(false);
    let agent = Agent::start_run(&lab.director, &xlb_bin(), &[], &run, READY, &never).unwrap();

    wait_for("VI_1 Master", || vrrp_state(lab) == "MASTER");
    wait_for("the Master to hold the VIP", || holds_vip(lab));
    wait_for("both reals in the pool", || pool(lab).len() == 2);
    let before = choices(lab);
    for r in &lab.reals {
        assert!(
            before.values().any(|n| *n == r.name),
            "{} got no client: {before:?}",
            r.name
        );
    }

    // real2's server dies: its TCP_CHECK fails, it leaves the pool and every
    // client now reaches real1 (a connection to real2 would be refused).
    lab.reals[1].server.stop();
    let dead = lab.reals[1].addr;
    wait_for("real2 out of the pool", || !pool(lab).contains_key(&dead));
    let during = choices(lab);
    assert!(
        during.values().all(|n| *n == lab.reals[0].name),
        "traffic reached the dead real2: {during:?}"
    );

    // Repaired: it comes back and takes its clients back (same Maglev table).
    let bind = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), lab.port);
    lab.reals[1].server = serve_name(&lab.reals[1].ns, bind, &lab.reals[1].name).unwrap();
    wait_for("real2 back in the pool", || pool(lab).len() == 2);
    assert_eq!(choices(lab), before, "clients moved after real2 came back");

    agent.stop().unwrap();
    assert!(!holds_vip(lab), "the stopped agent left the VIP on eth0");
    before
}

#[test]
fn a_keepalived_conf_runs_as_it_is_and_converted_to_toml_alike() {
    xlb_testbed::require_root().unwrap();
    let mut lab = DrLab::build(&LabOptions {
        weights: vec![1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    // VRRP, not the lab, puts the VIP on the director.
    let vip = format!("{}/32", lab.vip);
    lab.director
        .run("ip", &["addr", "del", &vip, "dev", "eth0"])
        .unwrap();
    for c in clients() {
        let cidr = format!("{c}/24");
        lab.client
            .run("ip", &["addr", "add", &cidr, "dev", "eth0"])
            .unwrap();
    }
    let dir = common::test_dir("kaconf");
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(&lab)).unwrap();

    let as_is = run_through(&mut lab, &["--keepalived-conf".as_ref(), conf.as_os_str()]);

    let out = Command::new(xlb_bin())
        .arg("convert")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = dir.join("converted.toml");
    std::fs::write(&toml, &out.stdout).unwrap();
    let converted = run_through(&mut lab, &["--config".as_ref(), toml.as_os_str()]);
    assert_eq!(
        converted, as_is,
        "the converted TOML chose other reals for the same clients"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether XDP is attached to the director's eth0.
fn xdp_attached(lab: &DrLab) -> bool {
    lab.director
        .run("ip", &["-d", "link", "show", "eth0"])
        .unwrap()
        .contains("prog/xdp id ")
}

/// An LVS-only keepalived.conf (virtual servers, no VRRP instance, no
/// interface anywhere) runs as keepalived runs it: the director attaches
/// where the kernel routes the reals (eth0 here) and balances over them. A
/// real with no route at all is an error naming it, and nothing is attached.
#[test]
fn an_lvs_only_keepalived_conf_attaches_where_the_reals_are_routed() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    for c in clients() {
        let cidr = format!("{c}/24");
        lab.client
            .run("ip", &["addr", "add", &cidr, "dev", "eth0"])
            .unwrap();
    }
    let reals: String = lab
        .reals
        .iter()
        .map(|r| {
            format!(
                "    real_server {} 80 {{\n        weight 1\n    }}\n",
                r.addr
            )
        })
        .collect();
    let conf_text = |reals: &str| {
        format!(
            "global_defs {{\n    router_id xlb_test\n}}\n\nvirtual_server {vip} 80 {{\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n{reals}}}\n",
            vip = lab.vip
        )
    };
    let dir = common::test_dir("lvsonly");
    let conf = dir.join("keepalived.conf");
    let pin = lab.pin_path.clone();
    let run: [&OsStr; 4] = [
        "--keepalived-conf".as_ref(),
        conf.as_os_str(),
        "--pin-path".as_ref(),
        pin.as_os_str(),
    ];
    let never = AtomicBool::new(false);

    // A real the director has no route to: refused, named, nothing attached.
    std::fs::write(
        &conf,
        conf_text(&format!("{reals}    real_server 192.0.2.7 80 {{\n    }}\n")),
    )
    .unwrap();
    let err = Agent::start_run(&lab.director, &xlb_bin(), &[], &run, READY, &never)
        .err()
        .expect("a real without a route must stop the start");
    assert!(
        format!("{err:#}").contains("no route to real server 192.0.2.7"),
        "{err:#}"
    );
    assert!(!xdp_attached(&lab), "XDP attached by a failed start");

    std::fs::write(&conf, conf_text(&reals)).unwrap();
    let agent = Agent::start_run(&lab.director, &xlb_bin(), &[], &run, READY, &never).unwrap();
    assert!(
        agent.log().iter().any(|l| l
            .contains("attaching where the route to the real goes")
            && l.contains("eth0")),
        "{:#?}",
        agent.log()
    );
    assert!(xdp_attached(&lab), "no XDP program on eth0");
    let seen = choices(&lab);
    for r in &lab.reals {
        assert!(
            seen.values().any(|n| *n == r.name),
            "{} got no client: {seen:?}",
            r.name
        );
    }
    agent.stop().unwrap();
    assert!(!xdp_attached(&lab), "XDP left attached after SIGTERM");
    let _ = std::fs::remove_dir_all(dir);
}
