//! Rules about services: each defined once, reals of the service's address
//! family with sane thresholds, a persistence mask and a sorry server of
//! the VIP's family, a
//! group's services alike, what the data plane in use can forward, and
//! what fits its maps.

use super::{Found, Rule};
use crate::{Config, DataplaneKind, Method, Service, ServiceId, capacity};
use std::collections::HashMap;

pub(super) fn check(c: &Config, f: &mut Found) {
    let mut first: HashMap<ServiceId, usize> = HashMap::new();
    for (i, s) in c.services.iter().enumerate() {
        let at = format!("services[{i}]");
        if let Some(j) = first.get(&s.id) {
            f.again(
                Rule::ServiceTwice,
                &at,
                &format!("services[{j}]"),
                format!("service {}", s.id),
            );
            continue;
        }
        first.insert(s.id, i);
        reals(s, &at, f);
        if let Some(p) = &s.persistence
            && p.mask.is_ipv6() != s.id.is_ipv6()
        {
            let (fam, takes) = if s.id.is_ipv6() {
                ("IPv6", "a prefix length, such as 64")
            } else {
                ("IPv4", "a netmask, such as 255.255.255.0")
            };
            f.error(
                Rule::PersistenceFamily, &format!("{at}.persistence.mask"),
                format!(
                    "persistence_granularity is of the other address family: {fam} service {} takes {takes}",
                    s.id
                ),
            );
        }
        if let Some(sorry) = &s.lifecycle.sorry_server
            && sorry.address.is_ipv6() != s.id.is_ipv6()
        {
            f.error(
                Rule::SorryFamily,
                &format!("{at}.lifecycle.sorry_server"),
                format!(
                    "sorry server {} is not of the VIP's address family",
                    sorry.address
                ),
            );
        }
        if matches!(s.id, ServiceId::Fwmark { .. }) && c.dataplane.kind != DataplaneKind::Ipvs {
            f.error(
                Rule::FwmarkNeedsIpvs, &format!("{at}.id"),
                "fwmark services need the IPVS data plane (`[dataplane] kind = \"ipvs\"`): XDP sees packets before the firewall marks them",
            );
        }
    }
    groups_agree(c, f);
    if c.dataplane.kind != DataplaneKind::Ipvs {
        // The map sizes bound XDP only; the kernel's IPVS grows as needed.
        let list: Vec<&Service> = c.services.iter().collect();
        for (at, message) in capacity::capacity_problems(&c.dataplane, &list) {
            let path = at.map_or_else(|| "dataplane".to_string(), |i| format!("services[{i}]"));
            f.error(Rule::Capacity, &path, message);
        }
    }
    // IPVS's sync daemon exists under the IPVS data plane only: under XDP
    // (or auto, when XDP starts) it would never run.
    if c.global.lvs_sync_daemon.is_some() && c.dataplane.kind != DataplaneKind::Ipvs {
        f.error(
            Rule::SyncDaemonNeedsIpvs, "global.lvs_sync_daemon",
            "`lvs_sync_daemon` needs `kind = \"ipvs\"`: the XDP data plane has no connection sync yet",
        );
    }
}

/// A service's reals: of its address family unless tunnelled (a tunnel may
/// cross families), and never unable to take connections again.
fn reals(s: &Service, at: &str, f: &mut Found) {
    for (j, r) in s.reals.iter().enumerate() {
        let real = format!("{at}.reals[{j}]");
        if s.method != Method::Tun && r.address.is_ipv6() != s.id.is_ipv6() {
            f.error(
                Rule::RealFamily,
                &format!("{real}.address"),
                format!(
                    "real server {} is not of the VIP's address family",
                    r.address
                ),
            );
        }
        if r.u_threshold != 0 && r.l_threshold > r.u_threshold {
            f.error(
                Rule::Thresholds, &format!("{real}.l_threshold"),
                format!(
                    "lthreshold {} is above uthreshold {}; the real would never take connections again",
                    r.l_threshold, r.u_threshold
                ),
            );
        }
    }
}

/// Services of one `group` list the same reals (addresses, weights and
/// checks; a real's port may follow each member's): each real is checked
/// once for all of them.
fn groups_agree(c: &Config, f: &mut Found) {
    let shape = |s: &Service| -> Vec<_> {
        s.reals
            .iter()
            .map(|r| (r.address, r.weight, r.lifecycle.clone()))
            .collect()
    };
    for (i, s) in c.services.iter().enumerate() {
        let Some(group) = &s.group else { continue };
        let first = c.services[..i]
            .iter()
            .find(|o| o.group.as_ref() == Some(group));
        if let Some(first) = first
            && shape(first) != shape(s)
        {
            f.error(
                Rule::GroupAlike, &format!("services[{i}]"),
                format!(
                    "service {} of group `{group}` lists other real servers or checks than {} (a group's reals are checked once for all its services)",
                    s.id, first.id
                ),
            );
        }
    }
}
