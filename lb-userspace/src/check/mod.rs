//! Health checkers (keepalived's TCP_CHECK, HTTP_GET, SSL_GET, SMTP_CHECK,
//! DNS_CHECK, UDP_CHECK, PING_CHECK, MISC_CHECK): one module per kind, each
//! an async `probe` that tries a real server once; [`runner`] schedules the
//! probes and reports verdict changes to the agent, [`lifecycle`] runs the
//! notify scripts and writes the notify FIFO.

pub mod board;
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

use crate::{
    config::check::{Check, CheckCommon, CheckKind},
    vocab::{Health, RealKey},
};
use socket2::SockRef;
use std::{
    io,
    net::{IpAddr, SocketAddr},
};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// What the checkers tell the agent: their verdict on a real changed.
#[derive(Debug)]
pub struct Verdict {
    pub key: RealKey,
    pub health: Health,
}

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

#[cfg(test)]
mod tests {
    //! Every network probe against small servers on loopback, up and broken.
    use super::*;
    use crate::config::check::{CheckCommon, DnsType};
    use std::time::Duration;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, UdpSocket},
    };

    fn target(addr: SocketAddr) -> Target {
        Target {
            addr,
            bind: None,
            fwmark: None,
        }
    }

    fn check(kind: CheckKind) -> Check {
        Check {
            kind,
            common: CheckCommon {
                connect_ip: None,
                connect_port: None,
                bindto: None,
                bind_port: None,
                connect_timeout: Duration::from_millis(300),
                retry: 1,
                delay_before_retry: Duration::ZERO,
                delay_loop: Duration::from_secs(1),
                warmup: Duration::ZERO,
                alpha: false,
                fwmark: None,
                smtp_alert: None,
            },
        }
    }

    async fn run(kind: CheckKind, addr: SocketAddr) -> Probe {
        let c = check(kind);
        tokio::time::timeout(
            Duration::from_secs(5),
            probe(&c, &target(addr), &Env::default()),
        )
        .await
        .expect("probe bounded")
    }

    /// A port nothing listens on (bound, then closed).
    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    /// Serves one SMTP dialogue with `greeting` as the banner.
    async fn smtp_server(greeting: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(greeting.as_bytes()).await.unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HELO "), "{:?}", &buf[..n]);
            s.write_all(b"250-hi\r\n250 OK\r\n").await.unwrap();
            let _ = s.read(&mut buf).await;
        });
        addr
    }

    #[tokio::test]
    async fn tcp_and_smtp() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(
            run(CheckKind::Tcp, l.local_addr().unwrap()).await,
            Probe::pass()
        );
        assert!(matches!(
            run(CheckKind::Tcp, closed_port().await).await,
            Probe::Fail(_)
        ));
        let smtp = CheckKind::Smtp {
            helo_name: Some("lb1".into()),
        };
        let ok = smtp_server("220 mail ESMTP\r\n").await;
        assert_eq!(run(smtp.clone(), ok).await, Probe::pass());
        let busy = smtp_server("554 go away\r\n").await;
        assert!(matches!(run(smtp, busy).await, Probe::Fail(_)));
    }

    /// Answers each DNS query with NOERROR and `answers` records (header only).
    async fn dns_server(answers: u8) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80;
            reply[7] = answers;
            s.send_to(&reply, from).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn dns() {
        let kind = CheckKind::Dns {
            qtype: DnsType::A,
            name: "example.com".into(),
        };
        assert_eq!(run(kind.clone(), dns_server(1).await).await, Probe::pass());
        assert!(matches!(
            run(kind.clone(), dns_server(0).await).await,
            Probe::Fail(_)
        ));
        // Nothing answers: the caller's bound ends it (here the test's own).
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let c = check(kind);
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            probe(&c, &target(silent.local_addr().unwrap()), &Env::default()),
        )
        .await;
        assert!(r.is_err(), "waits for an answer");
    }

    #[tokio::test]
    async fn udp() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..3 {
                let (n, from) = echo.recv_from(&mut buf).await.unwrap();
                echo.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let want = |prefix: Option<&[u8]>| CheckKind::Udp {
            payload: b"ping".to_vec(),
            require_reply: prefix.map(<[u8]>::to_vec),
        };
        assert_eq!(run(want(Some(b"pi")), addr).await, Probe::pass());
        assert!(matches!(
            run(want(Some(b"pong")), addr).await,
            Probe::Fail(_)
        ));
        assert_eq!(run(want(None), addr).await, Probe::pass());
        // Port unreachable (ICMP) fails even without require_reply.
        let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        assert!(matches!(run(want(None), gone).await, Probe::Fail(_)));
        // A silent port passes without require_reply, fails with it.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let quiet = silent.local_addr().unwrap();
        assert_eq!(run(want(None), quiet).await, Probe::pass());
        assert!(matches!(run(want(Some(b"")), quiet).await, Probe::Fail(_)));
    }

    #[tokio::test]
    async fn ping_loopback() {
        // Raw ICMP sockets need CAP_NET_RAW, as the agent has.
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        assert_eq!(
            run(CheckKind::Ping, "127.0.0.1:0".parse().unwrap()).await,
            Probe::pass()
        );
        assert_eq!(
            run(CheckKind::Ping, "[::1]:0".parse().unwrap()).await,
            Probe::pass()
        );
        // (No failing case here: that would need traffic beyond loopback;
        // replies are matched in `ping::tests`.)
    }
}
