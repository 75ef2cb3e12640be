//! The words the agent's parts share: which real a verdict is about, what a
//! checker says of it, and what must be announced after a change. A leaf:
//! it imports only the config, so checkers, alerts, metrics and the agent
//! can all use it without importing each other.

use crate::config::{Command, Real, ServiceId};
use std::net::IpAddr;

/// A real server of one service (the same address may serve several).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealKey {
    pub service: ServiceId,
    pub address: IpAddr,
    pub port: u16,
}

/// A checker's verdict on a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Up; `weight` overrides the configured one (MISC_CHECK `misc_dynamic`).
    Up {
        weight: Option<u32>,
    },
    Down,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Up { weight: None } => f.write_str("up"),
            Health::Up { weight: Some(w) } => write!(f, "up with weight {w}"),
            Health::Down => f.write_str("down"),
        }
    }
}

impl Health {
    /// What a real is before its checkers have spoken: down when one of its
    /// checks has `alpha`, up otherwise.
    pub fn initial(real: &Real) -> Health {
        if real.lifecycle.checks.iter().any(|c| c.common.alpha) {
            Health::Down
        } else {
            Health::Up { weight: None }
        }
    }
}

/// Something the agent must announce (scripts, notify FIFO) after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A real server went up or down (`notify_up` / `notify_down`, FIFO `RS` line).
    Real {
        key: RealKey,
        up: bool,
        command: Option<Command>,
    },
    /// A service gained or lost its quorum (`quorum_up` / `quorum_down`, FIFO `VS` line).
    Quorum {
        service: ServiceId,
        up: bool,
        command: Option<Command>,
        /// The service's weight sum after the change (for the alert mail).
        weight_sum: u64,
    },
}

/// keepalived's text of an address, protocol and port: `[ip]:tcp:port`.
pub fn trio(addr: IpAddr, protocol: &str, port: u16) -> String {
    format!("[{addr}]:{protocol}:{port}")
}

/// keepalived's text of a service: `[vip]:tcp:port`, or `FWM N`.
pub fn service_text(service: ServiceId) -> String {
    match service {
        ServiceId::Addr {
            vip,
            port,
            protocol,
        } => trio(vip, &protocol.to_string().to_lowercase(), port),
        ServiceId::Fwmark { mark, .. } => format!("FWM {mark}"),
    }
}
