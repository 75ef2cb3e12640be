//! Validation of `[global]`, `static_*` and the VRRP sections: every bad
//! value, unknown reference or conflict is an error at its position.
//! Method names carry a `vrrp_` prefix: other areas extend the same `Validator`.

use super::Validator;
use crate::{
    global::{Fifo, Global, SyncDaemon},
    raw::{self, vrrp as r},
    vrrp::{
        Auth, Garp, InitialState, Instance, Notify, Route, RouteKind, Rule, RuleAction, Scope,
        StaticNet, SyncGroup, TrackFileDef, TrackInterface, TrackRef, TrackScriptDef,
        VirtualAddress, Vmac, Vrrp,
    },
};
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};
use toml::Spanned;

/// keepalived's range for tracking weights.
const MAX_WEIGHT: i64 = 254;

impl Validator<'_> {
    /// `[global]`, `static_*` and the VRRP sections of `file`.
    pub(super) fn vrrp_all(&mut self, file: &raw::File) -> (Global, StaticNet, Vrrp) {
        let global = self.vrrp_global(file.global.as_ref());
        let static_net = StaticNet {
            addresses: file
                .static_ipaddress
                .iter()
                .filter_map(|a| self.vrrp_address(a))
                .collect(),
            routes: file
                .static_routes
                .iter()
                .filter_map(|x| self.vrrp_route(x))
                .collect(),
            rules: file
                .static_rules
                .iter()
                .filter_map(|x| self.vrrp_rule(x))
                .collect(),
        };
        let vrrp = self.vrrp_sections(file, &global);
        (global, static_net, vrrp)
    }

    fn vrrp_global(&mut self, g: Option<&Spanned<r::Global>>) -> Global {
        let mut out = Global::default();
        let Some(g) = g else { return out };
        let g = g.get_ref();
        self.global_alerts(g, &mut out);
        out.router_id = g.router_id.as_ref().map(|s| s.get_ref().clone());
        out.script_user = g.script_user.as_ref().map(|s| s.get_ref().clone());
        out.enable_script_security = g
            .enable_script_security
            .as_ref()
            .is_some_and(|b| *b.get_ref());
        if let Some(v) = &g.vrrp_version {
            out.vrrp_version = self.vrrp_version(v);
        }
        if let Some(a) = &g.vrrp_mcast_group4 {
            match a.get_ref().parse::<Ipv4Addr>() {
                Ok(m) if m.is_multicast() => out.vrrp_mcast_group4 = m,
                _ => self.error(
                    a.span(),
                    format!("`{}` is not an IPv4 multicast group", a.get_ref()),
                ),
            }
        }
        if let Some(a) = &g.vrrp_mcast_group6 {
            match a.get_ref().parse::<Ipv6Addr>() {
                Ok(m) if m.is_multicast() => out.vrrp_mcast_group6 = m,
                _ => self.error(
                    a.span(),
                    format!("`{}` is not an IPv6 multicast group", a.get_ref()),
                ),
            }
        }
        out.notify_fifo = g.notify_fifo.as_ref().and_then(|f| self.vrrp_fifo(f));
        out.vrrp_notify_fifo = g.vrrp_notify_fifo.as_ref().and_then(|f| self.vrrp_fifo(f));
        out.lvs_notify_fifo = g.lvs_notify_fifo.as_ref().and_then(|f| self.vrrp_fifo(f));
        out.lvs_sync_daemon = g
            .lvs_sync_daemon
            .as_ref()
            .and_then(|d| self.vrrp_sync_daemon(d));
        if let Some(garp) = &g.garp {
            let raw = garp.get_ref();
            out.garp = self.vrrp_garp(raw, Garp::default());
            // keepalived: the lower-priority burst defaults to the master burst's.
            if raw.lower_prio_repeat.is_none() {
                out.garp.lower_prio_repeat = out.garp.master_repeat;
            }
            if raw.lower_prio_delay.is_none() {
                out.garp.lower_prio_delay = out.garp.master_delay;
            }
        }
        let flag =
            |b: &Option<Spanned<bool>>, default: bool| b.as_ref().map_or(default, |b| *b.get_ref());
        out.lower_prio_no_advert = flag(&g.lower_prio_no_advert, out.lower_prio_no_advert);
        out.higher_prio_send_advert = flag(&g.higher_prio_send_advert, out.higher_prio_send_advert);
        out.vrrp_process.no_swap = flag(&g.vrrp_no_swap, false);
        if let Some(n) = &g.vrrp_priority {
            match i8::try_from(*n.get_ref()) {
                Ok(v) if (-20..=19).contains(&v) => out.vrrp_process.nice = Some(v),
                _ => self.error(
                    n.span(),
                    format!("{} is out of range (-20..=19)", n.get_ref()),
                ),
            }
        }
        if let Some(n) = &g.vrrp_rt_priority {
            match u8::try_from(*n.get_ref()) {
                Ok(v) if (1..=99).contains(&v) => out.vrrp_process.rt_priority = Some(v),
                _ => self.error(
                    n.span(),
                    format!("{} is out of range (1..=99)", n.get_ref()),
                ),
            }
        }
        out
    }

    fn vrrp_fifo(&mut self, f: &Spanned<r::Fifo>) -> Option<Fifo> {
        let f = f.get_ref();
        let path = PathBuf::from(f.path.get_ref());
        if !path.is_absolute() {
            self.error(f.path.span(), "a FIFO path must be absolute");
            return None;
        }
        let script = match &f.script {
            Some(s) => Some(self.command(s, "script")?),
            None => None,
        };
        Some(Fifo { path, script })
    }

    fn vrrp_sync_daemon(&mut self, d: &Spanned<r::SyncDaemon>) -> Option<SyncDaemon> {
        self.site("global.lvs_sync_daemon", d.span());
        let d = d.get_ref();
        let ifname = self.vrrp_ifname(&d.interface)?;
        let small = |v: &mut Self, x: &Option<Spanned<i64>>, max: i64| -> Option<Option<i64>> {
            match x {
                None => Some(None),
                Some(n) if (0..=max).contains(n.get_ref()) => Some(Some(*n.get_ref())),
                Some(n) => {
                    v.error(
                        n.span(),
                        format!("{} is out of range (0..={max})", n.get_ref()),
                    );
                    None
                }
            }
        };
        let id = small(self, &d.id, 255)?;
        let maxlen = small(self, &d.maxlen, 65535)?;
        let port = small(self, &d.port, 65535)?;
        let ttl = small(self, &d.ttl, 255)?;
        let group = match &d.group {
            None => None,
            Some(g) => match g.get_ref().parse::<IpAddr>() {
                Ok(a) if a.is_multicast() => Some(a),
                _ => {
                    self.error(
                        g.span(),
                        format!("`{}` is not a multicast group", g.get_ref()),
                    );
                    return None;
                }
            },
        };
        Some(SyncDaemon {
            interface: ifname,
            instance: d.instance.get_ref().clone(),
            id: id.unwrap_or(0) as u8,
            maxlen: maxlen.map(|n| n as u16),
            port: port.map(|n| n as u16),
            ttl: ttl.map(|n| n as u8),
            group,
        })
    }

    fn vrrp_version(&mut self, v: &Spanned<i64>) -> u8 {
        match *v.get_ref() {
            2 => 2,
            3 => 3,
            n => {
                self.error(v.span(), format!("VRRP version {n} is not 2 or 3"));
                2
            }
        }
    }

    /// A duration in seconds, at most `max` seconds, in steps of `unit`.
    fn vrrp_seconds(
        &mut self,
        v: &Spanned<r::Seconds>,
        unit: Duration,
        max: f64,
    ) -> Option<Duration> {
        let secs = match v.get_ref() {
            r::Seconds::Whole(n) => *n as f64,
            r::Seconds::Fraction(f) => *f,
        };
        if !secs.is_finite() || secs < 0.0 || secs > max {
            self.error(
                v.span(),
                format!("{secs} is out of range (0 to {max} seconds)"),
            );
            return None;
        }
        let units = secs / unit.as_secs_f64();
        if (units - units.round()).abs() > 1e-6 {
            self.error(
                v.span(),
                format!("{secs} is not a multiple of {} s", unit.as_secs_f64()),
            );
            return None;
        }
        Some(unit * units.round() as u32)
    }

    fn vrrp_ifname(&mut self, n: &Spanned<String>) -> Option<String> {
        let s = n.get_ref();
        if s.is_empty() || s.len() > 15 || s.contains(['/', ' ']) {
            self.error(n.span(), format!("`{s}` is not a valid interface name"));
            return None;
        }
        Some(s.clone())
    }

    /// `ADDR[/PREFIX]`.
    fn vrrp_prefixed(&mut self, s: &Spanned<String>) -> Option<(IpAddr, u8)> {
        let text = s.get_ref();
        let (a, p) = text
            .split_once('/')
            .map_or((text.as_str(), None), |(a, p)| (a, Some(p)));
        let Ok(addr) = a.parse::<IpAddr>() else {
            self.error(s.span(), format!("`{text}` is not an address"));
            return None;
        };
        let max = if addr.is_ipv6() { 128 } else { 32 };
        let prefix = match p.map(str::parse::<u8>) {
            None => max,
            Some(Ok(n)) if n <= max => n,
            Some(_) => {
                self.error(s.span(), format!("`{text}`: the prefix must be 0..={max}"));
                return None;
            }
        };
        Some((addr, prefix))
    }

    fn vrrp_scope(&mut self, s: &Option<Spanned<String>>) -> Option<Option<Scope>> {
        let Some(s) = s else { return Some(None) };
        Some(Some(match Scope::from_name(s.get_ref()) {
            Some(scope) => scope,
            None => {
                self.error(
                    s.span(),
                    format!(
                        "unknown scope `{}`, expected global, site, link, host or nowhere",
                        s.get_ref()
                    ),
                );
                return None;
            }
        }))
    }

    fn vrrp_address(&mut self, e: &Spanned<r::AddressEntry>) -> Option<VirtualAddress> {
        let full;
        let a = match e.get_ref() {
            r::AddressEntry::Bare(s) => {
                full = r::Address {
                    address: Spanned::new(e.span(), s.clone()),
                    dev: None,
                    brd: None,
                    scope: None,
                    label: None,
                };
                &full
            }
            r::AddressEntry::Full(a) => a,
        };
        let (address, prefix) = self.vrrp_prefixed(&a.address)?;
        if address.is_unspecified() || address.is_multicast() {
            self.error(
                a.address.span(),
                format!("`{address}` must be a unicast address"),
            );
            return None;
        }
        let dev = match &a.dev {
            Some(d) => Some(self.vrrp_ifname(d)?),
            None => None,
        };
        let brd = match &a.brd {
            None => None,
            Some(b) => match (b.get_ref().parse::<Ipv4Addr>(), address) {
                (Ok(x), IpAddr::V4(_)) => Some(x),
                _ => {
                    self.error(
                        b.span(),
                        "`brd` must be an IPv4 address, on an IPv4 address only",
                    );
                    return None;
                }
            },
        };
        let scope = self.vrrp_scope(&a.scope)?;
        Some(VirtualAddress {
            address,
            prefix,
            dev,
            brd,
            scope,
            label: a.label.as_ref().map(|l| l.get_ref().clone()),
        })
    }

    fn vrrp_u32(&mut self, v: &Option<Spanned<i64>>, what: &str) -> Option<Option<u32>> {
        match v {
            None => Some(None),
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(x) => Some(Some(x)),
                Err(_) => {
                    self.error(
                        n.span(),
                        format!("`{what}` {} is out of range", n.get_ref()),
                    );
                    None
                }
            },
        }
    }

    fn vrrp_route(&mut self, x: &Spanned<r::Route>) -> Option<Route> {
        let x = x.get_ref();
        let (dest, prefix) = self.vrrp_prefixed(&x.to)?;
        let kind = match &x.kind {
            None => RouteKind::Unicast,
            Some(k) => match RouteKind::from_name(k.get_ref()) {
                Some(kind) => kind,
                None => {
                    self.error(
                        k.span(),
                        format!("unknown route type `{}`, expected unicast, blackhole, unreachable, prohibit or throw", k.get_ref()),
                    );
                    return None;
                }
            },
        };
        let family_addr =
            |v: &mut Self, a: &Option<Spanned<String>>, what: &str| -> Option<Option<IpAddr>> {
                let Some(a) = a else { return Some(None) };
                let ip = v.address(a, what)?;
                if ip.is_ipv6() != dest.is_ipv6() {
                    v.error(
                        a.span(),
                        format!("{what} `{ip}` is not of the route's family"),
                    );
                    return None;
                }
                Some(Some(ip))
            };
        let via = family_addr(self, &x.via, "`via`")?;
        let src = family_addr(self, &x.src, "`src`")?;
        let dev = match &x.dev {
            Some(d) => Some(self.vrrp_ifname(d)?),
            None => None,
        };
        Some(Route {
            kind,
            dest,
            prefix,
            via,
            src,
            dev,
            table: self.vrrp_u32(&x.table, "table")?,
            metric: self.vrrp_u32(&x.metric, "metric")?,
            scope: self.vrrp_scope(&x.scope)?,
        })
    }

    fn vrrp_rule(&mut self, x: &Spanned<r::Rule>) -> Option<Rule> {
        let span = x.span();
        let x = x.get_ref();
        let from = match &x.from {
            Some(s) => Some(self.vrrp_prefixed(s)?),
            None => None,
        };
        let to = match &x.to {
            Some(s) => Some(self.vrrp_prefixed(s)?),
            None => None,
        };
        let family = match x.family.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None => None,
            Some((_, "ipv4")) => Some(false),
            Some((_, "ipv6")) => Some(true),
            Some((f, other)) => {
                self.error(
                    f.span(),
                    format!("unknown family `{other}`, expected ipv4 or ipv6"),
                );
                return None;
            }
        };
        let fams: HashSet<bool> = from
            .iter()
            .chain(&to)
            .map(|(a, _)| a.is_ipv6())
            .chain(family)
            .collect();
        if fams.len() > 1 {
            self.error(
                span,
                "`from`, `to` and `family` disagree on the address family",
            );
            return None;
        }
        let fwmark = match &x.fwmark {
            None => None,
            Some(f) => {
                let parse = |t: &str| match t.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => t.parse().ok(),
                };
                let m = match f.get_ref() {
                    r::Fwmark::Number(n) => u32::try_from(*n).ok().map(|n| (n, None)),
                    r::Fwmark::Text(t) => match t.split_once('/') {
                        Some((m, k)) => parse(m).zip(parse(k)).map(|(m, k)| (m, Some(k))),
                        None => parse(t).map(|m| (m, None)),
                    },
                };
                let Some(m) = m else {
                    self.error(f.span(), "`fwmark` must be a number or \"MARK/MASK\"");
                    return None;
                };
                Some(m)
            }
        };
        let table = self.vrrp_u32(&x.table, "table")?;
        let action = match (x.kind.as_ref().map(|k| (k, k.get_ref().as_str())), table) {
            (None | Some((_, "table")), Some(t)) => RuleAction::Table(t),
            (Some((_, "blackhole")), None) => RuleAction::Blackhole,
            (Some((_, "unreachable")), None) => RuleAction::Unreachable,
            (Some((_, "prohibit")), None) => RuleAction::Prohibit,
            (Some((k, _)), Some(_)) if k.get_ref() != "table" => {
                self.error(k.span(), "a rule with `table` cannot also have this `type`");
                return None;
            }
            (Some((k, other)), _) if !["table"].contains(&other) => {
                self.error(
                    k.span(),
                    format!("unknown rule type `{other}`, expected table, blackhole, unreachable or prohibit"),
                );
                return None;
            }
            _ => {
                self.error(span, "a rule needs `table` or a `type`");
                return None;
            }
        };
        let ifname = |v: &mut Self, n: &Option<Spanned<String>>| match n {
            Some(n) => v.vrrp_ifname(n).map(Some),
            None => Some(None),
        };
        Some(Rule {
            ipv6: fams.into_iter().next().unwrap_or(false),
            from,
            to,
            fwmark,
            iif: ifname(self, &x.iif)?,
            oif: ifname(self, &x.oif)?,
            priority: self.vrrp_u32(&x.priority, "priority")?,
            action,
        })
    }

    /// `[*.garp]` over `base`, key by key.
    fn vrrp_garp(&mut self, g: &r::Garp, base: Garp) -> Garp {
        let ms = Duration::from_millis(1);
        let mut out = base;
        if let Some(d) = &g.master_delay {
            out.master_delay = self
                .vrrp_seconds(d, ms, 3600.0)
                .unwrap_or(base.master_delay);
        }
        if let Some(d) = &g.master_refresh {
            out.master_refresh = self.vrrp_seconds(d, ms, 86400.0).filter(|d| !d.is_zero());
        }
        if let Some(d) = &g.interval {
            out.interval = self.vrrp_seconds(d, ms, 60.0).unwrap_or(base.interval);
        }
        let count = |v: &mut Self, n: &Spanned<i64>| match u32::try_from(*n.get_ref()) {
            Ok(c) if (1..=100).contains(&c) => Some(c),
            _ => {
                v.error(
                    n.span(),
                    format!("{} is out of range (1..=100)", n.get_ref()),
                );
                None
            }
        };
        if let Some(n) = &g.master_repeat {
            out.master_repeat = count(self, n).unwrap_or(base.master_repeat);
        }
        if let Some(n) = &g.master_refresh_repeat {
            out.master_refresh_repeat = count(self, n).unwrap_or(base.master_refresh_repeat);
        }
        if let Some(n) = &g.lower_prio_repeat {
            // keepalived's range; the announcement schedule caps what is pending.
            match u32::try_from(*n.get_ref()) {
                Ok(c) if c <= i32::MAX as u32 => out.lower_prio_repeat = c,
                _ => self.error(
                    n.span(),
                    format!("{} is out of range (0..=2147483647)", n.get_ref()),
                ),
            }
        }
        if let Some(d) = &g.lower_prio_delay {
            out.lower_prio_delay = self
                .vrrp_seconds(d, ms, 3600.0)
                .unwrap_or(base.lower_prio_delay);
        }
        out
    }

    fn vrrp_weight(&mut self, w: &Option<Spanned<i64>>) -> Option<i32> {
        let Some(w) = w else {
            return Some(crate::defaults::TRACK_WEIGHT);
        };
        if !(-MAX_WEIGHT..=MAX_WEIGHT).contains(w.get_ref()) {
            self.error(
                w.span(),
                format!("weight {} is out of range (-254..=254)", w.get_ref()),
            );
            return None;
        }
        Some(*w.get_ref() as i32)
    }

    fn vrrp_notify(&mut self, cmds: [&Option<Spanned<r::CommandText>>; 5]) -> Notify {
        let mut c = cmds.map(|c| c.as_ref().and_then(|c| self.command(c, "notify script")));
        Notify {
            master: c[0].take(),
            backup: c[1].take(),
            fault: c[2].take(),
            stop: c[3].take(),
            any: c[4].take(),
        }
    }

    /// A track list, model path `path` (its names are checked to be
    /// defined by the semantic check).
    fn vrrp_refs(&mut self, refs: &[Spanned<r::TrackRef>], path: &str) -> Vec<TrackRef> {
        let mut out = Vec::new();
        for t in refs {
            let t = t.get_ref();
            let name = t.name.get_ref();
            self.site(format!("{path}[{}]", out.len()), t.name.span());
            let weight = match &t.weight {
                Some(_) => self.vrrp_weight(&t.weight),
                None => None,
            };
            let reverse = t.reverse.as_ref().is_some_and(|b| *b.get_ref());
            if let (Some(r), None) = (&t.reverse, weight) {
                self.error(
                    r.span(),
                    "`reverse` needs `weight` (it reverses the weight)",
                );
            }
            out.push(TrackRef {
                name: name.clone(),
                weight,
                reverse,
            });
        }
        out
    }

    fn vrrp_track_interfaces(&mut self, refs: &[Spanned<r::TrackRef>]) -> Vec<TrackInterface> {
        refs.iter()
            .filter_map(|t| {
                let t = t.get_ref();
                Some(TrackInterface {
                    name: self.vrrp_ifname(&t.name)?,
                    weight: self.vrrp_weight(&t.weight)?,
                    reverse: t.reverse.as_ref().is_some_and(|b| *b.get_ref()),
                })
            })
            .collect()
    }

    fn vrrp_sections(&mut self, file: &raw::File, global: &Global) -> Vrrp {
        let mut out = Vrrp::default();
        let ms = Duration::from_millis(1);
        for s in &file.vrrp_scripts {
            let s = s.get_ref();
            self.site(
                format!("vrrp.scripts[{}].name", out.scripts.len()),
                s.name.span(),
            );
            let script = self.command(&s.script, "script");
            let interval = match &s.interval {
                Some(i) => self.vrrp_seconds(i, ms, 86400.0).filter(|d| {
                    let ok = !d.is_zero();
                    if !ok {
                        self.error(i.span(), "`interval` must be positive");
                    }
                    ok
                }),
                None => Some(crate::defaults::SCRIPT_INTERVAL),
            };
            let timeout = match &s.timeout {
                Some(t) => self.vrrp_seconds(t, ms, 86400.0).filter(|d| !d.is_zero()),
                None => interval,
            };
            let count = |v: &mut Self, n: &Option<Spanned<i64>>| match n {
                None => Some(crate::defaults::SCRIPT_RISE_FALL),
                Some(n) => match u32::try_from(*n.get_ref()) {
                    Ok(c) if c >= 1 => Some(c),
                    _ => {
                        v.error(n.span(), format!("{} must be at least 1", n.get_ref()));
                        None
                    }
                },
            };
            let (rise, fall) = (count(self, &s.rise), count(self, &s.fall));
            let weight = self.vrrp_weight(&s.weight);
            if let (
                Some(script),
                Some(interval),
                Some(timeout),
                Some(rise),
                Some(fall),
                Some(weight),
            ) = (script, interval, timeout, rise, fall, weight)
            {
                out.scripts.push(TrackScriptDef {
                    name: s.name.get_ref().clone(),
                    script,
                    interval,
                    timeout,
                    weight,
                    weight_reverse: s.weight_reverse.as_ref().is_some_and(|b| *b.get_ref()),
                    rise,
                    fall,
                    init_fail: s.init_fail.as_ref().is_some_and(|b| *b.get_ref()),
                    user: s.user.as_ref().map(|u| u.get_ref().clone()),
                });
            }
        }
        for f in &file.vrrp_track_files {
            let f = f.get_ref();
            self.site(
                format!("vrrp.track_files[{}].name", out.track_files.len()),
                f.name.span(),
            );
            let path = PathBuf::from(f.file.get_ref());
            if !path.is_absolute() {
                self.error(f.file.span(), "`file` must be an absolute path");
                continue;
            }
            let Some(weight) = (match &f.weight {
                None => Some(crate::defaults::TRACK_FILE_WEIGHT),
                w => self.vrrp_weight(w),
            }) else {
                continue;
            };
            out.track_files.push(TrackFileDef {
                name: f.name.get_ref().clone(),
                path,
                weight,
                init: f.init_file.as_ref().map(|v| *v.get_ref()),
            });
        }
        for i in &file.vrrp_instances {
            let index = out.instances.len();
            if let Some(inst) = self.vrrp_instance(i, global, index) {
                out.instances.push(inst);
            }
        }
        for g in &file.vrrp_sync_groups {
            let g = g.get_ref();
            let at = format!("vrrp.sync_groups[{}]", out.sync_groups.len());
            self.site(format!("{at}.name"), g.name.span());
            self.site(format!("{at}.members"), g.group.span());
            let mut members = Vec::new();
            for m in g.group.get_ref() {
                self.site(format!("{at}.members[{}]", members.len()), m.span());
                members.push(m.get_ref().clone());
            }
            let notify = self.vrrp_notify([
                &g.notify_master,
                &g.notify_backup,
                &g.notify_fault,
                &g.notify_stop,
                &g.notify,
            ]);
            out.sync_groups.push(SyncGroup {
                name: g.name.get_ref().clone(),
                members,
                notify,
                track_interfaces: self.vrrp_track_interfaces(&g.track_interface),
                track_scripts: self.vrrp_refs(&g.track_script, &format!("{at}.track_scripts")),
                track_files: self.vrrp_refs(&g.track_file, &format!("{at}.track_files")),
                smtp_alert: g.smtp_alert.as_ref().map(|b| *b.get_ref()),
            });
        }
        out
    }

    /// Instance `index` of the model, if it has no error.
    fn vrrp_instance(
        &mut self,
        i: &Spanned<r::Instance>,
        global: &Global,
        index: usize,
    ) -> Option<Instance> {
        let before = self.errors.len();
        let span = i.span();
        let i = i.get_ref();
        let at = format!("vrrp.instances[{index}]");
        self.site(at.clone(), span.clone());
        self.site(format!("{at}.name"), i.name.span());
        self.site(
            format!("{at}.virtual_router_id"),
            i.virtual_router_id.span(),
        );
        let interface = self.vrrp_ifname(&i.interface);
        let vrid = match u8::try_from(*i.virtual_router_id.get_ref()) {
            Ok(v) if v >= 1 => v,
            _ => {
                self.error(
                    i.virtual_router_id.span(),
                    format!(
                        "virtual_router_id {} is out of range (1..=255)",
                        i.virtual_router_id.get_ref()
                    ),
                );
                1
            }
        };
        let version = i
            .version
            .as_ref()
            .map_or(global.vrrp_version, |v| self.vrrp_version(v));
        let priority = match &i.priority {
            None => 100,
            Some(p) => match u8::try_from(*p.get_ref()) {
                Ok(p) if p >= 1 => p,
                _ => {
                    self.error(
                        p.span(),
                        format!("priority {} is out of range (1..=255)", p.get_ref()),
                    );
                    100
                }
            },
        };
        let initial_state = match i.state.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None => crate::defaults::INITIAL_STATE,
            Some((_, "BACKUP")) => InitialState::Backup,
            Some((_, "MASTER")) => InitialState::Master,
            Some((s, other)) => {
                self.error(
                    s.span(),
                    format!("unknown state `{other}`, expected \"MASTER\" or \"BACKUP\""),
                );
                InitialState::Backup
            }
        };
        let advert_int = match &i.advert_int {
            None => crate::defaults::ADVERT_INT,
            Some(a) if version == 2 => match self.vrrp_seconds(a, Duration::from_secs(1), 255.0) {
                Some(d) if !d.is_zero() => d,
                Some(_) => {
                    self.error(
                        a.span(),
                        "`advert_int` must be at least 1 second with VRRPv2",
                    );
                    Duration::from_secs(1)
                }
                None => Duration::from_secs(1),
            },
            Some(a) => match self.vrrp_seconds(a, Duration::from_millis(10), 40.95) {
                Some(d) if !d.is_zero() => d,
                Some(_) => {
                    self.error(a.span(), "`advert_int` must be at least 0.01 s");
                    Duration::from_secs(1)
                }
                None => Duration::from_secs(1),
            },
        };
        let preempt_delay = i
            .preempt_delay
            .as_ref()
            .and_then(|d| self.vrrp_seconds(d, Duration::from_millis(1), 1000.0))
            .unwrap_or_default();
        let auth = match &i.auth_pass {
            None => None,
            Some(p) if version != 2 => {
                self.error(p.span(), "`auth_pass` exists in VRRPv2 only");
                None
            }
            Some(p) if p.get_ref().is_empty() || p.get_ref().len() > 8 => {
                self.error(p.span(), "`auth_pass` must be 1 to 8 bytes");
                None
            }
            Some(p) => Some(Auth {
                pass: p.get_ref().clone(),
            }),
        };
        let vips: Vec<VirtualAddress> = match &i.virtual_ipaddress {
            None => {
                self.error(
                    span.clone(),
                    "`virtual_ipaddress` is missing: an instance needs an address to protect",
                );
                Vec::new()
            }
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(list.span(), "`virtual_ipaddress` is empty");
                }
                list.get_ref()
                    .iter()
                    .filter_map(|a| self.vrrp_address(a))
                    .collect()
            }
        };
        if let (Some(first), Some(list)) = (vips.first(), &i.virtual_ipaddress) {
            let v6 = first.address.is_ipv6();
            if let Some((bad, _)) = list
                .get_ref()
                .iter()
                .zip(&vips)
                .find(|(_, a)| a.address.is_ipv6() != v6)
            {
                self.error(
                    bad.span(),
                    "every `virtual_ipaddress` must be of the first one's family; put the others in `virtual_ipaddress_excluded`",
                );
            }
            if v6 && version == 2 {
                self.error(
                    list.span(),
                    "VRRPv2 carries IPv4 addresses only: use version = 3 for IPv6",
                );
            }
        }
        let ipv6 = vips.first().is_some_and(|a| a.address.is_ipv6());
        let fam_addr = |v: &mut Self, a: &Option<Spanned<String>>, what: &str| -> Option<IpAddr> {
            let a = a.as_ref()?;
            let ip = v.address(a, what)?;
            if ip.is_ipv6() != ipv6 && !vips.is_empty() {
                v.error(
                    a.span(),
                    format!("{what} `{ip}` is not of the instance's family"),
                );
            }
            Some(ip)
        };
        let mcast_src_ip = fam_addr(self, &i.mcast_src_ip, "`mcast_src_ip`");
        let unicast_src_ip = fam_addr(self, &i.unicast_src_ip, "`unicast_src_ip`");
        let unicast_peers: Vec<IpAddr> = i
            .unicast_peer
            .iter()
            .filter_map(|p| fam_addr(self, &Some(p.clone()), "`unicast_peer`"))
            .collect();
        let check_unicast_src = i.check_unicast_src.as_ref().is_some_and(|b| *b.get_ref());
        if check_unicast_src && i.unicast_peer.is_empty() {
            self.error(
                i.check_unicast_src
                    .as_ref()
                    .map_or(span.clone(), |b| b.span()),
                "`check_unicast_src` needs `unicast_peer`",
            );
        }
        let excluded = i
            .virtual_ipaddress_excluded
            .iter()
            .filter_map(|a| self.vrrp_address(a))
            .collect();
        let routes = i
            .virtual_routes
            .iter()
            .filter_map(|x| self.vrrp_route(x))
            .collect();
        let rules = i
            .virtual_rules
            .iter()
            .filter_map(|x| self.vrrp_rule(x))
            .collect();
        let track_interfaces = self.vrrp_track_interfaces(&i.track_interface);
        let track_scripts = self.vrrp_refs(&i.track_script, &format!("{at}.track_scripts"));
        let track_files = self.vrrp_refs(&i.track_file, &format!("{at}.track_files"));
        let vmac = match i.use_vmac.as_ref().map(|v| (v, v.get_ref())) {
            None | Some((_, r::UseVmac::Default(false))) => None,
            Some((_, r::UseVmac::Default(true))) => Some(Vmac {
                name: format!("{}.{vrid}", if ipv6 { "vrrp6" } else { "vrrp" }),
                xmit_base: false,
            }),
            Some((v, r::UseVmac::Named(n))) => self
                .vrrp_ifname(&Spanned::new(v.span(), n.clone()))
                .map(|name| Vmac {
                    name,
                    xmit_base: false,
                }),
        }
        .map(|v| Vmac {
            xmit_base: i.vmac_xmit_base.as_ref().is_some_and(|b| *b.get_ref()),
            ..v
        });
        // keepalived.conf refuses it too: without a VMAC it would mean nothing.
        if let (None, Some(x)) = (&vmac, &i.vmac_xmit_base)
            && *x.get_ref()
        {
            self.error(x.span(), "`vmac_xmit_base` needs `use_vmac`");
        }
        let garp = match &i.garp {
            Some(g) => self.vrrp_garp(g.get_ref(), global.garp),
            None => global.garp,
        };
        let notify = self.vrrp_notify([
            &i.notify_master,
            &i.notify_backup,
            &i.notify_fault,
            &i.notify_stop,
            &i.notify,
        ]);
        if self.errors.len() != before {
            return None;
        }
        Some(Instance {
            smtp_alert: i.smtp_alert.as_ref().map(|b| *b.get_ref()),
            name: i.name.get_ref().clone(),
            interface: interface?,
            vrid,
            version,
            priority,
            initial_state,
            advert_int,
            preempt: i.preempt.as_ref().is_none_or(|b| *b.get_ref()),
            preempt_delay,
            accept: i.accept.as_ref().is_none_or(|b| *b.get_ref()),
            auth,
            mcast_src_ip,
            unicast_src_ip,
            unicast_peers,
            check_unicast_src,
            virtual_ipaddress: vips,
            virtual_ipaddress_excluded: excluded,
            virtual_routes: routes,
            virtual_rules: rules,
            track_interfaces,
            track_scripts,
            track_files,
            vmac,
            garp,
            lower_prio_no_advert: i
                .lower_prio_no_advert
                .as_ref()
                .map_or(global.lower_prio_no_advert, |b| *b.get_ref()),
            higher_prio_send_advert: i
                .higher_prio_send_advert
                .as_ref()
                .map_or(global.higher_prio_send_advert, |b| *b.get_ref()),
            notify,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Config, parse,
        vrrp::{InitialState, RouteKind, RuleAction},
    };
    use std::time::Duration;

    const HEAD: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

    fn ok(body: &str) -> Config {
        parse("x.toml", &format!("{HEAD}{body}")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ok_top(text: &str) -> Config {
        parse("x.toml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Errors of top-level keys, which come before any table.
    fn errors_top(top: &str) -> Vec<String> {
        let e = parse("x.toml", &format!("{top}{HEAD}")).expect_err("should fail");
        e.0.iter()
            .map(|e| format!("{}:{} {}", e.line, e.col, e.message))
            .collect()
    }

    /// The errors as `line:col message`, lines counted in `body` (after the two header lines).
    fn errors(body: &str) -> Vec<String> {
        let e = parse("x.toml", &format!("{HEAD}{body}")).expect_err("should fail");
        e.0.iter()
            .map(|e| format!("{}:{} {}", e.line - 2, e.col, e.message))
            .collect()
    }

    fn instance(extra: &str) -> String {
        format!(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"10.0.0.100/24\"]\n{extra}"
        )
    }

    #[test]
    fn full_example_from_config_md() {
        let c = ok_top(
            r#"static_ipaddress = [{ address = "192.168.200.5/24", dev = "eth0", brd = "192.168.200.255", scope = "global", label = "eth0:st" }]
static_routes = [
  { to = "10.0.0.0/8", via = "192.168.200.1", dev = "eth0", src = "192.168.200.5", table = 100, metric = 10, scope = "global" },
  { type = "blackhole", to = "10.99.0.0/16" },
]
static_rules = [
  { from = "192.168.200.0/24", table = 100, priority = 100 },
  { to = "10.99.0.0/16", type = "blackhole" },
  { fwmark = "0x10/0xff", iif = "eth0", oif = "eth1", table = 200 },
  { family = "ipv6", priority = 300, type = "prohibit" },
]

[dataplane]
interfaces = ["eth0"]

[global]
router_id = "lb1"
vrrp_version = 3
vrrp_notify_fifo = { path = "/run/xlb/vrrp.fifo" }
[global.garp]
master_delay = 2
master_refresh = 60

[[vrrp_script]]
name = "chk_nginx"
script = "/usr/bin/pgrep -x 'nginx'"
interval = 2
weight = -20
fall = 2

[[vrrp_track_file]]
name = "tf1"
file = "/run/xlb/tf1"

[[vrrp_sync_group]]
name = "VG_1"
group = ["VI_1"]
notify = ["/usr/local/bin/notify-any"]

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 150
state = "MASTER"
advert_int = 0.1
preempt = false
virtual_ipaddress = [{ address = "192.168.200.100/24", label = "eth0:vip" }, "192.168.200.101"]
virtual_ipaddress_excluded = ["2001:db8::100/64"]
unicast_peer = ["192.168.200.6"]
check_unicast_src = true
track_interface = [{ name = "eth1" }, { name = "eth2", weight = -30 }]
track_script = [{ name = "chk_nginx" }]
track_file = [{ name = "tf1", weight = 2 }]
use_vmac = true
notify_master = ["/usr/local/bin/notify", "master"]
[vrrp_instance.garp]
master_repeat = 3
"#,
        );
        assert_eq!(c.global.router_id.as_deref(), Some("lb1"));
        assert_eq!(c.static_net.addresses[0].prefix, 24);
        assert_eq!(c.static_net.routes[1].kind, RouteKind::Blackhole);
        assert_eq!(c.static_net.rules[2].fwmark, Some((0x10, Some(0xff))));
        assert!(c.static_net.rules[3].ipv6);
        assert_eq!(c.static_net.rules[3].action, RuleAction::Prohibit);
        let s = &c.vrrp.scripts[0];
        assert_eq!(s.script.0, ["/usr/bin/pgrep", "-x", "nginx"]);
        assert_eq!(
            (s.interval, s.timeout, s.weight, s.rise, s.fall),
            (Duration::from_secs(2), Duration::from_secs(2), -20, 1, 2)
        );
        let i = &c.vrrp.instances[0];
        assert_eq!(i.version, 3, "global vrrp_version");
        assert_eq!(i.advert_int, Duration::from_millis(100));
        assert_eq!(i.initial_state, InitialState::Master);
        assert!(!i.preempt);
        assert_eq!(i.virtual_ipaddress.len(), 2);
        assert_eq!(i.virtual_ipaddress[0].label.as_deref(), Some("eth0:vip"));
        assert_eq!(i.track_interfaces[1].weight, -30);
        assert_eq!(i.track_files[0].weight, Some(2));
        assert_eq!(i.vmac.as_ref().unwrap().name, "vrrp.51");
        assert_eq!(
            i.garp.master_delay,
            Duration::from_secs(2),
            "from [global.garp]"
        );
        assert_eq!(i.garp.master_repeat, 3, "overridden");
        assert_eq!(i.garp.master_refresh, Some(Duration::from_secs(60)));
        assert_eq!(c.vrrp.sync_groups[0].members, ["VI_1"]);
    }

    #[test]
    fn defaults() {
        let c = ok(&instance(""));
        let i = &c.vrrp.instances[0];
        assert_eq!(
            (i.version, i.priority, i.advert_int),
            (2, 100, Duration::from_secs(1))
        );
        assert!(i.preempt && i.accept && i.auth.is_none() && i.vmac.is_none());
        assert_eq!(i.garp.master_repeat, 5);
    }

    #[test]
    fn instance_errors_point_at_the_value() {
        assert_eq!(
            errors(&instance("advert_int = 0.5\n")),
            ["6:14 0.5 is not a multiple of 1 s"]
        );
        assert_eq!(
            errors(&instance("version = 3\nadvert_int = 0.015\n")),
            ["7:14 0.015 is not a multiple of 0.01 s"]
        );
        assert_eq!(
            errors(&instance("state = \"master\"\n")),
            ["6:9 unknown state `master`, expected \"MASTER\" or \"BACKUP\""]
        );
        assert_eq!(
            errors(&instance("priority = 0\n")),
            ["6:12 priority 0 is out of range (1..=255)"]
        );
        assert_eq!(
            errors(&instance("version = 3\nauth_pass = \"x\"\n")),
            ["7:13 `auth_pass` exists in VRRPv2 only"]
        );
        assert_eq!(
            errors(&instance("auth_pass = \"123456789\"\n")),
            ["6:13 `auth_pass` must be 1 to 8 bytes"]
        );
        assert_eq!(
            errors(&instance("vmac_xmit_base = true\n")),
            ["6:18 `vmac_xmit_base` needs `use_vmac`"]
        );
        assert_eq!(
            errors(&instance("track_script = [{ name = \"nope\" }]\n")),
            ["6:26 track_script names `nope`, but no vrrp_script `nope` is defined"]
        );
        assert_eq!(
            errors(&instance("check_unicast_src = true\n")),
            ["6:21 `check_unicast_src` needs `unicast_peer`"]
        );
        assert_eq!(
            errors(&instance("unicast_peer = [\"2001:db8::1\"]\n")),
            ["6:17 `unicast_peer` `2001:db8::1` is not of the instance's family"]
        );
        assert_eq!(
            errors(&instance("bogus = 1\n"))[0].split(' ').next(),
            Some("6:1"),
            "unknown keys are errors"
        );
    }

    #[test]
    fn family_and_duplicates() {
        assert_eq!(
            errors(
                "[[vrrp_instance]]\nname = \"V6\"\ninterface = \"eth0\"\nvirtual_router_id = 5\nvirtual_ipaddress = [\"2001:db8::1\"]\n"
            ),
            ["5:21 VRRPv2 carries IPv4 addresses only: use version = 3 for IPv6"]
        );
        assert_eq!(
            errors(&instance("").replace("[\"10.0.0.100/24\"]", "[\"10.0.0.1\", \"2001:db8::1\"]")),
            [
                "5:34 every `virtual_ipaddress` must be of the first one's family; put the others in `virtual_ipaddress_excluded`"
            ]
        );
        let two = format!("{}{}", instance(""), instance("").replace("VI_1", "VI_2"));
        assert_eq!(
            errors(&two),
            ["9:21 virtual_router_id 51 on eth0 is already used by vrrp_instance `VI_1` at line 6"]
        );
        let same = format!("{}{}", instance(""), instance("").replace("51", "52"));
        assert_eq!(
            errors(&same),
            ["7:8 vrrp_instance `VI_1` is already defined at line 4"]
        );
    }

    #[test]
    fn sync_group_and_static_errors() {
        let body = format!(
            "{}[[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_9\"]\n",
            instance("")
        );
        assert_eq!(
            errors(&body),
            [
                "8:18 vrrp_sync_group `G` names `VI_9`, but no vrrp_instance `VI_9` is defined (did you mean `VI_1`?)"
            ]
        );
        assert_eq!(
            errors_top("static_routes = [{ to = \"10.0.0.0/33\" }]\n"),
            ["1:25 `10.0.0.0/33`: the prefix must be 0..=32"]
        );
        assert_eq!(
            errors_top(
                "static_rules = [{ from = \"10.0.0.0/8\", family = \"ipv6\", table = 1 }]\n"
            ),
            ["1:17 `from`, `to` and `family` disagree on the address family"]
        );
        assert_eq!(
            errors_top("static_ipaddress = [{ address = \"10.0.0.1\", scope = \"galaxy\" }]\n"),
            ["1:53 unknown scope `galaxy`, expected global, site, link, host or nowhere"]
        );
        assert_eq!(
            errors("[global]\nvrrp_mcast_group4 = \"10.0.0.1\"\n"),
            ["2:21 `10.0.0.1` is not an IPv4 multicast group"]
        );
    }

    #[test]
    fn lower_priority_announcements_default_as_keepalived_and_override() {
        // Unset: the global master burst's values (keepalived, vrrp.c).
        let c = ok(&format!(
            "[global.garp]\nmaster_repeat = 3\nmaster_delay = 2\n{}",
            instance("")
        ));
        assert_eq!(c.global.garp.lower_prio_repeat, 3);
        assert_eq!(c.global.garp.lower_prio_delay, Duration::from_secs(2));
        let i = &c.vrrp.instances[0];
        assert_eq!(
            (i.garp.lower_prio_repeat, i.garp.lower_prio_delay),
            (3, Duration::from_secs(2))
        );
        assert!(
            i.higher_prio_send_advert && !i.lower_prio_no_advert,
            "defaults"
        );
        // Set: global, then per instance.
        let c = ok(&format!(
            "[global]\nlower_prio_no_advert = true\nhigher_prio_send_advert = false\n[global.garp]\nlower_prio_repeat = 0\n{}",
            instance(
                "higher_prio_send_advert = true\n[vrrp_instance.garp]\nlower_prio_delay = 0\n"
            )
        ));
        let i = &c.vrrp.instances[0];
        assert_eq!(i.garp.lower_prio_repeat, 0, "0 means none");
        assert_eq!(i.garp.lower_prio_delay, Duration::ZERO);
        assert!(i.lower_prio_no_advert, "from [global]");
        assert!(i.higher_prio_send_advert, "the instance's own");
        assert_eq!(
            errors(&instance("[vrrp_instance.garp]\nlower_prio_repeat = -1\n")),
            ["7:21 -1 is out of range (0..=2147483647)"]
        );
    }

    #[test]
    fn vrrp_thread_settings_and_their_ranges() {
        let c = ok(&format!(
            "[global]\nvrrp_priority = -10\nvrrp_rt_priority = 50\nvrrp_no_swap = true\n{}",
            instance("")
        ));
        let p = c.global.vrrp_process;
        assert_eq!(
            (p.nice, p.rt_priority, p.no_swap),
            (Some(-10), Some(50), true)
        );
        assert_eq!(
            errors("[global]\nvrrp_priority = 20\nvrrp_rt_priority = 0\n"),
            [
                "2:17 20 is out of range (-20..=19)",
                "3:20 0 is out of range (1..=99)"
            ]
        );
    }
}
