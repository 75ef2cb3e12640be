//! The subject and body of every alert, worded as keepalived words them
//! (keepalived's `smtp.c`, `vrrp_notify.c`, `ipwrapper.c` and checkers), so
//! that mail filters written for keepalived keep working.

use crate::{
    config::check::CheckKind,
    vocab::{RealKey, service_text, trio},
};

/// One alert, before it is addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// The VRRP states an alert is sent for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VrrpState {
    Master,
    Backup,
    Fault,
    /// The instance or group stopped (agent shutdown).
    Stop,
}

impl VrrpState {
    /// The subject's tail.
    fn entering(self) -> &'static str {
        match self {
            VrrpState::Master => "Entering MASTER state",
            VrrpState::Backup => "Entering BACKUP state",
            VrrpState::Fault => "Entering FAULT state",
            VrrpState::Stop => "Stopping",
        }
    }
}

/// `[router] VRRP Instance NAME - Entering MASTER state` and its body.
pub fn vrrp_instance(router_id: &str, name: &str, state: VrrpState) -> Message {
    let body = match state {
        VrrpState::Master => "=> VRRP Instance is now owning VRRP VIPs <=",
        VrrpState::Backup | VrrpState::Fault => "=> VRRP Instance is no longer owning VRRP VIPs <=",
        VrrpState::Stop => "=> VRRP Instance stopping <=",
    };
    Message {
        subject: format!("[{router_id}] VRRP Instance {name} - {}", state.entering()),
        body: body.to_string(),
    }
}

/// `[router] VRRP Group NAME - Entering MASTER state` and its body.
pub fn vrrp_group(router_id: &str, name: &str, state: VrrpState) -> Message {
    let body = match state {
        VrrpState::Master => "=> All VRRP group instances are now in MASTER state <=",
        VrrpState::Backup => "=> All VRRP group instances are now in BACKUP state <=",
        VrrpState::Fault => "=> All VRRP group instances are now in FAULT state <=",
        VrrpState::Stop => "=> All VRRP group instances are now stopping <=",
    };
    Message {
        subject: format!("[{router_id}] VRRP Group {name} - {}", state.entering()),
        body: body.to_string(),
    }
}

fn up_down(up: bool) -> &'static str {
    if up { "UP" } else { "DOWN" }
}

/// `[router] Realserver [ip]:tcp:port of virtual server [vip]:tcp:port - UP`:
/// the subject names the real's state, the body what the checker saw.
pub fn real(router_id: &str, key: &RealKey, real_up: bool, body: String) -> Message {
    let protocol = key
        .service
        .addr()
        .map_or("tcp".to_string(), |(_, _, p)| p.to_string().to_lowercase());
    Message {
        subject: format!(
            "[{router_id}] Realserver {} of virtual server {} - {}",
            trio(key.address, &protocol, key.port),
            service_text(key.service),
            up_down(real_up)
        ),
        body,
    }
}

/// What a checker of `kind` reports when it passes (`up`) or fails; `why`
/// is the failure an SMTP check names.
pub fn check_body(kind: &CheckKind, up: bool, why: Option<&str>) -> String {
    let (name, failed) = match kind {
        CheckKind::Tcp => ("TCP CHECK", None),
        CheckKind::Http(_) => ("CHECK", Some("HTTP request failed".to_string())),
        CheckKind::Smtp { .. } => ("CHECK", why.map(str::to_string)),
        CheckKind::Dns { .. } => ("DNS_CHECK:", None),
        CheckKind::Udp { .. } => ("UDP CHECK", None),
        CheckKind::Ping => ("ICMP CHECK", None),
        CheckKind::Misc { .. } => ("MISC CHECK", None),
    };
    match (up, failed) {
        (true, _) => format!("=> {name} succeed on service <="),
        (false, None) => format!("=> {name} failed on service <="),
        (false, Some(reason)) => format!("=> {name} failed on service : {reason} <="),
    }
}

/// A real that was up, taken down because the agent stops (`omega`).
pub fn real_shutdown(router_id: &str, key: &RealKey) -> Message {
    real(router_id, key, false, "=> Shutting down <=".to_string())
}

