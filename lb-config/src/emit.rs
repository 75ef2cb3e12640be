//! The model as TOML in the form docs/CONFIG.md fixes: what `xlb convert`
//! prints (defaults left out) and `xlb dump-config` prints (everything,
//! defaults filled in). Reading the output with the TOML front end gives
//! the same model back.

use crate::{
    Command, Config, Method, Metrics, Service, ServiceId, Tunnel, capacity,
    check::{Check, CheckKind, DnsType, HttpProtocol, RealLifecycle, ServiceLifecycle},
    defaults as config_defaults,
    global::{Fifo, Global},
    vrrp::{
        Garp, InitialState, Instance, Notify, Route, RouteKind, Rule, RuleAction, Scope,
        TrackInterface, TrackRef, VirtualAddress,
    },
};
use lb_common::{conn, defaults};
use std::{net::IpAddr, time::Duration};
use toml::{Table, Value};

/// Renders `config`; `full` also writes every value that equals its default.
pub fn to_toml(config: &Config, full: bool) -> String {
    let e = Emitter { full };
    let mut root = Table::new();
    let static_net = &config.static_net;
    e.list(
        &mut root,
        "static_ipaddress",
        static_net.addresses.iter().map(address),
    );
    e.list(
        &mut root,
        "static_routes",
        static_net.routes.iter().map(route),
    );
    e.list(&mut root, "static_rules", static_net.rules.iter().map(rule));
    let g = e.global(&config.global);
    if full || !g.is_empty() {
        root.insert("global".into(), Value::Table(g));
    }
    root.insert("dataplane".into(), Value::Table(e.dataplane(config)));
    let m = e.metrics(&config.metrics);
    if !m.is_empty() {
        root.insert("metrics".into(), Value::Table(m));
    }
    if let Some(b) = &config.bgp {
        root.insert("bgp".into(), Value::Table(crate::bgp::to_table(b, full)));
    }
    let v = &config.vrrp;
    e.list(
        &mut root,
        "vrrp_script",
        v.scripts.iter().map(|s| {
            let mut t = Table::new();
            t.insert("name".into(), s.name.clone().into());
            t.insert("script".into(), command(&s.script));
            e.put(
                &mut t,
                "interval",
                secs(s.interval),
                s.interval == config_defaults::SCRIPT_INTERVAL,
            );
            e.put(&mut t, "timeout", secs(s.timeout), s.timeout == s.interval);
            e.put(
                &mut t,
                "weight",
                i64::from(s.weight).into(),
                s.weight == config_defaults::TRACK_WEIGHT,
            );
            e.put(
                &mut t,
                "weight_reverse",
                s.weight_reverse.into(),
                !s.weight_reverse,
            );
            let rise_fall = config_defaults::SCRIPT_RISE_FALL;
            e.put(
                &mut t,
                "rise",
                i64::from(s.rise).into(),
                s.rise == rise_fall,
            );
            e.put(
                &mut t,
                "fall",
                i64::from(s.fall).into(),
                s.fall == rise_fall,
            );
            e.put(&mut t, "init_fail", s.init_fail.into(), !s.init_fail);
            opt(&mut t, "user", s.user.clone().map(Value::from));
            t
        }),
    );
    e.list(
        &mut root,
        "vrrp_track_file",
        v.track_files.iter().map(|f| {
            let mut t = Table::new();
            t.insert("name".into(), f.name.clone().into());
            t.insert("file".into(), f.path.display().to_string().into());
            e.put(
                &mut t,
                "weight",
                i64::from(f.weight).into(),
                f.weight == config_defaults::TRACK_FILE_WEIGHT,
            );
            opt(&mut t, "init_file", f.init.map(Value::from));
            t
        }),
    );
    e.list(
        &mut root,
        "vrrp_sync_group",
        v.sync_groups.iter().map(|g| {
            let mut t = Table::new();
            t.insert("name".into(), g.name.clone().into());
            t.insert(
                "group".into(),
                Value::Array(g.members.iter().map(|m| m.clone().into()).collect()),
            );
            notify(&mut t, &g.notify);
            opt(&mut t, "smtp_alert", g.smtp_alert.map(Value::from));
            e.tracks(
                &mut t,
                &g.track_interfaces,
                &g.track_scripts,
                &g.track_files,
            );
            t
        }),
    );
    e.list(
        &mut root,
        "vrrp_instance",
        v.instances.iter().map(|i| e.instance(i, &config.global)),
    );
    e.list(
        &mut root,
        "service",
        config.services.iter().map(|s| e.service(s)),
    );
    toml::to_string(&root).unwrap_or_else(|err| format!("# cannot render: {err}\n"))
}

