//! `vrrp_script`, `vrrp_track_file`, `vrrp_sync_group`, `vrrp_instance`,
//! and the cross-checks between them.

use super::{Ctx, global::Extra, net};
use crate::keepalived::{keywords::Area, tree::Node};
use crate::{
    Config,
    global::Global,
    vrrp::{
        Auth, InitialState, Instance, Notify, SyncGroup, TrackFileDef, TrackInterface, TrackRef,
        TrackScriptDef, Vmac, Vrrp,
    },
};
use std::{path::PathBuf, time::Duration};

const DAY: f64 = 86400.0;

pub fn script(cx: &mut Ctx, n: &Node) -> Option<TrackScriptDef> {
    let name = n.args[0].text.clone();
    let mut script = None;
    let mut script_given = false;
    let mut interval = crate::defaults::SCRIPT_INTERVAL;
    let mut timeout = None;
    let mut d = TrackScriptDef {
        name,
        script: crate::Command(Vec::new()),
        interval,
        timeout: interval,
        weight: crate::defaults::TRACK_WEIGHT,
        weight_reverse: false,
        rise: crate::defaults::SCRIPT_RISE_FALL,
        fall: crate::defaults::SCRIPT_RISE_FALL,
        init_fail: false,
        user: None,
    };
    for k in &cx.select(Area::VrrpScript, n.children()) {
        if k.name() == "init_fail" {
            d.init_fail = true;
            continue;
        }
        let a = &k.args[0];
        match k.name() {
            "script" => {
                script_given = true;
                script = cx.command(k);
            }
            "interval" => match cx.secs(a, "interval", DAY) {
                Some(i) if !i.is_zero() => interval = i,
                Some(_) => cx.diag.error(
                    &a.pos,
                    "invalid value '0' for 'interval' (expected seconds above 0)",
                ),
                None => {}
            },
            "timeout" => timeout = cx.secs(a, "timeout", DAY),
            "weight" => {
                d.weight = cx.int(a, "weight", -254..=254).unwrap_or(0) as i32;
                if let Some(r) = k.args.get(1) {
                    if r.text == "reverse" {
                        d.weight_reverse = true;
                    } else {
                        cx.diag.error(
                            &r.pos,
                            format!(
                                "invalid value '{}' after 'weight' (expected 'reverse')",
                                r.text
                            ),
                        );
                    }
                }
            }
            "rise" => d.rise = cx.uint(a, "rise", 1..=u32::MAX).unwrap_or(1),
            "fall" => d.fall = cx.uint(a, "fall", 1..=u32::MAX).unwrap_or(1),
            _ => d.user = Some(cx.user(k)), // user
        }
    }
    d.interval = interval;
    d.timeout = timeout.unwrap_or(interval);
    match script {
        Some(s) => {
            d.script = s;
            Some(d)
        }
        None => {
            if !script_given {
                cx.diag
                    .error(n.pos(), format!("vrrp_script '{}' has no 'script'", d.name));
            }
            None
        }
    }
}

pub fn track_file(cx: &mut Ctx, n: &Node) -> Option<TrackFileDef> {
    let mut d = TrackFileDef {
        name: n.args[0].text.clone(),
        path: PathBuf::new(),
        weight: crate::defaults::TRACK_FILE_WEIGHT,
        init: None,
    };
    let mut file = false;
    for k in &cx.select(Area::TrackFile, n.children()) {
        match k.name() {
            "file" => {
                d.path = PathBuf::from(&k.args[0].text);
                file = true;
            }
            "weight" => {
                d.weight = cx.int(&k.args[0], "weight", -254..=254).unwrap_or(1) as i32;
                match k.args.get(1).map(|r| r.text.as_str()) {
                    // keepalived multiplies the file's number by −weight.
                    Some("reverse") if d.weight != 0 => d.weight = -d.weight,
                    Some("reverse") => cx.diag.unsupported(
                        &k.args[1].pos,
                        "weight 0 reverse",
                        "a reversed zero weight (Fault while the file holds 0) is not implemented",
                    ),
                    None | Some("noreverse") => {}
                    Some(other) => cx.diag.error(
                        &k.args[1].pos,
                        format!("invalid value '{other}' after 'weight' (expected 'reverse')"),
                    ),
                }
            }
            _ => {
                let mut init = 0;
                for a in &k.args {
                    if a.text == "overwrite" {
                        cx.diag.unsupported(
                            &a.pos,
                            "init_file … overwrite",
                            "xlb only creates a missing file",
                        );
                    } else if let Some(v) = cx.int(a, "init_file", -254..=254) {
                        init = v;
                    }
                }
                d.init = Some(init);
            }
        }
    }
    if !file {
        cx.diag.error(
            n.pos(),
            format!("vrrp_track_file '{}' has no 'file'", d.name),
        );
        return None;
    }
    Some(d)
}

