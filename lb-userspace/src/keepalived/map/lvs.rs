//! `virtual_server_group`, `virtual_server` and `real_server`.

use super::{Ctx, check, hint};
use crate::config::{
    Method, Persistence, Protocol, Real, SchedFlags, Scheduler, Service, ServiceId, Tunnel,
    check::{RealLifecycle, ServiceLifecycle, SorryServer},
};
use crate::keepalived::{diag::Pos, include::Token, keywords::Area, tree::Node};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

#[derive(Clone, Copy, Debug)]
pub enum GroupMember {
    Addr(IpAddr, u16),
    Fwmark(u32),
}

/// keepalived's default scheduler and forwarding method.
const DEFAULT_SCHEDULER: Scheduler = Scheduler::Wlc;
const DEFAULT_METHOD: Method = Method::Nat;
/// `persistence_timeout` without a value.
const DEFAULT_PERSISTENCE: u32 = 360;
/// Addresses one range line may expand to.
const MAX_RANGE: u32 = 256;

/// `virtual_server_group NAME { ADDR[-LAST] PORT | fwmark N … }`.
pub fn group(cx: &mut Ctx, n: &Node) -> Vec<GroupMember> {
    let mut out = Vec::new();
    for l in n.children() {
        let w = l.words();
        match w.as_slice() {
            [f, mark] if f.text == "fwmark" => {
                if let Some(m) = cx.uint(mark, "fwmark", 1..=u32::MAX) {
                    out.push(GroupMember::Fwmark(m));
                }
            }
            [addr, port] => {
                let Some(p) = cx.port(port, "port") else {
                    continue;
                };
                for a in range(cx, addr) {
                    out.push(GroupMember::Addr(a, p));
                }
            }
            _ => cx.diag.error(
                l.pos(),
                "a virtual_server_group line is 'ADDRESS[-LAST] PORT' or 'fwmark N'",
            ),
        }
    }
    out
}

/// `10.0.0.1-20` (last IPv4 octet or last IPv6 group) or a single address.
fn range(cx: &mut Ctx, t: &Token) -> Vec<IpAddr> {
    let bad = |cx: &mut Ctx| {
        cx.diag.error(
            &t.pos,
            format!(
                "invalid value '{}' for a group address (expected ADDRESS or ADDRESS-LAST)",
                t.text
            ),
        );
        Vec::new()
    };
    let Some((first, last)) = t.text.rsplit_once('-') else {
        return match t.text.parse() {
            Ok(a) => vec![a],
            Err(_) => bad(cx),
        };
    };
    match first.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let o = a.octets();
            match last.parse::<u8>() {
                Ok(l) if l >= o[3] => (o[3]..=l)
                    .map(|x| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)))
                    .collect(),
                _ => bad(cx),
            }
        }
        Ok(IpAddr::V6(a)) => {
            let s = a.segments();
            match u16::from_str_radix(last, 16) {
                Ok(l) if l >= s[7] && u32::from(l - s[7]) < MAX_RANGE => (s[7]..=l)
                    .map(|x| {
                        let mut g = s;
                        g[7] = x;
                        IpAddr::V6(Ipv6Addr::from(g))
                    })
                    .collect(),
                _ => bad(cx),
            }
        }
        Err(_) => bad(cx),
    }
}

