//! Checkers inside `real_server`: TCP_CHECK, HTTP_GET, SSL_GET, SMTP_CHECK
//! (with its `host` sub-blocks), DNS_CHECK, UDP_CHECK, PING_CHECK,
//! MISC_CHECK. What a checker leaves unset it takes from its real server,
//! then its virtual server, then its type's default, as keepalived 2.2.7's
//! `validate_check_config` does.

use super::Ctx;
use crate::keepalived::{include::Token, keywords::Area, tree::Node};
use crate::{
    check::{Check, CheckCommon, CheckKind, DnsType, HttpCheck, HttpProtocol, Url},
    defaults,
};
use std::{net::IpAddr, time::Duration};

const HOUR: f64 = 3600.0;

/// What a real server (having taken what it lacks from its virtual
/// server) hands down to its checkers.
#[derive(Clone, Debug)]
pub struct Inherited {
    pub delay_loop: Duration,
    pub connect_timeout: Duration,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<Duration>,
    pub warmup: Option<Duration>,
    pub alpha: bool,
    /// The real's `virtualhost` (the service's is applied at run time).
    pub virtualhost: Option<String>,
    /// The virtual server's `delay_loop`: MISC_CHECK's `misc_timeout` default.
    pub vs_delay_loop: Duration,
}

/// Where a checker connects (one per SMTP_CHECK `host` block).
#[derive(Clone, Debug, Default)]
struct Conn {
    connect_ip: Option<IpAddr>,
    connect_port: Option<u16>,
    bindto: Option<IpAddr>,
    bind_port: Option<u16>,
    connect_timeout: Option<Duration>,
    fwmark: Option<u32>,
}

impl Conn {
    /// Any connection option set (keepalived then keeps the SMTP_CHECK's
    /// own connection beside its `host` blocks).
    fn any(&self) -> bool {
        self.connect_ip.is_some()
            || self.connect_port.is_some()
            || self.bindto.is_some()
            || self.bind_port.is_some()
            || self.connect_timeout.is_some()
            || self.fwmark.is_some()
    }
}

/// The checker's own timing settings, before inheritance.
#[derive(Default)]
struct Timing {
    retry: Option<u32>,
    retry_kw: Option<String>,
    delay_before_retry: Option<Duration>,
    delay_loop: Option<Duration>,
    warmup: Option<Duration>,
    alpha: bool,
}

