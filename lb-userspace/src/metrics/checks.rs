//! The health checkers' families: per check of a real, its verdict, the
//! duration of its last attempt, and its attempts and failures. The check
//! tasks record into a [`CheckBoard`] as they go; the collector reads it.

use super::dataplane::{Labels, family};
use crate::{agent::desired::RealKey, config::check::CheckKind};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType::{Counter, Gauge},
        gauge::ConstGauge,
    },
};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

/// One check of one real: the real and the check's place in its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckKey {
    pub real: RealKey,
    pub slot: usize,
}

/// What is known about one check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckStat {
    /// `TCP_CHECK`, `HTTP_GET`, ... as keepalived.conf names it.
    pub kind: &'static str,
    /// The check's verdict (after retries), as the data plane uses it.
    pub up: bool,
    pub attempts: u64,
    pub failures: u64,
    /// How long the last attempt took (to its answer, failure or timeout).
    pub last_duration: Option<Duration>,
}

/// keepalived.conf's name of a checker.
pub fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
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

/// Every check's numbers; cheap to clone, shared by the check tasks.
#[derive(Clone, Debug, Default)]
pub struct CheckBoard(Arc<Mutex<BTreeMap<CheckKey, CheckStat>>>);

impl CheckBoard {
    /// Forgets every check (the checkers restart with a new config).
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// A check starting with verdict `up`.
    pub fn register(&self, key: CheckKey, kind: &CheckKind, up: bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                CheckStat {
                    kind: kind_name(kind),
                    up,
                    ..CheckStat::default()
                },
            );
    }

    /// One attempt's outcome and the verdict after it.
    pub fn attempt(&self, key: CheckKey, passed: bool, took: Duration, up: bool) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let s = m.entry(key).or_default();
        s.attempts += 1;
        s.failures += u64::from(!passed);
        s.last_duration = Some(took);
        s.up = up;
    }

    pub fn snapshot(&self) -> BTreeMap<CheckKey, CheckStat> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug)]
pub struct CheckCollector {
    board: CheckBoard,
}

impl CheckCollector {
    pub fn new(board: CheckBoard) -> CheckCollector {
        CheckCollector { board }
    }
}

fn labels(k: &CheckKey, s: &CheckStat) -> Labels {
    let mut l = match k.real.service.addr() {
        Some((vip, port, protocol)) => vec![
            ("protocol", protocol.to_string()),
            ("vip", vip.to_string()),
            ("port", port.to_string()),
        ],
        None => vec![("service", k.real.service.to_string())],
    };
    l.push(("real", k.real.address.to_string()));
    l.push(("real_port", k.real.port.to_string()));
    l.push(("check", s.kind.to_string()));
    l.push(("slot", k.slot.to_string()));
    l
}

impl Collector for CheckCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let checks = self.board.snapshot();
        type Field = fn(&CheckStat) -> u64;
        let families: [(&str, &str, _, Field); 3] = [
            (
                "xlb_check_up",
                "1 while the check passes (after retries), 0 while it holds the real down",
                Gauge,
                |s| u64::from(s.up),
            ),
            (
                "xlb_check_attempts",
                "Attempts of the check",
                Counter,
                |s| s.attempts,
            ),
            (
                "xlb_check_failures",
                "Failed attempts of the check",
                Counter,
                |s| s.failures,
            ),
        ];
        for (name, help, kind, f) in families {
            let samples: Vec<(Labels, u64)> =
                checks.iter().map(|(k, s)| (labels(k, s), f(s))).collect();
            family(&mut encoder, name, help, kind, &samples)?;
        }
        let mut metric = encoder.encode_descriptor(
            "xlb_check_duration_seconds",
            "How long the check's last attempt took (to its answer, failure or timeout)",
            None,
            Gauge,
        )?;
        for (k, s) in &checks {
            if let Some(d) = s.last_duration {
                let l = labels(k, s);
                let sample = metric.encode_family(&l)?;
                ConstGauge::new(d.as_secs_f64()).encode(sample)?;
            }
        }
        Ok(())
    }
}
