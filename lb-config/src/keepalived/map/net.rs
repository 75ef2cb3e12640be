//! Lines of address, route and rule blocks (`virtual_ipaddress`,
//! `static_routes`, `virtual_rules` …), in `ip` command syntax.

use super::{Ctx, hint};
use crate::keepalived::{include::Token, tree::Node};
use crate::vrrp::{Route, RouteKind, Rule, RuleAction, Scope, VirtualAddress};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Options keepalived accepts on address lines that xlb does not apply, and
/// whether each takes a value.
const ADDRESS_UNSUPPORTED: &[(&str, bool)] = &[
    ("home", false),
    ("-nodad", false),
    ("nodad", false),
    ("noprefixroute", false),
    ("autojoin", false),
    ("preferred_lft", true),
    ("track_group", true),
    ("peer", true),
];

/// Options of route and rule lines that keep xlb's behaviour: xlb never
/// tracks its addresses, routes and rules (keepalived's `no_track`), and
/// adds routes before the kernel's existing ones (`prepend`, the default).
const ROUTE_SAME: &[&str] = &["no_track", "prepend", "inet", "inet6"];

impl Ctx<'_> {
    fn option_value<'t>(&mut self, words: &[&'t Token], i: usize) -> Option<&'t Token> {
        let v = words.get(i + 1).copied();
        if v.is_none() {
            self.diag
                .error(&words[i].pos, format!("'{}' needs a value", words[i].text));
        }
        v
    }

    fn unknown_option(&mut self, t: &Token, block: &str, known: &[&str]) {
        let hint = hint::closest(&t.text, known.iter().copied())
            .map(|h| format!(" (did you mean '{h}'?)"))
            .unwrap_or_default();
        self.diag.error(
            &t.pos,
            format!("unknown keyword '{}' in {block}{hint}", t.text),
        );
    }

    /// `ADDR[/PREFIX]` (a bare address is a host prefix); `default` is 0/0.
    pub fn prefixed(&mut self, t: &Token, what: &str) -> Option<(IpAddr, u8)> {
        if t.text == "default" || t.text == "all" {
            return Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        }
        let (addr, len) = match t.text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t.text.as_str(), None),
        };
        let Ok(addr) = addr.parse::<IpAddr>() else {
            self.diag.error(
                &t.pos,
                format!(
                    "invalid value '{}' for '{what}' (expected ADDRESS[/PREFIX])",
                    t.text
                ),
            );
            return None;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match len.map(|l| l.parse::<u8>()) {
            None => Some((addr, max)),
            Some(Ok(l)) if l <= max => Some((addr, l)),
            _ => {
                self.diag.error(
                    &t.pos,
                    format!("invalid prefix length in '{}' (expected 0..={max})", t.text),
                );
                None
            }
        }
    }

    fn scope(&mut self, t: &Token) -> Option<Scope> {
        Some(match Scope::from_name(&t.text) {
            Some(scope) => scope,
            None => {
                self.diag.error(
                    &t.pos,
                    format!("invalid value '{}' for 'scope' (expected global, site, link, host or nowhere)", t.text),
                );
                return None;
            }
        })
    }

    fn table(&mut self, t: &Token) -> Option<u32> {
        match t.text.as_str() {
            "main" => Some(254),
            "local" => Some(255),
            "default" => Some(253),
            _ => self.uint(t, "table", 1..=u32::MAX),
        }
    }
}

/// `ADDR[/PREFIX] [brd B] [dev D] [scope S] [label L]`.
pub fn address(cx: &mut Ctx, n: &Node, block: &str) -> Option<VirtualAddress> {
    const KNOWN: [&str; 4] = ["brd", "dev", "scope", "label"];
    let words = n.words();
    let errors = cx.diag.error_count();
    let (address, prefix) = cx.prefixed(words[0], "address")?;
    let mut a = VirtualAddress {
        address,
        prefix,
        dev: None,
        brd: None,
        scope: None,
        label: None,
    };
    let mut i = 1;
    while i < words.len() {
        let w = words[i];
        if w.text == "no_track" {
            // xlb never watches its addresses: keepalived's no_track is its behaviour.
            i += 1;
            continue;
        }
        if let Some((_, value)) = ADDRESS_UNSUPPORTED.iter().find(|(o, _)| *o == w.text) {
            cx.diag.unsupported(
                &w.pos,
                &w.text,
                "address options beyond brd, dev, scope, label and no_track are not implemented",
            );
            i += 1 + usize::from(*value);
            continue;
        }
        if !KNOWN.contains(&w.text.as_str()) {
            // Skip its value too: a misspelt option still has one.
            cx.unknown_option(w, block, &KNOWN);
            i += 2;
            continue;
        }
        let Some(v) = cx.option_value(&words, i) else {
            break;
        };
        match w.text.as_str() {
            "brd" => match v.text.parse::<Ipv4Addr>() {
                Ok(b) if address.is_ipv4() => a.brd = Some(b),
                _ => cx.diag.error(&v.pos, format!("invalid value '{}' for 'brd' (expected an IPv4 broadcast address on an IPv4 address)", v.text)),
            },
            "dev" => a.dev = Some(v.text.clone()),
            "scope" => a.scope = cx.scope(v),
            _ => a.label = Some(v.text.clone()),
        }
        i += 2;
    }
    (cx.diag.error_count() == errors).then_some(a)
}

