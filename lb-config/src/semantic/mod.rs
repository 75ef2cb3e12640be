//! The one semantic check: rules about what a model means (names defined
//! once and referred to, address families that agree, what a data plane
//! can do, what fits its maps), run on the [`Config`] either front end
//! produced, with one set of messages. The front ends keep only their
//! syntax and type checks, and record in [`Sites`] where each part of the
//! model was written, so every error here still names `file:line:col`.

mod services;
mod vrrp;

use crate::{Config, ConfigError};
use std::{collections::HashMap, fmt};

/// Where a part of the model was written: file, 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

impl Site {
    /// How an error at `here` names this earlier site: its line in the
    /// same file, else its full position (an included file).
    fn seen_from(&self, here: &Site) -> String {
        if self.file == here.file {
            format!("line {}", self.line)
        } else {
            format!("{self}")
        }
    }
}

/// Model path → where it was written. Paths are the model's field names
/// with list indices: `services[2].reals[0].l_threshold`,
/// `vrrp.instances[1].virtual_router_id`. A path not recorded falls back to
/// its nearest recorded parent, and at last to the file's start (`""`), so
/// a front end records what it can point at and every error has a place.
#[derive(Clone, Debug, Default)]
pub struct Sites(HashMap<String, Site>);

impl Sites {
    /// Sites for a file named `file`; its start is the last resort.
    pub fn new(file: &str) -> Sites {
        let mut s = Sites::default();
        s.set(
            "",
            Site {
                file: file.to_string(),
                line: 1,
                col: 1,
            },
        );
        s
    }

    pub fn set(&mut self, path: impl Into<String>, site: Site) {
        self.0.insert(path.into(), site);
    }

    /// Where `path` (or its nearest recorded parent) was written.
    pub fn at(&self, path: &str) -> Site {
        let mut p = path;
        loop {
            if let Some(s) = self.0.get(p) {
                return s.clone();
            }
            if p.is_empty() {
                return Site {
                    file: String::new(),
                    line: 1,
                    col: 1,
                };
            }
            p = parent(p);
        }
    }
}

/// `a.b[3].c` → `a.b[3]` → `a.b` → `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// The errors found so far, each placed through the sites.
struct Found<'s> {
    sites: &'s Sites,
    errors: Vec<ConfigError>,
}

impl Found<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let s = self.sites.at(path);
        self.errors.push(ConfigError {
            file: s.file,
            line: s.line,
            col: s.col,
            message: message.into(),
        });
    }

    /// "already defined at …" naming where the first one is.
    fn again(&mut self, path: &str, first: &str, what: impl fmt::Display) {
        let here = self.sites.at(path);
        let first = self.sites.at(first).seen_from(&here);
        self.error(path, format!("{what} is already defined at {first}"));
    }
}

/// Every semantic error of `config`, placed through `sites`, in the order
/// of the text (files in the order first seen). Both front ends call this
/// once their own checks passed: a model with a syntax or type error is
/// not complete enough to judge.
pub fn check(config: &Config, sites: &Sites) -> Vec<ConfigError> {
    let mut found = Found {
        sites,
        errors: Vec::new(),
    };
    services::check(config, &mut found);
    vrrp::check(config, &mut found);
    let mut errors = found.errors;
    let mut files: Vec<String> = Vec::new();
    for e in &errors {
        if !files.contains(&e.file) {
            files.push(e.file.clone());
        }
    }
    errors.sort_by_key(|e| (files.iter().position(|f| *f == e.file), e.line, e.col));
    errors
}

/// ` (did you mean `x`?)` when a defined name is close to `name`.
fn hint<'a>(name: &str, defined: impl IntoIterator<Item = &'a str>) -> String {
    crate::hint::closest(name, defined)
        .map(|h| format!(" (did you mean `{h}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{Site, Sites, parent};

    #[test]
    fn a_path_not_recorded_falls_back_to_its_parent_then_the_file() {
        assert_eq!(
            parent("services[2].reals[0].l_threshold"),
            "services[2].reals[0]"
        );
        assert_eq!(parent("services[2]"), "services");
        assert_eq!(parent("services"), "");
        let mut s = Sites::new("x.toml");
        let at = |line| Site {
            file: "x.toml".into(),
            line,
            col: 3,
        };
        s.set("services[2]", at(7));
        assert_eq!(s.at("services[2].reals[0].l_threshold"), at(7));
        assert_eq!(s.at("services[1]").line, 1);
        assert_eq!(s.at("vrrp.instances[0]").file, "x.toml");
    }
}
