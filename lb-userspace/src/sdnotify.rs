//! systemd's notify protocol, for `Type=notify` units: READY once the agent
//! forwards, RELOADING and READY around a reload (with the outcome as
//! STATUS), STOPPING, and the watchdog's keep-alive. Without NOTIFY_SOCKET
//! (not started by systemd) every call does nothing.

use sd_notify::NotifyState;
use std::time::Duration;
use tracing::debug;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "telling systemd failed");
    }
}

/// The agent forwards; `status` says what it runs.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts (systemd shows the unit as reloading until [`ready`]).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    // systemd ≥ 253 wants the time with RELOADING=1; older ones ignore it.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// The agent stops (VRRP releasing, then the data plane).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to tell the watchdog the agent is alive (half its timeout),
/// if the unit sets `WatchdogSec`.
pub fn watchdog_every() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|t| t / 2)
}

/// The agent's loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
