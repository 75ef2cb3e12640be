//! What the speaker checks of the host before it announces: each data-plane
//! interface up with carrier, and (under XDP) still carrying an XDP
//! program, from one rtnetlink link dump per poll.

use anyhow::{Context, Result};
use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, XdpAttached};
use std::collections::HashMap;

/// The interfaces' state as one poll found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// Named interfaces that are missing or not up with carrier, sorted.
    pub down: Vec<String>,
    /// Named interfaces without an XDP program, sorted.
    pub without_xdp: Vec<String>,
}

/// An rtnetlink handle for polls.
pub struct Links {
    handle: rtnetlink::Handle,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Links {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Links {
    pub fn new() -> Result<Links> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket for links")?;
        Ok(Links {
            handle,
            conn: tokio::spawn(conn),
        })
    }

    /// The state of `names` now.
    pub async fn poll(&self, names: &[String]) -> Result<LinkFacts> {
        let mut seen: HashMap<String, (bool, bool)> = HashMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await.context("listing interfaces")? {
            if let Some((name, up, xdp)) = facts(&link)
                && names.contains(&name)
            {
                seen.insert(name, (up, xdp));
            }
        }
        let mut out = LinkFacts::default();
        for n in names {
            let (up, xdp) = seen.get(n).copied().unwrap_or((false, false));
            if !up {
                out.down.push(n.clone());
            }
            if !xdp {
                out.without_xdp.push(n.clone());
            }
        }
        out.down.sort();
        out.without_xdp.sort();
        Ok(out)
    }
}

/// Name, up (IFF_UP and IFF_RUNNING, as keepalived judges it), XDP attached.
fn facts(link: &LinkMessage) -> Option<(String, bool, bool)> {
    let mut name = None;
    let mut xdp = false;
    for a in &link.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Xdp(x) => {
                xdp = x.iter().any(|x| match x {
                    LinkXdp::Attached(a) => *a != XdpAttached::None,
                    LinkXdp::ProgId(id) => *id != 0,
                    _ => false,
                })
            }
            _ => {}
        }
    }
    let flags = link.header.flags;
    Some((
        name?,
        flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
        xdp,
    ))
}
