//! SMTP alerts as keepalived sends them: one mail per state change of a
//! VRRP instance or sync group, a real server (as its checkers see it) or a
//! service's quorum, to `notification_email` through `smtp_server`.
//! Which objects alert is [`inherit`]'s business, the wording
//! [`message`]'s, delivery (queued, bounded, retried, never blocking the
//! caller) [`mailer`]'s. Nothing is sent unless both `notification_email`
//! and `smtp_server` are set.

pub mod inherit;
pub mod mailer;
pub mod message;

pub use message::VrrpState;

use crate::{
    config::{
        Config, Real,
        check::{Check, CheckKind},
        global::Global,
    },
    vocab::{Notice, RealKey},
};
use anyhow::{Context, Result};
use mailer::{Envelope, Mailer, Policy, Stats};
use message::Message;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tracing::info;

/// Sends alerts; cheap to clone, and a no-op when alerts are not configured.
#[derive(Clone, Default)]
pub struct Alerter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    router_id: String,
    global: Global,
    mailer: Mailer,
    /// Whether each VRRP instance / sync group alerts, by name.
    instances: HashMap<String, bool>,
    groups: HashMap<String, bool>,
    /// Last state mailed per instance (`false`) or group (`true`) and name:
    /// keepalived mails a state once, however often it is re-entered.
    last: Mutex<HashMap<(bool, String), VrrpState>>,
}

impl Alerter {
    /// Alerts for `config`, or a no-op when it names no recipient or server.
    /// Starts the delivery task, so it needs a tokio runtime.
    pub fn start(config: &Config) -> Result<Alerter> {
        Alerter::start_with(config, Policy::default())
    }

    /// As [`Alerter::start`], with a queue and retry policy of one's own.
    pub fn start_with(config: &Config, policy: Policy) -> Result<Alerter> {
        let g = &config.global;
        let Some(server) = g.smtp_server.clone() else {
            return Ok(Alerter::default());
        };
        if g.notification_email.is_empty() {
            return Ok(Alerter::default());
        }
        let host = host_name();
        let from = g
            .notification_email_from
            .clone()
            .unwrap_or_else(|| format!("xlb@{host}"));
        let envelope = Envelope {
            server,
            helo_name: g.smtp_helo_name.clone().unwrap_or_else(|| host.clone()),
            from: from
                .parse()
                .with_context(|| format!("notification_email_from `{from}`"))?,
            to: g
                .notification_email
                .iter()
                .map(|to| {
                    // A local recipient (`root`) is qualified with this host's name.
                    let to = if to.contains('@') {
                        to.clone()
                    } else {
                        format!("{to}@{host}")
                    };
                    to.parse()
                        .with_context(|| format!("notification_email `{to}`"))
                })
                .collect::<Result<_>>()?,
            timeout: g.smtp_connect_timeout,
        };
        info!(server = %format!("{}:{}", envelope.server.0, envelope.server.1), recipients = envelope.to.len(), "SMTP alerts on");
        let instances = config
            .vrrp
            .instances
            .iter()
            .map(|i| (i.name.clone(), inherit::vrrp(g, i.smtp_alert)))
            .collect();
        let groups = config
            .vrrp
            .sync_groups
            .iter()
            .map(|s| (s.name.clone(), inherit::vrrp(g, s.smtp_alert)))
            .collect();
        Ok(Alerter {
            inner: Some(Arc::new(Inner {
                router_id: g.router_id.clone().unwrap_or(host),
                global: g.clone(),
                mailer: Mailer::start(envelope, policy),
                instances,
                groups,
                last: Mutex::new(HashMap::new()),
            })),
        })
    }

    /// Whether any alert can be sent at all.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the changes `check` sees on `real` are mailed.
    pub fn wants_check(&self, real: &Real, check: &Check) -> bool {
        self.inner.as_ref().is_some_and(|i| {
            inherit::check(
                &i.global,
                real.lifecycle.smtp_alert,
                check.common.smtp_alert,
            )
        })
    }

    /// A checker of `kind` changed its verdict on the real `key` to
    /// `check_up`; the real is now `real_up` (keepalived mails every checker
    /// change, the subject saying the real's state). `why`: the failure.
    pub fn check_changed(
        &self,
        key: &RealKey,
        kind: &CheckKind,
        check_up: bool,
        real_up: bool,
        why: Option<&str>,
    ) {
        if let Some(i) = &self.inner {
            let body = message::check_body(kind, check_up, why);
            i.mailer
                .send(message::real(&i.router_id, key, real_up, body));
        }
    }