/// The numbers behind a quorum change, as keepalived prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub quorum: u32,
    pub hysteresis: u32,
    /// The threshold that was crossed: quorum + hysteresis going up,
    /// quorum − hysteresis going down.
    pub threshold: u64,
    /// Sum of the up reals' weights now.
    pub weight_sum: u64,
}

/// `[router] Virtualserver [vip]:tcp:port - UP` with
/// `=> Gained quorum 1+0=1 <= 2 <=` (or `Lost quorum`).
pub fn quorum(router_id: &str, key: &crate::config::ServiceId, up: bool, q: Quorum) -> Message {
    let what = if up { "Gained quorum" } else { "Lost quorum" };
    Message {
        subject: virtual_server_subject(router_id, key, up),
        body: format!(
            "=> {what} {}+{}={} <= {} <=",
            q.quorum, q.hysteresis, q.threshold, q.weight_sum
        ),
    }
}

/// A service that had its quorum, down because the agent stops (`omega`).
pub fn quorum_shutdown(router_id: &str, key: &crate::config::ServiceId) -> Message {
    Message {
        subject: virtual_server_subject(router_id, key, false),
        body: "=> Shutting down <=".to_string(),
    }
}

fn virtual_server_subject(router_id: &str, key: &crate::config::ServiceId, up: bool) -> String {
    format!(
        "[{router_id}] Virtualserver {} - {}",
        service_text(*key),
        up_down(up)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Command, Protocol, ServiceId,
        check::{DnsType, HttpCheck, HttpProtocol},
    };
    use std::time::Duration;

    fn service() -> ServiceId {
        ServiceId::Addr {
            vip: "10.0.0.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn key() -> RealKey {
        RealKey {
            service: service(),
            address: "10.0.0.2".parse().unwrap(),
            port: 80,
        }
    }

    #[test]
    fn vrrp_instance_subjects_and_bodies() {
        let m = vrrp_instance("lb1", "VI_1", VrrpState::Master);
        assert_eq!(
            m.subject,
            "[lb1] VRRP Instance VI_1 - Entering MASTER state"
        );
        assert_eq!(m.body, "=> VRRP Instance is now owning VRRP VIPs <=");
        let m = vrrp_instance("lb1", "VI_1", VrrpState::Backup);
        assert_eq!(
            m.subject,
            "[lb1] VRRP Instance VI_1 - Entering BACKUP state"
        );
        assert_eq!(m.body, "=> VRRP Instance is no longer owning VRRP VIPs <=");
        let m = vrrp_instance("lb1", "VI_1", VrrpState::Fault);
        assert_eq!(m.subject, "[lb1] VRRP Instance VI_1 - Entering FAULT state");
        assert_eq!(m.body, "=> VRRP Instance is no longer owning VRRP VIPs <=");
        let m = vrrp_instance("lb1", "VI_1", VrrpState::Stop);
        assert_eq!(m.subject, "[lb1] VRRP Instance VI_1 - Stopping");
        assert_eq!(m.body, "=> VRRP Instance stopping <=");
    }

    #[test]
    fn vrrp_group_subjects_and_bodies() {
        let cases = [
            (
                VrrpState::Master,
                "[lb1] VRRP Group VG_1 - Entering MASTER state",
                "=> All VRRP group instances are now in MASTER state <=",
            ),
            (
                VrrpState::Backup,
                "[lb1] VRRP Group VG_1 - Entering BACKUP state",
                "=> All VRRP group instances are now in BACKUP state <=",
            ),
            (
                VrrpState::Fault,
                "[lb1] VRRP Group VG_1 - Entering FAULT state",
                "=> All VRRP group instances are now in FAULT state <=",
            ),
            (
                VrrpState::Stop,
                "[lb1] VRRP Group VG_1 - Stopping",
                "=> All VRRP group instances are now stopping <=",
            ),
        ];
        for (state, subject, body) in cases {
            let m = vrrp_group("lb1", "VG_1", state);
            assert_eq!((m.subject.as_str(), m.body.as_str()), (subject, body));
        }
    }

    #[test]
    fn real_server_subjects_name_the_real_the_service_and_the_state() {
        let m = real(
            "lb1",
            &key(),
            false,
            check_body(&CheckKind::Tcp, false, None),
        );
        assert_eq!(
            m.subject,
            "[lb1] Realserver [10.0.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - DOWN"
        );
        assert_eq!(m.body, "=> TCP CHECK failed on service <=");
        let v6 = RealKey {
            service: ServiceId::Addr {
                vip: "2001:db8::1".parse().unwrap(),
                port: 53,
                protocol: Protocol::Udp,
            },
            address: "2001:db8::2".parse().unwrap(),
            port: 5353,
        };
        let m = real("lb1", &v6, true, String::new());
        assert_eq!(
            m.subject,
            "[lb1] Realserver [2001:db8::2]:udp:5353 of virtual server [2001:db8::1]:udp:53 - UP"
        );
        let m = real_shutdown("lb1", &key());
        assert!(m.subject.ends_with(" - DOWN"));
        assert_eq!(m.body, "=> Shutting down <=");
    }

    #[test]
    fn checker_bodies_as_each_keepalived_checker_words_them() {
        let http = CheckKind::Http(HttpCheck {
            tls: false,
            urls: vec![],
            virtualhost: None,
            sni: false,
            protocol: HttpProtocol::Http10,
        });
        let misc = CheckKind::Misc {
            path: Command(vec!["/bin/true".into()]),
            timeout: Duration::from_secs(1),
            dynamic: false,
            user: None,
        };
        let dns = CheckKind::Dns {
            qtype: DnsType::Soa,
            name: ".".into(),
        };
        let udp = CheckKind::Udp {
            payload: vec![],
            require_reply: None,
        };
        let smtp = CheckKind::Smtp { helo_name: None };
        let cases: [(&CheckKind, &str, &str); 7] = [
            (
                &CheckKind::Tcp,
                "=> TCP CHECK succeed on service <=",
                "=> TCP CHECK failed on service <=",
            ),
            (
                &http,
                "=> CHECK succeed on service <=",
                "=> CHECK failed on service : HTTP request failed <=",
            ),
            (
                &smtp,
                "=> CHECK succeed on service <=",
                "=> CHECK failed on service : bad greeting <=",
            ),
            (
                &dns,
                "=> DNS_CHECK: succeed on service <=",
                "=> DNS_CHECK: failed on service <=",
            ),
            (
                &udp,
                "=> UDP CHECK succeed on service <=",
                "=> UDP CHECK failed on service <=",
            ),
            (
                &CheckKind::Ping,
                "=> ICMP CHECK succeed on service <=",
                "=> ICMP CHECK failed on service <=",
            ),
            (
                &misc,
                "=> MISC CHECK succeed on service <=",
                "=> MISC CHECK failed on service <=",
            ),
        ];
        for (kind, up, down) in cases {
            assert_eq!(check_body(kind, true, Some("bad greeting")), up);
            assert_eq!(check_body(kind, false, Some("bad greeting")), down);
        }
        assert_eq!(
            check_body(&smtp, false, None),
            "=> CHECK failed on service <="
        );
    }

    #[test]
    fn quorum_subjects_and_bodies() {
        let q = Quorum {
            quorum: 2,
            hysteresis: 1,
            threshold: 3,
            weight_sum: 3,
        };
        let m = quorum("lb1", &service(), true, q);
        assert_eq!(m.subject, "[lb1] Virtualserver [10.0.0.1]:tcp:80 - UP");
        assert_eq!(m.body, "=> Gained quorum 2+1=3 <= 3 <=");
        let q = Quorum {
            threshold: 1,
            weight_sum: 0,
            ..q
        };
        let m = quorum("lb1", &service(), false, q);
        assert_eq!(m.subject, "[lb1] Virtualserver [10.0.0.1]:tcp:80 - DOWN");
        assert_eq!(m.body, "=> Lost quorum 2+1=1 <= 0 <=");
        let fwm = ServiceId::Fwmark {
            mark: 7,
            ipv6: false,
        };
        let m = quorum_shutdown("lb1", &fwm);
        assert_eq!(m.subject, "[lb1] Virtualserver FWM 7 - DOWN");
        assert_eq!(m.body, "=> Shutting down <=");
    }
}
