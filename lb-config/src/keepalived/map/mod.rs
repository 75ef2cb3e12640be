//! The keyword tree onto the model: each block's keywords are checked
//! against the table in `keywords.rs` (unknown → error with a hint,
//! unsupported → error or, lenient, warning), then mapped by area.

mod check;
mod global;
mod ifaces;
mod lvs;
mod net;
mod sites;
mod vrrp;

use super::{
    diag::{Diag, Pos},
    include::Token,
    keywords::{Area, Blk, Status},
    tree::Node,
};
use crate::{
    Command, Config, Dataplane, DataplaneKind, Service, ServiceId, Timeouts, capacity, hint,
    vrrp::{StaticNet, Vrrp},
};
use lb_common::{conn, defaults};
use std::{
    borrow::Cow, collections::HashMap, net::IpAddr, ops::RangeInclusive, path::PathBuf,
    time::Duration,
};

pub struct Ctx<'d> {
    pub diag: &'d mut Diag,
}

/// The data plane a keepalived.conf gets: attached to the interfaces its
/// VRRP instances (else its static addresses, else `default_interface`)
/// name, or to none, so that the agent attaches where the routes to the
/// reals go; maps sized for its services; fwmark services need IPVS.
fn dataplane(
    vrrp: &Vrrp,
    static_net: &StaticNet,
    services: &[Service],
    g: &global::Extra,
) -> Dataplane {
    let mut interfaces: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !interfaces.iter().any(|i| i == name) {
            interfaces.push(name.to_string());
        }
    };
    for i in &vrrp.instances {
        add(&i.interface);
    }
    if vrrp.instances.is_empty() {
        for a in &static_net.addresses {
            if let Some(d) = &a.dev {
                add(d);
            }
        }
    }
    if let (true, Some(d)) = (interfaces.is_empty(), &g.default_interface) {
        interfaces.push(d.clone());
    }
    let fwmark = services
        .iter()
        .any(|s| matches!(s.id, ServiceId::Fwmark { .. }));
    let list: Vec<&Service> = services.iter().collect();
    Dataplane {
        kind: if fwmark {
            DataplaneKind::Ipvs
        } else {
            DataplaneKind::Xdp
        },
        interfaces,
        xdp_mode: crate::defaults::XDP_MODE,
        pin_path: PathBuf::from(crate::defaults::PIN_PATH),
        maglev_table_size: capacity::maglev_table_size(&list),
        max_services: capacity::max_services(&list),
        max_reals: capacity::max_reals(&list),
        conntrack_size: defaults::CONNTRACK_SIZE,
        timeouts: g.timeouts.unwrap_or(Timeouts {
            tcp: conn::DEFAULT_TCP_S,
            tcp_fin: conn::DEFAULT_TCP_FIN_S,
            udp: conn::DEFAULT_UDP_S,
        }),
        tunnel_source_v4: None,
        tunnel_source_v6: None,
        nodest: Default::default(),
        // A sysctl (net.ipv4.vs.conn_reuse_mode), not a keepalived.conf keyword.
        conn_reuse_mode: crate::defaults::CONN_REUSE_MODE,
    }
}

