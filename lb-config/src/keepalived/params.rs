//! keepalived's parameters: `$NAME=VALUE` defines (a value ending in `\`
//! continues on the next lines, making a multi-line definition), and `$NAME`
//! or `${NAME}` anywhere later is replaced by the value. A multi-line value
//! expands into several lines. Unlike keepalived, a `$NAME` outside quotes
//! that names no definition is an error instead of staying literal text,
//! and what substitution produces over the whole read is bounded
//! ([`MAX_EXPANDED`]): definitions that each use another twice grow
//! exponentially (a 123-line file took 1.5 GiB before this bound).

use super::lexer::Chars;
use std::collections::HashMap;

/// Expansions allowed per line (a definition that refers to itself would loop).
const MAX_EXPANSIONS: usize = 64;
/// Text all substitutions of one read (a file and its includes) may
/// produce, in characters, each line produced counting one more. 4 Mi
/// leaves room for a generated config of 25,000 real servers written
/// through a parameter, and keeps the worst case to a few hundred MiB.
pub const MAX_EXPANDED: usize = 4 << 20;

#[derive(Default)]
pub struct Params {
    defs: HashMap<String, Vec<String>>,
    /// What substitution has produced so far, against [`MAX_EXPANDED`].
    expanded: usize,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `$NAME = value` at the start of a line: the name and the first value line.
pub fn definition(line: &Chars) -> Option<(String, String)> {
    let text: String = line.iter().map(|c| c.0).collect();
    let rest = text.strip_prefix('$')?;
    if !rest.starts_with(is_name_start) {
        return None;
    }
    let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
    let after = rest[end..].trim_start_matches([' ', '\t']);
    let value = after.strip_prefix('=')?;
    Some((rest[..end].to_string(), value.trim().to_string()))
}

impl Params {
    pub fn define(&mut self, name: String, first: String) {
        let lines = if first.is_empty() {
            Vec::new()
        } else {
            vec![first]
        };
        self.defs.insert(name, lines);
    }

    /// Adds a continuation line to a multi-line definition.
    pub fn extend(&mut self, name: &str, line: String) {
        if let Some(v) = self.defs.get_mut(name)
            && !line.is_empty()
        {
            v.push(line);
        }
    }

    /// The line with every parameter replaced (several lines when a
    /// multi-line parameter was used), or the column and message of an error.
    pub fn substitute(&mut self, line: Chars) -> Result<Vec<Chars>, (usize, String)> {
        self.expand(line, 0)
    }

    /// Whether substitution has produced [`MAX_EXPANDED`]: every later use fails too.
    pub fn exhausted(&self) -> bool {
        self.expanded > MAX_EXPANDED
    }

