//! `global_defs`.

use super::Ctx;
use crate::keepalived::{keywords::Area, tree::Node};
use crate::{
    Command, Timeouts,
    global::{Fifo, Global, SyncDaemon},
};
use lb_common::conn;
use std::{net::IpAddr, path::PathBuf, time::Duration};

/// Settings of `global_defs` that shape other blocks rather than `Global`.
#[derive(Default)]
pub struct Extra {
    /// `default_interface`: the device of static addresses that name none.
    pub default_interface: Option<String>,
    /// `vrrp_strict`: RFC-strict instances (no unicast, no_accept, addresses required).
    pub strict: bool,
    /// `vrrp_check_unicast_src`: the instances' default.
    pub check_unicast_src: bool,
    /// `lvs_timeouts`.
    pub timeouts: Option<Timeouts>,
    /// `dynamic_interfaces`: interfaces may be missing when the file is read.
    pub dynamic_interfaces: bool,
}

const GARP_MAX: f64 = 3600.0;

pub fn map(cx: &mut Ctx, n: &Node, g: &mut Global) -> Extra {
    let mut extra = Extra::default();
    let mut fifo_scripts: Vec<(&str, Command, &Node)> = Vec::new();
    let mut interval: Option<(Duration, &Node)> = None;
    let (mut lower_prio_repeat, mut lower_prio_delay) = (None, None);
    let selected = cx.select(Area::Global, n.children());
    for k in &selected {
        let a = || &k.args[0];
        match k.name() {
            "router_id" | "lvs_id" => g.router_id = Some(a().text.clone()),
            "script_user" => g.script_user = Some(cx.user(k)),
            "enable_script_security" => g.enable_script_security = true,
            "vrrp_version" => {
                if let Some(v) = cx.uint(a(), "vrrp_version", 2..=3) {
                    g.vrrp_version = v as u8;
                }
            }
            "vrrp_mcast_group4" => match a().text.parse() {
                Ok(IpAddr::V4(m)) if m.is_multicast() => g.vrrp_mcast_group4 = m,
                _ => cx.diag.error(&a().pos, format!("invalid value '{}' for 'vrrp_mcast_group4' (expected an IPv4 multicast address)", a().text)),
            },
            "vrrp_mcast_group6" => match a().text.parse() {
                Ok(IpAddr::V6(m)) if m.is_multicast() => g.vrrp_mcast_group6 = m,
                _ => cx.diag.error(&a().pos, format!("invalid value '{}' for 'vrrp_mcast_group6' (expected an IPv6 multicast address)", a().text)),
            },
            "vrrp_garp_master_delay" => {
                if let Some(d) = cx.secs(a(), k.name(), GARP_MAX) {
                    g.garp.master_delay = d;
                }
            }
            "vrrp_garp_master_repeat" => {
                if let Some(v) = cx.uint(a(), k.name(), 1..=255) {
                    g.garp.master_repeat = v;
                }
            }
            "vrrp_garp_master_refresh" => {
                if let Some(d) = cx.secs(a(), k.name(), GARP_MAX) {
                    g.garp.master_refresh = (!d.is_zero()).then_some(d);
                }
            }
            "vrrp_garp_master_refresh_repeat" => {
                if let Some(v) = cx.uint(a(), k.name(), 1..=255) {
                    g.garp.master_refresh_repeat = v;
                }
            }
            // keepalived: one GARP per transition, no second burst, no
            // refresh, for whatever is still at its default so far.
            "vrrp_min_garp" if cx.boolean(k) == Some(true) => {
                let d = crate::vrrp::Garp::default();
                if g.garp.master_repeat == d.master_repeat {
                    g.garp.master_repeat = 1;
                }
                if g.garp.master_delay == d.master_delay {
                    g.garp.master_delay = Duration::ZERO;
                }
            }
            "dynamic_interfaces" => extra.dynamic_interfaces = true,
            "vrrp_priority" => {
                if let Some(v) = cx.int(a(), k.name(), -20..=19) {
                    g.vrrp_process.nice = Some(v as i8);
                }
            }
            "vrrp_rt_priority" => {
                if let Some(v) = cx.uint(a(), k.name(), 1..=99) {
                    g.vrrp_process.rt_priority = Some(v as u8);
                }
            }
            "vrrp_no_swap" => g.vrrp_process.no_swap = true,
            "vrrp_garp_lower_prio_delay" => {
                if let Some(d) = cx.secs(a(), k.name(), GARP_MAX) {
                    lower_prio_delay = Some(d);
                }
            }
            "vrrp_garp_lower_prio_repeat" => {
                if let Some(v) = cx.uint(a(), k.name(), 0..=i32::MAX as u32) {
                    lower_prio_repeat = Some(v);
                }
            }
            "vrrp_lower_prio_no_advert" => {
                if let Some(b) = cx.boolean(k) {
                    g.lower_prio_no_advert = b;
                }
            }
            "vrrp_higher_prio_send_advert" => {
                if let Some(b) = cx.boolean(k) {
                    g.higher_prio_send_advert = b;
                }
            }
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                if let Some(d) = cx.secs(a(), k.name(), 1.0) {
                    match interval {
                        Some((prev, p)) if prev != d => cx.diag.error(
                            k.pos(),
                            format!(
                                "xlb has one pause for gratuitous ARP and unsolicited NA; '{}' at line {} set another value",
                                p.name(),
                                p.pos().line
                            ),
                        ),
                        _ => {
                            g.garp.interval = d;
                            interval = Some((d, k));
                        }
                    }
                }
            }
            "notify_fifo" | "vrrp_notify_fifo" | "lvs_notify_fifo" => {
                let fifo = Some(Fifo {
                    path: PathBuf::from(&a().text),
                    script: None,
                });
                match k.name() {
                    "notify_fifo" => g.notify_fifo = fifo,
                    "vrrp_notify_fifo" => g.vrrp_notify_fifo = fifo,
                    _ => g.lvs_notify_fifo = fifo,
                }
            }
            "notify_fifo_script" | "vrrp_notify_fifo_script" | "lvs_notify_fifo_script" => {
                if let Some(c) = cx.command(k) {
                    fifo_scripts.push((k.name().trim_end_matches("_script"), c, k));
                }
            }
            "lvs_sync_daemon" => g.lvs_sync_daemon = sync_daemon(cx, k),
            "lvs_timeouts" => extra.timeouts = timeouts(cx, k),
            "default_interface" => extra.default_interface = Some(a().text.clone()),
            "vrrp_strict" => extra.strict = true,
            "vrrp_check_unicast_src" => extra.check_unicast_src = true,
            "notification_email" => {
                for l in k.children() {
                    if let Some(extra) = l.args.first() {
                        cx.diag.error(
                            &extra.pos,
                            "one e-mail address per line in notification_email",
                        );
                    } else if let Some(m) = cx.recipient(&l.kw) {
                        g.notification_email.push(m);
                    }
                }
            }
            "notification_email_from" => {
                g.notification_email_from = cx.mailbox(a(), "notification_email_from");
            }
            "smtp_server" => {
                let port = match k.args.get(1) {
                    Some(p) => cx.port(p, "smtp_server"),
                    None => Some(25),
                };
                g.smtp_server = port.map(|p| (a().text.clone(), p));
            }
            "smtp_helo_name" => g.smtp_helo_name = Some(a().text.clone()),
            "smtp_connect_timeout" => {
                if let Some(d) = cx.secs(a(), k.name(), 3600.0) {
                    g.smtp_connect_timeout = d;
                }
            }
            "smtp_alert" => g.smtp_alert = cx.boolean(k),
            "smtp_alert_vrrp" => g.smtp_alert_vrrp = cx.boolean(k),
            "smtp_alert_checker" => g.smtp_alert_checker = cx.boolean(k),
            _ => {}
        }
    }
    // keepalived (vrrp.c): unset, the lower-priority burst is the master
    // burst's. (Strict mode's resets are per instance: map/vrrp.rs derive.)
    g.garp.lower_prio_repeat = lower_prio_repeat.unwrap_or(g.garp.master_repeat);
    g.garp.lower_prio_delay = lower_prio_delay.unwrap_or(g.garp.master_delay);
    for (fifo, script, k) in fifo_scripts {
        let slot = match fifo {
            "notify_fifo" => &mut g.notify_fifo,
            "vrrp_notify_fifo" => &mut g.vrrp_notify_fifo,
            _ => &mut g.lvs_notify_fifo,
        };
        match slot {
            Some(f) => f.script = Some(script),
            None => cx.diag.error(
                k.pos(),
                format!("'{}' needs '{fifo}' (the FIFO it reads)", k.name()),
            ),
        }
    }
    extra
}

