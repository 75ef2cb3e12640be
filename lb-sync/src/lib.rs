//! IPVS's connection sync protocol (net/netfilter/ipvs/ip_vs_sync.c), the
//! wire format kernel IPVS and keepalived's `lvs_sync_daemon` speak: a
//! Master multicasts the connections it schedules to 224.0.0.81:8848 and
//! Backups insert them, so a flow keeps its real after failover.
//!
//! This crate is the format alone, without sockets or maps: [`SyncConn`]
//! (one connection or persistence template), [`Packer`] (connections into
//! messages of at most `sync_maxlen` bytes, padded and counted as the
//! kernel does), [`decode`] (a received datagram back into connections,
//! refusing and skipping exactly what the kernel's receiver refuses and
//! skips), and [`needed`] (the kernel's rule for when a connection is
//! sent). Version 1 is written; versions 0 and 1 are read.

mod conn;
mod decode;
mod pack;
mod policy;

pub use conn::{Addrs, PeData, SeqAdjust, SyncConn, flags};
pub use decode::{Decoded, Dropped, Skipped, decode};
pub use pack::Packer;
pub use policy::{Policy, needed};

/// The kernel's multicast group for IPv4 sync (`IP_VS_SYNC_GROUP`).
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 81);

/// The kernel's sync port (`IP_VS_SYNC_PORT`); sync thread `n` uses port + n.
pub const PORT: u16 = 8848;

/// The protocol version this crate writes (`SYNC_PROTO_VER`).
pub const VERSION: u8 = 1;

/// A message's `sync_maxlen` when none is configured: a Master's, which the
/// kernel sizes for a 1500-byte MTU whatever the interface's, less the IPv4
/// and UDP headers.
pub const DEFAULT_MAXLEN_V4: usize = 1500 - 20 - 8;

/// The same over an IPv6 group.
pub const DEFAULT_MAXLEN_V6: usize = 1500 - 40 - 8;