fn notify(cx: &mut Ctx, k: &Node, notify: &mut Notify) -> bool {
    let slot = match k.name() {
        "notify_master" => &mut notify.master,
        "notify_backup" => &mut notify.backup,
        "notify_fault" => &mut notify.fault,
        "notify_stop" => &mut notify.stop,
        "notify" => &mut notify.any,
        _ => return false,
    };
    *slot = cx.command(k);
    true
}

/// `NAME [weight W [reverse|noreverse]]` lines of track blocks: the weight
/// and whether it is reversed (keepalived: the priority moves the other way).
fn track_weight(cx: &mut Ctx, line: &Node) -> Option<(i32, bool)> {
    match line.args.as_slice() {
        [] => None,
        [w, v, rest @ ..] if w.text == "weight" => {
            let mut reverse = false;
            match rest {
                [] => {}
                [r] if r.text == "reverse" || r.text == "noreverse" => {
                    reverse = r.text == "reverse";
                }
                [r, ..] => {
                    cx.diag.error(
                        &r.pos,
                        format!(
                            "unexpected '{}' after the weight (expected 'reverse')",
                            r.text
                        ),
                    );
                }
            }
            cx.int(v, "weight", -254..=254).map(|w| (w as i32, reverse))
        }
        [w, ..] => {
            let hint = crate::hint::closest(&w.text, ["weight"])
                .map(|h| format!(" (did you mean '{h}'?)"))
                .unwrap_or_default();
            cx.diag.error(
                &w.pos,
                format!("unknown keyword '{}' in {}{hint}", w.text, "a track line"),
            );
            None
        }
    }
}

struct Tracks {
    interfaces: Vec<TrackInterface>,
    scripts: Vec<TrackRef>,
    files: Vec<TrackRef>,
}

fn tracks(cx: &mut Ctx, k: &Node, t: &mut Tracks) -> bool {
    match k.name() {
        "track_interface" => {
            for l in k.children() {
                let (weight, reverse) = track_weight(cx, l).unwrap_or((0, false));
                t.interfaces.push(TrackInterface {
                    name: l.name().to_string(),
                    weight,
                    reverse,
                });
            }
        }
        "track_script" | "track_file" => {
            for l in k.children() {
                let w = track_weight(cx, l);
                if k.name() == "track_file" && w == Some((0, true)) {
                    cx.diag.unsupported(
                        &l.pos().clone(),
                        "track_file … weight 0 reverse",
                        "a reversed zero weight (Fault while the file holds 0) is not implemented",
                    );
                }
                let r = TrackRef {
                    name: l.name().to_string(),
                    weight: w.map(|w| w.0),
                    reverse: w.is_some_and(|w| w.1),
                };
                if k.name() == "track_script" {
                    t.scripts.push(r);
                } else {
                    t.files.push(r);
                }
            }
        }
        _ => return false,
    }
    true
}

pub fn sync_group(cx: &mut Ctx, n: &Node) -> Option<SyncGroup> {
    let mut g = SyncGroup {
        name: n.args[0].text.clone(),
        members: Vec::new(),
        notify: Notify::default(),
        track_interfaces: Vec::new(),
        track_scripts: Vec::new(),
        track_files: Vec::new(),
        smtp_alert: None,
    };
    let mut t = Tracks {
        interfaces: Vec::new(),
        scripts: Vec::new(),
        files: Vec::new(),
    };
    for k in &cx.select(Area::SyncGroup, n.children()) {
        if k.name() == "group" {
            for l in k.children() {
                for w in l.words() {
                    g.members.push(w.text.clone());
                }
            }
        } else if k.name() == "smtp_alert" {
            g.smtp_alert = cx.boolean(k);
        } else if !notify(cx, k, &mut g.notify) {
            tracks(cx, k, &mut t);
        }
    }
    g.track_interfaces = t.interfaces;
    g.track_scripts = t.scripts;
    g.track_files = t.files;
    Some(g)
}

