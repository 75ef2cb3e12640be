//! What a reload does to each VRRP instance, decided from the old and the
//! new config alone (pure, unit-tested): instances that did not change are
//! left alone (no transition, no advert gap, no VIP removed and re-added —
//! keepalived #2159 and #754), changes a running instance can take are
//! applied in place, anything else restarts that instance only.

use crate::config::vrrp::{Instance, StaticNet, SyncGroup, Vrrp};
use std::collections::{BTreeMap, BTreeSet};

/// Per instance name, what happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Gone from the config: stop (priority 0, VIPs removed, notify_stop).
    pub stop: Vec<String>,
    /// New: start.
    pub start: Vec<String>,
    /// Changed in a way a running instance cannot follow: stop, then start,
    /// with the reason for the log.
    pub restart: Vec<(String, String)>,
    /// Changed only in what [`in_place`] covers: the running task takes the new definition.
    pub update: Vec<String>,
}

impl Plan {
    /// Whether `name` is stopped now (and started again if it stays configured).
    pub fn stops(&self, name: &str) -> bool {
        self.stop.iter().any(|n| n == name) || self.restart.iter().any(|(n, _)| n == name)
    }
}

/// `new` with every key a running instance can take from `new` copied from
/// `old`: equal to `old` exactly when the rest is unchanged. Written this way
/// round so that a key added to [`Instance`] later restarts by default.
fn without_in_place(old: &Instance, new: &Instance) -> Instance {
    Instance {
        priority: old.priority,
        initial_state: old.initial_state,
        advert_int: old.advert_int,
        preempt: old.preempt,
        preempt_delay: old.preempt_delay,
        auth: old.auth.clone(),
        check_unicast_src: old.check_unicast_src,
        virtual_ipaddress: old.virtual_ipaddress.clone(),
        virtual_ipaddress_excluded: old.virtual_ipaddress_excluded.clone(),
        virtual_routes: old.virtual_routes.clone(),
        virtual_rules: old.virtual_rules.clone(),
        track_interfaces: old.track_interfaces.clone(),
        track_scripts: old.track_scripts.clone(),
        track_files: old.track_files.clone(),
        garp: old.garp,
        lower_prio_no_advert: old.lower_prio_no_advert,
        higher_prio_send_advert: old.higher_prio_send_advert,
        notify: old.notify.clone(),
        smtp_alert: old.smtp_alert,
        ..new.clone()
    }
}

/// Whether `old` can become `new` in place; otherwise why not.
pub fn in_place(old: &Instance, new: &Instance) -> Result<(), String> {
    // The advert's family follows the first address; a socket has one family.
    if old.is_ipv6() != new.is_ipv6() {
        return Err("its address family changed".into());
    }
    let probe = without_in_place(old, new);
    if probe == *old {
        return Ok(());
    }
    let mut what = Vec::new();
    if probe.interface != old.interface {
        what.push("interface");
    }
    if probe.vrid != old.vrid {
        what.push("virtual_router_id");
    }
    if probe.version != old.version {
        what.push("version");
    }
    if probe.mcast_src_ip != old.mcast_src_ip || probe.unicast_src_ip != old.unicast_src_ip {
        what.push("source address");
    }
    if probe.unicast_peers != old.unicast_peers {
        what.push("unicast_peer");
    }
    if probe.vmac != old.vmac {
        what.push("use_vmac");
    }
    if what.is_empty() {
        what.push("a setting taken at start");
    }
    Err(format!("{} changed", what.join(", ")))
}

/// The sync group `name` belongs to, by its members.
fn group_of<'a>(groups: &'a [SyncGroup], name: &str) -> Option<&'a SyncGroup> {
    groups.iter().find(|g| g.members.iter().any(|m| m == name))
}

fn members(g: &SyncGroup) -> BTreeSet<&str> {
    g.members.iter().map(String::as_str).collect()
}

/// Groups whose membership is new, gone or different: their members (old
/// and new) restart, since a member's link to its group is made at start.
/// A group whose members stay keeps its running members (its notify and
/// tracking are taken in place).
pub fn regrouped(old: &Vrrp, new: &Vrrp) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let by_name = |v: &Vrrp| -> BTreeMap<String, SyncGroup> {
        v.sync_groups
            .iter()
            .map(|g| (g.name.clone(), g.clone()))
            .collect()
    };
    let (o, n) = (by_name(old), by_name(new));
    for (name, g) in &o {
        if n.get(name).is_none_or(|ng| members(ng) != members(g)) {
            out.extend(g.members.iter().cloned());
        }
    }
    for (name, g) in &n {
        if o.get(name).is_none_or(|og| members(og) != members(g)) {
            out.extend(g.members.iter().cloned());
        }
    }
    out
}

