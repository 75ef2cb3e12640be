//! A reload's change to a running instance (what [`crate::vrrp::diff::in_place`]
//! allows): the advert, timers, preemption and tracking take the new values;
//! a Master adds and removes only the addresses, routes and rules that
//! differ, so an unchanged VIP is never removed and added again.

use super::{Runner, interval_cs, is_ipv6};
use crate::{
    config::vrrp::Instance,
    vrrp::{
        diff::missing,
        packet,
        state::{Event, State},
    },
};
use std::sync::Arc;
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

/// What a running instance is handed on reload.
pub struct Update {
    pub inst: Arc<Instance>,
    /// A new tracking channel, when its tracking was rebuilt.
    pub track: Option<watch::Receiver<(u8, bool)>>,
}

/// The part of `a` that `b` lacks: its addresses, routes and rules only
/// (what [`crate::vrrp::effects::Net::up`] / `down` act on).
fn lacking(a: &Instance, b: &Instance) -> Instance {
    Instance {
        virtual_ipaddress: missing(&a.virtual_ipaddress, &b.virtual_ipaddress),
        virtual_ipaddress_excluded: missing(
            &a.virtual_ipaddress_excluded,
            &b.virtual_ipaddress_excluded,
        ),
        virtual_routes: missing(&a.virtual_routes, &b.virtual_routes),
        virtual_rules: missing(&a.virtual_rules, &b.virtual_rules),
        ..a.clone()
    }
}

fn is_empty(i: &Instance) -> bool {
    i.virtual_ipaddress.is_empty()
        && i.virtual_ipaddress_excluded.is_empty()
        && i.virtual_routes.is_empty()
        && i.virtual_rules.is_empty()
}

impl Runner {
    /// Tracking's effective priority and fault, as they stand now.
    pub(super) async fn follow(&mut self, (priority, fault): (u8, bool)) {
        if priority != self.machine.priority() {
            self.step(Event::Priority(priority)).await;
        }
        self.step(Event::Fault(fault)).await;
    }

    pub(super) async fn update(&mut self, new: Arc<Instance>) {
        let old = std::mem::replace(&mut self.inst, new.clone());
        if old == new {
            return;
        }
        let ipv6 = is_ipv6(&new);
        let cs = interval_cs(&new);
        let auth = new.auth.as_ref().map(|a| packet::auth_data(&a.pass));
        let w = &mut self.wire;
        w.advert.addrs = new
            .virtual_ipaddress
            .iter()
            .map(|a| a.address)
            .filter(|a| a.is_ipv6() == ipv6)
            .collect();
        w.advert.interval_cs = cs;
        w.expect.interval_cs = cs;
        w.advert.auth = auth;
        w.expect.auth = auth;
        w.expect.peers = if new.check_unicast_src {
            new.unicast_peers.clone()
        } else {
            Vec::new()
        };
        let mut settings = self.machine.settings;
        settings.interval = new.advert_int;
        settings.preempt = new.preempt;
        settings.preempt_delay = new.preempt_delay;
        self.machine.retune(settings, Instant::now());
        self.announcer.addrs = new
            .virtual_ipaddress
            .iter()
            .chain(&new.virtual_ipaddress_excluded)
            .map(|a| a.address)
            .collect();
        self.shared
            .counters
            .update(&new.name, |s| s.base_priority = new.priority);
        if self.machine.state() == State::Master {
            // Removed entries first: a changed address is its old form removed, its new one added.
            let gone = lacking(&old, &new);
            if !is_empty(&gone)
                && let Err(e) = self.shared.net.down(&gone).await
            {
                warn!(instance = %new.name, error = %format!("{e:#}"), "reload: removing virtual addresses failed");
            }
            let added = lacking(&new, &old);
            if !is_empty(&added)
                && let Err(e) = self.shared.net.up(&added).await
            {
                warn!(instance = %new.name, error = %format!("{e:#}"), "reload: adding virtual addresses failed");
            }
            if !added.virtual_ipaddress.is_empty()
                || !added.virtual_ipaddress_excluded.is_empty()
                || old.garp != new.garp
            {
                // Announce anew (the new addresses need it; the others take no harm).
                if let Some(g) = self.garp.take() {
                    g.abort();
                }
                let a = self.announcer.clone();
                self.garp = Some(tokio::spawn(a.as_master(new.garp)));
            }
        }
        info!(instance = %new.name, "reload: instance changed in place");
    }
}
