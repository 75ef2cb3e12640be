//! Settings of the whole agent that keepalived keeps in `global_defs`.

use super::{Command, vrrp::Garp};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
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
    /// `notification_email { … }`: who gets alerts; empty: no alerts.
    pub notification_email: Vec<String>,
    /// `notification_email_from` (default `xlb@<host name>`).
    pub notification_email_from: Option<String>,
    /// `smtp_server HOST [PORT]` (port 25 unless given); unset: no alerts.
    pub smtp_server: Option<(String, u16)>,
    /// `smtp_helo_name` (default: the host name).
    pub smtp_helo_name: Option<String>,
    /// `smtp_connect_timeout` (default 30 s): bounds each delivery attempt.
    pub smtp_connect_timeout: Duration,
    /// `smtp_alert`, `smtp_alert_vrrp`, `smtp_alert_checker`: defaults of the
    /// objects' own `smtp_alert` (see `alert::inherit`); unset is not "no".
    pub smtp_alert: Option<bool>,
    pub smtp_alert_vrrp: Option<bool>,
    pub smtp_alert_checker: Option<bool>,
    /// How the VRRP thread runs (`vrrp_priority`, `vrrp_rt_priority`, `vrrp_no_swap`).
    pub vrrp_process: VrrpProcess,
    /// `vrrp_lower_prio_no_advert`, `vrrp_higher_prio_send_advert`: the
    /// defaults of the instances' keys.
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
}

/// keepalived's settings for its VRRP process, applied to xlb's VRRP thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpProcess {
    /// `vrrp_priority`: the thread's nice value (-20 to 19).
    pub nice: Option<i8>,
    /// `vrrp_rt_priority`: real-time scheduling (SCHED_RR) at this priority (1 to 99).
    pub rt_priority: Option<u8>,
    /// `vrrp_no_swap`: lock the agent's memory (mlockall), so a page fault
    /// never stalls an advert. The whole process, as xlb is one process.
    pub no_swap: bool,
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
            notification_email: Vec::new(),
            notification_email_from: None,
            smtp_server: None,
            smtp_helo_name: None,
            smtp_connect_timeout: Duration::from_secs(30),
            smtp_alert: None,
            smtp_alert_vrrp: None,
            smtp_alert_checker: None,
            vrrp_process: VrrpProcess::default(),
            lower_prio_no_advert: false,
            // Unlike keepalived (off): a healed split brain is then always
            // re-announced (README, differences from keepalived).
            higher_prio_send_advert: true,
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
