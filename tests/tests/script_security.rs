//! `enable_script_security` as keepalived applies it, against real files
//! and a real agent: every script (here notify and vrrp_script) checked
//! when the config is loaded (an error at its file:line:col, from both
//! front ends, and at reload), and again before each run, so a script that
//! became writable by others, or a symlink re-pointed in a directory that
//! became writable, is refused and logged instead of run as root.

mod common;

use common::{
    vrrp::{Director, ELECTION, FAST, instance},
    xlb_bin,
};
use std::{
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
};
use xlb_testbed::vrrp::{VrrpLab, temp_dir, wait_until};

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory of root's (mode 0755) under `base`.
fn safe_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir_all(&d).unwrap();
    chmod(&d, 0o755);
    d
}

/// A shell script that appends `word` to `out`, mode 0755.
fn script(dir: &Path, name: &str, out: &Path, word: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\necho {word} >> {}\n", out.display())).unwrap();
    chmod(&p, 0o755);
    p
}

/// `xlb check ARGS`: (success, stderr).
fn check(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(xlb_bin())
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unsafe_scripts_are_config_errors_at_their_location() {
    let scratch = temp_dir("sec-check").unwrap();
    let base: &Path = &scratch;
    chmod(base, 0o755);
    let bin = safe_dir(base, "bin");
    let out = base.join("out");
    let notify = script(&bin, "notify.sh", &out, "master");
    chmod(&notify, 0o777);
    // A symlink in a directory anyone may write, to a safe script: the
    // target passes, the place of the link does not.
    let target = script(&bin, "chk.sh", &out, "chk");
    let open = base.join("open");
    std::fs::create_dir_all(&open).unwrap();
    chmod(&open, 0o777);
    let link = open.join("chk.sh");
    symlink(&target, &link).unwrap();

    let toml = base.join("xlb.toml");
    std::fs::write(
        &toml,
        format!(
            "[dataplane]\ninterfaces = [\"eth0\"]\n\n[global]\nenable_script_security = true\n\n\
             [[vrrp_script]]\nname = \"chk\"\nscript = [\"{}\"]\n\n\
             [[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
             priority = 100\nvirtual_ipaddress = [\"10.9.0.100/24\"]\nnotify_master = [\"{}\"]\n",
            link.display(),
            notify.display()
        ),
    )
    .unwrap();
    let (ok, err) = check(&["--config".as_ref(), toml.as_os_str()]);
    assert!(!ok, "xlb check accepted unsafe scripts");
    let shown = toml.display().to_string();
    assert!(
        err.contains(&format!(
            "{shown}:9:10: vrrp_script chk: script {} is unsafe: {} is writable by everyone",
            link.display(),
            open.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:17:17: vrrp_instance VI_1 notify_master: script {} is unsafe: {} is writable by everyone",
            notify.display(),
            notify.display()
        )),
        "{err}"
    );

    let conf = base.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n    enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n    priority 100\n\
             \x20   virtual_ipaddress {{\n        10.9.0.100/24\n    }}\n    notify_master {}\n}}\n",
            notify.display()
        ),
    )
    .unwrap();
    let (ok, err) = check(&["--keepalived-conf".as_ref(), conf.as_os_str()]);
    assert!(!ok, "xlb check accepted an unsafe notify_master");
    assert!(
        err.contains(&format!(
            "{}:11:19: vrrp_instance VI_1 notify_master: script",
            conf.display()
        )) && err.contains("is writable by everyone"),
        "{err}"
    );

    // Without script security both load, as keepalived's would.
    std::fs::write(
        &toml,
        std::fs::read_to_string(&toml).unwrap().replace(
            "enable_script_security = true",
            "enable_script_security = false",
        ),
    )
    .unwrap();
    let (ok, err) = check(&["--config".as_ref(), toml.as_os_str()]);
    assert!(ok, "{err}");
}

#[test]
fn scripts_that_became_unsafe_after_loading_are_not_run() {
    let lab = VrrpLab::build(1).unwrap();
    let scratch = temp_dir("sec-run").unwrap();
    let base: &Path = &scratch;
    chmod(base, 0o755);
    let bin = safe_dir(base, "bin");
    let links = safe_dir(base, "links");
    let out = base.join("out");
    let flag = base.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let master = script(&bin, "master.sh", &out, "master");
    let fault = script(&bin, "fault.sh", &out, "fault");
    let evil = script(&bin, "evil.sh", &out, "evil");
    let backup = script(&bin, "backup.sh", &out, "backup");
    let fault_link = links.join("fault.sh");
    symlink(&fault, &fault_link).unwrap();
    let body = |backup: &Path| {
        format!(
            "[global]\nenable_script_security = true\n\n\
             [[vrrp_script]]\nname = \"chk\"\nscript = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = 0.2\n\n{}",
            flag.display(),
            instance(
                100,
                &format!(
                    "{FAST}track_script = [{{ name = \"chk\" }}]\nnotify_master = [\"{}\"]\nnotify_fault = [\"{}\"]\nnotify_backup = [\"{}\"]\n",
                    master.display(),
                    fault_link.display(),
                    backup.display()
                )
            )
        )
    };
    let d = Director::start(&lab.nodes[0], base, &body(&backup));
    d.wait_state("MASTER");
    let ran = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_until("notify_master to run", ELECTION, || {
        ran().contains("master")
    })
    .unwrap();

    // Then the scripts change under the running agent: notify_master made
    // writable by everyone, notify_fault's link re-pointed in a directory
    // made writable by everyone.
    chmod(&master, 0o777);
    chmod(&links, 0o777);
    std::fs::remove_file(&fault_link).unwrap();
    symlink(&evil, &fault_link).unwrap();
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&flag).unwrap();
    d.wait_state("FAULT");
    std::fs::write(&flag, "").unwrap();
    d.wait_state("MASTER");
    let refusals = |d: &Director| {
        d.log()
            .iter()
            .filter(|l| l.contains("notify script did not run") && l.contains("is unsafe"))
            .count()
    };
    // Both scripts were due: each either refused or (the bug) run.
    let due = || {
        refusals(&d) + usize::from(ran().contains("master")) + usize::from(ran().contains("evil"))
    };
    wait_until("notify_fault and notify_master to be due", ELECTION, || {
        due() >= 2
    })
    .unwrap();
    // notify_backup (still safe) may have run on the way back.
    for word in ["master", "fault", "evil"] {
        assert!(!ran().contains(word), "{word} ran: {}", ran());
    }
    let log = d.log().join("\n");
    assert!(
        log.contains(&format!("{} is writable by everyone", links.display())),
        "{log}"
    );

    // A reload naming an unsafe script changes nothing, and says where.
    let open = script(&bin, "open.sh", &out, "open");
    chmod(&open, 0o777);
    d.reload(&body(&open));
    let log = d.log().join("\n");
    assert!(
        log.contains("reload: nothing changed") && log.contains("notify_backup: script"),
        "{log}"
    );
}
