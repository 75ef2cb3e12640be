//! Connection states, as IPVS names them (its `IP_VS_TCP_S_*` numbering),
//! the transitions xlb applies, and which states count as connections.
//!
//! IPVS follows a TCP connection with one of three tables: INPUT (client
//! packets) and OUTPUT (the real's replies) when it sees both directions, as
//! for NAT; INPUT-ONLY when it sees only the client's, as for DR and TUN
//! (`IP_VS_CONN_F_NOOUTPUT`). xlb does the same by method: NAT flows move on
//! client packets and on replies, DR and TUN flows on client packets alone.
//!
//! Two things are xlb's own: [`PICKUP`], the state of a TCP flow first seen
//! from a packet that is not a SYN (see its doc), and [`RELEASED`], an entry
//! already uncounted by the CPU (or the upkeep program) that claimed it.

use super::{SETTINGS_F_CONN_REUSE, SETTINGS_F_CONN_REUSE_FIN_WAIT, Settings};

pub const NONE: u32 = 0;
pub const ESTABLISHED: u32 = 1;
pub const SYN_SENT: u32 = 2;
pub const SYN_RECV: u32 = 3;
pub const FIN_WAIT: u32 = 4;
pub const TIME_WAIT: u32 = 5;
pub const CLOSE: u32 = 6;
pub const CLOSE_WAIT: u32 = 7;
pub const LAST_ACK: u32 = 8;
pub const LISTEN: u32 = 9;
pub const SYNACK: u32 = 10;
/// Any UDP flow (IPVS's single UDP state).
pub const UDP: u32 = 11;
/// A TCP flow created from a packet that is not a SYN: a connection this
/// director did not see open, as after a failover or on a new ECMP path —
/// or a spoofed ACK. It counts as no connection (neither ActiveConn nor
/// InActConn, so lc/wlc/sed/nq/ovf and thresholds ignore it), expires after
/// [`PICKUP_TIMEOUT_S`] idle, and proves itself live only where the
/// director sees the real answer (NAT: a reply that is not a RST makes it
/// ESTABLISHED). A SYN on it opens a new connection.
pub const PICKUP: u32 = 12;
/// An entry already uncounted and about to be replaced or deleted; never counted.
pub const RELEASED: u32 = u32::MAX;
/// Number of state codes (`NONE` to `PICKUP`), for per-state tallies.
pub const STATES: usize = 13;

/// IPVS defaults (`ipvsadm --set 900 120 300`).
pub const DEFAULT_TCP_S: u32 = 900;
pub const DEFAULT_TCP_FIN_S: u32 = 120;
pub const DEFAULT_UDP_S: u32 = 300;
/// Idle timeout of a [`PICKUP`]: IPVS's for SYN_RECV, the other state whose
/// connection is not yet known to exist.
pub const PICKUP_TIMEOUT_S: u32 = 60;

/// TCP flag bits as in the header's 13th byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Which of IPVS's tables a packet moves the state by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// A client packet of a flow whose replies are seen too (NAT).
    Input,
    /// A reply from the real (NAT).
    Output,
    /// A client packet of a flow whose replies bypass the director (DR, TUN).
    InputOnly,
}

// IPVS's tcp_states[] (ip_vs_proto_tcp.c): per direction (INPUT, OUTPUT,
// INPUT-ONLY) and event (syn, fin, ack, rst), the next state indexed by the
// current one, NONE..SYNACK. Rows are 16 wide (the last five never read)
// so that an index masked to 4 bits, as LLVM emits it, stays inside the
// array for the BPF verifier.
const ES: u8 = ESTABLISHED as u8;
const SS: u8 = SYN_SENT as u8;
const SR: u8 = SYN_RECV as u8;
const FW: u8 = FIN_WAIT as u8;
const TW: u8 = TIME_WAIT as u8;
const CL: u8 = CLOSE as u8;
const CW: u8 = CLOSE_WAIT as u8;
const LA: u8 = LAST_ACK as u8;
const LI: u8 = LISTEN as u8;
/// States the tables cover.
const TABLE_STATES: usize = 11;
const ROW: usize = 16;
const __: u8 = CL;
#[rustfmt::skip]
const TABLES: [u8; 3 * 4 * ROW] = [
    // INPUT
    /*syn*/ SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR, __, __, __, __, __,
    /*fin*/ CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW, __, __, __, __, __,
    /*ack*/ ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES, __, __, __, __, __,
    /*rst*/ CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR, __, __, __, __, __,
    // OUTPUT
    /*syn*/ SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR, __, __, __, __, __,
    /*fin*/ TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW, __, __, __, __, __,
    /*ack*/ ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES, __, __, __, __, __,
    /*rst*/ CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL, __, __, __, __, __,
    // INPUT-ONLY
    /*syn*/ SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR, __, __, __, __, __,
    /*fin*/ CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW, __, __, __, __, __,
    /*ack*/ ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES, __, __, __, __, __,
    /*rst*/ CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL, __, __, __, __, __,
];

