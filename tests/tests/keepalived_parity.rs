//! keepalived.conf parity with keepalived 2.2.7 (issue 18): each file that
//! keepalived runs and xlb refused, or read with another meaning, on
//! 77d6f79 now loads with keepalived's meaning; every default of a mapped
//! keyword equals keepalived's as its source sets it
//! (tests/fixtures/keepalived-2.2.7/defaults.txt); `xlb check --coverage`
//! accounts for every keyword of keepalived's own table; `xlb check` finds
//! the missing interfaces `keepalived -t` finds and a keepalived.conf given
//! as TOML; `--config-id` defaults to the host name; `xlb convert`'s output
//! reads back to the same model.

mod common;

use common::xlb_bin;
use std::{net::IpAddr, path::PathBuf, process::Command, time::Duration};
use xlb::{
    config::{
        self, Config, DataplaneKind, Method, Protocol, Scheduler, ServiceId, Tunnel,
        check::{CheckKind, HttpProtocol},
        emit,
        vrrp::InitialState,
    },
    keepalived::{self, Loaded, Options},
};
use xlb_testbed::netns::Netns;

fn load(text: &str) -> Loaded {
    keepalived::parse("k.conf", text, &Options::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn lenient(text: &str) -> Loaded {
    let opts = Options {
        lenient: true,
        ..Options::default()
    };
    keepalived::parse("k.conf", text, &opts).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn warned(l: &Loaded, part: &str) -> bool {
    l.warnings.iter().any(|w| w.message.contains(part))
}

/// `xlb convert`'s TOML reads back, through the TOML front end, to the same model.
fn round_trips(c: &Config) {
    let toml = emit::to_toml(c, false);
    match config::parse("convert.toml", &toml) {
        Ok(back) => assert_eq!(&back, c, "model differs after convert:\n{toml}"),
        Err(e) => panic!("the TOML front end refuses convert's output: {e}\n{toml}"),
    }
}

const INSTANCE: &str = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    priority 100\n    virtual_ipaddress {\n        10.0.0.1/24\n    }\n}\n";

fn vs(body: &str) -> String {
    format!("virtual_server 10.0.0.1 80 {{\n    protocol TCP\n{body}\n}}\n")
}

// --- Refused although keepalived runs them -------------------------------

#[test]
fn a_local_mail_recipient_is_accepted() {
    let l = load(
        "global_defs {\n    notification_email {\n        root\n        ops@example.com\n    }\n    smtp_server 127.0.0.1\n}\n",
    );
    assert_eq!(
        l.config.global.notification_email,
        ["root", "ops@example.com"]
    );
    assert!(warned(&l, "local recipient 'root'"), "{:?}", l.warnings);
    round_trips(&l.config);
}

#[test]
fn virtual_servers_without_vrrp_need_no_interface() {
    // Attached at run time where the routes to the reals go.
    let l = load(&vs("    lb_kind DR\n    real_server 10.0.0.2 80 {\n    }"));
    assert!(l.config.dataplane.interfaces.is_empty());
    assert_eq!(l.config.dataplane.kind, DataplaneKind::Xdp);
    round_trips(&l.config);
    // fwmark: IPVS, nothing to attach to.
    let l = load(
        "virtual_server fwmark 7 {\n    lb_kind DR\n    real_server 10.0.0.2 80 {\n    }\n}\n",
    );
    assert_eq!(l.config.dataplane.kind, DataplaneKind::Ipvs);
    assert!(l.config.dataplane.interfaces.is_empty());
}

#[test]
fn more_services_and_reals_than_the_old_map_sizes_fit() {
    // 100 virtual servers × 50 reals: 100 > 64 services, 5000 > 4096 reals.
    let mut text = String::new();
    for s in 0..100 {
        text.push_str(&format!(
            "virtual_server 10.1.{}.{} 80 {{\n    protocol TCP\n    lb_kind DR\n",
            s / 250,
            s % 250 + 1
        ));
        for r in 0..50 {
            text.push_str(&format!(
                "    real_server 10.2.{s}.{} 80 {{\n    }}\n",
                r + 1
            ));
        }
        text.push_str("}\n");
    }
    let l = load(&text);
    let dp = &l.config.dataplane;
    assert_eq!(l.config.services.len(), 100);
    assert!(dp.max_services >= 100 && dp.max_reals > 5000, "{dp:?}");
    round_trips(&l.config);
}

#[test]
fn keywords_keepalived_accepts_are_never_unknown() {
    let text = "global_defs {\n    vrrp_startup_delay 5\n    max_auto_priority 50\n    dynamic_interfaces\n    process_names\n    umask 022\n    nftables keepalived\n}\n\
vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    promote_secondaries\n    track_src_ip\n    unicast_ttl 10\n    notify_deleted\n    virtual_ipaddress {\n        10.0.0.1/24\n    }\n    virtual_routes {\n        10.5.0.0/16 via 10.0.0.254 onlink\n        10.6.0.0/16 via 10.0.0.254 no_track\n    }\n}\n\
virtual_server 10.0.0.1 80 {\n    protocol TCP\n    inhibit_on_failure\n    weight 2\n    sorry_server 10.0.0.9 80\n    sorry_server_lvs_method NAT\n    real_server 10.0.0.2 80 {\n        alpha\n        virtualhost www.example.com\n        HTTP_GET {\n            log_all_failures\n            url {\n                path /\n                regex ok\n            }\n        }\n    }\n}\n";
    let l = lenient(text);
    let all: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        all.iter().all(|w| !w.contains("unknown keyword")),
        "{all:#?}"
    );
    // Strict: what --lenient let through are "unsupported" errors only.
    let strict = keepalived::parse("k.conf", text, &Options::default()).unwrap_err();
    for e in &strict.0 {
        assert!(e.message.starts_with("unsupported keyword"), "{e}");
    }
    let unsupported: Vec<&str> = strict
        .0
        .iter()
        .map(|e| e.message.split('\'').nth(1).unwrap_or_default())
        .collect();
    for kw in [
        "vrrp_startup_delay",
        "nftables",
        "promote_secondaries",
        "track_src_ip",
        "unicast_ttl",
        "notify_deleted",
        "onlink",
        "regex",
    ] {
        assert!(
            unsupported.contains(&kw),
            "{kw} not refused: {unsupported:?}"
        );
    }
    // The rest is mapped or ignored: inherited real settings, alpha, virtualhost.
    let s = &l.config.services[0];
    let real = &s.reals[0];
    assert!(
        real.lifecycle.inhibit_on_failure,
        "the virtual server's inhibit_on_failure"
    );
    assert_eq!(real.weight, 2, "the virtual server's weight");
    let check = &real.lifecycle.checks[0];
    assert!(check.common.alpha, "the real's alpha");
    let CheckKind::Http(h) = &check.kind else {
        panic!()
    };
    assert_eq!(
        h.virtualhost.as_deref(),
        Some("www.example.com"),
        "the real's virtualhost"
    );
}

#[test]
fn syntax_keepalived_accepts() {
    let text = format!(
        "{INSTANCE}static_routes {{\n    src 10.0.0.5 10.7.0.0/16 via 10.0.0.254\n}}\n\
\
virtual_server 10.0.0.1 80 {{\n    protocol tcp\n    lb_algo twos\n    lb_kind TUN type gue port 6080\n    sorry_server 10.0.0.9\n    real_server 10.0.0.2 80 {{\n        weight 100000\n        TCP_CHECK {{\n            retry 0\n        }}\n    }}\n}}\n\
vrrp_instance VI_2 {{\n    interface eth0\n    virtual_router_id 2\n    track_interface {{\n        eth1 weight -10 reverse\n    }}\n    virtual_ipaddress {{\n        2001:db8::1/64 preferred_lft 0\n    }}\n}}\n"
    );
    let l = lenient(&text);
    let r = &l.config.static_net.routes[0];
    assert_eq!(r.src, Some("10.0.0.5".parse().unwrap()));
    assert_eq!((r.dest.to_string(), r.prefix), ("10.7.0.0".into(), 16));
    let s = &l.config.services[0];
    assert!(matches!(
        s.id,
        ServiceId::Addr {
            protocol: Protocol::Tcp,
            ..
        }
    ));
    assert_eq!(s.scheduler, Scheduler::Twos);
    assert_eq!(
        (s.method, s.tunnel),
        (Method::Tun, Some(Tunnel::Gue { port: 6080 }))
    );
    let sorry = s.lifecycle.sorry_server.unwrap();
    assert_eq!(
        (sorry.address.to_string(), sorry.port),
        ("10.0.0.9".into(), 80)
    );
    assert_eq!(s.reals[0].weight, 100_000);
    assert_eq!(s.reals[0].lifecycle.checks[0].common.retry, 0);
    let vi2 = &l.config.vrrp.instances[1];
    assert_eq!(
        (
            vi2.track_interfaces[0].weight,
            vi2.track_interfaces[0].reverse
        ),
        (-10, true)
    );
    // preferred_lft takes its value: one refusal, no "unknown keyword '0'".
    assert_eq!(
        l.warnings
            .iter()
            .filter(|w| w.message.contains("preferred_lft"))
            .count(),
        1
    );
    assert!(!warned(&l, "'0'"));
    round_trips(&l.config);
}

#[test]
fn seq_lines_expand_as_keepalived_does() {
    let text = vs("    lb_kind DR\n~SEQ(i, 2, 4)     real_server 10.0.0.$i 80 { weight $i }");
    let l = load(&text);
    let reals: Vec<(String, u32)> = l.config.services[0]
        .reals
        .iter()
        .map(|r| (r.address.to_string(), r.weight))
        .collect();
    assert_eq!(
        reals,
        [
            ("10.0.0.2".into(), 2),
            ("10.0.0.3".into(), 3),
            ("10.0.0.4".into(), 4)
        ]
    );
}

#[test]
fn smtp_host_blocks_are_checks_of_their_own() {
    let l = load(&vs(
        "    real_server 10.0.0.2 25 {\n        SMTP_CHECK {\n            helo_name lb1\n            host {\n                connect_ip 10.0.0.3\n            }\n            host {\n                connect_ip 10.0.0.4\n                connect_port 2525\n            }\n        }\n    }",
    ));
    let checks = &l.config.services[0].reals[0].lifecycle.checks;
    let ips: Vec<Option<IpAddr>> = checks.iter().map(|c| c.common.connect_ip).collect();
    assert_eq!(
        ips,
        [
            Some("10.0.0.3".parse().unwrap()),
            Some("10.0.0.4".parse().unwrap())
        ]
    );
    assert_eq!(checks[1].common.connect_port, Some(2525));
    assert!(
        checks
            .iter()
            .all(|c| matches!(&c.kind, CheckKind::Smtp { helo_name: Some(h) } if h == "lb1"))
    );
}

#[test]
fn bytes_that_are_not_utf8_and_nul() {
    // A Latin-1 byte in a comment: fine. In a value: read, and located.
    let mut text = b"! caf\xe9 director\n".to_vec();
    text.extend_from_slice(INSTANCE.as_bytes());
    text.extend_from_slice(b"global_defs {\n    router_id lb\xe9\n}\n");
    let l = keepalived::parse_bytes("k.conf", &text, &Options::default()).unwrap();
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("k.conf:11:17: a byte that is not UTF-8"),
        "{w:?}"
    );
    // A NUL ends the line there, as keepalived's C strings end it.
    let text = INSTANCE.replace("virtual_router_id 1", "virtual_router_id 1\0 junk");
    let l = load(&text);
    assert_eq!(l.config.vrrp.instances[0].vrid, 1);
    assert!(warned(&l, "a NUL byte ends the line"));
}

