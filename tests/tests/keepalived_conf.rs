//! keepalived.conf as input: every configuration block of the reference
//! documents (tests/fixtures/keepalived, named after their document) checks
//! and converts to its golden TOML, typos fail with exact located messages
//! beside corrected copies that pass, and converting then reading the TOML
//! gives the same model. Goldens are rewritten with `XLB_BLESS=1`.

mod common;

use common::xlb_bin;
use std::{
    path::{Path, PathBuf},
    process::Command,
};
use xlb::{
    config::{self, emit},
    keepalived::{self, Options},
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/keepalived")
}

/// Fixtures that must pass, and whether they need `--lenient` (they hold
/// keywords xlb refuses, such as the mail alerts of most documents).
const PASSING: &[(&str, bool)] = &[
    ("000-global_defs.conf", true),
    ("000-static.conf", false),
    ("000-vrrp_script-fixed.conf", false),
    ("000-sync_group-instance.conf", true),
    ("000-virtual_server-http_get.conf", false),
    ("000-virtual_server-ssl_get.conf", false),
    ("002-master.conf", false),
    ("002-backup.conf", false),
    ("003-global_defs.conf", true),
    ("003-vrrp_instance.conf", false),
    ("003-include-strict/keepalived.conf", false),
    ("003-ka1-fixed/keepalived.conf", false),
    ("003-ka2-fixed/keepalived.conf", false),
    ("003-nopreempt-master-fixed.conf", false),
    ("003-nopreempt-backup-fixed.conf", false),
    ("003-preempt_delay-master-fixed.conf", false),
    ("003-preempt_delay-backup-fixed.conf", false),
    ("003-unicast-master-fixed.conf", false),
    ("003-unicast-backup-fixed.conf", false),
    ("004-ld1-nat.conf", false),
    ("004-global_defs-fixed.conf", false),
    ("004-global_defs-keywords.conf", true),
    ("004-vrrp_script-keywords.conf", false),
    ("004-sync_group-keywords.conf", true),
    ("004-vrrp_instance-keywords.conf", true),
    ("004-virtual_server-keywords.conf", false),
    ("004-lvs-master.conf", false),
    ("004-lvs-backup.conf", false),
    ("local-plain_services.conf", false),
    ("local-repeated-keywords.conf", false),
];

/// Fixtures kept as the documents wrote them, with a mistake keepalived
/// would ignore; each has a corrected copy in `PASSING`.
const FAILING: &[&str] = &[
    "000-vrrp_script.conf",
    "004-global_defs.conf",
    "003-ka1/keepalived.conf",
    "003-ka2/keepalived.conf",
    "003-nopreempt-master.conf",
    "003-nopreempt-backup.conf",
    "003-preempt_delay-master.conf",
    "003-preempt_delay-backup.conf",
    "003-unicast-master.conf",
    "003-unicast-backup.conf",
    "004-virtual_server-lb_argo.conf",
];

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The interfaces the fixtures name (the documents' director NICs).
const FIXTURE_INTERFACES: [&str; 5] = ["eth0", "eth1", "eth2", "ens33", "eno16777736"];

/// Runs the agent binary in `dir` (so messages name files relative to it).
/// `check` and `run` want the interfaces a file names to exist (as
/// `keepalived -t` does): they run in a namespace of this test that has
/// the fixtures' interfaces (veth pairs: this kernel has no dummy links).
fn xlb(dir: &Path, args: &[&str]) -> Out {
    let host = matches!(args.first(), Some(&"check" | &"run")).then(|| {
        xlb_testbed::require_root().unwrap();
        let ns = xlb_testbed::netns::Netns::create("kconf").unwrap();
        for i in FIXTURE_INTERFACES {
            let peer = format!("{i}-p");
            ns.run(
                "ip",
                &["link", "add", i, "type", "veth", "peer", "name", &peer],
            )
            .unwrap();
        }
        ns
    });
    let mut cmd = match &host {
        Some(ns) => ns.command(xlb_bin()),
        None => Command::new(xlb_bin()),
    };
    let out = cmd.current_dir(dir).args(args).output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `003-ka1/keepalived.conf` → `003-ka1`, `000-static.conf` → `000-static`.
fn stem(fixture: &str) -> String {
    fixture
        .trim_end_matches("/keepalived.conf")
        .trim_end_matches(".conf")
        .to_string()
}

/// Compares `actual` with the golden file, or rewrites it under `XLB_BLESS=1`.
fn golden(name: &str, actual: &str) -> Result<(), String> {
    let path = fixtures().join(name);
    if std::env::var_os("XLB_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path)
        .map_err(|e| format!("{name}: {e} (run with XLB_BLESS=1 to create it)"))?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{name} differs (XLB_BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}"
        ))
    }
}

