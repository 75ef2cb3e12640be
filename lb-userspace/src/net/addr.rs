//! Virtual and static IP addresses (`ip addr add|del`) with their prefix,
//! broadcast, scope and label.

use super::{Change, address_scope, ifindex, link_by_name, request};
use crate::config::vrrp::VirtualAddress;
use anyhow::{Context, Result, bail};
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags, AddressMessage},
};
use rtnetlink::Handle;
use std::{fmt::Write, net::IpAddr};

/// The kernel's limit on interface names and address labels (IFNAMSIZ - 1).
const MAX_LABEL: usize = 15;

/// Adds `a` on its `dev`, or on `default_dev` when it names none. Adding an
/// address that is already there is not an error.
pub async fn add(handle: &Handle, a: &VirtualAddress, default_dev: &str) -> Result<()> {
    add_new(handle, a, default_dev).await.map(drop)
}

/// Removes `a`; an address (or device) already gone is not an error.
pub async fn remove(handle: &Handle, a: &VirtualAddress, default_dev: &str) -> Result<()> {
    remove_old(handle, a, default_dev).await.map(drop)
}

/// [`remove`], telling whether this call removed it.
pub(crate) async fn remove_old(
    handle: &Handle,
    a: &VirtualAddress,
    default_dev: &str,
) -> Result<Change> {
    let dev = a.dev.as_deref().unwrap_or(default_dev);
    let what = || format!("removing {} from {dev}", describe(a));
    // A device that is gone took its addresses with it.
    let Some(link) = link_by_name(handle, dev).await.with_context(what)? else {
        return Ok(Change::AlreadySo);
    };
    let mut msg = AddressMessage::default();
    msg.header.family = family(a.address);
    msg.header.prefix_len = a.prefix;
    msg.header.index = link.header.index;
    msg.attributes.push(AddressAttribute::Local(a.address));
    msg.attributes.push(AddressAttribute::Address(a.address));
    request(
        handle.address().del(msg).execute(),
        &[libc::EADDRNOTAVAIL, libc::ENOENT],
    )
    .await
    .with_context(what)
}

/// [`add`], telling whether this call added it (for undo on failure).
pub(crate) async fn add_new(
    handle: &Handle,
    a: &VirtualAddress,
    default_dev: &str,
) -> Result<Change> {
    let dev = a.dev.as_deref().unwrap_or(default_dev);
    let what = || format!("adding {} to {dev}", describe(a));
    validate(a, dev).with_context(what)?;
    let index = ifindex(handle, dev).await.with_context(what)?;
    let mut req = handle.address().add(index, a.address, a.prefix);
    *req.message_mut() = message(a, index);
    request(req.execute(), &[libc::EEXIST])
        .await
        .with_context(what)
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The RTM_NEWADDR message for `a` on interface `index`.
fn message(a: &VirtualAddress, index: u32) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(a.address);
    msg.header.prefix_len = a.prefix;
    msg.header.index = index;
    if let Some(scope) = a.scope {
        msg.header.scope = address_scope(scope);
    }
    msg.attributes.push(AddressAttribute::Local(a.address));
    msg.attributes.push(AddressAttribute::Address(a.address));
    if let Some(brd) = a.brd {
        msg.attributes.push(AddressAttribute::Broadcast(brd));
    }
    if let Some(label) = &a.label {
        msg.attributes.push(AddressAttribute::Label(label.clone()));
    }
    if a.address.is_ipv6() {
        // A VIP must be usable the moment this director becomes Master; the
        // peer that held it a moment ago would fail duplicate detection anyway.
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

/// The kernel's rules, checked first so the error says what is wrong
/// rather than "Invalid argument".
fn validate(a: &VirtualAddress, dev: &str) -> Result<()> {
    let max = if a.address.is_ipv4() { 32 } else { 128 };
    if a.prefix > max {
        bail!("prefix /{} is longer than {max}", a.prefix);
    }
    if a.brd.is_some() && a.address.is_ipv6() {
        bail!("IPv6 addresses have no broadcast address");
    }
    if let Some(label) = &a.label {
        if a.address.is_ipv6() {
            bail!("IPv6 addresses have no label (label {label})");
        }
        if !label.starts_with(dev) {
            bail!("label {label} must start with the device name {dev} (as in {dev}:1)");
        }
        if label.len() > MAX_LABEL {
            bail!("label {label} is longer than {MAX_LABEL} characters");
        }
    }
    Ok(())
}

/// `ip addr` style: `10.0.0.1/24 brd 10.0.0.255 scope link label eth0:1`.
pub(crate) fn describe(a: &VirtualAddress) -> String {
    let mut s = format!("{}/{}", a.address, a.prefix);
    if let Some(brd) = a.brd {
        let _ = write!(s, " brd {brd}");
    }
    if let Some(scope) = a.scope {
        let _ = write!(s, " scope {}", scope.name());
    }
    if let Some(label) = &a.label {
        let _ = write!(s, " label {label}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vrrp::Scope;

    fn vip(s: &str, prefix: u8) -> VirtualAddress {
        VirtualAddress {
            address: s.parse().unwrap(),
            prefix,
            dev: None,
            brd: None,
            scope: None,
            label: None,
        }
    }

    #[test]
    fn labels_must_start_with_the_device() {
        let mut a = vip("10.0.0.1", 24);
        a.label = Some("eth0:vip".into());
        assert!(validate(&a, "eth0").is_ok());
        let err = validate(&a, "eth1").unwrap_err().to_string();
        assert!(
            err.contains("must start with the device name eth1"),
            "{err}"
        );
        a.label = Some("eth0:0123456789ab".into());
        assert!(
            validate(&a, "eth0")
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
    }

    #[test]
    fn ipv6_has_no_label_or_broadcast_and_prefixes_are_bounded() {
        let mut a = vip("fd00::1", 64);
        a.label = Some("eth0:1".into());
        assert!(validate(&a, "eth0").is_err());
        let mut a = vip("fd00::1", 64);
        a.brd = Some("10.0.0.255".parse().unwrap());
        assert!(validate(&a, "eth0").is_err());
        assert!(validate(&vip("fd00::1", 129), "eth0").is_err());
        assert!(validate(&vip("10.0.0.1", 33), "eth0").is_err());
    }

    #[test]
    fn ipv6_addresses_skip_duplicate_detection() {
        let msg = message(&vip("fd00::1", 64), 7);
        assert!(
            msg.attributes
                .contains(&AddressAttribute::Flags(AddressFlags::Nodad))
        );
        let msg = message(&vip("10.0.0.1", 32), 7);
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Flags(_)))
        );
    }

    #[test]
    fn describe_reads_like_ip_addr() {
        let mut a = vip("10.0.0.1", 24);
        a.brd = Some("10.0.0.255".parse().unwrap());
        a.scope = Some(Scope::Link);
        a.label = Some("eth0:1".into());
        assert_eq!(
            describe(&a),
            "10.0.0.1/24 brd 10.0.0.255 scope link label eth0:1"
        );
    }
}
