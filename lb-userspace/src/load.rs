//! Reading a configuration from where it comes from, xlb's TOML or a
//! keepalived.conf, into the one model (`config::Config`), then checking
//! its scripts on this host (`enable_script_security`). Above both front
//! ends (`config::validate` and `keepalived`), so neither imports the other.

use crate::config::{Config, ConfigError, ConfigErrors, parse_sited};
use std::{fmt, path::PathBuf};

/// Reads and validates `path`, then checks its scripts on this host
/// (`enable_script_security`). A keepalived.conf given as TOML fails with
/// the TOML error and a hint to read it with `--keepalived-conf`.
pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    load_with(path, false)
}

/// [`load`], and with `on_host` what this host must offer too
/// ([`crate::config::parse_sited`]).
pub fn load_with(path: &std::path::Path, on_host: bool) -> anyhow::Result<Config> {
    let bytes = crate::keepalived::read_regular(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", path.display()))?;
    let shown = path.display().to_string();
    let hint = || {
        keepalived_block(&bytes).map(|(line, block)| ConfigError {
        file: shown.clone(),
        line,
        col: 1,
        message: format!(
            "this looks like a keepalived.conf ('{block} {{' here), not xlb's TOML: read it with --keepalived-conf {shown}"
        ),
    })
    };
    let text = match String::from_utf8(bytes.clone()) {
        Ok(t) => t,
        Err(e) => {
            let errors = hint().map_or_else(Vec::new, |h| vec![h]);
            if errors.is_empty() {
                anyhow::bail!("{shown}: cannot read config: {e}");
            }
            return Err(ConfigErrors(errors).into());
        }
    };
    let (config, sites) = parse_sited(&shown, &text, on_host).map_err(|mut e| {
        e.0.extend(hint());
        anyhow::Error::from(e)
    })?;
    crate::script::security::check_config(&config, &shown, &sites)?;
    Ok(config)
}

/// The first line that opens a block only keepalived.conf has, and its keyword.
fn keepalived_block(bytes: &[u8]) -> Option<(usize, &'static str)> {
    const BLOCKS: [&str; 8] = [
        "global_defs",
        "vrrp_instance",
        "vrrp_sync_group",
        "vrrp_script",
        "virtual_server",
        "virtual_server_group",
        "static_ipaddress",
        "static_routes",
    ];
    String::from_utf8_lossy(bytes)
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let first = l.split_whitespace().next()?;
            let block = BLOCKS.iter().find(|b| **b == first)?;
            l.contains('{').then_some((i + 1, *block))
        })
}

/// Where the configuration comes from: xlb's TOML or a keepalived.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Toml {
        path: PathBuf,
        /// Check what the host must offer (see [`Source::on_this_host`]).
        on_host: bool,
    },
    Keepalived {
        path: PathBuf,
        options: crate::keepalived::Options,
        /// An extra TOML file holding `[bgp]` (keepalived.conf has no BGP).
        bgp: Option<PathBuf>,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path().display())
    }
}

impl Source {
    pub fn path(&self) -> &std::path::Path {
        match self {
            Source::Toml { path: p, .. } | Source::Keepalived { path: p, .. } => p,
        }
    }

    /// The same source, read as `xlb check` and `xlb run` read it: the
    /// interfaces it names must exist here, and an address owner's
    /// addresses must be this node's.
    pub fn on_this_host(mut self) -> Source {
        match &mut self {
            Source::Keepalived { options, .. } => options.check_interfaces = true,
            Source::Toml { on_host, .. } => *on_host = true,
        }
        self
    }
}

/// Reads the configuration from either front end: `xlb run`, `xlb check`
/// and `xlb dump-config` all come through here, so both formats give the
/// same model. Warnings (keepalived.conf with `--lenient`) go to stderr.
pub fn load_from(source: &Source) -> anyhow::Result<Config> {
    match source {
        Source::Toml { path, on_host } => load_with(path, *on_host),
        Source::Keepalived { path, options, bgp } => {
            let mut loaded = crate::keepalived::load(path, options)?;
            for w in &loaded.warnings {
                eprintln!("{}:{}:{}: warning: {}", w.file, w.line, w.col, w.message);
            }
            let shown = path.display().to_string();
            crate::script::security::check_config(&loaded.config, &shown, &loaded.scripts)?;
            if let Some(extra) = bgp {
                let bytes = crate::keepalived::read_regular(extra)
                    .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", extra.display()))?;
                let text = String::from_utf8(bytes)
                    .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", extra.display()))?;
                let section = crate::config::bgp::parse_extra(
                    &extra.display().to_string(),
                    &text,
                    &loaded.config,
                )?;
                loaded.config.bgp = Some(section);
            }
            Ok(loaded.config)
        }
    }
}