struct Emitter {
    full: bool,
}

/// Whole seconds as an integer, anything finer as a float.
fn secs(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::Integer(d.as_secs() as i64)
    } else {
        Value::Float(d.as_secs_f64())
    }
}

fn command(c: &Command) -> Value {
    Value::Array(c.0.iter().map(|w| w.clone().into()).collect())
}

fn opt(t: &mut Table, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        t.insert(key.into(), v);
    }
}

fn ip(a: impl ToString) -> Value {
    a.to_string().into()
}

fn prefixed(a: IpAddr, p: u8) -> Value {
    format!("{a}/{p}").into()
}

fn scope(s: Scope) -> Value {
    s.name().into()
}

fn address(a: &VirtualAddress) -> Table {
    let mut t = Table::new();
    t.insert("address".into(), prefixed(a.address, a.prefix));
    opt(&mut t, "dev", a.dev.clone().map(Value::from));
    opt(&mut t, "brd", a.brd.map(ip));
    opt(&mut t, "scope", a.scope.map(scope));
    opt(&mut t, "label", a.label.clone().map(Value::from));
    t
}

fn route(r: &Route) -> Table {
    let mut t = Table::new();
    let kind = (r.kind != RouteKind::Unicast).then(|| r.kind.name());
    opt(&mut t, "type", kind.map(Value::from));
    t.insert("to".into(), prefixed(r.dest, r.prefix));
    opt(&mut t, "via", r.via.map(ip));
    opt(&mut t, "src", r.src.map(ip));
    opt(&mut t, "dev", r.dev.clone().map(Value::from));
    opt(&mut t, "table", r.table.map(|x| Value::Integer(x.into())));
    opt(&mut t, "metric", r.metric.map(|x| Value::Integer(x.into())));
    opt(&mut t, "scope", r.scope.map(scope));
    t
}

fn rule(r: &Rule) -> Table {
    let mut t = Table::new();
    opt(&mut t, "from", r.from.map(|(a, p)| prefixed(a, p)));
    opt(&mut t, "to", r.to.map(|(a, p)| prefixed(a, p)));
    opt(
        &mut t,
        "fwmark",
        r.fwmark.map(|(m, mask)| match mask {
            None => Value::Integer(m.into()),
            Some(k) => format!("{m:#x}/{k:#x}").into(),
        }),
    );
    opt(&mut t, "iif", r.iif.clone().map(Value::from));
    opt(&mut t, "oif", r.oif.clone().map(Value::from));
    opt(
        &mut t,
        "priority",
        r.priority.map(|x| Value::Integer(x.into())),
    );
    match r.action {
        RuleAction::Table(n) => {
            t.insert("table".into(), Value::Integer(n.into()));
        }
        RuleAction::Blackhole => {
            t.insert("type".into(), "blackhole".into());
        }
        RuleAction::Unreachable => {
            t.insert("type".into(), "unreachable".into());
        }
        RuleAction::Prohibit => {
            t.insert("type".into(), "prohibit".into());
        }
    }
    if r.from.is_none() && r.to.is_none() {
        t.insert("family".into(), if r.ipv6 { "ipv6" } else { "ipv4" }.into());
    }
    t
}

fn notify(t: &mut Table, n: &Notify) {
    opt(t, "notify_master", n.master.as_ref().map(command));
    opt(t, "notify_backup", n.backup.as_ref().map(command));
    opt(t, "notify_fault", n.fault.as_ref().map(command));
    opt(t, "notify_stop", n.stop.as_ref().map(command));
    opt(t, "notify", n.any.as_ref().map(command));
}

fn fifo(f: &Fifo) -> Value {
    let mut t = Table::new();
    t.insert("path".into(), f.path.display().to_string().into());
    opt(&mut t, "script", f.script.as_ref().map(command));
    Value::Table(t)
}

