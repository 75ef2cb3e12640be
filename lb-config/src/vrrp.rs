//! The VRRP part of the model: instances, sync groups, tracked scripts and
//! files, and the static addresses, routes and rules of the host. Both
//! front ends (TOML and keepalived.conf) produce these types; durations are
//! exact (`advert_int 0.1` is 10 centiseconds), defaults are keepalived's.

use super::Command;
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

/// Everything VRRP runs: empty when the director is alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vrrp {
    pub instances: Vec<Instance>,
    pub sync_groups: Vec<SyncGroup>,
    pub scripts: Vec<TrackScriptDef>,
    pub track_files: Vec<TrackFileDef>,
}

/// The state an instance starts in (`state MASTER|BACKUP`). keepalived
/// treats MASTER as a hint only: the election still decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    Backup,
    Master,
}

impl Default for InitialState {
    fn default() -> Self {
        crate::defaults::INITIAL_STATE
    }
}

/// `authentication { auth_type PASS; auth_pass X }` (VRRPv2 only; AH is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Up to 8 bytes, sent zero-padded and compared as given.
    pub pass: String,
}

/// `vrrp_instance NAME { … }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// `interface`: where adverts are sent and received.
    pub interface: String,
    /// `virtual_router_id` 1–255.
    pub vrid: u8,
    /// `version` 2 or 3 (default: `global_defs vrrp_version`, else 2).
    pub version: u8,
    /// `priority` 1–255; 255 only for the address owner.
    pub priority: u8,
    pub initial_state: InitialState,
    /// `advert_int`; v2 accepts whole seconds only, v3 centiseconds up to 40.95 s.
    pub advert_int: Duration,
    /// Preempt a lower-priority Master (default true; `nopreempt` turns it off).
    pub preempt: bool,
    /// `preempt_delay`: time after start-up during which no preemption happens.
    pub preempt_delay: Duration,
    /// `accept` / `no_accept`: whether a Master accepts packets to VIPs it
    /// does not own (v3 Accept_Mode).
    pub accept: bool,
    pub auth: Option<Auth>,
    /// `mcast_src_ip`: source of multicast adverts (default: the interface's primary address).
    pub mcast_src_ip: Option<IpAddr>,
    /// `unicast_src_ip`: source of unicast adverts.
    pub unicast_src_ip: Option<IpAddr>,
    /// `unicast_peer { … }`: when non-empty, adverts go to each peer instead of multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// `check_unicast_src`: drop adverts whose source is not a listed peer.
    pub check_unicast_src: bool,
    pub virtual_ipaddress: Vec<VirtualAddress>,
    pub virtual_ipaddress_excluded: Vec<VirtualAddress>,
    pub virtual_routes: Vec<Route>,
    pub virtual_rules: Vec<Rule>,
    pub track_interfaces: Vec<TrackInterface>,
    pub track_scripts: Vec<TrackRef>,
    pub track_files: Vec<TrackRef>,
    /// `use_vmac [NAME]`: send and own VIPs on a macvlan with the VRRP MAC.
    pub vmac: Option<Vmac>,
    /// Gratuitous ARP / unsolicited NA timing (instance values override global ones).
    pub garp: Garp,
    /// `lower_prio_no_advert`: as Master, do not answer a lower-priority advert.
    pub lower_prio_no_advert: bool,
    /// `higher_prio_send_advert`: as Master, send one advert before yielding
    /// to a better one, so the winner learns of the split brain and
    /// announces itself (on by default in xlb, off in keepalived).
    pub higher_prio_send_advert: bool,
    pub notify: Notify,
    /// `smtp_alert`: email on each state change (unset: global
    /// `smtp_alert_vrrp`, else `smtp_alert`, else no; see `alert::inherit`).
    pub smtp_alert: Option<bool>,
}

impl Instance {
    /// The instance's address family (its adverts, its socket): that of its
    /// first virtual address, else of `unicast_src_ip`, else IPv4.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_ipaddress
            .first()
            .map(|a| a.address.is_ipv6())
            .or(self.unicast_src_ip.map(|a| a.is_ipv6()))
            .unwrap_or(false)
    }

    /// Priority 255: the node owns the virtual addresses (they are its
    /// interfaces' own), so it never adds or removes them.
    pub fn owner(&self) -> bool {
        self.priority == 255
    }
}

/// `use_vmac`: the macvlan's name (default `vrrp.VRID`, `vrrp6.VRID` for IPv6)
/// and whether adverts leave from the base interface (`vmac_xmit_base`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmac {
    pub name: String,
    pub xmit_base: bool,
}

/// Gratuitous ARP and unsolicited neighbour advertisement timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Garp {
    /// `garp_master_delay`: second burst this long after becoming Master (default 5 s; 0: none).
    pub master_delay: Duration,
    /// `garp_master_repeat`: packets per burst (default 5).
    pub master_repeat: u32,
    /// `garp_master_refresh`: repeat a burst this often while Master (default: never).
    pub master_refresh: Option<Duration>,
    /// `garp_master_refresh_repeat`: packets per refresh burst (default 1).
    pub master_refresh_repeat: u32,
    /// `garp_interval` / `gna_interval`: pause between packets of a burst (default 0).
    pub interval: Duration,
    /// `garp_lower_prio_repeat`: packets per burst when a Master hears a
    /// lower-priority advert (keepalived's default: the global
    /// `vrrp_garp_master_repeat`; 0: none).
    pub lower_prio_repeat: u32,
    /// `garp_lower_prio_delay`: a second such burst this long later
    /// (default: the global `vrrp_garp_master_delay`; 0: none).
    pub lower_prio_delay: Duration,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            interval: Duration::ZERO,
            lower_prio_repeat: 5,
            lower_prio_delay: Duration::from_secs(5),
        }
    }
}

