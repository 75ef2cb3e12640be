//! The agent for real: a namespace lab (client, director, three reals on a
//! bridge), `xlb run` in the director, TCP connections through the VIP.

mod common;

use aya::maps::{Array, Map, MapData};
use common::xlb_bin;
use lb_common::{REAL_F_PRESENT, RealInfo, map_names};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    http::{HttpConn, get_name},
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn lab(ipv6: bool) -> DrLab {
    xlb_testbed::require_root().unwrap();
    DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        ipv6,
        port: 80,
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap()
}

fn write_config(lab: &DrLab, dir: &Path, mode: &str) -> PathBuf {
    let path = dir.join("xlb.toml");
    // mh-port: IPVS's mh hashes the client address alone; with the port too,
    // one client's connections spread over the reals.
    std::fs::write(
        &path,
        lab.agent_config_with("mh", "dr", mode, "scheduler_flags = [\"mh-port\"]\n"),
    )
    .unwrap();
    path
}

fn bpftool_dump(lab: &DrLab, map: &str) -> serde_json::Value {
    let out = Command::new("bpftool")
        .args([
            "map",
            "dump",
            "pinned",
            &lab.pin_path.join(map).display().to_string(),
            "-j",
        ])
        .output()
        .expect("bpftool installed (cargo xtask setup)");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn xdp_attached(lab: &DrLab) -> bool {
    lab.director
        .run("ip", &["-d", "link", "show", "eth0"])
        .unwrap()
        .contains("prog/xdp")
}

#[test]
fn connections_through_the_vip_reach_every_real_and_stay_put() {
    let lab = lab(false);
    let dir = common::test_dir("v4");
    let config = write_config(&lab, &dir, "native");
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert!(xdp_attached(&lab));

    // New connections spread over all three reals.
    let seen = lab.spread(60, TIMEOUT).unwrap();
    assert_eq!(seen.len(), 3, "not every real was used: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 60);

    // Long-lived connections each keep their real, even after the Maglev
    // table is rewritten to point every new flow elsewhere.
    let mut conns: Vec<(HttpConn, String)> = (0..6)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let first = c.ask().unwrap();
            (c, first)
        })
        .collect();
    let maglev = MapData::from_pin(lab.pin_path.join("MAGLEV")).unwrap();
    let mut maglev: Array<MapData, u32> = Map::from_map_data(maglev).unwrap().try_into().unwrap();
    let table: Vec<u32> = maglev.iter().map(Result::unwrap).collect();
    let target = table[0];
    for (slot, &rid) in table.iter().enumerate() {
        if rid != target && rid != 0 {
            maglev.set(slot as u32, target, 0).unwrap();
        }
    }
    for (c, first) in &mut conns {
        for _ in 0..5 {
            assert_eq!(
                &c.ask().unwrap(),
                first,
                "connection {} changed real",
                c.local_addr()
            );
        }
    }
    let after = lab.spread(10, TIMEOUT).unwrap();
    assert_eq!(
        after.len(),
        1,
        "new connections should all follow the rewritten table: {after:?}"
    );

    // bpftool shows named fields, thanks to BTF.
    let ct = bpftool_dump(&lab, "CONNTRACK");
    let entry = &ct.as_array().unwrap()[0]["formatted"];
    for field in ["src", "dst", "sport", "dport", "proto", "family"] {
        assert!(
            entry["key"].get(field).is_some(),
            "CONNTRACK key lacks {field}: {entry}"
        );
    }
    for field in ["real_id", "service_id", "created_ns"] {
        assert!(
            entry["value"].get(field).is_some(),
            "CONNTRACK value lacks {field}: {entry}"
        );
    }
    let svc = bpftool_dump(&lab, "SERVICES");
    let entry = &svc.as_array().unwrap()[0]["formatted"];
    assert_eq!(entry["key"]["port"], serde_json::json!(80u16.to_be()));
    for field in ["id", "flags", "sched", "method"] {
        assert!(
            entry["value"].get(field).is_some(),
            "SERVICES value lacks {field}: {entry}"
        );
    }

    // xlb status: the service, each real with its weight, and counters.
    let status = lab.status(&xlb_bin()).unwrap();
    assert!(status.contains("TCP  10.250.0.100:80 mh"), "{status}");
    for r in &lab.reals {
        let line = status
            .lines()
            .find(|l| l.contains(&format!("-> {}:80", r.addr)))
            .unwrap_or_else(|| panic!("{} missing:\n{status}", r.addr));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[2], "Route", "{line}");
        assert_eq!(cols[3], r.weight.to_string(), "{line}");
        // Forward Weight ActiveConn InActConn, then Conns.
        assert!(
            cols[6].parse::<u64>().unwrap() > 0,
            "no connections counted: {line}"
        );
    }

    // xlb ipvsadm: the same maps as ipvsadm -L -n prints IPVS's state.
    let out = std::process::Command::new(xlb_bin())
        .args(["ipvsadm", "-L", "-n", "--pin-path"])
        .arg(&lab.pin_path)
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    // The header's size is the flow table's capacity, as IPVS's is its
    // connection table's.
    let size = MapData::from_pin(lab.pin_path.join(map_names::CONNTRACK))
        .unwrap()
        .info()
        .unwrap()
        .max_entries();
    let mut want = format!(
        "IP Virtual Server version 1.2.1 (size={size})\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.250.0.100:80 mh (mh-port)\n",
    );
    for r in &lab.reals {
        // The connection counts as xlb status read them (the held connections are idle).
        let cols: Vec<String> = status
            .lines()
            .find(|l| l.contains(&format!("-> {}:80", r.addr)))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        want.push_str(&format!(
            "  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n",
            format!("{}:80", r.addr),
            "Route",
            r.weight,
            cols[4],
            cols[5]
        ));
    }
    assert_eq!(listing, want, "{}", String::from_utf8_lossy(&out.stderr));

    // --tun-info: DR reals have no tunnel; -Z zeroes the counters.
    let pin = lab.pin_path.display().to_string();
    let ipvsadm =
        |args: &[&str]| common::xlb(&[&["ipvsadm"], args, &["--pin-path", &pin]].concat());
    let tun = ipvsadm(&["-Ln", "--tun-info"]);
    assert!(
        tun.contains(
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
        ),
        "{tun}"
    );
    assert_eq!(
        tun.matches(" Route   n/a           ").count(),
        lab.reals.len(),
        "{tun}"
    );
    let svc_conns = |stats: &str| -> u64 {
        let line = stats
            .lines()
            .find(|l| l.starts_with("TCP  10.250.0.100:80"))
            .unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert!(svc_conns(&ipvsadm(&["-Ln", "--stats"])) > 0);
    assert_eq!(ipvsadm(&["-Z"]), "");
    assert_eq!(svc_conns(&ipvsadm(&["-Ln", "--stats", "--exact"])), 0);

    drop(conns);
    agent.stop().unwrap();
    assert!(!xdp_attached(&lab), "XDP still attached after SIGTERM");
    assert!(
        !lab.pin_path.join("SERVICES").exists(),
        "maps still pinned after SIGTERM"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The egress interface's MAC of every real in the pinned `REALS` map.
fn real_src_macs(lab: &DrLab) -> Vec<[u8; 6]> {
    let reals = MapData::from_pin(lab.pin_path.join(map_names::REALS)).unwrap();
    let reals: Array<MapData, RealInfo> = Map::from_map_data(reals).unwrap().try_into().unwrap();
    reals
        .iter()
        .map(Result::unwrap)
        .filter(|r| r.flags & REAL_F_PRESENT != 0)
        .map(|r| r.src_mac)
        .collect()
}

/// The director's `eth0` MAC, as `ip` shows it in its namespace.
fn director_mac(lab: &DrLab) -> [u8; 6] {
    let text = lab
        .director
        .run("ip", &["-br", "link", "show", "dev", "eth0"])
        .unwrap();
    let mac = text.split_whitespace().nth(2).unwrap();
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// The frame's new source MAC travels with each real (`RealInfo::src_mac`,
/// no per-packet interface lookup): a new MAC on the director's interface
/// reaches every real at the agent's next next-hop pass, and connections
/// keep flowing.
#[test]
fn a_new_mac_on_the_director_reaches_every_real() {
    let lab = lab(false);
    let dir = common::test_dir("mac");
    let config = write_config(&lab, &dir, "native");
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let old = director_mac(&lab);
    assert_eq!(real_src_macs(&lab), vec![old; 3]);

    let new = [0x02, 0x5a, 0x00, 0x00, 0x00, 0x01];
    lab.director
        .run(
            "ip",
            &["link", "set", "dev", "eth0", "address", "02:5a:00:00:00:01"],
        )
        .unwrap();
    assert_eq!(director_mac(&lab), new);
    // Next hops are looked up again every 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while real_src_macs(&lab) != vec![new; 3] {
        assert!(
            Instant::now() < deadline,
            "reals still carry {:02x?} after 30 s",
            real_src_macs(&lab)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = lab.spread(30, TIMEOUT).unwrap();
    assert_eq!(seen.values().sum::<usize>(), 30);
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Also covers generic (skb) mode and the kernel's aya-log records reaching
/// the agent's log at debug level.
#[test]
fn ipv6_in_generic_mode_with_kernel_logs() {
    let lab = lab(true);
    let dir = common::test_dir("v6");
    let config = write_config(&lab, &dir, "generic");
    let agent = Agent::start_with(
        &lab.director,
        &xlb_bin(),
        &config,
        &["--log-level", "debug"],
    )
    .unwrap();
    assert!(
        lab.director
            .run("ip", &["-d", "link", "show", "eth0"])
            .unwrap()
            .contains("xdpgeneric")
    );
    let seen = lab.spread(45, TIMEOUT).unwrap();
    assert_eq!(seen.len(), 3, "not every real was used: {seen:?}");
    // The log ring is read asynchronously; allow it a moment (bounded).
    let mut flows = 0;
    for _ in 0..50 {
        flows = agent
            .log()
            .iter()
            .filter(|l| l.contains("new flow on service 0 -> real"))
            .count();
        if flows >= 45 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        flows >= 45,
        "only {flows} kernel log lines for 45 new connections"
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn keep_dataplane_leaves_forwarding_running_and_the_next_agent_takes_over() {
    let lab = lab(false);
    let dir = common::test_dir("keep");
    let config = write_config(&lab, &dir, "native");
    let mut child = lab
        .director
        .command(xlb_bin())
        .args(["run", "--keep-dataplane", "--config"])
        .arg(&config)
        .arg("--pid-file")
        .arg(dir.join("xlb.pid"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for forwarding, then stop the agent.
    let mut ok = false;
    for _ in 0..100 {
        if get_name(&lab.client, lab.vip_socket(), Duration::from_millis(300)).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "agent never forwarded");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // No agent, yet the VIP still answers and the maps are still there.
    assert!(xdp_attached(&lab));
    assert_eq!(lab.spread(9, TIMEOUT).unwrap().values().sum::<usize>(), 9);
    assert!(lab.pin_path.join("CONNTRACK").exists());

    // A new agent replaces what was left and cleans up on exit.
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert_eq!(lab.spread(6, TIMEOUT).unwrap().values().sum::<usize>(), 6);
    agent.stop().unwrap();
    assert!(!xdp_attached(&lab));
    assert!(!lab.pin_path.exists() || std::fs::read_dir(&lab.pin_path).unwrap().next().is_none());
    let _ = std::fs::remove_dir_all(dir);
}
