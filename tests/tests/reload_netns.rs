//! Reload (SIGHUP via `xlb reload`): a changed weight and a new service are
//! applied while connections to another service stay up, no flow is lost
//! and the untouched service's entry is not rewritten; an invalid file
//! changes nothing and the agent logs where the error is.

mod common;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use common::xlb_bin;
use lb_common::{FlowKey, FlowState, ServiceInfo, ServiceKey};
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    http::{HttpConn, get_name, serve_name},
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);
const HELD: usize = 20;

/// The lab's TCP :80 and UDP :53 services with `udp_weights`, and TCP :8080 when `extra`.
fn config(lab: &DrLab, dir: &Path, udp_weights: &[u32], extra: bool) -> String {
    let mut s = format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n[agent]\npid_file = \"{}\"\n",
        lab.pin_path.display(),
        dir.join("xlb.pid").display()
    );
    let mut services = vec![
        ("tcp", 80, vec![1, 2, 3]),
        ("udp", 53, udp_weights.to_vec()),
    ];
    if extra {
        services.push(("tcp", 8080, vec![1, 1, 1]));
    }
    for (proto, port, weights) in services {
        s.push_str(&format!(
            "\n[[service]]\nvip = \"{}\"\nport = {port}\nprotocol = \"{proto}\"\nscheduler = \"wrr\"\nmethod = \"dr\"\n",
            lab.vip
        ));
        for (r, w) in lab.reals.iter().zip(weights) {
            s.push_str(&format!(
                "\n[[service.real]]\naddress = \"{}\"\nweight = {w}\n",
                r.addr
            ));
        }
    }
    s
}

fn xlb(args: &[&str]) -> Output {
    Command::new(xlb_bin()).args(args).output().unwrap()
}

/// Client port → (service, real, creation time) of every flow in `CONNTRACK`.
fn flows(pin: &Path) -> BTreeMap<u16, (u32, u32, u64)> {
    let data = MapData::from_pin(pin.join("CONNTRACK")).unwrap();
    let map: BpfHashMap<MapData, FlowKey, FlowState> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    map.iter()
        .map(Result::unwrap)
        .map(|(k, v)| {
            (
                u16::from_be(k.sport),
                (v.service_id, v.real_id, v.created_ns),
            )
        })
        .collect()
}

/// Port → `SERVICES` value.
fn services(pin: &Path) -> BTreeMap<(u8, u16), ServiceInfo> {
    let data = MapData::from_pin(pin.join("SERVICES")).unwrap();
    let map: BpfHashMap<MapData, ServiceKey, ServiceInfo> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    map.iter()
        .map(Result::unwrap)
        .map(|(k, v)| ((k.proto, u16::from_be(k.port)), v))
        .collect()
}

/// `xlb status --json` without the counters, which traffic moves.
fn shape(pin: &Path) -> serde_json::Value {
    let out = xlb(&["status", "--json", "--pin-path", &pin.display().to_string()]);
    assert!(out.status.success());
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in v["services"].as_array_mut().unwrap() {
        s["stats"] = serde_json::Value::Null;
        for r in s["reals"].as_array_mut().unwrap() {
            for k in [
                "stats",
                "active_conns",
                "inactive_conns",
                "persistent_conns",
            ] {
                r[k] = serde_json::Value::Null;
            }
        }
    }
    v["services"].clone()
}

