//! The metrics endpoint as Prometheus' own tools read it: the plain text
//! format (what a scraper gets without asking for OpenMetrics) passes
//! `promtool check metrics` with no warning; OpenMetrics is served to a
//! scraper that asks for it; `xlb_build_info` and the process families are
//! there; and every expression in packaging/grafana-dashboard.json names
//! only series the agent exports.

mod common;

use common::xlb_bin;
use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

const LISTEN: &str = "127.0.0.1:9478";
const TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics` with `accept` (if any), from the director's namespace:
/// the Content-Type and body.
fn get(lab: &DrLab, accept: Option<&str>) -> (String, String) {
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    lab.director
        .enter(move || {
            let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: xlb\r\n{accept}Connection: close\r\n\r\n"
            )
            .unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            let (head, body) = reply.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let kind = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-type: ")
                        .map(str::to_string)
                })
                .unwrap();
            (kind, body.to_string())
        })
        .unwrap()
}

/// `promtool check metrics` on `body`: its exit status and what it said.
fn promtool(body: &str) -> (bool, String) {
    let tool = xlb_testbed::promtool::path().unwrap();
    let mut child = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Series names in a text body: each sample's, and each family's from its
/// `# TYPE` line (a family with no sample yet, such as VRRP's without
/// instances, is still exported); a histogram's `_bucket`, `_sum` and
/// `_count` come with its samples.
fn series(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next().map(str::to_string),
            None if l.starts_with('#') || l.is_empty() => None,
            None => l.split(['{', ' ']).next().map(str::to_string),
        })
        .collect()
}

/// Every `xlb_…`/`process_…` name in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let w: String = bytes[start..i].iter().collect();
            if w.starts_with("xlb_") || w.starts_with("process_") {
                out.push(w);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every `expr` in a Grafana dashboard (panels and nested rows).
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn promtool_passes_the_plain_text_and_the_dashboard_names_real_series() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions::default()).unwrap();
    let dir = common::test_dir("exposition");
    let config = dir.join("xlb.toml");
    // A check, so the checker families have series too.
    let mut text = lab.agent_config("wrr", "dr", "generic");
    text.push_str("\n[[service.real.check]]\ntype = \"tcp\"\n");
    text.push_str(&format!("\n[metrics]\nlisten = \"{LISTEN}\"\n"));
    std::fs::write(&config, &text).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert_eq!(lab.spread(6, TIMEOUT).unwrap().values().sum::<usize>(), 6);

    let (kind, plain) = get(&lab, None);
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let (ok, said) = promtool(&plain);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics:\n{said}\n{plain}"
    );
    // The check would catch a problem: the OpenMetrics body is not plain text.
    let (kind, om) = get(
        &lab,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(om.ends_with("# EOF\n"), "{om}");

    let names = series(&plain);
    let version = format!(
        "xlb_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(plain.lines().any(|l| l == version), "{plain}");
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(names.contains(family), "no {family} in:\n{plain}");
    }
    let sample = |name: &str| -> f64 {
        plain
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(sample("process_open_fds") >= 3.0);
    assert_eq!(
        sample("process_max_fds"),
        xlb_testbed::procfs::nofile(agent.pid()).unwrap().0 as f64
    );

    // The dashboard: valid JSON, and each expression's names are exported
    // (a histogram's _bucket/_sum/_count count as its family).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 8, "only {} expressions", all.len());
    for expr in &all {
        let used = names_in(expr);
        assert!(!used.is_empty(), "no xlb series in `{expr}`");
        for name in used {
            assert!(
                names.contains(&name),
                "`{expr}` names {name}, which the agent does not export"
            );
        }
    }
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
