//! Turns the raw TOML into a [`Config`], collecting every error with its position.

mod alert;
mod check;
mod host;
mod vrrp;

use super::capacity::{self, MAX_MAGLEV_TABLE, is_prime};
use super::semantic::{self, Site, Sites};
use super::{
    AgentFiles, Config, ConfigError, ConfigErrors, Dataplane, Method, Metrics, NodestPolicy,
    Persistence, Protocol, Real, SchedFlags, Scheduler, ScriptSite, Service, Timeouts, Tunnel,
    XdpMode, raw,
};
use lb_common::{conn, defaults};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
    path::PathBuf,
};
use toml::Spanned;

mod ipvs;

/// keepalived's scheduler flags, with the scheduler each belongs to.
const SCHED_FLAGS: [(&str, Scheduler); 4] = [
    ("sh-port", Scheduler::Sh),
    ("sh-fallback", Scheduler::Sh),
    ("mh-port", Scheduler::Mh),
    ("mh-fallback", Scheduler::Mh),
];
/// Longest persistence timeout accepted (one year), in seconds.
const MAX_PERSISTENCE: i64 = 365 * 24 * 3600;
/// keepalived's and IPVS's largest weight (INT32_MAX).
const MAX_WEIGHT: i64 = i32::MAX as i64;
/// Most metrics connections served at once: a scraper or two and a person
/// need a handful; the cap is what keeps a flood from taking descriptors.
const MAX_METRICS_CONNECTIONS: u32 = 1024;

/// Parses and validates the text of a config file named `file`: the TOML
/// front end's syntax and type checks here, then the one semantic check
/// (`semantic::check`) on the model, placed through the spans recorded.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    parse_sited(file, text, false).map(|(config, _)| config)
}

/// As [`parse`], with where each script is written, and with `on_host`
/// what this host must offer too (the interfaces named, the address
/// owner's addresses: `host.rs`), as `xlb check` and `xlb run` read a file.
pub fn parse_sited(
    file: &str,
    text: &str,
    on_host: bool,
) -> Result<(Config, Vec<ScriptSite>), ConfigErrors> {
    let mut v = Validator {
        file,
        text,
        file_name: file.into(),
        line_starts: std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect(),
        errors: Vec::new(),
        scripts: Vec::new(),
        sites: Sites::new(file),
    };
    let raw: raw::File = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            v.error(e.span().unwrap_or(0..0), e.message().trim_end());
            return Err(ConfigErrors(v.errors));
        }
    };
    let mut dataplane = v.dataplane(&raw.dataplane);
    v.site("dataplane", raw.dataplane.span());
    let mut services: Vec<Service> = Vec::new();
    for svc in &raw.services {
        if let Some(s) = v.service(svc, services.len()) {
            services.push(s);
        }
    }
    if let Some(dp) = &mut dataplane {
        // Sizes the file leaves out fit its services, with headroom.
        let list: Vec<&Service> = services.iter().collect();
        let d = raw.dataplane.get_ref();
        if d.max_services.is_none() {
            dp.max_services = capacity::max_services(&list);
        }
        if d.max_reals.is_none() {
            dp.max_reals = capacity::max_reals(&list);
        }
        if d.maglev_table_size.is_none() {
            dp.maglev_table_size = capacity::maglev_table_size(&list);
        }
    }
    let (global, static_net, vrrp) = v.vrrp_all(&raw);
    let metrics = v.metrics(raw.metrics.as_ref());
    let agent = v.agent_files(raw.agent.as_ref());
    let bgp = raw.bgp.as_ref().and_then(|b| {
        crate::bgp::validate(file, text, b, &services, &vrrp)
            .map_err(|e| v.errors.extend(e))
            .ok()
    });
    if on_host {
        v.host(&raw);
    }
    match dataplane {
        Some(dataplane) if v.errors.is_empty() => {
            let config = Config {
                global,
                dataplane,
                services,
                vrrp,
                static_net,
                metrics,
                agent,
                bgp,
            };
            let errors = semantic::check(&config, &v.sites);
            if errors.is_empty() {
                Ok((config, v.scripts))
            } else {
                Err(ConfigErrors(errors))
            }
        }
        _ => Err(ConfigErrors(v.errors)),
    }
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    /// Byte offset of each line's start, for [`Validator::position`].
    line_starts: Vec<usize>,
    /// `file`, shared by every site recorded.
    file_name: std::rc::Rc<str>,
    errors: Vec<ConfigError>,
    /// Where each command was written.
    scripts: Vec<ScriptSite>,
    /// Where each part of the model was written, for the semantic check.
    sites: Sites,
}

