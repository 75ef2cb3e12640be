//! When a connection is sent: the kernel's `ip_vs_sync_conn_needed` with
//! its defaults for the settings xlb does not expose (`sync_refresh_period`
//! 0, `sync_persist_mode` 0). A TCP connection is sent when it reaches a
//! state worth keeping and then every `period` packets; a change to a
//! closing state is sent at once. States are IPVS's numbers
//! (`lb_common::conn`, which the data plane keeps too).

use lb_common::conn::{CLOSE, CLOSE_WAIT, ESTABLISHED, FIN_WAIT, TIME_WAIT};

/// `net.ipv4.vs.sync_threshold`: the packet count at which a connection is
/// first sent, and then every `period` packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub threshold: u32,
    pub period: u32,
}

impl Default for Policy {
    /// The kernel's defaults: `sync_threshold = 3 50`.
    fn default() -> Policy {
        Policy {
            threshold: 3,
            period: 50,
        }
    }
}

/// Whether a connection of `protocol` now in `state` (before: `old_state`),
/// having seen `pkts` packets, is sent. Templates are sent whenever a
/// connection they control is.
pub fn needed(
    p: &Policy,
    protocol: u8,
    template: bool,
    state: u32,
    old_state: u32,
    pkts: u32,
) -> bool {
    if !template && protocol == lb_common::PROTO_TCP {
        if !matches!(
            state,
            ESTABLISHED | FIN_WAIT | CLOSE | CLOSE_WAIT | TIME_WAIT
        ) {
            return false;
        }
        if state != old_state && state != ESTABLISHED {
            return true;
        }
    }
    if p.period > 0 {
        template || pkts % p.period == p.threshold
    } else {
        pkts == p.threshold
    }
}