/// One `virtual_server` block: one service, or one per group member.
pub fn virtual_server(
    cx: &mut Ctx,
    n: &Node,
    groups: &HashMap<String, (Pos, Vec<GroupMember>)>,
) -> Vec<(Service, Pos)> {
    let errors = cx.diag.error_count();
    let members: Vec<GroupMember> = match n.args.as_slice() {
        [f, mark] if f.text == "fwmark" => cx
            .uint(mark, "fwmark", 1..=u32::MAX)
            .map(GroupMember::Fwmark)
            .into_iter()
            .collect(),
        [g, name] if g.text == "group" => match groups.get(&name.text) {
            Some((_, m)) => m.clone(),
            None => {
                let h = hint::closest(&name.text, groups.keys().map(|k| k.as_str()))
                    .map(|h| format!(" (did you mean '{h}'?)"))
                    .unwrap_or_default();
                cx.diag.error(
                    &name.pos,
                    format!(
                        "virtual_server group '{}' names no virtual_server_group{h}",
                        name.text
                    ),
                );
                Vec::new()
            }
        },
        [addr, port] => match (cx.ip(addr, "virtual_server"), cx.port(port, "port")) {
            (Some(a), Some(p)) => vec![GroupMember::Addr(a, p)],
            _ => Vec::new(),
        },
        _ => {
            cx.diag.error(
                n.pos(),
                "virtual_server takes 'ADDRESS PORT', 'fwmark N' or 'group NAME'",
            );
            Vec::new()
        }
    };
    let selected = cx.select(Area::VirtualServer, n.children());
    let mut s = Settings::default();
    for k in selected.iter().filter(|k| k.name() != "real_server") {
        s.keyword(cx, k);
    }
    s.finish(cx, n);
    let Some(first) = members.first() else {
        return Vec::new();
    };
    // Reals of a fwmark or group service default to the service's port (if any).
    let vs_port = match first {
        GroupMember::Addr(_, p) => *p,
        GroupMember::Fwmark(_) => 0,
    };
    let mut reals: Vec<(Real, Pos)> = Vec::new();
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for k in selected.iter().filter(|k| k.name() == "real_server") {
        if let Some(r) = real_server(cx, k, vs_port, s.lifecycle.delay_loop) {
            if let Some(line) = seen.get(&(r.address, r.port)) {
                cx.diag.error(
                    k.pos(),
                    format!(
                        "real_server {} {} is already listed at line {line}",
                        r.address, r.port
                    ),
                );
            } else {
                seen.insert((r.address, r.port), k.pos().line);
                reals.push((r, k.pos().clone()));
            }
        }
    }
    if cx.diag.error_count() != errors {
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in members {
        let id = match m {
            GroupMember::Addr(vip, port) => ServiceId::Addr {
                vip,
                port,
                protocol: s.protocol,
            },
            GroupMember::Fwmark(mark) => ServiceId::Fwmark { mark, ipv6: s.ipv6 },
        };
        let persistence = s.persistence.map(|(timeout_s, mask)| Persistence {
            timeout_s,
            mask: mask.unwrap_or(if id.is_ipv6() {
                IpAddr::V6(Ipv6Addr::from(u128::MAX))
            } else {
                IpAddr::V4(Ipv4Addr::BROADCAST)
            }),
        });
        if let Some(p) = &persistence
            && p.mask.is_ipv6() != id.is_ipv6()
        {
            cx.diag.error(
                n.pos(),
                format!("service {id}: persistence_granularity is of the other address family"),
            );
            continue;
        }
        // A group's reals on port 0 take each member's port.
        let mut ok = true;
        let mut members_reals = Vec::new();
        for (r, pos) in &reals {
            let r = Real {
                port: if r.port == 0 {
                    id.addr().map_or(0, |a| a.1)
                } else {
                    r.port
                },
                ..r.clone()
            };
            if let Some((vip, port, _)) = id.addr() {
                // A tunnel may cross families (IPv4 in IPv6 and back); DR and NAT cannot.
                if s.method != Method::Tun && r.address.is_ipv4() != vip.is_ipv4() {
                    cx.diag.error(
                        pos,
                        format!(
                            "real server {} is not of the VIP's address family",
                            r.address
                        ),
                    );
                    ok = false;
                }
                if matches!(s.method, Method::Dr | Method::Tun) && r.port != port {
                    let what = if s.method == Method::Dr {
                        "direct routing"
                    } else {
                        "tunnelling"
                    };
                    cx.diag.error(pos, format!(
                        "{what} cannot change the port: real server port {} differs from the service port {port}",
                        r.port
                    ));
                    ok = false;
                }
            }
            members_reals.push(r);
        }
        if !ok {
            continue;
        }
        let reals = members_reals;
        out.push((
            Service {
                id,
                scheduler: s.scheduler,
                method: s.method,
                tunnel: (s.method == Method::Tun).then_some(Tunnel::Ipip),
                active: true,
                flags: s.flags,
                persistence,
                reals,
                lifecycle: s.lifecycle.clone(),
            },
            n.pos().clone(),
        ));
    }
    out
}

struct Settings {
    scheduler: Scheduler,
    method: Method,
    protocol: Protocol,
    ipv6: bool,
    flags: SchedFlags,
    flag_tokens: Vec<(String, Pos)>,
    persistence: Option<(u32, Option<IpAddr>)>,
    lifecycle: ServiceLifecycle,
    sorry_inhibit: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scheduler: DEFAULT_SCHEDULER,
            method: DEFAULT_METHOD,
            protocol: Protocol::Tcp,
            ipv6: false,
            flags: SchedFlags::default(),
            flag_tokens: Vec::new(),
            persistence: None,
            lifecycle: ServiceLifecycle::default(),
            sorry_inhibit: false,
        }
    }
}