// --- Accepted silently with another meaning -------------------------------

#[test]
fn protocol_left_out_is_udp_with_a_warning() {
    let l = load("virtual_server 10.0.0.1 53 {\n    real_server 10.0.0.2 53 {\n    }\n}\n");
    assert!(matches!(
        l.config.services[0].id,
        ServiceId::Addr {
            protocol: Protocol::Udp,
            ..
        }
    ));
    assert!(warned(&l, "no 'protocol'; it is UDP"));
}

#[test]
fn nopreempt_with_state_master_is_cleared() {
    let l = load(&INSTANCE.replace(
        "priority 100",
        "priority 100\n    state MASTER\n    nopreempt",
    ));
    assert!(l.config.vrrp.instances[0].preempt);
    assert!(warned(&l, "'nopreempt' does not work with state MASTER"));
}

#[test]
fn an_instance_keeps_one_address_family() {
    let l = load(&INSTANCE.replace("10.0.0.1/24", "10.0.0.1/24\n        2001:db8::1/64"));
    let vips: Vec<String> = l.config.vrrp.instances[0]
        .virtual_ipaddress
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    assert_eq!(vips, ["10.0.0.1"]);
    assert!(warned(
        &l,
        "2001:db8::1 is not of the instance's address family"
    ));
    round_trips(&l.config);
}

