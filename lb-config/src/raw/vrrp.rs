//! The TOML form of `[global]`, `static_*`, `[[vrrp_instance]]`,
//! `[[vrrp_sync_group]]`, `[[vrrp_script]]` and `[[vrrp_track_file]]`
//! (docs/CONFIG.md), positions kept for errors.

use serde::Deserialize;
use toml::Spanned;

type Opt<T> = Option<Spanned<T>>;

pub use super::check::{CommandText, Seconds};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    #[serde(default)]
    pub router_id: Opt<String>,
    #[serde(default)]
    pub script_user: Opt<String>,
    #[serde(default)]
    pub enable_script_security: Opt<bool>,
    #[serde(default)]
    pub vrrp_version: Opt<i64>,
    #[serde(default)]
    pub vrrp_mcast_group4: Opt<String>,
    #[serde(default)]
    pub vrrp_mcast_group6: Opt<String>,
    #[serde(default)]
    pub notify_fifo: Opt<Fifo>,
    #[serde(default)]
    pub vrrp_notify_fifo: Opt<Fifo>,
    #[serde(default)]
    pub lvs_notify_fifo: Opt<Fifo>,
    #[serde(default)]
    pub lvs_sync_daemon: Opt<SyncDaemon>,
    #[serde(default)]
    pub garp: Opt<Garp>,
    #[serde(default)]
    pub lower_prio_no_advert: Opt<bool>,
    #[serde(default)]
    pub higher_prio_send_advert: Opt<bool>,
    #[serde(default)]
    pub vrrp_priority: Opt<i64>,
    #[serde(default)]
    pub vrrp_rt_priority: Opt<i64>,
    #[serde(default)]
    pub vrrp_no_swap: Opt<bool>,
    // Alerts (config/validate/alert.rs).
    #[serde(default)]
    pub notification_email: Opt<Vec<Spanned<String>>>,
    #[serde(default)]
    pub notification_email_from: Opt<String>,
    #[serde(default)]
    pub smtp_server: Opt<super::alert::SmtpServer>,
    #[serde(default)]
    pub smtp_helo_name: Opt<String>,
    #[serde(default)]
    pub smtp_connect_timeout: Opt<Seconds>,
    #[serde(default)]
    pub smtp_alert: Opt<bool>,
    #[serde(default)]
    pub smtp_alert_vrrp: Opt<bool>,
    #[serde(default)]
    pub smtp_alert_checker: Opt<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fifo {
    pub path: Spanned<String>,
    #[serde(default)]
    pub script: Opt<CommandText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemon {
    pub interface: Spanned<String>,
    pub instance: Spanned<String>,
    #[serde(default)]
    pub id: Opt<i64>,
    #[serde(default)]
    pub maxlen: Opt<i64>,
    #[serde(default)]
    pub port: Opt<i64>,
    #[serde(default)]
    pub ttl: Opt<i64>,
    #[serde(default)]
    pub group: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Garp {
    #[serde(default)]
    pub master_delay: Opt<Seconds>,
    #[serde(default)]
    pub master_repeat: Opt<i64>,
    #[serde(default)]
    pub master_refresh: Opt<Seconds>,
    #[serde(default)]
    pub master_refresh_repeat: Opt<i64>,
    #[serde(default)]
    pub interval: Opt<Seconds>,
    #[serde(default)]
    pub lower_prio_repeat: Opt<i64>,
    #[serde(default)]
    pub lower_prio_delay: Opt<Seconds>,
}

/// An address entry, or a bare `"ADDR[/PREFIX]"` string.
#[derive(Debug)]
pub enum AddressEntry {
    Bare(String),
    Full(Address),
}

/// By hand, not `untagged`: an untagged enum buffers its input and loses
/// the positions that `Spanned` fields inside a table need.
impl<'de> Deserialize<'de> for AddressEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = AddressEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address string or an { address = … } table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AddressEntry, E> {
                Ok(AddressEntry::Bare(v.to_string()))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> Result<AddressEntry, M::Error> {
                Address::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(AddressEntry::Full)
            }
        }
        d.deserialize_any(Entry)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub address: Spanned<String>,
    #[serde(default)]
    pub dev: Opt<String>,
    #[serde(default)]
    pub brd: Opt<String>,
    #[serde(default)]
    pub scope: Opt<String>,
    #[serde(default)]
    pub label: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub to: Spanned<String>,
    #[serde(default, rename = "type")]
    pub kind: Opt<String>,
    #[serde(default)]
    pub via: Opt<String>,
    #[serde(default)]
    pub src: Opt<String>,
    #[serde(default)]
    pub dev: Opt<String>,
    #[serde(default)]
    pub table: Opt<i64>,
    #[serde(default)]
    pub metric: Opt<i64>,
    #[serde(default)]
    pub scope: Opt<String>,
}

/// `fwmark`: a number or `"MARK/MASK"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Fwmark {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub from: Opt<String>,
    #[serde(default)]
    pub to: Opt<String>,
    #[serde(default)]
    pub fwmark: Opt<Fwmark>,
    #[serde(default)]
    pub iif: Opt<String>,
    #[serde(default)]
    pub oif: Opt<String>,
    #[serde(default)]
    pub priority: Opt<i64>,
    #[serde(default)]
    pub table: Opt<i64>,
    #[serde(default, rename = "type")]
    pub kind: Opt<String>,
    #[serde(default)]
    pub family: Opt<String>,
}

