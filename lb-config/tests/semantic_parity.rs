//! The one semantic check seen through both front ends: each of its rules
//! written once in TOML and once in keepalived.conf is refused by both,
//! with one message, at the offending token of each file. Every rule of
//! `semantic::Rule::ALL` must have a case here, so a rule enforced for one
//! format only (as a sorry server of the other family was, keepalived.conf
//! letting it through) fails this test.

use lb_config::{
    ConfigError, keepalived,
    semantic::Rule::{self, *},
};

/// One rule in both syntaxes, with where each file's error must point.
struct Case {
    rule: Rule,
    toml: &'static str,
    toml_at: (usize, usize),
    /// `Err(why)`: the rule cannot arise from a keepalived.conf.
    kconf: Result<(&'static str, (usize, usize)), &'static str>,
}

const DP: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";
const SVC: &str = "[[service]]\nvip = \"10.0.0.1\"\nport = 80\n";

fn cases() -> Vec<Case> {
    let svc = |rest: &str| format!("{DP}{SVC}{rest}");
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let instance = |name: &str, vrid: u8, extra: &str| {
        format!(
            "[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\nvirtual_ipaddress = [\"10.0.0.100/24\"]\n{extra}"
        )
    };
    let k_instance = |name: &str, vrid: u8, extra: &str| {
        format!(
            "vrrp_instance {name} {{\n    interface eth0\n    virtual_router_id {vrid}\n    virtual_ipaddress {{\n        10.0.0.100/24\n    }}\n{extra}}}\n"
        )
    };
    vec![
        Case {
            rule: ServiceTwice,
            toml: leak(svc(
                "[[service.real]]\naddress = \"10.0.0.2\"\n[[service]]\nvip = \"10.0.0.1\"\nport = 80\n[[service.real]]\naddress = \"10.0.0.3\"\n",
            )),
            toml_at: (8, 1),
            kconf: Ok((
                "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    real_server 10.0.0.2 80 {\n    }\n}\nvirtual_server 10.0.0.1 80 {\n    protocol TCP\n    real_server 10.0.0.3 80 {\n    }\n}\n",
                (6, 1),
            )),
        },
        Case {
            rule: RealFamily,
            toml: leak(svc("[[service.real]]\naddress = \"fd00::2\"\n")),
            toml_at: (7, 11),
            kconf: Ok((
                "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    real_server fd00::2 80 {\n    }\n}\n",
                (3, 17),
            )),
        },
        Case {
            rule: Thresholds,
            toml: leak(svc(
                "[[service.real]]\naddress = \"10.0.0.2\"\nuthreshold = 10\nlthreshold = 20\n",
            )),
            toml_at: (9, 14),
            kconf: Ok((
                "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    real_server 10.0.0.2 80 {\n        uthreshold 10\n        lthreshold 20\n    }\n}\n",
                (5, 20),
            )),
        },
        Case {
            rule: PersistenceFamily,
            toml: leak(svc(
                "persistence_timeout = 60\npersistence_granularity = 64\n[[service.real]]\naddress = \"10.0.0.2\"\n",
            )),
            toml_at: (7, 27),
            kconf: Ok((
                "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    persistence_timeout 60\n    persistence_granularity 64\n    real_server 10.0.0.2 80 {\n    }\n}\n",
                (4, 29),
            )),
        },
        Case {
            rule: SorryFamily,
            toml: leak(svc(
                "sorry_server = { address = \"fd00::9\", port = 80 }\n[[service.real]]\naddress = \"10.0.0.2\"\n",
            )),
            toml_at: (6, 28),
            kconf: Ok((
                "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    sorry_server fd00::9 80\n    real_server 10.0.0.2 80 {\n    }\n}\n",
                (3, 18),
            )),
        },
        Case {
            rule: GroupAlike,
            toml: leak(format!(
                "{DP}{SVC}group = \"web\"\n[[service.real]]\naddress = \"10.0.0.2\"\n[[service]]\nvip = \"10.0.0.1\"\nport = 443\ngroup = \"web\"\n[[service.real]]\naddress = \"10.0.0.3\"\n"
            )),
            toml_at: (9, 1),
            kconf: Err("a `virtual_server group` block lists its reals once for all its members"),
        },
        Case {
            rule: FwmarkNeedsIpvs,
            toml: leak(format!(
                "{DP}[[service]]\nfwmark = 7\n[[service.real]]\naddress = \"10.0.0.2\"\n"
            )),
            toml_at: (4, 10),
            kconf: Err("a keepalived.conf with fwmark services gets the IPVS data plane"),
        },
        Case {
            rule: Capacity,
            toml: leak(svc(
                "scheduler = \"wrr\"\n[[service.real]]\naddress = \"10.0.0.2\"\nweight = 1000000\n[[service.real]]\naddress = \"10.0.0.3\"\nweight = 999999\n",
            )),
            toml_at: (3, 1),
            kconf: Ok((
                "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    lb_algo wrr\n    real_server 10.0.0.2 80 {\n        weight 1000000\n    }\n    real_server 10.0.0.3 80 {\n        weight 999999\n    }\n}\n",
                (1, 1),
            )),
        },
        Case {
            rule: SyncDaemonNeedsIpvs,
            toml: leak(format!(
                "{DP}[global]\nlvs_sync_daemon = {{ interface = \"eth0\", instance = \"VI_1\" }}\n{}",
                instance("VI_1", 51, "")
            )),
            toml_at: (4, 19),
            kconf: Err(
                "keepalived.conf's lvs_sync_daemon on XDP is an unsupported keyword (a warning and dropped under --lenient), as keepalived_conf tests",
            ),
        },
        Case {
            rule: NameTwice,
            toml: leak(format!(
                "{DP}[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/true\"\n[[vrrp_script]]\nname = \"chk\"\nscript = \"/bin/true\"\n"
            )),
            toml_at: (7, 8),
            kconf: Ok((
                "vrrp_script chk {\n    script /bin/true\n}\nvrrp_script chk {\n    script /bin/true\n}\n",
                (4, 13),
            )),
        },
        Case {
            rule: VridTwice,
            toml: leak(format!(
                "{DP}{}{}",
                instance("VI_1", 51, ""),
                instance("VI_2", 51, "")
            )),
            toml_at: (11, 21),
            kconf: Ok((
                leak(format!(
                    "{}{}",
                    k_instance("VI_1", 51, ""),
                    k_instance("VI_2", 51, "")
                )),
                (10, 23),
            )),
        },
        Case {
            rule: TrackUndefined,
            toml: leak(format!(
                "{DP}[[vrrp_script]]\nname = \"chk_web\"\nscript = \"/bin/true\"\n{}",
                instance("VI_1", 51, "track_script = [{ name = \"chk_wbe\" }]\n")
            )),
            toml_at: (11, 26),
            kconf: Ok((
                leak(format!(
                    "vrrp_script chk_web {{\n    script /bin/true\n}}\n{}",
                    k_instance("VI_1", 51, "    track_script {\n        chk_wbe\n    }\n")
                )),
                (11, 9),
            )),
        },
        Case {
            rule: MemberUndefined,
            toml: leak(format!(
                "{DP}{}[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_9\"]\n",
                instance("VI_1", 51, "")
            )),
            toml_at: (10, 18),
            kconf: Ok((
                leak(format!(
                    "{}vrrp_sync_group G {{\n    group {{\n        VI_1\n        VI_9\n    }}\n}}\n",
                    k_instance("VI_1", 51, "")
                )),
                (11, 9),
            )),
        },
        Case {
            rule: MemberTwice,
            toml: leak(format!(
                "{DP}{}[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\"]\n[[vrrp_sync_group]]\nname = \"H\"\ngroup = [\"VI_1\"]\n",
                instance("VI_1", 51, "")
            )),
            toml_at: (13, 10),
            kconf: Ok((
                leak(format!(
                    "{}vrrp_sync_group G {{\n    group {{\n        VI_1\n    }}\n}}\nvrrp_sync_group H {{\n    group {{\n        VI_1\n    }}\n}}\n",
                    k_instance("VI_1", 51, "")
                )),
                (15, 9),
            )),
        },
        Case {
            rule: GroupEmpty,
            toml: leak(format!(
                "{DP}{}[[vrrp_sync_group]]\nname = \"G\"\ngroup = []\n",
                instance("VI_1", 51, "")
            )),
            toml_at: (10, 9),
            kconf: Ok((
                leak(format!(
                    "{}vrrp_sync_group G {{\n    group {{\n    }}\n}}\n",
                    k_instance("VI_1", 51, "")
                )),
                (9, 5),
            )),
        },
    ]
}

fn toml_errors(text: &str) -> Vec<ConfigError> {
    match lb_config::parse("x.toml", text) {
        Ok(_) => panic!("x.toml accepted:\n{text}"),
        Err(e) => e.0,
    }
}

fn kconf_errors(text: &str) -> Vec<ConfigError> {
    match keepalived::parse("k.conf", text, &Default::default()) {
        Ok(_) => panic!("k.conf accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// The message with the lines it refers to ("at line 8") left out: the
/// two files place the first definition on different lines.
fn shape(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = rest[i + 5..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

/// The single error a file got, which `rule` wrote, at `at`.
fn one(rule: Rule, file: &str, errors: &[ConfigError], at: (usize, usize)) -> String {
    let [e] = errors else {
        panic!("{rule:?}: {file} got {} errors: {errors:#?}", errors.len())
    };
    assert!(rule.wrote(&e.message), "{rule:?} did not write {e}");
    for other in Rule::ALL.iter().filter(|r| **r != rule) {
        assert!(!other.wrote(&e.message), "{other:?} also claims {e}");
    }
    assert_eq!(
        (e.file.as_str(), e.line, e.col),
        (file, at.0, at.1),
        "{rule:?} points elsewhere: {e}"
    );
    e.message.clone()
}

#[test]
fn every_rule_has_a_case_in_both_syntaxes() {
    let cases = cases();
    for rule in Rule::ALL {
        assert!(
            cases.iter().any(|c| c.rule == rule),
            "{rule:?} has no case: write it in TOML and in keepalived.conf"
        );
    }
    let both = cases.iter().filter(|c| c.kconf.is_ok()).count();
    assert!(both >= 12, "only {both} rules are held in both syntaxes");
}

#[test]
fn each_rule_gives_one_message_at_each_files_token() {
    for c in cases() {
        let t = one(c.rule, "x.toml", &toml_errors(c.toml), c.toml_at);
        match c.kconf {
            Ok((text, at)) => {
                let k = one(c.rule, "k.conf", &kconf_errors(text), at);
                assert_eq!(shape(&t), shape(&k), "{:?}: two messages", c.rule);
            }
            Err(why) => assert!(!why.is_empty()),
        }
    }
}

/// A rule broken across an include names the included file, and the first
/// definition by its full position (it is in another file).
#[test]
fn errors_in_an_included_file_name_it() {
    let dir = std::env::temp_dir().join(format!("xlb-semantic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(dir.clone());
    let vs =
        "virtual_server 10.0.0.1 80 {\n    protocol TCP\n    real_server 10.0.0.2 80 {\n    }\n}\n";
    std::fs::write(dir.join("vs.conf"), vs).unwrap();
    let main = dir.join("keepalived.conf");
    std::fs::write(&main, format!("{vs}include vs.conf\n")).unwrap();
    let errors = keepalived::load(&main, &Default::default()).unwrap_err().0;
    let main_name = main.display().to_string();
    let [e] = errors.as_slice() else {
        panic!("{errors:#?}")
    };
    assert!(e.file.ends_with("vs.conf"), "{e}");
    assert_eq!((e.line, e.col), (1, 1));
    assert_eq!(
        e.message,
        format!("service TCP 10.0.0.1:80 is already defined at {main_name}:1:1")
    );
}

/// The one deliberate difference: `lvs_sync_daemon` naming no instance is a
/// master daemon in TOML (README, "IPVS data plane") and an error in
/// keepalived.conf (keepalived's daemon always follows an instance), at
/// the name.
#[test]
fn a_sync_daemon_of_no_instance_is_a_toml_master_and_a_keepalived_error() {
    let toml = "[dataplane]\nkind = \"ipvs\"\ninterfaces = []\n[global]\nlvs_sync_daemon = { interface = \"eth0\", instance = \"VI_9\" }\n";
    let c = lb_config::parse("x.toml", toml).unwrap();
    assert_eq!(c.global.lvs_sync_daemon.unwrap().instance, "VI_9");
    let kconf = "global_defs {\n    lvs_sync_daemon eth0 VI_2\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    virtual_ipaddress {\n        10.0.0.100/24\n    }\n}\nvirtual_server fwmark 7 {\n    real_server 10.0.0.2 80 {\n    }\n}\n";
    let errors: Vec<String> = kconf_errors(kconf).iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        [
            "k.conf:2:26: lvs_sync_daemon names 'VI_2', but no vrrp_instance 'VI_2' is defined (did you mean 'VI_1'?)"
        ]
    );
}