#[test]
fn lvs_sync_daemon_is_refused_on_xdp() {
    let text = format!("global_defs {{\n    lvs_sync_daemon eth0 VI_1\n}}\n{INSTANCE}");
    let e = keepalived::parse("k.conf", &text, &Options::default()).unwrap_err();
    assert!(e.to_string().starts_with("k.conf:2:5: unsupported keyword 'lvs_sync_daemon' (the XDP data plane has no connection sync yet"), "{e}");
    let l = lenient(&text);
    assert!(l.config.global.lvs_sync_daemon.is_none());
}

#[test]
fn a_virtual_server_without_reals_is_left_out() {
    let l = load(&format!("{INSTANCE}{}", vs("    lb_kind DR")));
    assert!(l.config.services.is_empty());
    assert!(warned(&l, "has no real_server"));
}

#[test]
fn a_sync_group_member_starts_as_backup() {
    let text = format!(
        "vrrp_sync_group G {{\n    group {{\n        VI_1\n    }}\n}}\n{}",
        INSTANCE.replace("priority 100", "priority 100\n    state MASTER")
    );
    let l = load(&text);
    assert_eq!(
        l.config.vrrp.instances[0].initial_state,
        InitialState::Backup
    );
}

#[test]
fn a_group_is_checked_once_and_round_trips() {
    let text = "virtual_server_group G {\n    10.0.0.1-3 80\n}\nvirtual_server group G {\n    protocol TCP\n    lb_kind DR\n    real_server 10.0.0.9 80 {\n        TCP_CHECK {\n        }\n    }\n}\n";
    let l = load(text);
    assert_eq!(l.config.services.len(), 3);
    assert!(
        l.config
            .services
            .iter()
            .all(|s| s.group.as_deref() == Some("G"))
    );
    round_trips(&l.config);
}

