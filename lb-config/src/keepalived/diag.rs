//! Positions and the error/warning list every stage appends to.

use crate::{Command, ConfigError, ConfigErrors, ScriptSite};
use std::{fmt, rc::Rc};

/// Where a token starts: file (as named by the user or the include), 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Rc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

pub struct Diag {
    lenient: bool,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Where each script is written (checked after parsing: script security).
    scripts: Vec<ScriptSite>,
}

/// By file (in the order first seen), then line and column; stable.
fn sort(list: &mut [ConfigError]) {
    let mut files: Vec<String> = Vec::new();
    for e in list.iter() {
        if !files.contains(&e.file) {
            files.push(e.file.clone());
        }
    }
    list.sort_by_key(|e| (files.iter().position(|f| *f == e.file), e.line, e.col));
}

fn at(pos: &Pos, message: String) -> ConfigError {
    ConfigError {
        file: pos.file.to_string(),
        line: pos.line,
        col: pos.col,
        message,
    }
}

impl Diag {
    pub fn new(lenient: bool) -> Diag {
        Diag {
            lenient,
            errors: Vec::new(),
            warnings: Vec::new(),
            scripts: Vec::new(),
        }
    }

    /// Notes that `command` is written at `pos`.
    pub fn script(&mut self, pos: &Pos, command: &Command) {
        self.scripts.push(ScriptSite {
            command: command.clone(),
            file: pos.file.to_string(),
            line: pos.line,
            col: pos.col,
        });
    }

    pub fn error(&mut self, pos: &Pos, message: impl Into<String>) {
        self.errors.push(at(pos, message.into()));
    }

    /// An error placed already (by the semantic check).
    pub fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    /// A keyword keepalived accepts but xlb does not honour: an error, or
    /// with `lenient` a warning (the caller then ignores the keyword).
    pub fn unsupported(&mut self, pos: &Pos, what: &str, reason: &str) {
        let e = at(pos, format!("unsupported keyword '{what}' ({reason})"));
        if self.lenient {
            self.warnings.push(e);
        } else {
            self.errors.push(e);
        }
    }

    /// Something keepalived 2.2.7 accepts and corrects, or where xlb
    /// deliberately differs: reported, never refused.
    pub fn warning(&mut self, pos: &Pos, message: impl Into<String>) {
        self.warnings.push(at(pos, message.into()));
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The model if nothing was wrong, else every error; each list in the
    /// order of the text (files in the order they were read).
    pub fn finish(mut self, config: Option<crate::Config>) -> Result<super::Loaded, ConfigErrors> {
        sort(&mut self.errors);
        sort(&mut self.warnings);
        match config {
            Some(config) if self.errors.is_empty() => Ok(super::Loaded {
                config,
                warnings: self.warnings,
                scripts: self.scripts,
            }),
            _ => Err(ConfigErrors(self.errors)),
        }
    }
}
