//! `[bgp]`: the VIPs this director announces through bird2 for ECMP
//! scale-out, how (communities, local-pref, MED), when (`announce`), and how
//! it stops (`drain_time`, `on_sigterm`). The model, its TOML form, its
//! validation (every error at file:line:col) and its TOML output live here;
//! `validate/mod.rs` calls [`validate`], and a keepalived.conf gets the same
//! section from an extra TOML file ([`parse_extra`]).

use crate::{Config, ConfigError, ConfigErrors, Method, Service, raw::check::Seconds, vrrp::Vrrp};
use serde::Deserialize;
use std::{net::IpAddr, ops::Range, path::PathBuf, time::Duration};
use toml::{Spanned, Table, Value};

/// bird2's control socket as Debian's package starts it.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/bird/bird.ctl";
/// The include the agent writes; the operator's bird.conf includes it.
pub const DEFAULT_INCLUDE: &str = "/var/lib/xlb/bird-vips.conf";
/// How long a drain keeps forwarding after the withdrawal.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(30);
/// Longest drain accepted (one hour).
const MAX_DRAIN_S: f64 = 3600.0;

/// When a VIP is announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnnouncePolicy {
    /// While every service of the VIP has a usable real (and the director
    /// can forward at all).
    #[default]
    WhenHealthy,
    /// Whatever the reals' health, while the director can forward at all.
    Always,
}

impl AnnouncePolicy {
    pub fn name(self) -> &'static str {
        match self {
            AnnouncePolicy::WhenHealthy => "when-healthy",
            AnnouncePolicy::Always => "always",
        }
    }
}

/// What SIGTERM does to the announcements (SIGQUIT and `--keep-dataplane`
/// leave them: the data plane keeps forwarding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnSigterm {
    /// Withdraw every VIP, then stop at once.
    #[default]
    Withdraw,
    /// As `xlb drain`: withdraw, forward for `drain_time`, then stop.
    Drain,
    /// Leave the routes announced (bird keeps them until it is told otherwise).
    Keep,
}

impl OnSigterm {
    pub fn name(self) -> &'static str {
        match self {
            OnSigterm::Withdraw => "withdraw",
            OnSigterm::Drain => "drain",
            OnSigterm::Keep => "keep",
        }
    }
}

/// `[bgp]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bgp {
    /// bird's control socket (`bird -s`).
    pub control_socket: PathBuf,
    /// The bird2 include the agent owns: one static protocol per VIP.
    pub include: PathBuf,
    pub announce: AnnouncePolicy,
    pub drain_time: Duration,
    pub on_sigterm: OnSigterm,
    /// In config order, one per VIP.
    pub vips: Vec<BgpVip>,
}

/// `[[bgp.vip]]`: one announced VIP (a /32 or /128) and its route's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpVip {
    pub address: IpAddr,
    /// Standard communities `(asn, value)`.
    pub communities: Vec<(u16, u16)>,
    /// Large communities `(asn, data1, data2)`.
    pub large_communities: Vec<(u32, u32, u32)>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// The VRRP instance the announcement follows, when written; otherwise
    /// the instance that owns the VIP, if any ([`BgpVip::tied_instance`]).
    pub vrrp_instance: Option<String>,
}

impl BgpVip {
    /// The VRRP instance whose mastership the announcement follows.
    pub fn tied_instance<'a>(&'a self, config: &'a Config) -> Option<&'a str> {
        self.vrrp_instance
            .as_deref()
            .or_else(|| config.vip_owner(self.address))
    }

    /// The services this VIP announces, in config order.
    pub fn services<'a>(&self, config: &'a Config) -> impl Iterator<Item = &'a Service> {
        let vip = self.address;
        config
            .services
            .iter()
            .filter(move |s| s.id.addr().is_some_and(|(a, ..)| a == vip))
    }
}

/// `[bgp]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    #[serde(default)]
    control_socket: Option<Spanned<String>>,
    #[serde(default)]
    include: Option<Spanned<String>>,
    #[serde(default)]
    announce: Option<Spanned<String>>,
    #[serde(default)]
    drain_time: Option<Spanned<Seconds>>,
    #[serde(default)]
    on_sigterm: Option<Spanned<String>>,
    #[serde(default, rename = "vip")]
    vips: Vec<Spanned<RawVip>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: Spanned<String>,
    #[serde(default)]
    communities: Vec<Spanned<String>>,
    #[serde(default)]
    large_communities: Vec<Spanned<String>>,
    #[serde(default)]
    local_pref: Option<Spanned<i64>>,
    #[serde(default)]
    med: Option<Spanned<i64>>,
    #[serde(default)]
    vrrp_instance: Option<Spanned<String>>,
}

