//! A health change rewrites only its own service: three rr services share
//! three reachable reals, one real of the first has a TCP check the test
//! turns off and on (its listener closes and reopens). Each change must
//! take the real out of (and back into) that service alone, leave the other
//! services' `SERVICES` entries (live buffer included) and real lists as
//! they were, and the agent must report one service written per change.

mod common;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use common::xlb_bin;
use lb_common::{ServiceInfo, ServiceKey, addr_ip};
use std::{
    collections::BTreeMap,
    net::{IpAddr, TcpListener},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use xlb_testbed::{agent::Agent, netns::Netns};

const CHECK_PORT: u16 = 9200;
const VIPS: [&str; 3] = ["10.250.0.1", "10.250.0.2", "10.250.0.3"];
const REALS: [&str; 3] = ["10.200.0.1", "10.200.0.2", "10.200.0.3"];
const APPLIED: &str = "real server health changed: data plane updated";

fn config(pin: &Path) -> String {
    let mut s = format!(
        "[dataplane]\ninterfaces = [\"d0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\n",
        pin.display()
    );
    for (i, vip) in VIPS.iter().enumerate() {
        s.push_str(&format!(
            "\n[[service]]\nvip = \"{vip}\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\ndelay_loop = 1\n"
        ));
        for (r, real) in REALS.iter().enumerate() {
            s.push_str(&format!("[[service.real]]\naddress = \"{real}\"\n"));
            if i == 0 && r == 0 {
                s.push_str(&format!(
                    "[[service.real.check]]\ntype = \"tcp\"\nconnect_ip = \"127.0.0.1\"\nconnect_port = {CHECK_PORT}\nconnect_timeout = 1\nretry = 0\n"
                ));
            }
        }
    }
    s
}

/// VIP → `SERVICES` value.
fn services(pin: &Path) -> BTreeMap<IpAddr, ServiceInfo> {
    let data = MapData::from_pin(pin.join("SERVICES")).unwrap();
    let map: BpfHashMap<MapData, ServiceKey, ServiceInfo> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    map.iter()
        .map(Result::unwrap)
        .map(|(k, v)| (addr_ip(k.addr, k.family), v))
        .collect()
}

/// VIP → addresses of the reals `xlb status --json` lists as members
/// (a real taken out drains: nodest `keep` is the default).
fn members(pin: &Path) -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(xlb_bin())
        .args(["status", "--json", "--pin-path"])
        .arg(pin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let reals = s["reals"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["draining"] == false)
                .map(|r| r["address"].as_str().unwrap().to_string())
                .collect();
            (s["vip"].as_str().unwrap().to_string(), reals)
        })
        .collect()
}

fn wait_applied(agent: &Agent, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.log().iter().filter(|l| l.contains(APPLIED)).count() < count {
        assert!(
            Instant::now() < deadline,
            "no health change applied: {:#?}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_health_change_rewrites_only_its_service() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("hchg").unwrap();
    ns.run(
        "ip",
        &["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
    )
    .unwrap();
    for dev in ["lo", "d0", "d1"] {
        ns.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    ns.run("ip", &["addr", "add", "10.200.0.254/24", "dev", "d0"])
        .unwrap();
    for (i, real) in REALS.iter().enumerate() {
        ns.run(
            "ip",
            &[
                "neigh",
                "replace",
                real,
                "lladdr",
                &format!("02:c0:00:00:00:0{}", i + 1),
                "dev",
                "d0",
                "nud",
                "permanent",
            ],
        )
        .unwrap();
    }
    let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-hchg-{}", std::process::id()));
    let dir = std::env::temp_dir().join(format!("xlb-hchg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xlb.toml");
    std::fs::write(&path, config(&pin)).unwrap();
    let bind = || {
        ns.enter(|| TcpListener::bind(("127.0.0.1", CHECK_PORT)))
            .unwrap()
            .unwrap()
    };
    let listener = bind();

    let agent = Agent::start(&ns, &xlb_bin(), &path).unwrap();
    let all: Vec<String> = REALS.iter().map(|r| r.to_string()).collect();
    let first = members(&pin);
    assert!(first.values().all(|m| *m == all), "{first:?}");
    let before = services(&pin);
    let others = |s: &BTreeMap<IpAddr, ServiceInfo>| -> Vec<ServiceInfo> {
        VIPS[1..].iter().map(|v| s[&v.parse().unwrap()]).collect()
    };

    drop(listener);
    wait_applied(&agent, 1);
    let down = members(&pin);
    assert_eq!(down[VIPS[0]], all[1..], "the failed real left its service");
    assert_eq!(down[VIPS[1]], all);
    assert_eq!(down[VIPS[2]], all);
    let after = services(&pin);
    assert_eq!(others(&after), others(&before), "other services rewritten");
    let vip0: IpAddr = VIPS[0].parse().unwrap();
    assert_ne!(after[&vip0], before[&vip0], "its live buffer flipped");

    let listener = bind();
    wait_applied(&agent, 2);
    assert_eq!(members(&pin), first, "the real came back");
    assert_eq!(others(&services(&pin)), others(&before));
    drop(listener);

    let log = agent.log();
    let applied: Vec<&String> = log.iter().filter(|l| l.contains(APPLIED)).collect();
    assert_eq!(applied.len(), 2, "{applied:#?}");
    assert!(
        applied
            .iter()
            .all(|l| l.contains("services=1") && l.contains("took_us=")),
        "{applied:#?}"
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pin);
    let flat = pin.to_string_lossy().trim_matches('/').replace('/', "_");
    let _ = std::fs::remove_file(format!("/run/xlb/{flat}.lock"));
}
