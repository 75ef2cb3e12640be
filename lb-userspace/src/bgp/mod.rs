//! Scale-out over BGP (issue 19): the VIPs this director can serve are
//! announced through bird2, a routing daemon that outlives the agent, so
//! routers spread traffic over several active directors with ECMP (every
//! director builds the same Maglev table, so a moved flow finds its real).
//!
//! `decide.rs` decides (pure), `include.rs` writes bird's include,
//! `bird.rs` speaks bird's control socket, `links.rs` polls the
//! interfaces, `speaker.rs` runs the rounds. The state is published for
//! `xlb status` (`/run/xlb/bgp-<pin path>.json`) and the metrics ([`Board`]).
//! An agent that dies leaves bird as it was: the data plane still forwards.

pub mod bird;
pub mod decide;
pub mod include;
mod links;
mod speaker;

pub use speaker::{Inputs, Speaker};

use crate::runfiles::StateFile;
use serde::{Deserialize, Serialize};
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// What the speaker last found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub control_socket: String,
    /// `connected`, or the last problem with bird.
    pub bird: String,
    pub vips: Vec<VipStatus>,
    /// bird's BGP protocols (sessions) and their state.
    pub sessions: Vec<bird::Protocol>,
}

/// One VIP: whether bird announces it (its protocol is up), whether the
/// agent wants it announced, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub vip: IpAddr,
    pub protocol: String,
    pub announced: bool,
    pub wanted: bool,
    #[serde(flatten)]
    pub why: decide::Why,
}

/// Where the agent with pins in `pin_dir` keeps its BGP status.
pub fn status_path(pin_dir: &Path) -> PathBuf {
    crate::runfiles::for_pins(pin_dir, "bgp-", ".json")
}

/// The speaker's latest [`Status`], shared with the metrics and the status file.
#[derive(Clone, Debug, Default)]
pub struct Board {
    latest: Arc<Mutex<Option<Status>>>,
    file: StateFile,
}

impl Board {
    pub fn with_file(path: PathBuf) -> Board {
        Board {
            latest: Default::default(),
            file: StateFile::new(Some(path)),
        }
    }

    /// Records `status`; the file is rewritten only when it changed.
    pub fn set(&self, status: Status) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.as_ref() != Some(&status) {
            if let Err(e) = self.file.publish(&status, false) {
                tracing::warn!(error = %crate::logging::chain(&e), "bgp: writing the status file failed");
            }
            *latest = Some(status);
        }
    }

    pub fn get(&self) -> Option<Status> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The agent stops: the file goes.
    pub fn remove_file(&self) {
        self.file.remove();
    }
}

/// The status the agent with pins in `pin_dir` published, if any.
pub fn read(pin_dir: &Path) -> anyhow::Result<Option<Status>> {
    crate::runfiles::read_json(&status_path(pin_dir))
}

/// `xlb status`'s BGP section.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = format!("BGP (bird at {}: {})\n", s.control_socket, s.bird);
    for v in &s.vips {
        let state = match (v.announced, v.wanted) {
            (true, true) => "announced",
            (false, false) => "withdrawn",
            (false, true) => "withdrawn (announcing)",
            (true, false) => "announced (withdrawing)",
        };
        let _ = writeln!(out, "  {:<40} {state:<24} {}", v.vip, v.why);
    }
    for p in &s.sessions {
        let _ = writeln!(
            out,
            "  session {:<32} {} {} since {}",
            p.name, p.state, p.info, p.since
        );
    }
    out
}
