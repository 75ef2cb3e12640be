//! Every keyword xlb knows, per block: whether it opens a block, how many
//! values it takes, whether it may repeat, and — for keywords keepalived
//! accepts but xlb does not honour — why not. Lines inside value blocks
//! (`virtual_ipaddress`, `unicast_peer`, `group` …) are data, not keywords,
//! and are checked by their mappers.

/// Whether a keyword opens a `{ … }` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blk {
    No,
    Yes,
}

#[derive(Clone, Copy, Debug)]
pub struct Kw {
    pub name: &'static str,
    /// Fewest and most values after the keyword.
    pub min: usize,
    pub max: usize,
    pub block: Blk,
    /// May appear more than once in its block.
    pub multi: bool,
    /// `Some(reason)`: accepted by keepalived, not honoured by xlb.
    pub unsupported: Option<&'static str>,
}

const MANY: usize = usize::MAX;

const fn leaf(name: &'static str, min: usize, max: usize) -> Kw {
    Kw {
        name,
        min,
        max,
        block: Blk::No,
        multi: false,
        unsupported: None,
    }
}

const fn flag(name: &'static str) -> Kw {
    leaf(name, 0, 0)
}

const fn block(name: &'static str, min: usize, max: usize) -> Kw {
    Kw {
        block: Blk::Yes,
        ..leaf(name, min, max)
    }
}

const fn multi(k: Kw) -> Kw {
    Kw { multi: true, ..k }
}

const fn no(k: Kw, reason: &'static str) -> Kw {
    Kw {
        unsupported: Some(reason),
        multi: true,
        ..k
    }
}

const MAIL: &str = "xlb mails every fault it alerts on; there is no switch for fault mails";
const SNMP: &str = "xlb has no SNMP agent";
const DBUS: &str = "xlb has no D-Bus interface";
const FIREWALL: &str = "no_accept uses xlb's own nftables table `inet xlb`";
const PRIO: &str =
    "process priority and swapping are the service manager's to set (systemd), not xlb's";
const LOWER_PRIO: &str = "xlb does not react to lower-priority adverts beyond the RFC";
const CHECK_DEFAULT: &str = "set it in each checker";

/// The blocks keywords live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Top,
    Global,
    VrrpScript,
    TrackFile,
    SyncGroup,
    Instance,
    Auth,
    VirtualServer,
    RealServer,
    TcpCheck,
    HttpCheck,
    SslCheck,
    Url,
    SmtpCheck,
    DnsCheck,
    UdpCheck,
    PingCheck,
    MiscCheck,
}

impl Area {
    /// The block's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Area::Top => "the top level",
            Area::Global => "global_defs",
            Area::VrrpScript => "vrrp_script",
            Area::TrackFile => "vrrp_track_file",
            Area::SyncGroup => "vrrp_sync_group",
            Area::Instance => "vrrp_instance",
            Area::Auth => "authentication",
            Area::VirtualServer => "virtual_server",
            Area::RealServer => "real_server",
            Area::TcpCheck => "TCP_CHECK",
            Area::HttpCheck => "HTTP_GET",
            Area::SslCheck => "SSL_GET",
            Area::Url => "url",
            Area::SmtpCheck => "SMTP_CHECK",
            Area::DnsCheck => "DNS_CHECK",
            Area::UdpCheck => "UDP_CHECK",
            Area::PingCheck => "PING_CHECK",
            Area::MiscCheck => "MISC_CHECK",
        }
    }

    pub fn keywords(self) -> Vec<Kw> {
        let mut v: Vec<Kw> = match self {
            Area::Top => TOP.to_vec(),
            Area::Global => GLOBAL.to_vec(),
            Area::VrrpScript => VRRP_SCRIPT.to_vec(),
            Area::TrackFile => TRACK_FILE.to_vec(),
            Area::SyncGroup => SYNC_GROUP.to_vec(),
            Area::Instance => [NOTIFY, INSTANCE].concat(),
            Area::Auth => AUTH.to_vec(),
            Area::VirtualServer => VIRTUAL_SERVER.to_vec(),
            Area::RealServer => REAL_SERVER.to_vec(),
            Area::TcpCheck | Area::PingCheck => CHECK_COMMON.to_vec(),
            Area::HttpCheck => [CHECK_COMMON, HTTP].concat(),
            Area::SslCheck => [CHECK_COMMON, HTTP, &[flag("enable_sni")]].concat(),
            Area::Url => URL.to_vec(),
            Area::SmtpCheck => [CHECK_COMMON, &[leaf("helo_name", 1, 1), no(block("host", 0, 0), "SMTP_CHECK host sub-blocks are not implemented; use one SMTP_CHECK per host")]].concat(),
            Area::DnsCheck => [CHECK_COMMON, &[leaf("type", 1, 1), leaf("name", 1, 1)]].concat(),
            Area::UdpCheck => [CHECK_COMMON, UDP].concat(),
            Area::MiscCheck => MISC.to_vec(),
        };
        if self == Area::SyncGroup {
            v.extend_from_slice(NOTIFY);
        }
        v
    }
}

