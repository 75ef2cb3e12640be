//! Health checkers (keepalived's TCP_CHECK, HTTP_GET, SSL_GET, SMTP_CHECK,
//! DNS_CHECK, UDP_CHECK, PING_CHECK, MISC_CHECK): one module per kind, each
//! an async `probe` that tries a real server once; [`runner`] schedules the
//! probes and reports verdict changes to the agent, [`lifecycle`] runs the
//! notify scripts and writes the notify FIFO.

pub mod dns;
pub mod fifo;
pub mod http;
pub mod lifecycle;
pub mod misc;
pub mod ping;
pub mod runner;
pub mod smtp;
pub mod tcp;
pub mod udp;

use crate::config::check::{Check, CheckCommon, CheckKind};
use socket2::SockRef;
use std::{
    io,
    net::{IpAddr, SocketAddr},
};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// What one attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Passed; `weight` is a MISC_CHECK `misc_dynamic` weight.
    Pass { weight: Option<u32> },
    /// Failed, with why (logged at debug).
    Fail(String),
}

impl Probe {
    pub fn pass() -> Probe {
        Probe::Pass { weight: None }
    }

    pub fn fail(why: impl std::fmt::Display) -> Probe {
        Probe::Fail(why.to_string())
    }
}

/// Where a check connects and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub bind: Option<SocketAddr>,
    pub fwmark: Option<u32>,
}

impl Target {
    /// The check's target for a real at `real`: `connect_ip`/`connect_port`
    /// override the real's address and port.
    pub fn of(common: &CheckCommon, real: SocketAddr) -> Target {
        let ip = common.connect_ip.unwrap_or(real.ip());
        let bind = match (common.bindto, common.bind_port) {
            (None, None) => None,
            (addr, port) => Some(SocketAddr::new(
                addr.unwrap_or(unspecified(ip)),
                port.unwrap_or(0),
            )),
        };
        Target {
            addr: SocketAddr::new(ip, common.connect_port.unwrap_or(real.port())),
            bind,
            fwmark: common.fwmark,
        }
    }

    /// A TCP connection with the check's source address and mark.
    pub async fn connect_tcp(&self) -> io::Result<TcpStream> {
        let sock = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(mark) = self.fwmark {
            SockRef::from(&sock).set_mark(mark)?;
        }
        if let Some(bind) = self.bind {
            sock.bind(bind)?;
        }
        sock.connect(self.addr).await
    }

    /// A UDP socket connected to the target, with the check's source and mark.
    pub async fn connect_udp(&self) -> io::Result<UdpSocket> {
        let local = self
            .bind
            .unwrap_or(SocketAddr::new(unspecified(self.addr.ip()), 0));
        let sock = UdpSocket::bind(local).await?;
        if let Some(mark) = self.fwmark {
            SockRef::from(&sock).set_mark(mark)?;
        }
        sock.connect(self.addr).await?;
        Ok(sock)
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Context a probe may need beside its target.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// The service's `virtualhost` (HTTP Host header default).
    pub virtualhost: Option<String>,
    /// `global script_user` (MISC_CHECK default user).
    pub script_user: Option<String>,
    /// `enable_script_security`.
    pub script_security: bool,
}

/// Whether a probe of this kind bounds its own wait (by the check's
/// `connect_timeout` or `misc_timeout`), so the caller only adds a margin.
pub fn self_bounded(kind: &CheckKind) -> bool {
    matches!(
        kind,
        CheckKind::Udp { .. } | CheckKind::Ping | CheckKind::Misc { .. }
    )
}

/// Tries `check` once against `target`. The caller bounds it with the
/// check's timeout (see [`self_bounded`]).
pub async fn probe(check: &Check, target: &Target, env: &Env) -> Probe {
    match &check.kind {
        CheckKind::Tcp => tcp::probe(target).await,
        CheckKind::Http(h) => http::probe(h, target, env).await,
        CheckKind::Smtp { helo_name } => smtp::probe(helo_name.as_deref(), target).await,
        CheckKind::Dns { qtype, name } => dns::probe(*qtype, name, target).await,
        CheckKind::Udp {
            payload,
            require_reply,
        } => {
            let wait = check.common.connect_timeout;
            udp::probe(payload, require_reply.as_deref(), target, wait).await
        }
        CheckKind::Ping => ping::probe(target, check.common.connect_timeout).await,
        CheckKind::Misc {
            path,
            timeout,
            dynamic,
            user,
        } => {
            let user = user.as_deref().or(env.script_user.as_deref());
            misc::probe(path, *timeout, *dynamic, user, env.script_security).await
        }
    }
}