/// Counted as ActiveConn (IPVS since Linux 4.8 also counts the handshake
/// states as active); the other counted states are InActConn.
#[inline(always)]
pub fn is_active(state: u32) -> bool {
    matches!(state, ESTABLISHED | SYN_SENT | SYN_RECV | SYNACK)
}

/// Whether a flow in `state` is one of its real's connections at all.
#[inline(always)]
pub fn is_counted(state: u32) -> bool {
    state != PICKUP && state != RELEASED
}

/// A packet that may open a connection: SYN without RST (IPVS schedules TCP
/// on exactly these, `tcp_conn_schedule`).
#[inline(always)]
pub fn opens(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_RST) == TCP_SYN
}

/// The state of a new flow whose first packet has `tcp_flags` (UDP: any):
/// SYN_RECV for a SYN (every table agrees), else a pickup.
#[inline(always)]
pub fn first(proto: u8, tcp_flags: u8) -> u32 {
    if proto == super::PROTO_UDP {
        UDP
    } else if opens(tcp_flags) {
        SYN_RECV
    } else {
        PICKUP
    }
}

/// The state after a TCP packet with `flags` in direction `dir`, per IPVS's
/// tables (RST, then SYN, then FIN, then ACK decide; none of the four
/// closes). A pickup stays one until a SYN opens a connection on its ports.
#[inline(always)]
pub fn tcp_next(state: u32, flags: u8, dir: Dir) -> u32 {
    if state == PICKUP {
        return if opens(flags) { SYN_RECV } else { PICKUP };
    }
    let event = if flags & TCP_RST != 0 {
        3
    } else if flags & TCP_SYN != 0 {
        0
    } else if flags & TCP_FIN != 0 {
        1
    } else if flags & TCP_ACK != 0 {
        2
    } else {
        return CLOSE;
    };
    if state as usize >= TABLE_STATES {
        return state;
    }
    let table = match dir {
        Dir::Input => 0,
        Dir::Output => 1,
        Dir::InputOnly => 2,
    };
    TABLES[(table * 4 + event) * ROW + (state as usize & (ROW - 1))] as u32
}

/// A reply from the real (NAT) to a flow in `state`: a pickup proves itself
/// live with any reply that is not a RST (the real knows the connection,
/// IPVS's sloppy pickup would be ESTABLISHED); other states follow OUTPUT.
#[inline(always)]
pub fn reply_next(state: u32, flags: u8) -> u32 {
    match state {
        PICKUP if flags & TCP_RST == 0 => ESTABLISHED,
        PICKUP | UDP | RELEASED => state,
        _ => tcp_next(state, flags, Dir::Output),
    }
}

/// The `Settings` flags for IPVS's `conn_reuse_mode` value `mode` (0–3).
pub fn reuse_flags(mode: u8) -> u32 {
    let mut flags = 0;
    if mode != 0 {
        flags |= SETTINGS_F_CONN_REUSE;
    }
    if mode & 2 != 0 {
        flags |= SETTINGS_F_CONN_REUSE_FIN_WAIT;
    }
    flags
}