fn hex(b: &[u8]) -> Value {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        .into()
}

impl Emitter {
    /// Writes `v` unless it is the default and only non-defaults are wanted.
    fn put(&self, t: &mut Table, key: &str, v: Value, is_default: bool) {
        if self.full || !is_default {
            t.insert(key.into(), v);
        }
    }

    fn list(&self, root: &mut Table, key: &str, items: impl Iterator<Item = Table>) {
        let items: Vec<Value> = items.map(Value::Table).collect();
        if !items.is_empty() {
            root.insert(key.into(), Value::Array(items));
        }
    }

    fn garp(&self, g: &Garp, base: &Garp) -> Table {
        let mut t = Table::new();
        self.put(
            &mut t,
            "master_delay",
            secs(g.master_delay),
            g.master_delay == base.master_delay,
        );
        self.put(
            &mut t,
            "master_repeat",
            i64::from(g.master_repeat).into(),
            g.master_repeat == base.master_repeat,
        );
        if let Some(r) = g.master_refresh {
            self.put(
                &mut t,
                "master_refresh",
                secs(r),
                g.master_refresh == base.master_refresh,
            );
        }
        self.put(
            &mut t,
            "master_refresh_repeat",
            i64::from(g.master_refresh_repeat).into(),
            g.master_refresh_repeat == base.master_refresh_repeat,
        );
        self.put(
            &mut t,
            "interval",
            secs(g.interval),
            g.interval == base.interval,
        );
        self.put(
            &mut t,
            "lower_prio_repeat",
            i64::from(g.lower_prio_repeat).into(),
            g.lower_prio_repeat == base.lower_prio_repeat,
        );
        self.put(
            &mut t,
            "lower_prio_delay",
            secs(g.lower_prio_delay),
            g.lower_prio_delay == base.lower_prio_delay,
        );
        t
    }

