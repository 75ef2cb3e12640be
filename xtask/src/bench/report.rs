//! What a run produced: rows of figures, printed as a table and written as
//! JSON together with the facts of the machine and commit they came from.

use super::stats::Summary;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::{fmt::Write as _, path::Path, process::Command};

/// Bumped when the JSON changes shape, so old results stay readable.
pub const SCHEMA: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    PktCost,
    Live,
    Control,
    Failover,
    Stress,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::PktCost,
        Section::Live,
        Section::Control,
        Section::Failover,
        Section::Stress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::PktCost => "pktcost",
            Section::Live => "live",
            Section::Control => "control",
            Section::Failover => "failover",
            Section::Stress => "stress",
        }
    }
}

/// A figure relative to another measured in the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    pub to: String,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Measured {
        summary: Summary,
        ratio: Option<Ratio>,
    },
    /// A slot for a figure that cannot be measured yet, and why.
    NotMeasured(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub section: Section,
    pub case: String,
    pub unit: &'static str,
    pub outcome: Outcome,
    /// How it was measured, in a few words (sizes, mode).
    pub method: String,
    /// Failover rows: when each probe reply arrived, in ms from the Master
    /// going away, in the run whose figure is the median (for the charts).
    pub timeline_ms: Option<Vec<f64>>,
    /// Printed under the row (pktcost: the path's map accesses and helper calls).
    pub note: Option<String>,
}

impl Row {
    pub fn measured(section: Section, case: &str, unit: &'static str, summary: Summary) -> Row {
        Row {
            section,
            case: case.into(),
            unit,
            outcome: Outcome::Measured {
                summary,
                ratio: None,
            },
            method: String::new(),
            timeline_ms: None,
            note: None,
        }
    }

    pub fn not_measured(section: Section, case: &str, unit: &'static str, why: &str) -> Row {
        Row {
            section,
            case: case.into(),
            unit,
            outcome: Outcome::NotMeasured(why.into()),
            method: String::new(),
            timeline_ms: None,
            note: None,
        }
    }

    pub fn method(mut self, method: impl Into<String>) -> Row {
        self.method = method.into();
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }

    pub fn timeline_ms(mut self, replies: Vec<f64>) -> Row {
        self.timeline_ms = Some(replies);
        self
    }

    /// Sets the ratio of this row's median to `base`'s (if both were measured).
    pub fn ratio_to(mut self, to: &str, base: Option<f64>) -> Row {
        if let (Outcome::Measured { summary, ratio }, Some(b)) = (&mut self.outcome, base)
            && b > 0.0
        {
            *ratio = Some(Ratio {
                to: to.into(),
                value: summary.median / b,
            });
        }
        self
    }
}

/// Where and from what the figures came.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub date: String,
    pub git_sha: String,
    pub git_dirty: bool,
    pub kernel: String,
    pub cpu: String,
    pub nproc: usize,
    pub quick: bool,
    /// The one section of an `--only` run.
    pub only: Option<String>,
}

impl Facts {
    pub fn gather(root: &Path, quick: bool, only: Option<String>) -> Result<Facts> {
        let git = |args: &[&str]| -> Result<String> {
            let out = Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .context("running git")?;
            anyhow::ensure!(out.status.success(), "git {args:?} failed");
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d"])
            .output()
            .context("running date")?;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Ok(Facts {
            date: String::from_utf8_lossy(&date.stdout).trim().to_string(),
            git_sha: git(&["rev-parse", "HEAD"])?,
            // Tracked files only: earlier results lying around do not make a tree dirty.
            git_dirty: !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            quick,
            only,
        })
    }

    /// `<date>-<short sha>.json` for a full run; a `--quick` or `--only`
    /// run says so in the name, so it never replaces a full run's file.
    pub fn result_name(&self) -> String {
        let short = &self.git_sha[..self.git_sha.len().min(12)];
        let quick = if self.quick { "-quick" } else { "" };
        let only = self
            .only
            .as_ref()
            .map_or(String::new(), |section| format!("-{section}"));
        format!("{}-{short}{quick}{only}.json", self.date)
    }
}

/// Up to three significant decimals, fewer for large numbers.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let case_w = rows.iter().map(|r| r.case.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<8} {:<case_w$} {:>14} {:>19}  RATIO / NOTE",
        "SECTION", "CASE", "MEDIAN", "MIN..MAX"
    );
    for r in rows {
        let (median, range, tail) = match &r.outcome {
            Outcome::Measured { summary, ratio } => (
                format!("{} {}", num(summary.median), r.unit),
                format!("{}..{}", num(summary.min), num(summary.max)),
                match ratio {
                    Some(q) => format!("{}x {}", num(q.value), q.to),
                    None => String::new(),
                },
            ),
            Outcome::NotMeasured(why) => ("-".into(), "-".into(), format!("not measured: {why}")),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<case_w$} {median:>14} {range:>19}  {tail}",
            r.section.name(),
            r.case
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "{:<8}   {note}", "");
        }
    }
    out
}

