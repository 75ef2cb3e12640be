//! One synchronised connection, as a version 1 `ip_vs_sync_conn` carries it.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `IP_VS_CONN_F_*` (uapi `linux/ip_vs.h`): the connection flags a sync
/// message carries.
pub mod flags {
    /// The forwarding method's bits: masq 0, local 1, tunnel 2, route 3, bypass 4.
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0;
    pub const TUNNEL: u32 = 2;
    pub const DROUTE: u32 = 3;
    /// Set by a receiver on every connection it learned from a message.
    pub const SYNC: u32 = 0x0020;
    /// Kernel-internal, never sent.
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established (counts in InActConn).
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = IN_SEQ | OUT_SEQ;
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling: such connections are never synced.
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a Backup keeps of the flags it receives (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// Client, virtual and destination (real) addresses, one family for all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addrs {
    V4 {
        client: Ipv4Addr,
        virt: Ipv4Addr,
        real: Ipv4Addr,
    },
    V6 {
        client: Ipv6Addr,
        virt: Ipv6Addr,
        real: Ipv6Addr,
    },
}

impl Addrs {
    pub fn is_ipv6(&self) -> bool {
        matches!(self, Addrs::V6 { .. })
    }
}

/// One direction's TCP sequence adjustment (`struct ip_vs_seq`), which only
/// IPVS's application helpers (FTP) use; carried so nothing is lost in transit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqAdjust {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// One connection or persistence template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    pub addrs: Addrs,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    /// [`flags`]: the forwarding method, INACTIVE, TEMPLATE...
    pub flags: u32,
    /// IPVS's protocol state (`lb_common::conn`'s numbers up to `SYNACK`;
    /// 0 for UDP and templates).
    pub state: u16,
    /// The firewall mark of a fwmark service, else 0.
    pub fwmark: u32,
    /// Seconds the connection has left when idle; 0 asks the receiver for
    /// its own default for the state.
    pub timeout: u32,
    /// Sequence adjustments (in, out), present when a SEQ flag is set.
    pub seq: Option<(SeqAdjust, SeqAdjust)>,
    /// A persistence engine's data and name (IPVS's SIP engine), if any.
    pub pe: Option<PeData>,
}

/// A persistence engine's data (at most 255 bytes) and name (at most 16),
/// the sizes the kernel accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeData {
    data: Vec<u8>,
    name: Vec<u8>,
}

impl PeData {
    /// `None` if `data` is empty or longer than 255 bytes, or `name` is
    /// empty or longer than `IP_VS_PENAME_MAXLEN`: a receiver refuses them.
    pub fn new(data: Vec<u8>, name: Vec<u8>) -> Option<PeData> {
        let fits =
            (1..=PE_DATA_MAX).contains(&data.len()) && (1..=PE_NAME_MAX).contains(&name.len());
        fits.then_some(PeData { data, name })
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }
}

impl SyncConn {
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }

    /// Bytes this connection takes in a version 1 message, without padding
    /// (the kernel's `len` in `ip_vs_sync_conn`).
    pub fn wire_len(&self) -> usize {
        let mut len = if self.addrs.is_ipv6() { V6_LEN } else { V4_LEN };
        if self.flags & flags::SEQ_MASK != 0 {
            len += 2 + SEQ_OPT_LEN;
        }
        if let Some(pe) = &self.pe {
            len += 2 + pe.data.len() + 2 + pe.name.len();
        }
        len
    }
}

/// `sizeof(struct ip_vs_sync_v4)`.
pub(crate) const V4_LEN: usize = 36;
/// `sizeof(struct ip_vs_sync_v6)`.
pub(crate) const V6_LEN: usize = 72;
/// `sizeof(struct ip_vs_sync_conn_options)`: two `ip_vs_seq`.
pub(crate) const SEQ_OPT_LEN: usize = 24;
/// The version 1 message header (`struct ip_vs_sync_mesg`).
pub(crate) const HEADER_LEN: usize = 8;
/// Option types (`IPVS_OPT_*`) and the "may be ignored" bit.
pub(crate) const OPT_SEQ_DATA: u8 = 1;
pub(crate) const OPT_PE_DATA: u8 = 2;
pub(crate) const OPT_PE_NAME: u8 = 3;
pub(crate) const OPT_F_PARAM: u8 = 1 << 6;
/// `IP_VS_PEDATA_MAXLEN`.
pub(crate) const PE_DATA_MAX: usize = 255;
/// `IP_VS_PENAME_MAXLEN`.
pub(crate) const PE_NAME_MAX: usize = 16;
/// The `type` byte's IPv6 bit (`STYPE_F_INET6`).
pub(crate) const TYPE_INET6: u8 = 1;
