//! The keys the IPVS data plane adds: `[dataplane] kind`, and services
//! named by a firewall mark (`fwmark`, `family`) instead of vip/port.

use super::{Validator, raw};
use crate::{DataplaneKind, Protocol, ServiceId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use toml::Spanned;

/// How a `[[service]]` is named, before its reals are validated.
pub(super) enum Ident {
    Addr {
        vip: Option<IpAddr>,
        port: Option<u16>,
    },
    Fwmark {
        mark: Option<u32>,
        ipv6: bool,
    },
}

impl Ident {
    /// An address of the service's family (the VIP, or `::`/`0.0.0.0` for
    /// fwmark services): what reals and persistence masks are checked against.
    pub(super) fn family_addr(&self) -> Option<IpAddr> {
        match *self {
            Ident::Addr { vip, .. } => vip,
            Ident::Fwmark { ipv6: false, .. } => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Ident::Fwmark { ipv6: true, .. } => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        }
    }

    /// The port reals default to and must keep under DR/TUN; fwmark
    /// services match any port, so theirs is 0 and reals keep their own.
    pub(super) fn port(&self) -> Option<u16> {
        match *self {
            Ident::Addr { port, .. } => port,
            Ident::Fwmark { .. } => Some(0),
        }
    }

    pub(super) fn is_fwmark(&self) -> bool {
        matches!(self, Ident::Fwmark { .. })
    }

    pub(super) fn id(&self, protocol: Protocol) -> Option<ServiceId> {
        Some(match *self {
            Ident::Addr { vip, port } => ServiceId::Addr {
                vip: vip?,
                port: port?,
                protocol,
            },
            Ident::Fwmark { mark, ipv6 } => ServiceId::Fwmark { mark: mark?, ipv6 },
        })
    }
}

impl Validator<'_> {
    pub(super) fn kind(&mut self, kind: Option<&Spanned<String>>) -> DataplaneKind {
        let Some(k) = kind else {
            return DataplaneKind::default();
        };
        match k.get_ref().as_str() {
            "xdp" => DataplaneKind::Xdp,
            "ipvs" => DataplaneKind::Ipvs,
            "auto" => DataplaneKind::Auto,
            other => {
                self.error(
                    k.span(),
                    format!("unknown data plane kind `{other}`, expected `xdp`, `ipvs` or `auto`"),
                );
                DataplaneKind::default()
            }
        }
    }

    pub(super) fn ident(&mut self, raw: &raw::Service, span: std::ops::Range<usize>) -> Ident {
        let Some(f) = &raw.fwmark else {
            if let Some(fam) = &raw.family {
                self.error(fam.span(), "`family` applies only to fwmark services");
            }
            let vip = match &raw.vip {
                Some(v) => self.address(v, "vip"),
                None => {
                    self.error(
                        span.clone(),
                        "a service needs `vip` and `port`, or `fwmark`",
                    );
                    None
                }
            };
            let port = match &raw.port {
                Some(p) => self.port(p),
                None => {
                    if raw.vip.is_some() {
                        self.error(span, "a service needs `vip` and `port`, or `fwmark`");
                    }
                    None
                }
            };
            return Ident::Addr { vip, port };
        };
        for (key, s) in [
            ("vip", raw.vip.as_ref().map(|v| v.span())),
            ("port", raw.port.as_ref().map(|p| p.span())),
            ("protocol", raw.protocol.as_ref().map(|p| p.span())),
        ] {
            if let Some(s) = s {
                self.error(
                    s,
                    format!("`{key}` does not apply to a fwmark service (it matches marked packets of any address, port and protocol)"),
                );
            }
        }
        let mark = match u32::try_from(*f.get_ref()) {
            Ok(m) if m != 0 => Some(m),
            _ => {
                self.error(
                    f.span(),
                    format!("fwmark {} is out of range (1..=4294967295)", f.get_ref()),
                );
                None
            }
        };
        let ipv6 = match raw.family.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "ipv4")) => false,
            Some((_, "ipv6")) => true,
            Some((f, other)) => {
                self.error(
                    f.span(),
                    format!("unknown family `{other}`, expected `ipv4` or `ipv6`"),
                );
                false
            }
        };
        Ident::Fwmark { mark, ipv6 }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DataplaneKind, ServiceId, parse};

    fn errors(text: &str) -> Vec<String> {
        parse("t.toml", text)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn fwmark_services_parse_under_ipvs() {
        let c = parse(
            "t.toml",
            r#"
[dataplane]
kind = "ipvs"
interfaces = []
[[service]]
fwmark = 7
family = "ipv6"
scheduler = "wlc"
[[service.real]]
address = "2001:db8::2"
"#,
        )
        .unwrap();
        assert_eq!(c.dataplane.kind, DataplaneKind::Ipvs);
        assert_eq!(
            c.services[0].id,
            ServiceId::Fwmark {
                mark: 7,
                ipv6: true
            }
        );
        assert_eq!(c.services[0].reals[0].port, 0);
    }

    #[test]
    fn fwmark_services_are_refused_where_xdp_forwards() {
        for kind in ["", "kind = \"xdp\"\n", "kind = \"auto\"\n"] {
            let text =
                format!("[dataplane]\n{kind}interfaces = [\"eth0\"]\n[[service]]\nfwmark = 7\n");
            let line = if kind.is_empty() { 4 } else { 5 };
            assert_eq!(
                errors(&text),
                [format!(
                    "t.toml:{line}:10: fwmark services need the IPVS data plane (`[dataplane] kind = \"ipvs\"`): XDP sees packets before the firewall marks them"
                )]
            );
        }
    }

    #[test]
    fn xdp_map_sizes_do_not_bound_ipvs() {
        let mut text =
            String::from("[dataplane]\nkind = \"ipvs\"\ninterfaces = []\nmax_services = 1\n");
        for port in 1..=3 {
            text.push_str(&format!("[[service]]\nvip = \"10.0.0.1\"\nport = {port}\n"));
        }
        assert_eq!(parse("t.toml", &text).unwrap().services.len(), 3);
        let xdp = text.replace(
            "kind = \"ipvs\"\ninterfaces = []",
            "interfaces = [\"eth0\"]",
        );
        assert!(errors(&xdp)[0].contains("more services than `max_services` (1)"));
    }

    #[test]
    fn mixed_or_missing_service_names_are_located_errors() {
        let e = errors(
            "[dataplane]\nkind = \"ipvs\"\ninterfaces = []\n[[service]]\nfwmark = 1\nvip = \"10.0.0.1\"\nfamily = \"ipx\"\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:6:7: `vip` does not apply"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.toml:7:10: unknown family `ipx`"),
            "{e:?}"
        );
        let e = errors("[dataplane]\nkind = \"bpf\"\ninterfaces = [\"eth0\"]\n");
        assert_eq!(
            e,
            ["t.toml:2:8: unknown data plane kind `bpf`, expected `xdp`, `ipvs` or `auto`"]
        );
        let e = errors("[dataplane]\ninterfaces = [\"eth0\"]\n[[service]]\nscheduler = \"rr\"\n");
        assert_eq!(
            e,
            ["t.toml:3:1: a service needs `vip` and `port`, or `fwmark`"]
        );
    }
}