/// `{ name = "…", weight = N }` in `track_*` lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackRef {
    pub name: Spanned<String>,
    #[serde(default)]
    pub weight: Opt<i64>,
    #[serde(default)]
    pub reverse: Opt<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub name: Spanned<String>,
    pub script: Spanned<CommandText>,
    #[serde(default)]
    pub interval: Opt<Seconds>,
    #[serde(default)]
    pub timeout: Opt<Seconds>,
    #[serde(default)]
    pub weight: Opt<i64>,
    #[serde(default)]
    pub weight_reverse: Opt<bool>,
    #[serde(default)]
    pub rise: Opt<i64>,
    #[serde(default)]
    pub fall: Opt<i64>,
    #[serde(default)]
    pub init_fail: Opt<bool>,
    #[serde(default)]
    pub user: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackFile {
    pub name: Spanned<String>,
    pub file: Spanned<String>,
    #[serde(default)]
    pub weight: Opt<i64>,
    #[serde(default)]
    pub init_file: Opt<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroup {
    pub name: Spanned<String>,
    pub group: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub smtp_alert: Opt<bool>,
    #[serde(default)]
    pub notify_master: Opt<CommandText>,
    #[serde(default)]
    pub notify_backup: Opt<CommandText>,
    #[serde(default)]
    pub notify_fault: Opt<CommandText>,
    #[serde(default)]
    pub notify_stop: Opt<CommandText>,
    #[serde(default)]
    pub notify: Opt<CommandText>,
    #[serde(default)]
    pub track_interface: Vec<Spanned<TrackRef>>,
    #[serde(default)]
    pub track_script: Vec<Spanned<TrackRef>>,
    #[serde(default)]
    pub track_file: Vec<Spanned<TrackRef>>,
}

/// `use_vmac`: `true` for the default name, or the name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UseVmac {
    Default(bool),
    Named(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    pub virtual_router_id: Spanned<i64>,
    #[serde(default)]
    pub smtp_alert: Opt<bool>,
    #[serde(default)]
    pub version: Opt<i64>,
    #[serde(default)]
    pub priority: Opt<i64>,
    #[serde(default)]
    pub state: Opt<String>,
    #[serde(default)]
    pub advert_int: Opt<Seconds>,
    #[serde(default)]
    pub preempt: Opt<bool>,
    #[serde(default)]
    pub preempt_delay: Opt<Seconds>,
    #[serde(default)]
    pub accept: Opt<bool>,
    #[serde(default)]
    pub auth_pass: Opt<String>,
    #[serde(default)]
    pub mcast_src_ip: Opt<String>,
    #[serde(default)]
    pub unicast_src_ip: Opt<String>,
    #[serde(default)]
    pub unicast_peer: Vec<Spanned<String>>,
    #[serde(default)]
    pub check_unicast_src: Opt<bool>,
    #[serde(default)]
    pub virtual_ipaddress: Opt<Vec<Spanned<AddressEntry>>>,
    #[serde(default)]
    pub virtual_ipaddress_excluded: Vec<Spanned<AddressEntry>>,
    #[serde(default)]
    pub virtual_routes: Vec<Spanned<Route>>,
    #[serde(default)]
    pub virtual_rules: Vec<Spanned<Rule>>,
    #[serde(default)]
    pub track_interface: Vec<Spanned<TrackRef>>,
    #[serde(default)]
    pub track_script: Vec<Spanned<TrackRef>>,
    #[serde(default)]
    pub track_file: Vec<Spanned<TrackRef>>,
    #[serde(default)]
    pub use_vmac: Opt<UseVmac>,
    #[serde(default)]
    pub vmac_xmit_base: Opt<bool>,
    #[serde(default)]
    pub notify_master: Opt<CommandText>,
    #[serde(default)]
    pub notify_backup: Opt<CommandText>,
    #[serde(default)]
    pub notify_fault: Opt<CommandText>,
    #[serde(default)]
    pub notify_stop: Opt<CommandText>,
    #[serde(default)]
    pub notify: Opt<CommandText>,
    #[serde(default)]
    pub garp: Opt<Garp>,
    #[serde(default)]
    pub lower_prio_no_advert: Opt<bool>,
    #[serde(default)]
    pub higher_prio_send_advert: Opt<bool>,
}