/// `[TYPE] DEST[/PREFIX] [via GW] [src S] [dev D] [table T] [metric M] [scope S]`,
/// options before or after the destination as keepalived reads them (`src
/// ADDR DEST …`): the first word that is no option is the destination.
pub fn route(cx: &mut Ctx, n: &Node, block: &str) -> Option<Route> {
    const KNOWN: [&str; 7] = ["via", "gw", "src", "dev", "table", "metric", "scope"];
    let words = n.words();
    let errors = cx.diag.error_count();
    // A leading type word (`blackhole 10.9.0.0/16`); none: unicast.
    let (kind, first) = match RouteKind::from_name(&words[0].text) {
        Some(kind) => (kind, 1),
        None => (RouteKind::Unicast, 0),
    };
    let mut r = Route {
        kind,
        dest: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
        via: None,
        src: None,
        dev: None,
        table: None,
        metric: None,
        scope: None,
    };
    let mut dest: Option<&Token> = None;
    let mut i = first;
    while i < words.len() {
        let w = words[i];
        let text = w.text.as_str();
        if ROUTE_SAME.contains(&text) {
            i += 1;
            continue;
        }
        match text {
            "onlink" | "append" => {
                cx.diag.unsupported(
                    &w.pos,
                    text,
                    "route flags beyond the kernel's defaults are not implemented",
                );
                i += 1;
                continue;
            }
            "or" | "nexthop" => {
                cx.diag
                    .unsupported(&w.pos, text, "multipath routes are not implemented");
                break;
            }
            _ => {}
        }
        if !KNOWN.contains(&text) {
            if dest.is_none() && (text.contains(['.', ':']) || text == "default") {
                dest = Some(w);
                i += 1;
                continue;
            }
            // Skip its value too: a misspelt option still has one.
            cx.unknown_option(w, block, &KNOWN);
            i += 2;
            continue;
        }
        let Some(v) = cx.option_value(&words, i) else {
            break;
        };
        match text {
            "via" | "gw" => r.via = cx.ip(v, "via"),
            "src" => r.src = cx.ip(v, "src"),
            "dev" => r.dev = Some(v.text.clone()),
            "table" => r.table = cx.table(v),
            "metric" => r.metric = cx.uint(v, "metric", 0..=u32::MAX),
            _ => r.scope = cx.scope(v),
        }
        i += 2;
    }
    let Some(dest_tok) = dest else {
        if cx.diag.error_count() == errors {
            cx.diag.error(&words[0].pos, "a route needs a destination");
        }
        return None;
    };
    (r.dest, r.prefix) = cx.prefixed(dest_tok, "route destination")?;
    if let Some(via) = r.via
        && via.is_ipv4() != r.dest.is_ipv4()
        && r.prefix != 0
    {
        cx.diag.error(
            &dest_tok.pos,
            "the gateway and the destination are of different address families",
        );
    }
    // `default via 2001:db8::1` is the IPv6 default route.
    if r.prefix == 0 && r.dest.is_unspecified() && r.via.is_some_and(|v| v.is_ipv6()) {
        r.dest = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    }
    (cx.diag.error_count() == errors).then_some(r)
}

/// `[from A[/P]] [to A[/P]] [fwmark M[/MASK]] [iif I] [oif O] [priority N] (table T | blackhole | unreachable | prohibit)`.
pub fn rule(cx: &mut Ctx, n: &Node, block: &str) -> Option<Rule> {
    const KNOWN: [&str; 13] = [
        "from",
        "to",
        "fwmark",
        "iif",
        "oif",
        "priority",
        "preference",
        "prio",
        "table",
        "lookup",
        "blackhole",
        "unreachable",
        "prohibit",
    ];
    let words = n.words();
    let errors = cx.diag.error_count();
    let mut r = Rule {
        ipv6: false,
        from: None,
        to: None,
        fwmark: None,
        iif: None,
        oif: None,
        priority: None,
        action: RuleAction::Blackhole,
    };
    let mut action = None;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        match w.text.as_str() {
            // xlb never watches its rules: keepalived's no_track is its behaviour.
            "no_track" => {
                i += 1;
                continue;
            }
            "blackhole" | "unreachable" | "prohibit" => {
                action = Some(match w.text.as_str() {
                    "blackhole" => RuleAction::Blackhole,
                    "unreachable" => RuleAction::Unreachable,
                    _ => RuleAction::Prohibit,
                });
                i += 1;
                continue;
            }
            t if !KNOWN.contains(&t) => {
                cx.unknown_option(w, block, &KNOWN);
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(v) = cx.option_value(&words, i) else {
            break;
        };
        match w.text.as_str() {
            "from" => r.from = cx.prefixed(v, "from"),
            "to" => r.to = cx.prefixed(v, "to"),
            "fwmark" => {
                let (m, mask) = match v.text.split_once('/') {
                    Some((m, k)) => (m, Some(k)),
                    None => (v.text.as_str(), None),
                };
                let num = |s: &str| match s.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                };
                match (num(m), mask.map(num)) {
                    (Some(m), None) => r.fwmark = Some((m, None)),
                    (Some(m), Some(Some(k))) => r.fwmark = Some((m, Some(k))),
                    _ => cx.diag.error(
                        &v.pos,
                        format!(
                            "invalid value '{}' for 'fwmark' (expected MARK or MARK/MASK)",
                            v.text
                        ),
                    ),
                }
            }
            "iif" => r.iif = Some(v.text.clone()),
            "oif" => r.oif = Some(v.text.clone()),
            "priority" | "preference" | "prio" => r.priority = cx.uint(v, "priority", 0..=u32::MAX),
            _ => action = cx.table(v).map(RuleAction::Table),
        }
        i += 2;
    }
    r.ipv6 = [r.from, r.to].iter().flatten().any(|(a, _)| a.is_ipv6());
    match action {
        Some(a) => r.action = a,
        None if cx.diag.error_count() == errors => {
            cx.diag.error(
                &words[0].pos,
                "a rule needs 'table N', 'blackhole', 'unreachable' or 'prohibit'",
            );
        }
        None => {}
    }
    (cx.diag.error_count() == errors).then_some(r)
}