/// One checker block: usually one check, several for SMTP_CHECK `host` blocks.
pub fn check(cx: &mut Ctx, n: &Node, inh: &Inherited) -> Vec<Check> {
    let Some(area) = Area::check(n.name()) else {
        return Vec::new();
    };
    let errors = cx.diag.error_count();
    let mut conn = Conn::default();
    let mut t = Timing::default();
    let mut http = HttpCheck {
        tls: area == Area::SslCheck,
        urls: Vec::new(),
        virtualhost: None,
        sni: false,
        protocol: HttpProtocol::Http10,
    };
    let mut helo_name = None;
    let mut hosts: Vec<Conn> = Vec::new();
    let (mut qtype, mut qname) = (DnsType::Soa, ".".to_string());
    let (mut payload, mut require_reply) = (Vec::new(), None);
    let (mut misc_path, mut misc_timeout, mut misc_dynamic, mut user) = (None, None, false, None);
    let mut misc_given = false;
    for k in &cx.select(area, n.children()) {
        if common(cx, k, &mut conn, &mut t) {
            continue;
        }
        let a = || &k.args[0];
        match k.name() {
            "url" => http.urls.extend(url(cx, k)),
            "virtualhost" => http.virtualhost = Some(a().text.clone()),
            "http_protocol" => match HttpProtocol::from_name(&a().text) {
                Some(p) => http.protocol = p,
                None => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for 'http_protocol' (expected 1.0, 1.0C or 1.1)",
                        a().text
                    ),
                ),
            },
            "enable_sni" => http.sni = true,
            "helo_name" => helo_name = Some(a().text.clone()),
            "host" => {
                let mut h = Conn::default();
                for hk in &cx.select(Area::SmtpHost, k.children()) {
                    common(cx, hk, &mut h, &mut t);
                }
                hosts.push(h);
            }
            "type" => {
                qtype = match DnsType::from_name(&a().text) {
                    Some(q) => q,
                    None => {
                        cx.diag.error(&a().pos, format!("invalid value '{}' for 'type' (expected A, NS, CNAME, SOA, MX, TXT or AAAA)", a().text));
                        qtype
                    }
                }
            }
            "name" => qname = a().text.clone(),
            "payload" => payload = hex(cx, a(), "payload").unwrap_or_default(),
            "require_reply" => {
                require_reply = Some(match k.args.first() {
                    Some(t) => hex(cx, t, "require_reply").unwrap_or_default(),
                    None => Vec::new(),
                })
            }
            "misc_path" => {
                misc_given = true;
                misc_path = cx.command(k);
            }
            "misc_timeout" => {
                // keepalived: 0 is "unset" (the virtual server's delay_loop).
                misc_timeout = cx.secs(a(), "misc_timeout", HOUR).filter(|d| !d.is_zero())
            }
            "misc_dynamic" => misc_dynamic = true,
            _ => user = Some(cx.user(k)), // user
        }
    }
    let delay_loop = t.delay_loop.unwrap_or(inh.delay_loop);
    let kind = match area {
        Area::TcpCheck => CheckKind::Tcp,
        Area::HttpCheck | Area::SslCheck => {
            if http.urls.is_empty() {
                cx.diag.error(
                    n.pos(),
                    format!("{} needs at least one 'url {{ path … }}'", n.name()),
                );
            }
            if http.virtualhost.is_none() {
                http.virtualhost = inh.virtualhost.clone();
            }
            CheckKind::Http(http)
        }
        Area::SmtpCheck => CheckKind::Smtp { helo_name },
        Area::DnsCheck => CheckKind::Dns { qtype, name: qname },
        Area::UdpCheck => CheckKind::Udp {
            payload,
            require_reply,
        },
        Area::PingCheck => CheckKind::Ping,
        _ => match misc_path {
            Some(path) => CheckKind::Misc {
                path,
                timeout: misc_timeout.unwrap_or(defaults::misc_timeout(inh.vs_delay_loop)),
                dynamic: misc_dynamic,
                user,
            },
            None => {
                if !misc_given {
                    cx.diag.error(n.pos(), "MISC_CHECK needs 'misc_path'");
                }
                return Vec::new();
            }
        },
    };
    if cx.diag.error_count() != errors {
        return Vec::new();
    }
    let retry = t.retry.or(inh.retry).unwrap_or(defaults::retry(&kind));
    let delay_before_retry = t
        .delay_before_retry
        .or(inh.delay_before_retry)
        .unwrap_or(defaults::delay_before_retry(&kind, delay_loop));
    let make = |c: &Conn| CheckCommon {
        connect_ip: c.connect_ip,
        connect_port: c.connect_port,
        bindto: c.bindto,
        bind_port: c.bind_port,
        connect_timeout: c.connect_timeout.unwrap_or(inh.connect_timeout),
        retry,
        delay_before_retry,
        delay_loop,
        warmup: t
            .warmup
            .or(inh.warmup)
            .unwrap_or(defaults::warmup(delay_loop)),
        alpha: t.alpha || inh.alpha,
        fwmark: c.fwmark,
        smtp_alert: None,
    };
    // keepalived makes each SMTP_CHECK `host` a checker of its own, and
    // keeps the block's own connection too when it sets one (or has no host).
    let mut conns: Vec<&Conn> = Vec::new();
    if conn.any() || hosts.is_empty() {
        conns.push(&conn);
    }
    conns.extend(&hosts);
    conns
        .into_iter()
        .map(|c| Check {
            kind: kind.clone(),
            common: make(c),
        })
        .collect()
}