#[test]
fn every_reference_block_checks_and_converts_to_its_golden_toml() {
    let dir = fixtures();
    let mut failures = Vec::new();
    for &(fixture, lenient) in PASSING {
        let mut args = vec!["check", "--keepalived-conf", fixture];
        if lenient {
            args.push("--lenient");
        }
        let check = xlb(&dir, &args);
        if check.code != Some(0) {
            failures.push(format!("{fixture}: check failed:\n{}", check.stderr));
            continue;
        }
        let warnings = check.stderr;
        if lenient {
            // What --lenient let through is exactly what a strict check
            // refuses; the other warnings (what keepalived corrects) are
            // warnings either way.
            let strict = xlb(&dir, &args[..3]);
            assert_eq!(strict.code, Some(1), "{fixture}: passes without --lenient");
            let let_through: Vec<String> = warnings
                .lines()
                .filter(|l| l.contains(": warning: unsupported keyword"))
                .map(|l| l.replace(": warning: ", ": "))
                .collect();
            assert_eq!(
                strict.stderr.lines().collect::<Vec<_>>(),
                let_through,
                "{fixture}: strict errors differ from lenient warnings"
            );
            assert!(
                !let_through.is_empty(),
                "{fixture}: listed as lenient, lets nothing through"
            );
        }
        let mut convert = vec!["convert", fixture];
        if lenient {
            convert.push("--lenient");
        }
        let toml = xlb(&dir, &convert);
        assert_eq!(toml.code, Some(0), "{fixture}: {}", toml.stderr);
        let stem = stem(fixture);
        failures.extend(golden(&format!("{stem}.toml"), &toml.stdout).err());
        let warnings_file = fixtures().join(format!("{stem}.warnings"));
        if !warnings.is_empty() || warnings_file.exists() {
            failures.extend(golden(&format!("{stem}.warnings"), &warnings).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn document_mistakes_fail_with_exact_messages_beside_passing_corrections() {
    let dir = fixtures();
    let mut failures = Vec::new();
    for fixture in FAILING {
        let out = xlb(&dir, &["check", "--keepalived-conf", fixture, "--lenient"]);
        assert_eq!(out.code, Some(1), "{fixture} passed");
        failures.extend(golden(&format!("{}.errors", stem(fixture)), &out.stderr).err());
        let fixed = format!("{}-fixed", stem(fixture));
        if !fixture.starts_with("004-virtual_server-lb_argo") {
            assert!(
                PASSING.iter().any(|(f, _)| stem(f) == fixed),
                "{fixture} has no corrected copy"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The issue's own example, spelled out.
    let out = xlb(
        &dir,
        &[
            "check",
            "--keepalived-conf",
            "003-ka1/keepalived.conf",
            "--lenient",
        ],
    );
    assert_eq!(
        out.stderr,
        "003-ka1/conf.d/master.conf:14:29: unknown keyword 'laber' in virtual_ipaddress (did you mean 'label'?)\n"
    );
    let out = xlb(
        &dir,
        &[
            "check",
            "--keepalived-conf",
            "004-virtual_server-lb_argo.conf",
        ],
    );
    assert_eq!(
        out.stderr,
        "004-virtual_server-lb_argo.conf:10:3: unknown keyword 'lb_argo' in virtual_server (did you mean 'lb_algo'?)\n"
    );
}

#[test]
fn converting_and_reading_the_toml_gives_the_same_model() {
    let dir = fixtures();
    let mut failures = Vec::new();
    for &(fixture, lenient) in PASSING {
        let opts = Options {
            lenient,
            ..Options::default()
        };
        let a = keepalived::load(&dir.join(fixture), &opts)
            .unwrap_or_else(|e| panic!("{fixture}: {e}"))
            .config;
        let text = emit::to_toml(&a, false);
        match config::parse(&format!("{fixture}.toml"), &text) {
            Ok(b) if a == b => {}
            Ok(b) => failures.push(format!("{fixture}: models differ\n{a:#?}\n{b:#?}")),
            Err(e) => failures.push(format!(
                "{fixture}: the TOML front end refuses the conversion:\n{e}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixtures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `keepalived::parse` (text, no file system; the fuzz target's entry)
/// reads every include-free fixture to the same model as `load`, and
/// refuses `include` with its location.
#[test]
fn text_parse_reads_like_load_and_refuses_include() {
    let dir = fixtures();
    let mut compared = 0;
    for &(fixture, lenient) in PASSING {
        let path = dir.join(fixture);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // a directory with conf.d
        };
        if text.contains("include") {
            continue;
        }
        let opts = Options {
            lenient,
            ..Options::default()
        };
        let a = keepalived::load(&path, &opts).unwrap();
        let b = keepalived::parse(fixture, &text, &opts).unwrap();
        assert_eq!(a.config, b.config, "{fixture}");
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} fixtures compared");
    let e = keepalived::parse(
        "t.conf",
        "global_defs {\n}\n  include x.conf\n",
        &Options::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.conf:3:3: 'include' needs a file, not text"
    );
}

/// A scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("xlb-kconf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    fn file(&self, name: &str, text: &str) -> &Self {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const INSTANCE: &str = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    priority 100\n    virtual_ipaddress {\n        10.0.0.1/24 dev eth0\n    }\n}\n";

#[test]
fn errors_are_exact_located_and_all_reported() {
    let s = Scratch::new("errors");
    let cases: &[(&str, &str)] = &[
        (
            &INSTANCE.replace("priority 100", "priorty 100"),
            "k.conf:4:5: unknown keyword 'priorty' in vrrp_instance (did you mean 'priority'?)\n",
        ),
        (
            &INSTANCE.replace("priority 100", "priority 300"),
            "k.conf:4:14: invalid value '300' for 'priority' (expected an integer 1..=255)\n",
        ),
        (
            &INSTANCE.replace("priority 100", "priority $PRIO"),
            "k.conf:4:14: unknown parameter '$PRIO' (define it with '$PRIO=VALUE' before use)\n",
        ),
        (
            &INSTANCE.replace("dev eth0", "dev eth0 scope galaxy"),
            "k.conf:6:36: invalid value 'galaxy' for 'scope' (expected global, site, link, host or nowhere)\n",
        ),
        (
            INSTANCE.trim_end().trim_end_matches('}'),
            "k.conf:1:1: block 'vrrp_instance' is never closed (missing '}')\n",
        ),
        (
            &format!("{INSTANCE}}}\n"),
            "k.conf:9:1: unexpected '}' (no block is open)\n",
        ),
        (
            "global_defs {\n    enable_traps\n    router_id lb1 lb2\n}\n",
            "k.conf:2:5: unsupported keyword 'enable_traps' (xlb has no SNMP agent)\nk.conf:3:19: 'router_id' takes 1 value, found 2\n",
        ),
        (
            &format!("{INSTANCE}{}", INSTANCE.replace("VI_1", "VI_2")),
            "k.conf:11:23: virtual_router_id 1 on eth0 is already used by vrrp_instance `VI_1` at line 3\n",
        ),
        (
            &format!(
                "vrrp_script chk_web {{\n    script /bin/true\n}}\n{}",
                INSTANCE.replace("priority 100", "track_script {\n        chk_wbe\n    }")
            ),
            "k.conf:8:9: track_script names `chk_wbe`, but no vrrp_script `chk_wbe` is defined (did you mean `chk_web`?)\n",
        ),
        (
            &format!(
                "vrrp_sync_group G {{\n    group {{\n        VI_1\n        VI_9\n    }}\n}}\n{INSTANCE}"
            ),
            "k.conf:4:9: vrrp_sync_group `G` names `VI_9`, but no vrrp_instance `VI_9` is defined (did you mean `VI_1`?)\n",
        ),
        (
            &format!(
                "{INSTANCE}virtual_server group webs {{\n    real_server 10.0.0.2 80 {{\n    }}\n}}\n"
            ),
            "k.conf:9:22: virtual_server group 'webs' names no virtual_server_group\n",
        ),
        (
            &format!(
                "{INSTANCE}virtual_server 10.0.0.1 80 {{\n    lb_kind FULLNAT\n    real_server 10.0.0.2 80 {{\n        HTTP_GET {{\n            url {{\n                path /\n                digest xyz\n            }}\n        }}\n    }}\n}}\n"
            ),
            "k.conf:10:13: invalid value 'FULLNAT' for 'lb_kind' (expected NAT, DR or TUN)\nk.conf:15:24: invalid value 'xyz' for 'digest' (expected hex digits, two per byte)\n",
        ),
        (
            &format!(
                "{INSTANCE}virtual_server 10.0.0.1 80 {{\n    protocol TCP\n    lb_algo wrr\n    real_server 10.0.0.2 80 {{\n        weight 1000000\n    }}\n    real_server 10.0.0.3 80 {{\n        weight 999999\n    }}\n}}\n"
            ),
            "k.conf:9:1: service TCP 10.0.0.1:80: the wrr table needs 1999999 slots but half a Maglev table holds 524286; use smaller weights with the same ratios (this is the largest table xlb builds)\n",
        ),
        (
            "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    authentication {\n        auth_type AH\n        auth_pass 123456789\n    }\n}\n",
            "k.conf:5:19: invalid value 'AH' for 'auth_type' (xlb does not implement IPsec AH, which RFC 3768 removed from VRRP; use PASS on every peer)\n",
        ),
        (
            "vrrp_sync_group G {\n    group {\n        VI_1\n    }\n    notify_master /bin/notify VI_1\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n}\n",
            "k.conf:5:31: unsupported keyword 'notify_master … VI_1' (running one script as its own user; xlb runs scripts as global_defs script_user (quote the command if these words are its arguments))\n",
        ),
        (
            "vrrp_script s {\n    script \"/bin/check\n}\n",
            "k.conf:1:1: vrrp_script 's' has no 'script'\nk.conf:2:12: unterminated quote\n",
        ),
        (
            "vrrp_script s {\n    script \"cat /run/ok | grep -q yes\"\n}\n",
            "k.conf:2:12: '|' is shell syntax: xlb runs scripts without a shell (write \"/bin/sh -c '…'\")\n",
        ),
    ];
    for (text, expected) in cases {
        s.file("k.conf", text);
        let out = xlb(&s.0, &["check", "--keepalived-conf", "k.conf"]);
        assert_eq!(out.code, Some(1), "passed:\n{text}");
        assert_eq!(&out.stderr, expected, "for:\n{text}");
    }
}

#[test]
fn includes_follow_globs_relative_to_the_including_file_and_refuse_cycles() {
    let s = Scratch::new("include");
    s.file(
        "main.conf",
        "global_defs {\n    router_id lb1\n}\ninclude conf.d/*.conf\n",
    )
    .file("conf.d/10-a.conf", INSTANCE)
    .file("conf.d/20-b.conf", "include ../more/b.inc\n")
    .file(
        "more/b.inc",
        &INSTANCE
            .replace("VI_1", "VI_2")
            .replace("router_id 1", "router_id 2")
            .replace("virtual_router_id 1", "virtual_router_id 2"),
    )
    .file("conf.d/notes.txt", "not a config {\n");
    let out = xlb(&s.0, &["convert", "main.conf"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let a = out.stdout.find("name = \"VI_1\"").unwrap();
    let b = out.stdout.find("name = \"VI_2\"").unwrap();
    assert!(a < b, "includes out of order:\n{}", out.stdout);

    s.file("cycle.conf", "include loop/a.conf\n")
        .file("loop/a.conf", "include b.conf\n")
        .file("loop/b.conf", "include a.conf\n");
    let out = xlb(&s.0, &["check", "--keepalived-conf", "cycle.conf"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "loop/b.conf:1:9: include cycle: loop/a.conf -> loop/b.conf -> loop/a.conf\n"
    );

    s.file("none.conf", "include conf.d/*.cfg\n");
    let out = xlb(&s.0, &["check", "--keepalived-conf", "none.conf"]);
    assert_eq!(
        out.stderr,
        "none.conf:1:9: include 'conf.d/*.cfg' matches no file (looked for conf.d/*.cfg)\n"
    );
}

#[test]
fn conditional_lines_and_parameters_expand_as_keepalived_does() {
    let s = Scratch::new("params");
    s.file(
        "k.conf",
        "$IF=eth0\n$VIPS=10.0.0.1/24 dev ${IF} \\\n      10.0.0.2/24 dev $IF label eth0:2\nvrrp_instance VI_1 {\n    interface $IF\n    virtual_router_id 1\n@lb1 priority 150\n@^lb1 priority 50\n    virtual_ipaddress {\n        $VIPS\n    }\n}\n",
    );
    let priority = |id: Option<&str>| {
        let opts = Options {
            config_id: id.map(String::from),
            ..Options::default()
        };
        let c = keepalived::load(&s.0.join("k.conf"), &opts).unwrap().config;
        let i = &c.vrrp.instances[0];
        assert_eq!(i.interface, "eth0");
        let vips: Vec<String> = i
            .virtual_ipaddress
            .iter()
            .map(|a| format!("{}/{} {:?} {:?}", a.address, a.prefix, a.dev, a.label))
            .collect();
        assert_eq!(
            vips,
            [
                "10.0.0.1/24 Some(\"eth0\") None",
                "10.0.0.2/24 Some(\"eth0\") Some(\"eth0:2\")"
            ]
        );
        i.priority
    };
    assert_eq!(priority(Some("lb1")), 150);
    assert_eq!(priority(Some("lb2")), 50);
    assert_eq!(priority(None), 50);
    let out = xlb(&s.0, &["convert", "k.conf", "--config-id", "lb1"]);
    assert!(out.stdout.contains("priority = 150"), "{}", out.stdout);
}

#[test]
fn dump_config_fills_in_every_default() {
    let dir = fixtures();
    let out = xlb(
        &dir,
        &["dump-config", "--keepalived-conf", "004-ld1-nat.conf"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for key in [
        "maglev_table_size = ",
        "conntrack_size = ",
        "preempt = true",
        "advert_int = 1",
        "master_delay = 5",
        "quorum = 1",
        "protocol = \"tcp\"",
    ] {
        assert!(out.stdout.contains(key), "no `{key}` in:\n{}", out.stdout);
    }
    // The same loader serves TOML.
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/dr.toml");
    let out = xlb(&dir, &["dump-config", "-c", example.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("maglev_table_size = "),
        "{}",
        out.stdout
    );
}

#[test]
fn run_and_check_share_the_loader_and_refuse_before_touching_anything() {
    // The agent reads the file before it loads or pins anything, through the
    // same loader as `check`: the same refusal, the same exit code.
    let dir = fixtures();
    let check = xlb(
        &dir,
        &["check", "--keepalived-conf", "003-unicast-master.conf"],
    );
    let run = xlb(
        &dir,
        &["run", "--keepalived-conf", "003-unicast-master.conf"],
    );
    assert_eq!((check.code, run.code), (Some(1), Some(1)));
    // The agent first says what it is and what it reads; then the same refusal.
    let (start, refusal) = run.stderr.split_once('\n').unwrap();
    assert!(
        start.contains("xlb starting version=") && start.contains("config=003-unicast-master.conf"),
        "{start}"
    );
    assert_eq!(check.stderr, refusal);
    assert_eq!(
        refusal,
        "003-unicast-master.conf:14:29: unknown keyword 'laber' in virtual_ipaddress (did you mean 'label'?)\n"
    );
    // --config-id and --lenient belong to keepalived.conf.
    let out = xlb(&dir, &["check", "-c", "x.toml", "--lenient"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "xlb: --config-id and --lenient apply to --keepalived-conf only\n"
    );
}

/// `xlb check --keepalived-conf FILE` in `dir`, killed if it runs past
/// `BOUND` (a reader that blocks or never ends): (exit code, stderr, peak
/// resident memory in KiB).
// The child is reaped by wait4, which also gives its peak memory.
#[allow(clippy::zombie_processes)]
fn check_bounded(dir: &Path, file: &str) -> (Option<i32>, String, i64) {
    const BOUND: std::time::Duration = std::time::Duration::from_secs(60);
    let child = Command::new(xlb_bin())
        .current_dir(dir)
        .args(["check", "--keepalived-conf", file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + BOUND;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("xlb check {file} still running after {BOUND:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut stderr).unwrap();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, stderr, usage.ru_maxrss)
}

#[test]
fn hostile_includes_and_parameter_bombs_fail_fast_at_their_location() {
    let s = Scratch::new("hostile");
    let fifo = s.0.join("pipe.conf");
    mkfifo(&fifo);
    s.file("fifo.conf", "include pipe.conf\n")
        .file("zero.conf", "global_defs {\n}\ninclude /dev/zero\n")
        .file("dir.conf", "include conf.d/*\n")
        .file("conf.d/10.conf", "global_defs {\n}\n")
        .file("conf.d/sub/x.conf", "global_defs {\n}\n");
    for (file, expected) in [
        (
            "fifo.conf",
            "fifo.conf:1:9: cannot read 'pipe.conf': it is a FIFO, not a regular file\n",
        ),
        (
            "zero.conf",
            "zero.conf:3:9: cannot read '/dev/zero': it is a character device, not a regular file\n",
        ),
        (
            "dir.conf",
            "dir.conf:1:9: cannot read 'conf.d/sub': it is a directory, not a regular file\n",
        ),
    ] {
        let (code, stderr, _) = check_bounded(&s.0, file);
        assert_eq!(code, Some(1), "{file}: {stderr}");
        assert_eq!(stderr, expected);
    }
    // The main file is read the same way.
    let (code, stderr, _) = check_bounded(&s.0, "/dev/zero");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("it is a character device"), "{stderr}");

    // Each definition uses the one before twice, over two lines: the last
    // would expand to 2^39 lines. Refused once, where it is used, with
    // bounded memory.
    let mut bomb = String::from(
        "$A0=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
    );
    for k in 1..40 {
        bomb.push_str(&format!("$A{k}=$A{} \\\n$A{}\n", k - 1, k - 1));
    }
    bomb.push_str("global_defs {\n    router_id $A39\n}\n");
    s.file("bomb.conf", &bomb);
    let (code, stderr, peak_kib) = check_bounded(&s.0, "bomb.conf");
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "bomb.conf:81:15: parameters expand to more than 4 Mi characters in all: do definitions use each other over and over?\n"
    );
    assert!(peak_kib < 512 * 1024, "xlb check peaked at {peak_kib} KiB");
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}
