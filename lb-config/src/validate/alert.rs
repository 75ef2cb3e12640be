//! Validation of the alert keys of `[global]` (keepalived's
//! `notification_email`, `smtp_*` and `smtp_alert*`).

use super::Validator;
use crate::{
    global::Global,
    raw::{alert::SmtpServer, vrrp as rv},
};
use lettre::message::Mailbox;
use std::net::IpAddr;
use toml::Spanned;

/// keepalived's default SMTP port.
const SMTP_PORT: u16 = 25;

impl Validator<'_> {
    /// Fills `global`'s alert settings from `[global]`.
    pub(super) fn global_alerts(&mut self, r: &rv::Global, global: &mut Global) {
        if let Some(list) = &r.notification_email {
            for to in list.get_ref() {
                // A local recipient (`root`) is qualified with the host's name.
                let local = !to.get_ref().contains('@')
                    && !to.get_ref().is_empty()
                    && !to.get_ref().contains(char::is_whitespace);
                if local || self.mailbox(to, "notification_email") {
                    global.notification_email.push(to.get_ref().clone());
                }
            }
        }
        if let Some(from) = &r.notification_email_from
            && self.mailbox(from, "notification_email_from")
        {
            global.notification_email_from = Some(from.get_ref().clone());
        }
        global.smtp_server = r.smtp_server.as_ref().and_then(|s| self.smtp_server(s));
        if let Some(h) = &r.smtp_helo_name {
            if self.host_name(h.get_ref()) {
                global.smtp_helo_name = Some(h.get_ref().clone());
            } else {
                self.error(
                    h.span(),
                    format!("smtp_helo_name `{}` is not a host name", h.get_ref()),
                );
            }
        }
        if let Some(t) = &r.smtp_connect_timeout
            && let Some(d) = self.seconds(t, "smtp_connect_timeout", true)
        {
            global.smtp_connect_timeout = d;
        }
        let flag = |b: &Option<Spanned<bool>>| b.as_ref().map(|b| *b.get_ref());
        global.smtp_alert = flag(&r.smtp_alert);
        global.smtp_alert_vrrp = flag(&r.smtp_alert_vrrp);
        global.smtp_alert_checker = flag(&r.smtp_alert_checker);
        // Half a setup sends nothing; say so rather than stay silent.
        match (&r.notification_email, &r.smtp_server) {
            (Some(to), None) if !to.get_ref().is_empty() => self.error(
                to.span(),
                "`notification_email` needs `smtp_server` to send alerts through",
            ),
            (None, Some(s)) => self.error(
                s.span(),
                "`smtp_server` needs `notification_email` (who gets the alerts)",
            ),
            _ => {}
        }
    }

    /// Whether `v` is an address lettre can send to, reporting it if not.
    fn mailbox(&mut self, v: &Spanned<String>, what: &str) -> bool {
        match v.get_ref().parse::<Mailbox>() {
            Ok(_) => true,
            Err(_) => {
                self.error(
                    v.span(),
                    format!("{what} `{}` is not an email address", v.get_ref()),
                );
                false
            }
        }
    }

    fn smtp_server(&mut self, v: &Spanned<SmtpServer>) -> Option<(String, u16)> {
        let (host, port) = match v.get_ref() {
            SmtpServer::Host(h) => (h, None),
            SmtpServer::Table(t) => (&t.host, t.port),
        };
        let port = match port {
            None => SMTP_PORT,
            Some(p) => self.port(&Spanned::new(v.span(), p))?,
        };
        if !self.host_name(host) {
            self.error(
                v.span(),
                format!("smtp_server `{host}` is neither an IP address nor a host name"),
            );
            return None;
        }
        Some((host.clone(), port))
    }

    /// An IP address or a DNS name (letters, digits, `-`, dots).
    fn host_name(&self, s: &str) -> bool {
        s.parse::<IpAddr>().is_ok()
            || (!s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }))
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConfigErrors, parse};
    use std::time::Duration;

    const HEAD: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

    fn ok(text: &str) -> crate::Config {
        parse("t.toml", &format!("{HEAD}{text}")).unwrap()
    }

    fn errors(text: &str) -> Vec<String> {
        match parse("t.toml", &format!("{HEAD}{text}")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(ConfigErrors(e)) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn global_alert_keys() {
        let c = ok(r#"
[global]
notification_email = ["ops@example.com", "Pager <pager@example.com>"]
notification_email_from = "lb1@example.com"
smtp_server = { host = "mail.example.com", port = 2525 }
smtp_helo_name = "lb1.example.com"
smtp_connect_timeout = 5
smtp_alert = true
smtp_alert_vrrp = false
"#);
        let g = &c.global;
        assert_eq!(
            g.notification_email,
            ["ops@example.com", "Pager <pager@example.com>"]
        );
        assert_eq!(
            g.notification_email_from.as_deref(),
            Some("lb1@example.com")
        );
        assert_eq!(g.smtp_server, Some(("mail.example.com".to_string(), 2525)));
        assert_eq!(g.smtp_helo_name.as_deref(), Some("lb1.example.com"));
        assert_eq!(g.smtp_connect_timeout, Duration::from_secs(5));
        assert_eq!(
            (g.smtp_alert, g.smtp_alert_vrrp, g.smtp_alert_checker),
            (Some(true), Some(false), None)
        );
    }

    #[test]
    fn defaults_and_plain_host() {
        let c = ok("[global]\nnotification_email = [\"a@b.c\"]\nsmtp_server = \"::1\"\n");
        assert_eq!(c.global.smtp_server, Some(("::1".to_string(), 25)));
        assert_eq!(c.global.smtp_connect_timeout, Duration::from_secs(30));
        assert_eq!(c.global.notification_email_from, None);
        let c = ok("");
        assert!(c.global.notification_email.is_empty());
        assert_eq!(c.global.smtp_server, None);
    }

    #[test]
    fn per_object_smtp_alert() {
        let c = ok(r#"
[[service]]
vip = "10.0.0.1"
port = 80
smtp_alert = true

[[service.real]]
address = "10.0.0.2"
smtp_alert = false

[[service.real.check]]
type = "tcp"
smtp_alert = true
"#);
        let s = &c.services[0];
        assert_eq!(s.lifecycle.smtp_alert, Some(true));
        assert_eq!(s.reals[0].lifecycle.smtp_alert, Some(false));
        assert_eq!(s.reals[0].lifecycle.checks[0].common.smtp_alert, Some(true));
        let c = ok(
            "[[service]]\nvip = \"10.0.0.1\"\nport = 80\n[[service.real]]\naddress = \"10.0.0.2\"\n",
        );
        assert_eq!(c.services[0].lifecycle.smtp_alert, None);
        assert_eq!(c.services[0].reals[0].lifecycle.smtp_alert, None);
    }

    #[test]
    fn bad_alert_keys_are_errors_with_positions() {
        let e = errors(
            "[global]\nnotification_email = [\"not an address\"]\nnotification_email_from = \"@\"\nsmtp_server = { host = \"bad host\", port = 0 }\nsmtp_helo_name = \"a b\"\nsmtp_connect_timeout = 0\n",
        );
        assert_eq!(
            e[0],
            "t.toml:4:23: notification_email `not an address` is not an email address"
        );
        assert_eq!(
            e[1],
            "t.toml:5:27: notification_email_from `@` is not an email address"
        );
        assert_eq!(e[2], "t.toml:6:15: port 0 is out of range (1..=65535)");
        assert_eq!(e[3], "t.toml:7:18: smtp_helo_name `a b` is not a host name");
        assert!(
            e[4].starts_with(
                "t.toml:8:24: `smtp_connect_timeout` must be a number of seconds above 0"
            ),
            "{e:?}"
        );
        assert_eq!(e.len(), 5, "{e:?}");
        let e = errors(
            "[global]\nsmtp_server = { host = \"bad host\" }\nnotification_email = [\"a@b.c\"]\n",
        );
        assert_eq!(
            e,
            ["t.toml:4:15: smtp_server `bad host` is neither an IP address nor a host name"]
        );
    }

    #[test]
    fn half_a_setup_is_an_error() {
        assert_eq!(
            errors("[global]\nnotification_email = [\"a@b.c\"]\n"),
            ["t.toml:4:22: `notification_email` needs `smtp_server` to send alerts through"]
        );
        assert_eq!(
            errors("[global]\nsmtp_server = \"127.0.0.1\"\n"),
            ["t.toml:4:15: `smtp_server` needs `notification_email` (who gets the alerts)"]
        );
        assert!(
            errors("[global]\nsmtp_alert = 1\n")[0].starts_with("t.toml:4:14:"),
            "not a bool"
        );
        assert!(errors("[global]\nsmtp_port = 25\n")[0].contains("unknown field `smtp_port`"));
    }
}