/// Whether a SYN on a flow in `state` opens a new connection under the
/// `settings_flags` (IPVS's `is_new_conn_expected`); `input_only`: the flow's
/// replies bypass the director. Persistent services never reuse (IPVS: the
/// connection is controlled by its template); the caller checks that.
#[inline(always)]
pub fn reused(state: u32, settings_flags: u32, input_only: bool) -> bool {
    if settings_flags & SETTINGS_F_CONN_REUSE == 0 {
        return false;
    }
    match state {
        TIME_WAIT | CLOSE | PICKUP => true,
        FIN_WAIT => input_only && settings_flags & SETTINGS_F_CONN_REUSE_FIN_WAIT != 0,
        _ => false,
    }
}

/// In [`TIMEOUTS`]: the timeout is one of the three `ipvsadm --set` changes.
const SET: u32 = 1 << 31;
/// Per state (`NONE` to `PICKUP`, then `RELEASED`'s low bits): IPVS's idle
/// timeout in seconds, or `SET` | which of `settings`' three.
#[rustfmt::skip]
const TIMEOUTS: [u32; 16] = [
    2, SET, 120, 60, SET | 1, 120, 10, 60, 30, 120, 120, SET | 2, PICKUP_TIMEOUT_S, 120, 120, 120,
];

/// Idle time after which a flow in `state` expires (IPVS's timeout table,
/// with the three values `ipvsadm --set` changes taken from `settings`,
/// which whoever loads the program must write: 0 expires at once). A table
/// rather than a match: the BPF verifier then follows one path, not one
/// per state.
#[inline(always)]
pub fn timeout_s(state: u32, settings: &Settings) -> u32 {
    let t = TIMEOUTS[(state & 15) as usize];
    if t & SET == 0 {
        return t;
    }
    match t & 3 {
        0 => settings.tcp_timeout_s,
        1 => settings.tcp_fin_timeout_s,
        _ => settings.udp_timeout_s,
    }
}

/// Whether a flow last seen at `seen_ns` in `state` has expired at `now_ns`
/// (both `bpf_ktime_get_ns`, CLOCK_MONOTONIC). The data plane asks on
/// lookup, the upkeep reclaimer on its walk; both by this one rule.
#[inline(always)]
pub fn expired(state: u32, seen_ns: u64, now_ns: u64, settings: &Settings) -> bool {
    let timeout_ns = timeout_s(state, settings) as u64 * 1_000_000_000;
    now_ns.saturating_sub(seen_ns) > timeout_ns
}