    fn global(&self, g: &Global) -> Table {
        let d = Global::default();
        let mut t = Table::new();
        opt(&mut t, "router_id", g.router_id.clone().map(Value::from));
        opt(
            &mut t,
            "script_user",
            g.script_user.clone().map(Value::from),
        );
        self.put(
            &mut t,
            "enable_script_security",
            g.enable_script_security.into(),
            !g.enable_script_security,
        );
        self.put(
            &mut t,
            "vrrp_version",
            i64::from(g.vrrp_version).into(),
            g.vrrp_version == d.vrrp_version,
        );
        self.put(
            &mut t,
            "vrrp_mcast_group4",
            ip(g.vrrp_mcast_group4),
            g.vrrp_mcast_group4 == d.vrrp_mcast_group4,
        );
        self.put(
            &mut t,
            "vrrp_mcast_group6",
            ip(g.vrrp_mcast_group6),
            g.vrrp_mcast_group6 == d.vrrp_mcast_group6,
        );
        opt(&mut t, "notify_fifo", g.notify_fifo.as_ref().map(fifo));
        opt(
            &mut t,
            "vrrp_notify_fifo",
            g.vrrp_notify_fifo.as_ref().map(fifo),
        );
        opt(
            &mut t,
            "lvs_notify_fifo",
            g.lvs_notify_fifo.as_ref().map(fifo),
        );
        if let Some(s) = &g.lvs_sync_daemon {
            let mut st = Table::new();
            st.insert("interface".into(), s.interface.clone().into());
            st.insert("instance".into(), s.instance.clone().into());
            st.insert("id".into(), i64::from(s.id).into());
            opt(
                &mut st,
                "maxlen",
                s.maxlen.map(|x| Value::Integer(x.into())),
            );
            opt(&mut st, "port", s.port.map(|x| Value::Integer(x.into())));
            opt(&mut st, "ttl", s.ttl.map(|x| Value::Integer(x.into())));
            opt(&mut st, "group", s.group.map(ip));
            t.insert("lvs_sync_daemon".into(), Value::Table(st));
        }
        if !g.notification_email.is_empty() {
            t.insert(
                "notification_email".into(),
                Value::Array(
                    g.notification_email
                        .iter()
                        .map(|m| m.clone().into())
                        .collect(),
                ),
            );
        }
        opt(
            &mut t,
            "notification_email_from",
            g.notification_email_from.clone().map(Value::from),
        );
        opt(
            &mut t,
            "smtp_server",
            g.smtp_server.as_ref().map(|(host, port)| match port {
                25 => Value::from(host.clone()),
                p => {
                    let mut st = Table::new();
                    st.insert("host".into(), host.clone().into());
                    st.insert("port".into(), i64::from(*p).into());
                    Value::Table(st)
                }
            }),
        );
        opt(
            &mut t,
            "smtp_helo_name",
            g.smtp_helo_name.clone().map(Value::from),
        );
        self.put(
            &mut t,
            "smtp_connect_timeout",
            secs(g.smtp_connect_timeout),
            g.smtp_connect_timeout == d.smtp_connect_timeout,
        );
        opt(&mut t, "smtp_alert", g.smtp_alert.map(Value::from));
        opt(
            &mut t,
            "smtp_alert_vrrp",
            g.smtp_alert_vrrp.map(Value::from),
        );
        opt(
            &mut t,
            "smtp_alert_checker",
            g.smtp_alert_checker.map(Value::from),
        );
        // The lower-priority burst follows the master burst unless set.
        let base = Garp {
            lower_prio_repeat: g.garp.master_repeat,
            lower_prio_delay: g.garp.master_delay,
            ..Garp::default()
        };
        let garp = self.garp(&g.garp, &base);
        if !garp.is_empty() {
            t.insert("garp".into(), Value::Table(garp));
        }
        self.put(
            &mut t,
            "lower_prio_no_advert",
            g.lower_prio_no_advert.into(),
            g.lower_prio_no_advert == d.lower_prio_no_advert,
        );
        self.put(
            &mut t,
            "higher_prio_send_advert",
            g.higher_prio_send_advert.into(),
            g.higher_prio_send_advert == d.higher_prio_send_advert,
        );
        opt(
            &mut t,
            "vrrp_priority",
            g.vrrp_process.nice.map(|n| Value::Integer(n.into())),
        );
        opt(
            &mut t,
            "vrrp_rt_priority",
            g.vrrp_process.rt_priority.map(|n| Value::Integer(n.into())),
        );
        self.put(
            &mut t,
            "vrrp_no_swap",
            g.vrrp_process.no_swap.into(),
            !g.vrrp_process.no_swap,
        );
        t
    }

    fn metrics(&self, m: &Metrics) -> Table {
        let d = Metrics::default();
        let mut t = Table::new();
        let listen = m.listen.map_or_else(String::new, |a| a.to_string());
        self.put(&mut t, "listen", listen.into(), m.listen == d.listen);
        self.put(
            &mut t,
            "max_connections",
            i64::from(m.max_connections).into(),
            m.max_connections == d.max_connections,
        );
        self.put(
            &mut t,
            "header_timeout",
            secs(m.header_timeout),
            m.header_timeout == d.header_timeout,
        );
        self.put(
            &mut t,
            "idle_timeout",
            secs(m.idle_timeout),
            m.idle_timeout == d.idle_timeout,
        );
        t
    }