pub fn config(nodes: &[Node], diag: &mut Diag, check_interfaces: bool) -> Config {
    let mut cx = Ctx { diag };
    let mut sites = sites::new(nodes.first());
    let selected = cx.select(Area::Top, nodes);
    let top: Vec<&Node> = selected.iter().map(|n| &**n).collect();
    if check_interfaces {
        ifaces::check(&mut cx, &top);
    }
    let mut config = Config {
        global: Default::default(),
        dataplane: dataplane(
            &Default::default(),
            &Default::default(),
            &[],
            &global::Extra::default(),
        ),
        services: Vec::new(),
        vrrp: Default::default(),
        static_net: Default::default(),
        // keepalived.conf has no such settings: TOML's defaults.
        metrics: Default::default(),
        agent: Default::default(),
        // BGP comes from an extra TOML file (`xlb run --bgp-config`).
        bgp: None,
    };
    // keepalived reads every global_defs block as one (a later keyword wins).
    let globals: Vec<&Node> = top
        .iter()
        .copied()
        .filter(|n| n.name() == "global_defs")
        .collect();
    let g = match globals.as_slice() {
        [] => global::Extra::default(),
        [n] => global::map(&mut cx, n, &mut config.global),
        [first, ..] => {
            let mut merged = (*first).clone();
            merged.block = Some(
                globals
                    .iter()
                    .flat_map(|n| n.children().iter().cloned())
                    .collect(),
            );
            global::map(&mut cx, &merged, &mut config.global)
        }
    };
    let mut sync_daemon_iface = None;
    let mut groups: HashMap<String, (Pos, Vec<lvs::GroupMember>)> = HashMap::new();
    for n in &top {
        match n.name() {
            "static_ipaddress" => {
                for line in n.children() {
                    if let Some(mut a) = net::address(&mut cx, line, "static_ipaddress") {
                        if a.dev.is_none() {
                            a.dev = g.default_interface.clone();
                        }
                        config.static_net.addresses.push(a);
                    }
                }
            }
            "static_routes" => config.static_net.routes.extend(
                n.children()
                    .iter()
                    .filter_map(|l| net::route(&mut cx, l, "static_routes")),
            ),
            "static_rules" => config.static_net.rules.extend(
                n.children()
                    .iter()
                    .filter_map(|l| net::rule(&mut cx, l, "static_rules")),
            ),
            "vrrp_script" => {
                if let Some(s) = vrrp::script(&mut cx, n) {
                    sites::named(&mut sites, "vrrp.scripts", config.vrrp.scripts.len(), n);
                    config.vrrp.scripts.push(s);
                }
            }
            "vrrp_track_file" | "track_file" => {
                if let Some(f) = vrrp::track_file(&mut cx, n) {
                    let i = config.vrrp.track_files.len();
                    sites::named(&mut sites, "vrrp.track_files", i, n);
                    config.vrrp.track_files.push(f);
                }
            }
            "vrrp_sync_group" => {
                if let Some(s) = vrrp::sync_group(&mut cx, n) {
                    sites::sync_group(&mut sites, config.vrrp.sync_groups.len(), n);
                    config.vrrp.sync_groups.push(s);
                }
            }
            "vrrp_instance" => {
                if let Some((i, sd)) = vrrp::instance(&mut cx, n, &config.global, &g) {
                    if let Some(sd) = sd {
                        sync_daemon_iface = Some(sd);
                    }
                    sites::instance(&mut sites, config.vrrp.instances.len(), n);
                    config.vrrp.instances.push(i);
                }
            }
            "virtual_server_group" => {
                let name = cx.arg(n, 0).text.clone();
                if let Some((first, _)) = groups.get(&name) {
                    let line = first.line;
                    cx.diag.error(
                        n.pos(),
                        format!("virtual_server_group '{name}' is already defined at line {line}"),
                    );
                } else {
                    let members = lvs::group(&mut cx, n);
                    groups.insert(name, (n.pos().clone(), members));
                }
            }
            _ => {}
        }
    }
    if let Some((iface, instance)) = sync_daemon_iface
        && config.global.lvs_sync_daemon.is_none()
    {
        config.global.lvs_sync_daemon = Some(crate::global::SyncDaemon {
            interface: iface,
            instance,
            id: 0,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
        });
    }
    // Each `virtual_server group NAME` block is one group of services (a
    // second block naming the same group, say for UDP, is another).
    let mut group_uses: HashMap<String, usize> = HashMap::new();
    for n in top.iter().filter(|n| n.name() == "virtual_server") {
        let group = match n.args.as_slice() {
            [g, name] if g.text == "group" => {
                let uses = group_uses.entry(name.text.clone()).or_insert(0);
                *uses += 1;
                Some(if *uses == 1 {
                    name.text.clone()
                } else {
                    format!("{}#{uses}", name.text)
                })
            }
            _ => None,
        };
        for (mut s, at) in lvs::virtual_server(&mut cx, n, &groups) {
            s.group = group.clone();
            sites::service(&mut sites, config.services.len(), &at);
            config.services.push(s);
        }
    }
    sites::sync_daemon(&mut sites, &top);
    vrrp::strict_checks(&mut cx, &top, &config, g.strict);
    vrrp::sync_daemon_instance(&mut cx, &top, &config);
    vrrp::sync_members_start_backup(&mut cx, &top, &mut config.vrrp);
    config.dataplane = dataplane(&config.vrrp, &config.static_net, &config.services, &g);
    sync_daemon_needs_ipvs(&mut cx, &top, &mut config);
    // The model's own rules, once this front end's checks passed.
    if cx.diag.error_count() == 0 {
        for e in crate::semantic::check(&config, &sites) {
            cx.diag.push(e);
        }
    }
    config
}

