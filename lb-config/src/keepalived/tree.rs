//! Token lines into a tree: `KEYWORD ARGS… { … }` nodes. A `{` may sit on
//! the keyword's line or alone on the next one, as keepalived allows.

use super::{
    diag::{Diag, Pos},
    include::{Line, Token},
};

#[derive(Clone, Debug)]
pub struct Node {
    pub kw: Token,
    pub args: Vec<Token>,
    /// The children when the keyword opened a block.
    pub block: Option<Vec<Node>>,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.kw.text
    }

    pub fn pos(&self) -> &Pos {
        &self.kw.pos
    }

    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// The whole line as written: keyword and arguments (for value blocks
    /// such as `virtual_ipaddress`, whose lines are data, not keywords).
    pub fn words(&self) -> Vec<&Token> {
        std::iter::once(&self.kw).chain(&self.args).collect()
    }
}

fn is(t: &Token, brace: &str) -> bool {
    !t.quoted && t.text == brace
}

pub fn build(lines: Vec<Line>, diag: &mut Diag) -> Vec<Node> {
    let mut root: Vec<Node> = Vec::new();
    let mut open: Vec<(Node, Vec<Node>)> = Vec::new();
    fn level<'a>(root: &'a mut Vec<Node>, open: &'a mut [(Node, Vec<Node>)]) -> &'a mut Vec<Node> {
        match open.last_mut() {
            Some((_, children)) => children,
            None => root,
        }
    }
    for line in lines {
        let mut words: Vec<Token> = Vec::new();
        let flush =
            |words: &mut Vec<Token>, root: &mut Vec<Node>, open: &mut Vec<(Node, Vec<Node>)>| {
                if !words.is_empty() {
                    let mut w = std::mem::take(words).into_iter();
                    let kw = w.next().unwrap_or_else(|| unreachable!());
                    level(root, open).push(Node {
                        kw,
                        args: w.collect(),
                        block: None,
                    });
                }
            };
        for t in line {
            if is(&t, "{") {
                let node = if let Some((kw, args)) = words.split_first() {
                    let n = Node {
                        kw: kw.clone(),
                        args: args.to_vec(),
                        block: None,
                    };
                    words.clear();
                    Some(n)
                } else {
                    let lvl = level(&mut root, &mut open);
                    match lvl.last() {
                        Some(prev) if prev.block.is_none() => lvl.pop(),
                        _ => None,
                    }
                };
                match node {
                    Some(n) => open.push((n, Vec::new())),
                    None => diag.error(&t.pos, "'{' without a keyword before it"),
                }
            } else if is(&t, "}") {
                flush(&mut words, &mut root, &mut open);
                match open.pop() {
                    Some((mut n, children)) => {
                        n.block = Some(children);
                        level(&mut root, &mut open).push(n);
                    }
                    None => diag.error(&t.pos, "unexpected '}' (no block is open)"),
                }
            } else {
                words.push(t);
            }
        }
        flush(&mut words, &mut root, &mut open);
    }
    while let Some((mut n, children)) = open.pop() {
        diag.error(
            n.pos(),
            format!("block '{}' is never closed (missing '}}')", n.name()),
        );
        n.block = Some(children);
        level(&mut root, &mut open).push(n);
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalived::lexer;
    use std::rc::Rc;

    fn lines(text: &str) -> Vec<Line> {
        let file: Rc<str> = "t.conf".into();
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                let (chars, _) = lexer::decomment(&lexer::chars(l)).unwrap();
                lexer::words(&chars)
                    .into_iter()
                    .map(|w| Token {
                        text: w.text,
                        pos: Pos {
                            file: file.clone(),
                            line: i + 1,
                            col: w.col,
                        },
                        quoted: w.quoted,
                    })
                    .collect()
            })
            .filter(|l: &Line| !l.is_empty())
            .collect()
    }

    #[test]
    fn braces_on_the_line_the_next_line_or_glued() {
        let mut d = Diag::new(false);
        let nodes = build(
            lines(
                "vrrp_instance A\n{\n  unicast_peer{\n    10.0.0.1 }\n  track_interface { eth0 eth1 }\n}\n",
            ),
            &mut d,
        );
        assert_eq!(d.error_count(), 0);
        assert_eq!(nodes.len(), 1);
        let a = &nodes[0];
        assert_eq!((a.name(), a.args[0].text.as_str()), ("vrrp_instance", "A"));
        let kids: Vec<&str> = a.children().iter().map(|n| n.name()).collect();
        assert_eq!(kids, ["unicast_peer", "track_interface"]);
        assert_eq!(a.children()[0].children()[0].name(), "10.0.0.1");
        let t = &a.children()[1].children()[0];
        assert_eq!((t.name(), t.args[0].text.as_str()), ("eth0", "eth1"));
    }

    #[test]
    fn unbalanced_braces_are_located() {
        let mut d = Diag::new(false);
        build(lines("a {\n  b {\n}\n}\n}\n{\n"), &mut d);
        let e = d.finish(None).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.conf:5:1: unexpected '}' (no block is open)\nt.conf:6:1: '{' without a keyword before it"
        );
    }
}