/// The instance, and `lvs_sync_daemon_interface` (old form of the global
/// `lvs_sync_daemon IFACE INSTANCE`) when given.
pub fn instance(
    cx: &mut Ctx,
    n: &Node,
    global: &Global,
    extra: &Extra,
) -> Option<(Instance, Option<(String, String)>)> {
    let name = n.args[0].text.clone();
    let errors = cx.diag.error_count();
    let mut i = Instance {
        smtp_alert: None,
        name: name.clone(),
        interface: String::new(),
        vrid: 0,
        version: global.vrrp_version,
        priority: crate::defaults::PRIORITY,
        initial_state: crate::defaults::INITIAL_STATE,
        advert_int: crate::defaults::ADVERT_INT,
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept: !extra.strict,
        auth: None,
        mcast_src_ip: None,
        unicast_src_ip: None,
        unicast_peers: Vec::new(),
        check_unicast_src: false,
        virtual_ipaddress: Vec::new(),
        virtual_ipaddress_excluded: Vec::new(),
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        track_interfaces: Vec::new(),
        track_scripts: Vec::new(),
        track_files: Vec::new(),
        vmac: None,
        garp: global.garp,
        lower_prio_no_advert: global.lower_prio_no_advert,
        higher_prio_send_advert: global.higher_prio_send_advert,
        notify: Notify::default(),
    };
    let mut t = Tracks {
        interfaces: Vec::new(),
        scripts: Vec::new(),
        files: Vec::new(),
    };
    let mut sync_iface = None;
    let mut advert: Option<&Node> = None;
    let mut auth: Option<&Node> = None;
    let mut vmac: Option<&Node> = None;
    let mut xmit_base = false;
    let (mut has_iface, mut has_vrid) = (false, false);
    // What keepalived derives from what was (not) set.
    let mut state: Option<&Node> = None;
    let (mut priority_set, mut version_set, mut accept_set) = (false, false, false);
    let mut strict = extra.strict;
    let mut nopreempt: Option<&Node> = None;
    let mut preempt_delay: Option<&Node> = None;
    // Lower-priority settings given explicitly (strict mode resets them).
    let mut lower: Vec<&Node> = Vec::new();
    // The instance's address family: the first address line or source sets it.
    let mut family: Option<bool> = None;
    let selected = cx.select(Area::Instance, n.children());
    for k in &selected {
        let k: &Node = k;
        if notify(cx, k, &mut i.notify) || tracks(cx, k, &mut t) {
            continue;
        }
        let a = || &k.args[0];
        match k.name() {
            "state" => match a().text.as_str() {
                "MASTER" => {
                    i.initial_state = InitialState::Master;
                    state = Some(k);
                }
                "BACKUP" => {
                    i.initial_state = InitialState::Backup;
                    state = Some(k);
                }
                _ => cx.diag.error(
                    &a().pos,
                    format!(
                        "invalid value '{}' for 'state' (expected MASTER or BACKUP)",
                        a().text
                    ),
                ),
            },
            "interface" => {
                i.interface = a().text.clone();
                has_iface = true;
            }
            "virtual_router_id" => {
                has_vrid = true;
                if let Some(v) = cx.uint(a(), "virtual_router_id", 1..=255) {
                    i.vrid = v as u8;
                }
            }
            "priority" => {
                priority_set = true;
                if let Some(v) = cx.uint(a(), "priority", 1..=255) {
                    i.priority = v as u8;
                }
            }
            "advert_int" => advert = Some(k),
            "version" => {
                version_set = true;
                if let Some(v) = cx.uint(a(), "version", 2..=3) {
                    i.version = v as u8;
                }
            }
            "nopreempt" => {
                i.preempt = false;
                nopreempt = Some(k);
            }
            "preempt" => {
                i.preempt = true;
                nopreempt = None;
            }
            "preempt_delay" => {
                if let Some(d) = cx.secs(a(), "preempt_delay", 1000.0) {
                    i.preempt_delay = d;
                    preempt_delay = Some(k);
                }
            }
            "accept" => {
                i.accept = true;
                accept_set = true;
            }
            "no_accept" => {
                i.accept = false;
                accept_set = true;
            }
            "strict_mode" => strict = cx.boolean(k).unwrap_or(strict),
            "authentication" => auth = Some(k),
            "mcast_src_ip" => {
                i.mcast_src_ip = cx.ip(a(), "mcast_src_ip");
                family = family.or(i.mcast_src_ip.map(|a| a.is_ipv6()));
            }
            "unicast_src_ip" => {
                i.unicast_src_ip = cx.ip(a(), "unicast_src_ip");
                family = family.or(i.unicast_src_ip.map(|a| a.is_ipv6()));
            }
            "unicast_peer" => {
                for l in k.children() {
                    if let Some(extra) = l.args.first() {
                        cx.diag.unsupported(
                            &extra.pos,
                            &extra.text,
                            "per-peer options are not implemented",
                        );
                    }
                    if let Some(p) = cx.ip(&l.kw, "unicast_peer") {
                        family = family.or(Some(p.is_ipv6()));
                        i.unicast_peers.push(p);
                    }
                }
            }
            "check_unicast_src" => i.check_unicast_src = true,
            "smtp_alert" => i.smtp_alert = cx.boolean(k),
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                let block: &'static str = if k.name() == "virtual_ipaddress" {
                    "virtual_ipaddress"
                } else {
                    "virtual_ipaddress_excluded"
                };
                for l in k.children() {
                    let Some(a) = net::address(cx, l, block) else {
                        continue;
                    };
                    if block == "virtual_ipaddress_excluded" {
                        i.virtual_ipaddress_excluded.push(a);
                        continue;
                    }
                    // keepalived keeps one family per instance (the first
                    // address's) and drops the others, saying so.
                    let ipv6 = *family.get_or_insert(a.address.is_ipv6());
                    if a.address.is_ipv6() == ipv6 {
                        i.virtual_ipaddress.push(a);
                    } else {
                        cx.diag.warning(l.pos(), format!(
                            "{} is not of the instance's address family ({}); it is left out, as keepalived 2.2.7 leaves it out (put it in virtual_ipaddress_excluded, or in an instance of its own)",
                            a.address,
                            if ipv6 { "IPv6" } else { "IPv4" }
                        ));
                    }
                }
            }
            "virtual_routes" => {
                let list: Vec<_> = k
                    .children()
                    .iter()
                    .filter_map(|l| net::route(cx, l, "virtual_routes"))
                    .collect();
                i.virtual_routes.extend(list);
            }
            "virtual_rules" => {
                let list: Vec<_> = k
                    .children()
                    .iter()
                    .filter_map(|l| net::rule(cx, l, "virtual_rules"))
                    .collect();
                i.virtual_rules.extend(list);
            }
            "use_vmac" => vmac = Some(k),
            "vmac_xmit_base" => xmit_base = true,
            "garp_master_delay" => {
                if let Some(d) = cx.secs(a(), k.name(), 3600.0) {
                    i.garp.master_delay = d;
                }
            }
            "garp_master_repeat" => {
                if let Some(v) = cx.uint(a(), k.name(), 1..=255) {
                    i.garp.master_repeat = v;
                }
            }
            "garp_master_refresh" => {
                if let Some(d) = cx.secs(a(), k.name(), 3600.0) {
                    i.garp.master_refresh = (!d.is_zero()).then_some(d);
                }
            }
            "garp_master_refresh_repeat" => {
                if let Some(v) = cx.uint(a(), k.name(), 1..=255) {
                    i.garp.master_refresh_repeat = v;
                }
            }
            "garp_interval" | "gna_interval" => {
                if let Some(d) = cx.secs(a(), k.name(), 1.0) {
                    i.garp.interval = d;
                }
            }
            "garp_lower_prio_delay" => {
                lower.push(k);
                if let Some(d) = cx.secs(a(), k.name(), 3600.0) {
                    i.garp.lower_prio_delay = d;
                }
            }
            "garp_lower_prio_repeat" => {
                lower.push(k);
                if let Some(v) = cx.uint(a(), k.name(), 0..=i32::MAX as u32) {
                    i.garp.lower_prio_repeat = v;
                }
            }
            "lower_prio_no_advert" => {
                lower.push(k);
                if let Some(b) = cx.boolean(k) {
                    i.lower_prio_no_advert = b;
                }
            }
            "higher_prio_send_advert" => {
                lower.push(k);
                if let Some(b) = cx.boolean(k) {
                    i.higher_prio_send_advert = b;
                }
            }
            _ => sync_iface = Some((a().text.clone(), name.clone())), // lvs_sync_daemon_interface
        }
    }
    derive(
        cx,
        &mut i,
        Derive {
            state,
            priority_set,
            version_set,
            accept_set,
            strict,
            nopreempt,
            preempt_delay,
            lower,
            ipv6: family == Some(true),
            global,
        },
    );
    // global_defs vrrp_check_unicast_src: for the instances that have unicast peers.
    if extra.check_unicast_src && !i.unicast_peers.is_empty() {
        i.check_unicast_src = true;
    }
    if let Some(k) = advert {
        let t = &k.args[0];
        let max = if i.version == 2 { 255.0 } else { 40.95 };
        if let Some(d) = cx.secs(t, "advert_int", max) {
            let cs = d.as_secs_f64() * 100.0;
            let whole = if i.version == 2 {
                d.subsec_nanos() == 0
            } else {
                (cs - cs.round()).abs() < 1e-6
            };
            if d.is_zero() || !whole {
                let unit = if i.version == 2 {
                    "whole seconds 1..=255 for VRRPv2"
                } else {
                    "centiseconds 0.01..=40.95 for VRRPv3"
                };
                cx.diag.error(
                    &t.pos,
                    format!(
                        "invalid value '{}' for 'advert_int' (expected {unit})",
                        t.text
                    ),
                );
            } else {
                i.advert_int = Duration::from_millis((cs.round() as u64) * 10);
            }
        }
    }
    if let Some(k) = auth {
        i.auth = authentication(cx, k, i.version);
    }
    match (vmac, xmit_base) {
        (Some(k), _) => {
            let ipv6 = i
                .virtual_ipaddress
                .first()
                .is_some_and(|a| a.address.is_ipv6());
            let name = k.args.first().map_or_else(
                || format!("{}.{}", if ipv6 { "vrrp6" } else { "vrrp" }, i.vrid),
                |t| t.text.clone(),
            );
            i.vmac = Some(Vmac { name, xmit_base });
        }
        (None, true) => {
            let k = selected
                .iter()
                .find(|k| k.name() == "vmac_xmit_base")
                .map(|k| k.pos().clone());
            if let Some(pos) = k {
                cx.diag.error(&pos, "'vmac_xmit_base' needs 'use_vmac'");
            }
        }
        (None, false) => {}
    }
    if !has_iface {
        cx.diag.error(
            n.pos(),
            format!("vrrp_instance '{name}' has no 'interface'"),
        );
    }
    if !has_vrid {
        cx.diag.error(
            n.pos(),
            format!("vrrp_instance '{name}' has no 'virtual_router_id'"),
        );
    }
    i.track_interfaces = t.interfaces;
    i.track_scripts = t.scripts;
    i.track_files = t.files;
    (cx.diag.error_count() == errors).then_some((i, sync_iface))
}

