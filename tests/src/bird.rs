//! bird2 daemons for tests and labs: each runs in a namespace the caller
//! made, in the foreground as a child of the test, with its config,
//! control socket, pid file and log in a directory of its own; killed and
//! its files removed on drop. `birdc` talks to it over the socket.

use crate::netns::Netns;
use anyhow::{Context, Result, bail};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long bird may take to open its control socket.
const START: Duration = Duration::from_secs(10);

/// A running bird.
pub struct Bird {
    child: Child,
    dir: PathBuf,
}

impl Bird {
    /// Writes `config` to `dir/bird.conf` (`dir` is created and, on drop,
    /// removed) and starts `bird -f` in `ns`; returns once its control
    /// socket answers.
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Result<Bird> {
        if !crate::lab::in_path("bird") {
            bail!("`bird` is required: install the Debian package `bird2` (cargo xtask setup)");
        }
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, config)?;
        let log = std::fs::File::create(dir.join("bird.log"))?;
        let child = ns
            .command("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting bird")?;
        let mut bird = Bird {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + START;
        while bird.birdc(&["show", "status"]).is_err() {
            if let Some(status) = bird.child.try_wait()? {
                bail!("bird exited ({status}): {}", bird.log());
            }
            if Instant::now() > deadline {
                bail!("bird did not open its control socket: {}", bird.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(bird)
    }

    /// Its directory (config, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// `birdc -s SOCKET ARGS…`'s output, or an error with it.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .context("running birdc")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("Unable to connect") {
            bail!(
                "birdc {args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// The prefixes in bird's routing table (`show route`'s first column).
    pub fn routes(&self) -> Result<Vec<String>> {
        Ok(self
            .birdc(&["show", "route"])?
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.contains('/'))
            .map(str::to_string)
            .collect())
    }

    /// `show protocols`' row of `name`, split into words.
    pub fn protocol(&self, name: &str) -> Result<Vec<String>> {
        let out = self.birdc(&["show", "protocols", name])?;
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|w| w.first().is_some_and(|n| n == name))
            .with_context(|| format!("no protocol {name}: {out}"))
    }

    /// What bird logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
