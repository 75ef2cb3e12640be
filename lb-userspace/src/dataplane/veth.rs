//! Native XDP on a veth forwards nothing unless the veth's peer has an XDP
//! program too: frames the director sends back out (XDP_TX) or redirects
//! into a veth reach the peer as XDP frames, which the kernel drops when
//! the peer runs none (learned on these machines; GRO alone did not carry
//! them). The kernel accepts the attach without a word, so the agent looks
//! at the link after a native attach and warns.

use anyhow::{Context, Result, bail};
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// What a link says of itself, as far as this check needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Link {
    veth: bool,
    /// The peer's index (`IFLA_LINK`), in this namespace unless `peer_elsewhere`.
    peer: Option<u32>,
    /// The peer lives in another network namespace (`IFLA_LINK_NETNSID`).
    peer_elsewhere: bool,
    /// An XDP program is attached (any mode).
    xdp: bool,
}

impl Link {
    fn of(msg: &LinkMessage) -> Link {
        let mut link = Link::default();
        for a in &msg.attributes {
            match a {
                LinkAttribute::LinkInfo(infos) => {
                    link.veth |= infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)))
                }
                LinkAttribute::Link(peer) => link.peer = Some(*peer),
                LinkAttribute::LinkNetNsId(_) => link.peer_elsewhere = true,
                LinkAttribute::Xdp(xdp) => {
                    link.xdp = xdp.iter().any(|x| match x {
                        LinkXdp::Attached(a) => *a != XdpAttached::None,
                        LinkXdp::ProgId(id) => *id != 0,
                        _ => false,
                    })
                }
                _ => {}
            }
        }
        link
    }
}

/// `RTM_GETLINK` for one link, by name or by index.
fn get(socket: &mut Socket, name: Option<&str>, index: u32) -> Result<Link> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(n) = name {
        msg.attributes.push(LinkAttribute::IfName(n.to_string()));
    }
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0).context("sending to rtnetlink")?;
    // The link, then the acknowledgement: both are read, so the socket is
    // clean for the next request.
    let mut link = None;
    loop {
        let (data, _) = socket
            .recv_from_full()
            .context("receiving from rtnetlink")?;
        let mut at = 0;
        while at < data.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                .context("parsing an rtnetlink reply")?;
            let len = reply.header.length as usize;
            if len == 0 {
                bail!("an rtnetlink reply of length 0");
            }
            at += (len + 3) & !3;
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                    link = Some(Link::of(&m))
                }
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io().into()),
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => {
                    return link.context("no link in the reply");
                }
                _ => {}
            }
        }
    }
}

/// The warning for native XDP on `ifname`, if it is a veth whose peer is
/// not known to run an XDP program: one in another namespace cannot be
/// looked at from here, so it is named as a condition.
pub fn peer_warning(ifname: &str) -> Result<Option<String>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let link = get(&mut socket, Some(ifname), 0)?;
    let Some(peer) = link.peer.filter(|_| link.veth) else {
        return Ok(None);
    };
    let advice =
        "attach one there (a program returning XDP_PASS is enough) or set xdp_mode = \"generic\"";
    if link.peer_elsewhere {
        return Ok(Some(format!(
            "native XDP on veth {ifname}: frames it sends back out are dropped unless its peer (ifindex {peer} in another namespace) has an XDP program; {advice}"
        )));
    }
    let peer_link = get(&mut socket, None, peer)?;
    Ok((!peer_link.xdp).then(|| {
        format!(
            "native XDP on veth {ifname}: its peer (ifindex {peer}) has no XDP program, so every frame sent back out is dropped; {advice}"
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.attributes = attrs;
        m
    }

    #[test]
    fn a_veth_its_peer_and_its_program_are_read_from_the_attributes() {
        let veth = msg(vec![
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
            LinkAttribute::Link(7),
            LinkAttribute::Xdp(vec![
                LinkXdp::Attached(XdpAttached::Driver),
                LinkXdp::ProgId(3),
            ]),
        ]);
        assert_eq!(
            Link::of(&veth),
            Link {
                veth: true,
                peer: Some(7),
                peer_elsewhere: false,
                xdp: true
            }
        );
        let bare = msg(vec![LinkAttribute::Xdp(vec![LinkXdp::Attached(
            XdpAttached::None,
        )])]);
        assert_eq!(Link::of(&bare), Link::default());
        let far = msg(vec![LinkAttribute::LinkNetNsId(0), LinkAttribute::Link(2)]);
        assert!(Link::of(&far).peer_elsewhere);
    }
}
