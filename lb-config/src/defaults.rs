//! Every default of the model, in one place: the value a key takes when
//! the file leaves it out. The TOML front end fills them in, the
//! keepalived.conf front end too where keepalived's default is the same
//! (where it differs, [`keepalived`] holds keepalived 2.2.7's), `emit`
//! (`xlb convert`, `xlb dump-config`) leaves out what equals them, and
//! the test `config_md_defaults` holds docs/CONFIG.md to [`documented`].
//!
//! Defaults that depend on more than one key (a checker's type, its
//! interval) are functions here; they are keepalived 2.2.7's: each names
//! the line of keepalived's source it comes from, and the test
//! `keepalived_defaults` holds every default of a mapped keyword to the
//! value recorded from that source (tests/fixtures/keepalived-2.2.7/defaults).
//! Structs whose every field has a default (`Metrics`, `ServiceLifecycle`,
//! `Garp`, `AgentFiles`) have `Default` impls, which this table reads.

use super::check::{CheckKind, ServiceLifecycle};
use super::vrrp::InitialState;
use super::{DataplaneKind, Method, Metrics, NodestPolicy, Protocol, Scheduler, XdpMode};
use std::time::Duration;

/// The config file when `--config` is not given.
pub const CONFIG_FILE: &str = "/etc/xlb/xlb.toml";
/// `[dataplane] pin_path` when the config does not set it.
pub const PIN_PATH: &str = "/sys/fs/bpf/xlb";
/// `[dataplane] kind`.
pub const DATAPLANE_KIND: DataplaneKind = DataplaneKind::Xdp;
/// `[dataplane] xdp_mode`.
pub const XDP_MODE: XdpMode = XdpMode::Auto;
/// `[dataplane] nodest_policy`.
pub const NODEST_POLICY: NodestPolicy = NodestPolicy::Keep;
/// `[dataplane] conn_reuse_mode`: IPVS's default, TIME_WAIT and CLOSE
/// flows are reused (keepalived.conf has no keyword: it is a sysctl).
pub const CONN_REUSE_MODE: u8 = 1;
/// `[metrics] listen`: loopback only, as metrics reveal the topology.
pub const METRICS_LISTEN: &str = "127.0.0.1:9477";

/// `[[service]] protocol`.
pub const PROTOCOL: Protocol = Protocol::Tcp;
/// `[[service]] scheduler`: Maglev, which keeps flows on their real across directors.
pub const SCHEDULER: Scheduler = Scheduler::Mh;
/// `[[service]] method`.
pub const METHOD: Method = Method::Dr;
/// `[[service.real]] weight` (keepalived's too).
pub const REAL_WEIGHT: u32 = 1;

/// `[[vrrp_instance]] priority` (keepalived's too).
pub const PRIORITY: u8 = 100;
/// `[[vrrp_instance]] state` (keepalived's too).
pub const INITIAL_STATE: InitialState = InitialState::Backup;
/// `[[vrrp_instance]] advert_int` (keepalived's too).
pub const ADVERT_INT: Duration = Duration::from_secs(1);
/// `[[vrrp_script]] interval` (keepalived's too).
pub const SCRIPT_INTERVAL: Duration = Duration::from_secs(1);
/// `[[vrrp_script]] rise` and `fall` (keepalived's too).
pub const SCRIPT_RISE_FALL: u32 = 1;
/// The weight of a `vrrp_script` and of a `track_interface` / `track_script`
/// entry: 0, a failure is Fault (keepalived's too).
pub const TRACK_WEIGHT: i32 = 0;
/// `[[vrrp_track_file]] weight` (keepalived's too).
pub const TRACK_FILE_WEIGHT: i32 = 1;

/// keepalived 2.2.7's defaults where they differ from the TOML form's.
pub mod keepalived {
    use crate::{Method, Protocol, Scheduler};

    /// `lb_algo` (check_data.c `alloc_vs`).
    pub const SCHEDULER: Scheduler = Scheduler::Wlc;
    /// `lb_kind` (check_data.c `alloc_vs`).
    pub const METHOD: Method = Method::Nat;
    /// `protocol` of an address virtual_server (keepalived 2.2.7 says so and uses UDP).
    pub const PROTOCOL: Protocol = Protocol::Udp;
}