/// What an instance left unset, and the settings keepalived clears.
struct Derive<'n> {
    state: Option<&'n Node>,
    priority_set: bool,
    version_set: bool,
    accept_set: bool,
    strict: bool,
    nopreempt: Option<&'n Node>,
    preempt_delay: Option<&'n Node>,
    /// `garp_lower_prio_*`, `lower_prio_no_advert`, `higher_prio_send_advert` as given.
    lower: Vec<&'n Node>,
    ipv6: bool,
    global: &'n Global,
}

/// keepalived 2.2.7's `vrrp_complete_instance`: defaults that follow from
/// other settings, and combinations it corrects (with a warning here).
fn derive(cx: &mut Ctx, i: &mut Instance, d: Derive) {
    if !d.priority_set && i.initial_state == InitialState::Master {
        // No priority: MASTER means the address owner.
        i.priority = 255;
    }
    if d.state.is_none() && i.priority == 255 {
        i.initial_state = InitialState::Master;
    }
    if let (true, Some(k)) = (d.strict, d.state)
        && (i.initial_state == InitialState::Master) != (i.priority == 255)
    {
        let want = if i.priority == 255 {
            InitialState::Master
        } else {
            InitialState::Backup
        };
        cx.diag.warning(k.pos(), format!(
            "under strict mode the state follows the priority: this instance starts as {} (as keepalived 2.2.7 makes it)",
            if want == InitialState::Master { "MASTER" } else { "BACKUP" }
        ));
        i.initial_state = want;
    }
    if !d.version_set {
        // IPv6 instances speak VRRPv3 whatever vrrp_version says.
        i.version = if d.ipv6 { 3 } else { d.global.vrrp_version };
    }
    if let Some(k) = d.nopreempt {
        let why = if i.priority == 255 {
            Some("priority 255")
        } else if i.initial_state == InitialState::Master {
            Some("state MASTER")
        } else {
            None
        };
        if let Some(why) = why {
            cx.diag.warning(k.pos(), format!(
                "'nopreempt' does not work with {why} and is cleared (as keepalived 2.2.7 clears it)"
            ));
            i.preempt = true;
        }
    }
    if let Some(k) = d.preempt_delay
        && !i.preempt_delay.is_zero()
    {
        let why = if i.initial_state == InitialState::Master {
            Some("state MASTER")
        } else if d.strict {
            Some("strict mode")
        } else if !i.preempt {
            Some("nopreempt")
        } else {
            None
        };
        if let Some(why) = why {
            cx.diag.warning(k.pos(), format!(
                "'preempt_delay' does not work with {why} and is cleared (as keepalived 2.2.7 clears it)"
            ));
            i.preempt_delay = Duration::ZERO;
        }
    }
    if !d.accept_set {
        i.accept = i.priority == 255 || !d.strict;
    }
    if d.strict {
        // RFC behaviour: no announcement and no answer to a lower priority,
        // no advert before yielding (keepalived resets what was set).
        let strict_value = |name: &str| match name {
            "garp_lower_prio_repeat" | "garp_lower_prio_delay" => "0",
            "lower_prio_no_advert" => "on",
            _ => "off",
        };
        let fixed = (
            i.garp.lower_prio_repeat,
            i.garp.lower_prio_delay,
            i.lower_prio_no_advert,
            i.higher_prio_send_advert,
        ) != (0, Duration::ZERO, true, false);
        for k in &d.lower {
            if fixed {
                cx.diag.warning(
                    k.pos(),
                    format!(
                        "strict mode requires '{}' {}: reset (as keepalived 2.2.7 resets it)",
                        k.name(),
                        strict_value(k.name())
                    ),
                );
            }
        }
        i.garp.lower_prio_repeat = 0;
        i.garp.lower_prio_delay = Duration::ZERO;
        i.lower_prio_no_advert = true;
        i.higher_prio_send_advert = false;
    }
}

