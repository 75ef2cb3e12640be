//! Tracking: `vrrp_script` results (with rise and fall), `track_file`
//! numbers and `track_interface` link state (from rtnetlink link events),
//! each published on a watch
//! channel, and the pure rule that turns them into an instance's effective
//! priority or Fault.

use crate::{
    config::vrrp::{TrackFileDef, TrackScriptDef},
    net,
    script::{self, RunAs},
};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often tracked files are read.
pub const POLL: Duration = Duration::from_millis(500);
/// Pause before watching an interface again after netlink failed.
const REWATCH: Duration = Duration::from_secs(1);

/// One tracked input of an instance, as it stands now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A script or an interface: up or down, with its weight.
    /// `reverse` applies a positive weight while down instead of up.
    Check {
        up: bool,
        weight: i32,
        reverse: bool,
    },
    /// A tracked file's number and its weight.
    File { value: i64, weight: i32 },
}

/// keepalived's rule: weight 0 and down (or a non-zero file) is Fault (up,
/// with `reverse`); a negative weight counts while down, a positive one
/// while up, and `reverse` negates what counts (keepalived's
/// `weight_multiplier` of −1); the result stays within 1–254. An address
/// owner (255) is not moved by weights, only by Fault.
pub fn effective(base: u8, inputs: &[Input]) -> (u8, bool) {
    let mut delta: i64 = 0;
    let mut fault = false;
    for i in inputs {
        match *i {
            Input::Check {
                up,
                weight,
                reverse,
            } => {
                let sign = if reverse { -1 } else { 1 };
                if weight == 0 {
                    fault |= up == reverse;
                } else if (weight < 0) != up {
                    delta += i64::from(weight) * sign;
                }
            }
            Input::File { value, weight } => {
                if weight == 0 {
                    fault |= value != 0;
                } else {
                    let d = value.saturating_mul(i64::from(weight));
                    // keepalived: a change of −254 or beyond means Fault.
                    fault |= d <= -254;
                    delta = delta.saturating_add(d);
                }
            }
        }
    }
    if base == 255 {
        return (255, fault);
    }
    ((i64::from(base) + delta).clamp(1, 254) as u8, fault)
}

/// Runs a `vrrp_script` every `interval` forever, publishing whether it is
/// up; with `secure` (enable_script_security) each run is checked first.
pub async fn run_script(
    def: TrackScriptDef,
    user: Option<RunAs>,
    secure: bool,
    tx: watch::Sender<bool>,
) {
    let mut up = !def.init_fail;
    let (mut good, mut bad) = (0u32, 0u32);
    let mut tick = tokio::time::interval(def.interval);
    loop {
        tick.tick().await;
        let ok = match script::run(&def.script, &[], user, def.timeout, secure).await {
            Ok(o) => o.success(),
            Err(e) => {
                warn!(script = %def.name, error = %crate::logging::chain(&e), "vrrp_script did not run");
                false
            }
        };
        if ok {
            good += 1;
            bad = 0;
        } else {
            bad += 1;
            good = 0;
        }
        let now = if up { bad < def.fall } else { good >= def.rise };
        if now != up {
            up = now;
            info!(script = %def.name, up, "vrrp_script changed");
            tx.send_replace(up);
        }
    }
}

/// Reads a tracked file's number (missing or unreadable: 0, as keepalived).
fn read_file(def: &TrackFileDef) -> i64 {
    std::fs::read_to_string(&def.path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|w| w.parse().ok()))
        .unwrap_or(0)
}

/// Creates the file with `init_file`'s value if missing, then publishes its number on change.
pub async fn run_file(def: TrackFileDef, tx: watch::Sender<i64>) {
    if let Some(v) = def.init
        && !def.path.exists()
        && let Err(e) = std::fs::write(&def.path, format!("{v}\n"))
    {
        warn!(file = %def.path.display(), error = %e, "creating the track file failed");
    }
    loop {
        let v = read_file(&def);
        tx.send_if_modified(|old| std::mem::replace(old, v) != v);
        tokio::time::sleep(POLL).await;
    }
}

/// Publishes whether `ifname` is up and running (administratively up with
/// carrier; a vanished interface is down), from the kernel's link events.
/// A netlink failure counts as down until the watch is open again.
pub async fn run_link(ifname: String, tx: watch::Sender<bool>) {
    let publish = |up: bool| {
        if tx.send_if_modified(|old| std::mem::replace(old, up) != up) {
            info!(%ifname, up, "tracked interface changed");
        }
    };
    loop {
        match net::link::watch(std::slice::from_ref(&ifname)).await {
            Ok(mut events) => {
                while let Some((_, up)) = events.recv().await {
                    publish(up);
                }
                warn!(%ifname, "link events ended; watching again");
            }
            Err(e) => {
                warn!(%ifname, error = %crate::logging::chain(&e), "watching the tracked interface failed")
            }
        }
        publish(false);
        tokio::time::sleep(REWATCH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(up: bool, weight: i32) -> Input {
        Input::Check {
            up,
            weight,
            reverse: false,
        }
    }

    #[test]
    fn weights_as_keepalived() {
        assert_eq!(effective(100, &[]), (100, false));
        assert_eq!(effective(100, &[check(false, -30)]), (70, false));
        assert_eq!(effective(100, &[check(true, -30)]), (100, false));
        assert_eq!(effective(100, &[check(true, 20)]), (120, false));
        assert_eq!(effective(100, &[check(false, 20)]), (100, false));
        // reverse: the same condition counts, the other way (keepalived's
        // weight_multiplier −1).
        let rev = |up, weight| Input::Check {
            up,
            weight,
            reverse: true,
        };
        assert_eq!(effective(100, &[rev(true, 20)]), (80, false));
        assert_eq!(effective(100, &[rev(false, 20)]), (100, false));
        assert_eq!(effective(100, &[rev(false, -20)]), (120, false));
        assert_eq!(effective(100, &[rev(true, -20)]), (100, false));
        assert_eq!(effective(100, &[rev(true, 0)]), (100, true));
        assert_eq!(effective(100, &[rev(false, 0)]), (100, false));
        assert_eq!(effective(100, &[check(false, 0)]), (100, true));
        assert_eq!(effective(100, &[check(true, 0)]), (100, false));
    }

    #[test]
    fn bounds_owner_and_files() {
        assert_eq!(effective(250, &[check(true, 50)]), (254, false));
        assert_eq!(effective(10, &[check(false, -50)]), (1, false));
        assert_eq!(effective(255, &[check(false, -50)]), (255, false));
        assert_eq!(effective(255, &[check(false, 0)]), (255, true));
        assert_eq!(
            effective(
                100,
                &[Input::File {
                    value: 3,
                    weight: -10
                }]
            ),
            (70, false)
        );
        assert_eq!(
            effective(
                100,
                &[Input::File {
                    value: 1,
                    weight: 0
                }]
            ),
            (100, true)
        );
        assert_eq!(
            effective(
                100,
                &[Input::File {
                    value: -300,
                    weight: 1
                }]
            ),
            (1, true)
        );
    }
}
