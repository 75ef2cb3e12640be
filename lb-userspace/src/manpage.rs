//! Man pages that are not clap's: `xlb.toml(5)`, written from docs/CONFIG.md
//! (the one source: the page is that file set in roff, so the two cannot
//! disagree), and `xlb-keepalived(5)`, written from `xlb check --coverage`
//! (the keyword table in keepalived/keywords.rs) and CONFIG.md's
//! "keepalived.conf specifics" section. lb-userspace/examples/docs.rs
//! writes them beside clap's section 8 pages.

/// docs/CONFIG.md, embedded so the page is built from the file in the tree.
pub const CONFIG_MD: &str = include_str!("../../docs/CONFIG.md");

/// Text safe in roff: backslashes escaped, a leading `.` or `'` defused.
fn escape(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// A heading's text: no Markdown marks (a heading is bold already).
fn heading(h: &str) -> String {
    escape(&h.replace('`', ""))
}

/// Inline Markdown in running text: `code` and **strong** in bold.
fn inline(line: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let s = escape(line).replace("**", "`");
    for c in s.chars() {
        if c == '`' {
            out.push_str(if bold { "\\fR" } else { "\\fB" });
            bold = !bold;
        } else {
            out.push(c);
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    out
}

/// Markdown (the subset docs/ use: headings, paragraphs, lists, fenced
/// code, tables) as the body of a man page.
pub fn markdown_to_roff(md: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    let mut table = false;
    for line in md.lines() {
        if line.starts_with("```") {
            out.push_str(if fenced {
                ".fi\n.RE\n"
            } else {
                ".PP\n.RS 2\n.nf\n"
            });
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push_str(&escape(line));
            out.push('\n');
            continue;
        }
        let is_row = line.starts_with('|');
        if is_row != table {
            out.push_str(if is_row { ".PP\n.nf\n" } else { ".fi\n" });
            table = is_row;
        }
        if is_row {
            // The separator row carries no text.
            if !line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
                out.push_str(&inline(line));
                out.push('\n');
            }
        } else if line.starts_with("# ") {
            // The page's title is in .TH.
        } else if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!(".SH \"{}\"\n", heading(h).to_uppercase()));
        } else if let Some(h) = line.strip_prefix("### ") {
            out.push_str(&format!(".SS \"{}\"\n", heading(h)));
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&inline(item));
            out.push('\n');
        } else if line.trim().is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&inline(line.trim_start()));
            out.push('\n');
        }
    }
    if table {
        out.push_str(".fi\n");
    }
    out
}

fn header(name: &str, section: &str, what: &str) -> String {
    format!(
        ".TH {} {section} \"\" \"xlb {}\" \"xlb\"\n.SH NAME\n{} \\- {what}\n",
        name.to_uppercase(),
        env!("CARGO_PKG_VERSION"),
        escape(name)
    )
}

/// xlb.toml(5): docs/CONFIG.md.
pub fn config_page() -> String {
    format!(
        "{}.SH DESCRIPTION\n{}.SH SEE ALSO\n\\fBxlb\\fR(8), \\fBxlb\\-keepalived\\fR(5), \\fBxlb\\-run\\fR(8)\n",
        header("xlb.toml", "5", "configuration of the xlb load balancer"),
        markdown_to_roff(CONFIG_MD)
    )
}

/// xlb-keepalived(5): how keepalived.conf is read.
pub fn keepalived_page() -> String {
    let specifics = CONFIG_MD
        .split("\n## keepalived.conf specifics\n")
        .nth(1)
        .map(|rest| rest.split("\n## ").next().unwrap_or(rest))
        .unwrap_or_default();
    let coverage: String = crate::keepalived::coverage::render()
        .lines()
        .map(|l| format!("{}\n", escape(l)))
        .collect();
    format!(
        "{}.SH DESCRIPTION\n\
         \\fBxlb run \\-\\-keepalived\\-conf\\fR \\fIFILE\\fR reads a keepalived.conf as keepalived 2.2.7 \
         reads it and drives the same model as \\fBxlb.toml\\fR(5); \\fBxlb check \\-\\-keepalived\\-conf\\fR \
         validates it (file:line:col errors) and \\fBxlb convert\\fR prints it as TOML. A keyword xlb \
         cannot honour is an error (\\fB\\-\\-lenient\\fR makes it a warning); the ones that change \
         nothing in xlb are ignored with a reason.\n\
         .SH DIFFERENCES\n{}\
         .SH KEYWORDS\nEvery keepalived 2.2.7 keyword by block, then each one xlb refuses or ignores \
         and why (the output of \\fBxlb check \\-\\-coverage\\fR):\n.PP\n.nf\n{coverage}.fi\n\
         .SH SEE ALSO\n\\fBkeepalived.conf\\fR(5), \\fBxlb.toml\\fR(5), \\fBxlb\\fR(8)\n",
        header("xlb-keepalived", "5", "what xlb reads from keepalived.conf"),
        markdown_to_roff(specifics)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_page_is_config_md() {
        let page = config_page();
        // Every heading and every key of every example is in the page.
        let mut fenced = false;
        for line in CONFIG_MD.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if fenced {
                assert!(page.contains(&escape(line)), "missing: {line}");
            } else if let Some(h) = line.strip_prefix("## ") {
                assert!(
                    page.contains(&format!(".SH \"{}\"", heading(h).to_uppercase())),
                    "{h}"
                );
            }
        }
        assert!(page.starts_with(".TH XLB.TOML 5 "));
        // No line starts with a stray control character.
        for l in page.lines().filter(|l| l.starts_with('.')) {
            let req = l.split_whitespace().next().unwrap();
            assert!(
                [
                    ".TH", ".SH", ".SS", ".PP", ".IP", ".RS", ".RE", ".nf", ".fi"
                ]
                .contains(&req),
                "{l}"
            );
        }
    }

    #[test]
    fn the_keepalived_page_lists_every_refused_keyword() {
        let page = keepalived_page();
        for l in crate::keepalived::coverage::render().lines() {
            assert!(page.contains(&escape(l)), "missing: {l}");
        }
        assert!(page.contains("virtual_server_group"));
    }

    #[test]
    fn roff_controls_in_text_are_defused() {
        assert_eq!(markdown_to_roff(".hidden"), "\\&.hidden\n");
        assert_eq!(markdown_to_roff("a `b` c"), "a \\fBb\\fR c\n");
        assert_eq!(
            markdown_to_roff("```\n.x\n```"),
            ".PP\n.RS 2\n.nf\n\\&.x\n.fi\n.RE\n"
        );
    }
}
