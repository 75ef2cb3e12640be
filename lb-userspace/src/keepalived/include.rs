//! Reads a keepalived.conf and the files it includes into one list of
//! token lines, applying `@id` conditions and `$NAME` parameters as
//! keepalived's `read_line()` does, in the same order: comments, then the
//! `@id` condition, then definitions, then substitution, then `include`.
//! Only regular files are read: a FIFO, device, socket or directory is
//! refused at the line that names it, found by stat before anything is
//! opened (a FIFO would block the read forever, /dev/zero never end), and
//! a file is read up to [`MAX_FILE`].

use super::{
    diag::{Diag, Pos},
    lexer, params,
    params::Params,
};
use std::{
    fs::{File, FileType, OpenOptions},
    io::Read,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
    rc::Rc,
};

/// Includes nested deeper than this are refused (keepalived has no limit;
/// a runaway glob should not exhaust the agent).
const MAX_DEPTH: usize = 16;
/// Largest config file read (a generated one with 25,000 real servers is
/// a few MiB).
const MAX_FILE: u64 = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub pos: Pos,
    pub quoted: bool,
}

pub type Line = Vec<Token>;

pub fn read(path: &Path, config_id: Option<&str>, diag: &mut Diag) -> Vec<Line> {
    let mut r = Reader::new(config_id, true, diag);
    r.file(path, None);
    r.finish()
}

/// `text`, shown as `name`, read like a file whose `include` lines are
/// errors: nothing outside the text is touched (the parser fuzz target).
pub fn read_text(name: &str, text: &str, config_id: Option<&str>, diag: &mut Diag) -> Vec<Line> {
    let mut r = Reader::new(config_id, false, diag);
    r.lines(Path::new(name), name.into(), text);
    r.finish()
}

/// What a file type is called in an error.
fn kind_name(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file: stat first, so that
/// nothing else is ever opened; then opened without blocking and checked
/// again on the descriptor, in case it was swapped in between.
fn open_regular(path: &Path) -> Result<File, String> {
    let kind = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .file_type();
    if !kind.is_file() {
        return Err(format!("it is {}, not a regular file", kind_name(kind)));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let kind = file.metadata().map_err(|e| e.to_string())?.file_type();
    if !kind.is_file() {
        return Err(format!("it is {}, not a regular file", kind_name(kind)));
    }
    Ok(file)
}

/// The text of regular file `path`, at most [`MAX_FILE`] bytes (also the
/// TOML config's reader).
pub(crate) fn read_regular(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    open_regular(path)?
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("it is larger than {} MiB", MAX_FILE >> 20));
    }
    Ok(text)
}

struct Reader<'a, 'd> {
    config_id: Option<&'a str>,
    params: Params,
    /// Canonical paths of the files being read, outermost first.
    stack: Vec<(PathBuf, String)>,
    out: Vec<Line>,
    /// false: `include` is refused (text read without a file system).
    includes: bool,
    diag: &'d mut Diag,
}

impl<'a, 'd> Reader<'a, 'd> {
    fn new(config_id: Option<&'a str>, includes: bool, diag: &'d mut Diag) -> Self {
        Reader {
            config_id,
            params: Params::default(),
            stack: Vec::new(),
            out: Vec::new(),
            includes,
            diag,
        }
    }

    /// The lines read; none once parameters ran out (the one error says
    /// so; a config cut there would only add errors about its missing end).
    fn finish(self) -> Vec<Line> {
        if self.params.exhausted() {
            Vec::new()
        } else {
            self.out
        }
    }