    fn dataplane(&self, c: &Config) -> Table {
        let d = &c.dataplane;
        let mut t = Table::new();
        t.insert(
            "interfaces".into(),
            Value::Array(d.interfaces.iter().map(|i| i.clone().into()).collect()),
        );
        self.put(
            &mut t,
            "kind",
            d.kind.name().into(),
            d.kind == config_defaults::DATAPLANE_KIND,
        );
        self.put(
            &mut t,
            "xdp_mode",
            d.xdp_mode.to_string().into(),
            d.xdp_mode == config_defaults::XDP_MODE,
        );
        let pin = d.pin_path.display().to_string();
        self.put(
            &mut t,
            "pin_path",
            pin.clone().into(),
            pin == config_defaults::PIN_PATH,
        );
        let num = |t: &mut Table, k: &str, v: u32, def: u32| {
            self.put(t, k, i64::from(v).into(), v == def)
        };
        // Unset sizes fit the services (config::capacity).
        let services: Vec<&Service> = c.services.iter().collect();
        num(
            &mut t,
            "maglev_table_size",
            d.maglev_table_size,
            capacity::maglev_table_size(&services),
        );
        num(
            &mut t,
            "max_services",
            d.max_services,
            capacity::max_services(&services),
        );
        num(
            &mut t,
            "max_reals",
            d.max_reals,
            capacity::max_reals(&services),
        );
        num(
            &mut t,
            "conntrack_size",
            d.conntrack_size,
            defaults::CONNTRACK_SIZE,
        );
        num(&mut t, "tcp_timeout", d.timeouts.tcp, conn::DEFAULT_TCP_S);
        num(
            &mut t,
            "tcp_fin_timeout",
            d.timeouts.tcp_fin,
            conn::DEFAULT_TCP_FIN_S,
        );
        num(&mut t, "udp_timeout", d.timeouts.udp, conn::DEFAULT_UDP_S);
        opt(&mut t, "tunnel_source_v4", d.tunnel_source_v4.map(ip));
        opt(&mut t, "tunnel_source_v6", d.tunnel_source_v6.map(ip));
        self.put(
            &mut t,
            "nodest_policy",
            d.nodest.name().into(),
            d.nodest == config_defaults::NODEST_POLICY,
        );
        num(
            &mut t,
            "conn_reuse_mode",
            u32::from(d.conn_reuse_mode),
            u32::from(config_defaults::CONN_REUSE_MODE),
        );
        t
    }

    fn tracks(
        &self,
        t: &mut Table,
        ifaces: &[TrackInterface],
        scripts: &[TrackRef],
        files: &[TrackRef],
    ) {
        let refs = |r: &[TrackRef]| -> Vec<Table> {
            r.iter()
                .map(|r| {
                    let mut x = Table::new();
                    x.insert("name".into(), r.name.clone().into());
                    opt(&mut x, "weight", r.weight.map(|w| Value::Integer(w.into())));
                    if r.reverse {
                        x.insert("reverse".into(), true.into());
                    }
                    x
                })
                .collect()
        };
        let ifaces: Vec<Table> = ifaces
            .iter()
            .map(|i| {
                let mut x = Table::new();
                x.insert("name".into(), i.name.clone().into());
                self.put(
                    &mut x,
                    "weight",
                    i64::from(i.weight).into(),
                    i.weight == config_defaults::TRACK_WEIGHT,
                );
                self.put(&mut x, "reverse", i.reverse.into(), !i.reverse);
                x
            })
            .collect();
        self.list(t, "track_interface", ifaces.into_iter());
        self.list(t, "track_script", refs(scripts).into_iter());
        self.list(t, "track_file", refs(files).into_iter());
    }

