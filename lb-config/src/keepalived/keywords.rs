//! Every keyword xlb knows, per block: whether it opens a block, how many
//! values it takes, whether it may repeat, and what xlb does with it —
//! maps it, refuses it as unsupported (with the reason), or accepts and
//! ignores it (it only tunes keepalived's own process; with a note). The
//! keywords are keepalived 2.2.7's own (`keepalived-2.2.7.keywords`, dumped
//! by its parser); a test walks that tree and finds each here. Lines inside
//! value blocks (`virtual_ipaddress`, `unicast_peer`, `group` …) are data,
//! not keywords, and are checked by their mappers.

/// Whether a keyword opens a `{ … }` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blk {
    No,
    Yes,
}

/// What xlb does with a keyword keepalived accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Read into the model.
    Mapped,
    /// Refused (an error, or with `--lenient` a warning): xlb cannot honour it.
    Unsupported(&'static str),
    /// Accepted and ignored: it tunes only keepalived's own process.
    Ignored(&'static str),
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
    pub status: Status,
}

const MANY: usize = usize::MAX;

const fn leaf(name: &'static str, min: usize, max: usize) -> Kw {
    Kw {
        name,
        min,
        max,
        block: Blk::No,
        multi: false,
        status: Status::Mapped,
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

/// Unsupported: its values and block are not read.
const fn no(name: &'static str, reason: &'static str) -> Kw {
    Kw {
        status: Status::Unsupported(reason),
        multi: true,
        ..leaf(name, 0, MANY)
    }
}

/// Accepted and ignored: its values and block are not read.
const fn ign(name: &'static str, note: &'static str) -> Kw {
    Kw {
        status: Status::Ignored(note),
        multi: true,
        ..leaf(name, 0, MANY)
    }
}

const MAIL: &str = "xlb mails every fault it alerts on; there is no switch for fault mails";
const SNMP: &str = "xlb has no SNMP agent";
const DBUS: &str = "xlb has no D-Bus interface";
const FIREWALL: &str = "no_accept uses xlb's own nftables table `inet xlb`";
const PROCESS: &str = "tunes keepalived's own process; xlb is one process, its priority and limits are the service manager's (systemd)";
const BUFFERS: &str = "sizes keepalived's netlink sockets; xlb sizes its own";
const LOGGING: &str = "a logging choice; xlb logs every failed attempt at debug level";
const BFD: &str = "BFD is not implemented";
const TRACK_PROCESS: &str = "process tracking is not implemented; use a vrrp_script";
const GARP_EXTRA: &str = "xlb announces on the VIPs' interface only";
const NOT_YET: &str = "not implemented";
const SNMP_NAME: &str = "names the object for SNMP, which xlb does not have";
const REGEX: &str = "body regular expressions are not implemented; use digest";

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
    SmtpHost,
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
            Area::SmtpHost => "SMTP_CHECK host",
            Area::DnsCheck => "DNS_CHECK",
            Area::UdpCheck => "UDP_CHECK",
            Area::PingCheck => "PING_CHECK",
            Area::MiscCheck => "MISC_CHECK",
        }
    }

    pub fn keywords(self) -> Vec<Kw> {
        match self {
            Area::Top => TOP.to_vec(),
            Area::Global => GLOBAL.to_vec(),
            Area::VrrpScript => VRRP_SCRIPT.to_vec(),
            Area::TrackFile => TRACK_FILE.to_vec(),
            Area::SyncGroup => [SYNC_GROUP, TRACKS, NOTIFY].concat(),
            Area::Instance => [NOTIFY, TRACKS, INSTANCE].concat(),
            Area::Auth => AUTH.to_vec(),
            Area::VirtualServer => [CHECK_DEFAULTS, VIRTUAL_SERVER].concat(),
            Area::RealServer => [CHECK_DEFAULTS, REAL_SERVER].concat(),
            Area::TcpCheck | Area::PingCheck | Area::SmtpHost => CHECK_COMMON.to_vec(),
            Area::HttpCheck => [
                CHECK_COMMON,
                HTTP,
                &[ign("enable_sni", "HTTP_GET has no TLS to send it in")],
            ]
            .concat(),
            Area::SslCheck => [CHECK_COMMON, HTTP, &[flag("enable_sni")]].concat(),
            Area::Url => URL.to_vec(),
            Area::SmtpCheck => [
                CHECK_COMMON,
                &[leaf("helo_name", 1, 1), multi(block("host", 0, 0))],
            ]
            .concat(),
            Area::DnsCheck => [CHECK_COMMON, &[leaf("type", 1, 1), leaf("name", 1, 1)]].concat(),
            Area::UdpCheck => [CHECK_COMMON, UDP].concat(),
            Area::MiscCheck => MISC.to_vec(),
        }
    }

    /// The area of the block `name` opens inside this one, for blocks
    /// whose lines are keywords (value blocks have none).
    pub fn child(self, name: &str) -> Option<Area> {
        Some(match (self, name) {
            (Area::Top, "global_defs") => Area::Global,
            (Area::Top, "vrrp_script") => Area::VrrpScript,
            (Area::Top, "vrrp_track_file" | "track_file") => Area::TrackFile,
            (Area::Top, "vrrp_sync_group") => Area::SyncGroup,
            (Area::Top, "vrrp_instance") => Area::Instance,
            (Area::Top, "virtual_server") => Area::VirtualServer,
            (Area::Instance, "authentication") => Area::Auth,
            (Area::VirtualServer, "real_server") => Area::RealServer,
            (Area::RealServer, check) => Area::check(check)?,
            (Area::HttpCheck | Area::SslCheck, "url") => Area::Url,
            (Area::SmtpCheck, "host") => Area::SmtpHost,
            _ => return None,
        })
    }

    /// The area of a checker block of `real_server`.
    pub fn check(name: &str) -> Option<Area> {
        Some(match name {
            "TCP_CHECK" => Area::TcpCheck,
            "HTTP_GET" => Area::HttpCheck,
            "SSL_GET" => Area::SslCheck,
            "SMTP_CHECK" => Area::SmtpCheck,
            "DNS_CHECK" => Area::DnsCheck,
            "UDP_CHECK" => Area::UdpCheck,
            "PING_CHECK" => Area::PingCheck,
            "MISC_CHECK" => Area::MiscCheck,
            _ => return None,
        })
    }
}