impl Validator<'_> {
    /// 1-based line and column (in characters) of byte `offset`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Every model path records its site, so this runs for each field of
        // each real: a search in the line index, not a scan of the file.
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let line_start = self.line_starts[line - 1];
        (line, self.text[line_start..offset].chars().count() + 1)
    }

    /// Notes that model path `path` was written at `span`.
    fn site(&mut self, path: impl Into<String>, span: Range<usize>) {
        let (line, col) = self.position(span.start);
        self.sites.set(
            path,
            Site {
                file: self.file_name.clone(),
                line,
                col,
            },
        );
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = self.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        });
    }

    /// `[agent]`: absolute paths, each defaulting to [`AgentFiles::default`].
    fn agent_files(&mut self, a: Option<&Spanned<raw::Agent>>) -> AgentFiles {
        let mut files = AgentFiles::default();
        let Some(a) = a.map(|a| a.get_ref()) else {
            return files;
        };
        for (raw, slot) in [
            (&a.pid_file, &mut files.pid_file),
            (&a.state_dump, &mut files.state_dump),
            (&a.stats_dump, &mut files.stats_dump),
        ] {
            if let Some(p) = raw {
                if p.get_ref().starts_with('/') {
                    *slot = PathBuf::from(p.get_ref());
                } else {
                    self.error(
                        p.span(),
                        format!("`{}` is not an absolute path", p.get_ref()),
                    );
                }
            }
        }
        files
    }

    /// `[metrics]`: on at the default address unless `enabled = false` or
    /// `listen = ""`; the connection cap and timeouts.
    fn metrics(&mut self, m: Option<&Spanned<raw::Metrics>>) -> Metrics {
        let mut out = Metrics::default();
        let Some(raw) = m.map(|m| m.get_ref()) else {
            return out;
        };
        if let Some(n) = &raw.max_connections {
            match u32::try_from(*n.get_ref()) {
                Ok(n @ 1..=MAX_METRICS_CONNECTIONS) => out.max_connections = n,
                _ => self.error(
                    n.span(),
                    format!(
                        "`max_connections` must be from 1 to {MAX_METRICS_CONNECTIONS} (each takes a descriptor of the agent)"
                    ),
                ),
            }
        }
        if let Some(t) = &raw.header_timeout
            && let Some(d) = self.seconds(t, "header_timeout", true)
        {
            out.header_timeout = d;
        }
        if let Some(t) = &raw.idle_timeout
            && let Some(d) = self.seconds(t, "idle_timeout", true)
        {
            out.idle_timeout = d;
        }
        if raw.enabled.as_ref().is_some_and(|e| !*e.get_ref()) {
            out.listen = None;
            return out;
        }
        match raw.listen.as_ref() {
            None => {}
            Some(l) if l.get_ref().is_empty() => out.listen = None,
            Some(l) => match l.get_ref().parse() {
                Ok(a) => out.listen = Some(a),
                Err(_) => {
                    self.error(
                        l.span(),
                        format!(
                            "`{}` is not an address:port to listen on (e.g. 127.0.0.1:9477, [::1]:9477)",
                            l.get_ref()
                        ),
                    );
                }
            },
        }
        out
    }

    fn dataplane(&mut self, dp: &Spanned<raw::Dataplane>) -> Option<Dataplane> {
        let raw = dp.get_ref();
        let before = self.errors.len();
        let kind = self.kind(raw.kind.as_ref());
        let mut interfaces: Vec<String> = Vec::new();
        for name in raw.interfaces.get_ref() {
            let n = name.get_ref();
            if n.is_empty() || n.len() > 15 || n.contains(['/', ' ']) {
                self.error(name.span(), format!("`{n}` is not a valid interface name"));
            } else if interfaces.contains(n) {
                self.error(name.span(), format!("interface `{n}` is listed twice"));
            } else {
                interfaces.push(n.clone());
            }
        }
        let xdp_mode = match raw.xdp_mode.as_ref() {
            None => crate::defaults::XDP_MODE,
            Some(m) => match m.get_ref().as_str() {
                "native" => XdpMode::Native,
                "generic" => XdpMode::Generic,
                "auto" => XdpMode::Auto,
                other => {
                    self.error(
                        m.span(),
                        format!(
                            "unknown xdp_mode `{other}`, expected `native`, `generic` or `auto`"
                        ),
                    );
                    XdpMode::Auto
                }
            },
        };
        let pin_path = match raw.pin_path.as_ref() {
            None => PathBuf::from(crate::defaults::PIN_PATH),
            Some(p) => {
                let path = PathBuf::from(p.get_ref());
                if !path.is_absolute() {
                    self.error(
                        p.span(),
                        "`pin_path` must be an absolute path on a bpffs mount",
                    );
                }
                path
            }
        };
        let maglev_table_size = self.number(
            &raw.maglev_table_size,
            defaults::MAGLEV_TABLE_SIZE,
            1..=MAX_MAGLEV_TABLE as i64,
        );
        if let Some(m) = &raw.maglev_table_size
            && !is_prime(maglev_table_size)
        {
            self.error(
                m.span(),
                format!("`maglev_table_size` must be a prime (such as 65537 or 131071), not {maglev_table_size}"),
            );
        }
        let max_services = self.number(&raw.max_services, defaults::MAX_SERVICES, 1..=4096);
        let max_reals = self.number(&raw.max_reals, defaults::MAX_REALS, 2..=1 << 20);
        let conntrack_size = self.number(
            &raw.conntrack_size,
            defaults::CONNTRACK_SIZE,
            1024..=1 << 27,
        );
        if let Some(m) = &raw.maglev_table_size
            && u64::from(max_services) * u64::from(maglev_table_size) > u64::from(u32::MAX / 4)
        {
            self.error(
                m.span(),
                "`max_services` × `maglev_table_size` is too large for one map",
            );
        }
        // IPVS accepts any positive number of seconds; a month is plenty.
        const MAX_TIMEOUT: i64 = 31 * 24 * 3600;
        let timeouts = Timeouts {
            tcp: self.number(&raw.tcp_timeout, conn::DEFAULT_TCP_S, 1..=MAX_TIMEOUT),
            tcp_fin: self.number(
                &raw.tcp_fin_timeout,
                conn::DEFAULT_TCP_FIN_S,
                1..=MAX_TIMEOUT,
            ),
            udp: self.number(&raw.udp_timeout, conn::DEFAULT_UDP_S, 1..=MAX_TIMEOUT),
        };
        let tunnel_source_v4 = raw.tunnel_source_v4.as_ref().and_then(|a| {
            match self.address(a, "`tunnel_source_v4`")? {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => {
                    self.error(a.span(), "`tunnel_source_v4` must be an IPv4 address");
                    None
                }
            }
        });
        let tunnel_source_v6 = raw.tunnel_source_v6.as_ref().and_then(|a| {
            match self.address(a, "`tunnel_source_v6`")? {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => {
                    self.error(a.span(), "`tunnel_source_v6` must be an IPv6 address");
                    None
                }
            }
        });
        let nodest = match raw.nodest_policy.as_ref() {
            None => crate::defaults::NODEST_POLICY,
            Some(m) => match m.get_ref().as_str() {
                "keep" => NodestPolicy::Keep,
                "expire" => NodestPolicy::Expire,
                "reschedule" => NodestPolicy::Reschedule,
                other => {
                    self.error(
                        m.span(),
                        format!(
                            "unknown nodest_policy `{other}`, expected `keep`, `expire` or `reschedule`"
                        ),
                    );
                    NodestPolicy::Keep
                }
            },
        };
        let conn_reuse_mode = self.number(
            &raw.conn_reuse_mode,
            u32::from(crate::defaults::CONN_REUSE_MODE),
            0..=3,
        ) as u8;
        (self.errors.len() == before).then_some(Dataplane {
            kind,
            nodest,
            conn_reuse_mode,
            interfaces,
            xdp_mode,
            pin_path,
            maglev_table_size,
            max_services,
            max_reals,
            conntrack_size,
            timeouts,
            tunnel_source_v4,
            tunnel_source_v6,
        })
    }

    fn number(
        &mut self,
        value: &Option<Spanned<i64>>,
        default: u32,
        range: std::ops::RangeInclusive<i64>,
    ) -> u32 {
        let Some(v) = value else { return default };
        let n = *v.get_ref();
        if !range.contains(&n) {
            self.error(
                v.span(),
                format!("{n} is out of range ({}..={})", range.start(), range.end()),
            );
            return default;
        }
        n as u32
    }

    fn address(&mut self, s: &Spanned<String>, what: &str) -> Option<IpAddr> {
        match s.get_ref().parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.error(s.span(), format!("{what} `{a}` must be a unicast address"));
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    s.span(),
                    format!("{what} `{}` is not an IP address", s.get_ref()),
                );
                None
            }
        }
    }

    fn port(&mut self, p: &Spanned<i64>) -> Option<u16> {
        match u16::try_from(*p.get_ref()) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                self.error(
                    p.span(),
                    format!("port {} is out of range (1..=65535)", p.get_ref()),
                );
                None
            }
        }
    }

    /// Service `index` of the model, if it has no error.
    fn service(&mut self, svc: &Spanned<raw::Service>, index: usize) -> Option<Service> {
        let raw = svc.get_ref();
        let before = self.errors.len();
        let at = format!("services[{index}]");
        self.site(at.clone(), svc.span());
        if let Some(f) = &raw.fwmark {
            self.site(format!("{at}.id"), f.span());
        }
        if let Some(g) = &raw.persistence_granularity {
            self.site(format!("{at}.persistence.mask"), g.span());
        }
        let ident = self.ident(raw, svc.span());
        let vip = ident.family_addr();
        let port = ident.port();
        let protocol = match raw.protocol.as_ref() {
            None => crate::defaults::PROTOCOL,
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    self.error(
                        p.span(),
                        format!("unknown protocol `{other}`, expected `tcp` or `udp`"),
                    );
                    Protocol::Tcp
                }
            },
        };
        let scheduler = match raw.scheduler.as_ref() {
            None => crate::defaults::SCHEDULER,
            Some(s) => Scheduler::from_name(s.get_ref()).unwrap_or_else(|| {
                let names: Vec<&str> = Scheduler::ALL.iter().map(|e| e.1).collect();
                self.error(
                    s.span(),
                    format!(
                        "unknown scheduler `{}`; expected one of {}",
                        s.get_ref(),
                        names.join(", ")
                    ),
                );
                Scheduler::Mh
            }),
        };
        let flags = self.sched_flags(raw.scheduler_flags.as_ref(), scheduler);
        let persistence = self.persistence(raw, vip);
        let method = match raw.method.as_ref() {
            None => crate::defaults::METHOD,
            Some(m) => match m.get_ref().as_str() {
                "dr" => Method::Dr,
                "nat" => Method::Nat,
                "tun" => Method::Tun,
                other => {
                    self.error(
                        m.span(),
                        format!("unknown forwarding method `{other}`; supported: dr, nat, tun"),
                    );
                    Method::Dr
                }
            },
        };
        let active = raw.active.as_ref().is_none_or(|a| *a.get_ref());
        let tunnel = self.tunnel(raw, method);
        let lifecycle = self.service_lifecycle(raw, port);
        if let Some(s) = &raw.sorry_server {
            self.site(
                format!("{at}.lifecycle.sorry_server"),
                s.get_ref().address.span(),
            );
        }

        let mut reals: Vec<(Real, Range<usize>)> = Vec::new();
        for r in &raw.reals {
            let rr = r.get_ref();
            let address = self.address(&rr.address, "real server address");
            let real_port = match rr.port.as_ref() {
                None => port,
                Some(p) => self.port(p),
            };
            let u_threshold = self.number(&rr.uthreshold, 0, 0..=i64::from(u32::MAX));
            let l_threshold = self.number(&rr.lthreshold, 0, 0..=i64::from(u32::MAX));
            let weight = match rr.weight.as_ref() {
                None => crate::defaults::REAL_WEIGHT,
                Some(w) if (0..=MAX_WEIGHT).contains(w.get_ref()) => *w.get_ref() as u32,
                Some(w) => {
                    self.error(
                        w.span(),
                        format!("weight {} is out of range (0..={MAX_WEIGHT})", w.get_ref()),
                    );
                    1
                }
            };
            let alpha = raw.alpha.as_ref().is_some_and(|a| *a.get_ref());
            let real_lifecycle = self.real_lifecycle(rr, &lifecycle, alpha);
            let (Some(address), Some(real_port), Some(_), Some(port)) =
                (address, real_port, vip, port)
            else {
                continue;
            };
            if matches!(method, Method::Dr | Method::Tun) && real_port != port && !ident.is_fwmark()
            {
                let span = rr.port.as_ref().map_or(r.span(), |p| p.span());
                let what = if method == Method::Dr {
                    "direct routing"
                } else {
                    "tunnelling"
                };
                self.error(span, format!(
                    "{what} cannot change the port: real server port {real_port} differs from the service port {port}"
                ));
                continue;
            }
            if let Some((_, first)) = reals
                .iter()
                .find(|(x, _)| x.address == address && x.port == real_port)
            {
                let line = self.position(first.start).0;
                self.error(
                    r.span(),
                    format!(
                        "real server {address} port {real_port} is already listed at line {line}"
                    ),
                );
                continue;
            }
            let real = format!("{at}.reals[{}]", reals.len());
            self.site(real.clone(), r.span());
            self.site(format!("{real}.address"), rr.address.span());
            if let Some(l) = &rr.lthreshold {
                self.site(format!("{real}.l_threshold"), l.span());
            }
            reals.push((
                Real {
                    address,
                    port: real_port,
                    weight,
                    u_threshold,
                    l_threshold,
                    lifecycle: real_lifecycle,
                },
                r.span(),
            ));
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Service {
            id: ident.id(protocol)?,
            scheduler,
            method,
            tunnel,
            active,
            flags,
            persistence,
            reals: reals.into_iter().map(|(r, _)| r).collect(),
            lifecycle,
            group: raw.group.as_ref().map(|g| g.get_ref().clone()),
        })
    }

    /// The `tunnel` and `gue_port` keys: only for `method = "tun"`, where
    /// `tunnel` defaults to IPIP and GUE needs its port.
    fn tunnel(&mut self, raw: &raw::Service, method: Method) -> Option<Tunnel> {
        if method != Method::Tun {
            for span in [
                raw.tunnel.as_ref().map(|t| t.span()),
                raw.gue_port.as_ref().map(|p| p.span()),
            ]
            .into_iter()
            .flatten()
            {
                self.error(
                    span,
                    "`tunnel` and `gue_port` apply only to method = \"tun\"",
                );
            }
            return None;
        }
        let gue = match raw.tunnel.as_ref() {
            None => false,
            Some(t) => match t.get_ref().as_str() {
                "ipip" => false,
                "gue" => true,
                other => {
                    self.error(
                        t.span(),
                        format!("unknown tunnel `{other}`, expected `ipip` or `gue`"),
                    );
                    return None;
                }
            },
        };
        match (gue, raw.gue_port.as_ref()) {
            (false, None) => Some(Tunnel::Ipip),
            (false, Some(p)) => {
                self.error(p.span(), "`gue_port` applies only to tunnel = \"gue\"");
                None
            }
            (true, Some(p)) => self.port(p).map(|port| Tunnel::Gue { port }),
            (true, None) => {
                let span = raw.tunnel.as_ref().map_or(0..0, |t| t.span());
                self.error(
                    span,
                    "tunnel = \"gue\" needs `gue_port` (the real servers' GUE UDP port)",
                );
                None
            }
        }
    }
}