    fn instance(&self, i: &Instance, g: &Global) -> Table {
        let mut t = Table::new();
        t.insert("name".into(), i.name.clone().into());
        t.insert("interface".into(), i.interface.clone().into());
        t.insert("virtual_router_id".into(), i64::from(i.vrid).into());
        self.put(
            &mut t,
            "version",
            i64::from(i.version).into(),
            i.version == g.vrrp_version,
        );
        self.put(
            &mut t,
            "priority",
            i64::from(i.priority).into(),
            i.priority == config_defaults::PRIORITY,
        );
        let state = match i.initial_state {
            InitialState::Master => "MASTER",
            InitialState::Backup => "BACKUP",
        };
        self.put(
            &mut t,
            "state",
            state.into(),
            i.initial_state == config_defaults::INITIAL_STATE,
        );
        self.put(
            &mut t,
            "advert_int",
            secs(i.advert_int),
            i.advert_int == config_defaults::ADVERT_INT,
        );
        self.put(&mut t, "preempt", i.preempt.into(), i.preempt);
        self.put(
            &mut t,
            "preempt_delay",
            secs(i.preempt_delay),
            i.preempt_delay.is_zero(),
        );
        self.put(&mut t, "accept", i.accept.into(), i.accept);
        opt(
            &mut t,
            "auth_pass",
            i.auth.as_ref().map(|a| a.pass.clone().into()),
        );
        opt(&mut t, "mcast_src_ip", i.mcast_src_ip.map(ip));
        opt(&mut t, "unicast_src_ip", i.unicast_src_ip.map(ip));
        if self.full || !i.unicast_peers.is_empty() {
            t.insert(
                "unicast_peer".into(),
                Value::Array(i.unicast_peers.iter().map(|p| ip(*p)).collect()),
            );
        }
        self.put(
            &mut t,
            "check_unicast_src",
            i.check_unicast_src.into(),
            !i.check_unicast_src,
        );
        opt(&mut t, "smtp_alert", i.smtp_alert.map(Value::from));
        self.list(
            &mut t,
            "virtual_ipaddress",
            i.virtual_ipaddress.iter().map(address),
        );
        self.list(
            &mut t,
            "virtual_ipaddress_excluded",
            i.virtual_ipaddress_excluded.iter().map(address),
        );
        self.list(&mut t, "virtual_routes", i.virtual_routes.iter().map(route));
        self.list(&mut t, "virtual_rules", i.virtual_rules.iter().map(rule));
        self.tracks(
            &mut t,
            &i.track_interfaces,
            &i.track_scripts,
            &i.track_files,
        );
        if let Some(v) = &i.vmac {
            t.insert("use_vmac".into(), v.name.clone().into());
            self.put(&mut t, "vmac_xmit_base", v.xmit_base.into(), !v.xmit_base);
        }
        notify(&mut t, &i.notify);
        let garp = self.garp(&i.garp, &g.garp);
        if !garp.is_empty() {
            t.insert("garp".into(), Value::Table(garp));
        }
        self.put(
            &mut t,
            "lower_prio_no_advert",
            i.lower_prio_no_advert.into(),
            i.lower_prio_no_advert == g.lower_prio_no_advert,
        );
        self.put(
            &mut t,
            "higher_prio_send_advert",
            i.higher_prio_send_advert.into(),
            i.higher_prio_send_advert == g.higher_prio_send_advert,
        );
        t
    }

    fn service(&self, s: &Service) -> Table {
        let mut t = Table::new();
        match s.id {
            ServiceId::Addr {
                vip,
                port,
                protocol,
            } => {
                t.insert("vip".into(), ip(vip));
                t.insert("port".into(), i64::from(port).into());
                let p = if protocol == crate::Protocol::Udp {
                    "udp"
                } else {
                    "tcp"
                };
                self.put(
                    &mut t,
                    "protocol",
                    p.into(),
                    protocol == config_defaults::PROTOCOL,
                );
            }
            ServiceId::Fwmark { mark, ipv6 } => {
                t.insert("fwmark".into(), i64::from(mark).into());
                self.put(
                    &mut t,
                    "family",
                    if ipv6 { "ipv6" } else { "ipv4" }.into(),
                    !ipv6,
                );
            }
        }
        t.insert("scheduler".into(), s.scheduler.name().into());
        let method = match s.method {
            Method::Dr => "dr",
            Method::Nat => "nat",
            Method::Tun => "tun",
        };
        t.insert("method".into(), method.into());
        match s.tunnel {
            Some(Tunnel::Gue { port }) => {
                t.insert("tunnel".into(), "gue".into());
                t.insert("gue_port".into(), i64::from(port).into());
            }
            Some(Tunnel::Ipip) => self.put(&mut t, "tunnel", "ipip".into(), true),
            None => {}
        }
        self.put(&mut t, "active", s.active.into(), s.active);
        let mut flags = Vec::new();
        if s.flags.hash_port {
            flags.push(Value::from(format!("{}-port", s.scheduler.name())));
        }
        if s.flags.fallback {
            flags.push(Value::from(format!("{}-fallback", s.scheduler.name())));
        }
        if !flags.is_empty() {
            t.insert("scheduler_flags".into(), Value::Array(flags));
        }
        if let Some(p) = &s.persistence {
            t.insert("persistence_timeout".into(), i64::from(p.timeout_s).into());
            let full_mask = match p.mask {
                IpAddr::V4(m) => u32::from(m) == u32::MAX,
                IpAddr::V6(m) => u128::from(m) == u128::MAX,
            };
            let g = match p.mask {
                IpAddr::V4(m) => Value::from(m.to_string()),
                IpAddr::V6(m) => Value::Integer(u128::from(m).leading_ones().into()),
            };
            self.put(&mut t, "persistence_granularity", g, full_mask);
        }
        opt(&mut t, "group", s.group.clone().map(Value::from));
        self.lifecycle(&mut t, &s.lifecycle);
        let port = s.id.addr().map(|a| a.1);
        self.list(
            &mut t,
            "real",
            s.reals.iter().map(|r| {
                let mut x = Table::new();
                x.insert("address".into(), ip(r.address));
                self.put(
                    &mut x,
                    "port",
                    i64::from(r.port).into(),
                    Some(r.port) == port,
                );
                x.insert("weight".into(), i64::from(r.weight).into());
                self.put(
                    &mut x,
                    "uthreshold",
                    i64::from(r.u_threshold).into(),
                    r.u_threshold == 0,
                );
                self.put(
                    &mut x,
                    "lthreshold",
                    i64::from(r.l_threshold).into(),
                    r.l_threshold == 0,
                );
                self.real_lifecycle(&mut x, &r.lifecycle, &s.lifecycle);
                x
            }),
        );
        t
    }