// --- Defaults -------------------------------------------------------------

/// Every row of defaults.txt, read back from xlb's model of a file that
/// leaves the keyword out.
#[test]
fn defaults_are_keepalived_2_2_7s() {
    let base = "vrrp_script s {\n    script /bin/true\n}\nvrrp_track_file f {\n    file /run/f\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    virtual_ipaddress {\n        10.0.0.1/24\n    }\n}\nvirtual_server 10.0.0.1 80 {\n    persistence_timeout\n    real_server 10.0.0.2 80 {\n        TCP_CHECK {\n        }\n        HTTP_GET {\n            url {\n                path /\n            }\n        }\n        SSL_GET {\n            url {\n                path /\n            }\n        }\n        MISC_CHECK {\n            misc_path /bin/true\n        }\n        DNS_CHECK {\n        }\n        SMTP_CHECK {\n        }\n    }\n}\n";
    let c = load(base).config;
    let master = load(&base.replace(
        "virtual_router_id 1",
        "virtual_router_id 1\n    state MASTER",
    ))
    .config;
    let ipv6 = load(&base.replace(
        "10.0.0.1/24\n    }\n}\nvirtual",
        "2001:db8::1/64\n    }\n}\nvirtual",
    ))
    .config;
    let strict = load(&format!("global_defs {{\n    vrrp_strict\n}}\n{base}")).config;
    let i = &c.vrrp.instances[0];
    let s = &c.services[0];
    let check = |n: usize| &s.reals[0].lifecycle.checks[n];
    let secs = |d: Duration| format!("{}", d.as_secs_f64());
    let onoff = |b: bool| if b { "on" } else { "off" }.to_string();
    let value = |key: &str| -> String {
        let g = &c.global;
        match key {
            "global_defs vrrp_version" => g.vrrp_version.to_string(),
            "global_defs vrrp_mcast_group4" => g.vrrp_mcast_group4.to_string(),
            "global_defs vrrp_mcast_group6" => g.vrrp_mcast_group6.to_string(),
            "global_defs smtp_connect_timeout" => secs(g.smtp_connect_timeout),
            "global_defs vrrp_garp_master_delay" => secs(g.garp.master_delay),
            "global_defs vrrp_garp_master_repeat" => g.garp.master_repeat.to_string(),
            "global_defs vrrp_garp_master_refresh" => {
                g.garp.master_refresh.map_or("0".into(), secs)
            }
            "global_defs vrrp_garp_master_refresh_repeat" => {
                g.garp.master_refresh_repeat.to_string()
            }
            "global_defs vrrp_garp_interval" => secs(g.garp.interval),
            "vrrp_instance priority" => i.priority.to_string(),
            "vrrp_instance priority (state MASTER)" => {
                master.vrrp.instances[0].priority.to_string()
            }
            "vrrp_instance state" => format!("{:?}", i.initial_state).to_uppercase(),
            "vrrp_instance advert_int" => secs(i.advert_int),
            "vrrp_instance version" => i.version.to_string(),
            "vrrp_instance version (IPv6)" => ipv6.vrrp.instances[0].version.to_string(),
            "vrrp_instance nopreempt" => onoff(!i.preempt),
            "vrrp_instance preempt_delay" => secs(i.preempt_delay),
            "vrrp_instance accept" => onoff(i.accept),
            "vrrp_instance accept (vrrp_strict)" => onoff(strict.vrrp.instances[0].accept),
            "vrrp_script interval" => secs(c.vrrp.scripts[0].interval),
            "vrrp_script timeout" => secs(c.vrrp.scripts[0].timeout),
            "vrrp_script weight" => c.vrrp.scripts[0].weight.to_string(),
            "vrrp_script rise" => c.vrrp.scripts[0].rise.to_string(),
            "vrrp_script fall" => c.vrrp.scripts[0].fall.to_string(),
            "vrrp_track_file weight" => c.vrrp.track_files[0].weight.to_string(),
            "virtual_server delay_loop" => secs(s.lifecycle.delay_loop),
            "virtual_server lb_algo" => s.scheduler.name().into(),
            "virtual_server lb_kind" => format!("{:?}", s.method).to_uppercase(),
            "virtual_server protocol" => s.id.addr().unwrap().2.to_string(),
            "virtual_server quorum" => s.lifecycle.quorum.to_string(),
            "virtual_server hysteresis" => s.lifecycle.hysteresis.to_string(),
            "virtual_server persistence_timeout (no value)" => {
                s.persistence.unwrap().timeout_s.to_string()
            }
            "virtual_server persistence_granularity" => s.persistence.unwrap().mask_text(),
            "real_server weight" => s.reals[0].weight.to_string(),
            "real_server inhibit_on_failure" => onoff(s.reals[0].lifecycle.inhibit_on_failure),
            "TCP_CHECK connect_timeout" => secs(check(0).common.connect_timeout),
            "TCP_CHECK retry" => check(0).common.retry.to_string(),
            "TCP_CHECK delay_before_retry" => secs(check(0).common.delay_before_retry),
            "TCP_CHECK delay_loop" => secs(check(0).common.delay_loop),
            "TCP_CHECK warmup" => secs(check(0).common.warmup),
            "TCP_CHECK alpha" => onoff(check(0).common.alpha),
            "HTTP_GET retry" => check(1).common.retry.to_string(),
            "HTTP_GET delay_before_retry" => secs(check(1).common.delay_before_retry),
            "HTTP_GET http_protocol" => match &check(1).kind {
                CheckKind::Http(h) => HttpProtocol::name(h.protocol).into(),
                _ => "?".into(),
            },
            "SSL_GET delay_before_retry" => secs(check(2).common.delay_before_retry),
            "MISC_CHECK retry" => check(3).common.retry.to_string(),
            "MISC_CHECK delay_before_retry" => secs(check(3).common.delay_before_retry),
            "MISC_CHECK misc_timeout" => match &check(3).kind {
                CheckKind::Misc { timeout, .. } => secs(*timeout),
                _ => "?".into(),
            },
            "DNS_CHECK retry" => check(4).common.retry.to_string(),
            "DNS_CHECK delay_before_retry" => secs(check(4).common.delay_before_retry),
            "DNS_CHECK type" => match &check(4).kind {
                CheckKind::Dns { qtype, .. } => qtype.name().into(),
                _ => "?".into(),
            },
            "SMTP_CHECK retry" => check(5).common.retry.to_string(),
            other => panic!("defaults.txt names '{other}', which this test cannot read"),
        }
    };
    let table = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/keepalived-2.2.7/defaults.txt"),
    )
    .unwrap();
    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let [key, want, source] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("bad row: {line}");
        };
        let got = value(key);
        if got != want {
            wrong.push(format!("{key}: xlb {got}, keepalived {want} ({source})"));
        }
        rows += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(rows >= 50, "{rows} rows");
}

