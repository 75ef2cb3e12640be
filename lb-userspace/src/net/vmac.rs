//! `use_vmac`: a macvlan on the VRRP interface carrying the virtual router
//! MAC (RFC 5798 section 7.3), so neighbours need no new ARP entry when the
//! Master changes. Only the interface created here is tuned; host-wide
//! settings stay as the operator left them.

use super::{errno, ifindex, link_by_name};
use anyhow::{Context, Result, bail};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoMacVlan, LinkAttribute,
    LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec};

/// 00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6.
pub fn vrrp_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

/// Creates the macvlan `name` on `base` (mode private, the VRRP MAC, up) and
/// returns its index. One of that name left by an earlier run is reused when
/// it matches and recreated when not; anything else of that name is refused.
pub async fn create(handle: &Handle, base: &str, name: &str, vrid: u8, ipv6: bool) -> Result<u32> {
    let what = || format!("creating VRRP MAC interface {name} on {base}");
    let mac = vrrp_mac(vrid, ipv6);
    let parent = ifindex(handle, base).await.with_context(what)?;
    let index = match link_by_name(handle, name).await.with_context(what)? {
        Some(link) => match Macvlan::of(&link) {
            Some(found) if found.matches(parent, mac) => Some(link.header.index),
            Some(_) => {
                tracing::info!("replacing stale macvlan {name}");
                handle
                    .link()
                    .del(link.header.index)
                    .execute()
                    .await
                    .with_context(|| format!("deleting stale {name}"))
                    .with_context(what)?;
                None
            }
            None => {
                return Err(anyhow::anyhow!(
                    "{name} exists and is not a macvlan: refusing to replace it"
                ))
                .with_context(what);
            }
        },
        None => None,
    };
    let index = match index {
        Some(i) => i,
        None => {
            let msg = LinkMacVlan::new(name, parent, MacVlanMode::Private)
                .address(mac.to_vec())
                .build();
            handle.link().add(msg).execute().await.with_context(what)?;
            let index = ifindex(handle, name).await.with_context(what)?;
            // Set before the link goes up, when the kernel makes its link-local.
            set_addr_gen_mode(handle, index, ipv6)
                .await
                .with_context(what)?;
            index
        }
    };
    if !ipv6 {
        // As keepalived: answer ARP for an address only on the interface that
        // holds it, so the VIP resolves to the VRRP MAC, not the base's.
        for key in ["arp_ignore", "arp_filter"] {
            let path = format!("/proc/sys/net/ipv4/conf/{name}/{key}");
            std::fs::write(&path, "1")
                .with_context(|| format!("writing {path}"))
                .with_context(what)?;
        }
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .with_context(|| format!("bringing {name} up"))
        .with_context(what)?;
    Ok(index)
}

/// Every router of the group has the same VRRP MAC, so an EUI-64 link-local
/// address would collide: none for IPv4 (adverts leave from the base), a
/// random one for IPv6, which needs a link-local source of its own.
async fn set_addr_gen_mode(handle: &Handle, index: u32, ipv6: bool) -> Result<()> {
    let mode = if ipv6 {
        In6AddrGenMode::Random
    } else {
        In6AddrGenMode::None
    };
    let attr =
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            mode,
        )])]);
    let msg = LinkUnspec::new_with_index(index)
        .append_extra_attribute(attr)
        .build();
    match handle.link().set(msg).execute().await {
        Ok(()) => Ok(()),
        // A kernel without IPv6 has no link-local address to worry about.
        Err(e) if errno(&e) == Some(libc::EAFNOSUPPORT) => Ok(()),
        Err(e) => Err(e).context("setting the IPv6 address generation mode"),
    }
}

/// Deletes the macvlan `name`; one already gone is not an error, and an
/// interface of that name that is not a macvlan is refused.
pub async fn delete(handle: &Handle, name: &str) -> Result<()> {
    let what = || format!("deleting VRRP MAC interface {name}");
    let Some(link) = link_by_name(handle, name).await.with_context(what)? else {
        return Ok(());
    };
    if Macvlan::of(&link).is_none() {
        bail!("deleting VRRP MAC interface {name}: it is not a macvlan; refusing");
    }
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(e).with_context(what),
    }
}

/// What matters of an existing macvlan.
struct Macvlan {
    parent: Option<u32>,
    mac: Option<Vec<u8>>,
    mode: Option<MacVlanMode>,
}

impl Macvlan {
    /// The macvlan facts of `link`, or None when it is not a macvlan.
    fn of(link: &LinkMessage) -> Option<Macvlan> {
        let mut is_macvlan = false;
        let mut m = Macvlan {
            parent: None,
            mac: None,
            mode: None,
        };
        for attr in &link.attributes {
            match attr {
                LinkAttribute::Link(p) => m.parent = Some(*p),
                LinkAttribute::Address(a) => m.mac = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(InfoKind::MacVlan) => is_macvlan = true,
                            LinkInfo::Data(InfoData::MacVlan(data)) => {
                                for d in data {
                                    if let InfoMacVlan::Mode(mode) = d {
                                        m.mode = Some(*mode);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        is_macvlan.then_some(m)
    }

    fn matches(&self, parent: u32, mac: [u8; 6]) -> bool {
        self.parent == Some(parent)
            && self.mac.as_deref() == Some(&mac[..])
            && self.mode == Some(MacVlanMode::Private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrrp_macs_per_family() {
        assert_eq!(vrrp_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(vrrp_mac(255, true), [0, 0, 0x5e, 0, 2, 255]);
    }
}