pub fn json(facts: &Facts, rows: &[Row]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = json!({
                "section": r.section.name(),
                "case": r.case,
                "unit": r.unit,
                "method": r.method,
            });
            match &r.outcome {
                Outcome::Measured { summary, ratio } => {
                    v["median"] = json!(summary.median);
                    v["min"] = json!(summary.min);
                    v["max"] = json!(summary.max);
                    v["runs"] = json!(summary.runs);
                    if let Some(q) = ratio {
                        v["ratio"] = json!({ "to": q.to, "value": q.value });
                    }
                }
                Outcome::NotMeasured(why) => v["not_measured"] = json!(why),
            }
            if let Some(t) = &r.timeline_ms {
                v["timeline_ms"] = json!(t);
            }
            if let Some(n) = &r.note {
                v["note"] = json!(n);
            }
            v
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "date": facts.date,
        "quick": facts.quick,
        "only": facts.only,
        "git": { "sha": facts.git_sha, "dirty": facts.git_dirty },
        "machine": { "kernel": facts.kernel, "cpu": facts.cpu, "nproc": facts.nproc },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            date: "2026-01-02".into(),
            git_sha: "0123456789abcdef0123".into(),
            git_dirty: true,
            kernel: "6.1.0".into(),
            cpu: "Some CPU".into(),
            nproc: 2,
            quick: false,
            only: None,
        }
    }

    fn rows() -> Vec<Row> {
        let floor = Row::measured(
            Section::PktCost,
            "floor",
            "ns/pkt",
            Summary::of(&[10.0, 12.0, 11.0]).unwrap(),
        );
        let dr = Row::measured(
            Section::PktCost,
            "dr",
            "ns/pkt",
            Summary::of(&[33.0]).unwrap(),
        )
        .method("repeat 1000000")
        .ratio_to("floor", Some(11.0));
        let later = Row::not_measured(Section::Live, "xlb NAT", "Mpps", "NAT is not on main");
        let failover = Row::measured(
            Section::Failover,
            "xlb: traffic stopped",
            "ms",
            Summary::of(&[300.0]).unwrap(),
        )
        .timeline_ms(vec![-20.0, -10.0, 290.0]);
        vec![floor, dr, later, failover]
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = json(&facts(), &rows());
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["date"], "2026-01-02");
        assert_eq!(v["quick"], false);
        assert_eq!(v["only"], Value::Null);
        assert_eq!(v["git"]["sha"], "0123456789abcdef0123");
        assert_eq!(v["git"]["dirty"], true);
        assert_eq!(v["machine"]["kernel"], "6.1.0");
        assert_eq!(v["machine"]["cpu"], "Some CPU");
        assert_eq!(v["machine"]["nproc"], 2);
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["section"], "pktcost");
        assert_eq!(rows[0]["median"], 11.0);
        assert_eq!(rows[0]["min"], 10.0);
        assert_eq!(rows[0]["max"], 12.0);
        assert_eq!(rows[0]["runs"], json!([10.0, 12.0, 11.0]));
        assert!(rows[0].get("ratio").is_none());
        assert_eq!(rows[1]["ratio"]["to"], "floor");
        assert_eq!(rows[1]["ratio"]["value"], 3.0);
        assert_eq!(rows[1]["method"], "repeat 1000000");
        assert_eq!(rows[2]["not_measured"], "NAT is not on main");
        assert!(rows[2].get("median").is_none());
        assert!(rows[0].get("timeline_ms").is_none());
        assert_eq!(rows[3]["timeline_ms"], json!([-20.0, -10.0, 290.0]));
    }

    #[test]
    fn ratio_needs_a_measured_base() {
        let r = Row::measured(Section::Live, "x", "Mpps", Summary::of(&[2.0]).unwrap())
            .ratio_to("peer", None);
        assert!(matches!(r.outcome, Outcome::Measured { ratio: None, .. }));
        let r = r.ratio_to("peer", Some(0.0));
        assert!(matches!(r.outcome, Outcome::Measured { ratio: None, .. }));
    }

    #[test]
    fn result_file_is_date_and_short_sha_and_names_a_partial_run() {
        assert_eq!(facts().result_name(), "2026-01-02-0123456789ab.json");
        let quick = Facts {
            quick: true,
            ..facts()
        };
        assert_eq!(quick.result_name(), "2026-01-02-0123456789ab-quick.json");
        let only = Facts {
            only: Some("failover".into()),
            ..quick
        };
        assert_eq!(
            only.result_name(),
            "2026-01-02-0123456789ab-quick-failover.json"
        );
    }

    #[test]
    fn table_shows_every_row_with_ratio_or_reason() {
        let t = table(&rows());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("SECTION"));
        assert!(lines[1].contains("11.0 ns/pkt") && lines[1].contains("10.0..12.0"));
        assert!(lines[2].contains("3.00x floor"), "{t}");
        assert!(lines[3].contains("not measured: NAT is not on main"), "{t}");
    }

    #[test]
    fn numbers_keep_about_three_figures() {
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
    }
}