/// `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`.
fn sync_daemon(cx: &mut Ctx, k: &Node) -> Option<SyncDaemon> {
    let mut d = SyncDaemon {
        interface: k.args[0].text.clone(),
        instance: k.args[1].text.clone(),
        id: 0,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
    };
    let rest = &k.args[2..];
    for pair in rest.chunks(2) {
        let [key, v] = pair else {
            cx.diag
                .error(&pair[0].pos, format!("'{}' needs a value", pair[0].text));
            return None;
        };
        match key.text.as_str() {
            "id" => d.id = cx.uint(v, "id", 0..=255)? as u8,
            "maxlen" => d.maxlen = Some(cx.uint(v, "maxlen", 1..=65507)? as u16),
            "port" => d.port = Some(cx.port(v, "port")?),
            "ttl" => d.ttl = Some(cx.uint(v, "ttl", 1..=255)? as u8),
            "group" => d.group = Some(cx.ip(v, "group")?),
            _ => {
                let hint =
                    crate::hint::closest(&key.text, ["id", "maxlen", "port", "ttl", "group"])
                        .map(|h| format!(" (did you mean '{h}'?)"))
                        .unwrap_or_default();
                cx.diag.error(
                    &key.pos,
                    format!("unknown keyword '{}' in lvs_sync_daemon{hint}", key.text),
                );
                return None;
            }
        }
    }
    Some(d)
}

/// `lvs_timeouts [tcp N] [tcpfin N] [udp N]`.
fn timeouts(cx: &mut Ctx, k: &Node) -> Option<Timeouts> {
    let mut t = Timeouts {
        tcp: conn::DEFAULT_TCP_S,
        tcp_fin: conn::DEFAULT_TCP_FIN_S,
        udp: conn::DEFAULT_UDP_S,
    };
    const MONTH: u32 = 31 * 24 * 3600;
    for pair in k.args.chunks(2) {
        let [key, v] = pair else {
            cx.diag
                .error(&pair[0].pos, format!("'{}' needs a value", pair[0].text));
            return None;
        };
        match key.text.as_str() {
            "tcp" => t.tcp = cx.uint(v, "tcp", 1..=MONTH)?,
            "tcpfin" => t.tcp_fin = cx.uint(v, "tcpfin", 1..=MONTH)?,
            "udp" => t.udp = cx.uint(v, "udp", 1..=MONTH)?,
            _ => {
                let hint = crate::hint::closest(&key.text, ["tcp", "tcpfin", "udp"])
                    .map(|h| format!(" (did you mean '{h}'?)"))
                    .unwrap_or_default();
                cx.diag.error(
                    &key.pos,
                    format!("unknown keyword '{}' in lvs_timeouts{hint}", key.text),
                );
                return None;
            }
        }
    }
    Some(t)
}