/// IPVS's connection sync exists only under the IPVS data plane (a
/// keepalived.conf gets it with fwmark services): on XDP, `lvs_sync_daemon`
/// would never start, so it is refused (a warning under `--lenient`, and
/// dropped).
fn sync_daemon_needs_ipvs(cx: &mut Ctx, top: &[&Node], config: &mut Config) {
    if config.dataplane.kind == DataplaneKind::Ipvs {
        return;
    }
    let at = top
        .iter()
        .flat_map(|n| match n.name() {
            "global_defs" => n.children().iter().find(|k| k.name() == "lvs_sync_daemon"),
            "vrrp_instance" => n
                .children()
                .iter()
                .find(|k| k.name() == "lvs_sync_daemon_interface"),
            _ => None,
        })
        .next();
    if let Some(k) = at {
        cx.diag.unsupported(
            k.pos(),
            k.name(),
            "the XDP data plane has no connection sync yet; IPVS's sync daemon runs under the IPVS data plane only (xlb picks IPVS for fwmark services)",
        );
    }
    config.global.lvs_sync_daemon = None;
}

impl Ctx<'_> {
    /// The nodes of a block that xlb maps: unknown keywords, wrong shapes
    /// and unsupported keywords are reported and left out.
    ///
    /// A block keyword that may appear once but appears again is read as
    /// keepalived reads it: the later block's contents are added to the
    /// first (list items append, a repeated setting takes its last value),
    /// with a warning. Such a merged block is an owned copy.
    pub fn select<'n>(&mut self, area: Area, nodes: &'n [Node]) -> Vec<Cow<'n, Node>> {
        let table = area.keywords();
        let mut first: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut out: Vec<Cow<'n, Node>> = Vec::new();
        for n in nodes {
            let Some(kw) = table.iter().find(|k| k.name == n.name()) else {
                let hint = hint::closest(n.name(), table.iter().map(|k| k.name))
                    .map(|h| format!(" (did you mean '{h}'?)"))
                    .unwrap_or_default();
                self.diag.error(
                    n.pos(),
                    format!("unknown keyword '{}' in {}{hint}", n.name(), area.name()),
                );
                continue;
            };
            match kw.status {
                Status::Mapped => {}
                Status::Unsupported(reason) => {
                    self.diag.unsupported(n.pos(), n.name(), reason);
                    continue;
                }
                Status::Ignored(_) => continue,
            }
            let mut ok = true;
            match (kw.block, &n.block) {
                (Blk::Yes, None) => {
                    self.diag
                        .error(n.pos(), format!("'{}' needs a '{{ … }}' block", n.name()));
                    ok = false;
                }
                (Blk::No, Some(_)) => {
                    self.diag
                        .error(n.pos(), format!("'{}' takes no block", n.name()));
                    ok = false;
                }
                _ => {}
            }
            let count = n.args.len();
            if count < kw.min || count > kw.max {
                let want = match (kw.min, kw.max) {
                    (0, 0) => "no value".to_string(),
                    (a, b) if a == b => format!("{a} value{}", if a == 1 { "" } else { "s" }),
                    (a, usize::MAX) => {
                        format!("at least {a} value{}", if a == 1 { "" } else { "s" })
                    }
                    (a, b) => format!("{a} to {b} values"),
                };
                let at = n.args.get(kw.max).map_or(n.pos(), |t| &t.pos);
                self.diag
                    .error(at, format!("'{}' takes {want}, found {count}", n.name()));
                ok = false;
            }
            if !kw.multi {
                if let Some(&(line, at)) = first.get(n.name()) {
                    if kw.block == Blk::Yes {
                        if ok {
                            self.diag.warning(
                                n.pos(),
                                format!(
                                    "'{}' appears again (first at line {line}): its contents are added to the first block's, as in keepalived",
                                    n.name()
                                ),
                            );
                            let first: &mut Node = out[at].to_mut();
                            first
                                .block
                                .get_or_insert_with(Vec::new)
                                .extend(n.children().iter().cloned());
                        }
                        continue;
                    } else if ok {
                        // keepalived runs the keyword again: the last value wins.
                        self.diag.warning(
                            n.pos(),
                            format!(
                                "'{}' is set again (first at line {line}): this value wins, as in keepalived",
                                n.name()
                            ),
                        );
                        out[at] = Cow::Borrowed(n);
                        first.insert(kw.name, (n.pos().line, at));
                        continue;
                    }
                } else if ok {
                    first.insert(kw.name, (n.pos().line, out.len()));
                }
            }
            if ok {
                out.push(Cow::Borrowed(n));
            }
        }
        out
    }

    /// Argument `i` (the table guaranteed it exists).
    pub fn arg<'n>(&self, n: &'n Node, i: usize) -> &'n Token {
        &n.args[i]
    }

    fn bad(&mut self, t: &Token, what: &str, expected: &str) {
        self.diag.error(
            &t.pos,
            format!(
                "invalid value '{}' for '{what}' (expected {expected})",
                t.text
            ),
        );
    }

    pub fn int(&mut self, t: &Token, what: &str, range: RangeInclusive<i64>) -> Option<i64> {
        match t.text.parse::<i64>() {
            Ok(v) if range.contains(&v) => Some(v),
            _ => {
                self.bad(
                    t,
                    what,
                    &format!("an integer {}..={}", range.start(), range.end()),
                );
                None
            }
        }
    }

    /// keepalived's optional boolean after a keyword: none means yes.
    pub fn boolean(&mut self, n: &Node) -> Option<bool> {
        let Some(t) = n.args.first() else {
            return Some(true);
        };
        match t.text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Some(true),
            "no" | "false" | "off" => Some(false),
            _ => {
                self.bad(t, n.name(), "yes or no");
                None
            }
        }
    }

    /// An e-mail address (`local@domain`, as lettre will parse it).
    pub fn mailbox(&mut self, t: &Token, what: &str) -> Option<String> {
        match t.text.split_once('@') {
            Some((l, d))
                if !l.is_empty() && !d.is_empty() && !t.text.contains(char::is_whitespace) =>
            {
                Some(t.text.clone())
            }
            _ => {
                self.bad(t, what, "an e-mail address");
                None
            }
        }
    }

    /// A `notification_email` recipient: keepalived hands any word to its
    /// SMTP server; a local name (`root`) goes as `root@<this host's name>`.
    pub fn recipient(&mut self, t: &Token) -> Option<String> {
        if t.text.contains('@') {
            return self.mailbox(t, "notification_email");
        }
        if t.text.is_empty() || t.text.contains(char::is_whitespace) {
            self.bad(
                t,
                "notification_email",
                "an e-mail address or a local user name",
            );
            return None;
        }
        self.diag.warning(
            &t.pos,
            format!(
                "local recipient '{}' is mailed as '{}@' this host's name (keepalived sends '{}' as it is and the SMTP server qualifies it)",
                t.text, t.text, t.text
            ),
        );
        Some(t.text.clone())
    }

    pub fn uint(&mut self, t: &Token, what: &str, range: RangeInclusive<u32>) -> Option<u32> {
        let r = i64::from(*range.start())..=i64::from(*range.end());
        self.int(t, what, r).map(|v| v as u32)
    }

    /// Seconds, with a fraction allowed (`0.001`), up to `max`.
    pub fn secs(&mut self, t: &Token, what: &str, max: f64) -> Option<Duration> {
        match t.text.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Some(Duration::from_secs_f64(v)),
            _ => {
                self.bad(t, what, &format!("seconds 0..={max}"));
                None
            }
        }
    }

    pub fn ip(&mut self, t: &Token, what: &str) -> Option<IpAddr> {
        match t.text.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.bad(t, what, "an IP address");
                None
            }
        }
    }

    pub fn port(&mut self, t: &Token, what: &str) -> Option<u16> {
        self.int(t, what, 0..=65535).map(|v| v as u16)
    }

    /// A script: one quoted string split into words as keepalived does, or
    /// the words of the line. Trailing `USER [GROUP]` after a quoted script
    /// is refused: xlb runs notify scripts as `script_user`.
    pub fn command(&mut self, n: &Node) -> Option<Command> {
        let c = self.command_words(n)?;
        // keepalived 1.x ran scripts through /bin/sh; xlb (like keepalived
        // 2.x) executes the program itself, so shell syntax would only fail
        // at every run.
        let shell = |i: usize, w: &str| {
            let operator = ["|", "||", "&&", ";", "&"].contains(&w)
                || w.starts_with(['<', '>'])
                || w.starts_with("2>");
            operator || (i == 0 && w.contains(['<', '>', '|', '&', ';', '`', '$', '(', ')']))
        };
        let is_shell = ["sh", "bash", "dash", "ash", "zsh", "ksh"]
            .contains(&c.0[0].rsplit('/').next().unwrap_or_default());
        let found = c.0.iter().enumerate().find(|(i, w)| shell(*i, w));
        if let (false, Some((_, w))) = (is_shell, found) {
            self.diag.error(
                &n.args[0].pos,
                format!("'{w}' is shell syntax: xlb runs scripts without a shell (write \"/bin/sh -c '…'\")"),
            );
            return None;
        }
        self.diag.script(&n.args[0].pos, &c);
        Some(c)
    }

    /// keepalived reads words after a quoted script, and after any
    /// notify/quorum script, as `USER [GROUP]` to run it as.
    fn command_words(&mut self, n: &Node) -> Option<Command> {
        let first = &n.args[0];
        let takes_user =
            first.quoted || n.name().starts_with("notify") || n.name().starts_with("quorum_");
        if let (true, Some(user)) = (takes_user, n.args.get(1)) {
            // With --lenient the script still runs, as script_user.
            self.diag.unsupported(
                &user.pos,
                &format!("{} … {}", n.name(), user.text),
                "running one script as its own user; xlb runs scripts as global_defs script_user (quote the command if these words are its arguments)",
            );
        }
        if first.quoted {
            self.words(first, n.name())
        } else if takes_user {
            Some(Command(vec![first.text.clone()]))
        } else {
            Some(Command(n.args.iter().map(|t| t.text.clone()).collect()))
        }
    }

    fn words(&mut self, t: &Token, what: &str) -> Option<Command> {
        match shell_words::split(&t.text) {
            Ok(w) if !w.is_empty() => Some(Command(w)),
            Ok(_) => {
                self.bad(t, what, "a command");
                None
            }
            Err(e) => {
                self.diag
                    .error(&t.pos, format!("cannot split '{}' into words: {e}", t.text));
                None
            }
        }
    }

    /// `USER [GROUP]` as one string.
    pub fn user(&mut self, n: &Node) -> String {
        n.args
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}
