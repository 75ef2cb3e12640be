//! What `xlb check` and `xlb run` can know about a TOML config on this host
//! without applying it, as `keepalived -t` checks a keepalived.conf: every
//! interface it names exists (a VMAC the config makes need not), and an
//! instance of priority 255 (the address owner) lists only addresses this
//! node has. Conversions and unit tests parse without it (`parse`).

use super::{Validator, raw};
use crate::host;
use raw::vrrp::{AddressEntry, UseVmac};
use std::net::IpAddr;
use toml::Spanned;

/// An address line's `dev`, if it names one.
fn dev_of(e: &Spanned<AddressEntry>) -> Option<&Spanned<String>> {
    match e.get_ref() {
        AddressEntry::Full(a) => a.dev.as_ref(),
        AddressEntry::Bare(_) => None,
    }
}

impl Validator<'_> {
    pub(super) fn host(&mut self, raw: &raw::File) {
        // Only the XDP data plane attaches: under IPVS the list is unused,
        // and under `auto` an interface XDP cannot use means falling back.
        let dp = raw.dataplane.get_ref();
        let xdp = dp.kind.as_ref().is_none_or(|k| k.get_ref() == "xdp");
        let mut named: Vec<(&Spanned<String>, &'static str)> = dp
            .interfaces
            .get_ref()
            .iter()
            .filter(|_| xdp)
            .map(|i| (i, "[dataplane] interfaces"))
            .collect();
        let mut vmacs: Vec<String> = Vec::new();
        named.extend(
            raw.static_ipaddress
                .iter()
                .filter_map(dev_of)
                .map(|d| (d, "static_ipaddress dev")),
        );
        named.extend(
            raw.static_routes
                .iter()
                .filter_map(|r| r.get_ref().dev.as_ref())
                .map(|d| (d, "static_routes dev")),
        );
        if let Some(g) = &raw.global
            && let Some(d) = &g.get_ref().lvs_sync_daemon
        {
            named.push((&d.get_ref().interface, "lvs_sync_daemon interface"));
        }
        for g in &raw.vrrp_sync_groups {
            named.extend(
                g.get_ref()
                    .track_interface
                    .iter()
                    .map(|t| (&t.get_ref().name, "track_interface")),
            );
        }
        let own = host::addresses();
        for inst in &raw.vrrp_instances {
            let i = inst.get_ref();
            named.push((&i.interface, "vrrp_instance interface"));
            match i.use_vmac.as_ref().map(|v| v.get_ref()) {
                Some(UseVmac::Named(n)) => vmacs.push(n.clone()),
                Some(UseVmac::Default(true)) => {
                    vmacs.push(format!("vrrp.{}", i.virtual_router_id.get_ref()));
                    vmacs.push(format!("vrrp6.{}", i.virtual_router_id.get_ref()));
                }
                _ => {}
            }
            named.extend(
                i.track_interface
                    .iter()
                    .map(|t| (&t.get_ref().name, "track_interface")),
            );
            let vips = i.virtual_ipaddress.iter().flat_map(|v| v.get_ref());
            named.extend(
                vips.clone()
                    .chain(&i.virtual_ipaddress_excluded)
                    .filter_map(dev_of)
                    .map(|d| (d, "an address's dev")),
            );
            named.extend(
                i.virtual_routes
                    .iter()
                    .filter_map(|r| r.get_ref().dev.as_ref())
                    .map(|d| (d, "a route's dev")),
            );
            if i.priority.as_ref().is_some_and(|p| *p.get_ref() == 255) {
                for v in vips {
                    let (text, span) = match v.get_ref() {
                        AddressEntry::Bare(s) => (s.as_str(), v.span()),
                        AddressEntry::Full(a) => (a.address.get_ref().as_str(), a.address.span()),
                    };
                    let addr = text.split('/').next().unwrap_or(text);
                    if let Ok(ip) = addr.parse::<IpAddr>()
                        && !own.contains(&ip)
                    {
                        self.error(span, host::not_owned(ip));
                    }
                }
            }
        }
        for (name, what) in named {
            if vmacs.contains(name.get_ref()) || host::interface_exists(name.get_ref()) {
                continue;
            }
            self.error(name.span(), host::missing_interface(name.get_ref(), what));
        }
    }
}
