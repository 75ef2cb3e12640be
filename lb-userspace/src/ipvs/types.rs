//! IPVS state as the kernel reports it and as the agent asks for it:
//! services, destinations, counters, timeouts, the sync daemon.

use super::attr::{DaemonAttr, DestAttr, StatsAttr, SvcAttr};
use crate::config::{Protocol, ServiceId};
use anyhow::{Result, bail};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const AF_INET: u16 = libc::AF_INET as u16;
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// What IPVS calls a service's netmask: the persistence granularity (IPv4:
/// the mask's bytes in network order; IPv6: a prefix length), else every bit.
pub fn netmask(persistence_mask: Option<IpAddr>, ipv6: bool) -> u32 {
    match (persistence_mask, ipv6) {
        (Some(IpAddr::V4(m)), _) => u32::from_ne_bytes(m.octets()),
        (Some(IpAddr::V6(m)), _) => u128::from(m).leading_ones(),
        (None, false) => u32::MAX,
        (None, true) => 128,
    }
}

/// [`netmask`]'s inverse: the mask address of an IPVS netmask.
pub fn mask(netmask: u32, ipv6: bool) -> IpAddr {
    if ipv6 {
        let ones = u128::MAX.checked_shl(128 - netmask.min(128)).unwrap_or(0);
        Ipv6Addr::from(ones).into()
    } else {
        Ipv4Addr::from(netmask.to_ne_bytes()).into()
    }
}

/// `IP_VS_SVC_F_*`.
pub mod svc_flags {
    pub const PERSISTENT: u32 = 0x1;
    pub const HASHED: u32 = 0x2;
    pub const ONEPACKET: u32 = 0x4;
    pub const SCHED1: u32 = 0x8;
    pub const SCHED2: u32 = 0x10;
    pub const SCHED3: u32 = 0x20;

    /// keepalived's sh-/mh-fallback is IPVS's sched flag 1, sh-/mh-port flag 2.
    pub fn of(f: crate::config::SchedFlags) -> u32 {
        (if f.fallback { SCHED1 } else { 0 }) | (if f.hash_port { SCHED2 } else { 0 })
    }
}

/// `IP_VS_CONN_F_*` forwarding methods (`IPVS_DEST_ATTR_FWD_METHOD`).
pub mod fwd {
    pub const MASQ: u32 = 0;
    pub const LOCALNODE: u32 = 1;
    pub const TUNNEL: u32 = 2;
    pub const DROUTE: u32 = 3;
}

/// `IP_VS_CONN_F_TUNNEL_TYPE_*`.
pub mod tun_type {
    pub const IPIP: u8 = 0;
    pub const GUE: u8 = 1;
}

/// IPVS's counters and rates (STATS64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

impl Stats {
    fn from_attrs(attrs: &[StatsAttr]) -> Stats {
        let mut s = Stats::default();
        for a in attrs {
            let slot = match a.kind {
                1 => &mut s.conns,
                2 => &mut s.inpkts,
                3 => &mut s.outpkts,
                4 => &mut s.inbytes,
                5 => &mut s.outbytes,
                6 => &mut s.cps,
                7 => &mut s.inpps,
                8 => &mut s.outpps,
                9 => &mut s.inbps,
                10 => &mut s.outbps,
                _ => continue,
            };
            *slot = a.value;
        }
        s
    }
}

/// A virtual service with its settings and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub id: ServiceId,
    pub scheduler: String,
    /// `IP_VS_SVC_F_*` (the kernel adds HASHED to what it was given).
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// IPv4: the netmask's bytes in network order; IPv6: a prefix length.
    pub netmask: u32,
    pub pe_name: Option<String>,
    pub stats: Stats,
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestEntry {
    pub addr: IpAddr,
    pub port: u16,
    /// [`fwd`].
    pub fwd: u32,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
    pub stats: Stats,
    /// [`tun_type`]; meaningful for `fwd::TUNNEL` only.
    pub tun_type: u8,
    pub tun_port: u16,
    pub tun_flags: u16,
}

/// Connection timeouts in seconds (`ipvsadm --set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

/// A connection synchronisation daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    /// `true`: master (sends), `false`: backup (receives).
    pub master: bool,
    pub interface: String,
    pub sync_id: u32,
    pub maxlen: Option<u16>,
    pub group: Option<IpAddr>,
    pub port: Option<u16>,
    pub ttl: Option<u8>,
}

