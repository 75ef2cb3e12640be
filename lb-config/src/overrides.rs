//! Settings `xlb run` takes from its command line over the file's: a
//! keepalived.conf has no place for xlb's pin directory or pid file, and a
//! second agent on one host needs both of its own.

use super::Config;
use std::path::PathBuf;

/// What the command line sets; `None` keeps the file's value (or its default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--pin-path`: `[dataplane] pin_path`.
    pub pin_path: Option<PathBuf>,
    /// `--pid-file`: `[agent] pid_file`.
    pub pid_file: Option<PathBuf>,
}

impl Overrides {
    /// `config` with the command line's settings in place of the file's.
    /// Applied to every read of the file (start and reload), so a reload
    /// compares like with like.
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(p) = &self.pin_path {
            config.dataplane.pin_path = p.clone();
        }
        if let Some(p) = &self.pid_file {
            config.agent.pid_file = p.clone();
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_given_replaces_the_files_value() {
        let base = crate::parse(
            "x.toml",
            "[dataplane]\ninterfaces = [\"eth0\"]\npin_path = \"/sys/fs/bpf/a\"\n\n[agent]\npid_file = \"/run/a.pid\"\n",
        )
        .unwrap();
        assert_eq!(Overrides::default().apply(base.clone()), base);
        let pinned = Overrides {
            pin_path: Some("/sys/fs/bpf/b".into()),
            pid_file: None,
        }
        .apply(base.clone());
        assert_eq!(pinned.dataplane.pin_path, PathBuf::from("/sys/fs/bpf/b"));
        assert_eq!(pinned.agent.pid_file, PathBuf::from("/run/a.pid"));
        let both = Overrides {
            pin_path: None,
            pid_file: Some("/tmp/b.pid".into()),
        }
        .apply(base.clone());
        assert_eq!(both.agent.pid_file, PathBuf::from("/tmp/b.pid"));
        assert_eq!(both.dataplane, base.dataplane);
    }
}