// --- The command line -----------------------------------------------------

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("xlb-parity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn coverage_counts_every_keyword_and_none_is_unknown() {
    let out = run(Command::new(xlb_bin()).args(["check", "--coverage"]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let first = out.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("keepalived 2.2.7: 500 keywords, "),
        "{first}"
    );
    assert!(first.ends_with(", 0 unknown"), "{first}");
    assert!(
        out.stdout
            .contains("global_defs > enable_traps: xlb has no SNMP agent")
    );
    assert!(
        out.stdout
            .contains("global_defs > process_names: tunes keepalived's own process")
    );
}

#[test]
fn check_finds_missing_interfaces_and_a_keepalived_conf_given_as_toml() {
    xlb_testbed::require_root().unwrap();
    let s = Scratch::new("check");
    let conf = s.file("k.conf", &INSTANCE.replace("eth0", "nosuch0"));
    let ns = Netns::create("parity").unwrap();
    let out = run(ns
        .command(xlb_bin())
        .args(["check", "--keepalived-conf"])
        .arg(&conf));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(
            "k.conf:2:15: interface 'nosuch0' (vrrp_instance interface) does not exist here"
        ),
        "{}",
        out.stderr
    );
    // dynamic_interfaces: keepalived allows it, and so does xlb.
    let conf = s.file(
        "d.conf",
        &format!(
            "global_defs {{\n    dynamic_interfaces\n}}\n{}",
            INSTANCE.replace("eth0", "nosuch0")
        ),
    );
    let out = run(ns
        .command(xlb_bin())
        .args(["check", "--keepalived-conf"])
        .arg(&conf));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // A keepalived.conf given to --config.
    let out = run(Command::new(xlb_bin())
        .args(["check", "--config"])
        .arg(&conf));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(":1:1: this looks like a keepalived.conf ('global_defs {' here), not xlb's TOML: read it with --keepalived-conf"),
        "{}",
        out.stderr
    );
}

