//! Checkers inside `real_server`: TCP_CHECK, HTTP_GET, SSL_GET, SMTP_CHECK,
//! DNS_CHECK, UDP_CHECK, PING_CHECK, MISC_CHECK.

use super::Ctx;
use crate::config::check::{Check, CheckCommon, CheckKind, DnsType, HttpCheck, HttpProtocol, Url};
use crate::keepalived::{include::Token, keywords::Area, tree::Node};
use std::time::Duration;

const HOUR: f64 = 3600.0;

pub fn check(cx: &mut Ctx, n: &Node, delay_loop: Duration) -> Option<Check> {
    let area = match n.name() {
        "TCP_CHECK" => Area::TcpCheck,
        "HTTP_GET" => Area::HttpCheck,
        "SSL_GET" => Area::SslCheck,
        "SMTP_CHECK" => Area::SmtpCheck,
        "DNS_CHECK" => Area::DnsCheck,
        "UDP_CHECK" => Area::UdpCheck,
        "PING_CHECK" => Area::PingCheck,
        _ => Area::MiscCheck,
    };
    let errors = cx.diag.error_count();
    let mut c = CheckCommon {
        smtp_alert: None,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_port: None,
        connect_timeout: Duration::from_secs(5),
        retry: if area == Area::DnsCheck { 3 } else { 1 },
        delay_before_retry: Duration::from_secs(1),
        delay_loop,
        warmup: None,
        fwmark: None,
    };
    let mut http = HttpCheck {
        tls: area == Area::SslCheck,
        urls: Vec::new(),
        virtualhost: None,
        sni: false,
        protocol: HttpProtocol::Http10,
    };
    let mut helo_name = None;
    let (mut qtype, mut qname) = (DnsType::Soa, ".".to_string());
    let (mut payload, mut require_reply) = (Vec::new(), None);
    let (mut misc_path, mut misc_timeout, mut misc_dynamic, mut user) = (None, None, false, None);
    let mut retry_kw: Option<&str> = None;
    let mut misc_given = false;
    for k in cx.select(area, n.children()) {
        let a = || &k.args[0];
        match k.name() {
            "connect_ip" => c.connect_ip = cx.ip(a(), "connect_ip"),
            "connect_port" => c.connect_port = cx.port(a(), "connect_port"),
            "bindto" => c.bindto = cx.ip(a(), "bindto"),
            "bind_port" => c.bind_port = cx.port(a(), "bind_port"),
            "connect_timeout" => match cx.secs(a(), "connect_timeout", HOUR) {
                Some(d) if !d.is_zero() => c.connect_timeout = d,
                Some(_) => cx.diag.error(
                    &a().pos,
                    "invalid value '0' for 'connect_timeout' (expected seconds above 0)",
                ),
                None => {}
            },
            "retry" | "nb_get_retry" => {
                if let Some(prev) = retry_kw {
                    cx.diag.error(
                        k.pos(),
                        format!("'{}' repeats '{prev}' (the same setting)", k.name()),
                    );
                }
                retry_kw = Some(k.name());
                if let Some(v) = cx.uint(a(), k.name(), 1..=u32::MAX) {
                    c.retry = v;
                }
            }
            "delay_before_retry" => {
                if let Some(d) = cx.secs(a(), "delay_before_retry", HOUR) {
                    c.delay_before_retry = d;
                }
            }
            "delay_loop" => match cx.secs(a(), "delay_loop", 86400.0) {
                Some(d) if !d.is_zero() => c.delay_loop = d,
                Some(_) => cx.diag.error(
                    &a().pos,
                    "invalid value '0' for 'delay_loop' (expected seconds above 0)",
                ),
                None => {}
            },
            "warmup" => c.warmup = cx.secs(a(), "warmup", HOUR).filter(|d| !d.is_zero()),
            "fwmark" => c.fwmark = cx.uint(a(), "fwmark", 1..=u32::MAX),
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
            "misc_timeout" => misc_timeout = cx.secs(a(), "misc_timeout", HOUR),
            "misc_dynamic" => misc_dynamic = true,
            _ => user = Some(cx.user(k)), // user
        }
    }
    let kind = match area {
        Area::TcpCheck => CheckKind::Tcp,
        Area::HttpCheck | Area::SslCheck => {
            if http.urls.is_empty() {
                cx.diag.error(
                    n.pos(),
                    format!("{} needs at least one 'url {{ path … }}'", n.name()),
                );
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
                timeout: misc_timeout.unwrap_or(c.delay_loop),
                dynamic: misc_dynamic,
                user,
            },
            None => {
                if !misc_given {
                    cx.diag.error(n.pos(), "MISC_CHECK needs 'misc_path'");
                }
                return None;
            }
        },
    };
    (cx.diag.error_count() == errors).then_some(Check { kind, common: c })
}

fn url(cx: &mut Ctx, n: &Node) -> Option<Url> {
    let mut u = Url {
        path: String::new(),
        status_codes: Vec::new(),
        digest: None,
    };
    let mut has_path = false;
    for k in cx.select(Area::Url, n.children()) {
        match k.name() {
            "path" => {
                u.path = k.args[0].text.clone();
                has_path = true;
            }
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
