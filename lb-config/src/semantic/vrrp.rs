//! Rules about VRRP: scripts, track files, instances and sync groups each
//! named once; a VRID used once per interface and address family; every
//! name a track list or sync group gives defined; an instance in one sync
//! group at most, and no sync group empty. (`lvs_sync_daemon` naming no
//! instance is not one: TOML runs a master daemon then, keepalived.conf
//! refuses it, `keepalived/map/vrrp.rs`.)

use super::{Found, Rule, hint};
use crate::{Config, vrrp::TrackRef};
use std::collections::HashMap;

pub(super) fn check(c: &Config, f: &mut Found) {
    let v = &c.vrrp;
    let names = |list: Vec<&str>, kind: &str, path: &str, f: &mut Found| {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, name) in list.into_iter().enumerate() {
            if let Some(j) = first.get(name) {
                f.again(
                    Rule::NameTwice,
                    &format!("{path}[{i}].name"),
                    &format!("{path}[{j}].name"),
                    format!("{kind} `{name}`"),
                );
            } else {
                first.insert(name, i);
            }
        }
    };
    names(
        v.scripts.iter().map(|s| s.name.as_str()).collect(),
        "vrrp_script",
        "vrrp.scripts",
        f,
    );
    names(
        v.track_files.iter().map(|s| s.name.as_str()).collect(),
        "vrrp_track_file",
        "vrrp.track_files",
        f,
    );
    names(
        v.instances.iter().map(|s| s.name.as_str()).collect(),
        "vrrp_instance",
        "vrrp.instances",
        f,
    );
    names(
        v.sync_groups.iter().map(|s| s.name.as_str()).collect(),
        "vrrp_sync_group",
        "vrrp.sync_groups",
        f,
    );
    let scripts: Vec<&str> = v.scripts.iter().map(|s| s.name.as_str()).collect();
    let files: Vec<&str> = v.track_files.iter().map(|s| s.name.as_str()).collect();
    let instances: Vec<&str> = v.instances.iter().map(|s| s.name.as_str()).collect();
    // VRIDs are per interface and address family.
    let mut vrids: HashMap<(&str, u8, bool), usize> = HashMap::new();
    for (i, inst) in v.instances.iter().enumerate() {
        let at = format!("vrrp.instances[{i}]");
        let key = (inst.interface.as_str(), inst.vrid, inst.is_ipv6());
        if let Some(&j) = vrids.get(&key) {
            let here = f.sites.at(&format!("{at}.virtual_router_id"));
            let first = f
                .sites
                .at(&format!("vrrp.instances[{j}].virtual_router_id"))
                .seen_from(&here);
            f.error(
                Rule::VridTwice,
                &format!("{at}.virtual_router_id"),
                format!(
                    "virtual_router_id {} on {} is already used by vrrp_instance `{}` at {first}",
                    inst.vrid, inst.interface, v.instances[j].name
                ),
            );
        } else {
            vrids.insert(key, i);
        }
        refs(
            &inst.track_scripts,
            "track_script",
            "vrrp_script",
            &scripts,
            &format!("{at}.track_scripts"),
            f,
        );
        refs(
            &inst.track_files,
            "track_file",
            "vrrp_track_file",
            &files,
            &format!("{at}.track_files"),
            f,
        );
    }
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for (i, g) in v.sync_groups.iter().enumerate() {
        let at = format!("vrrp.sync_groups[{i}]");
        if g.members.is_empty() {
            f.error(
                Rule::GroupEmpty,
                &format!("{at}.members"),
                format!("vrrp_sync_group `{}` names no instance", g.name),
            );
        }
        for (k, m) in g.members.iter().enumerate() {
            let path = format!("{at}.members[{k}]");
            if !instances.contains(&m.as_str()) {
                let hint = hint(m, instances.iter().copied());
                f.error(
                    Rule::MemberUndefined, &path,
                    format!(
                        "vrrp_sync_group `{}` names `{m}`, but no vrrp_instance `{m}` is defined{hint}",
                        g.name
                    ),
                );
            } else if let Some(other) = member_of.insert(m, &g.name) {
                f.error(
                    Rule::MemberTwice,
                    &path,
                    format!("vrrp_instance `{m}` is already in vrrp_sync_group `{other}`"),
                );
            }
        }
        refs(
            &g.track_scripts,
            "track_script",
            "vrrp_script",
            &scripts,
            &format!("{at}.track_scripts"),
            f,
        );
        refs(
            &g.track_files,
            "track_file",
            "vrrp_track_file",
            &files,
            &format!("{at}.track_files"),
            f,
        );
    }
}

/// A track list's names must be defined.
fn refs(list: &[TrackRef], key: &str, what: &str, defined: &[&str], path: &str, f: &mut Found) {
    for (k, r) in list.iter().enumerate() {
        if !defined.contains(&r.name.as_str()) {
            let hint = hint(&r.name, defined.iter().copied());
            f.error(
                Rule::TrackUndefined,
                &format!("{path}[{k}]"),
                format!(
                    "{key} names `{}`, but no {what} `{}` is defined{hint}",
                    r.name, r.name
                ),
            );
        }
    }
}
