//! keepalived 2.2.7's keyword tree (`keepalived-2.2.7.keywords`, dumped by
//! keepalived's own parser) held against xlb's table (`keywords.rs`): what
//! xlb does with each keyword. `xlb check --coverage` prints it; a test
//! requires that no keyword is unknown.

use super::keywords::{Area, Status};
use std::fmt::Write;

/// The tree, one keyword a line, two spaces per level (`#` lines are comments).
pub const KEEPALIVED_2_2_7: &str = include_str!("keepalived-2.2.7.keywords");

/// One keyword of keepalived's tree and what xlb does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The blocks it sits in, then the keyword (`["virtual_server", "real_server", "weight"]`).
    pub path: Vec<&'static str>,
    /// `None`: xlb does not know it (a test failure). A keyword inside an
    /// unsupported or ignored block has its block's status.
    pub status: Option<Status>,
}

/// Every keyword of keepalived 2.2.7, in the dump's order.
pub fn walk() -> Vec<Entry> {
    let mut out = Vec::new();
    // Per level: the keyword, the area its children are looked up in, and
    // the status its children inherit (an unsupported or ignored block).
    let mut stack: Vec<(&'static str, Option<Area>, Option<Status>)> = Vec::new();
    for line in KEEPALIVED_2_2_7.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name = line.trim_start();
        let depth = (line.len() - name.len()) / 2;
        stack.truncate(depth);
        let (area, inherited) = match stack.last() {
            None => (Some(Area::Top), None),
            Some((_, area, inherited)) => (*area, *inherited),
        };
        let status = inherited.or_else(|| {
            area.and_then(|a| a.keywords().into_iter().find(|k| k.name == name))
                .map(|k| k.status)
        });
        let child = match status {
            Some(Status::Mapped) => area.and_then(|a| a.child(name)),
            _ => None,
        };
        let passed_down = status.filter(|s| *s != Status::Mapped);
        let mut path: Vec<&'static str> = stack.iter().map(|e| e.0).collect();
        path.push(name);
        out.push(Entry { path, status });
        stack.push((name, child, passed_down));
    }
    out
}

/// The report `xlb check --coverage` prints: counts per top-level block,
/// then every keyword xlb refuses or ignores, with why.
pub fn render() -> String {
    let entries = walk();
    let count = |f: &dyn Fn(&Entry) -> bool| entries.iter().filter(|e| f(e)).count();
    let is = |e: &Entry, want: fn(&Status) -> bool| e.status.as_ref().is_some_and(want);
    let mapped = |s: &Status| *s == Status::Mapped;
    let unsupported = |s: &Status| matches!(s, Status::Unsupported(_));
    let ignored = |s: &Status| matches!(s, Status::Ignored(_));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "keepalived 2.2.7: {} keywords, {} mapped, {} unsupported, {} ignored, {} unknown",
        entries.len(),
        count(&|e| is(e, mapped)),
        count(&|e| is(e, unsupported)),
        count(&|e| is(e, ignored)),
        count(&|e| e.status.is_none()),
    );
    let _ = writeln!(
        out,
        "\n{:<26} {:>8} {:>8} {:>12} {:>8}",
        "block", "keywords", "mapped", "unsupported", "ignored"
    );
    let mut roots: Vec<&str> = Vec::new();
    for e in &entries {
        if !roots.contains(&e.path[0]) {
            roots.push(e.path[0]);
        }
    }
    for root in roots {
        let of: Vec<&Entry> = entries.iter().filter(|e| e.path[0] == root).collect();
        let n = |want: fn(&Status) -> bool| of.iter().filter(|e| is(e, want)).count();
        let _ = writeln!(
            out,
            "{root:<26} {:>8} {:>8} {:>12} {:>8}",
            of.len(),
            n(mapped),
            n(unsupported),
            n(ignored)
        );
    }
    for (title, want) in [
        (
            "unsupported (an error; a warning with --lenient)",
            unsupported as fn(&Status) -> bool,
        ),
        ("ignored (they tune keepalived's own process)", ignored),
    ] {
        let _ = writeln!(out, "\n{title}:");
        for e in entries.iter().filter(|e| is(e, want)) {
            // A block's keywords share its reason: list the block only.
            let parent = &e.path[..e.path.len() - 1];
            let parent_same = !parent.is_empty()
                && entries
                    .iter()
                    .any(|p| p.path == parent && p.status == e.status);
            if parent_same {
                continue;
            }
            let why = match e.status {
                Some(Status::Unsupported(r) | Status::Ignored(r)) => r,
                _ => "",
            };
            let _ = writeln!(out, "  {}: {why}", e.path.join(" > "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_keyword_of_keepalived_is_unknown() {
        let entries = walk();
        let unknown: Vec<String> = entries
            .iter()
            .filter(|e| e.status.is_none())
            .map(|e| e.path.join(" > "))
            .collect();
        assert!(
            unknown.is_empty(),
            "unknown to xlb:\n{}",
            unknown.join("\n")
        );
        // The dump is keepalived's whole tree (125 keywords in global_defs,
        // 64 in vrrp_instance, as keepalived 2.2.7 installs them).
        let in_block = |b: &str| {
            entries
                .iter()
                .filter(|e| e.path.len() == 2 && e.path[0] == b)
                .count()
        };
        assert_eq!(in_block("global_defs"), 125);
        assert_eq!(in_block("vrrp_instance"), 64);
        assert!(entries.len() > 490, "{} keywords", entries.len());
    }
}