impl Validator<'_> {
    fn sched_flags(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
        scheduler: Scheduler,
    ) -> SchedFlags {
        let mut flags = SchedFlags::default();
        for f in raw.map_or(&[][..], |v| v.get_ref().as_slice()) {
            let name = f.get_ref().as_str();
            match SCHED_FLAGS.iter().find(|(n, _)| *n == name) {
                None => {
                    let names: Vec<&str> = SCHED_FLAGS.iter().map(|(n, _)| *n).collect();
                    self.error(
                        f.span(),
                        format!(
                            "unknown scheduler flag `{name}`; expected one of {}",
                            names.join(", ")
                        ),
                    );
                }
                Some((_, owner)) if *owner != scheduler => self.error(
                    f.span(),
                    format!(
                        "flag `{name}` belongs to scheduler `{}`, not `{}`",
                        owner.name(),
                        scheduler.name()
                    ),
                ),
                Some(_) if name.ends_with("-port") => flags.hash_port = true,
                Some(_) => flags.fallback = true,
            }
        }
        flags
    }

    fn persistence(&mut self, raw: &raw::Service, vip: Option<IpAddr>) -> Option<Persistence> {
        let Some(t) = &raw.persistence_timeout else {
            if let Some(g) = &raw.persistence_granularity {
                self.error(
                    g.span(),
                    "`persistence_granularity` needs `persistence_timeout`",
                );
            }
            return None;
        };
        let timeout_s = self.number(&raw.persistence_timeout, 0, 1..=MAX_PERSISTENCE);
        let vip = vip?;
        let full = if vip.is_ipv4() {
            IpAddr::V4(Ipv4Addr::BROADCAST)
        } else {
            IpAddr::V6(Ipv6Addr::from(u128::MAX))
        };
        // A netmask makes an IPv4 mask, a prefix length an IPv6 one, whatever
        // the VIP: the semantic check says when it is of the other family.
        let mask = match raw.persistence_granularity.as_ref() {
            None => full,
            Some(g) => match g.get_ref() {
                raw::Granularity::Netmask(m) => match m.parse::<Ipv4Addr>() {
                    Ok(a) if u32::from(a).leading_ones() == u32::from(a).count_ones() => {
                        IpAddr::V4(a)
                    }
                    _ => {
                        self.error(g.span(), format!(
                                "`{m}` is not an IPv4 netmask (contiguous ones, such as 255.255.255.0)"
                            ));
                        full
                    }
                },
                raw::Granularity::Prefix(p) if (1..=128).contains(p) => {
                    IpAddr::V6(Ipv6Addr::from(u128::MAX << (128 - *p as u32)))
                }
                raw::Granularity::Prefix(p) => {
                    self.error(
                        g.span(),
                        format!("prefix length {p} is out of range (1..=128)"),
                    );
                    full
                }
            },
        };
        (timeout_s > 0 && t.get_ref() > &0).then_some(Persistence { timeout_s, mask })
    }
}