fn authentication(cx: &mut Ctx, k: &Node, version: u8) -> Option<Auth> {
    let mut kind = None;
    let mut pass = None;
    let selected = cx.select(Area::Auth, k.children());
    for a in &selected {
        let v = &a.args[0];
        if a.name() == "auth_type" {
            match v.text.as_str() {
                "PASS" => kind = Some(v),
                "AH" => {
                    // Not a --lenient warning: dropping it would leave the
                    // instance unable to talk to its AH peers.
                    cx.diag.error(&v.pos, "invalid value 'AH' for 'auth_type' (xlb does not implement IPsec AH, which RFC 3768 removed from VRRP; use PASS on every peer)");
                    return None;
                }
                _ => {
                    cx.diag.error(
                        &v.pos,
                        format!(
                            "invalid value '{}' for 'auth_type' (expected PASS or AH)",
                            v.text
                        ),
                    );
                    return None;
                }
            }
        } else if v.text.len() > 8 {
            cx.diag.error(&v.pos, format!("'auth_pass' is {} bytes long; VRRP carries at most 8 (keepalived would silently use '{}')", v.text.len(), &v.text[..v.text.char_indices().nth(8).map_or(v.text.len(), |c| c.0).min(8)]));
            return None;
        } else {
            pass = Some(v.text.clone());
        }
    }
    if version == 3 {
        cx.diag.warning(k.pos(), "VRRPv3 has no authentication (RFC 9568): the 'authentication' block is ignored, as keepalived 2.2.7 ignores it");
        return None;
    }
    match (kind, pass) {
        (Some(_), Some(pass)) => Some(Auth { pass }),
        _ => {
            cx.diag.error(
                k.pos(),
                "'authentication' needs both 'auth_type PASS' and 'auth_pass'",
            );
            None
        }
    }
}

