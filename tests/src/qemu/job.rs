//! Pieces of guest job scripts shared by the guest tests: shell functions
//! that wait (bounded) for the agent or for a condition, and the parser for
//! output split into `==NAME` sections.

use std::collections::BTreeMap;

/// `wait_agent LOG PID`: waits (at most 60 s) until the agent started in the
/// background as PID logged that it forwards; fails, printing its log to
/// stderr, if it exits or never gets there.
pub const WAIT_AGENT: &str = r#"wait_agent() {
    i=0
    while [ $i -lt 300 ]; do
        grep -q "xlb forwarding" "$1" && return 0
        kill -0 $2 2>/dev/null || { echo "agent exited" >&2; cat "$1" >&2; return 1; }
        sleep 0.2; i=$((i+1))
    done
    echo "agent did not start" >&2; cat "$1" >&2; return 1
}
"#;

/// `until_ok LABEL CMD…`: runs CMD every 0.2 s until it succeeds, at most
/// 150 times; on timeout says so on stderr and fails. Callers print the state
/// they waited for afterwards either way, so the host's assertion shows it.
pub const UNTIL_OK: &str = r#"until_ok() {
    label=$1; shift
    i=0
    while [ $i -lt 150 ]; do
        "$@" && return 0
        sleep 0.2; i=$((i+1))
    done
    echo "timed out waiting for $label" >&2; return 1
}
"#;

/// The guest's stdout split at lines `==NAME`: each section's text by name.
/// Text before the first marker is dropped.
pub fn sections(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in stdout.split_inclusive('\n') {
        if let Some(n) = line.strip_prefix("==") {
            let n = n.trim_end().to_string();
            out.insert(n.clone(), String::new());
            name = Some(n);
        } else if let Some(n) = &name {
            out.get_mut(n).expect("section exists").push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keep_their_lines_and_drop_the_preamble() {
        let s = sections("noise\n==a\none\n  two\n==b\n==c\nlast");
        assert_eq!(
            s,
            BTreeMap::from([
                ("a".to_string(), "one\n  two\n".to_string()),
                ("b".to_string(), String::new()),
                ("c".to_string(), "last".to_string()),
            ])
        );
    }
}