    fn expand(&mut self, mut line: Chars, mut count: usize) -> Result<Vec<Chars>, (usize, String)> {
        let mut from = 0;
        loop {
            let Some((start, end, name)) = reference(&line, from)? else {
                return Ok(vec![line]);
            };
            let col = line[start].1;
            let Some(value) = self.defs.get(&name).cloned() else {
                if in_quotes(&line, start) {
                    from = end;
                    continue;
                }
                return Err((
                    col,
                    format!(
                        "unknown parameter '${name}' (define it with '${name}=VALUE' before use)"
                    ),
                ));
            };
            count += 1;
            if count > MAX_EXPANSIONS {
                return Err((
                    col,
                    format!(
                        "parameter '${name}' expands more than {MAX_EXPANSIONS} times (does it refer to itself?)"
                    ),
                ));
            }
            self.expanded += value.iter().map(|v| v.chars().count() + 1).sum::<usize>();
            if self.exhausted() {
                return Err((
                    col,
                    format!(
                        "parameters expand to more than {} Mi characters in all: do definitions use each other over and over?",
                        MAX_EXPANDED >> 20
                    ),
                ));
            }
            let as_chars = |s: &str| s.chars().map(|c| (c, col)).collect::<Chars>();
            let suffix = line.split_off(end);
            line.truncate(start);
            if value.len() <= 1 {
                line.extend(as_chars(value.first().map_or("", |s| s.as_str())));
                from = start;
                line.extend(suffix);
                continue;
            }
            let mut out = Vec::new();
            for (i, v) in value.iter().enumerate() {
                let mut l = if i == 0 {
                    std::mem::take(&mut line)
                } else {
                    Vec::new()
                };
                l.extend(as_chars(v));
                if i + 1 == value.len() {
                    l.extend(suffix.iter().copied());
                }
                out.extend(self.expand(l, count)?);
            }
            return Ok(out);
        }
    }
}

fn in_quotes(line: &Chars, at: usize) -> bool {
    line[..at].iter().filter(|c| c.0 == '"').count() % 2 == 1
}

/// The next `$NAME` / `${NAME}` at or after `from`: its span and name.
#[allow(clippy::type_complexity)]
fn reference(line: &Chars, from: usize) -> Result<Option<(usize, usize, String)>, (usize, String)> {
    let mut i = from;
    while i < line.len() {
        if line[i].0 != '$' {
            i += 1;
            continue;
        }
        let braced = line.get(i + 1).is_some_and(|c| c.0 == '{');
        let s = i + 1 + usize::from(braced);
        if !line.get(s).is_some_and(|c| is_name_start(c.0)) {
            i += 1;
            continue;
        }
        let mut e = s;
        while e < line.len() && is_name(line[e].0) {
            e += 1;
        }
        let name: String = line[s..e].iter().map(|c| c.0).collect();
        if braced {
            if line.get(e).is_none_or(|c| c.0 != '}') {
                return Err((
                    line[i].1,
                    format!("'${{{name}' is missing its closing '}}'"),
                ));
            }
            e += 1;
        }
        return Ok(Some((i, e, name)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalived::lexer::chars;

    fn text(l: &Chars) -> String {
        l.iter().map(|c| c.0).collect()
    }

    #[test]
    fn definitions_and_substitution() {
        let mut p = Params::default();
        let (n, v) = definition(&chars("$VIP = 10.0.0.1")).unwrap();
        p.define(n, v);
        let out = p.substitute(chars("addr $VIP/24 ${VIP}x")).unwrap();
        assert_eq!(text(&out[0]), "addr 10.0.0.1/24 10.0.0.1x");
        // The substituted text points at its `$`.
        assert_eq!(out[0][5].1, 6);
        assert_eq!(definition(&chars("$1=x")), None);
    }

    #[test]
    fn unknown_names_are_errors_outside_quotes_only() {
        let mut p = Params::default();
        assert_eq!(
            p.substitute(chars("priority $PRIO")).unwrap_err(),
            (
                10,
                "unknown parameter '$PRIO' (define it with '$PRIO=VALUE' before use)".into()
            )
        );
        let out = p.substitute(chars(r#"script "echo $HOME""#)).unwrap();
        assert_eq!(text(&out[0]), r#"script "echo $HOME""#);
        assert_eq!(
            text(&p.substitute(chars("script /bin/x $1")).unwrap()[0]),
            "script /bin/x $1"
        );
    }

    #[test]
    fn expansion_is_bounded_in_total() {
        // Each definition uses the previous twice, over two lines: 2^k
        // lines, each branch within the per-line count.
        let mut p = Params::default();
        p.define("A0".into(), "x".repeat(100));
        for k in 1..40 {
            p.define(format!("A{k}"), format!("$A{} ", k - 1));
            p.extend(&format!("A{k}"), format!("$A{}", k - 1));
        }
        let (col, msg) = p.substitute(chars("   $A39")).unwrap_err();
        assert_eq!(col, 4);
        assert!(msg.contains("more than 4 Mi characters"), "{msg}");
        assert!(p.exhausted());
        // A large but finite use is fine.
        let mut p = Params::default();
        p.define("BIG".into(), "y".repeat(1000));
        for _ in 0..1000 {
            p.substitute(chars("$BIG")).unwrap();
        }
        assert!(!p.exhausted());
    }

    #[test]
    fn multiline_and_self_reference() {
        let mut p = Params::default();
        p.define("ADDRS".into(), "10.0.0.1".into());
        p.extend("ADDRS", "10.0.0.2 dev eth1".into());
        let out = p.substitute(chars("$ADDRS")).unwrap();
        assert_eq!(
            out.iter().map(text).collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2 dev eth1"]
        );
        p.define("LOOP".into(), "$LOOP".into());
        assert!(
            p.substitute(chars("$LOOP"))
                .unwrap_err()
                .1
                .contains("refer to itself")
        );
    }
}
