//! `virtual_server_group`, `virtual_server` and `real_server`. What
//! keepalived 2.2.7 corrects with a message (`validate_check_config`: a
//! missing protocol, ports that differ under DR, a duplicated real, a quorum
//! above the reals' weights …) xlb corrects the same way, with a warning at
//! the keyword.

use super::{
    Ctx,
    check::{self, Inherited},
    hint,
};
use crate::keepalived::{diag::Pos, include::Token, keywords::Area, tree::Node};
use crate::{
    Method, Persistence, Protocol, Real, SchedFlags, Scheduler, Service, ServiceId, Tunnel,
    check::{RealLifecycle, ServiceLifecycle, SorryServer},
    defaults,
};
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

/// Addresses one range line may expand to.
const MAX_RANGE: u32 = 256;
/// keepalived's largest weight (ip_vs.h `IPVS_WEIGHT_LIMIT`, INT32_MAX).
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

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

/// Where a real server's parts were written, for the semantic check.
#[derive(Clone)]
pub struct RealAt {
    pub at: Pos,
    pub address: Pos,
    pub l_threshold: Option<Pos>,
}

/// Where a service's parts were written, for the semantic check.
pub struct ServiceAt {
    pub at: Pos,
    pub mask: Option<Pos>,
    pub sorry: Option<Pos>,
    pub reals: Vec<RealAt>,
}

/// One `virtual_server` block: one service, or one per group member.
pub fn virtual_server(
    cx: &mut Ctx,
    n: &Node,
    groups: &HashMap<String, (Pos, Vec<GroupMember>)>,
) -> Vec<(Service, ServiceAt)> {
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
    let by_addr = members.iter().any(|m| matches!(m, GroupMember::Addr(..)));
    s.finish(cx, n, by_addr);
    let Some(first) = members.first() else {
        return Vec::new();
    };
    // Reals of a fwmark or group service default to the service's port (if any).
    let vs_port = match first {
        GroupMember::Addr(_, p) => *p,
        GroupMember::Fwmark(_) => 0,
    };
    let inherited = s.inherited();
    let mut reals: Vec<(Real, RealAt)> = Vec::new();
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for k in selected.iter().filter(|k| k.name() == "real_server") {
        if let Some((r, at)) = real_server(cx, k, vs_port, &s, &inherited) {
            if let Some(line) = seen.get(&(r.address, r.port)) {
                cx.diag.warning(
                    k.pos(),
                    format!(
                        "real_server {} {} is already listed at line {line}; this one is left out (as keepalived 2.2.7 does)",
                        r.address, r.port
                    ),
                );
            } else {
                seen.insert((r.address, r.port), k.pos().line);
                reals.push((r, at));
            }
        }
    }
    if cx.diag.error_count() != errors {
        return Vec::new();
    }
    if reals.is_empty() {
        cx.diag.warning(
            n.pos(),
            "virtual_server has no real_server; it is left out (as keepalived 2.2.7 does)",
        );
        return Vec::new();
    }
    let mut lifecycle = s.lifecycle.clone();
    s.quorum_fits(cx, n, &reals, &mut lifecycle);
    // keepalived takes a fwmark service's family from its first real
    // unless `ip_family` says it.
    if !s.family_given {
        s.ipv6 = reals[0].0.address.is_ipv6();
    }
    let mut out = Vec::new();
    for m in members {
        let id = match m {
            GroupMember::Addr(vip, port) => ServiceId::Addr {
                vip,
                port,
                protocol: s.protocol.unwrap_or(crate::defaults::keepalived::PROTOCOL),
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
        let mut members_reals = Vec::new();
        for (r, at) in &reals {
            let pos = &at.at;
            let mut r = r.clone();
            if let Some((_, port, _)) = id.addr() {
                if r.port == 0 {
                    // A group's reals without a port take each member's.
                    r.port = port;
                } else if s.method != Method::Nat && r.port != port {
                    cx.diag.warning(pos, format!(
                        "{} cannot change the port: real server port {} differs from the service port {port}; the service port is used (as keepalived 2.2.7 does)",
                        if s.method == Method::Dr { "direct routing" } else { "tunnelling" },
                        r.port
                    ));
                    r.port = port;
                }
            }
            members_reals.push(r);
        }
        let mut lifecycle = lifecycle.clone();
        if let (Some(sorry), Some((_, port, _))) = (&mut lifecycle.sorry_server, id.addr())
            && (sorry.port == 0 || s.method != Method::Nat)
        {
            sorry.port = port;
        }
        out.push((
            Service {
                id,
                scheduler: s.scheduler,
                method: s.method,
                tunnel: (s.method == Method::Tun).then_some(s.tunnel),
                active: true,
                flags: s.flags,
                persistence,
                reals: members_reals,
                lifecycle,
                group: None,
            },
            ServiceAt {
                at: n.pos().clone(),
                mask: s.mask_pos.clone(),
                sorry: n
                    .children()
                    .iter()
                    .rfind(|k| k.name() == "sorry_server")
                    .and_then(|k| k.args.first())
                    .map(|a| a.pos.clone()),
                reals: reals.iter().map(|(_, at)| at.clone()).collect(),
            },
        ));
    }
    out
}

struct Settings {
    scheduler: Scheduler,
    method: Method,
    tunnel: Tunnel,
    /// `None`: not given (keepalived 2.2.7 then uses UDP, and says so).
    protocol: Option<Protocol>,
    protocol_pos: Option<Pos>,
    ipv6: bool,
    /// `ip_family` was given (else a fwmark service takes its first real's).
    family_given: bool,
    flags: SchedFlags,
    /// `flag-1` / `flag-2`: IPVS's scheduler flags, whatever the scheduler.
    raw_flags: Vec<(String, Pos)>,
    persistence: Option<(u32, Option<IpAddr>)>,
    /// Where `persistence_granularity` was written.
    mask_pos: Option<Pos>,
    lifecycle: ServiceLifecycle,
    ha_suspend_pos: Option<Pos>,
    // Handed down to the reals.
    connect_timeout: Duration,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    alpha: bool,
    inhibit: bool,
    weight: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scheduler: crate::defaults::keepalived::SCHEDULER,
            method: crate::defaults::keepalived::METHOD,
            tunnel: Tunnel::Ipip,
            protocol: None,
            protocol_pos: None,
            ipv6: false,
            family_given: false,
            flags: SchedFlags::default(),
            raw_flags: Vec::new(),
            persistence: None,
            mask_pos: None,
            lifecycle: ServiceLifecycle::default(),
            ha_suspend_pos: None,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            alpha: false,
            inhibit: false,
            weight: crate::defaults::REAL_WEIGHT,
        }
    }
}