impl Settings {
    fn keyword(&mut self, cx: &mut Ctx, k: &Node) {
        let a = || &k.args[0];
        let l = &mut self.lifecycle;
        match k.name() {
            "delay_loop" => match cx.secs(a(), "delay_loop", 86400.0) {
                Some(d) if !d.is_zero() => l.delay_loop = d,
                Some(_) => cx.diag.error(
                    &a().pos,
                    "invalid value '0' for 'delay_loop' (expected seconds above 0)",
                ),
                None => {}
            },
            "lb_algo" | "lvs_sched" => match Scheduler::from_name(&a().text) {
                Some(s) => self.scheduler = s,
                None => {
                    let names: Vec<&str> = Scheduler::ALL.iter().map(|e| e.1).collect();
                    cx.diag.error(
                        &a().pos,
                        format!(
                            "invalid value '{}' for '{}' (expected one of {})",
                            a().text,
                            k.name(),
                            names.join(", ")
                        ),
                    );
                }
            },
            "lb_kind" | "lvs_method" => match a().text.as_str() {
                "NAT" => self.method = Method::Nat,
                "DR" => self.method = Method::Dr,
                "TUN" => self.method = Method::Tun,
                _ => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for '{}' (expected NAT, DR or TUN)",
                        a().text,
                        k.name()
                    ),
                ),
            },
            "persistence_timeout" => {
                let t = match k.args.first() {
                    None => Some(DEFAULT_PERSISTENCE),
                    Some(t) => cx.uint(t, "persistence_timeout", 1..=365 * 86400),
                };
                if let Some(t) = t {
                    let mask = self.persistence.and_then(|p| p.1);
                    self.persistence = Some((t, mask));
                }
            }
            "persistence_granularity" => {
                let t = a();
                let mask = match t.text.parse::<Ipv4Addr>() {
                    Ok(m) if u32::from(m).leading_ones() == u32::from(m).count_ones() => {
                        Some(IpAddr::V4(m))
                    }
                    Ok(_) => None,
                    Err(_) => t
                        .text
                        .parse::<u32>()
                        .ok()
                        .filter(|p| (1..=128).contains(p))
                        .map(|p| IpAddr::V6(Ipv6Addr::from(u128::MAX << (128 - p)))),
                };
                match mask {
                    Some(m) => {
                        let timeout = self.persistence.map(|p| p.0);
                        self.persistence = Some((timeout.unwrap_or(0), Some(m)));
                    }
                    None => cx.diag.error(&t.pos, format!("invalid value '{}' for 'persistence_granularity' (expected an IPv4 netmask such as 255.255.255.0 or an IPv6 prefix length)", t.text)),
                }
            }
            "protocol" => match a().text.as_str() {
                "TCP" => self.protocol = Protocol::Tcp,
                "UDP" => self.protocol = Protocol::Udp,
                "SCTP" => cx.diag.error(
                    &a().pos,
                    "invalid value 'SCTP' for 'protocol' (xlb forwards TCP and UDP only)",
                ),
                _ => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for 'protocol' (expected TCP, UDP or SCTP)",
                        a().text
                    ),
                ),
            },
            "ha_suspend" => l.ha_suspend = true,
            "virtualhost" => l.virtualhost = Some(a().text.clone()),
            "alpha" => l.alpha = true,
            "smtp_alert" => l.smtp_alert = cx.boolean(k),
            "omega" => l.omega = true,
            "quorum" => l.quorum = cx.uint(a(), "quorum", 1..=u32::MAX).unwrap_or(1),
            "hysteresis" => l.hysteresis = cx.uint(a(), "hysteresis", 0..=u32::MAX).unwrap_or(0),
            "quorum_up" => l.quorum_up = cx.command(k),
            "quorum_down" => l.quorum_down = cx.command(k),
            "sorry_server" => {
                let (addr, port) = (cx.ip(a(), "sorry_server"), cx.port(&k.args[1], "port"));
                if let (Some(address), Some(port)) = (addr, port) {
                    l.sorry_server = Some(SorryServer {
                        address,
                        port,
                        inhibit: self.sorry_inhibit,
                    });
                }
            }
            "sorry_server_inhibit" => {
                self.sorry_inhibit = true;
                if let Some(s) = &mut l.sorry_server {
                    s.inhibit = true;
                }
            }
            "ip_family" => match a().text.as_str() {
                "inet" => self.ipv6 = false,
                "inet6" => self.ipv6 = true,
                _ => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for 'ip_family' (expected inet or inet6)",
                        a().text
                    ),
                ),
            },
            flag => {
                // sh-port, sh-fallback, mh-port, mh-fallback
                if flag.ends_with("-port") {
                    self.flags.hash_port = true;
                } else {
                    self.flags.fallback = true;
                }
                self.flag_tokens.push((flag.to_string(), k.pos().clone()));
            }
        }
    }

    /// Checks between keywords, once the block is read.
    fn finish(&mut self, cx: &mut Ctx, n: &Node) {
        for (flag, pos) in &self.flag_tokens {
            let owner = if flag.starts_with("sh") {
                Scheduler::Sh
            } else {
                Scheduler::Mh
            };
            if owner != self.scheduler {
                cx.diag.error(
                    pos,
                    format!(
                        "'{flag}' belongs to scheduler '{}', not '{}'",
                        owner.name(),
                        self.scheduler.name()
                    ),
                );
            }
        }
        if let Some((0, _)) = self.persistence {
            cx.diag.error(
                n.pos(),
                "'persistence_granularity' needs 'persistence_timeout'",
            );
        }
    }
}