/// An extra TOML file holding `[bgp]` only (beside a keepalived.conf).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraFile {
    bgp: Spanned<RawBgp>,
}

/// Reads `[bgp]` from an extra TOML file named `file` for `config` (read
/// from a keepalived.conf, which has no BGP): errors at this file's positions.
pub fn parse_extra(file: &str, text: &str, config: &Config) -> Result<Bgp, ConfigErrors> {
    let at = Sited { file, text };
    let raw: ExtraFile = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![at.error(
            e.span().unwrap_or(0..0),
            format!("{} (this file holds [bgp] only)", e.message().trim_end()),
        )])
    })?;
    validate(file, text, &raw.bgp, &config.services, &config.vrrp).map_err(ConfigErrors)
}

/// Validates `[bgp]` against the file's services and VRRP instances.
pub(crate) fn validate(
    file: &str,
    text: &str,
    raw: &Spanned<RawBgp>,
    services: &[Service],
    vrrp: &Vrrp,
) -> Result<Bgp, Vec<ConfigError>> {
    let at = Sited { file, text };
    let mut errors = Vec::new();
    let r = raw.get_ref();
    let mut path = |v: &Option<Spanned<String>>, default: &str, what: &str| match v {
        Some(p) if !p.get_ref().starts_with('/') => {
            errors.push(at.error(p.span(), format!("`{what}` must be an absolute path")));
            PathBuf::from(default)
        }
        Some(p) => PathBuf::from(p.get_ref()),
        None => PathBuf::from(default),
    };
    let control_socket = path(&r.control_socket, DEFAULT_CONTROL_SOCKET, "control_socket");
    let include = path(&r.include, DEFAULT_INCLUDE, "include");
    let announce = match r
        .announce
        .as_ref()
        .map(|a| (a.get_ref().as_str(), a.span()))
    {
        None | Some(("when-healthy", _)) => AnnouncePolicy::WhenHealthy,
        Some(("always", _)) => AnnouncePolicy::Always,
        Some((other, span)) => {
            errors.push(at.error(
                span,
                format!("`announce = \"{other}\"`: expected \"when-healthy\" or \"always\""),
            ));
            AnnouncePolicy::WhenHealthy
        }
    };
    let on_sigterm = match r
        .on_sigterm
        .as_ref()
        .map(|a| (a.get_ref().as_str(), a.span()))
    {
        None | Some(("withdraw", _)) => OnSigterm::Withdraw,
        Some(("drain", _)) => OnSigterm::Drain,
        Some(("keep", _)) => OnSigterm::Keep,
        Some((other, span)) => {
            errors.push(at.error(
                span,
                format!("`on_sigterm = \"{other}\"`: expected \"withdraw\", \"drain\" or \"keep\""),
            ));
            OnSigterm::Withdraw
        }
    };
    let drain_time = match &r.drain_time {
        None => DEFAULT_DRAIN_TIME,
        Some(v) => {
            let s = match v.get_ref() {
                Seconds::Whole(n) => *n as f64,
                Seconds::Fraction(f) => *f,
            };
            if s.is_finite() && (0.0..=MAX_DRAIN_S).contains(&s) {
                Duration::from_secs_f64(s)
            } else {
                errors.push(at.error(
                    v.span(),
                    format!("`drain_time` must be a number of seconds from 0 to {MAX_DRAIN_S}"),
                ));
                DEFAULT_DRAIN_TIME
            }
        }
    };
    if r.vips.is_empty() {
        errors.push(at.error(
            raw.span(),
            "`[bgp]` announces nothing: add a `[[bgp.vip]]` with the `address` of a service's VIP",
        ));
    }
    let mut vips: Vec<BgpVip> = Vec::new();
    for v in &r.vips {
        if let Some(vip) = at.vip(v.get_ref(), services, vrrp, &mut errors) {
            if vips.iter().any(|o| o.address == vip.address) {
                errors.push(at.error(
                    v.get_ref().address.span(),
                    format!("VIP {} is already announced above", vip.address),
                ));
            } else {
                vips.push(vip);
            }
        }
    }
    if errors.is_empty() {
        Ok(Bgp {
            control_socket,
            include,
            announce,
            drain_time,
            on_sigterm,
            vips,
        })
    } else {
        Err(errors)
    }
}

