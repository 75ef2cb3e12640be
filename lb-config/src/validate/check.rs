//! Validation of health checks and the real-server / service lifecycle keys.

use super::Validator;
use crate::{
    Command, ScriptSite,
    check::{
        Check, CheckCommon, CheckKind, DnsType, HttpCheck, HttpProtocol, RealLifecycle,
        ServiceLifecycle, SorryServer, Url,
    },
    defaults,
    raw::{
        self,
        check::{CommandText, Reply, Seconds, StatusCode},
    },
};
use std::{ops::Range, time::Duration};
use toml::Spanned;

/// Longest interval or timeout accepted (a day).
const MAX_SECONDS: f64 = 86_400.0;

/// Check types and the type-specific keys each accepts.
const TYPES: [(&str, &[&str]); 8] = [
    ("tcp", &[]),
    ("http", &["url", "virtualhost", "http_protocol"]),
    (
        "ssl",
        &["url", "virtualhost", "http_protocol", "enable_sni"],
    ),
    ("smtp", &["helo_name"]),
    ("dns", &["dns_type", "dns_name"]),
    ("udp", &["payload", "require_reply"]),
    ("ping", &[]),
    (
        "misc",
        &["misc_path", "misc_timeout", "misc_dynamic", "user"],
    ),
];

impl Validator<'_> {
    /// Seconds as a [`Duration`]; `positive`: zero is refused too.
    pub(super) fn seconds(
        &mut self,
        v: &Spanned<Seconds>,
        what: &str,
        positive: bool,
    ) -> Option<Duration> {
        let s = match v.get_ref() {
            Seconds::Whole(n) => *n as f64,
            Seconds::Fraction(f) => *f,
        };
        if !s.is_finite() || !(0.0..=MAX_SECONDS).contains(&s) || (positive && s == 0.0) {
            let least = if positive { "above 0" } else { "0 or more" };
            self.error(
                v.span(),
                format!("`{what}` must be a number of seconds {least} and at most {MAX_SECONDS}"),
            );
            return None;
        }
        Some(Duration::from_secs_f64(s))
    }

    fn seconds_or(
        &mut self,
        v: &Option<Spanned<Seconds>>,
        what: &str,
        positive: bool,
        default: Duration,
    ) -> Duration {
        v.as_ref()
            .and_then(|v| self.seconds(v, what, positive))
            .unwrap_or(default)
    }

    pub(super) fn command(&mut self, v: &Spanned<CommandText>, what: &str) -> Option<Command> {
        let words = match v.get_ref() {
            CommandText::Argv(a) => Some(a.clone()),
            CommandText::Line(l) => shell_words::split(l).ok(),
        };
        match words {
            Some(w) if w.first().is_some_and(|p| !p.is_empty()) => {
                let (line, col) = self.position(v.span().start);
                self.scripts.push(ScriptSite {
                    command: Command(w.clone()),
                    file: self.file.to_string(),
                    line,
                    col,
                });
                Some(Command(w))
            }
            Some(_) => {
                self.error(v.span(), format!("`{what}` names no program"));
                None
            }
            None => {
                self.error(v.span(), format!("`{what}` has unbalanced quotes"));
                None
            }
        }
    }

    fn flag(v: &Option<Spanned<bool>>) -> bool {
        v.as_ref().is_some_and(|b| *b.get_ref())
    }

    /// The checker settings and lifecycle keys of a `[[service]]`.
    pub(super) fn service_lifecycle(
        &mut self,
        raw: &raw::Service,
        port: Option<u16>,
    ) -> ServiceLifecycle {
        let d = ServiceLifecycle::default();
        let delay_loop = self.seconds_or(&raw.delay_loop, "delay_loop", true, d.delay_loop);
        // keepalived lowers a quorum the reals cannot reach, down to 0 (always up).
        let quorum = self.number(&raw.quorum, d.quorum, 0..=i64::from(u32::MAX));
        let hysteresis = self.number(&raw.hysteresis, d.hysteresis, 0..=i64::from(u32::MAX));
        if let Some(h) = &raw.hysteresis
            && hysteresis >= quorum.max(1)
        {
            self.error(
                h.span(),
                format!("hysteresis {hysteresis} must be below quorum {quorum}"),
            );
        }
        let quorum_up = raw
            .quorum_up
            .as_ref()
            .and_then(|c| self.command(c, "quorum_up"));
        let quorum_down = raw
            .quorum_down
            .as_ref()
            .and_then(|c| self.command(c, "quorum_down"));
        let sorry_server = raw.sorry_server.as_ref().and_then(|s| {
            let r = s.get_ref();
            let address = self.address(&r.address, "sorry server address")?;
            let port = match &r.port {
                Some(p) => self.port(p)?,
                None => port?,
            };
            Some(SorryServer {
                address,
                port,
                inhibit: Self::flag(&r.inhibit),
            })
        });
        ServiceLifecycle {
            delay_loop,
            omega: Self::flag(&raw.omega),
            quorum,
            hysteresis,
            quorum_up,
            quorum_down,
            sorry_server,
            ha_suspend: Self::flag(&raw.ha_suspend),
            virtualhost: raw.virtualhost.as_ref().map(|v| v.get_ref().clone()),
            smtp_alert: raw.smtp_alert.as_ref().map(|b| *b.get_ref()),
        }
    }

    /// The lifecycle keys and checks of a `[[service.real]]`; `alpha`: the
    /// service's, the default of the real's.
    pub(super) fn real_lifecycle(
        &mut self,
        raw: &raw::Real,
        service: &ServiceLifecycle,
        alpha: bool,
    ) -> RealLifecycle {
        let alpha = raw.alpha.as_ref().map_or(alpha, |a| *a.get_ref());
        let checks = raw
            .checks
            .iter()
            .filter_map(|c| self.check(c.get_ref(), c.span(), service, alpha))
            .collect();
        RealLifecycle {
            checks,
            inhibit_on_failure: Self::flag(&raw.inhibit_on_failure),
            notify_up: raw
                .notify_up
                .as_ref()
                .and_then(|c| self.command(c, "notify_up")),
            notify_down: raw
                .notify_down
                .as_ref()
                .and_then(|c| self.command(c, "notify_down")),
            smtp_alert: raw.smtp_alert.as_ref().map(|b| *b.get_ref()),
        }
    }

    fn check(
        &mut self,
        raw: &raw::check::Check,
        span: Range<usize>,
        service: &ServiceLifecycle,
        alpha: bool,
    ) -> Option<Check> {
        let before = self.errors.len();
        let kind_name = raw.kind.get_ref().as_str();
        let Some((_, allowed)) = TYPES.iter().find(|(n, _)| *n == kind_name) else {
            let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
            self.error(
                raw.kind.span(),
                format!(
                    "unknown check type `{kind_name}`; expected one of {}",
                    names.join(", ")
                ),
            );
            return None;
        };
        for (key, span) in specific_keys(raw) {
            if !allowed.contains(&key) {
                let owners: Vec<&str> = TYPES
                    .iter()
                    .filter(|(_, keys)| keys.contains(&key))
                    .map(|(n, _)| *n)
                    .collect();
                self.error(
                    span,
                    format!(
                        "`{key}` does not apply to a `{kind_name}` check (only to {})",
                        owners.join(", ")
                    ),
                );
            }
        }
        let delay_loop = self.seconds_or(&raw.delay_loop, "delay_loop", true, service.delay_loop);
        let kind = match kind_name {
            "tcp" => CheckKind::Tcp,
            "http" | "ssl" => CheckKind::Http(self.http(raw, kind_name == "ssl", span)),
            "smtp" => CheckKind::Smtp {
                helo_name: raw.helo_name.as_ref().map(|h| h.get_ref().clone()),
            },
            "dns" => self.dns(raw),
            "udp" => CheckKind::Udp {
                payload: raw
                    .payload
                    .as_ref()
                    .and_then(|p| self.hex(p, "payload"))
                    .unwrap_or_default(),
                require_reply: match raw.require_reply.as_ref() {
                    None => None,
                    Some(r) => match r.get_ref() {
                        Reply::Any(true) => Some(Vec::new()),
                        Reply::Any(false) => None,
                        Reply::Prefix(p) => {
                            let s = Spanned::new(r.span(), p.clone());
                            self.hex(&s, "require_reply")
                        }
                    },
                },
            },
            "ping" => CheckKind::Ping,
            _ => {
                let Some(path) = raw.misc_path.as_ref() else {
                    self.error(span, "a `misc` check needs `misc_path`");
                    return None;
                };
                CheckKind::Misc {
                    path: self.command(path, "misc_path")?,
                    timeout: self.seconds_or(
                        &raw.misc_timeout,
                        "misc_timeout",
                        true,
                        defaults::misc_timeout(service.delay_loop),
                    ),
                    dynamic: Self::flag(&raw.misc_dynamic),
                    user: raw.user.as_ref().map(|u| u.get_ref().clone()),
                }
            }
        };
        let common = self.check_common(raw, &kind, delay_loop, alpha);
        (self.errors.len() == before).then_some(Check { kind, common })
    }

    /// The keys every check has; what is left out takes keepalived's
    /// default for the check's type (`config::defaults`).
    fn check_common(
        &mut self,
        raw: &raw::check::Check,
        kind: &CheckKind,
        delay_loop: Duration,
        alpha: bool,
    ) -> CheckCommon {
        let connect_ip = raw
            .connect_ip
            .as_ref()
            .and_then(|a| self.address(a, "connect_ip"));
        let connect_port = raw.connect_port.as_ref().and_then(|p| self.port(p));
        let bindto = raw.bindto.as_ref().and_then(|a| self.address(a, "bindto"));
        let bind_port = raw.bind_port.as_ref().and_then(|p| {
            // 0 lets the kernel choose, as when the key is absent.
            (*p.get_ref() != 0).then(|| self.port(p)).flatten()
        });
        let fwmark = raw
            .fwmark
            .as_ref()
            .map(|_| self.number(&raw.fwmark, 0, 0..=i64::from(u32::MAX)));
        CheckCommon {
            connect_ip,
            connect_port,
            bindto,
            bind_port,
            connect_timeout: self.seconds_or(
                &raw.connect_timeout,
                "connect_timeout",
                true,
                defaults::CONNECT_TIMEOUT,
            ),
            retry: self.number(&raw.retry, defaults::retry(kind), 0..=i64::from(u32::MAX)),
            delay_before_retry: self.seconds_or(
                &raw.delay_before_retry,
                "delay_before_retry",
                false,
                defaults::delay_before_retry(kind, delay_loop),
            ),
            delay_loop,
            warmup: self.seconds_or(&raw.warmup, "warmup", false, defaults::warmup(delay_loop)),
            alpha: raw.alpha.as_ref().map_or(alpha, |a| *a.get_ref()),
            fwmark,
            smtp_alert: raw.smtp_alert.as_ref().map(|b| *b.get_ref()),
        }
    }

    fn http(&mut self, raw: &raw::check::Check, tls: bool, span: Range<usize>) -> HttpCheck {
        let mut urls = Vec::new();
        match raw.url.as_ref() {
            Some(list) if !list.get_ref().is_empty() => {
                for u in list.get_ref() {
                    if let Some(url) = self.url(u.get_ref()) {
                        urls.push(url);
                    }
                }
            }
            Some(list) => self.error(list.span(), "`url` lists no url"),
            None => self.error(span, "an http or ssl check needs `url`"),
        }
        let protocol = match raw.http_protocol.as_ref() {
            None => HttpProtocol::Http10,
            Some(p) => HttpProtocol::from_name(p.get_ref()).unwrap_or_else(|| {
                self.error(
                    p.span(),
                    format!(
                        "unknown http_protocol `{}`; expected \"1.0\", \"1.0C\" or \"1.1\"",
                        p.get_ref()
                    ),
                );
                HttpProtocol::Http10
            }),
        };
        HttpCheck {
            tls,
            urls,
            virtualhost: raw.virtualhost.as_ref().map(|v| v.get_ref().clone()),
            sni: Self::flag(&raw.enable_sni),
            protocol,
        }
    }

    fn url(&mut self, raw: &raw::check::Url) -> Option<Url> {
        let path = raw.path.get_ref();
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.error(
                raw.path.span(),
                format!("url path `{path}` must start with `/` and hold no spaces"),
            );
        }
        let mut status_codes = Vec::new();
        for c in raw.status_code.iter().flat_map(|l| l.get_ref()) {
            let range = match c.get_ref() {
                StatusCode::Code(n) => Some((*n, *n)),
                StatusCode::Range(r) => r
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?))),
            };
            match range {
                Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                    status_codes.push((lo as u16, hi as u16));
                }
                _ => self.error(
                    c.span(),
                    "a status code is a number 100–599 or a range \"LOW-HIGH\" within it",
                ),
            }
        }
        let digest = raw.digest.as_ref().and_then(|d| {
            let bytes = self.hex(d, "digest")?;
            match <[u8; 16]>::try_from(bytes) {
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(d.span(), "`digest` must be an MD5 digest: 32 hex digits");
                    None
                }
            }
        });
        Some(Url {
            path: path.clone(),
            status_codes,
            digest,
            virtualhost: raw.virtualhost.as_ref().map(|v| v.get_ref().clone()),
        })
    }

    fn dns(&mut self, raw: &raw::check::Check) -> CheckKind {
        let qtype = match raw.dns_type.as_ref() {
            None => DnsType::default(),
            Some(t) => DnsType::from_name(t.get_ref()).unwrap_or_else(|| {
                self.error(
                    t.span(),
                    format!(
                        "unknown dns_type `{}`; expected A, NS, CNAME, SOA, MX, TXT or AAAA",
                        t.get_ref().to_ascii_uppercase()
                    ),
                );
                DnsType::default()
            }),
        };
        let name = match raw.dns_name.as_ref() {
            None => ".".to_string(),
            Some(n) => {
                let s = n.get_ref();
                let labels_ok = s == "."
                    || s.trim_end_matches('.')
                        .split('.')
                        .all(|l| !l.is_empty() && l.len() <= 63);
                if !labels_ok || s.len() > 253 {
                    self.error(n.span(), format!("`{s}` is not a DNS name"));
                }
                s.clone()
            }
        };
        CheckKind::Dns { qtype, name }
    }

    fn hex(&mut self, s: &Spanned<String>, what: &str) -> Option<Vec<u8>> {
        let text = s.get_ref();
        let bytes: Option<Vec<u8>> = text
            .len()
            .is_multiple_of(2)
            .then(|| {
                (0..text.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .flatten();
        if bytes.is_none() {
            self.error(
                s.span(),
                format!("`{what}` must be hex digits, two per byte"),
            );
        }
        bytes
    }
}

/// The type-specific keys present in a check, with their positions.
fn specific_keys(raw: &raw::check::Check) -> Vec<(&'static str, Range<usize>)> {
    let mut keys = Vec::new();
    let mut add = |name: &'static str, span: Option<Range<usize>>| {
        if let Some(s) = span {
            keys.push((name, s));
        }
    };
    add("url", raw.url.as_ref().map(|v| v.span()));
    add("virtualhost", raw.virtualhost.as_ref().map(|v| v.span()));
    add("enable_sni", raw.enable_sni.as_ref().map(|v| v.span()));
    add(
        "http_protocol",
        raw.http_protocol.as_ref().map(|v| v.span()),
    );
    add("helo_name", raw.helo_name.as_ref().map(|v| v.span()));
    add("dns_type", raw.dns_type.as_ref().map(|v| v.span()));
    add("dns_name", raw.dns_name.as_ref().map(|v| v.span()));
    add("payload", raw.payload.as_ref().map(|v| v.span()));
    add(
        "require_reply",
        raw.require_reply.as_ref().map(|v| v.span()),
    );
    add("misc_path", raw.misc_path.as_ref().map(|v| v.span()));
    add("misc_timeout", raw.misc_timeout.as_ref().map(|v| v.span()));
    add("misc_dynamic", raw.misc_dynamic.as_ref().map(|v| v.span()));
    add("user", raw.user.as_ref().map(|v| v.span()));
    keys
}

#[cfg(test)]
mod tests {
    use crate::{
        Command, Config,
        check::{CheckKind, DnsType, HttpProtocol},
        parse,
    };
    use std::time::Duration;

    const HEAD: &str =
        "[dataplane]\ninterfaces = [\"eth0\"]\n[[service]]\nvip = \"10.0.0.1\"\nport = 80\n";

    fn config(service: &str, real: &str, check: &str) -> String {
        format!(
            "{HEAD}{service}\n[[service.real]]\naddress = \"10.1.0.1\"\n{real}\n[[service.real.check]]\n{check}\n"
        )
    }

    fn ok(text: &str) -> Config {
        parse("c.toml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        parse("c.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn full_http_check_and_lifecycle() {
        let c = ok(&config(
            "delay_loop = 2\nalpha = true\nquorum = 2\nhysteresis = 1\nquorum_up = \"/bin/q 'up now'\"\nquorum_down = [\"/bin/q\", \"down\"]\nsorry_server = { address = \"10.1.0.99\" }\nvirtualhost = \"www\"",
            "inhibit_on_failure = true\nnotify_down = [\"/bin/rs\", \"down\"]",
            "type = \"http\"\nretry = 3\nconnect_timeout = 0.5\nurl = [{ path = \"/h\", status_code = [200, \"300-304\"], digest = \"b1946ac92492d2347c6235b4d2611184\" }]\nhttp_protocol = \"1.1\"",
        ));
        let svc = &c.services[0];
        let l = &svc.lifecycle;
        assert_eq!(l.delay_loop, Duration::from_secs(2));
        assert_eq!((l.quorum, l.hysteresis), (2, 1));
        assert_eq!(
            l.quorum_up,
            Some(Command(vec!["/bin/q".into(), "up now".into()]))
        );
        let sorry = l.sorry_server.unwrap();
        assert_eq!(
            (sorry.address.to_string(), sorry.port),
            ("10.1.0.99".into(), 80)
        );
        let real = &svc.reals[0].lifecycle;
        assert!(real.inhibit_on_failure);
        let check = &real.checks[0];
        assert_eq!(check.common.retry, 3);
        assert_eq!(check.common.connect_timeout, Duration::from_millis(500));
        assert_eq!(
            check.common.delay_loop,
            Duration::from_secs(2),
            "the service's"
        );
        assert!(check.common.alpha, "the service's");
        // keepalived's defaults for HTTP_GET: 3 s between retries, warmup = delay_loop.
        assert_eq!(check.common.delay_before_retry, Duration::from_secs(3));
        assert_eq!(check.common.warmup, Duration::from_secs(2));
        let CheckKind::Http(h) = &check.kind else {
            panic!("{check:?}")
        };
        assert_eq!(h.protocol, HttpProtocol::Http11);
        assert_eq!(h.urls[0].status_codes, vec![(200, 200), (300, 304)]);
        assert_eq!(h.urls[0].digest.unwrap()[..2], [0xb1, 0x94]);
    }

    #[test]
    fn other_check_types() {
        let c = ok(&config(
            "",
            "",
            "type = \"misc\"\nmisc_path = \"/bin/check x\"\nmisc_dynamic = true\ndelay_loop = 3",
        ));
        let CheckKind::Misc {
            path,
            timeout,
            dynamic,
            ..
        } = &c.services[0].reals[0].lifecycle.checks[0].kind
        else {
            panic!()
        };
        assert_eq!(path.0, vec!["/bin/check", "x"]);
        assert_eq!(
            *timeout,
            Duration::from_secs(60),
            "misc_timeout defaults to the service's delay_loop (check_misc.c), not the check's"
        );
        assert!(dynamic);
        let c = ok(&config(
            "",
            "",
            "type = \"dns\"\ndns_type = \"a\"\ndns_name = \"example.com\"",
        ));
        assert_eq!(
            c.services[0].reals[0].lifecycle.checks[0].kind,
            CheckKind::Dns {
                qtype: DnsType::A,
                name: "example.com".into()
            }
        );
        let c = ok(&config(
            "",
            "",
            "type = \"udp\"\npayload = \"6869\"\nrequire_reply = true",
        ));
        assert_eq!(
            c.services[0].reals[0].lifecycle.checks[0].kind,
            CheckKind::Udp {
                payload: b"hi".to_vec(),
                require_reply: Some(vec![])
            }
        );
    }

    #[test]
    fn errors_name_the_position() {
        // The check's keys start on line 10 (after HEAD, the service and real lines).
        let e = err(&config("", "", "type = \"tcp\"\ndigest = \"00\""));
        assert!(e.starts_with("c.toml:12:1: "), "{e}");
        let e = err(&config("", "", "type = \"tcp\"\nurl = [{ path = \"/\" }]"));
        assert!(
            e.contains("c.toml:12:7: `url` does not apply to a `tcp` check (only to http, ssl)"),
            "{e}"
        );
        let e = err(&config(
            "",
            "",
            "type = \"http\"\nurl = [{ path = \"/\", digest = \"zz\" }]",
        ));
        assert!(
            e.contains("c.toml:12:31: `digest` must be hex digits"),
            "{e}"
        );
        let e = err(&config(
            "",
            "",
            "type = \"http\"\nurl = [{ path = \"/\", digest = \"00ff\" }]",
        ));
        assert!(
            e.contains("c.toml:12:31: `digest` must be an MD5 digest"),
            "{e}"
        );
        let e = err(&config(
            "",
            "",
            "type = \"http\"\nurl = [{ path = \"/\", status_code = [\"300-200\"] }]",
        ));
        assert!(e.contains("c.toml:12:37: a status code is"), "{e}");
        let e = err(&config(
            "",
            "",
            "type = \"http\"\nurl = [{ path = \"/\", status_code = [99] }]",
        ));
        assert!(e.contains("c.toml:12:37: a status code is"), "{e}");
        let e = err(&config("", "", "type = \"icmp\""));
        assert!(e.contains("c.toml:11:8: unknown check type `icmp`"), "{e}");
        let e = err(&config("", "", "type = \"misc\""));
        assert!(
            e.contains("c.toml:10:1: a `misc` check needs `misc_path`"),
            "{e}"
        );
        let e = err(&config("", "", "type = \"tcp\"\nconnect_timeout = -1"));
        assert!(e.contains("c.toml:12:19: `connect_timeout` must be"), "{e}");
        let e = err(&config("hysteresis = 1", "", "type = \"tcp\""));
        assert!(
            e.contains("c.toml:6:14: hysteresis 1 must be below quorum 1"),
            "{e}"
        );
        let e = err(&config("quorum_up = \"/bin/q 'x\"", "", "type = \"tcp\""));
        assert!(
            e.contains("c.toml:6:13: `quorum_up` has unbalanced quotes"),
            "{e}"
        );
        let e = err(&config("", "", "type = \"tcp\"\nfoo = 1"));
        assert!(e.contains("c.toml:12:1: unknown field `foo`"), "{e}");
    }
}
