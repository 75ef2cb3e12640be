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
    net::SocketAddr,
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
        peer_xdp: Some((
            xlb::EBPF_OBJECT_PATH.into(),
            lb_common::PROG_PASS.to_string(),
        )),
        ..LabOptions::default()
    })
    .unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("xlb-test-{}-reload", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xlb.toml");
    let pid_file = dir.join("xlb.pid").display().to_string();
    std::fs::write(&path, config(&lab, &dir, &[1, 2, 3], false)).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
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
    let out = xlb(&["reload", "--pid-file", &pid_file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