/// `NAT|DR|TUN [type ipip|gue] [port N] [nocsum]` (`lb_kind`, `lvs_method`,
/// `sorry_server_lvs_method`): the method and, for TUN, the tunnel.
fn forwarding(cx: &mut Ctx, k: &Node) -> Option<(Method, Tunnel)> {
    let a = &k.args[0];
    let method = match a.text.as_str() {
        "NAT" => Method::Nat,
        "DR" => Method::Dr,
        "TUN" => Method::Tun,
        _ => {
            cx.diag.error(
                &a.pos,
                format!(
                    "invalid value '{}' for '{}' (expected NAT, DR or TUN)",
                    a.text,
                    k.name()
                ),
            );
            return None;
        }
    };
    let (mut gue, mut port, mut type_pos) = (false, None, &a.pos);
    let mut i = 1;
    while let Some(w) = k.args.get(i) {
        let value = k.args.get(i + 1);
        match (w.text.as_str(), value) {
            ("type", Some(v)) => {
                type_pos = &v.pos;
                match v.text.as_str() {
                    "ipip" => gue = false,
                    "gue" => gue = true,
                    "gre" => {
                        cx.diag.unsupported(
                            &v.pos,
                            "type gre",
                            "xlb tunnels with IPIP and GUE only",
                        );
                        return None;
                    }
                    _ => {
                        cx.diag.error(
                            &v.pos,
                            format!(
                                "invalid value '{}' for 'type' (expected ipip or gue)",
                                v.text
                            ),
                        );
                        return None;
                    }
                }
                i += 2;
            }
            ("port", Some(v)) => {
                port = Some(cx.uint(v, "port", 1..=65535)? as u16);
                i += 2;
            }
            // GUE without checksums, which is what xlb sends.
            ("nocsum", _) => i += 1,
            ("csum" | "remcsum", _) => {
                cx.diag
                    .unsupported(&w.pos, &w.text, "xlb sends GUE without checksums (nocsum)");
                return None;
            }
            ("type" | "port", None) => {
                cx.diag.error(&w.pos, format!("'{}' needs a value", w.text));
                return None;
            }
            _ => {
                cx.diag.error(
                    &w.pos,
                    format!(
                        "unknown keyword '{}' in {} (expected type, port or nocsum)",
                        w.text,
                        k.name()
                    ),
                );
                return None;
            }
        }
    }
    if k.args.len() > 1 && method != Method::Tun {
        cx.diag.error(
            &k.args[1].pos,
            format!("tunnel options apply to TUN only, not {}", a.text),
        );
        return None;
    }
    match (gue, port) {
        (true, Some(port)) => Some((method, Tunnel::Gue { port })),
        (false, None) => Some((method, Tunnel::Ipip)),
        _ => {
            cx.diag.error(
                type_pos,
                "gue tunnels require a port, and only they take one",
            );
            None
        }
    }
}