/// A file's name and text, for positions.
struct Sited<'a> {
    file: &'a str,
    text: &'a str,
}

impl Sited<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ConfigError {
            file: self.file.to_string(),
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }

    /// One `[[bgp.vip]]`, or `None` with its errors pushed.
    fn vip(
        &self,
        v: &RawVip,
        services: &[Service],
        vrrp: &Vrrp,
        errors: &mut Vec<ConfigError>,
    ) -> Option<BgpVip> {
        let before = errors.len();
        let address: Option<IpAddr> = match v.address.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(self.error(
                    v.address.span(),
                    format!("`{}` is not an IP address", v.address.get_ref()),
                ));
                None
            }
        };
        let mut communities = Vec::new();
        for c in &v.communities {
            match parse_community(c.get_ref()) {
                Some(x) => communities.push(x),
                None => errors.push(self.error(
                    c.span(),
                    format!(
                        "community `{}`: expected ASN:VALUE, each 0-65535",
                        c.get_ref()
                    ),
                )),
            }
        }
        let mut large_communities = Vec::new();
        for c in &v.large_communities {
            match parse_large(c.get_ref()) {
                Some(x) => large_communities.push(x),
                None => errors.push(self.error(
                    c.span(),
                    format!(
                        "large community `{}`: expected ASN:DATA1:DATA2, each 0-4294967295",
                        c.get_ref()
                    ),
                )),
            }
        }
        let mut number = |n: &Option<Spanned<i64>>, what: &str| {
            let n = n.as_ref()?;
            match u32::try_from(*n.get_ref()) {
                Ok(x) => Some(x),
                Err(_) => {
                    errors.push(
                        self.error(n.span(), format!("`{what}` must be from 0 to 4294967295")),
                    );
                    None
                }
            }
        };
        let local_pref = number(&v.local_pref, "local_pref");
        let med = number(&v.med, "med");
        let vrrp_instance = v.vrrp_instance.as_ref().map(|i| i.get_ref().clone());
        if let Some(i) = &v.vrrp_instance
            && !vrrp.instances.iter().any(|x| &x.name == i.get_ref())
        {
            errors.push(self.error(
                i.span(),
                format!("no vrrp_instance is named `{}`", i.get_ref()),
            ));
        }
        let address = address?;
        let mine: Vec<&Service> = services
            .iter()
            .filter(|s| s.id.addr().is_some_and(|(a, ..)| a == address))
            .collect();
        if mine.is_empty() {
            errors.push(self.error(
                v.address.span(),
                format!("no service has VIP {address}: only a service's VIP can be announced"),
            ));
        }
        // Without a VRRP instance deciding, every director announces: active-active.
        let tied = vrrp_instance.is_some()
            || vrrp.instances.iter().any(|i| {
                i.virtual_ipaddress
                    .iter()
                    .chain(&i.virtual_ipaddress_excluded)
                    .any(|a| a.address == address)
            });
        if !tied && let Some(nat) = mine.iter().find(|s| s.method == Method::Nat) {
            errors.push(self.error(
                v.address.span(),
                format!(
                    "service {} forwards with NAT, which cannot run active-active behind ECMP \
                     (the reals' replies must come back through the director that holds the flow): \
                     use method \"dr\" or \"tun\", or tie this VIP to a VRRP instance \
                     (vrrp_instance = \"...\") so that only its Master announces it",
                    nat.id
                ),
            ));
        }
        (errors.len() == before).then_some(BgpVip {
            address,
            communities,
            large_communities,
            local_pref,
            med,
            vrrp_instance,
        })
    }
}

fn parse_community(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn parse_large(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':').map(|p| p.trim().parse::<u32>());
    let out = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
    it.next().is_none().then_some(out)
}