/// keepalived starts a sync group's members as Backup whatever their
/// `state`: the group decides together.
pub fn sync_members_start_backup(cx: &mut Ctx, top: &[&Node], vrrp: &mut Vrrp) {
    for i in &mut vrrp.instances {
        let in_group = vrrp.sync_groups.iter().any(|g| g.members.contains(&i.name));
        if !in_group || i.initial_state != InitialState::Master {
            continue;
        }
        i.initial_state = InitialState::Backup;
        let at = top
            .iter()
            .filter(|n| n.name() == "vrrp_instance" && n.args[0].text == i.name)
            .flat_map(|n| n.children().iter().find(|k| k.name() == "state"))
            .next();
        if let Some(k) = at {
            cx.diag.warning(
                k.pos(),
                format!(
                    "vrrp_instance '{}' is in a vrrp_sync_group: it starts as BACKUP, as keepalived 2.2.7 starts it",
                    i.name
                ),
            );
        }
    }
}

/// keepalived's `lvs_sync_daemon` follows a VRRP instance, which must be
/// defined (the TOML form runs a master daemon when it names none, so this
/// is keepalived.conf's rule, not the semantic check's).
pub fn sync_daemon_instance(cx: &mut Ctx, top: &[&Node], config: &Config) {
    let Some(sd) = &config.global.lvs_sync_daemon else {
        return;
    };
    let instances: Vec<&str> = top
        .iter()
        .filter(|n| n.name() == "vrrp_instance")
        .map(|n| n.args[0].text.as_str())
        .collect();
    if instances.contains(&sd.instance.as_str()) {
        return;
    }
    let at = top
        .iter()
        .filter(|n| n.name() == "global_defs")
        .flat_map(|n| n.children())
        .rfind(|k| k.name() == "lvs_sync_daemon")
        .and_then(|k| k.args.get(1));
    if let Some(t) = at {
        let hint = crate::hint::closest(&t.text, instances.iter().copied())
            .map(|h| format!(" (did you mean '{h}'?)"))
            .unwrap_or_default();
        cx.diag.error(
            &t.pos,
            format!(
                "lvs_sync_daemon names '{}', but no vrrp_instance '{}' is defined{hint}",
                t.text, t.text
            ),
        );
    }
}