    fn lifecycle(&self, t: &mut Table, l: &ServiceLifecycle) {
        let d = ServiceLifecycle::default();
        self.put(
            t,
            "delay_loop",
            secs(l.delay_loop),
            l.delay_loop == d.delay_loop,
        );
        self.put(t, "omega", l.omega.into(), !l.omega);
        self.put(
            t,
            "quorum",
            i64::from(l.quorum).into(),
            l.quorum == d.quorum,
        );
        self.put(
            t,
            "hysteresis",
            i64::from(l.hysteresis).into(),
            l.hysteresis == 0,
        );
        opt(t, "quorum_up", l.quorum_up.as_ref().map(command));
        opt(t, "quorum_down", l.quorum_down.as_ref().map(command));
        if let Some(s) = &l.sorry_server {
            let mut x = Table::new();
            x.insert("address".into(), ip(s.address));
            x.insert("port".into(), i64::from(s.port).into());
            self.put(&mut x, "inhibit", s.inhibit.into(), !s.inhibit);
            t.insert("sorry_server".into(), Value::Table(x));
        }
        self.put(t, "ha_suspend", l.ha_suspend.into(), !l.ha_suspend);
        opt(t, "virtualhost", l.virtualhost.clone().map(Value::from));
        opt(t, "smtp_alert", l.smtp_alert.map(Value::from));
    }

    fn real_lifecycle(&self, t: &mut Table, l: &RealLifecycle, service: &ServiceLifecycle) {
        self.put(
            t,
            "inhibit_on_failure",
            l.inhibit_on_failure.into(),
            !l.inhibit_on_failure,
        );
        opt(t, "notify_up", l.notify_up.as_ref().map(command));
        opt(t, "notify_down", l.notify_down.as_ref().map(command));
        opt(t, "smtp_alert", l.smtp_alert.map(Value::from));
        self.list(t, "check", l.checks.iter().map(|c| self.check(c, service)));
    }