fn wait_log(agent: &Agent, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.log().iter().filter(|l| l.contains(needle)).count() < count {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the log: {:#?}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn weight_of(shape: &serde_json::Value, port: u16, real: &str) -> u64 {
    let svc = shape
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == port)
        .unwrap();
    svc["reals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == real)
        .unwrap()["weight"]
        .as_u64()
        .unwrap()
}

#[test]
fn reload_applies_the_difference_and_an_invalid_file_changes_nothing() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        udp_port: Some(53),
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir: PathBuf = common::test_dir("reload");
    let path = dir.join("xlb.toml");
    let pid_file = dir.join("xlb.pid").display().to_string();
    std::fs::write(&path, config(&lab, &dir, &[1, 2, 3], false)).unwrap();
    // The pid file the config names, so `xlb reload --config` finds the agent.
    let run: [&std::ffi::OsStr; 4] = [
        "--config".as_ref(),
        path.as_os_str(),
        "--pid-file".as_ref(),
        pid_file.as_ref(),
    ];
    let never = std::sync::atomic::AtomicBool::new(false);
    let agent = Agent::start_run(
        &lab.director,
        &xlb_bin(),
        &[],
        &run,
        Duration::from_secs(30),
        &never,
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        agent.pid().to_string()
    );
    // The reals also answer on :8080, for the service the reload adds.
    let _extra: Vec<_> = lab
        .reals
        .iter()
        .map(|r| serve_name(&r.ns, SocketAddr::new(lab.vip, 8080), &r.name).unwrap())
        .collect();

    let mut held: Vec<(HttpConn, String)> = (0..HELD)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let flows_before = flows(&lab.pin_path);
    let services_before = services(&lab.pin_path);
    assert!(get_name(&lab.client, SocketAddr::new(lab.vip, 8080), TIMEOUT).is_err());

    // Reload: UDP real1's weight 1 → 5, and a TCP :8080 service.
    std::fs::write(&path, config(&lab, &dir, &[5, 2, 3], true)).unwrap();
    let out = xlb(&["reload", "--config", &path.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_log(&agent, "config reloaded", 1);

    let flows_after = flows(&lab.pin_path);
    for (port, flow) in &flows_before {
        assert_eq!(
            flows_after.get(port),
            Some(flow),
            "flow from port {port} lost or changed"
        );
    }
    let services_after = services(&lab.pin_path);
    let tcp80 = (lb_common::PROTO_TCP, 80);
    assert_eq!(
        services_after[&tcp80], services_before[&tcp80],
        "the unchanged service was rewritten"
    );
    assert_eq!(services_after.len(), 3);
    let shaped = shape(&lab.pin_path);
    let real1 = lab.reals[0].addr.to_string();
    assert_eq!(weight_of(&shaped, 53, &real1), 5);
    assert_eq!(weight_of(&shaped, 80, &real1), 1);
    let name = get_name(&lab.client, SocketAddr::new(lab.vip, 8080), TIMEOUT).unwrap();
    assert!(lab.reals.iter().any(|r| r.name == name));
    for (c, name) in &mut held {
        assert_eq!(&c.ask().unwrap(), name, "{} moved", c.local_addr());
    }

    // An invalid file: `xlb reload --config` refuses to signal, and a
    // SIGHUP anyway leaves everything as it was, the error located in the log.
    let bad = config(&lab, &dir, &[1, 2, 3], false).replace("weight = 3", "weight = -3");
    std::fs::write(&path, &bad).unwrap();
    let line = bad.lines().position(|l| l == "weight = -3").unwrap() + 1;
    let located = format!("{}:{line}:10:", path.display());
    let out = xlb(&["reload", "--config", &path.display().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&located));
    // Signalled anyway, the agent changes nothing and `xlb reload` says so
    // with a failing exit status and the located error.
    let out = xlb(&["reload", "--pid-file", &pid_file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failed reload exited 0: {err}");
    assert!(
        err.contains("reload failed, nothing changed") && err.contains(&located),
        "{err}"
    );
    wait_log(&agent, "nothing changed", 1);
    assert!(
        agent.log().iter().any(|l| l.contains(&located)),
        "{:#?}",
        agent.log()
    );
    assert_eq!(shape(&lab.pin_path), shaped);
    assert_eq!(services(&lab.pin_path), services_after);
    assert!(get_name(&lab.client, SocketAddr::new(lab.vip, 8080), TIMEOUT).is_ok());

    drop(held);
    agent.stop().unwrap();
    assert!(!Path::new(&pid_file).exists(), "pid file left behind");
    let out = xlb(&["reload", "--pid-file", &pid_file]);
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

/// One TCP :80 rr service over `reals` of the lab, with `nodest_policy`.
fn removal_config(lab: &DrLab, policy: &str, reals: &[IpAddr]) -> String {
    let mut s = format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\nnodest_policy = \"{policy}\"\n\n[[service]]\nvip = \"{}\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\n",
        lab.pin_path.display(),
        lab.vip
    );
    for r in reals {
        s.push_str(&format!("\n[[service.real]]\naddress = \"{r}\"\n"));
    }
    s
}

/// Whether `err` (or what caused it) is a connection reset.
fn is_reset(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
    })
}

#[test]
fn a_real_removed_by_reload_takes_no_new_connections_and_its_flows_follow_the_nodest_policy() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir: PathBuf = common::test_dir("reload-remove");
    let path = dir.join("xlb.toml");
    let all: Vec<IpAddr> = lab.reals.iter().map(|r| r.addr).collect();
    let (gone, gone_name) = (all[2], lab.reals[2].name.clone());
    for policy in ["keep", "expire"] {
        std::fs::write(&path, removal_config(&lab, policy, &all)).unwrap();
        let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
        // rr: two held connections on every real.
        let mut held: Vec<(HttpConn, String)> = (0..6)
            .map(|_| {
                let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
                let name = c.ask().unwrap();
                (c, name)
            })
            .collect();
        assert_eq!(
            held.iter().filter(|(_, n)| *n == gone_name).count(),
            2,
            "{policy}: rr did not give {gone_name} two of six connections"
        );

        std::fs::write(&path, removal_config(&lab, policy, &all[..2])).unwrap();
        let pid_file = agent.pid_file().unwrap().display().to_string();
        let out = xlb(&["reload", "--pid-file", &pid_file]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_log(&agent, "config reloaded", 1);

        // New connections never reach the removed real (its server still
        // answers, with its name, if one did).
        let seen = lab.spread(12, TIMEOUT).unwrap();
        assert!(!seen.contains_key(&gone_name), "{policy}: {seen:?}");
        assert_eq!(seen.values().sum::<usize>(), 12);

        let expired_before = lab.nodest_expired(&xlb_bin()).unwrap();
        for (c, name) in &mut held {
            let answer = c.ask();
            if *name != gone_name {
                // The other reals' connections are untouched.
                assert_eq!(&answer.unwrap(), name, "{policy}: {} moved", c.local_addr());
                continue;
            }
            match policy {
                "keep" => assert_eq!(
                    &answer.unwrap(),
                    name,
                    "keep: a connection to the removed real moved"
                ),
                // The packet is dropped and the flow forgotten: the
                // retransmission is scheduled anew, to a real that never saw
                // the handshake and resets the connection.
                _ => {
                    let err = answer.unwrap_err();
                    assert!(is_reset(&err), "expire: {err:#}");
                }
            }
        }
        let status = lab.status(&xlb_bin()).unwrap();
        let draining = format!("draining {gone}:80");
        match policy {
            "keep" => {
                assert!(status.contains(&draining), "{status}");
                assert_eq!(lab.nodest_expired(&xlb_bin()).unwrap(), expired_before);
            }
            _ => {
                assert!(!status.contains(&format!("{gone}:80")), "{status}");
                assert!(
                    lab.nodest_expired(&xlb_bin()).unwrap() >= expired_before + 2,
                    "{status}"
                );
            }
        }
        drop(held);
        agent.stop().unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}