fn real_server(cx: &mut Ctx, n: &Node, vs_port: u16, delay_loop: Duration) -> Option<Real> {
    let errors = cx.diag.error_count();
    let address = cx.ip(&n.args[0], "real_server");
    let port = match n.args.get(1) {
        Some(p) => cx.port(p, "port"),
        None => Some(vs_port),
    };
    let mut r = Real {
        address: address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port: port.unwrap_or(0),
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        lifecycle: RealLifecycle::default(),
    };
    let mut lthreshold: Option<&Token> = None;
    for k in cx.select(Area::RealServer, n.children()) {
        let a = || &k.args[0];
        match k.name() {
            "weight" => r.weight = cx.uint(a(), "weight", 0..=65535).unwrap_or(1),
            "inhibit_on_failure" => r.lifecycle.inhibit_on_failure = true,
            "smtp_alert" => r.lifecycle.smtp_alert = cx.boolean(k),
            "notify_up" => r.lifecycle.notify_up = cx.command(k),
            "notify_down" => r.lifecycle.notify_down = cx.command(k),
            "uthreshold" => r.u_threshold = cx.uint(a(), "uthreshold", 0..=u32::MAX).unwrap_or(0),
            "lthreshold" => {
                r.l_threshold = cx.uint(a(), "lthreshold", 0..=u32::MAX).unwrap_or(0);
                lthreshold = Some(a());
            }
            _ => {
                if let Some(c) = check::check(cx, k, delay_loop) {
                    r.lifecycle.checks.push(c);
                }
            }
        }
    }
    if let Some(t) = lthreshold
        && r.u_threshold != 0
        && r.l_threshold > r.u_threshold
    {
        cx.diag.error(
            &t.pos,
            format!(
                "lthreshold {} is above uthreshold {}; the real would never take connections again",
                r.l_threshold, r.u_threshold
            ),
        );
    }
    (cx.diag.error_count() == errors).then_some(r)
}
