//! The health checkers' families: per check of a real, its verdict, the
//! duration of its last attempt, and its attempts and failures, read from
//! the [`CheckBoard`] the check tasks record into.

use super::family::{Labels, family};
use crate::check::board::{CheckBoard, CheckKey, CheckStat};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType::{Counter, Gauge},
        gauge::ConstGauge,
    },
};

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
