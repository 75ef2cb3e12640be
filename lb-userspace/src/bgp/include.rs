//! The bird2 include the agent owns: one static protocol per announced VIP
//! (a blackhole /32 or /128 carrying the VIP's communities), named after
//! the address so the name survives every rewrite, and the export filter
//! `xlb_export` for the operator's BGP sessions: it passes only these
//! routes and sets each VIP's MED and local-pref (bird sends an eBGP peer a
//! MED only when the export filter set it, not one carried by the route). Each protocol's
//! `disabled` line follows the agent's decision, so that a `birdc
//! configure` by anyone, or a bird restart, keeps what the agent decided;
//! bird restarts a protocol on `configure` only when its `disabled` differs
//! from its running state, which the agent keeps equal.

use super::decide::Decision;
use crate::config::bgp::{Bgp, BgpVip};
use std::{fmt::Write, net::IpAddr};

/// Every protocol the agent writes starts with this.
pub const PREFIX: &str = "xlb_";
/// The export filter the include defines (`export filter xlb_export;`).
pub const FILTER: &str = "xlb_export";
/// What the include holds before the agent first writes it, so that bird,
/// started first, finds the filter its sessions name (README "Scaling out").
pub const EMPTY: &str = "filter xlb_export { reject; }\n";

/// The protocol of `vip`: `xlb_v4_10_0_0_10`, `xlb_v6_<32 hex digits>`.
pub fn protocol_name(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{PREFIX}v4_{}_{}_{}_{}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(a) => format!("{PREFIX}v6_{:032x}", u128::from(a)),
    }
}

/// The include for `bgp` with each VIP enabled as `decisions` say
/// (a VIP without a decision is disabled).
pub fn render(bgp: &Bgp, decisions: &[Decision]) -> String {
    let mut out = String::from(
        "# Written by xlb from its [bgp] section; every change here is overwritten.\n\
         # One static protocol per VIP; xlb enables and disables them over bird's\n\
         # control socket. Export them to your BGP sessions with\n\
         #   export filter xlb_export;\n",
    );
    for v in &bgp.vips {
        let on = decisions.iter().any(|d| d.vip == v.address && d.announce);
        protocol(&mut out, v, on);
    }
    let _ = writeln!(out, "\nfilter {FILTER} {{");
    let _ = writeln!(out, "\tif proto !~ \"{PREFIX}*\" then reject;");
    for v in &bgp.vips {
        let mut set = String::new();
        if let Some(m) = v.med {
            let _ = write!(set, " bgp_med = {m};");
        }
        if let Some(p) = v.local_pref {
            let _ = write!(set, " bgp_local_pref = {p};");
        }
        if !set.is_empty() {
            let _ = writeln!(
                out,
                "\tif net = {}/{} then {{{set} }}",
                v.address,
                host_len(v.address)
            );
        }
    }
    let _ = writeln!(out, "\taccept;\n}}");
    out
}

/// A host route's prefix length.
fn host_len(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

fn protocol(out: &mut String, v: &BgpVip, on: bool) {
    let channel = if v.address.is_ipv4() { "ipv4" } else { "ipv6" };
    let len = host_len(v.address);
    let _ = writeln!(out, "\nprotocol static {} {{", protocol_name(v.address));
    let _ = writeln!(out, "\tdisabled {};", if on { "no" } else { "yes" });
    let _ = writeln!(out, "\t{channel} {{ import all; }};");
    let _ = writeln!(out, "\troute {}/{len} blackhole {{", v.address);
    for (a, b) in &v.communities {
        let _ = writeln!(out, "\t\tbgp_community.add(({a}, {b}));");
    }
    for (a, b, c) in &v.large_communities {
        let _ = writeln!(out, "\t\tbgp_large_community.add(({a}, {b}, {c}));");
    }
    let _ = writeln!(out, "\t}};\n}}");
}

/// The include without its `disabled` lines: what bird must be
/// reconfigured for when it changes (enabling and disabling are commands).
pub fn shape(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("disabled "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::decide::Why;

    fn bgp() -> Bgp {
        let c = crate::config::parse(
            "t.toml",
            r#"
[dataplane]
interfaces = ["eth0"]
[[service]]
vip = "10.0.0.10"
port = 80
[[service.real]]
address = "192.168.1.1"
[[service]]
vip = "2001:db8::10"
port = 80
[[service.real]]
address = "2001:db8:1::1"
[bgp]
[[bgp.vip]]
address = "10.0.0.10"
communities = ["65000:100"]
large_communities = ["65000:1:2"]
local_pref = 200
med = 10
[[bgp.vip]]
address = "2001:db8::10"
"#,
        )
        .unwrap();
        c.bgp.unwrap()
    }

    #[test]
    fn names_are_stable_and_valid_bird_symbols() {
        assert_eq!(
            protocol_name("10.0.0.10".parse().unwrap()),
            "xlb_v4_10_0_0_10"
        );
        assert_eq!(
            protocol_name("2001:db8::10".parse().unwrap()),
            "xlb_v6_20010db8000000000000000000000010"
        );
    }

    #[test]
    fn the_include_carries_attributes_and_decisions() {
        let b = bgp();
        let on = Decision {
            vip: b.vips[0].address,
            announce: true,
            why: Why::Healthy,
        };
        let text = render(&b, &[on]);
        assert!(text.contains(
            "protocol static xlb_v4_10_0_0_10 {\n\tdisabled no;\n\tipv4 { import all; };\n\troute 10.0.0.10/32 blackhole {\n\t\tbgp_community.add((65000, 100));\n\t\tbgp_large_community.add((65000, 1, 2));\n\t};\n}"
        ), "{text}");
        assert!(text.ends_with("filter xlb_export {\n\tif proto !~ \"xlb_*\" then reject;\n\tif net = 10.0.0.10/32 then { bgp_med = 10; bgp_local_pref = 200; }\n\taccept;\n}\n"), "{text}");
        assert!(text.contains("protocol static xlb_v6_20010db8000000000000000000000010 {\n\tdisabled yes;\n\tipv6 { import all; };\n\troute 2001:db8::10/128 blackhole {"), "{text}");
        // Only the decisions differ: the same shape, no reconfiguration.
        assert_eq!(shape(&text), shape(&render(&b, &[])));
        assert_ne!(text, render(&b, &[]));
    }
}
