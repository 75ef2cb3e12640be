//! `static_ipaddress`, `static_routes` and `static_rules`: applied as a
//! whole at start, removed at stop.

use super::{Change, addr, route, rule};
use crate::config::vrrp::{Route, Rule, StaticNet, VirtualAddress};
use anyhow::{Result, bail};
use rtnetlink::Handle;

/// One thing this call added, so a failure can take it back.
enum Added<'a> {
    Addr(&'a VirtualAddress),
    Route(&'a Route),
    Rule(&'a Rule),
}

/// Adds every address, then route, then rule (routes may use the addresses
/// as `src`; rules point at the routes' tables). On failure, removes what
/// this call added (not what was already there) and returns the error.
pub async fn apply(handle: &Handle, net: &StaticNet) -> Result<()> {
    let mut added = Vec::new();
    let result = apply_all(handle, net, &mut added).await;
    if result.is_err() {
        for thing in added.iter().rev() {
            let undone = match thing {
                Added::Addr(a) => addr::remove(handle, a, "").await,
                Added::Route(r) => route::remove(handle, r, None).await,
                Added::Rule(r) => rule::remove(handle, r).await,
            };
            if let Err(e) = undone {
                tracing::warn!(error = %crate::logging::chain(&e), "undoing static network setup failed");
            }
        }
    }
    result
}

async fn apply_all<'a>(
    handle: &Handle,
    net: &'a StaticNet,
    added: &mut Vec<Added<'a>>,
) -> Result<()> {
    for a in &net.addresses {
        if a.dev.is_none() {
            bail!("static address {}: no dev given", addr::describe(a));
        }
        if addr::add_new(handle, a, "").await? == Change::Done {
            added.push(Added::Addr(a));
        }
    }
    for r in &net.routes {
        if route::add_new(handle, r, None).await? == Change::Done {
            added.push(Added::Route(r));
        }
    }
    for r in &net.rules {
        if rule::add_new(handle, r).await? == Change::Done {
            added.push(Added::Rule(r));
        }
    }
    Ok(())
}

/// Removes every rule, route and address of `net` (in the reverse order of
/// [`apply`]), going on past failures; the error lists every failure.
pub async fn remove(handle: &Handle, net: &StaticNet) -> Result<()> {
    let mut failures = Vec::new();
    for r in net.rules.iter().rev() {
        if let Err(e) = rule::remove(handle, r).await {
            failures.push(crate::logging::chain(&e).to_string());
        }
    }
    for r in net.routes.iter().rev() {
        if let Err(e) = route::remove(handle, r, None).await {
            failures.push(crate::logging::chain(&e).to_string());
        }
    }
    for a in net.addresses.iter().rev() {
        if let Err(e) = addr::remove(handle, a, "").await {
            failures.push(crate::logging::chain(&e).to_string());
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