    fn file(&mut self, path: &Path, from: Option<&Pos>) {
        let shown: Rc<str> = path.display().to_string().into();
        let here = Pos {
            file: shown.clone(),
            line: 1,
            col: 1,
        };
        let at = from.unwrap_or(&here).clone();
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                self.diag.error(&at, format!("cannot read '{shown}': {e}"));
                return;
            }
        };
        if let Some(i) = self.stack.iter().position(|(c, _)| *c == canonical) {
            let mut chain: Vec<&str> = self.stack[i..].iter().map(|(_, s)| s.as_str()).collect();
            chain.push(&shown);
            self.diag
                .error(&at, format!("include cycle: {}", chain.join(" -> ")));
            return;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.diag.error(
                &at,
                format!("includes nested deeper than {MAX_DEPTH} files"),
            );
            return;
        }
        let text = match read_regular(path) {
            Ok(t) => t,
            Err(e) => {
                self.diag.error(&at, format!("cannot read '{shown}': {e}"));
                return;
            }
        };
        self.stack.push((canonical, shown.to_string()));
        self.lines(path, shown, &text);
        self.stack.pop();
    }

    /// The lines of `text`, read from `path` (shown as `shown`).
    fn lines(&mut self, path: &Path, shown: Rc<str>, text: &str) {
        let mut multiline: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            if self.params.exhausted() {
                return;
            }
            let pos = |col| Pos {
                file: shown.clone(),
                line: i + 1,
                col,
            };
            let (line, cont) = match lexer::decomment(&lexer::chars(raw.trim_end_matches('\r'))) {
                Ok(l) => l,
                Err(col) => {
                    self.diag.error(&pos(col), "unterminated quote");
                    continue;
                }
            };
            if let Some(name) = &multiline {
                let text: String = line.iter().map(|c| c.0).collect();
                self.params.extend(name, text);
                if !cont {
                    multiline = None;
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let Some(line) = self.condition(line) else {
                continue;
            };
            if let Some((name, first)) = params::definition(&line) {
                self.params.define(name.clone(), first);
                if cont {
                    multiline = Some(name);
                }
                continue;
            }
            if cont {
                self.diag.error(
                    &pos(line.last().map_or(1, |c| c.1 + 1)),
                    "a '\\' continues only a '$NAME=' definition onto the next line",
                );
                continue;
            }
            let lines = match self.params.substitute(line) {
                Ok(l) => l,
                Err((col, msg)) => {
                    self.diag.error(&pos(col), msg);
                    if self.params.exhausted() {
                        // Every later use would fail the same way.
                        return;
                    }
                    continue;
                }
            };
            for l in lines {
                let tokens: Line = lexer::words(&l)
                    .into_iter()
                    .map(|w| Token {
                        text: w.text,
                        pos: pos(w.col),
                        quoted: w.quoted,
                    })
                    .collect();
                if tokens
                    .first()
                    .is_some_and(|t| t.text == "include" && !t.quoted)
                {
                    if self.includes {
                        self.include(path, &tokens);
                    } else {
                        self.diag
                            .error(&tokens[0].pos, "'include' needs a file, not text");
                    }
                } else if !tokens.is_empty() {
                    self.out.push(tokens);
                }
            }
        }
    }

    /// `@ID rest` keeps `rest` only when `--config-id` is ID; `@^ID rest` only when it is not.
    fn condition(&self, line: lexer::Chars) -> Option<lexer::Chars> {
        if line[0].0 != '@' {
            return Some(line);
        }
        let negate = line.get(1).is_some_and(|c| c.0 == '^');
        let start = 1 + usize::from(negate);
        let end = line.iter().position(|c| c.0.is_whitespace())?;
        let id: String = line[start..end].iter().map(|c| c.0).collect();
        let matches = self.config_id == Some(id.as_str());
        (matches != negate).then(|| {
            let rest = line[end..]
                .iter()
                .position(|c| !c.0.is_whitespace())
                .unwrap_or(0);
            line[end + rest..].to_vec()
        })
    }

    /// `include PATTERN`: every file the glob matches, relative to the including file.
    fn include(&mut self, current: &Path, tokens: &[Token]) {
        let kw = &tokens[0];
        if tokens.len() != 2 {
            self.diag.error(
                &kw.pos,
                "'include' takes exactly one file name or glob pattern",
            );
            return;
        }
        let pattern = &tokens[1];
        let full = match current.parent() {
            Some(dir) if !Path::new(&pattern.text).is_absolute() => dir.join(&pattern.text),
            _ => PathBuf::from(&pattern.text),
        };
        let paths = match glob::glob(&full.to_string_lossy()) {
            Ok(p) => p,
            Err(e) => {
                self.diag.error(
                    &pattern.pos,
                    format!("bad include pattern '{}': {e}", pattern.text),
                );
                return;
            }
        };
        let mut matched = 0;
        for p in paths {
            if self.params.exhausted() {
                return;
            }
            match p {
                Ok(p) => {
                    matched += 1;
                    self.file(&p, Some(&pattern.pos));
                }
                Err(e) => self.diag.error(&pattern.pos, format!("include: {e}")),
            }
        }
        if matched == 0 {
            self.diag.error(
                &pattern.pos,
                format!(
                    "include '{}' matches no file (looked for {})",
                    pattern.text,
                    full.display()
                ),
            );
        }
    }
}
