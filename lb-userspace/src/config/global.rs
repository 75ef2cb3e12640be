//! Settings of the whole agent that keepalived keeps in `global_defs`.

use super::{Command, vrrp::Garp};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// `router_id`: this node's name in notifications (default: the host name).
    pub router_id: Option<String>,
    /// `script_user USER [GROUP]`: who runs scripts (default root when
    /// script security is off).
    pub script_user: Option<String>,
    /// `enable_script_security`: refuse scripts a non-root user can change.
    pub enable_script_security: bool,
    /// `vrrp_version` default for instances.
    pub vrrp_version: u8,
    /// `vrrp_mcast_group4` (default 224.0.0.18).
    pub vrrp_mcast_group4: Ipv4Addr,
    /// `vrrp_mcast_group6` (default ff02::12).
    pub vrrp_mcast_group6: Ipv6Addr,
    /// `vrrp_garp_*` / `vrrp_gna_interval` defaults for instances.
    pub garp: Garp,
    /// `notify_fifo` (both VRRP and LVS lines), `vrrp_notify_fifo`, `lvs_notify_fifo`.
    pub notify_fifo: Option<Fifo>,
    pub vrrp_notify_fifo: Option<Fifo>,
    pub lvs_notify_fifo: Option<Fifo>,
    /// `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`
    /// (IPVS data plane only).
    pub lvs_sync_daemon: Option<SyncDaemon>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            router_id: None,
            script_user: None,
            enable_script_security: false,
            vrrp_version: 2,
            vrrp_mcast_group4: Ipv4Addr::new(224, 0, 0, 18),
            vrrp_mcast_group6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            garp: Garp::default(),
            notify_fifo: None,
            vrrp_notify_fifo: None,
            lvs_notify_fifo: None,
            lvs_sync_daemon: None,
        }
    }
}

/// A FIFO that gets one line per state change, optionally read by a script
/// the agent starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fifo {
    pub path: PathBuf,
    pub script: Option<Command>,
}

/// IPVS connection synchronisation between directors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDaemon {
    pub interface: String,
    /// The VRRP instance whose state decides master (sending) or backup (receiving).
    pub instance: String,
    pub id: u8,
    pub maxlen: Option<u16>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
    pub group: Option<IpAddr>,
}