/// What a reload from `old` to `new` does to each instance.
pub fn plan(old: &Vrrp, new: &Vrrp) -> Plan {
    let regroup = regrouped(old, new);
    let mut plan = Plan::default();
    for o in &old.instances {
        if !new.instances.iter().any(|n| n.name == o.name) {
            plan.stop.push(o.name.clone());
        }
    }
    for n in &new.instances {
        let Some(o) = old.instances.iter().find(|o| o.name == n.name) else {
            plan.start.push(n.name.clone());
            continue;
        };
        let moved = group_of(&old.sync_groups, &o.name).map(|g| &g.name)
            != group_of(&new.sync_groups, &n.name).map(|g| &g.name);
        if moved || regroup.contains(&n.name) {
            plan.restart
                .push((n.name.clone(), "its sync group's members changed".into()));
        } else if let Err(why) = in_place(o, n) {
            plan.restart.push((n.name.clone(), why));
        } else if o != n {
            plan.update.push(n.name.clone());
        }
    }
    plan
}

/// Entries of `a` that are not in `b` (lists are small; order kept).
pub fn missing<T: PartialEq + Clone>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

/// The static entries to remove (in `old` only) and to add (in `new` only).
pub fn static_net(old: &StaticNet, new: &StaticNet) -> (StaticNet, StaticNet) {
    let side = |a: &StaticNet, b: &StaticNet| StaticNet {
        addresses: missing(&a.addresses, &b.addresses),
        routes: missing(&a.routes, &b.routes),
        rules: missing(&a.rules, &b.rules),
    };
    (side(old, new), side(new, old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn vrrp(body: &str) -> Vrrp {
        config::parse(
            "x.toml",
            &format!("[dataplane]\ninterfaces = [\"eth0\"]\n{body}"),
        )
        .unwrap()
        .vrrp
    }

    fn inst(name: &str, vrid: u8, extra: &str) -> String {
        format!(
            "[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = 100\nvirtual_ipaddress = [\"10.0.0.{vrid}/24\"]\n{extra}\n"
        )
    }

    #[test]
    fn unchanged_instances_are_left_alone() {
        let a = vrrp(&(inst("A", 1, "") + &inst("B", 2, "")));
        assert_eq!(plan(&a, &a), Plan::default());
    }

    #[test]
    fn in_place_changes_update_and_the_rest_restarts_alone() {
        let old = vrrp(&(inst("A", 1, "") + &inst("B", 2, "") + &inst("C", 3, "")));
        let new = vrrp(
            &(inst(
                "A",
                1,
                "advert_int = 2\npreempt = false\nvirtual_ipaddress_excluded = [\"10.0.1.1/32\"]",
            )
            .replace("priority = 100", "priority = 120")
                + &inst("B", 2, "").replace("interface = \"eth0\"", "interface = \"eth1\"")
                + &inst("D", 4, "")),
        );
        let p = plan(&old, &new);
        assert_eq!(p.update, ["A"]);
        assert_eq!(
            p.restart,
            [("B".to_string(), "interface changed".to_string())]
        );
        assert_eq!(p.stop, ["C"]);
        assert_eq!(p.start, ["D"]);
        assert!(p.stops("B") && p.stops("C") && !p.stops("A") && !p.stops("D"));
    }

    #[test]
    fn a_vip_of_the_other_family_first_restarts() {
        let old = vrrp(&inst("A", 1, "version = 3"));
        let new = vrrp(&inst("A", 1, "version = 3").replace("10.0.0.1/24", "fd00::1/64"));
        assert_eq!(plan(&old, &new).restart[0].1, "its address family changed");
    }

    #[test]
    fn regrouping_restarts_the_members_only() {
        let three = inst("A", 1, "") + &inst("B", 2, "") + &inst("C", 3, "");
        let group = |members: &str, extra: &str| {
            format!("[[vrrp_sync_group]]\nname = \"G\"\ngroup = [{members}]\n{extra}\n")
        };
        let old = vrrp(&(three.clone() + &group("\"A\", \"B\"", "")));
        // Notify of the same members: nothing restarts.
        let notified =
            vrrp(&(three.clone() + &group("\"B\", \"A\"", "notify_master = [\"/bin/true\"]")));
        assert_eq!(plan(&old, &notified), Plan::default());
        let grown = vrrp(&(three.clone() + &group("\"A\", \"B\", \"C\"", "")));
        let p = plan(&old, &grown);
        let restarted: Vec<&str> = p.restart.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(restarted, ["A", "B", "C"]);
        let gone = vrrp(&three);
        assert_eq!(plan(&old, &gone).restart.len(), 2);
    }

    #[test]
    fn static_entries_are_diffed() {
        let v = |a: &[&str]| StaticNet {
            addresses: a
                .iter()
                .map(|s| config::vrrp::VirtualAddress {
                    address: s.parse().unwrap(),
                    prefix: 32,
                    dev: None,
                    brd: None,
                    scope: None,
                    label: None,
                })
                .collect(),
            ..StaticNet::default()
        };
        let (gone, added) =
            static_net(&v(&["10.0.0.1", "10.0.0.2"]), &v(&["10.0.0.2", "10.0.0.3"]));
        assert_eq!(gone, v(&["10.0.0.1"]));
        assert_eq!(added, v(&["10.0.0.3"]));
    }
}