/// `ip addr` scope names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Site,
    Link,
    Host,
    Nowhere,
}

impl Scope {
    /// Every scope with its name in `ip` and keepalived.conf.
    const ALL: [(Scope, &'static str); 5] = [
        (Scope::Global, "global"),
        (Scope::Site, "site"),
        (Scope::Link, "link"),
        (Scope::Host, "host"),
        (Scope::Nowhere, "nowhere"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    pub fn from_name(name: &str) -> Option<Scope> {
        Self::ALL.iter().find(|e| e.1 == name).map(|e| e.0)
    }
}

/// One `virtual_ipaddress` / `static_ipaddress` line:
/// `ADDR[/PREFIX] [brd B] [dev D] [scope S] [label L]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualAddress {
    pub address: IpAddr,
    /// Default 32 (IPv4) / 128 (IPv6).
    pub prefix: u8,
    /// Default: the instance's interface (or its VMAC).
    pub dev: Option<String>,
    pub brd: Option<Ipv4Addr>,
    pub scope: Option<Scope>,
    pub label: Option<String>,
}

/// A route's type (`blackhole`, `unreachable`, `prohibit`, `throw` or a normal route).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteKind {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

impl RouteKind {
    /// Every route type with its name in `ip` and keepalived.conf.
    const ALL: [(RouteKind, &'static str); 5] = [
        (RouteKind::Unicast, "unicast"),
        (RouteKind::Blackhole, "blackhole"),
        (RouteKind::Unreachable, "unreachable"),
        (RouteKind::Prohibit, "prohibit"),
        (RouteKind::Throw, "throw"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    pub fn from_name(name: &str) -> Option<RouteKind> {
        Self::ALL.iter().find(|e| e.1 == name).map(|e| e.0)
    }
}

/// One `virtual_routes` / `static_routes` line:
/// `[TYPE] DEST[/PREFIX] [via GW] [src S] [dev D] [table T] [metric M] [scope S]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub dest: IpAddr,
    pub prefix: u8,
    pub via: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub dev: Option<String>,
    /// Routing table number (default main, 254).
    pub table: Option<u32>,
    pub metric: Option<u32>,
    pub scope: Option<Scope>,
}

/// What a policy rule does with matching packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Table(u32),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// One `virtual_rules` / `static_rules` line:
/// `[from A/P] [to A/P] [fwmark M[/MASK]] [iif I] [oif O] [priority N] (table T|blackhole|…)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The rule's family when neither `from` nor `to` says it.
    pub ipv6: bool,
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    pub fwmark: Option<(u32, Option<u32>)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub priority: Option<u32>,
    pub action: RuleAction,
}

/// `track_interface { DEV [weight W [reverse]] }`: weight 0 means link down
/// → Fault; otherwise the priority changes by W while the link is down (W
/// below 0) or up (W above 0); `reverse` moves it the other way (and with
/// weight 0, link up is Fault).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInterface {
    pub name: String,
    pub weight: i32,
    pub reverse: bool,
}

/// `track_script { NAME [weight W [reverse]] }` / `track_file { NAME [weight
/// W [reverse]] }`: a reference to a definition, optionally overriding its
/// weight (and then its direction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackRef {
    pub name: String,
    pub weight: Option<i32>,
    /// With `weight`: reversed. Track files take it as a negated weight.
    pub reverse: bool,
}

/// `vrrp_script NAME { … }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackScriptDef {
    pub name: String,
    pub script: Command,
    /// Default 1 s.
    pub interval: Duration,
    /// Default: `interval`.
    pub timeout: Duration,
    /// Priority change while failing (negative) or while succeeding (positive);
    /// 0: failure puts the instance in Fault.
    pub weight: i32,
    /// `weight W reverse`: apply the weight on success instead.
    pub weight_reverse: bool,
    /// Successes needed to be up (default 1).
    pub rise: u32,
    /// Failures needed to be down (default 1).
    pub fall: u32,
    /// `init_fail`: start in the failed state.
    pub init_fail: bool,
    /// `user USER [GROUP]` (default: `global_defs script_user`).
    pub user: Option<String>,
}

/// `vrrp_track_file NAME { file PATH; weight W; init_file [V] [overwrite] }`:
/// the priority changes by the number in the file × W.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFileDef {
    pub name: String,
    pub path: PathBuf,
    pub weight: i32,
    /// Create the file with this value at start when missing (`init_file`).
    pub init: Option<i64>,
}

/// `notify_*` scripts of an instance or a sync group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    pub master: Option<Command>,
    pub backup: Option<Command>,
    pub fault: Option<Command>,
    pub stop: Option<Command>,
    /// `notify`: called on every change with `INSTANCE|GROUP name state priority`.
    pub any: Option<Command>,
}

/// `vrrp_sync_group NAME { group { A B } … }`: members change state together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    pub name: String,
    pub members: Vec<String>,
    pub notify: Notify,
    pub track_interfaces: Vec<TrackInterface>,
    pub track_scripts: Vec<TrackRef>,
    pub track_files: Vec<TrackRef>,
    /// `smtp_alert`, inherited as an instance's.
    pub smtp_alert: Option<bool>,
}

/// `static_ipaddress`, `static_routes`, `static_rules`: applied at start,
/// removed at stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticNet {
    pub addresses: Vec<VirtualAddress>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
}
