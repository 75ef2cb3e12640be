//! One line of keepalived.conf: comments removed as keepalived's
//! `decomment()` does, then split into tokens that keep their column.
//!
//! Rules (from keepalived's lib/parser.c): `!` and `#` start a comment
//! anywhere outside double quotes; `\!` and `\#` outside quotes are the
//! characters themselves; a `\` ending the line continues a `$NAME=`
//! definition onto the next line; `{` and `}` outside quotes are tokens of
//! their own even without surrounding blanks (`unicast_peer{`); `"…"` is one
//! token without its quotes.

/// A character of a line with the 1-based column it came from (substituted
/// parameter text carries the column of its `$`).
pub type Chars = Vec<(char, usize)>;

pub fn chars(text: &str) -> Chars {
    text.chars().enumerate().map(|(i, c)| (c, i + 1)).collect()
}

/// The line without its comment and surrounding blanks, and whether it
/// ended with a continuation `\` (which is removed).
pub fn decomment(line: &[(char, usize)]) -> Result<(Chars, bool), usize> {
    let mut out: Chars = Vec::with_capacity(line.len());
    let mut quote: Option<usize> = None;
    let mut i = 0;
    while i < line.len() {
        let (c, col) = line[i];
        match c {
            '"' => {
                quote = if quote.is_some() { None } else { Some(col) };
                out.push((c, col));
            }
            '\\' if quote.is_none() && matches!(line.get(i + 1), Some(('#' | '!', _))) => {
                out.push(line[i + 1]);
                i += 1;
            }
            '!' | '#' if quote.is_none() => break,
            _ => out.push((c, col)),
        }
        i += 1;
    }
    if let Some(col) = quote {
        return Err(col);
    }
    while out.last().is_some_and(|(c, _)| c.is_whitespace()) {
        out.pop();
    }
    let cont = out.last().is_some_and(|(c, _)| *c == '\\');
    if cont {
        out.pop();
        while out.last().is_some_and(|(c, _)| c.is_whitespace()) {
            out.pop();
        }
    }
    let start = out
        .iter()
        .position(|(c, _)| !c.is_whitespace())
        .unwrap_or(out.len());
    Ok((out.split_off(start), cont))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub col: usize,
    /// Written in double quotes: never a brace, never split.
    pub quoted: bool,
}

/// Splits a decommented line into words; braces are words of their own.
pub fn words(line: &[(char, usize)]) -> Vec<Word> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let (c, col) = line[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '{' || c == '}' {
            out.push(Word {
                text: c.to_string(),
                col,
                quoted: false,
            });
            i += 1;
        } else if c == '"' {
            let mut text = String::new();
            i += 1;
            while i < line.len() && line[i].0 != '"' {
                text.push(line[i].0);
                i += 1;
            }
            i += 1;
            out.push(Word {
                text,
                col,
                quoted: true,
            });
        } else {
            let mut text = String::new();
            while i < line.len() {
                let c = line[i].0;
                if c.is_whitespace() || c == '{' || c == '}' || c == '"' {
                    break;
                }
                text.push(c);
                i += 1;
            }
            out.push(Word {
                text,
                col,
                quoted: false,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        let (l, _) = decomment(&chars(line)).unwrap();
        words(&l).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn comments_anywhere_outside_quotes() {
        assert_eq!(texts("  router_id lb1 # the name"), ["router_id", "lb1"]);
        assert_eq!(texts("auth_pass a!b"), ["auth_pass", "a"]);
        assert_eq!(
            texts(r#"script "grep -q '#x' f""#),
            ["script", "grep -q '#x' f"]
        );
        assert_eq!(texts(r"auth_pass a\#b"), ["auth_pass", "a#b"]);
        assert!(texts("! whole line").is_empty());
    }

    #[test]
    fn braces_are_their_own_words() {
        assert_eq!(texts("unicast_peer{"), ["unicast_peer", "{"]);
        assert_eq!(
            texts("track_interface { eth0 }"),
            ["track_interface", "{", "eth0", "}"]
        );
        assert_eq!(texts(r#"x "{a}""#), ["x", "{a}"]);
    }

    #[test]
    fn columns_and_continuation() {
        let (l, cont) = decomment(&chars("  $A=1 2 \\")).unwrap();
        assert!(cont);
        assert_eq!(l.iter().map(|c| c.0).collect::<String>(), "$A=1 2");
        let w = words(&decomment(&chars("  weight  -10")).unwrap().0);
        assert_eq!((w[0].col, w[1].col), (3, 11));
        assert_eq!(decomment(&chars(r#"script "a"#)), Err(8));
    }
}
