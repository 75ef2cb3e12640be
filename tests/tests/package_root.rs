//! The Debian package (`cargo xtask package`) installed by dpkg into an
//! empty root: its files, modes and compressed pages are where they belong,
//! `xlb --version` runs, and dpkg runs its maintainer scripts (chrooted into
//! that root) through install, upgrade, removal and purge, keeping an edited
//! config on upgrade and removal. systemd is not running in the root, so
//! `systemctl`, `deb-systemd-helper` and `deb-systemd-invoke` there are
//! stand-ins that record their arguments: the test checks what the scripts
//! ask of systemd, not systemd itself (upgrade_netns.rs plays the restart).
//! `systemd-analyze verify` checks the installed unit with its man pages.

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

/// The package: `XLB_DEB` (set by `cargo xtask test`) or the newest one
/// `cargo xtask package` left in target/release.
fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("XLB_DEB") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("xlb_"))
                && p.extension().is_some_and(|e| e == "deb")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("no xlb_*.deb in target/release: run `cargo xtask package`")
}

/// An empty root dpkg can install into and chroot to: its database, a
/// shell (busybox) and the systemd stand-ins, which append to /calls.
fn empty_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "bin",
        "usr/bin",
        "usr/sbin",
        "sbin",
        "run/systemd/system",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let stub = |path: &str, body: &str| {
        let p = root.join(path);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for tool in ["systemctl", "deb-systemd-helper", "deb-systemd-invoke"] {
        stub(
            &format!("usr/bin/{tool}"),
            &format!("echo \"{tool} $*\" >> /calls"),
        );
    }
    // dpkg wants these on PATH in the root it installs into.
    stub("sbin/ldconfig", "exit 0");
    stub("sbin/start-stop-daemon", "exit 0");
    root
}

fn dpkg(root: &Path, args: &[&str]) {
    let out = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--log=/dev/null"])
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the maintainer scripts asked of systemd since the last call.
fn calls(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("calls")).unwrap_or_default();
    let _ = std::fs::remove_file(root.join("calls"));
    text.lines().map(str::to_string).collect()
}

#[test]
fn dpkg_installs_upgrades_and_removes_the_package_in_an_empty_root() {
    xlb_testbed::require_root().unwrap();
    let deb = deb();
    let dir = common::test_dir("package");
    let root = empty_root(&dir);
    let deb_arg = deb.display().to_string();

    // The package's own metadata.
    let info = Command::new("dpkg-deb")
        .args(["-f", &deb_arg])
        .output()
        .unwrap();
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(info.contains("Package: xlb\n"), "{info}");
    assert!(info.contains("Depends: libc6 (>= "), "{info}");
    assert!(info.contains("Recommends: nftables"), "{info}");

    // Install: files in place, the unit enabled, not started.
    dpkg(&root, &["-i", &deb_arg]);
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("usr/sbin/xlb"), 0o755);
    for f in [
        "lib/systemd/system/xlb.service",
        "etc/xlb/xlb.toml.example",
        "usr/share/doc/xlb/changelog.gz",
        "usr/share/doc/xlb/copyright",
        "usr/share/bash-completion/completions/xlb",
    ] {
        assert_eq!(mode(f), 0o644, "{f}");
    }
    // The daemon's pages in section 8, the files' in section 5.
    for page in [
        "usr/share/man/man8/xlb.8.gz",
        "usr/share/man/man8/xlb-run.8.gz",
        "usr/share/man/man5/xlb.toml.5.gz",
        "usr/share/man/man5/xlb-keepalived.5.gz",
    ] {
        assert_eq!(mode(page), 0o644, "{page}");
    }
    let pages: Vec<PathBuf> = glob_pages(&root);
    assert!(!pages.is_empty(), "no man pages installed");
    for p in &pages {
        assert!(
            p.extension().is_some_and(|e| e == "gz"),
            "{} is not compressed",
            p.display()
        );
    }
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/xlb.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/xlb run"), "{unit}");
    // systemd-analyze verify, man pages included: every page the unit's
    // Documentation= names is installed (the agent's path pointed into the root).
    let verify_unit = dir.join("xlb.service");
    std::fs::write(
        &verify_unit,
        unit.replace(
            "/usr/sbin/xlb",
            &root.join("usr/sbin/xlb").display().to_string(),
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&verify_unit)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/xlb.conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/xlb/xlb.toml.example");
    // Enabled, yet it starts only once the operator has written a config.
    assert!(!root.join("etc/xlb/xlb.toml").exists());
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/xlb.service")).unwrap();
    assert!(
        unit.contains("\nConditionPathExists=/etc/xlb/xlb.toml\n"),
        "{unit}"
    );
    let version = Command::new(root.join("usr/sbin/xlb"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(
        version.starts_with(&format!("xlb {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let installed = calls(&root);
    assert!(
        installed.contains(&"deb-systemd-helper enable xlb.service".to_string()),
        "{installed:?}"
    );
    assert!(installed.contains(&"systemctl --system daemon-reload".to_string()));
    assert!(
        !installed
            .iter()
            .any(|c| c.contains("restart") || c.contains("start xlb")),
        "a first install must not start the example config: {installed:?}"
    );

    // Upgrade (the same package again): the operator's config is kept, a
    // running agent restarted (handing its data plane over), nothing stopped.
    let config = root.join("etc/xlb/xlb.toml.example");
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &edited).unwrap();
    dpkg(&root, &["-i", &deb_arg]);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    let upgraded = calls(&root);
    assert!(
        upgraded.contains(&"deb-systemd-invoke try-restart xlb.service".to_string()),
        "{upgraded:?}"
    );
    assert!(
        !upgraded.iter().any(|c| c.contains(" stop ")),
        "{upgraded:?}"
    );

    // Remove: stopped and disabled, the config kept; purge: the config gone.
    dpkg(&root, &["-r", "xlb"]);
    let removed = calls(&root);
    assert!(
        removed.contains(&"deb-systemd-invoke stop xlb.service".to_string()),
        "{removed:?}"
    );
    assert!(removed.contains(&"deb-systemd-helper disable xlb.service".to_string()));
    assert!(!root.join("usr/sbin/xlb").exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    dpkg(&root, &["-P", "xlb"]);
    assert!(calls(&root).contains(&"deb-systemd-helper purge xlb.service".to_string()));
    assert!(!config.exists(), "purge left the config");
    let _ = std::fs::remove_dir_all(dir);
}

/// Every file under usr/share/man.
fn glob_pages(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join("usr/share/man")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
