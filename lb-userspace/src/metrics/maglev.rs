//! Maglev churn per service: how many table slots changed owner, so how
//! many flows a change moved. The agent loop copies
//! [`crate::dataplane::DataPlane::maglev_churn`] here after each apply (the
//! data plane itself belongs to the loop); the collector reads the copy.

use super::family::{Labels, family};
use crate::{config::ServiceId, dataplane::MaglevChurn};
use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::MetricType::{Counter, Gauge},
};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

/// The latest churn per service; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ChurnBoard(Arc<Mutex<BTreeMap<ServiceId, MaglevChurn>>>);

impl ChurnBoard {
    pub fn set(&self, churn: BTreeMap<ServiceId, MaglevChurn>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = churn;
    }

    fn get(&self) -> BTreeMap<ServiceId, MaglevChurn> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug)]
pub struct MaglevCollector {
    board: ChurnBoard,
}

impl MaglevCollector {
    pub fn new(board: ChurnBoard) -> MaglevCollector {
        MaglevCollector { board }
    }
}

fn labels(id: &ServiceId) -> Labels {
    match id.addr() {
        Some((vip, port, protocol)) => vec![
            ("protocol", protocol.to_string()),
            ("vip", vip.to_string()),
            ("port", port.to_string()),
        ],
        None => vec![("service", id.to_string())],
    }
}

impl Collector for MaglevCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let churn = self.board.get();
        type Field = fn(&MaglevChurn) -> u64;
        let families: [(&str, &str, _, Field); 3] = [
            (
                "xlb_maglev_changes",
                "Rewrites of the service's Maglev table that moved slots",
                Counter,
                |c| c.changes,
            ),
            (
                "xlb_maglev_slots_moved",
                "Maglev table slots that changed real, over all rewrites",
                Counter,
                |c| c.slots_moved,
            ),
            (
                "xlb_maglev_last_moved_slots",
                "Maglev table slots the latest rewrite moved",
                Gauge,
                |c| c.last_moved,
            ),
        ];
        for (name, help, kind, f) in families {
            let samples: Vec<(Labels, u64)> =
                churn.iter().map(|(id, c)| (labels(id), f(c))).collect();
            family(&mut encoder, name, help, kind, &samples)?;
        }
        Ok(())
    }
}