impl Settings {
    fn keyword(&mut self, cx: &mut Ctx, k: &Node) {
        let a = || &k.args[0];
        let l = &mut self.lifecycle;
        match k.name() {
            "delay_loop" => {
                if let Some(d) = check::delay_loop(cx, a()) {
                    l.delay_loop = d;
                }
            }
            "connect_timeout" => {
                if let Some(d) = check::timeout(cx, a(), "connect_timeout") {
                    self.connect_timeout = d;
                }
            }
            "retry" => self.retry = cx.uint(a(), "retry", 0..=u32::MAX),
            "delay_before_retry" => self.delay_before_retry = cx.secs(a(), "delay_before_retry", 3600.0),
            "warmup" => self.warmup = cx.secs(a(), "warmup", 3600.0),
            "inhibit_on_failure" => self.inhibit = true,
            "weight" => {
                if let Some(w) = cx.uint(a(), "weight", 1..=MAX_WEIGHT) {
                    self.weight = w;
                }
            }
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
            "lb_kind" | "lvs_method" => {
                if let Some((m, t)) = forwarding(cx, k) {
                    self.method = m;
                    self.tunnel = t;
                }
            }
            "persistence_timeout" => {
                let t = match k.args.first() {
                    None => Some(defaults::PERSISTENCE_TIMEOUT),
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
                        self.mask_pos = Some(t.pos.clone());
                        let timeout = self.persistence.map(|p| p.0);
                        self.persistence = Some((timeout.unwrap_or(0), Some(m)));
                    }
                    None => cx.diag.error(&t.pos, format!("invalid value '{}' for 'persistence_granularity' (expected an IPv4 netmask such as 255.255.255.0 or an IPv6 prefix length)", t.text)),
                }
            }
            // keepalived compares without case: `protocol tcp` is TCP.
            "protocol" => match a().text.to_ascii_uppercase().as_str() {
                "TCP" => self.protocol = Some(Protocol::Tcp),
                "UDP" => self.protocol = Some(Protocol::Udp),
                "SCTP" => cx.diag.error(
                    &a().pos,
                    format!("invalid value '{}' for 'protocol' (xlb forwards TCP and UDP only)", a().text),
                ),
                _ => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for 'protocol' (expected TCP, UDP or SCTP)",
                        a().text
                    ),
                ),
            },
            "ha_suspend" => {
                l.ha_suspend = true;
                self.ha_suspend_pos = Some(k.pos().clone());
            }
            "virtualhost" => l.virtualhost = Some(a().text.clone()),
            "alpha" => self.alpha = true,
            "smtp_alert" => l.smtp_alert = cx.boolean(k),
            "omega" => l.omega = true,
            "quorum" => l.quorum = cx.uint(a(), "quorum", 1..=u32::MAX).unwrap_or(1),
            "hysteresis" => l.hysteresis = cx.uint(a(), "hysteresis", 0..=u32::MAX).unwrap_or(0),
            "quorum_up" => l.quorum_up = cx.command(k),
            "quorum_down" => l.quorum_down = cx.command(k),
            "sorry_server" => {
                let addr = cx.ip(a(), "sorry_server");
                // No port: the service's, filled in per service.
                let port = match k.args.get(1) {
                    Some(p) => cx.port(p, "port"),
                    None => Some(0),
                };
                if let (Some(address), Some(port)) = (addr, port) {
                    l.sorry_server = Some(SorryServer {
                        address,
                        port,
                        inhibit: false,
                    });
                }
            }
            "sorry_server_inhibit" => match &mut l.sorry_server {
                Some(s) => s.inhibit = true,
                None => cx.diag.warning(
                    k.pos(),
                    "'sorry_server_inhibit' before (or without) 'sorry_server' is ignored, as keepalived 2.2.7 ignores it",
                ),
            },
            "sorry_server_lvs_method" => {
                if l.sorry_server.is_none() {
                    cx.diag.warning(
                        k.pos(),
                        "'sorry_server_lvs_method' before (or without) 'sorry_server' is ignored, as keepalived 2.2.7 ignores it",
                    );
                } else if let Some(m) = forwarding(cx, k)
                    && m != (self.method, self.tunnel)
                {
                    cx.diag.unsupported(k.pos(), k.name(), "xlb forwards to the sorry server with the service's lb_kind");
                }
            }
            "ip_family" => match a().text.as_str() {
                "inet" => (self.ipv6, self.family_given) = (false, true),
                "inet6" => (self.ipv6, self.family_given) = (true, true),
                _ => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for 'ip_family' (expected inet or inet6)",
                        a().text
                    ),
                ),
            },
            "flag-1" | "flag-2" => self.raw_flags.push((k.name().to_string(), k.pos().clone())),
            flag => {
                // sh-port, sh-fallback, mh-port, mh-fallback: keepalived sets
                // them only when the scheduler named so far is theirs.
                let owner = if flag.starts_with("sh") {
                    Scheduler::Sh
                } else {
                    Scheduler::Mh
                };
                if owner == self.scheduler {
                    if flag.ends_with("-port") {
                        self.flags.hash_port = true;
                    } else {
                        self.flags.fallback = true;
                    }
                } else {
                    cx.diag.warning(
                        k.pos(),
                        format!(
                            "'{flag}' is ignored: it applies to scheduler '{}' and the scheduler so far is '{}' (keepalived 2.2.7 ignores it too)",
                            owner.name(),
                            self.scheduler.name()
                        ),
                    );
                }
            }
        }
        if k.name() == "protocol" {
            self.protocol_pos = Some(k.pos().clone());
        }
    }

    /// Checks between keywords, once the block is read. `by_addr`: the
    /// service is an address (not only firewall marks).
    fn finish(&mut self, cx: &mut Ctx, n: &Node, by_addr: bool) {
        // IPVS's scheduler flags 1 and 2 are sh/mh's fallback and port.
        for (flag, pos) in &self.raw_flags {
            if matches!(self.scheduler, Scheduler::Sh | Scheduler::Mh) {
                if flag == "flag-1" {
                    self.flags.fallback = true;
                } else {
                    self.flags.hash_port = true;
                }
            } else {
                cx.diag.warning(
                    pos,
                    format!(
                        "'{flag}' has no effect on scheduler '{}' (only sh and mh read it)",
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
        if by_addr && self.protocol.is_none() {
            cx.diag.warning(
                n.pos(),
                "virtual_server has no 'protocol'; it is UDP, as keepalived 2.2.7 defaults it",
            );
        }
        if !by_addr {
            if let Some(pos) = &self.protocol_pos {
                cx.diag.warning(
                    pos,
                    "'protocol' is ignored on a fwmark virtual_server (as keepalived 2.2.7 ignores it)",
                );
            }
            if let Some(pos) = &self.ha_suspend_pos {
                cx.diag.warning(
                    pos,
                    "'ha_suspend' is cleared on a fwmark virtual_server (as keepalived 2.2.7 clears it)",
                );
                self.lifecycle.ha_suspend = false;
            }
        }
    }

    /// What the virtual server hands down to its reals' checkers.
    fn inherited(&self) -> Inherited {
        Inherited {
            delay_loop: self.lifecycle.delay_loop,
            connect_timeout: self.connect_timeout,
            retry: self.retry,
            delay_before_retry: self.delay_before_retry,
            warmup: self.warmup,
            alpha: self.alpha,
            virtualhost: None,
            vs_delay_loop: self.lifecycle.delay_loop,
        }
    }

    /// keepalived lowers a quorum the reals' weights cannot reach, and a
    /// hysteresis that is not below the quorum.
    fn quorum_fits(
        &self,
        cx: &mut Ctx,
        n: &Node,
        reals: &[(Real, RealAt)],
        l: &mut ServiceLifecycle,
    ) {
        let sum = reals
            .iter()
            .map(|(r, _)| u64::from(r.weight))
            .sum::<u64>()
            .min(u64::from(u32::MAX)) as u32;
        if l.quorum > sum {
            cx.diag.warning(
                n.pos(),
                format!(
                    "quorum {} exceeds the real servers' total weight {sum}; the quorum is {sum} (as keepalived 2.2.7 lowers it)",
                    l.quorum
                ),
            );
            l.quorum = sum;
        }
        if l.hysteresis >= l.quorum && l.hysteresis > 0 {
            let h = l.quorum.saturating_sub(1);
            cx.diag.warning(
                n.pos(),
                format!(
                    "hysteresis {} is not below quorum {}; it is {h} (as keepalived 2.2.7 lowers it)",
                    l.hysteresis, l.quorum
                ),
            );
            l.hysteresis = h;
        }
    }
}

fn real_server(
    cx: &mut Ctx,
    n: &Node,
    vs_port: u16,
    vs: &Settings,
    from_vs: &Inherited,
) -> Option<(Real, RealAt)> {
    let errors = cx.diag.error_count();
    let address = cx.ip(&n.args[0], "real_server");
    let port = match n.args.get(1) {
        Some(p) => cx.port(p, "port"),
        None => Some(vs_port),
    };
    let mut r = Real {
        address: address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port: port.unwrap_or(0),
        weight: vs.weight,
        u_threshold: 0,
        l_threshold: 0,
        lifecycle: RealLifecycle {
            inhibit_on_failure: vs.inhibit,
            ..RealLifecycle::default()
        },
    };
    let mut inh = from_vs.clone();
    let mut lthreshold: Option<&Token> = None;
    let selected = cx.select(Area::RealServer, n.children());
    // Settings first: a checker takes them whatever their order.
    for k in &selected {
        let a = || &k.args[0];
        match k.name() {
            "weight" => r.weight = cx.uint(a(), "weight", 0..=MAX_WEIGHT).unwrap_or(vs.weight),
            "inhibit_on_failure" => r.lifecycle.inhibit_on_failure = true,
            "smtp_alert" => r.lifecycle.smtp_alert = cx.boolean(k),
            "notify_up" => r.lifecycle.notify_up = cx.command(k),
            "notify_down" => r.lifecycle.notify_down = cx.command(k),
            "uthreshold" => r.u_threshold = cx.uint(a(), "uthreshold", 0..=u32::MAX).unwrap_or(0),
            "lthreshold" => {
                r.l_threshold = cx.uint(a(), "lthreshold", 0..=u32::MAX).unwrap_or(0);
                lthreshold = Some(a());
            }
            "lvs_method" => {
                if let Some(m) = forwarding(cx, k)
                    && m != (vs.method, vs.tunnel)
                {
                    cx.diag.unsupported(
                        k.pos(),
                        k.name(),
                        "xlb has one forwarding method per service; set lb_kind on the virtual_server",
                    );
                }
            }
            "delay_loop" => inh.delay_loop = check::delay_loop(cx, a()).unwrap_or(inh.delay_loop),
            "connect_timeout" => {
                inh.connect_timeout =
                    check::timeout(cx, a(), "connect_timeout").unwrap_or(inh.connect_timeout)
            }
            "retry" => inh.retry = cx.uint(a(), "retry", 0..=u32::MAX).or(inh.retry),
            "delay_before_retry" => {
                inh.delay_before_retry = cx
                    .secs(a(), "delay_before_retry", 3600.0)
                    .or(inh.delay_before_retry)
            }
            "warmup" => inh.warmup = cx.secs(a(), "warmup", 3600.0).or(inh.warmup),
            "alpha" => inh.alpha = true,
            "virtualhost" => inh.virtualhost = Some(a().text.clone()),
            _ => {}
        }
    }
    for k in selected.iter().filter(|k| Area::check(k.name()).is_some()) {
        r.lifecycle.checks.extend(check::check(cx, k, &inh));
    }
    let at = RealAt {
        at: n.pos().clone(),
        address: n.args[0].pos.clone(),
        l_threshold: lthreshold.map(|t| t.pos.clone()),
    };
    (cx.diag.error_count() == errors).then_some((r, at))
}