const TOP: &[Kw] = &[
    multi(block("global_defs", 0, 0)),
    block("static_ipaddress", 0, 0),
    block("static_routes", 0, 0),
    block("static_rules", 0, 0),
    multi(block("vrrp_script", 1, 1)),
    multi(block("vrrp_track_file", 1, 1)),
    // keepalived 2.1's name for vrrp_track_file.
    multi(block("track_file", 1, 1)),
    multi(block("vrrp_sync_group", 1, 1)),
    multi(block("vrrp_instance", 1, 1)),
    multi(block("virtual_server_group", 1, 1)),
    multi(block("virtual_server", 1, 2)),
    no("vrrp_track_process", TRACK_PROCESS),
    no(
        "track_group",
        "track groups (virtual_ipaddress … track_group) are not implemented",
    ),
    no("garp_group", "GARP groups are not implemented"),
    no(
        "interface_up_down_delays",
        "xlb reacts to every link change at once",
    ),
    no("bfd_instance", BFD),
    no(
        "SSL",
        "SSL_GET presents no client certificate and verifies no server certificate",
    ),
    no(
        "net_namespace",
        "xlb runs in the namespace it is started in",
    ),
    no(
        "net_namespace_ipvs",
        "xlb programs the kernel's IPVS of the namespace it runs in",
    ),
    ign(
        "namespace_with_ipsets",
        "names keepalived's ipsets inside net_namespace; xlb uses no ipsets",
    ),
    ign(
        "use_pid_dir",
        "places keepalived's pid files; xlb's is [agent] pid_file or --pid-file",
    ),
    ign(
        "instance",
        "names keepalived's pid and dump files; xlb's are set by --pid-file and its pin path",
    ),
    ign(
        "child_wait_time",
        "keepalived's child processes; xlb has none",
    ),
    ign(
        "linkbeat_use_polling",
        "how keepalived watches links; xlb always uses netlink events",
    ),
    ign(
        "linkbeat_interfaces",
        "how keepalived watches links; xlb always uses netlink events",
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
    leaf("vrrp_min_garp", 0, 1),
    leaf("notify_fifo", 1, 1),
    leaf("notify_fifo_script", 1, MANY),
    leaf("vrrp_notify_fifo", 1, 1),
    leaf("vrrp_notify_fifo_script", 1, MANY),
    leaf("lvs_notify_fifo", 1, 1),
    leaf("lvs_notify_fifo_script", 1, MANY),
    leaf("lvs_sync_daemon", 2, 12),
    leaf("lvs_timeouts", 2, 6),
    leaf("default_interface", 1, 1),
    flag("dynamic_interfaces"),
    flag("vrrp_strict"),
    flag("vrrp_check_unicast_src"),
    block("notification_email", 0, 0),
    leaf("notification_email_from", 1, 1),
    leaf("smtp_server", 1, 2),
    leaf("smtp_helo_name", 1, 1),
    leaf("smtp_connect_timeout", 1, 1),
    leaf("smtp_alert", 0, 1),
    leaf("smtp_alert_vrrp", 0, 1),
    leaf("smtp_alert_checker", 0, 1),
    // Issue 17 (the VRRP work) maps these.
    leaf("vrrp_priority", 1, 1),
    leaf("vrrp_rt_priority", 1, 1),
    flag("vrrp_no_swap"),
    leaf("vrrp_garp_lower_prio_delay", 1, 1),
    leaf("vrrp_garp_lower_prio_repeat", 1, 1),
    leaf("vrrp_lower_prio_no_advert", 0, 1),
    leaf("vrrp_higher_prio_send_advert", 0, 1),
    ign(
        "vrrp_skip_check_adv_addr",
        "an optimisation of keepalived's (skip re-checking a known master's addresses); xlb's check is cheap and gives the same outcome",
    ),
    no("email_faults", MAIL),
    no("no_email_faults", MAIL),
    no(
        "no_checker_emails",
        "xlb mails each checker's changes as keepalived does by default",
    ),
    no("enable_traps", SNMP),
    no("enable_snmp_vrrp", SNMP),
    no("enable_snmp_keepalived", SNMP),
    no("enable_snmp_checker", SNMP),
    no("enable_snmp_rfc", SNMP),
    no("enable_snmp_rfcv2", SNMP),
    no("enable_snmp_rfcv3", SNMP),
    no("snmp_socket", SNMP),
    no("enable_dbus", DBUS),
    no("enable_dbus_instance", DBUS),
    no("dbus_service_name", DBUS),
    no(
        "lvs_flush",
        "xlb starts its data plane empty and never flushes services it does not own",
    ),
    no(
        "lvs_flush_on_stop",
        "xlb removes exactly its own services at stop (none with --keep-dataplane)",
    ),
    no(
        "lvs_flush_onstop",
        "xlb removes exactly its own services at stop (none with --keep-dataplane)",
    ),
    no("vrrp_iptables", FIREWALL),
    no("vrrp_ipsets", FIREWALL),
    no("nftables", FIREWALL),
    no("vrrp_nftables", FIREWALL),
    no("nftables_priority", FIREWALL),
    no("nftables_ifindex", FIREWALL),
    no("nftables_counters", FIREWALL),
    ign(
        "nftables_ipvs",
        "marks virtual_server_group address ranges for keepalived's IPVS; xlb programs each group member itself",
    ),
    ign(
        "nftables_ipvs_priority",
        "marks virtual_server_group address ranges for keepalived's IPVS; xlb programs each group member itself",
    ),
    ign(
        "nftables_ipvs_start_fwmark",
        "marks virtual_server_group address ranges for keepalived's IPVS; xlb programs each group member itself",
    ),
    no(
        "startup_script",
        "run it from the service manager (systemd ExecStartPre=)",
    ),
    no(
        "startup_script_timeout",
        "run it from the service manager (systemd ExecStartPre=)",
    ),
    no(
        "shutdown_script",
        "run it from the service manager (systemd ExecStopPost=)",
    ),
    no(
        "shutdown_script_timeout",
        "run it from the service manager (systemd ExecStopPost=)",
    ),
    no(
        "disable_local_igmp",
        "xlb leaves the kernel's IGMP reports alone",
    ),
    no(
        "vrrp_down_timer_adverts",
        "xlb waits the RFC's three advert intervals",
    ),
    no("vrrp_garp_extra_if", GARP_EXTRA),
    no("vrrp_vmac_garp_intvl", GARP_EXTRA),
    no(
        "vrrp_notify_priority_changes",
        "xlb writes state changes to the FIFOs, not priority changes",
    ),
    no(
        "fifo_write_vrrp_states_on_reload",
        "xlb writes state changes to the FIFOs, not the states at reload",
    ),
    no(
        "rs_init_notifies",
        "xlb notifies changes only, not the initial states",
    ),
    no(
        "vrrp_startup_delay",
        "xlb starts its VRRP instances at once",
    ),
    no(
        "vmac_prefix",
        "VMAC interfaces are named by use_vmac (default vrrp.VRID)",
    ),
    no(
        "vmac_addr_prefix",
        "VMAC interfaces are named by use_vmac (default vrrp.VRID)",
    ),
    no(
        "reload_time_file",
        "reload with `xlb reload` (SIGHUP) when it is due",
    ),
    no(
        "reload_repeat",
        "reload with `xlb reload` (SIGHUP) when it is due",
    ),
    no(
        "reload_file",
        "xlb logs its reloads; it writes no marker file",
    ),
    ign("process_names", PROCESS),
    ign("process_name", PROCESS),
    ign("vrrp_process_name", PROCESS),
    ign("checker_process_name", PROCESS),
    ign("lvs_process_name", PROCESS),
    ign("bfd_process_name", PROCESS),
    ign("max_auto_priority", PROCESS),
    ign("min_auto_priority_delay", PROCESS),
    ign("vrrp_cpu_affinity", PROCESS),
    ign("vrrp_rlimit_rttime", PROCESS),
    ign("vrrp_rlimit_rtime", PROCESS),
    ign("checker_priority", PROCESS),
    ign("checker_no_swap", PROCESS),
    ign("checker_rt_priority", PROCESS),
    ign("checker_cpu_affinity", PROCESS),
    ign("checker_rlimit_rttime", PROCESS),
    ign("checker_rlimit_rtime", PROCESS),
    ign("bfd_priority", PROCESS),
    ign("bfd_no_swap", PROCESS),
    ign("bfd_rt_priority", PROCESS),
    ign("bfd_cpu_affinity", PROCESS),
    ign("bfd_rlimit_rttime", PROCESS),
    ign("bfd_rlimit_rtime", PROCESS),
    ign("vrrp_netlink_cmd_rcv_bufs", BUFFERS),
    ign("vrrp_netlink_cmd_rcv_bufs_force", BUFFERS),
    ign("vrrp_netlink_monitor_rcv_bufs", BUFFERS),
    ign("vrrp_netlink_monitor_rcv_bufs_force", BUFFERS),
    ign("process_monitor_rcv_bufs", BUFFERS),
    ign("process_monitor_rcv_bufs_force", BUFFERS),
    ign("lvs_netlink_cmd_rcv_bufs", BUFFERS),
    ign("lvs_netlink_cmd_rcv_bufs_force", BUFFERS),
    ign("lvs_netlink_monitor_rcv_bufs", BUFFERS),
    ign("lvs_netlink_monitor_rcv_bufs_force", BUFFERS),
    ign(
        "vrrp_rx_bufs_policy",
        "sizes keepalived's VRRP sockets; xlb sizes its own",
    ),
    ign(
        "vrrp_rx_bufs_multiplier",
        "sizes keepalived's VRRP sockets; xlb sizes its own",
    ),
    ign("checker_log_all_failures", LOGGING),
    ign(
        "log_unknown_vrids",
        "a logging choice; xlb counts adverts for unknown VRIDs in its metrics",
    ),
    ign(
        "umask",
        "the mode of keepalived's files; xlb creates its files with fixed modes",
    ),
    ign(
        "random_seed",
        "seeds keepalived's random numbers (for its tests)",
    ),
    ign(
        "reload_check_config",
        "xlb always validates a reload completely before applying any of it",
    ),
    ign(
        "include_check",
        "xlb always reports an include that cannot be read",
    ),
    ign(
        "config_save_dir",
        "where keepalived keeps copies of its configuration",
    ),
    ign(
        "tmp_config_directory",
        "where keepalived keeps copies of its configuration",
    ),
    ign(
        "data_use_instance",
        "names keepalived's dump files; xlb's are [agent] state_dump and stats_dump",
    ),
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
    no("track_process", TRACK_PROCESS),
    no("track_bfd", BFD),
];

const NOTIFY: &[Kw] = &[
    leaf("notify_master", 1, MANY),
    leaf("notify_backup", 1, MANY),
    leaf("notify_fault", 1, MANY),
    leaf("notify_stop", 1, MANY),
    leaf("notify", 1, MANY),
    leaf("smtp_alert", 0, 1),
    no(
        "notify_priority_changes",
        "xlb notifies state changes, not priority changes",
    ),
];

const SYNC_GROUP: &[Kw] = &[
    block("group", 0, 0),
    no(
        "global_tracking",
        "deprecated in keepalived; list the tracks in the sync group",
    ),
    no("sync_group_tracking_weight", NOT_YET),
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
    leaf("strict_mode", 0, 1),
    block("authentication", 0, 0),
    leaf("mcast_src_ip", 1, 1),
    leaf("unicast_src_ip", 1, 1),
    block("unicast_peer", 0, 0),
    flag("check_unicast_src"),
    block("virtual_ipaddress", 0, 0),
    block("virtual_ipaddress_excluded", 0, 0),
    block("virtual_routes", 0, 0),
    block("virtual_rules", 0, 0),
    leaf("use_vmac", 0, 1),
    flag("vmac_xmit_base"),
    leaf("garp_master_delay", 1, 1),
    leaf("garp_master_repeat", 1, 1),
    leaf("garp_master_refresh", 1, 1),
    leaf("garp_master_refresh_repeat", 1, 1),
    leaf("garp_interval", 1, 1),
    leaf("gna_interval", 1, 1),
    leaf("lvs_sync_daemon_interface", 1, 1),
    // Issue 17 (the VRRP work) maps these.
    leaf("garp_lower_prio_delay", 1, 1),
    leaf("garp_lower_prio_repeat", 1, 1),
    leaf("lower_prio_no_advert", 0, 1),
    leaf("higher_prio_send_advert", 0, 1),
    ign(
        "skip_check_adv_addr",
        "an optimisation of keepalived's (skip re-checking a known master's addresses); xlb's check is cheap and gives the same outcome",
    ),
    ign("debug", "per-instance debug levels; use --log-level"),
    ign(
        "linkbeat_use_polling",
        "how keepalived watches links; xlb always uses netlink events",
    ),
    ign(
        "kernel_rx_buf_size",
        "sizes keepalived's VRRP socket; xlb sizes its own",
    ),
    no(
        "dont_track_primary",
        "xlb always puts an instance in Fault when its interface goes down",
    ),
    no(
        "native_ipv6",
        "xlb takes the family from the instance's addresses",
    ),
    no(
        "use_vmac_addr",
        "xlb sends from the VMAC interface only (use_vmac)",
    ),
    no(
        "use_ipvlan",
        "ipvlan interfaces are not implemented; use use_vmac",
    ),
    no("vrf", "VRFs are not implemented"),
    no(
        "unicast_fault_no_peer",
        "xlb refuses a unicast instance without peers instead",
    ),
    no(
        "old_unicast_checksum",
        "xlb computes VRRPv3 checksums as the RFC says",
    ),
    no(
        "mcast_dst_ip",
        "xlb sends to the global vrrp_mcast_group4 / vrrp_mcast_group6",
    ),
    no(
        "track_src_ip",
        "xlb does not track the source address of adverts",
    ),
    no(
        "unicast_ttl",
        "xlb sends unicast adverts with TTL 255, keepalived's default",
    ),
    no(
        "promote_secondaries",
        "xlb does not change the interface's sysctl; set net.ipv4.conf.IF.promote_secondaries=1 yourself",
    ),
    no(
        "notify_deleted",
        "xlb notifies a removed instance as stopped (notify_stop)",
    ),
    no("notify_master_rx_lower_pri", NOT_YET),
    no(
        "down_timer_adverts",
        "xlb waits the RFC's three advert intervals",
    ),
    no("garp_extra_if", GARP_EXTRA),
    no("vmac_garp_intvl", GARP_EXTRA),
];

const AUTH: &[Kw] = &[leaf("auth_type", 1, 1), leaf("auth_pass", 1, 1)];

/// Checker settings a virtual or real server gives its checkers.
const CHECK_DEFAULTS: &[Kw] = &[
    leaf("delay_loop", 1, 1),
    leaf("retry", 1, 1),
    leaf("delay_before_retry", 1, 1),
    leaf("connect_timeout", 1, 1),
    leaf("warmup", 1, 1),
    flag("alpha"),
    flag("inhibit_on_failure"),
    leaf("virtualhost", 1, 1),
    leaf("smtp_alert", 0, 1),
    ign("snmp_name", SNMP_NAME),
];

const VIRTUAL_SERVER: &[Kw] = &[
    leaf("lb_algo", 1, 1),
    leaf("lvs_sched", 1, 1),
    leaf("lb_kind", 1, MANY),
    leaf("lvs_method", 1, MANY),
    leaf("persistence_timeout", 0, 1),
    leaf("persistence_granularity", 1, 1),
    leaf("protocol", 1, 1),
    flag("ha_suspend"),
    flag("omega"),
    leaf("quorum", 1, 1),
    leaf("hysteresis", 1, 1),
    leaf("quorum_up", 1, MANY),
    leaf("quorum_down", 1, MANY),
    leaf("weight", 1, 1),
    leaf("sorry_server", 1, 2),
    flag("sorry_server_inhibit"),
    leaf("sorry_server_lvs_method", 1, MANY),
    multi(block("real_server", 1, 2)),
    flag("sh-port"),
    flag("sh-fallback"),
    flag("mh-port"),
    flag("mh-fallback"),
    flag("flag-1"),
    flag("flag-2"),
    leaf("ip_family", 1, 1),
    ign(
        "flag-3",
        "IPVS's third scheduler flag, which no scheduler reads",
    ),
    ign(
        "hashed",
        "keepalived 2.2.7 sets no flag for it (use sh-port / mh-port)",
    ),
    no("ops", "one-packet scheduling is not implemented"),
    no(
        "persistence_engine",
        "persistence engines (SIP) are not implemented",
    ),
    no("nat_mask", "obsolete: keepalived ignores it too"),
];

const REAL_SERVER: &[Kw] = &[
    leaf("weight", 1, 1),
    leaf("lvs_method", 1, MANY),
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
    no("BFD_CHECK", BFD),
    no(
        "FILE_CHECK",
        "file checks are not implemented; use MISC_CHECK",
    ),
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
    flag("alpha"),
    ign("log_all_failures", LOGGING),
    no("bind_if", "bind the checker with bindto instead"),
];

const HTTP: &[Kw] = &[
    multi(block("url", 0, 0)),
    leaf("virtualhost", 1, 1),
    leaf("http_protocol", 1, 1),
    no("fast_recovery", NOT_YET),
];

const URL: &[Kw] = &[
    leaf("path", 1, 1),
    leaf("digest", 1, 1),
    leaf("status_code", 1, MANY),
    leaf("virtualhost", 1, 1),
    no("regex", REGEX),
    no("regex_no_match", REGEX),
    no("regex_options", REGEX),
    no("regex_min_offset", REGEX),
    no("regex_max_offset", REGEX),
    no("regex_stack", REGEX),
];

const UDP: &[Kw] = &[
    leaf("payload", 1, 1),
    leaf("require_reply", 0, 1),
    no("min_reply_length", "not implemented; use require_reply"),
    no("max_reply_length", "not implemented; use require_reply"),
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
    flag("alpha"),
    ign("log_all_failures", LOGGING),
];
