//! keepalived.conf as a second front end: the file is read as keepalived
//! reads it (comments, quotes, `include`, `$NAME` parameters, `@id` lines),
//! built into a tree of keyword nodes, and mapped onto the same model the
//! TOML front end produces. Unlike keepalived, nothing is silently ignored:
//! unknown keywords and bad values are errors with `file:line:col`, and
//! keywords xlb cannot honour are errors too unless `lenient` is set.

pub mod coverage;
mod diag;
mod include;
pub mod keywords;
mod lexer;
mod map;
mod params;
mod sequence;
mod tree;

use crate::{Config, ConfigError, ConfigErrors, ScriptSite};
use std::path::Path;

pub use diag::Pos;
pub use include::read_regular;

/// How to read a keepalived.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--config-id`: selects `@ID` lines (and drops `@^ID` lines).
    pub config_id: Option<String>,
    /// `--lenient`: keywords xlb cannot honour become warnings and are ignored.
    pub lenient: bool,
    /// Every interface the file names must exist here (`xlb check`, `xlb
    /// run`), as `keepalived -t` checks, unless `dynamic_interfaces`.
    pub check_interfaces: bool,
}

/// A model read from keepalived.conf, with the warnings `lenient` allowed
/// and where each script is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigError>,
    pub scripts: Vec<ScriptSite>,
}

/// Reads `path` (and everything it includes) into a validated model; every
/// problem found is reported, not just the first.
pub fn load(path: &Path, opts: &Options) -> Result<Loaded, ConfigErrors> {
    let mut diag = diag::Diag::new(opts.lenient);
    let lines = include::read(path, opts.config_id.as_deref(), &mut diag);
    let nodes = tree::build(lines, &mut diag);
    let config = map::config(&nodes, &mut diag, opts.check_interfaces);
    diag.finish(Some(config))
}

/// Reads keepalived.conf text shown as `name`, as [`load`] reads a file,
/// except that `include` is an error: nothing outside `text` is read.
pub fn parse(name: &str, text: &str, opts: &Options) -> Result<Loaded, ConfigErrors> {
    parse_bytes(name, text.as_bytes(), opts)
}

/// [`parse`] on bytes, which keepalived.conf may hold in any encoding.
pub fn parse_bytes(name: &str, text: &[u8], opts: &Options) -> Result<Loaded, ConfigErrors> {
    let mut diag = diag::Diag::new(opts.lenient);
    let lines = include::read_text(name, text, opts.config_id.as_deref(), &mut diag);
    let nodes = tree::build(lines, &mut diag);
    let config = map::config(&nodes, &mut diag, opts.check_interfaces);
    diag.finish(Some(config))
}