/// ipvsadm's name of `state` (`ipvsadm -Lnc`), `PICKUP` and `RELEASED` for xlb's own.
pub fn name(state: u32) -> &'static str {
    match state {
        NONE => "NONE",
        ESTABLISHED => "ESTABLISHED",
        SYN_SENT => "SYN_SENT",
        SYN_RECV => "SYN_RECV",
        FIN_WAIT => "FIN_WAIT",
        TIME_WAIT => "TIME_WAIT",
        CLOSE => "CLOSE",
        CLOSE_WAIT => "CLOSE_WAIT",
        LAST_ACK => "LAST_ACK",
        LISTEN => "LISTEN",
        SYNACK => "SYNACK",
        UDP => "UDP",
        PICKUP => "PICKUP",
        RELEASED => "RELEASED",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: u8 = TCP_SYN;
    const ACK: u8 = TCP_ACK;
    const FIN_ACK: u8 = TCP_FIN | TCP_ACK;
    const RST: u8 = TCP_RST;

    fn walk(dir_of: impl Fn(usize) -> Dir, packets: &[u8]) -> u32 {
        let mut s = first(super::super::PROTO_TCP, packets[0]);
        for (i, &f) in packets.iter().enumerate().skip(1) {
            s = match dir_of(i) {
                Dir::Output => reply_next(s, f),
                d => tcp_next(s, f, d),
            };
        }
        s
    }

    #[test]
    fn a_closed_dr_flow_ends_in_fin_wait_and_a_nat_one_in_time_wait() {
        // DR sees the client only: SYN, ACK, data, FIN: FIN_WAIT, whoever closed first.
        let dr = walk(|_| Dir::InputOnly, &[SYN, ACK, ACK, FIN_ACK, ACK]);
        assert_eq!(dr, FIN_WAIT);
        // NAT, the server closing first: SYN, SYN/ACK, ACK, server FIN, ACK, client FIN, ACK.
        let dirs = [0, 1, 0, 1, 0, 0, 1];
        let dir = |i: usize| {
            if dirs[i] == 1 {
                Dir::Output
            } else {
                Dir::Input
            }
        };
        let nat = walk(dir, &[SYN, SYN | ACK, ACK, FIN_ACK, ACK, FIN_ACK, ACK]);
        assert_eq!(nat, TIME_WAIT);
        // The client closing first: its FIN makes CLOSE_WAIT, the server's TIME_WAIT.
        let dirs = [0, 1, 0, 0, 1, 1, 0];
        let dir = |i: usize| {
            if dirs[i] == 1 {
                Dir::Output
            } else {
                Dir::Input
            }
        };
        let nat = walk(dir, &[SYN, SYN | ACK, ACK, FIN_ACK, ACK, FIN_ACK, ACK]);
        assert_eq!(nat, TIME_WAIT);
        // A client RST: CLOSE in either table.
        assert_eq!(walk(|_| Dir::InputOnly, &[SYN, ACK, RST]), CLOSE);
    }

    #[test]
    fn a_pickup_counts_for_nothing_until_a_syn_or_a_reply() {
        assert_eq!(first(super::super::PROTO_TCP, ACK), PICKUP);
        assert_eq!(first(super::super::PROTO_TCP, RST), PICKUP);
        assert_eq!(first(super::super::PROTO_TCP, SYN | RST), PICKUP);
        assert_eq!(first(super::super::PROTO_TCP, SYN | ACK), SYN_RECV);
        assert_eq!(first(super::super::PROTO_UDP, 0), UDP);
        assert!(!is_counted(PICKUP) && !is_counted(RELEASED));
        for f in [ACK, FIN_ACK, RST, 0] {
            assert_eq!(tcp_next(PICKUP, f, Dir::InputOnly), PICKUP, "{f:#x}");
        }
        assert_eq!(tcp_next(PICKUP, SYN, Dir::InputOnly), SYN_RECV);
        assert_eq!(reply_next(PICKUP, ACK), ESTABLISHED);
        assert_eq!(reply_next(PICKUP, RST | ACK), PICKUP);
        assert_eq!(reply_next(UDP, ACK), UDP);
    }

    #[test]
    fn conn_reuse_mode_decides_as_ipvs() {
        let settings = |mode| reuse_flags(mode);
        for state in [TIME_WAIT, CLOSE, PICKUP] {
            assert!(!reused(state, settings(0), true), "{}", name(state));
            for mode in 1..=3 {
                assert!(reused(state, settings(mode), false), "{}", name(state));
            }
        }
        // FIN_WAIT only with bit 2 and only where replies are not seen.
        assert!(!reused(FIN_WAIT, settings(1), true));
        assert!(reused(FIN_WAIT, settings(2), true));
        assert!(reused(FIN_WAIT, settings(3), true));
        assert!(!reused(FIN_WAIT, settings(3), false));
        for state in [ESTABLISHED, SYN_RECV, CLOSE_WAIT, LAST_ACK, UDP] {
            assert!(!reused(state, settings(3), true), "{}", name(state));
        }
    }

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        let s = Settings {
            tcp_timeout_s: 900,
            tcp_fin_timeout_s: 120,
            udp_timeout_s: 300,
            ..Settings::default()
        };
        let sec = 1_000_000_000u64;
        for (state, timeout) in [
            (ESTABLISHED, 900),
            (FIN_WAIT, 120),
            (UDP, 300),
            (SYN_RECV, 60),
            (CLOSE, 10),
            (TIME_WAIT, 120),
            (PICKUP, 60),
            (CLOSE_WAIT, 60),
            (LAST_ACK, 30),
            (SYNACK, 120),
            (NONE, 2),
            (RELEASED, 120),
        ] {
            let seen = 1000 * sec;
            assert!(!expired(state, seen, seen + timeout * sec, &s), "{state}");
            assert!(
                expired(state, seen, seen + timeout * sec + 1, &s),
                "{state}"
            );
        }
    }
}