#[test]
fn config_id_defaults_to_the_host_name() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let s = Scratch::new("id");
    let conf = s.file(
        "k.conf",
        &INSTANCE.replace(
            "priority 100",
            &format!("@{host} priority 150\n@^{host} priority 50"),
        ),
    );
    let out = run(Command::new(xlb_bin()).arg("convert").arg(&conf));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("priority = 150"), "{}", out.stdout);
}

#[test]
fn a_block_given_twice_is_added_to_the_first_as_keepalived_reads_it() {
    let l = load(
        "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 1\n    version 2\n\
         virtual_ipaddress {\n        10.0.0.1/24\n    }\n\
         authentication {\n        auth_type PASS\n        auth_pass one\n    }\n\
         virtual_ipaddress {\n        10.0.0.2/24\n        10.0.0.3/24\n    }\n\
         authentication {\n        auth_pass two\n    }\n}\n",
    );
    let i = &l.config.vrrp.instances[0];
    let vips: Vec<String> = i
        .virtual_ipaddress
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    assert_eq!(vips, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(
        i.auth.as_ref().map(|a| a.pass.as_str()),
        Some("two"),
        "{i:?}"
    );
    assert!(
        warned(&l, "'virtual_ipaddress' appears again (first at line 5)"),
        "{:?}",
        l.warnings
    );
    assert!(
        warned(&l, "'authentication' appears again (first at line 8)"),
        "{:?}",
        l.warnings
    );
    round_trips(&l.config);
}
