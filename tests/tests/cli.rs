//! The `xlb` binary's contract with an operator: bad input is refused with a
//! located message and a non-zero exit, and nothing is applied.

mod common;

use common::xlb_bin;
use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

const GOOD: &str = r#"[dataplane]
interfaces = ["eth0"]

[[service]]
vip = "10.0.0.100"
port = 80

[[service.real]]
address = "10.0.0.11"
weight = 2
"#;

/// Writes `text` to a file of its own: tests run in parallel by default.
fn write(name: &str, text: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("xlb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{n}-{name}"));
    std::fs::write(&p, text).unwrap();
    p
}

fn check(text: &str) -> (bool, String) {
    let path = write("c.toml", text);
    let out = Command::new(xlb_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&path.display().to_string(), "FILE");
    (out.status.success(), stderr)
}

#[test]
fn a_valid_config_checks_out() {
    let (ok, err) = check(GOOD);
    assert!(ok, "{err}");
    for example in ["dr.toml", "tun.toml"] {
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(example);
        let out = Command::new(xlb_bin())
            .args(["check", "--config"])
            .arg(example)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_config_error_names_file_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n",
            "FILE:3:12: unknown xdp_mode `fast`, expected `native`, `generic` or `auto`",
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\nnodest_policy = \"drop\"\n",
            "FILE:3:17: unknown nodest_policy `drop`, expected `keep`, `expire` or `reschedule`",
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\nconn_reuse_mode = 4\n",
            "FILE:3:19: 4 is out of range (0..=3)",
        ),
        (
            "[dataplane]\ninterfaces = [\"eth0\"]\nbogus = 1\n",
            "FILE:3:1: unknown field `bogus`",
        ),
        (
            "[[service]]\nvip = \"10.0.0.1\"\nport = 80\n",
            "FILE:1:1: missing field `dataplane`",
        ),
        (
            &GOOD.replace("vip = \"10.0.0.100\"", "vip = \"10.0.0.300\""),
            "FILE:5:7: vip `10.0.0.300` is not an IP address",
        ),
        (
            &GOOD.replace("port = 80", "port = 70000"),
            "FILE:6:8: port 70000 is out of range (1..=65535)",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nprotocol = \"sctp\""),
            "FILE:7:12: unknown protocol `sctp`, expected `tcp` or `udp`",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nscheduler = \"fastest\""),
            "FILE:7:13: unknown scheduler `fastest`; expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf",
        ),
        (
            &GOOD.replace(
                "port = 80",
                "port = 80\nscheduler = \"wrr\"\nscheduler_flags = [\"sh-port\", \"mh-turbo\"]",
            ),
            "FILE:8:20: flag `sh-port` belongs to scheduler `sh`, not `wrr`",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nscheduler_flags = [\"mh-turbo\"]"),
            "FILE:7:20: unknown scheduler flag `mh-turbo`; expected one of sh-port, sh-fallback, mh-port, mh-fallback",
        ),
        (
            &GOOD.replace(
                "port = 80",
                "port = 80\npersistence_timeout = 300\npersistence_granularity = \"255.0.255.0\"",
            ),
            "FILE:8:27: `255.0.255.0` is not an IPv4 netmask (contiguous ones, such as 255.255.255.0)",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\npersistence_granularity = 24"),
            "FILE:7:27: `persistence_granularity` needs `persistence_timeout`",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\npersistence_timeout = 0"),
            "FILE:7:23: 0 is out of range (1..=31536000)",
        ),
        (
            &GOOD.replace("weight = 2", "weight = 2\nuthreshold = 10\nlthreshold = 20"),
            "FILE:12:14: lthreshold 20 is above uthreshold 10; the real would never take connections again",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nmethod = \"fullnat\""),
            "FILE:7:10: unknown forwarding method `fullnat`; supported: dr, nat, tun",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\ntunnel = \"gue\"\ngue_port = 6080"),
            "FILE:7:10: `tunnel` and `gue_port` apply only to method = \"tun\"",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nmethod = \"tun\"\ntunnel = \"gre\""),
            "FILE:8:10: unknown tunnel `gre`, expected `ipip` or `gue`",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nmethod = \"tun\"\ntunnel = \"gue\""),
            "FILE:8:10: tunnel = \"gue\" needs `gue_port` (the real servers' GUE UDP port)",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nmethod = \"tun\"\ntunnel = \"gue\"\ngue_port = 70000"),
            "FILE:9:12: port 70000 is out of range (1..=65535)",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nmethod = \"tun\"\ngue_port = 6080"),
            "FILE:8:12: `gue_port` applies only to tunnel = \"gue\"",
        ),
        (
            &GOOD.replace("port = 80", "port = 80\nmethod = \"tun\"")
                .replace("weight = 2", "weight = 2\nport = 8080"),
            "FILE:12:8: tunnelling cannot change the port: real server port 8080 differs from the service port 80",
        ),
        (
            &GOOD.replace(
                "interfaces = [\"eth0\"]",
                "interfaces = [\"eth0\"]\ntunnel_source_v4 = \"fd00::1\"\ntunnel_source_v6 = \"nope\"",
            ),
            "FILE:3:20: `tunnel_source_v4` must be an IPv4 address",
        ),
        (
            &GOOD.replace(
                "interfaces = [\"eth0\"]",
                "interfaces = [\"eth0\"]\ntunnel_source_v6 = \"nope\"",
            ),
            "FILE:3:20: `tunnel_source_v6` `nope` is not an IP address",
        ),
        (
            &GOOD.replace("weight = 2", "weight = -1"),
            "FILE:10:10: weight -1 is out of range (0..=2147483647)",
        ),
        (
            &GOOD.replace("weight = 2", "weight = 2\nport = 8080"),
            "FILE:11:8: direct routing cannot change the port: real server port 8080 differs from the service port 80",
        ),
        (
            &GOOD.replace("address = \"10.0.0.11\"", "address = \"fd00::11\""),
            "FILE:9:11: real server fd00::11 is not of the VIP's address family",
        ),
        (
            &format!("{GOOD}\n[[service.real]]\naddress = \"10.0.0.11\"\n"),
            "FILE:12:1: real server 10.0.0.11 port 80 is already listed at line 8",
        ),
        (
            &format!("{GOOD}\n[[service]]\nvip = \"10.0.0.100\"\nport = 80\n"),
            "FILE:12:1: service TCP 10.0.0.100:80 is already defined at line 4",
        ),
        (
            &GOOD.replace(
                "interfaces = [\"eth0\"]",
                "interfaces = [\"eth0\"]\nmaglev_table_size = 65536",
            ),
            "FILE:3:21: `maglev_table_size` must be a prime (such as 65537 or 131071), not 65536",
        ),
        ("[dataplane\n", "FILE:1:11: "),
    ];
    for (text, want) in cases {
        let (ok, err) = check(text);
        assert!(!ok, "accepted:\n{text}");
        assert!(
            err.lines().any(|l| l.starts_with(want)),
            "want `{want}`, got:\n{err}\nfor:\n{text}"
        );
    }
}

