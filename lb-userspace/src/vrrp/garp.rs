//! When a Master announces its addresses: a burst on becoming Master, a
//! second burst `garp_master_delay` later (switches that missed the first),
//! then a refresh burst every `garp_master_refresh` while it stays Master.

use super::effects::Net;
use crate::config::vrrp::Garp;
use std::{net::IpAddr, sync::Arc, time::Duration};
use tracing::warn;

/// Where and what to announce.
#[derive(Clone)]
pub struct Announcer {
    pub net: Arc<dyn Net>,
    pub ifname: String,
    pub addrs: Vec<IpAddr>,
}

impl Announcer {
    /// `count` announcements `interval` apart.
    pub async fn burst(&self, count: u32, interval: Duration) {
        for i in 0..count {
            if i > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if let Err(e) = self.net.announce(&self.ifname, &self.addrs) {
                warn!(ifname = %self.ifname, error = %format!("{e:#}"), "announcing the virtual addresses failed");
            }
        }
    }

    /// Everything a new Master sends; runs until aborted (when it leaves Master).
    pub async fn as_master(self, garp: Garp) {
        self.burst(garp.master_repeat, garp.interval).await;
        if !garp.master_delay.is_zero() {
            tokio::time::sleep(garp.master_delay).await;
            self.burst(garp.master_repeat, garp.interval).await;
        }
        if let Some(every) = garp.master_refresh.filter(|d| !d.is_zero()) {
            loop {
                tokio::time::sleep(every).await;
                self.burst(garp.master_refresh_repeat, garp.interval).await;
            }
        }
    }
}
