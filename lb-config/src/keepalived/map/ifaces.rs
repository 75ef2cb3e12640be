//! The interfaces a keepalived.conf names must exist on this host, as
//! `keepalived -t` checks (unless `global_defs dynamic_interfaces`): an
//! instance's `interface`, `track_interface` lines, `dev` on address and
//! route lines, `default_interface` and the sync daemon's interface. Only
//! `xlb check` and `xlb run` ask (a conversion may run elsewhere); a VMAC
//! interface the file makes (`use_vmac`) does not have to exist yet. An
//! instance of priority 255 (the address owner) must list only addresses
//! this node has (keepalived accepts any; its owner then deletes the node's
//! own address on the way out, which xlb never does).

use super::Ctx;
use crate::{
    host,
    keepalived::{include::Token, tree::Node},
};
use std::net::IpAddr;

/// Reports each named interface that does not exist here, at its name.
pub fn check(cx: &mut Ctx, top: &[&Node]) {
    let mut named: Vec<(&Token, &'static str)> = Vec::new();
    let mut vmacs: Vec<String> = Vec::new();
    let mut owned: Vec<&Token> = Vec::new();
    for n in top {
        match n.name() {
            "global_defs" => {
                if n.children()
                    .iter()
                    .any(|k| k.name() == "dynamic_interfaces")
                {
                    return;
                }
                for k in n.children() {
                    match (k.name(), k.args.first()) {
                        ("default_interface", Some(t)) => named.push((t, "default_interface")),
                        ("lvs_sync_daemon", Some(t)) => named.push((t, "lvs_sync_daemon")),
                        _ => {}
                    }
                }
            }
            "static_ipaddress" => named.extend(devs(n.children(), "static_ipaddress")),
            "static_routes" => named.extend(devs(n.children(), "static_routes")),
            "vrrp_sync_group" => {
                named.extend(tracked(n));
            }
            "vrrp_instance" => {
                let vrid = n
                    .children()
                    .iter()
                    .find(|k| k.name() == "virtual_router_id")
                    .and_then(|k| k.args.first())
                    .map(|t| t.text.clone());
                for k in n.children() {
                    match k.name() {
                        "interface" | "lvs_sync_daemon_interface" => {
                            if let Some(t) = k.args.first() {
                                named.push((t, "vrrp_instance interface"));
                            }
                        }
                        "use_vmac" => vmacs.push(match (k.args.first(), &vrid) {
                            (Some(t), _) => t.text.clone(),
                            (None, Some(id)) => format!("vrrp.{id}"),
                            (None, None) => continue,
                        }),
                        "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                            named.extend(devs(k.children(), "an address's dev"));
                        }
                        "virtual_routes" => named.extend(devs(k.children(), "a route's dev")),
                        _ => {}
                    }
                }
                named.extend(tracked(n));
                let owner = n.children().iter().any(|k| {
                    k.name() == "priority" && k.args.first().is_some_and(|t| t.text == "255")
                });
                if owner {
                    owned.extend(
                        n.children()
                            .iter()
                            .filter(|k| k.name() == "virtual_ipaddress")
                            .flat_map(|k| k.children())
                            .map(|l| &l.kw),
                    );
                }
            }
            _ => {}
        }
    }
    let own = host::addresses();
    for t in owned {
        let addr = t.text.split('/').next().unwrap_or(&t.text);
        if let Ok(ip) = addr.parse::<IpAddr>()
            && !own.contains(&ip)
        {
            cx.diag.error(&t.pos, host::not_owned(ip));
        }
    }
    for (t, what) in named {
        if vmacs.contains(&t.text) || nix::net::if_::if_nametoindex(t.text.as_str()).is_ok() {
            continue;
        }
        cx.diag
            .error(&t.pos, host::missing_interface(&t.text, what));
    }
}

/// The `dev NAME` words of address and route lines.
fn devs<'n>(lines: &'n [Node], what: &'static str) -> Vec<(&'n Token, &'static str)> {
    lines
        .iter()
        .flat_map(|l| {
            let words = l.words();
            words
                .windows(2)
                .filter(|w| w[0].text == "dev")
                .map(|w| (w[1], what))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The lines of a block's `track_interface`.
fn tracked(n: &Node) -> Vec<(&Token, &'static str)> {
    n.children()
        .iter()
        .filter(|k| k.name() == "track_interface")
        .flat_map(|k| k.children())
        .map(|l| (&l.kw, "track_interface"))
        .collect()
}