fn addr16(a: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn addr_of(af: u16, raw: [u8; 16]) -> IpAddr {
    if af == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(raw))
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

fn family(ipv6: bool) -> u16 {
    if ipv6 { AF_INET6 } else { AF_INET }
}

/// The attributes that name `id` (all a DEL_SERVICE or a DEST command needs).
pub fn key_attrs(id: &ServiceId) -> Vec<SvcAttr> {
    match *id {
        ServiceId::Addr {
            vip,
            port,
            protocol,
        } => vec![
            SvcAttr::Af(family(vip.is_ipv6())),
            SvcAttr::Protocol(u16::from(protocol.number())),
            SvcAttr::Addr(addr16(vip)),
            SvcAttr::Port(port),
        ],
        ServiceId::Fwmark { mark, ipv6 } => {
            vec![SvcAttr::Af(family(ipv6)), SvcAttr::Fwmark(mark)]
        }
    }
}

impl ServiceEntry {
    /// The attributes of NEW_SERVICE / SET_SERVICE (the kernel wants them all).
    pub fn to_attrs(&self) -> Vec<SvcAttr> {
        let mut attrs = key_attrs(&self.id);
        attrs.push(SvcAttr::SchedName(self.scheduler.clone()));
        attrs.push(SvcAttr::Flags {
            flags: self.flags & !svc_flags::HASHED,
            mask: u32::MAX,
        });
        attrs.push(SvcAttr::Timeout(self.timeout));
        attrs.push(SvcAttr::Netmask(self.netmask));
        if let Some(pe) = &self.pe_name {
            attrs.push(SvcAttr::PeName(pe.clone()));
        }
        attrs
    }

    /// A service from a dump; `None` for protocols xlb does not configure (SCTP).
    pub fn from_attrs(attrs: &[SvcAttr]) -> Result<Option<ServiceEntry>> {
        let (mut af, mut proto, mut addr, mut port, mut mark) = (0, 0, [0u8; 16], 0, 0);
        let mut e = ServiceEntry {
            id: ServiceId::Fwmark {
                mark: 0,
                ipv6: false,
            },
            scheduler: String::new(),
            flags: 0,
            timeout: 0,
            netmask: 0,
            pe_name: None,
            stats: Stats::default(),
        };
        for a in attrs {
            match a {
                SvcAttr::Af(v) => af = *v,
                SvcAttr::Protocol(v) => proto = *v,
                SvcAttr::Addr(v) => addr = *v,
                SvcAttr::Port(v) => port = *v,
                SvcAttr::Fwmark(v) => mark = *v,
                SvcAttr::SchedName(s) => e.scheduler = s.clone(),
                SvcAttr::Flags { flags, .. } => e.flags = *flags,
                SvcAttr::Timeout(v) => e.timeout = *v,
                SvcAttr::Netmask(v) => e.netmask = *v,
                SvcAttr::PeName(s) if !s.is_empty() => e.pe_name = Some(s.clone()),
                SvcAttr::Stats64(s) => e.stats = Stats::from_attrs(s),
                _ => {}
            }
        }
        if af != AF_INET && af != AF_INET6 {
            bail!("IPVS service of unknown address family {af}");
        }
        e.id = if mark != 0 {
            ServiceId::Fwmark {
                mark,
                ipv6: af == AF_INET6,
            }
        } else {
            let Some(protocol) = u8::try_from(proto).ok().and_then(Protocol::from_number) else {
                return Ok(None);
            };
            ServiceId::Addr {
                vip: addr_of(af, addr),
                port,
                protocol,
            }
        };
        Ok(Some(e))
    }
}

impl DestEntry {
    /// The attributes of NEW_DEST / SET_DEST.
    pub fn to_attrs(&self) -> Vec<DestAttr> {
        let mut attrs = vec![
            DestAttr::Addr(addr16(self.addr)),
            DestAttr::Port(self.port),
            DestAttr::AddrFamily(family(self.addr.is_ipv6())),
            DestAttr::FwdMethod(self.fwd),
            DestAttr::Weight(self.weight),
            DestAttr::UThresh(self.u_threshold),
            DestAttr::LThresh(self.l_threshold),
        ];
        if self.fwd == fwd::TUNNEL {
            attrs.push(DestAttr::TunType(self.tun_type));
            attrs.push(DestAttr::TunPort(self.tun_port));
            attrs.push(DestAttr::TunFlags(self.tun_flags));
        }
        attrs
    }

    /// The attributes that name this destination (DEL_DEST).
    pub fn key_attrs(&self) -> Vec<DestAttr> {
        vec![
            DestAttr::Addr(addr16(self.addr)),
            DestAttr::Port(self.port),
            DestAttr::AddrFamily(family(self.addr.is_ipv6())),
        ]
    }

    /// A destination from a dump of a service of family `svc_af`.
    pub fn from_attrs(svc_af: u16, attrs: &[DestAttr]) -> DestEntry {
        let (mut af, mut addr) = (svc_af, [0u8; 16]);
        let mut e = DestEntry {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            fwd: 0,
            weight: 0,
            u_threshold: 0,
            l_threshold: 0,
            active: 0,
            inactive: 0,
            persistent: 0,
            stats: Stats::default(),
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
        };
        for a in attrs {
            match a {
                DestAttr::Addr(v) => addr = *v,
                DestAttr::AddrFamily(v) => af = *v,
                DestAttr::Port(v) => e.port = *v,
                // The kernel reports the method among other connection flags.
                DestAttr::FwdMethod(v) => e.fwd = *v & 0x7,
                DestAttr::Weight(v) => e.weight = *v,
                DestAttr::UThresh(v) => e.u_threshold = *v,
                DestAttr::LThresh(v) => e.l_threshold = *v,
                DestAttr::ActiveConns(v) => e.active = *v,
                DestAttr::InactConns(v) => e.inactive = *v,
                DestAttr::PersistConns(v) => e.persistent = *v,
                DestAttr::Stats64(s) => e.stats = Stats::from_attrs(s),
                DestAttr::TunType(v) => e.tun_type = *v,
                DestAttr::TunPort(v) => e.tun_port = *v,
                DestAttr::TunFlags(v) => e.tun_flags = *v,
                _ => {}
            }
        }
        e.addr = addr_of(af, addr);
        e
    }
}

impl Daemon {
    pub fn to_attrs(&self) -> Vec<DaemonAttr> {
        let mut attrs = vec![
            DaemonAttr::State(if self.master { 1 } else { 2 }),
            DaemonAttr::McastIfn(self.interface.clone()),
            DaemonAttr::SyncId(self.sync_id),
        ];
        if let Some(m) = self.maxlen {
            attrs.push(DaemonAttr::SyncMaxlen(m));
        }
        match self.group {
            Some(IpAddr::V4(g)) => attrs.push(DaemonAttr::McastGroup(g.octets())),
            Some(IpAddr::V6(g)) => attrs.push(DaemonAttr::McastGroup6(g.octets())),
            None => {}
        }
        if let Some(p) = self.port {
            attrs.push(DaemonAttr::McastPort(p));
        }
        if let Some(t) = self.ttl {
            attrs.push(DaemonAttr::McastTtl(t));
        }
        attrs
    }

    pub fn from_attrs(attrs: &[DaemonAttr]) -> Daemon {
        let mut d = Daemon {
            master: false,
            interface: String::new(),
            sync_id: 0,
            maxlen: None,
            group: None,
            port: None,
            ttl: None,
        };
        for a in attrs {
            match a {
                DaemonAttr::State(s) => d.master = *s == 1,
                DaemonAttr::McastIfn(s) => d.interface = s.clone(),
                DaemonAttr::SyncId(v) => d.sync_id = *v,
                DaemonAttr::SyncMaxlen(v) => d.maxlen = Some(*v),
                DaemonAttr::McastGroup(g) => d.group = Some(IpAddr::V4(Ipv4Addr::from(*g))),
                DaemonAttr::McastGroup6(g) => d.group = Some(IpAddr::V6(Ipv6Addr::from(*g))),
                DaemonAttr::McastPort(p) => d.port = Some(*p),
                DaemonAttr::McastTtl(t) => d.ttl = Some(*t),
                DaemonAttr::Other(_) => {}
            }
        }
        d
    }
}

/// ipvsadm's name of a forwarding method.
pub fn fwd_name(f: u32) -> &'static str {
    match f {
        fwd::MASQ => "Masq",
        fwd::LOCALNODE => "Local",
        fwd::TUNNEL => "Tunnel",
        fwd::DROUTE => "Route",
        _ => "(null)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_reads_back_as_it_was_written() {
        let e = ServiceEntry {
            id: ServiceId::Addr {
                vip: "2001:db8::1".parse().unwrap(),
                port: 443,
                protocol: Protocol::Udp,
            },
            scheduler: "mh".into(),
            flags: svc_flags::PERSISTENT | svc_flags::SCHED1,
            timeout: 300,
            netmask: 64,
            pe_name: None,
            stats: Stats::default(),
        };
        assert_eq!(ServiceEntry::from_attrs(&e.to_attrs()).unwrap(), Some(e));
    }

    #[test]
    fn sctp_services_are_not_xlbs() {
        let attrs = [
            SvcAttr::Af(AF_INET),
            SvcAttr::Protocol(132),
            SvcAttr::Port(9),
        ];
        assert_eq!(ServiceEntry::from_attrs(&attrs).unwrap(), None);
    }

    #[test]
    fn a_tunnel_dest_of_the_other_family_keeps_its_family() {
        let d = DestEntry {
            addr: "2001:db8::9".parse().unwrap(),
            port: 80,
            fwd: fwd::TUNNEL,
            weight: 3,
            u_threshold: 10,
            l_threshold: 5,
            active: 0,
            inactive: 0,
            persistent: 0,
            stats: Stats::default(),
            tun_type: tun_type::GUE,
            tun_port: 6080,
            tun_flags: 0,
        };
        assert_eq!(DestEntry::from_attrs(AF_INET, &d.to_attrs()), d);
    }
}
