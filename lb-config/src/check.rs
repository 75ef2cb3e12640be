//! The health-check part of the model: checkers per real server and the
//! service-level lifecycle (quorum, sorry server, alpha/omega). Defaults are
//! keepalived's.

use super::Command;
use std::{net::IpAddr, time::Duration};

/// Options every checker shares (keepalived's common checker keywords).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckCommon {
    /// Default: the real server's address.
    pub connect_ip: Option<IpAddr>,
    /// Default: the real server's port.
    pub connect_port: Option<u16>,
    /// `bindto`: local source address.
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    /// Default 5 s; bounds the whole attempt (connect, exchange, close).
    pub connect_timeout: Duration,
    /// Retries of a failed attempt before the real is marked down (keepalived
    /// `retry`, old `nb_get_retry`; default per type, `defaults::retry`).
    /// The first attempt after start has none: it alone decides, as in keepalived.
    pub retry: u32,
    /// Pause between a failed attempt and the retry (`defaults::delay_before_retry`).
    pub delay_before_retry: Duration,
    /// Pause between checks (default: the real's, else the service's `delay_loop`).
    pub delay_loop: Duration,
    /// `warmup`: the first attempt waits a random time up to this (default
    /// `delay_loop`; 0: at once).
    pub warmup: Duration,
    /// `alpha`: the check starts failed, so its real starts down until it
    /// passes (default: the real's, else the service's `alpha`).
    pub alpha: bool,
    /// `fwmark`: mark set on the checker's packets (SO_MARK).
    pub fwmark: Option<u32>,
    /// `smtp_alert` for this checker's real-server alerts (an xlb extension;
    /// unset: the real's setting).
    pub smtp_alert: Option<bool>,
}

/// `url { path P; status_code C; digest D }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub path: String,
    /// Accepted status codes as inclusive ranges (`status_code 200-299 304`);
    /// empty: any 2xx.
    pub status_codes: Vec<(u16, u16)>,
    /// MD5 of the body, as keepalived's genhash prints it.
    pub digest: Option<[u8; 16]>,
    /// `virtualhost` of this url: its Host header, before the check's.
    pub virtualhost: Option<String>,
}

/// `http_protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpProtocol {
    #[default]
    Http10,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    Http10Close,
    Http11,
}

impl HttpProtocol {
    /// Every `http_protocol` with its name.
    const ALL: [(HttpProtocol, &'static str); 3] = [
        (HttpProtocol::Http10, "1.0"),
        (HttpProtocol::Http10Close, "1.0C"),
        (HttpProtocol::Http11, "1.1"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    pub fn from_name(name: &str) -> Option<HttpProtocol> {
        Self::ALL.iter().find(|e| e.1 == name).map(|e| e.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// `SSL_GET` (rustls) instead of `HTTP_GET`.
    pub tls: bool,
    pub urls: Vec<Url>,
    /// `virtualhost`: the Host header (default: the service's `virtualhost`, else the address).
    pub virtualhost: Option<String>,
    /// `enable_sni`: send the virtualhost as TLS SNI.
    pub sni: bool,
    pub protocol: HttpProtocol,
}

/// `DNS_CHECK` query type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsType {
    A,
    Ns,
    Cname,
    #[default]
    Soa,
    Mx,
    Txt,
    Aaaa,
}

impl DnsType {
    /// Every query type with its name and its DNS code.
    const ALL: [(DnsType, &'static str, u16); 7] = [
        (DnsType::A, "A", 1),
        (DnsType::Ns, "NS", 2),
        (DnsType::Cname, "CNAME", 5),
        (DnsType::Soa, "SOA", 6),
        (DnsType::Mx, "MX", 15),
        (DnsType::Txt, "TXT", 16),
        (DnsType::Aaaa, "AAAA", 28),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    /// The type on the wire (QTYPE).
    pub fn code(self) -> u16 {
        Self::ALL.iter().find(|e| e.0 == self).map_or(0, |e| e.2)
    }

    /// The type named `name`, in any case (keepalived accepts `a` and `A`).
    pub fn from_name(name: &str) -> Option<DnsType> {
        Self::ALL
            .iter()
            .find(|e| e.1.eq_ignore_ascii_case(name))
            .map(|e| e.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http(HttpCheck),
    /// `SMTP_CHECK`: banner, then HELO with this name (default: the host name).
    Smtp {
        helo_name: Option<String>,
    },
    Dns {
        qtype: DnsType,
        /// Default ".".
        name: String,
    },
    Udp {
        payload: Vec<u8>,
        /// `require_reply [HEX]`: `Some(empty)` needs any reply, `Some(bytes)` that prefix.
        require_reply: Option<Vec<u8>>,
    },
    /// ICMP / ICMPv6 echo.
    Ping,
    Misc {
        path: Command,
        /// Default: the check's `delay_loop`.
        timeout: Duration,
        /// `misc_dynamic`: exit code 2–255 sets weight = code − 2.
        dynamic: bool,
        /// `user USER [GROUP]` (default: `global_defs script_user`).
        user: Option<String>,
    },
}

impl CheckKind {
    /// keepalived.conf's name of the checker.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http(h) if h.tls => "SSL_GET",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Smtp { .. } => "SMTP_CHECK",
            CheckKind::Dns { .. } => "DNS_CHECK",
            CheckKind::Udp { .. } => "UDP_CHECK",
            CheckKind::Ping => "PING_CHECK",
            CheckKind::Misc { .. } => "MISC_CHECK",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub common: CheckCommon,
}

/// How a real server leaves and rejoins the pool, and what is said about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealLifecycle {
    /// Every checker must pass for the real to be up; none: always up.
    pub checks: Vec<Check>,
    /// `inhibit_on_failure`: keep a down real with weight 0 instead of removing it.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Command>,
    pub notify_down: Option<Command>,
    /// `smtp_alert`: email when a checker changes this real's state (unset:
    /// global `smtp_alert_checker`, else `smtp_alert`, else yes, as keepalived).
    pub smtp_alert: Option<bool>,
}

/// `sorry_server ADDR PORT`: takes traffic only while every real is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SorryServer {
    pub address: IpAddr,
    pub port: u16,
    /// `sorry_server_inhibit`: keep it with weight 0 instead of removing it.
    pub inhibit: bool,
}

/// Service-level checker settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLifecycle {
    /// `delay_loop` (default 60 s): checkers' default interval.
    pub delay_loop: Duration,
    /// `omega`: run `quorum_down` and notify_down for every real when the
    /// service is removed (reload or stop).
    pub omega: bool,
    /// `quorum` (default 1): sum of up reals' weights needed for the service to be up.
    pub quorum: u32,
    /// `hysteresis` (default 0): the service goes up at quorum + h, down below quorum − h.
    pub hysteresis: u32,
    pub quorum_up: Option<Command>,
    pub quorum_down: Option<Command>,
    pub sorry_server: Option<SorryServer>,
    /// `ha_suspend`: run checkers only while a VRRP instance owns the VIP.
    pub ha_suspend: bool,
    /// `virtualhost`: default Host header of HTTP checkers.
    pub virtualhost: Option<String>,
    /// `smtp_alert`: email on quorum changes (unset: global
    /// `smtp_alert_checker`, else `smtp_alert`, else no).
    pub smtp_alert: Option<bool>,
}
