//! Where each part of the model was written in keepalived.conf (and the
//! files it includes), recorded as model paths for the semantic check
//! (`crate::semantic`): its errors then point at the token at fault.

use super::lvs::ServiceAt;
use crate::{
    keepalived::{diag::Pos, tree::Node},
    semantic::{Site, Sites},
};

impl From<&Pos> for Site {
    fn from(p: &Pos) -> Site {
        Site {
            file: p.file.clone(),
            line: p.line,
            col: p.col,
        }
    }
}

/// Sites of the file whose first node is `first`.
pub fn new(first: Option<&Node>) -> Sites {
    match first {
        Some(n) => {
            let mut s = Sites::new(&n.pos().file);
            s.set("", n.pos().into());
            s
        }
        None => Sites::default(),
    }
}

/// Service `i`, written as `at`. Capacity errors that name no service
/// point at the first one, as a keepalived.conf has no `[dataplane]`.
pub fn service(sites: &mut Sites, i: usize, at: &ServiceAt) {
    let path = format!("services[{i}]");
    if i == 0 {
        sites.set("dataplane", (&at.at).into());
    }
    sites.set(path.clone(), (&at.at).into());
    if let Some(m) = &at.mask {
        sites.set(format!("{path}.persistence.mask"), m.into());
    }
    if let Some(s) = &at.sorry {
        sites.set(format!("{path}.lifecycle.sorry_server"), s.into());
    }
    for (j, r) in at.reals.iter().enumerate() {
        let real = format!("{path}.reals[{j}]");
        sites.set(real.clone(), (&r.at).into());
        sites.set(format!("{real}.address"), (&r.address).into());
        if let Some(l) = &r.l_threshold {
            sites.set(format!("{real}.l_threshold"), l.into());
        }
    }
}

/// A `vrrp_script` or `vrrp_track_file` block, item `i` of `list`.
pub fn named(sites: &mut Sites, list: &str, i: usize, n: &Node) {
    sites.set(format!("{list}[{i}]"), n.pos().into());
    sites.set(format!("{list}[{i}].name"), (&n.args[0].pos).into());
}

/// The track lists of an instance or sync group at `path`: one model entry
/// per line of each `track_script` / `track_file` block, in order.
fn tracks(sites: &mut Sites, path: &str, n: &Node) {
    for (key, list) in [
        ("track_script", "track_scripts"),
        ("track_file", "track_files"),
    ] {
        let lines = n
            .children()
            .iter()
            .filter(|k| k.name() == key)
            .flat_map(|k| k.children());
        for (k, l) in lines.enumerate() {
            sites.set(format!("{path}.{list}[{k}]"), l.pos().into());
        }
    }
}

/// `vrrp_instance` `i`: its name, its VRID (the last one written wins, as
/// in keepalived) and its track lists.
pub fn instance(sites: &mut Sites, i: usize, n: &Node) {
    let path = format!("vrrp.instances[{i}]");
    named(sites, "vrrp.instances", i, n);
    if let Some(v) = n
        .children()
        .iter()
        .rfind(|k| k.name() == "virtual_router_id")
        .and_then(|k| k.args.first())
    {
        sites.set(format!("{path}.virtual_router_id"), (&v.pos).into());
    }
    tracks(sites, &path, n);
}

/// `vrrp_sync_group` `i`: its name, each member's word, its track lists.
pub fn sync_group(sites: &mut Sites, i: usize, n: &Node) {
    let path = format!("vrrp.sync_groups[{i}]");
    named(sites, "vrrp.sync_groups", i, n);
    let group = n.children().iter().find(|k| k.name() == "group");
    sites.set(format!("{path}.members"), group.unwrap_or(n).pos().into());
    let words = n
        .children()
        .iter()
        .filter(|k| k.name() == "group")
        .flat_map(|k| k.children())
        .flat_map(|l| l.words());
    for (k, w) in words.enumerate() {
        sites.set(format!("{path}.members[{k}]"), (&w.pos).into());
    }
    tracks(sites, &path, n);
}

/// `lvs_sync_daemon IFACE INSTANCE` in `global_defs` (the last one wins),
/// or `lvs_sync_daemon_interface` in an instance.
pub fn sync_daemon(sites: &mut Sites, top: &[&Node]) {
    let global = top
        .iter()
        .filter(|n| n.name() == "global_defs")
        .flat_map(|n| n.children())
        .rfind(|k| k.name() == "lvs_sync_daemon");
    if let Some(k) = global {
        sites.set("global.lvs_sync_daemon", k.pos().into());
        return;
    }
    let old = top
        .iter()
        .filter(|n| n.name() == "vrrp_instance")
        .flat_map(|n| n.children())
        .find(|k| k.name() == "lvs_sync_daemon_interface");
    if let Some(k) = old {
        sites.set("global.lvs_sync_daemon", k.pos().into());
    }
}
