//! The TOML file as written, with the position of every value kept so that
//! validation errors can point at it.

pub mod alert;
pub mod check;
pub mod vrrp;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub dataplane: Spanned<Dataplane>,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<Service>>,
    // [global], static_* and VRRP (config/validate/vrrp.rs).
    #[serde(default)]
    pub global: Option<Spanned<vrrp::Global>>,
    #[serde(default)]
    pub static_ipaddress: Vec<Spanned<vrrp::AddressEntry>>,
    #[serde(default)]
    pub static_routes: Vec<Spanned<vrrp::Route>>,
    #[serde(default)]
    pub static_rules: Vec<Spanned<vrrp::Rule>>,
    #[serde(default, rename = "vrrp_instance")]
    pub vrrp_instances: Vec<Spanned<vrrp::Instance>>,
    #[serde(default, rename = "vrrp_sync_group")]
    pub vrrp_sync_groups: Vec<Spanned<vrrp::SyncGroup>>,
    #[serde(default, rename = "vrrp_script")]
    pub vrrp_scripts: Vec<Spanned<vrrp::Script>>,
    #[serde(default, rename = "vrrp_track_file")]
    pub vrrp_track_files: Vec<Spanned<vrrp::TrackFile>>,
    #[serde(default)]
    pub metrics: Option<Spanned<Metrics>>,
    #[serde(default)]
    pub agent: Option<Spanned<Agent>>,
    /// `[bgp]` (config/bgp.rs).
    #[serde(default)]
    pub bgp: Option<Spanned<crate::bgp::RawBgp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    #[serde(default)]
    pub pid_file: Option<Spanned<String>>,
    #[serde(default)]
    pub state_dump: Option<Spanned<String>>,
    #[serde(default)]
    pub stats_dump: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    pub header_timeout: Option<Spanned<check::Seconds>>,
    #[serde(default)]
    pub idle_timeout: Option<Spanned<check::Seconds>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub xdp_mode: Option<Spanned<String>>,
    #[serde(default)]
    pub pin_path: Option<Spanned<String>>,
    #[serde(default)]
    pub maglev_table_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_services: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_reals: Option<Spanned<i64>>,
    #[serde(default)]
    pub conntrack_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub tcp_timeout: Option<Spanned<i64>>,
    #[serde(default)]
    pub tcp_fin_timeout: Option<Spanned<i64>>,
    #[serde(default)]
    pub udp_timeout: Option<Spanned<i64>>,
    pub tunnel_source_v4: Option<Spanned<String>>,
    #[serde(default)]
    pub tunnel_source_v6: Option<Spanned<String>>,
    #[serde(default)]
    pub nodest_policy: Option<Spanned<String>>,
    #[serde(default)]
    pub conn_reuse_mode: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `vip` + `port` (+ `protocol`), or `fwmark` (+ `family`).
    #[serde(default)]
    pub vip: Option<Spanned<String>>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub fwmark: Option<Spanned<i64>>,
    #[serde(default)]
    pub family: Option<Spanned<String>>,
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub scheduler: Option<Spanned<String>>,
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub active: Option<Spanned<bool>>,
    #[serde(default)]
    pub tunnel: Option<Spanned<String>>,
    #[serde(default)]
    pub gue_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub scheduler_flags: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub persistence_timeout: Option<Spanned<i64>>,
    #[serde(default)]
    pub persistence_granularity: Option<Spanned<Granularity>>,
    #[serde(default, rename = "real")]
    pub reals: Vec<Spanned<Real>>,
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    // Checker settings and lifecycle (config/validate/check.rs).
    #[serde(default)]
    pub delay_loop: Option<Spanned<check::Seconds>>,
    #[serde(default)]
    pub alpha: Option<Spanned<bool>>,
    #[serde(default)]
    pub omega: Option<Spanned<bool>>,
    #[serde(default)]
    pub quorum: Option<Spanned<i64>>,
    #[serde(default)]
    pub hysteresis: Option<Spanned<i64>>,
    #[serde(default)]
    pub quorum_up: Option<Spanned<check::CommandText>>,
    #[serde(default)]
    pub quorum_down: Option<Spanned<check::CommandText>>,
    #[serde(default)]
    pub sorry_server: Option<Spanned<check::SorryServer>>,
    #[serde(default)]
    pub ha_suspend: Option<Spanned<bool>>,
    #[serde(default)]
    pub virtualhost: Option<Spanned<String>>,
    #[serde(default)]
    pub smtp_alert: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Real {
    pub address: Spanned<String>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub weight: Option<Spanned<i64>>,
    #[serde(default)]
    pub uthreshold: Option<Spanned<i64>>,
    #[serde(default)]
    pub lthreshold: Option<Spanned<i64>>,
    #[serde(default)]
    pub inhibit_on_failure: Option<Spanned<bool>>,
    #[serde(default)]
    pub notify_up: Option<Spanned<check::CommandText>>,
    #[serde(default)]
    pub notify_down: Option<Spanned<check::CommandText>>,
    #[serde(default, rename = "check")]
    pub checks: Vec<Spanned<check::Check>>,
    #[serde(default)]
    pub smtp_alert: Option<Spanned<bool>>,
    #[serde(default)]
    pub alpha: Option<Spanned<bool>>,
}

/// `persistence_granularity`: a netmask (IPv4) or a prefix length (IPv6).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Granularity {
    Netmask(String),
    Prefix(i64),
}
