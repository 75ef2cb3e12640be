//! Link state for `track_interface`: the current state of the named
//! interfaces, then every change, from the kernel's RTNLGRP_LINK multicast.

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkMessage},
};
use rtnetlink::{MulticastGroup, packet_core::NetlinkPayload};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Events queued for a slow reader before the watcher waits for it.
const QUEUE: usize = 64;

/// Watches `names`: the receiver first gets `(name, up)` for each of them in
/// order (a missing interface is down), then one event per change. "Up" is
/// administratively up with carrier (IFF_UP and IFF_RUNNING), as keepalived
/// judges it. Opens its own netlink socket (multicast needs one); the watch
/// ends when the receiver is dropped, and the receiver ends if netlink does.
pub async fn watch(names: &[String]) -> Result<mpsc::Receiver<(String, bool)>> {
    // Subscribe before the dump so no change between the two is lost.
    let (conn, handle, mut messages) = rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
        .context("opening a netlink socket for link events")?;
    let conn = tokio::spawn(conn);
    let mut state: HashMap<String, bool> = names.iter().map(|n| (n.clone(), false)).collect();
    let mut links = handle.link().get().execute();
    while let Some(link) = links.try_next().await.context("listing interfaces")? {
        if let Some((name, up)) = link_state(&link)
            && let Some(s) = state.get_mut(&name)
        {
            *s = up;
        }
    }
    let (tx, rx) = mpsc::channel(QUEUE.max(names.len()));
    for name in names {
        // Cannot fail: the channel is fresh and large enough.
        let _ = tx.try_send((name.clone(), state[name]));
    }
    tokio::spawn(async move {
        loop {
            // A dropped receiver ends the watch at once, not at the next change.
            let msg = tokio::select! {
                m = messages.next() => match m {
                    Some((msg, _)) => msg,
                    None => break,
                },
                _ = tx.closed() => break,
            };
            let (name, up) = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    match link_state(&link) {
                        Some(s) => s,
                        None => continue,
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    match link_state(&link) {
                        Some((name, _)) => (name, false),
                        None => continue,
                    }
                }
                _ => continue,
            };
            let Some(known) = state.get_mut(&name) else {
                continue;
            };
            if *known == up {
                continue;
            }
            *known = up;
            if tx.send((name, up)).await.is_err() {
                break;
            }
        }
        drop(handle);
        conn.abort();
    });
    Ok(rx)
}

/// The name of `link` and whether it is up with carrier.
fn link_state(link: &LinkMessage) -> Option<(String, bool)> {
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    let flags = link.header.flags;
    Some((
        name,
        flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
    ))
}
