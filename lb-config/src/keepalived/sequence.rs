//! keepalived's `~SEQ(VAR, [START, [STEP,]] END) TEXT` lines (lib/parser.c
//! `add_seq`): TEXT is read once for each value, with `$VAR` defined as
//! that value; `~SEQx` writes the values in hex (for IPv6 addresses). The
//! numbers may be parameters, and are read as C's `strtol(…, 0)` reads
//! them (`0x` hex, a leading `0` octal).

use super::{lexer::Chars, params::Params};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seq {
    pub var: String,
    start: i64,
    step: i64,
    end: i64,
    hex: bool,
    /// The line to read for each value (with the columns it had).
    pub text: Chars,
}

impl Seq {
    /// How many lines it yields.
    pub fn count(&self) -> u64 {
        (self.end.abs_diff(self.start)) / self.step.unsigned_abs() + 1
    }

    /// The values, as `$VAR` is set to them.
    pub fn values(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count()).map(move |i| {
            let v = self.start + self.step * i as i64;
            if self.hex {
                format!("{v:x}")
            } else {
                v.to_string()
            }
        })
    }
}

/// `strtol(s, …, 0)` on a whole word.
fn number(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// The `~SEQ` line `line` (already past its `@id` condition), with
/// parameters in its numbers replaced from `params`; `None` if it is not a
/// valid one.
pub fn parse(line: &Chars, params: &mut Params) -> Option<Seq> {
    let text: String = line.iter().map(|c| c.0).collect();
    let rest = text.strip_prefix("~SEQ")?;
    let (hex, rest) = match rest.strip_prefix('x') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('(')?;
    let close = rest.find(')')?;
    let (inside, after) = (&rest[..close], &rest[close + 1..]);
    let (var, numbers) = inside.split_once(',')?;
    let var = var.trim();
    if var.is_empty() || var.contains([' ', '\t']) {
        return None;
    }
    // Parameters in the numbers ($FIRST, ${LAST}).
    let numbers_chars: Chars = numbers.chars().map(|c| (c, line[0].1)).collect();
    let expanded = params.substitute(numbers_chars).ok()?;
    let [one_line] = expanded.as_slice() else {
        return None;
    };
    let numbers: String = one_line.iter().map(|c| c.0).collect();
    let n: Vec<i64> = numbers
        .split(',')
        .map(number)
        .collect::<Option<Vec<i64>>>()?;
    let (start, step, end) = match n.as_slice() {
        [end] => (
            if *end < 0 { -1 } else { 1 },
            if *end < 1 { -1 } else { 1 },
            *end,
        ),
        [start, end] => (*start, if start <= end { 1 } else { -1 }, *end),
        [start, step, end] => {
            if *step == 0 || (start < end && *step < 0) || (start > end && *step > 0) {
                return None;
            }
            (*start, *step, *end)
        }
        _ => return None,
    };
    if hex && (start < 0 || end < 0) {
        return None;
    }
    // The text keeps the columns it had in the line.
    let skip = text.chars().count() - after.chars().count();
    let text: Chars = line[skip..]
        .iter()
        .copied()
        .skip_while(|c| c.0 == ' ' || c.0 == '\t')
        .collect();
    Some(Seq {
        var: var.to_string(),
        start,
        step,
        end,
        hex,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalived::lexer::chars;

    fn values(line: &str) -> Option<(String, Vec<String>, String)> {
        let s = parse(&chars(line), &mut Params::default())?;
        let text = s.text.iter().map(|c| c.0).collect();
        Some((s.var.clone(), s.values().collect(), text))
    }

    #[test]
    fn as_keepalived_counts() {
        let (var, v, text) = values("~SEQ(i, 1, 3) real_server 10.0.0.$i 80").unwrap();
        assert_eq!(
            (var.as_str(), text.as_str()),
            ("i", "real_server 10.0.0.$i 80")
        );
        assert_eq!(v, ["1", "2", "3"]);
        assert_eq!(values("~SEQ(i, 3)").unwrap().1, ["1", "2", "3"]);
        assert_eq!(values("~SEQ(i, -2)").unwrap().1, ["-1", "-2"]);
        assert_eq!(values("~SEQ(i, 10, -5, 0) x").unwrap().1, ["10", "5", "0"]);
        assert_eq!(values("~SEQ(i, 3, 1) x").unwrap().1, ["3", "2", "1"]);
        assert_eq!(
            values("~SEQx(i, 9, 0x0c) x").unwrap().1,
            ["9", "a", "b", "c"]
        );
        assert_eq!(values("~SEQ(i, 010, 011) x").unwrap().1, ["8", "9"]);
        // keepalived refuses these.
        assert!(values("~SEQ(i, 1, -1, 3) x").is_none());
        assert!(values("~SEQ(i, 1, 0, 3) x").is_none());
        assert!(values("~SEQx(i, -1, 3) x").is_none());
        assert!(values("~SEQ i, 1, 3 x").is_none());
        assert!(values("~SEQ(, 1) x").is_none());
    }

    #[test]
    fn numbers_may_be_parameters_and_text_keeps_its_columns() {
        let mut p = Params::default();
        p.define("LAST".into(), "4".into());
        let s = parse(&chars("~SEQ(n, 2, $LAST) a $n"), &mut p).unwrap();
        assert_eq!(s.values().collect::<Vec<_>>(), ["2", "3", "4"]);
        assert_eq!(s.text[0], ('a', 19));
    }
}
