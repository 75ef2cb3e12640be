//! A reload's change to a running instance (what [`crate::vrrp::diff::in_place`]
//! allows): the core takes the new advert, timers and preemption
//! ([`crate::vrrp::core::Core::update`]); on a Master the shell adds and
//! removes only the addresses, routes and rules that differ, so an
//! unchanged VIP is never removed and added again.

use crate::{
    config::vrrp::Instance,
    vrrp::{diff::missing, effects::Net},
};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::warn;

/// What a running instance is handed on reload.
pub struct Update {
    pub inst: Arc<Instance>,
    /// A new tracking channel, when its tracking was rebuilt.
    pub track: Option<watch::Receiver<(u8, bool)>>,
}

/// The part of `a` that `b` lacks: its addresses, routes and rules only
/// (what [`Net::up`] / [`Net::down`] act on).
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

/// A Master's host entries from `old` to `new`: removed entries first (a
/// changed address is its old form removed, its new one added).
pub async fn reconfigure(net: &dyn Net, old: &Instance, new: &Instance) {
    let gone = lacking(old, new);
    if !is_empty(&gone)
        && let Err(e) = net.down(&gone).await
    {
        warn!(instance = %new.name, error = %crate::logging::chain(&e), "reload: removing virtual addresses failed");
    }
    let added = lacking(new, old);
    if !is_empty(&added)
        && let Err(e) = net.up(&added).await
    {
        warn!(instance = %new.name, error = %crate::logging::chain(&e), "reload: adding virtual addresses failed");
    }
}
