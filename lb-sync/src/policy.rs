//! When a connection is sent: the kernel's `ip_vs_sync_conn_needed` with
//! its defaults for the settings xlb does not expose (`sync_refresh_period`
//! 0, `sync_persist_mode` 0). A TCP connection is sent when it reaches a
//! state worth keeping and then every `period` packets; a change to a
//! closing state is sent at once.

/// IPVS's TCP states (`IP_VS_TCP_S_*`), the numbers a message carries.
pub mod tcp_state {
    pub const NONE: u16 = 0;
    pub const ESTABLISHED: u16 = 1;
    pub const SYN_SENT: u16 = 2;
    pub const SYN_RECV: u16 = 3;
    pub const FIN_WAIT: u16 = 4;
    pub const TIME_WAIT: u16 = 5;
    pub const CLOSE: u16 = 6;
    pub const CLOSE_WAIT: u16 = 7;
    pub const LAST_ACK: u16 = 8;
    pub const LISTEN: u16 = 9;
    pub const SYNACK: u16 = 10;
    /// How many states there are (`IP_VS_TCP_S_LAST`).
    pub const COUNT: u16 = 11;
}

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
    state: u16,
    old_state: u16,
    pkts: u32,
) -> bool {
    if !template && protocol == 6 {
        use tcp_state::*;
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
