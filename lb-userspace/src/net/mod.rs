//! The host's network state that VRRP moves around: addresses, routes and
//! policy rules through rtnetlink, gratuitous ARP and unsolicited neighbour
//! advertisements, VRRP MAC interfaces, link state for `track_interface`,
//! and `no_accept`'s nftables drop rules. Every add and remove is
//! idempotent, so a restarted agent can apply or clean up whatever an
//! earlier run left half done.

pub mod accept;
pub mod addr;
pub mod announce;
pub mod link;
pub mod route;
pub mod rule;
pub mod static_net;
pub mod vmac;

use crate::config::vrrp::Scope;
use anyhow::{Context, Result};
use futures::TryStreamExt;
use netlink_packet_route::{address::AddressScope, link::LinkMessage, route::RouteScope};
use rtnetlink::Handle;

/// A failed rtnetlink request: the kernel's refusal (its errno says
/// whether a retry can help), or the request not getting through.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error(transparent)]
    Refused(std::io::Error),
    #[error(transparent)]
    Transport(rtnetlink::Error),
}

impl crate::fault::Classify for NetlinkError {
    fn kind(&self) -> crate::fault::Kind {
        match self {
            NetlinkError::Refused(e) => crate::fault::of_io(e),
            // The socket or its task, not the request: worth another try.
            NetlinkError::Transport(_) => crate::fault::Kind::Retryable,
        }
    }
}

impl From<rtnetlink::Error> for NetlinkError {
    fn from(e: rtnetlink::Error) -> NetlinkError {
        match errno(&e) {
            Some(n) => NetlinkError::Refused(std::io::Error::from_raw_os_error(n)),
            None => NetlinkError::Transport(e),
        }
    }
}

/// The errno of a kernel refusal, if `e` is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// What an add or a remove did: idempotent callers treat "already so" as
/// success, while undo logic must only undo what it changed itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Done,
    AlreadySo,
}

/// Runs one netlink request, mapping `already` (EEXIST on add, ENOENT and
/// friends on remove) to [`Change::AlreadySo`].
async fn request(
    req: impl Future<Output = Result<(), rtnetlink::Error>>,
    already: &[i32],
) -> Result<Change> {
    match req.await {
        Ok(()) => Ok(Change::Done),
        Err(e) if errno(&e).is_some_and(|n| already.contains(&n)) => Ok(Change::AlreadySo),
        Err(e) => Err(NetlinkError::from(e).into()),
    }
}

/// The link called `name`, or None when there is none.
async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up interface {name}")),
    }
}

/// The index of the interface `name`; an error names it when it is missing.
async fn ifindex(handle: &Handle, name: &str) -> Result<u32> {
    match link_by_name(handle, name).await? {
        Some(link) => Ok(link.header.index),
        None => anyhow::bail!("no interface named {name}"),
    }
}

fn address_scope(s: Scope) -> AddressScope {
    match s {
        Scope::Global => AddressScope::Universe,
        Scope::Site => AddressScope::Site,
        Scope::Link => AddressScope::Link,
        Scope::Host => AddressScope::Host,
        Scope::Nowhere => AddressScope::Nowhere,
    }
}

fn route_scope(s: Scope) -> RouteScope {
    match s {
        Scope::Global => RouteScope::Universe,
        Scope::Site => RouteScope::Site,
        Scope::Link => RouteScope::Link,
        Scope::Host => RouteScope::Host,
        Scope::Nowhere => RouteScope::NoWhere,
    }
}