#[test]
fn a_tunnel_service_may_cross_address_families() {
    let text = GOOD
        .replace(
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\ntunnel_source_v6 = \"fd00::2\"",
        )
        .replace(
            "port = 80",
            "port = 80\nmethod = \"tun\"\ntunnel = \"gue\"\ngue_port = 6080",
        )
        .replace("address = \"10.0.0.11\"", "address = \"fd00::11\"");
    let (ok, err) = check(&text);
    assert!(ok, "{err}");
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = GOOD
        .replace("port = 80", "port = 0")
        .replace("weight = 2", "weight = 2147483648");
    let (ok, err) = check(&text);
    assert!(!ok);
    assert!(err.contains("FILE:6:8: port 0 is out of range"), "{err}");
    assert!(
        err.contains("FILE:10:10: weight 2147483648 is out of range"),
        "{err}"
    );
}

#[test]
fn a_bad_config_applies_nothing() {
    xlb_testbed::require_root().unwrap();
    let pin = format!("/sys/fs/bpf/xlb-cli-{}", std::process::id());
    let text = GOOD.replace(
        "interfaces = [\"eth0\"]",
        &format!("interfaces = [\"eth0\"]\npin_path = \"{pin}\"\nxdp_mode = \"turbo\""),
    );
    let path = write("bad.toml", &text);
    let out = Command::new(xlb_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":4:12: unknown xdp_mode `turbo`"), "{err}");
    assert!(
        !std::path::Path::new(&pin).exists(),
        "a refused config left pins behind"
    );
}

#[test]
fn bad_command_lines_and_missing_files_fail_clearly() {
    let out = Command::new(xlb_bin())
        .args(["run", "--confg", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));

    // Without --config: /etc/xlb/xlb.toml (absent on test machines).
    if !std::path::Path::new("/etc/xlb/xlb.toml").exists() {
        let out = Command::new(xlb_bin()).args(["check"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("/etc/xlb/xlb.toml: cannot read config")
        );
    }

    let out = Command::new(xlb_bin())
        .args(["check", "--config", "/nonexistent/xlb.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/xlb.toml: cannot read config")
    );

    let out = Command::new(xlb_bin())
        .args(["status", "--pin-path", "/nonexistent/xlb"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the xlb agent running?"));
}