/// `vrrp_strict` (or an instance's `strict_mode`): what it forbids,
/// checked once every block is read. The TOML form has no strict mode.
pub fn strict_checks(cx: &mut Ctx, top: &[&Node], config: &Config, strict: bool) {
    let vrrp = &config.vrrp;
    for n in top.iter().filter(|n| n.name() == "vrrp_instance") {
        let Some(i) = vrrp.instances.iter().find(|i| i.name == n.args[0].text) else {
            continue;
        };
        let strict = strict
            || n.children().iter().any(|k| {
                k.name() == "strict_mode"
                    && k.args
                        .first()
                        .is_none_or(|a| a.text != "no" && a.text != "false" && a.text != "off")
            });
        if strict {
            if !i.unicast_peers.is_empty() {
                cx.diag.error(
                    n.pos(),
                    format!(
                        "vrrp_instance '{}': vrrp_strict forbids unicast_peer",
                        i.name
                    ),
                );
            }
            if i.virtual_ipaddress.is_empty() {
                cx.diag.error(
                    n.pos(),
                    format!(
                        "vrrp_instance '{}': vrrp_strict needs at least one virtual_ipaddress",
                        i.name
                    ),
                );
            }
            if i.version == 2 && i.virtual_ipaddress.iter().any(|a| a.address.is_ipv6()) {
                cx.diag.error(
                    n.pos(),
                    format!(
                        "vrrp_instance '{}': vrrp_strict forbids IPv6 addresses with VRRPv2",
                        i.name
                    ),
                );
            }
        }
    }
}