/// `delay_loop` of a virtual server (check_data.h `KEEPALIVED_DEFAULT_DELAY`).
pub const DELAY_LOOP: Duration = Duration::from_secs(60);

/// `connect_timeout` of a virtual server (check_data.c `alloc_vs`: `5 * TIMER_HZ`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `persistence_timeout` written without a value (ip_vs.h `IPVS_SVC_PERSISTENT_TIMEOUT`, 6 minutes).
pub const PERSISTENCE_TIMEOUT: u32 = 360;

/// A checker's `retry` when neither it, its real nor its virtual server
/// sets one: check_api.c `queue_checker` (1), check_dns.c
/// `DNS_DEFAULT_RETRY` (3), check_misc.c (0).
pub fn retry(kind: &CheckKind) -> u32 {
    match kind {
        CheckKind::Dns { .. } => 3,
        CheckKind::Misc { .. } => 0,
        _ => 1,
    }
}

/// A checker's `delay_before_retry` when nothing sets one: check_api.c
/// (1 s), check_http.c (3 s, HTTP_GET and SSL_GET), check_dns.c (0, which
/// check_data.c turns into the checker's `delay_loop`).
pub fn delay_before_retry(kind: &CheckKind, delay_loop: Duration) -> Duration {
    match kind {
        CheckKind::Http(_) => Duration::from_secs(3),
        CheckKind::Dns { .. } => delay_loop,
        _ => Duration::from_secs(1),
    }
}

/// A checker's `warmup` (the span its first attempt is put off by, at
/// random) when nothing sets one: its `delay_loop` (check_data.c
/// `validate_check_config`).
pub fn warmup(delay_loop: Duration) -> Duration {
    delay_loop
}

/// A MISC_CHECK's `misc_timeout` when unset: its `delay_loop` (check_misc.c).
pub fn misc_timeout(delay_loop: Duration) -> Duration {
    delay_loop
}

impl Default for ServiceLifecycle {
    fn default() -> Self {
        ServiceLifecycle {
            delay_loop: DELAY_LOOP,
            omega: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            ha_suspend: false,
            virtualhost: None,
            smtp_alert: None,
        }
    }
}

/// The defaults docs/CONFIG.md states, as `(section heading, key, value)`:
/// the example line of `key` under `## `section`` must say `default VALUE`.
pub fn documented() -> Vec<(&'static str, &'static str, String)> {
    let m = Metrics::default();
    let l = ServiceLifecycle::default();
    let secs = |d: Duration| format!("{}", d.as_secs_f64());
    vec![
        (
            "[dataplane]",
            "kind",
            format!("\"{}\"", DATAPLANE_KIND.name()),
        ),
        (
            "[dataplane]",
            "nodest_policy",
            format!("\"{}\"", NODEST_POLICY.name()),
        ),
        (
            "[dataplane]",
            "conn_reuse_mode",
            CONN_REUSE_MODE.to_string(),
        ),
        ("[metrics]", "listen", format!("\"{METRICS_LISTEN}\"")),
        (
            "[metrics]",
            "max_connections",
            m.max_connections.to_string(),
        ),
        ("[metrics]", "header_timeout", secs(m.header_timeout)),
        ("[metrics]", "idle_timeout", secs(m.idle_timeout)),
        ("[[vrrp_script]]", "interval", secs(SCRIPT_INTERVAL)),
        ("[[vrrp_script]]", "weight", TRACK_WEIGHT.to_string()),
        ("[[vrrp_script]]", "rise", SCRIPT_RISE_FALL.to_string()),
        ("[[vrrp_script]]", "fall", SCRIPT_RISE_FALL.to_string()),
        (
            "[[vrrp_track_file]]",
            "weight",
            TRACK_FILE_WEIGHT.to_string(),
        ),
        ("[[vrrp_instance]]", "priority", PRIORITY.to_string()),
        ("[[vrrp_instance]]", "state", "\"BACKUP\"".to_string()),
        ("[[vrrp_instance]]", "advert_int", secs(ADVERT_INT)),
        ("[[service]]", "delay_loop", secs(l.delay_loop)),
        ("[[service]]", "quorum", l.quorum.to_string()),
        ("[[service]]", "hysteresis", l.hysteresis.to_string()),
        ("[[service]]", "connect_timeout", secs(CONNECT_TIMEOUT)),
    ]
}
