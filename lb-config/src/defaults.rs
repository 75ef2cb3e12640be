//! The model's defaults that depend on more than one key (a checker's type,
//! its interval), in one place for both front ends, `xlb convert` (which
//! leaves defaults out) and `xlb dump-config`. They are keepalived 2.2.7's:
//! each names the line of keepalived's source it comes from, and the test
//! `keepalived_defaults` holds every default of a mapped keyword to the
//! value recorded from that source (tests/fixtures/keepalived-2.2.7/defaults).
//! Defaults of a single field live in the model's `Default` impls.

use super::check::{CheckKind, ServiceLifecycle};
use std::time::Duration;

/// The config file when `--config` is not given.
pub const CONFIG_FILE: &str = "/etc/xlb/xlb.toml";
/// `[dataplane] pin_path` when the config does not set it.
pub const PIN_PATH: &str = "/sys/fs/bpf/xlb";

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