const TOP: &[Kw] = &[
    block("global_defs", 0, 0),
    block("static_ipaddress", 0, 0),
    block("static_routes", 0, 0),
    block("static_rules", 0, 0),
    multi(block("vrrp_script", 1, 1)),
    multi(block("vrrp_track_file", 1, 1)),
    multi(block("vrrp_sync_group", 1, 1)),
    multi(block("vrrp_instance", 1, 1)),
    multi(block("virtual_server_group", 1, 1)),
    multi(block("virtual_server", 1, 2)),
    no(
        block("vrrp_track_process", 1, 1),
        "process tracking is not implemented; use a vrrp_script",
    ),
    no(block("garp_group", 0, 0), "GARP groups are not implemented"),
    no(block("bfd_instance", 1, 1), "BFD is not implemented"),
    no(
        leaf("net_namespace", 1, 1),
        "xlb runs in the namespace it is started in",
    ),
];

const GLOBAL: &[Kw] = &[
    leaf("router_id", 1, 1),
    // keepalived 1.x's name for router_id.
    leaf("lvs_id", 1, 1),
    leaf("script_user", 1, 2),
    flag("enable_script_security"),
    leaf("vrrp_version", 1, 1),
    leaf("vrrp_mcast_group4", 1, 1),
    leaf("vrrp_mcast_group6", 1, 1),
    leaf("vrrp_garp_master_delay", 1, 1),
    leaf("vrrp_garp_master_repeat", 1, 1),
    leaf("vrrp_garp_master_refresh", 1, 1),
    leaf("vrrp_garp_master_refresh_repeat", 1, 1),
    leaf("vrrp_garp_interval", 1, 1),
    leaf("vrrp_gna_interval", 1, 1),
    leaf("notify_fifo", 1, 1),
    leaf("notify_fifo_script", 1, 1),
    leaf("vrrp_notify_fifo", 1, 1),
    leaf("vrrp_notify_fifo_script", 1, 1),
    leaf("lvs_notify_fifo", 1, 1),
    leaf("lvs_notify_fifo_script", 1, 1),
    leaf("lvs_sync_daemon", 2, 12),
    leaf("lvs_timeouts", 2, 6),
    leaf("default_interface", 1, 1),
    flag("vrrp_strict"),
    flag("vrrp_check_unicast_src"),
    // An optimisation only (skip re-checking adverts from the same master):
    // xlb's check is cheap, so it always checks; the outcome is the same.
    flag("vrrp_skip_check_adv_addr"),
    block("notification_email", 0, 0),
    leaf("notification_email_from", 1, 1),
    leaf("smtp_server", 1, 2),
    leaf("smtp_helo_name", 1, 1),
    leaf("smtp_connect_timeout", 1, 1),
    leaf("smtp_alert", 0, 1),
    leaf("smtp_alert_vrrp", 0, 1),
    leaf("smtp_alert_checker", 0, 1),
    no(leaf("email_faults", 0, 1), MAIL),
    no(flag("enable_traps"), SNMP),
    no(leaf("enable_snmp_vrrp", 0, 1), SNMP),
    no(leaf("enable_snmp_checker", 0, 1), SNMP),
    no(leaf("enable_snmp_rfc", 0, 1), SNMP),
    no(leaf("enable_snmp_rfcv2", 0, 1), SNMP),
    no(leaf("enable_snmp_rfcv3", 0, 1), SNMP),
    no(leaf("snmp_socket", 1, 1), SNMP),
    no(flag("enable_dbus"), DBUS),
    no(leaf("enable_dbus_instance", 1, 1), DBUS),
    no(
        flag("lvs_flush"),
        "xlb starts its data plane empty and never flushes services it does not own",
    ),
    no(leaf("vrrp_iptables", 0, 2), FIREWALL),
    no(leaf("vrrp_ipsets", 0, 4), FIREWALL),
    no(leaf("vrrp_nftables", 0, 1), FIREWALL),
    no(leaf("vrrp_priority", 1, 1), PRIO),
    no(leaf("checker_priority", 1, 1), PRIO),
    no(leaf("vrrp_rt_priority", 1, 1), PRIO),
    no(leaf("checker_rt_priority", 1, 1), PRIO),
    no(flag("vrrp_no_swap"), PRIO),
    no(flag("checker_no_swap"), PRIO),
    no(leaf("vrrp_garp_lower_prio_delay", 1, 1), LOWER_PRIO),
    no(leaf("vrrp_garp_lower_prio_repeat", 1, 1), LOWER_PRIO),
    no(leaf("vrrp_lower_prio_no_advert", 0, 1), LOWER_PRIO),
    no(leaf("vrrp_higher_prio_send_advert", 0, 1), LOWER_PRIO),
];

