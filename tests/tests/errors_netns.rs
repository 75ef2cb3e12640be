//! Errors that say what to do: `xlb run` without root or without a
//! capability names what it needs in one line; /sys/fs/bpf without bpffs
//! and no right to mount one gives the mount command; a bpffs the agent
//! mounts privately (under `ip netns exec`) is a warning naming the pin
//! path; keepalived's `--dont-release-ipvs` is accepted, not answered with
//! a suggestion of `--dont-release-vrrp`.

mod common;

use common::xlb_bin;
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use xlb_testbed::netns::Netns;

/// The unit's capabilities as setpriv's `--bounding-set` (caps_netns.rs
/// checks they are the unit's).
const UNIT_CAPS: &str = "-all,+bpf,+perfmon,+net_admin,+net_raw,+setuid,+setgid,+kill";

/// A config on `lo` with its pins in a directory of this test's own.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("xlb.toml");
    std::fs::write(
        &path,
        format!(
            "[dataplane]\ninterfaces = [\"lo\"]\nxdp_mode = \"generic\"\npin_path = \"/sys/fs/bpf/xlb-test-{}-errors\"\n\n[metrics]\nenabled = false\n\n[agent]\npid_file = \"{}\"\n\n[[service]]\nvip = \"10.251.0.100\"\nport = 80\n\n[[service.real]]\naddress = \"10.251.0.11\"\n",
            std::process::id(),
            dir.join("xlb.pid").display()
        ),
    )
    .unwrap();
    path
}

/// Runs `cmd` to its end (bounded): success and stderr.
fn finish(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_root_or_a_capability_one_line_names_it() {
    xlb_testbed::require_root().unwrap();
    // In a namespace of its own: should a refusal ever not happen, the agent
    // attaches to that namespace's `lo`, not the host's.
    let ns = Netns::create("caps").unwrap();
    let dir = common::test_dir("errors-caps");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = config(&dir);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let xlb = xlb_bin();
    let in_ns = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns.name()]).args(args);
        c
    };
    let nobody = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ];

    // Not root: as ipvsadm's "you must be root", not a lock file's EACCES.
    let (ok, err) = finish(
        in_ns(&nobody)
            .arg(&xlb)
            .args(["run", "--config"])
            .arg(&config),
    );
    assert!(!ok);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("xlb run needs CAP_BPF") && last.contains("not running as root"),
        "{err}"
    );
    assert!(!err.contains("Permission denied"), "{err}");

    // The readers too: one line, not "no XDP maps pinned" (a pin directory
    // nobody may not search looks empty) or a netlink EPERM.
    for cmd in [&["status"][..], &["ipvsadm", "-Ln"]] {
        let (ok, err) = finish(in_ns(&nobody).arg(&xlb).args(cmd));
        assert!(!ok, "{cmd:?}");
        assert_eq!(err.lines().count(), 1, "{cmd:?}: {err}");
        assert!(
            err.contains(&format!(
                "xlb {} needs CAP_BPF (the data plane's pinned maps) and CAP_NET_ADMIN",
                cmd[0]
            )) && err.contains("not running as root"),
            "{cmd:?}: {err}"
        );
    }

    // Root without CAP_PERFMON: named, not a verifier dump.
    let (ok, err) = finish(
        in_ns(&[
            "setpriv",
            "--bounding-set",
            &UNIT_CAPS.replace(",+perfmon", ""),
            "--",
        ])
        .arg(&xlb)
        .args(["run", "--config"])
        .arg(&config),
    );
    assert!(!ok);
    assert!(err.contains("xlb run needs CAP_PERFMON ("), "{err}");
    assert!(!err.contains("CAP_BPF"), "{err}");
    assert!(!err.contains("rejected"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bpffs_missing_gives_the_mount_command_and_a_private_one_a_warning() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("errors").unwrap();
    let dir = common::test_dir("errors-bpffs");
    let config = config(&dir);
    let xlb = xlb_bin();

    // `ip netns exec` mounts a fresh /sys, without bpffs; the unit's
    // capabilities do not include mounting one.
    let (ok, err) = finish(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "setpriv",
                "--bounding-set",
                UNIT_CAPS,
                "--",
            ])
            .arg(&xlb)
            .args(["run", "--config"])
            .arg(&config),
    );
    assert!(!ok);
    assert!(err.contains("mount -t bpf bpf /sys/fs/bpf"), "{err}");

    // As root the agent mounts one, private to that command: it says so.
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&xlb)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let warning = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("private to this mount namespace") => break Some(l),
            Ok(l) if l.contains("xlb forwarding") => {
                seen.push(l);
                break None;
            }
            Ok(l) => seen.push(l),
            Err(_) => break None,
        }
    };
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let warning = warning.unwrap_or_else(|| panic!("no warning: {seen:#?}"));
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(
        warning.contains(&format!(
            "pin_path=/sys/fs/bpf/xlb-test-{}-errors",
            std::process::id()
        )),
        "{warning}"
    );
    assert!(warning.contains("ip netns exec"), "{warning}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dont_release_ipvs_is_keepalived_s_spelling_of_keep_dataplane() {
    let (ok, err) = finish(Command::new(xlb_bin()).args([
        "run",
        "--dont-release-ipvs",
        "--config",
        "/nonexistent/xlb.toml",
    ]));
    assert!(!ok);
    // Refused for the missing file, not for the flag.
    assert!(err.contains("/nonexistent/xlb.toml"), "{err}");
    assert!(!err.contains("dont-release-vrrp"), "{err}");
    assert!(!err.contains("unexpected argument"), "{err}");
}

#[test]
fn status_and_ipvsadm_read_the_pin_path_of_the_config() {
    use xlb_testbed::lab::{DrLab, LabOptions};
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions::default()).unwrap();
    let dir = common::test_dir("errors-status");
    let config = dir.join("xlb.toml");
    std::fs::write(&config, lab.agent_config("wrr", "dr", "generic")).unwrap();
    let agent = xlb_testbed::agent::Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let vip = format!("{}:{}", lab.vip, lab.port);
    for args in [&["status"][..], &["ipvsadm", "-Ln"][..]] {
        let out = Command::new(xlb_bin())
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(&vip),
            "xlb {args:?} --config: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A config that does not load is said, with how to skip it.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[dataplane\n").unwrap();
    let (ok, err) = finish(
        Command::new(xlb_bin())
            .args(["status", "--config"])
            .arg(&bad),
    );
    assert!(!ok);
    assert!(
        err.contains("bad.toml") && err.contains("--pin-path"),
        "{err}"
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
