//! Reads a keepalived.conf and the files it includes into one list of
//! token lines, applying `@id` conditions and `$NAME` parameters as
//! keepalived's `read_line()` does, in the same order: comments, then the
//! `@id` condition, then definitions, then substitution, then `include`.

use super::{
    diag::{Diag, Pos},
    lexer, params,
    params::Params,
    sequence,
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
/// Lines one `~SEQ` may expand to.
const MAX_SEQUENCE: u64 = 65536;
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
pub fn read_text(name: &str, text: &[u8], config_id: Option<&str>, diag: &mut Diag) -> Vec<Line> {
    let mut r = Reader::new(config_id, false, diag);
    r.lines(Path::new(name), name.into(), text);
    r.finish()
}

/// One line of the file as keepalived's `read_line()` sees it: it ends at
/// a NUL byte (C strings), and its bytes are taken as UTF-8 where they are
/// (others become U+FFFD). Also returns the columns of the bytes that were
/// not UTF-8, and the column of the NUL that cut the line.
fn decode(raw: &[u8]) -> (String, Vec<usize>, Option<usize>) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let nul = raw.iter().position(|b| *b == 0);
    let mut rest = &raw[..nul.unwrap_or(raw.len())];
    let mut text = String::new();
    let mut bad = Vec::new();
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                text.push_str(s);
                break;
            }
            Err(e) => {
                let (good, after) = rest.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(good).unwrap_or_default());
                bad.push(text.chars().count() + 1);
                text.push(char::REPLACEMENT_CHARACTER);
                rest = &after[e.error_len().unwrap_or(after.len())..];
            }
        }
    }
    let nul_col = nul.map(|_| text.chars().count() + 1);
    (text, bad, nul_col)
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
/// nothing else is ever opened (a FIFO would block, /dev/zero never end;
/// keepalived skips them with an error too); then opened without blocking
/// and checked again on the descriptor, in case it was swapped in between.
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

/// The bytes of regular file `path`, at most [`MAX_FILE`] (also the TOML
/// config's reader).
pub fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("it is larger than {} MiB", MAX_FILE >> 20));
    }
    Ok(bytes)
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
    fn lines(&mut self, path: &Path, shown: Rc<str>, text: &[u8]) {
        let mut multiline: Option<String> = None;
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
            if self.params.exhausted() {
                return;
            }
            let pos = |col| Pos {
                file: shown.clone(),
                line: i + 1,
                col,
            };
            let (raw, bad, nul) = decode(raw);
            if let Some(col) = nul {
                self.diag.warning(
                    &pos(col),
                    "a NUL byte ends the line here (keepalived reads the line up to it); the rest of the line is left out",
                );
            }
            let (line, cont) = match lexer::decomment(&lexer::chars(&raw)) {
                Ok(l) => l,
                Err(col) => {
                    self.diag.error(&pos(col), "unterminated quote");
                    continue;
                }
            };
            // Bytes that are not UTF-8 are fine in comments; in a value
            // they cannot be kept as they are.
            for col in bad.iter().filter(|c| line.iter().any(|(_, lc)| lc == *c)) {
                self.diag.warning(
                    &pos(*col),
                    "a byte that is not UTF-8 is read as U+FFFD (keepalived passes the byte on as it is): write the value in UTF-8",
                );
            }
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
            multiline = self.logical(path, &pos, line, cont);
        }
    }

    /// One line after its comment is gone: `@id` condition, `$NAME=`
    /// definition, `~SEQ`, substitution, `include`. Returns the name of a
    /// definition the line starts and a `\` continues.
    fn logical(
        &mut self,
        path: &Path,
        pos: &dyn Fn(usize) -> Pos,
        line: lexer::Chars,
        cont: bool,
    ) -> Option<String> {
        let line = self.condition(line)?;
        if let Some((name, first)) = params::definition(&line) {
            self.params.define(name.clone(), first);
            return cont.then_some(name);
        }
        if cont {
            self.diag.error(
                &pos(line.last().map_or(1, |c| c.1 + 1)),
                "a '\\' continues only a '$NAME=' definition onto the next line",
            );
            return None;
        }
        if line.first().is_some_and(|c| c.0 == '~') {
            self.sequence(path, pos, &line);
            return None;
        }
        let lines = match self.params.substitute(line) {
            Ok(l) => l,
            Err((col, msg)) => {
                self.diag.error(&pos(col), msg);
                return None;
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
        None
    }

    /// `~SEQ(VAR, [START, [STEP,]] END) TEXT` (`~SEQx`: the values in hex):
    /// TEXT read once per value with `$VAR` defined as it, as keepalived's
    /// `add_seq` does.
    fn sequence(&mut self, path: &Path, pos: &dyn Fn(usize) -> Pos, line: &lexer::Chars) {
        let at = pos(line[0].1);
        let Some(seq) = sequence::parse(line, &mut self.params) else {
            let head: String = line.iter().take(4).map(|c| c.0).collect();
            if head == "~LST" {
                self.diag.unsupported(
                    &at,
                    "~LST",
                    "value lists are not implemented; use ~SEQ or one line per value",
                );
            } else {
                self.diag.error(
                    &at,
                    "invalid ~SEQ: expected '~SEQ(NAME, [START, [STEP,]] END) TEXT'",
                );
            }
            return;
        };
        // Each value's expansion is the text again: bound the work as for parameters.
        if seq.count() > MAX_SEQUENCE {
            self.diag
                .error(&at, format!("~SEQ yields more than {MAX_SEQUENCE} lines"));
            return;
        }
        for value in seq.values() {
            self.params.define(seq.var.clone(), value);
            self.logical(path, pos, seq.text.clone(), false);
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