const VRRP_SCRIPT: &[Kw] = &[
    leaf("script", 1, MANY),
    leaf("interval", 1, 1),
    leaf("timeout", 1, 1),
    leaf("weight", 1, 2),
    leaf("rise", 1, 1),
    leaf("fall", 1, 1),
    leaf("user", 1, 2),
    flag("init_fail"),
];

const TRACK_FILE: &[Kw] = &[
    leaf("file", 1, 1),
    leaf("weight", 1, 2),
    leaf("init_file", 0, 2),
];

const TRACKS: &[Kw] = &[
    block("track_interface", 0, 0),
    block("track_script", 0, 0),
    block("track_file", 0, 0),
    no(
        block("track_process", 0, 0),
        "process tracking is not implemented; use a vrrp_script",
    ),
    no(block("track_bfd", 0, 0), "BFD is not implemented"),
];

const NOTIFY: &[Kw] = &[
    leaf("notify_master", 1, MANY),
    leaf("notify_backup", 1, MANY),
    leaf("notify_fault", 1, MANY),
    leaf("notify_stop", 1, MANY),
    leaf("notify", 1, MANY),
    leaf("smtp_alert", 0, 1),
];

const SYNC_GROUP: &[Kw] = &[
    block("group", 0, 0),
    TRACKS[0],
    TRACKS[1],
    TRACKS[2],
    TRACKS[3],
    TRACKS[4],
    no(
        flag("global_tracking"),
        "deprecated in keepalived; list the tracks in the sync group",
    ),
    no(flag("sync_group_tracking_weight"), "not implemented"),
];

