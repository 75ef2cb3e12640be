//! TCP_CHECK: the real is up when a TCP connection to it opens.

use super::{Probe, Target};

pub async fn probe(target: &Target) -> Probe {
    match target.connect_tcp().await {
        Ok(_) => Probe::pass(),
        Err(e) => Probe::fail(format!("connect to {}: {e}", target.addr)),
    }
}