    /// Mails the quorum changes among `notices` (what
    /// `Runtime::set_health` returned).
    pub fn quorum_changes(&self, config: &Config, notices: &[Notice]) {
        let Some(i) = &self.inner else { return };
        for n in notices {
            let Notice::Quorum {
                service,
                up,
                weight_sum,
                ..
            } = n
            else {
                continue;
            };
            let Some(svc) = config.services.iter().find(|s| s.id == *service) else {
                continue;
            };
            let l = &svc.lifecycle;
            if !inherit::service(&i.global, l.smtp_alert) {
                continue;
            }
            // The threshold crossed: keepalived's, which depends on the state left.
            let threshold = if *up {
                u64::from(l.quorum) + u64::from(l.hysteresis)
            } else {
                u64::from(l.quorum).saturating_sub(u64::from(l.hysteresis))
            };
            let q = message::Quorum {
                quorum: l.quorum,
                hysteresis: l.hysteresis,
                threshold,
                weight_sum: *weight_sum,
            };
            i.mailer
                .send(message::quorum(&i.router_id, service, *up, q));
        }
    }

    /// Mails what `omega` services say when the agent stops (`notices` from
    /// `Runtime::stopping`): each real `Shutting down`, then the service.
    pub fn stopping(&self, config: &Config, notices: &[Notice]) {
        let Some(i) = &self.inner else { return };
        for n in notices {
            let m = match n {
                Notice::Real { key, .. } => {
                    let own = config
                        .services
                        .iter()
                        .find(|s| s.id == key.service)
                        .and_then(|s| {
                            s.reals
                                .iter()
                                .find(|r| r.address == key.address && r.port == key.port)
                        })
                        .map(|r| r.lifecycle.smtp_alert);
                    let Some(own) = own else { continue };
                    if !inherit::real(&i.global, own) {
                        continue;
                    }
                    message::real_shutdown(&i.router_id, key)
                }
                Notice::Quorum { service, .. } => {
                    let own = config
                        .services
                        .iter()
                        .find(|s| s.id == *service)
                        .map(|s| s.lifecycle.smtp_alert);
                    let Some(own) = own else { continue };
                    if !inherit::service(&i.global, own) {
                        continue;
                    }
                    message::quorum_shutdown(&i.router_id, service)
                }
            };
            i.mailer.send(m);
        }
    }

    /// VRRP instance `name` entered `state`. Call it for every change; it
    /// mails only when the instance alerts and the state differs from the
    /// last one mailed.
    pub fn vrrp_instance(&self, name: &str, state: VrrpState) {
        if let Some(i) = &self.inner
            && i.instances.get(name).copied().unwrap_or(false)
            && i.first_time(false, name, state)
        {
            i.mailer
                .send(message::vrrp_instance(&i.router_id, name, state));
        }
    }

    /// As [`Alerter::vrrp_instance`], for sync group `name`.
    pub fn vrrp_group(&self, name: &str, state: VrrpState) {
        if let Some(i) = &self.inner
            && i.groups.get(name).copied().unwrap_or(false)
            && i.first_time(true, name, state)
        {
            i.mailer
                .send(message::vrrp_group(&i.router_id, name, state));
        }
    }

    /// Waits (at most `within`) for queued alerts to be delivered or given
    /// up, as the agent stops; whether they all were.
    pub async fn flush(&self, within: Duration) -> bool {
        match &self.inner {
            Some(i) => i.mailer.flush(within).await,
            None => true,
        }
    }

    pub fn stats(&self) -> Stats {
        self.inner
            .as_ref()
            .map_or_else(Stats::default, |i| i.mailer.stats())
    }

    /// Queues `message` as it is (tests, and future alert kinds).
    pub fn send(&self, message: Message) {
        if let Some(i) = &self.inner {
            i.mailer.send(message);
        }
    }
}

impl Inner {
    /// Records `state` as mailed for (`group`, `name`); whether it was new.
    fn first_time(&self, group: bool, name: &str, state: VrrpState) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.insert((group, name.to_string()), state) != Some(state)
    }
}

/// This machine's name: the default `router_id`, HELO name and sender domain.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