const INSTANCE: &[Kw] = &[
    leaf("state", 1, 1),
    leaf("interface", 1, 1),
    leaf("virtual_router_id", 1, 1),
    leaf("priority", 1, 1),
    leaf("advert_int", 1, 1),
    leaf("version", 1, 1),
    flag("nopreempt"),
    flag("preempt"),
    leaf("preempt_delay", 1, 1),
    flag("accept"),
    flag("no_accept"),
    block("authentication", 0, 0),
    leaf("mcast_src_ip", 1, 1),
    leaf("unicast_src_ip", 1, 1),
    block("unicast_peer", 0, 0),
    flag("check_unicast_src"),
    block("virtual_ipaddress", 0, 0),
    block("virtual_ipaddress_excluded", 0, 0),
    block("virtual_routes", 0, 0),
    block("virtual_rules", 0, 0),
    TRACKS[0],
    TRACKS[1],
    TRACKS[2],
    TRACKS[3],
    TRACKS[4],
    leaf("use_vmac", 0, 1),
    flag("vmac_xmit_base"),
    leaf("garp_master_delay", 1, 1),
    leaf("garp_master_repeat", 1, 1),
    leaf("garp_master_refresh", 1, 1),
    leaf("garp_master_refresh_repeat", 1, 1),
    leaf("garp_interval", 1, 1),
    leaf("gna_interval", 1, 1),
    leaf("lvs_sync_daemon_interface", 1, 1),
    no(
        flag("dont_track_primary"),
        "xlb always puts an instance in Fault when its interface goes down",
    ),
    no(
        leaf("debug", 0, 1),
        "per-instance debug levels do not exist; use --log-level",
    ),
    no(
        flag("native_ipv6"),
        "xlb takes the family from the instance's addresses",
    ),
    no(flag("strict_mode"), "use vrrp_strict in global_defs"),
    no(leaf("garp_lower_prio_delay", 1, 1), LOWER_PRIO),
    no(leaf("garp_lower_prio_repeat", 1, 1), LOWER_PRIO),
    no(leaf("lower_prio_no_advert", 0, 1), LOWER_PRIO),
    no(leaf("higher_prio_send_advert", 0, 1), LOWER_PRIO),
    no(leaf("kernel_rx_buf_size", 1, 1), "not implemented"),
];

const AUTH: &[Kw] = &[leaf("auth_type", 1, 1), leaf("auth_pass", 1, 1)];

const VIRTUAL_SERVER: &[Kw] = &[
    leaf("delay_loop", 1, 1),
    leaf("lb_algo", 1, 1),
    leaf("lvs_sched", 1, 1),
    leaf("lb_kind", 1, 1),
    leaf("lvs_method", 1, 1),
    leaf("persistence_timeout", 0, 1),
    leaf("persistence_granularity", 1, 1),
    leaf("protocol", 1, 1),
    flag("ha_suspend"),
    leaf("virtualhost", 1, 1),
    flag("alpha"),
    flag("omega"),
    leaf("quorum", 1, 1),
    leaf("hysteresis", 1, 1),
    leaf("quorum_up", 1, MANY),
    leaf("quorum_down", 1, MANY),
    leaf("sorry_server", 2, 2),
    flag("sorry_server_inhibit"),
    multi(block("real_server", 1, 2)),
    flag("sh-port"),
    flag("sh-fallback"),
    flag("mh-port"),
    flag("mh-fallback"),
    leaf("ip_family", 1, 1),
    no(flag("ops"), "one-packet scheduling is not implemented"),
    no(
        leaf("nat_mask", 1, 1),
        "obsolete: keepalived ignores it too",
    ),
    no(
        leaf("persistence_engine", 1, 1),
        "persistence engines (SIP) are not implemented",
    ),
    no(
        flag("hashed"),
        "use sh-port / sh-fallback / mh-port / mh-fallback",
    ),
    no(
        flag("flag-1"),
        "use sh-port / sh-fallback / mh-port / mh-fallback",
    ),
    no(
        flag("flag-2"),
        "use sh-port / sh-fallback / mh-port / mh-fallback",
    ),
    no(
        flag("flag-3"),
        "use sh-port / sh-fallback / mh-port / mh-fallback",
    ),
    leaf("smtp_alert", 0, 1),
    no(leaf("retry", 1, 1), CHECK_DEFAULT),
    no(leaf("delay_before_retry", 1, 1), CHECK_DEFAULT),
    no(leaf("connect_timeout", 1, 1), CHECK_DEFAULT),
    no(leaf("warmup", 1, 1), CHECK_DEFAULT),
];