/// `[bgp]` as TOML (`emit.rs`); `full` also writes the defaults.
pub(crate) fn to_table(b: &Bgp, full: bool) -> Table {
    let mut t = Table::new();
    let put = |t: &mut Table, key: &str, v: Value, is_default: bool| {
        if full || !is_default {
            t.insert(key.into(), v);
        }
    };
    let text = |p: &PathBuf| Value::from(p.display().to_string());
    put(
        &mut t,
        "control_socket",
        text(&b.control_socket),
        b.control_socket.as_path() == std::path::Path::new(DEFAULT_CONTROL_SOCKET),
    );
    put(
        &mut t,
        "include",
        text(&b.include),
        b.include.as_path() == std::path::Path::new(DEFAULT_INCLUDE),
    );
    put(
        &mut t,
        "announce",
        b.announce.name().into(),
        b.announce == AnnouncePolicy::default(),
    );
    let drain = if b.drain_time.subsec_nanos() == 0 {
        Value::from(b.drain_time.as_secs() as i64)
    } else {
        Value::from(b.drain_time.as_secs_f64())
    };
    put(
        &mut t,
        "drain_time",
        drain,
        b.drain_time == DEFAULT_DRAIN_TIME,
    );
    put(
        &mut t,
        "on_sigterm",
        b.on_sigterm.name().into(),
        b.on_sigterm == OnSigterm::default(),
    );
    let vips = b
        .vips
        .iter()
        .map(|v| {
            let mut e = Table::new();
            e.insert("address".into(), v.address.to_string().into());
            let list =
                |items: Vec<String>| Value::Array(items.into_iter().map(Value::from).collect());
            if !v.communities.is_empty() {
                e.insert(
                    "communities".into(),
                    list(
                        v.communities
                            .iter()
                            .map(|(a, b)| format!("{a}:{b}"))
                            .collect(),
                    ),
                );
            }
            if !v.large_communities.is_empty() {
                e.insert(
                    "large_communities".into(),
                    list(
                        v.large_communities
                            .iter()
                            .map(|(a, b, c)| format!("{a}:{b}:{c}"))
                            .collect(),
                    ),
                );
            }
            if let Some(p) = v.local_pref {
                e.insert("local_pref".into(), i64::from(p).into());
            }
            if let Some(m) = v.med {
                e.insert("med".into(), i64::from(m).into());
            }
            if let Some(i) = &v.vrrp_instance {
                e.insert("vrrp_instance".into(), i.clone().into());
            }
            Value::Table(e)
        })
        .collect();
    t.insert("vip".into(), Value::Array(vips));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[dataplane]
interfaces = ["eth0"]

[[service]]
vip = "10.0.0.10"
port = 80
method = "dr"
[[service.real]]
address = "192.168.1.1"

[[service]]
vip = "10.0.0.20"
port = 80
method = "nat"
[[service.real]]
address = "192.168.1.1"
"#;

    fn parse(extra: &str) -> Result<Config, ConfigErrors> {
        crate::parse("t.toml", &format!("{BASE}{extra}"))
    }

    fn line_of(extra: &str, needle: &str) -> usize {
        format!("{BASE}{extra}")
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    }

    #[test]
    fn a_full_section_reads_and_round_trips() {
        let extra = r#"
[bgp]
control_socket = "/run/bird/b.ctl"
include = "/etc/bird/x.conf"
announce = "always"
drain_time = 2.5
on_sigterm = "drain"
[[bgp.vip]]
address = "10.0.0.10"
communities = ["65000:100", "65000:200"]
large_communities = ["65000:1:2"]
local_pref = 200
med = 10
"#;
        let c = parse(extra).unwrap();
        let b = c.bgp.as_ref().unwrap();
        assert_eq!(b.announce, AnnouncePolicy::Always);
        assert_eq!(b.on_sigterm, OnSigterm::Drain);
        assert_eq!(b.drain_time, Duration::from_millis(2500));
        assert_eq!(b.vips[0].communities, vec![(65000, 100), (65000, 200)]);
        assert_eq!(b.vips[0].large_communities, vec![(65000, 1, 2)]);
        assert_eq!((b.vips[0].local_pref, b.vips[0].med), (Some(200), Some(10)));
        for full in [false, true] {
            let again = crate::parse("t.toml", &crate::emit::to_toml(&c, full)).unwrap();
            assert_eq!(again.bgp, c.bgp, "full = {full}");
        }
    }

    #[test]
    fn the_example_reads() {
        let c = crate::parse("ecmp.toml", include_str!("../../examples/ecmp.toml")).unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(b.vips[0].communities, vec![(65000, 100)]);
        assert_eq!(b.vips[0].med, Some(10));
    }

    #[test]
    fn defaults_apply() {
        let c = parse("[bgp]\n[[bgp.vip]]\naddress = \"10.0.0.10\"\n").unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(b.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(b.include, PathBuf::from(DEFAULT_INCLUDE));
        assert_eq!(b.announce, AnnouncePolicy::WhenHealthy);
        assert_eq!(b.on_sigterm, OnSigterm::Withdraw);
        assert_eq!(b.drain_time, DEFAULT_DRAIN_TIME);
    }

    #[test]
    fn active_active_nat_is_refused_at_its_vip() {
        let extra = "[bgp]\n[[bgp.vip]]\naddress = \"10.0.0.20\"\n";
        let e = parse(extra).unwrap_err().0;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, line_of(extra, "address = \"10.0.0.20\""));
        assert_eq!(e[0].col, 11);
        assert!(
            e[0].message.contains("TCP 10.0.0.20:80 forwards with NAT"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn nat_tied_to_a_vrrp_instance_is_accepted() {
        let extra = r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
virtual_ipaddress = ["10.0.0.20/32"]
[bgp]
[[bgp.vip]]
address = "10.0.0.20"
"#;
        let c = parse(extra).unwrap();
        let v = &c.bgp.as_ref().unwrap().vips[0];
        assert_eq!(v.tied_instance(&c), Some("VI_1"));
    }

    #[test]
    fn every_mistake_is_reported_with_its_position() {
        let extra = r#"
[bgp]
control_socket = "bird.ctl"
announce = "sometimes"
on_sigterm = "panic"
drain_time = -1
[[bgp.vip]]
address = "10.0.0.99"
communities = ["65000:70000"]
large_communities = ["1:2"]
med = -3
vrrp_instance = "nope"
[[bgp.vip]]
address = "10.0.0.10"
[[bgp.vip]]
address = "10.0.0.10"
"#;
        let e = parse(extra).unwrap_err().0;
        let msgs: Vec<String> = e
            .iter()
            .map(|e| format!("{}: {}", e.line, e.message))
            .collect();
        for (needle, text) in [
            (
                "control_socket",
                "`control_socket` must be an absolute path",
            ),
            ("announce =", "expected \"when-healthy\" or \"always\""),
            ("on_sigterm", "expected \"withdraw\", \"drain\" or \"keep\""),
            ("drain_time", "`drain_time` must be"),
            ("65000:70000", "community `65000:70000`"),
            ("\"1:2\"", "large community `1:2`"),
            ("med =", "`med` must be"),
            ("\"nope\"", "no vrrp_instance is named `nope`"),
            ("10.0.0.99", "no service has VIP 10.0.0.99"),
        ] {
            let line = line_of(extra, needle);
            assert!(
                msgs.iter().any(
                    |m| m == &format!("{line}: {}", m.split_once(": ").unwrap().1)
                        && m.contains(text)
                ),
                "no `{text}` at line {line}: {msgs:#?}"
            );
        }
        let dup = format!("{BASE}{extra}")
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("10.0.0.10"))
            .last()
            .unwrap()
            .0
            + 1;
        assert!(
            msgs.contains(&format!("{dup}: VIP 10.0.0.10 is already announced above")),
            "{msgs:#?}"
        );
    }

    #[test]
    fn an_extra_file_beside_a_keepalived_conf() {
        let c = parse("").unwrap();
        let b = parse_extra(
            "bgp.toml",
            "[bgp]\n[[bgp.vip]]\naddress = \"10.0.0.10\"\n",
            &c,
        )
        .unwrap();
        assert_eq!(b.vips[0].address, "10.0.0.10".parse::<IpAddr>().unwrap());
        let e = parse_extra(
            "bgp.toml",
            "[bgp]\n[[bgp.vip]]\naddress = \"10.0.0.10\"\n[dataplane]\n",
            &c,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("bgp.toml:4:"), "{e}");
        assert!(e.to_string().contains("this file holds [bgp] only"), "{e}");
    }
}
