//! The one semantic check: rules about what a model means (names defined
//! once and referred to, address families that agree, what a data plane
//! can do, what fits its maps), run on the [`Config`] either front end
//! produced, with one set of messages. The front ends keep only their
//! syntax and type checks, and record in [`Sites`] where each part of the
//! model was written, so every error here still names `file:line:col`.

mod services;
mod vrrp;

use crate::{Config, ConfigError, capacity};
use std::{collections::HashMap, fmt, rc::Rc};

/// Where a part of the model was written: file, 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Shared by every site of one file (a site is recorded per field of
    /// every real, so a copied name would cost a string each).
    pub file: Rc<str>,
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
                file: file.into(),
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
                    file: "".into(),
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

/// Each rule of the semantic check. Tests hold every rule to a case
/// written in both front ends' syntax (lb-config/tests/semantic_parity.rs),
/// so no rule is enforced for one format only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Two services with one address, port and protocol (or fwmark).
    ServiceTwice,
    /// A real of the other address family than its (untunnelled) service.
    RealFamily,
    /// `lthreshold` above `uthreshold`.
    Thresholds,
    /// A persistence mask of the other address family than the service.
    PersistenceFamily,
    /// A sorry server of the other address family than its service.
    SorryFamily,
    /// Services of one group with different reals or checks.
    GroupAlike,
    /// A fwmark service on a data plane other than IPVS.
    FwmarkNeedsIpvs,
    /// Services that do not fit the XDP data plane's maps.
    Capacity,
    /// `lvs_sync_daemon` on a data plane other than IPVS.
    SyncDaemonNeedsIpvs,
    /// Two vrrp_scripts, track files, instances or sync groups of one name.
    NameTwice,
    /// One VRID twice on an interface and address family.
    VridTwice,
    /// A track list naming no defined script or file.
    TrackUndefined,
    /// A sync group naming no defined instance.
    MemberUndefined,
    /// An instance in two sync groups.
    MemberTwice,
    /// A sync group without members.
    GroupEmpty,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::ServiceTwice,
        Rule::RealFamily,
        Rule::Thresholds,
        Rule::PersistenceFamily,
        Rule::SorryFamily,
        Rule::GroupAlike,
        Rule::FwmarkNeedsIpvs,
        Rule::Capacity,
        Rule::SyncDaemonNeedsIpvs,
        Rule::NameTwice,
        Rule::VridTwice,
        Rule::TrackUndefined,
        Rule::MemberUndefined,
        Rule::MemberTwice,
        Rule::GroupEmpty,
    ];

    /// Whether `message` is one this rule writes (its messages are
    /// recognisable, so a test can tell which rule refused a file).
    pub fn wrote(self, m: &str) -> bool {
        match self {
            Rule::ServiceTwice => {
                m.starts_with("service ") && m.contains(" is already defined at ")
            }
            Rule::RealFamily => {
                m.starts_with("real server ") && m.ends_with(" is not of the VIP's address family")
            }
            Rule::SorryFamily => {
                m.starts_with("sorry server ") && m.ends_with(" is not of the VIP's address family")
            }
            Rule::Thresholds => m.starts_with("lthreshold ") && m.contains(" is above uthreshold "),
            Rule::PersistenceFamily => {
                m.starts_with("persistence_granularity is of the other address family")
            }
            Rule::GroupAlike => {
                m.contains(" of group `") && m.contains(" lists other real servers")
            }
            Rule::FwmarkNeedsIpvs => m.starts_with("fwmark services need the IPVS data plane"),
            Rule::Capacity => capacity::MESSAGES.iter().any(|f| m.contains(f)),
            Rule::SyncDaemonNeedsIpvs => m.starts_with("`lvs_sync_daemon` needs `kind = \"ipvs\"`"),
            Rule::NameTwice => m.starts_with("vrrp_") && m.contains(" is already defined at "),
            Rule::VridTwice => {
                m.starts_with("virtual_router_id ") && m.contains(" is already used by ")
            }
            Rule::TrackUndefined => {
                (m.starts_with("track_script names ") || m.starts_with("track_file names "))
                    && m.contains(", but no ")
            }
            Rule::MemberUndefined => {
                m.starts_with("vrrp_sync_group ") && m.contains(", but no vrrp_instance ")
            }
            Rule::MemberTwice => m.contains(" is already in vrrp_sync_group "),
            Rule::GroupEmpty => {
                m.starts_with("vrrp_sync_group ") && m.ends_with(" names no instance")
            }
        }
    }
}

/// The errors found so far, each placed through the sites.
struct Found<'s> {
    sites: &'s Sites,
    errors: Vec<ConfigError>,
}

impl Found<'_> {
    fn error(&mut self, rule: Rule, path: &str, message: impl Into<String>) {
        let message = message.into();
        debug_assert!(rule.wrote(&message), "{rule:?} cannot write {message:?}");
        let s = self.sites.at(path);
        self.errors.push(ConfigError {
            file: s.file.to_string(),
            line: s.line,
            col: s.col,
            message,
        });
    }

    /// "already defined at …" naming where the first one is.
    fn again(&mut self, rule: Rule, path: &str, first: &str, what: impl fmt::Display) {
        let here = self.sites.at(path);
        let first = self.sites.at(first).seen_from(&here);
        self.error(rule, path, format!("{what} is already defined at {first}"));
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
        assert_eq!(&*s.at("vrrp.instances[0]").file, "x.toml");
    }
}