const REAL_SERVER: &[Kw] = &[
    leaf("weight", 1, 1),
    flag("inhibit_on_failure"),
    leaf("notify_up", 1, MANY),
    leaf("notify_down", 1, MANY),
    leaf("uthreshold", 1, 1),
    leaf("lthreshold", 1, 1),
    multi(block("TCP_CHECK", 0, 0)),
    multi(block("HTTP_GET", 0, 0)),
    multi(block("SSL_GET", 0, 0)),
    multi(block("SMTP_CHECK", 0, 0)),
    multi(block("DNS_CHECK", 0, 0)),
    multi(block("UDP_CHECK", 0, 0)),
    multi(block("PING_CHECK", 0, 0)),
    multi(block("MISC_CHECK", 0, 0)),
    no(
        leaf("lvs_method", 1, MANY),
        "xlb has one forwarding method per service; set lb_kind on the virtual_server",
    ),
    no(block("BFD_CHECK", 0, 0), "BFD is not implemented"),
    no(
        block("FILE_CHECK", 0, 0),
        "file checks are not implemented; use MISC_CHECK",
    ),
    leaf("smtp_alert", 0, 1),
    no(leaf("delay_loop", 1, 1), CHECK_DEFAULT),
    no(leaf("retry", 1, 1), CHECK_DEFAULT),
    no(leaf("delay_before_retry", 1, 1), CHECK_DEFAULT),
    no(leaf("connect_timeout", 1, 1), CHECK_DEFAULT),
    no(leaf("warmup", 1, 1), CHECK_DEFAULT),
];

const CHECK_COMMON: &[Kw] = &[
    leaf("connect_ip", 1, 1),
    leaf("connect_port", 1, 1),
    leaf("bindto", 1, 1),
    leaf("bind_port", 1, 1),
    leaf("connect_timeout", 1, 1),
    leaf("retry", 1, 1),
    leaf("nb_get_retry", 1, 1),
    leaf("delay_before_retry", 1, 1),
    leaf("delay_loop", 1, 1),
    leaf("warmup", 1, 1),
    leaf("fwmark", 1, 1),
    no(
        leaf("bind_if", 1, 1),
        "bind the checker with bindto instead",
    ),
    no(leaf("alpha", 0, 1), "set alpha on the virtual_server"),
];

const HTTP: &[Kw] = &[
    multi(block("url", 0, 0)),
    leaf("virtualhost", 1, 1),
    leaf("http_protocol", 1, 1),
    no(flag("fast_recovery"), "not implemented"),
];

const URL: &[Kw] = &[
    leaf("path", 1, 1),
    leaf("digest", 1, 1),
    leaf("status_code", 1, MANY),
    no(
        leaf("regex", 1, 1),
        "body regular expressions are not implemented; use digest",
    ),
    no(
        flag("regex_no_match"),
        "body regular expressions are not implemented",
    ),
    no(
        leaf("regex_options", 1, MANY),
        "body regular expressions are not implemented",
    ),
];

const UDP: &[Kw] = &[
    leaf("payload", 1, 1),
    leaf("require_reply", 0, 1),
    no(
        leaf("min_reply_length", 1, 1),
        "not implemented; use require_reply",
    ),
    no(
        leaf("max_reply_length", 1, 1),
        "not implemented; use require_reply",
    ),
];

const MISC: &[Kw] = &[
    leaf("misc_path", 1, MANY),
    leaf("misc_timeout", 1, 1),
    flag("misc_dynamic"),
    leaf("user", 1, 2),
    leaf("warmup", 1, 1),
    leaf("delay_loop", 1, 1),
    leaf("retry", 1, 1),
    leaf("delay_before_retry", 1, 1),
];