    /// A check, leaving out what equals its default (`config::defaults`).
    fn check(&self, c: &Check, service: &ServiceLifecycle) -> Table {
        let mut t = Table::new();
        let kind = match &c.kind {
            CheckKind::Tcp => "tcp",
            CheckKind::Http(h) if h.tls => "ssl",
            CheckKind::Http(_) => "http",
            CheckKind::Smtp { .. } => "smtp",
            CheckKind::Dns { .. } => "dns",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Ping => "ping",
            CheckKind::Misc { .. } => "misc",
        };
        t.insert("type".into(), kind.into());
        let m = &c.common;
        opt(&mut t, "smtp_alert", m.smtp_alert.map(Value::from));
        opt(&mut t, "connect_ip", m.connect_ip.map(ip));
        opt(
            &mut t,
            "connect_port",
            m.connect_port.map(|p| Value::Integer(p.into())),
        );
        opt(&mut t, "bindto", m.bindto.map(ip));
        opt(
            &mut t,
            "bind_port",
            m.bind_port.map(|p| Value::Integer(p.into())),
        );
        self.put(
            &mut t,
            "connect_timeout",
            secs(m.connect_timeout),
            m.connect_timeout == config_defaults::CONNECT_TIMEOUT,
        );
        self.put(
            &mut t,
            "retry",
            i64::from(m.retry).into(),
            m.retry == config_defaults::retry(&c.kind),
        );
        self.put(
            &mut t,
            "delay_before_retry",
            secs(m.delay_before_retry),
            m.delay_before_retry == config_defaults::delay_before_retry(&c.kind, m.delay_loop),
        );
        self.put(
            &mut t,
            "delay_loop",
            secs(m.delay_loop),
            m.delay_loop == service.delay_loop,
        );
        self.put(
            &mut t,
            "warmup",
            secs(m.warmup),
            m.warmup == config_defaults::warmup(m.delay_loop),
        );
        self.put(&mut t, "alpha", m.alpha.into(), !m.alpha);
        opt(&mut t, "fwmark", m.fwmark.map(|f| Value::Integer(f.into())));
        match &c.kind {
            CheckKind::Http(h) => {
                let urls = h.urls.iter().map(|u| {
                    let mut x = Table::new();
                    x.insert("path".into(), u.path.clone().into());
                    if !u.status_codes.is_empty() {
                        let codes = u
                            .status_codes
                            .iter()
                            .map(|(a, b)| {
                                if a == b {
                                    Value::Integer((*a).into())
                                } else {
                                    format!("{a}-{b}").into()
                                }
                            })
                            .collect();
                        x.insert("status_code".into(), Value::Array(codes));
                    }
                    opt(&mut x, "digest", u.digest.map(|d| hex(&d)));
                    opt(
                        &mut x,
                        "virtualhost",
                        u.virtualhost.clone().map(Value::from),
                    );
                    x
                });
                self.list(&mut t, "url", urls);
                opt(
                    &mut t,
                    "virtualhost",
                    h.virtualhost.clone().map(Value::from),
                );
                if h.tls {
                    self.put(&mut t, "enable_sni", h.sni.into(), !h.sni);
                }
                self.put(
                    &mut t,
                    "http_protocol",
                    h.protocol.name().into(),
                    h.protocol == HttpProtocol::Http10,
                );
            }
            CheckKind::Smtp { helo_name } => {
                opt(&mut t, "helo_name", helo_name.clone().map(Value::from))
            }
            CheckKind::Dns { qtype, name } => {
                self.put(
                    &mut t,
                    "dns_type",
                    qtype.name().into(),
                    *qtype == DnsType::Soa,
                );
                self.put(&mut t, "dns_name", name.clone().into(), name == ".");
            }
            CheckKind::Udp {
                payload,
                require_reply,
            } => {
                if !payload.is_empty() {
                    t.insert("payload".into(), hex(payload));
                }
                match require_reply {
                    Some(r) if r.is_empty() => {
                        t.insert("require_reply".into(), true.into());
                    }
                    Some(r) => {
                        t.insert("require_reply".into(), hex(r));
                    }
                    None => {}
                }
            }
            CheckKind::Misc {
                path,
                timeout,
                dynamic,
                user,
            } => {
                t.insert("misc_path".into(), command(path));
                self.put(
                    &mut t,
                    "misc_timeout",
                    secs(*timeout),
                    *timeout == config_defaults::misc_timeout(service.delay_loop),
                );
                self.put(&mut t, "misc_dynamic", (*dynamic).into(), !dynamic);
                opt(&mut t, "user", user.clone().map(Value::from));
            }
            CheckKind::Tcp | CheckKind::Ping => {}
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use crate as config;

    const DP: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

    #[test]
    fn conn_reuse_mode_round_trips_and_its_default_is_left_out() {
        let c = config::parse("x.toml", &format!("{DP}conn_reuse_mode = 3\n")).unwrap();
        assert_eq!(c.dataplane.conn_reuse_mode, 3);
        let text = super::to_toml(&c, false);
        assert!(text.contains("conn_reuse_mode = 3\n"), "{text}");
        let again = config::parse("y.toml", &text).unwrap();
        assert_eq!(again.dataplane.conn_reuse_mode, 3);
        let default = config::parse("x.toml", DP).unwrap();
        assert_eq!(default.dataplane.conn_reuse_mode, 1);
        assert!(!super::to_toml(&default, false).contains("conn_reuse_mode"));
        assert!(super::to_toml(&default, true).contains("conn_reuse_mode = 1\n"));
    }
}