/// A keyword every checker (and an SMTP `host` block) shares; false if `k` is another.
fn common(cx: &mut Ctx, k: &Node, conn: &mut Conn, t: &mut Timing) -> bool {
    let a = || &k.args[0];
    match k.name() {
        "connect_ip" => conn.connect_ip = cx.ip(a(), "connect_ip"),
        "connect_port" => conn.connect_port = cx.port(a(), "connect_port"),
        "bindto" => conn.bindto = cx.ip(a(), "bindto"),
        // 0 lets the kernel choose, as when the keyword is absent.
        "bind_port" => conn.bind_port = cx.port(a(), "bind_port").filter(|p| *p != 0),
        "connect_timeout" => conn.connect_timeout = timeout(cx, a(), "connect_timeout"),
        "fwmark" => conn.fwmark = cx.uint(a(), "fwmark", 1..=u32::MAX),
        "retry" | "nb_get_retry" => {
            if let Some(prev) = &t.retry_kw {
                cx.diag.error(
                    k.pos(),
                    format!("'{}' repeats '{prev}' (the same setting)", k.name()),
                );
            }
            t.retry_kw = Some(k.name().to_string());
            t.retry = cx.uint(a(), k.name(), 0..=u32::MAX).or(t.retry);
        }
        "delay_before_retry" => {
            t.delay_before_retry = cx
                .secs(a(), "delay_before_retry", HOUR)
                .or(t.delay_before_retry)
        }
        "delay_loop" => t.delay_loop = delay_loop(cx, a()).or(t.delay_loop),
        "warmup" => t.warmup = cx.secs(a(), "warmup", HOUR).or(t.warmup),
        "alpha" => t.alpha = true,
        _ => return false,
    }
    true
}

/// A `delay_loop`: seconds above 0.
pub fn delay_loop(cx: &mut Ctx, t: &Token) -> Option<Duration> {
    match cx.secs(t, "delay_loop", 86400.0) {
        Some(d) if !d.is_zero() => Some(d),
        Some(_) => {
            cx.diag.error(
                &t.pos,
                "invalid value '0' for 'delay_loop' (expected seconds above 0)",
            );
            None
        }
        None => None,
    }
}

/// A `connect_timeout`: seconds above 0.
pub fn timeout(cx: &mut Ctx, t: &Token, what: &str) -> Option<Duration> {
    match cx.secs(t, what, HOUR) {
        Some(d) if !d.is_zero() => Some(d),
        Some(_) => {
            cx.diag.error(
                &t.pos,
                format!("invalid value '0' for '{what}' (expected seconds above 0)"),
            );
            None
        }
        None => None,
    }
}

fn url(cx: &mut Ctx, n: &Node) -> Option<Url> {
    let mut u = Url {
        path: String::new(),
        status_codes: Vec::new(),
        digest: None,
        virtualhost: None,
    };
    let mut has_path = false;
    for k in &cx.select(Area::Url, n.children()) {
        match k.name() {
            "path" => {
                u.path = k.args[0].text.clone();
                has_path = true;
            }
            "virtualhost" => u.virtualhost = Some(k.args[0].text.clone()),
            "digest" => {
                let t = &k.args[0];
                match hex(cx, t, "digest").map(<[u8; 16]>::try_from) {
                    Some(Ok(d)) => u.digest = Some(d),
                    Some(Err(_)) => cx.diag.error(&t.pos, format!("invalid value '{}' for 'digest' (expected 32 hex digits, an MD5 sum as genhash prints it)", t.text)),
                    None => {}
                }
            }
            _ => {
                for t in &k.args {
                    let (lo, hi) = t.text.split_once('-').unwrap_or((&t.text, &t.text));
                    match (lo.parse::<u16>(), hi.parse::<u16>()) {
                        (Ok(l), Ok(h)) if (100..=599).contains(&l) && (l..=599).contains(&h) => u.status_codes.push((l, h)),
                        _ => cx.diag.error(&t.pos, format!("invalid value '{}' for 'status_code' (expected a code 100..=599 or a range such as 200-299)", t.text)),
                    }
                }
            }
        }
    }
    if !has_path {
        cx.diag.error(n.pos(), "'url' needs a 'path'");
        return None;
    }
    Some(u)
}

fn hex(cx: &mut Ctx, t: &Token, what: &str) -> Option<Vec<u8>> {
    let s = t.text.as_str();
    let ok = s.len().is_multiple_of(2) && s.chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        cx.diag.error(
            &t.pos,
            format!("invalid value '{s}' for '{what}' (expected hex digits, two per byte)"),
        );
        return None;
    }
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect(),
    )
}
