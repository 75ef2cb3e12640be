//! The listing, byte for byte as ipvsadm 1.31 prints it (its print_title,
//! print_service_entry and print_largenum), for state from either data plane.

use super::{Listing, args::View};
use crate::config::ServiceId;
use crate::ipvs::{
    Daemon, DestEntry, ServiceEntry, Timeouts,
    types::{fwd, fwd_name, svc_flags},
};
use std::{cmp::Ordering, fmt::Write, net::IpAddr};

/// What to print: which columns, exact or scaled counters, every service or one.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub view: View,
    pub exact: bool,
    pub only: Option<ServiceId>,
}

/// The listing; `None` when `only` names a service that does not exist.
pub fn render(listing: &Listing, format: Format) -> Option<String> {
    let mut services: Vec<&(ServiceEntry, Vec<DestEntry>)> = listing.services.iter().collect();
    services.sort_by(|a, b| cmp_services(&a.0, &b.0));
    let mut out = String::new();
    if let Some(id) = format.only {
        let one = services.iter().find(|(s, _)| s.id == id)?;
        title(&mut out, format.view);
        service(&mut out, one, format);
        return Some(out);
    }
    let v = listing.version;
    let _ = writeln!(
        out,
        "IP Virtual Server version {}.{}.{} (size={})",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff,
        listing.conn_tab_size
    );
    title(&mut out, format.view);
    for s in services {
        service(&mut out, s, format);
    }
    Some(out)
}

/// `ipvsadm -L --timeout`.
pub fn timeouts(t: Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// `ipvsadm -L --daemon`: the master's line, then the backup's.
pub fn daemons(daemons: &[Daemon]) -> String {
    let mut out = String::new();
    for master in [true, false] {
        for d in daemons.iter().filter(|d| d.master == master) {
            let role = if master { "master" } else { "backup" };
            let _ = write!(
                out,
                "{role} sync daemon (mcast={}, syncid={}",
                d.interface, d.sync_id
            );
            if let Some(m) = d.maxlen.filter(|&m| m != 0) {
                let _ = write!(out, ", maxlen={m}");
            }
            if let Some(g) = d.group {
                let _ = write!(out, ", group={g}");
            }
            if let Some(p) = d.port.filter(|&p| p != 0) {
                let _ = write!(out, ", port={p}");
            }
            if let Some(t) = d.ttl.filter(|&t| t != 0) {
                let _ = write!(out, ", ttl={t}");
            }
            out.push_str(")\n");
        }
    }
    out
}

fn title(out: &mut String, view: View) {
    let head = "Prot LocalAddress:Port";
    let _ = match view {
        View::Stats => writeln!(
            out,
            "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        View::Rate => writeln!(
            out,
            "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        View::Thresholds => writeln!(
            out,
            "{head:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        View::PersistentConn => writeln!(
            out,
            "{head:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        View::TunInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn"
        ),
        View::Default => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
        ),
    };
}

/// ipvsadm's TunnelInfo: `ipip`, or `gue:PORT:` and the checksum flag
/// (`-c` none, `+c` checksum, `r+c` remote checksum); `n/a` for reals that
/// are not tunnelled.
fn tun_info(d: &DestEntry) -> String {
    const IPIP: u8 = 0;
    const GUE: u8 = 1;
    if d.fwd != fwd::TUNNEL {
        return "n/a".to_string();
    }
    match d.tun_type {
        IPIP => "ipip".to_string(),
        GUE => {
            let flags = match d.tun_flags {
                0 => "-c",
                1 => "+c",
                2 => "r+c",
                _ => return "n/a".to_string(),
            };
            format!("gue:{}:{flags}", d.tun_port)
        }
        _ => "n/a".to_string(),
    }
}

/// `addr:port`, IPv6 in brackets.
fn addr_port(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// ipvsadm's fixed-size buffers cut IPv4 names (never IPv6 ones).
fn cut(mut s: String, ipv6: bool, at: usize) -> String {
    if !ipv6 {
        s.truncate(at);
    }
    s
}

fn service_name(id: &ServiceId) -> String {
    match *id {
        ServiceId::Fwmark { mark, ipv6: false } => format!("FWM  {mark}"),
        ServiceId::Fwmark { mark, ipv6: true } => format!("FWM  {mark} IPv6"),
        ServiceId::Addr {
            vip,
            port,
            protocol,
        } => cut(
            format!("{protocol}  {}", addr_port(vip, port)),
            vip.is_ipv6(),
            33,
        ),
    }
}

/// ` (flag,flag)` after the scheduler, as print_sched_flags names them.
fn sched_flags(s: &ServiceEntry) -> String {
    let names: [&str; 3] = match s.scheduler.as_str() {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    let bits = [svc_flags::SCHED1, svc_flags::SCHED2, svc_flags::SCHED3];
    let set: Vec<&str> = names
        .iter()
        .zip(bits)
        .filter(|(_, b)| s.flags & b != 0)
        .map(|(n, _)| *n)
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" ({})", set.join(","))
    }
}

fn service_flags(s: &ServiceEntry) -> String {
    let mut t = format!(" {}{}", s.scheduler, sched_flags(s));
    if s.flags & svc_flags::PERSISTENT != 0 {
        let _ = write!(t, " persistent {}", s.timeout);
        if s.id.is_ipv6() {
            if s.netmask != 128 {
                let _ = write!(t, " mask {}", s.netmask);
            }
        } else if s.netmask != u32::MAX {
            let mask = std::net::Ipv4Addr::from(s.netmask.to_ne_bytes());
            let _ = write!(t, " mask {mask}");
        }
        if let Some(pe) = &s.pe_name {
            let _ = write!(t, " pe {pe}");
        }
    }
    if s.flags & svc_flags::ONEPACKET != 0 {
        t.push_str(" ops");
    }
    t
}

/// print_largenum: 9 columns, K/M/G/T from 10^8 on unless exact.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{i:>width$}")
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

fn service(out: &mut String, (s, dests): &(ServiceEntry, Vec<DestEntry>), f: Format) {
    let name = service_name(&s.id);
    let st = &s.stats;
    match f.view {
        View::Stats => {
            let _ = write!(out, "{name:<33}");
            for v in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
                largenum(out, v, f.exact);
            }
        }
        View::Rate => {
            let _ = write!(out, "{name:<33}");
            for v in [st.cps, st.inpps, st.outpps, st.inbps, st.outbps] {
                largenum(out, v, f.exact);
            }
        }
        _ => {
            let _ = write!(out, "{name}{}", service_flags(s));
        }
    }
    out.push('\n');
    let mut dests: Vec<&DestEntry> = dests.iter().collect();
    dests.sort_by(|a, b| cmp_dests(a, b));
    for d in dests {
        let dname = cut(addr_port(d.addr, d.port), s.id.is_ipv6(), 28);
        let st = &d.stats;
        let _ = match f.view {
            View::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                for v in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
                    largenum(out, v, f.exact);
                }
                writeln!(out)
            }
            View::Rate => {
                let _ = write!(
                    out,
                    "  -> {dname:<28} {:>8} {:>8} {:>8}",
                    st.cps, st.inpps, st.outpps
                );
                largenum(out, st.inbps, f.exact);
                largenum(out, st.outbps, f.exact);
                writeln!(out)
            }
            View::Thresholds => writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.u_threshold, d.l_threshold, d.active, d.inactive
            ),
            View::PersistentConn => writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.weight, d.persistent, d.active, d.inactive
            ),
            View::TunInfo => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                fwd_name(d.fwd),
                tun_info(d),
                d.weight as i32,
                d.active,
                d.inactive
            ),
            View::Default => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                fwd_name(d.fwd),
                d.weight as i32,
                d.active,
                d.inactive
            ),
        };
    }
}

/// C's `int r = a - b` on unsigned operands: the wrapped difference's sign.
fn c_sub(a: u32, b: u32) -> Ordering {
    (a.wrapping_sub(b) as i32).cmp(&0)
}

fn addr_words(a: IpAddr) -> Vec<u32> {
    match a {
        IpAddr::V4(v4) => vec![u32::from(v4)],
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn cmp_addrs(a: IpAddr, b: IpAddr) -> Ordering {
    addr_words(a)
        .into_iter()
        .zip(addr_words(b))
        .map(|(x, y)| c_sub(x, y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// ipvs_cmp_services: fwmark, family, protocol, address, port.
fn cmp_services(a: &ServiceEntry, b: &ServiceEntry) -> Ordering {
    let key = |s: &ServiceEntry| match s.id {
        ServiceId::Fwmark { mark, ipv6 } => (mark, u32::from(ipv6), 0, None, 0),
        ServiceId::Addr {
            vip,
            port,
            protocol,
        } => (
            0,
            u32::from(vip.is_ipv6()),
            u32::from(protocol.number()),
            Some(vip),
            port,
        ),
    };
    let (ka, kb) = (key(a), key(b));
    c_sub(ka.0, kb.0)
        .then(ka.1.cmp(&kb.1))
        .then(c_sub(ka.2, kb.2))
        .then(match (ka.3, kb.3) {
            (Some(x), Some(y)) => cmp_addrs(x, y),
            _ => Ordering::Equal,
        })
        .then(ka.4.cmp(&kb.4))
}

/// ipvs_cmp_dests: address, then port.
fn cmp_dests(a: &DestEntry, b: &DestEntry) -> Ordering {
    a.addr
        .is_ipv6()
        .cmp(&b.addr.is_ipv6())
        .then(cmp_addrs(a.addr, b.addr))
        .then(a.port.cmp(&b.port))
}

/// `ipvsadm -L -n -c`: the connection entries, as ipvsadm prints them
/// (templates among them, with client port 0); `xlb flows` leaves out the
/// title line.
pub fn connections(flows: &[crate::snapshot::flows::Flow], title: bool) -> String {
    let mut out = String::new();
    if title {
        out.push_str("IPVS connection entries\n");
    }
    // ipvsadm's "pro expire %-11s %-18s %-18s %s".
    out.push_str("pro expire state       source             virtual            destination\n");
    for f in flows {
        let expire = format!("{:02}:{:02}", f.expires_s / 60, f.expires_s % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            f.protocol, expire, f.state, f.client, f.virtual_addr, f.real
        );
    }
    out
}

#[cfg(test)]
mod tests {
    //! The goldens under `golden/` are what ipvsadm 1.31 printed inside the
    //! qemu guest (tests/src/qemu.rs) after `ipvsadm -A/-a` built the state
    //! that [`probe_state`] describes.
    use super::*;
    use crate::config::Protocol;
    use crate::ipvs::{
        Stats,
        types::{fwd, tun_type},
    };

    fn svc(id: ServiceId, sched: &str, flags: u32, timeout: u32, netmask: u32) -> ServiceEntry {
        ServiceEntry {
            id,
            scheduler: sched.into(),
            flags: flags | svc_flags::HASHED,
            timeout,
            netmask,
            pe_name: None,
            stats: Stats::default(),
        }
    }

    fn tcp(vip: &str, port: u16) -> ServiceId {
        ServiceId::Addr {
            vip: vip.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
        }
    }

    fn dest(addr: &str, port: u16, fwd: u32, weight: u32) -> DestEntry {
        DestEntry {
            addr: addr.parse().unwrap(),
            port,
            fwd,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            active: 0,
            inactive: 0,
            persistent: 0,
            stats: Stats::default(),
            tun_type: tun_type::IPIP,
            tun_port: 0,
            tun_flags: 0,
        }
    }

    /// The guest's state, listed in an order ipvsadm's sort must fix.
    fn probe_state() -> Listing {
        use svc_flags::*;
        let full4 = u32::MAX;
        let mut thresholds = dest("10.0.0.2", 80, fwd::MASQ, 2);
        thresholds.u_threshold = 100;
        thresholds.l_threshold = 50;
        let mut gue = dest("10.0.0.5", 53, fwd::TUNNEL, 3);
        gue.tun_type = tun_type::GUE;
        gue.tun_port = 6080;
        let udp53 = ServiceId::Addr {
            vip: "10.0.0.1".parse().unwrap(),
            port: 53,
            protocol: Protocol::Udp,
        };
        let mask24 = u32::from_ne_bytes([255, 255, 255, 0]);
        Listing {
            version: 0x010201,
            conn_tab_size: 4096,
            services: vec![
                (
                    svc(
                        ServiceId::Fwmark {
                            mark: 8,
                            ipv6: true,
                        },
                        "rr",
                        0,
                        0,
                        128,
                    ),
                    vec![dest("2001:db8::6", 0, fwd::DROUTE, 1)],
                ),
                (
                    svc(udp53, "mh", PERSISTENT | SCHED2, 300, mask24),
                    vec![gue, dest("10.0.0.4", 53, fwd::TUNNEL, 3)],
                ),
                (svc(tcp("10.0.0.9", 82), "rr", SCHED1, 0, full4), vec![]),
                (
                    svc(tcp("10.0.0.1", 80), "sh", SCHED1 | SCHED2, 0, full4),
                    vec![dest("10.0.0.3", 8080, fwd::MASQ, 0), thresholds],
                ),
                (
                    svc(
                        ServiceId::Fwmark {
                            mark: 7,
                            ipv6: false,
                        },
                        "wlc",
                        PERSISTENT,
                        60,
                        full4,
                    ),
                    vec![dest("10.0.0.6", 0, fwd::DROUTE, 1)],
                ),
                (
                    svc(tcp("10.0.0.9", 81), "mh", SCHED1 | SCHED2, 0, full4),
                    vec![],
                ),
            ],
        }
    }

    fn show(view: View, only: Option<ServiceId>) -> String {
        let f = Format {
            view,
            exact: false,
            only,
        };
        render(&probe_state(), f).expect("the service exists")
    }

    #[test]
    fn the_listings_match_ipvsadm_byte_for_byte() {
        let cases = [
            (View::Default, include_str!("golden/list.txt")),
            (View::Stats, include_str!("golden/stats.txt")),
            (View::Rate, include_str!("golden/rate.txt")),
            (View::Thresholds, include_str!("golden/thresholds.txt")),
            (
                View::PersistentConn,
                include_str!("golden/persistent_conn.txt"),
            ),
        ];
        for (view, golden) in cases {
            assert_eq!(show(view, None), golden, "{view:?}");
        }
    }

    #[test]
    fn one_service_is_listed_without_the_version_line() {
        assert_eq!(
            show(View::Default, Some(tcp("10.0.0.1", 80))),
            include_str!("golden/tcp_filter.txt")
        );
        let fwm6 = ServiceId::Fwmark {
            mark: 8,
            ipv6: true,
        };
        assert_eq!(
            show(View::Default, Some(fwm6)),
            include_str!("golden/fwmark6_filter.txt")
        );
        let f = Format {
            view: View::Default,
            exact: false,
            only: Some(tcp("10.9.9.9", 1)),
        };
        assert_eq!(render(&probe_state(), f), None);
    }

    #[test]
    fn daemons_and_timeouts_read_as_ipvsadm_prints_them() {
        let backup = Daemon {
            master: false,
            interface: "dummy0".into(),
            sync_id: 7,
            maxlen: Some(1024),
            group: Some("224.0.0.99".parse().unwrap()),
            port: Some(9000),
            ttl: Some(3),
        };
        let master = Daemon {
            master: true,
            interface: "lo".into(),
            sync_id: 5,
            maxlen: Some(1472),
            group: Some("224.0.0.81".parse().unwrap()),
            port: Some(8848),
            ttl: Some(1),
        };
        // As the guest's ipvsadm 1.31 printed them (the master first).
        assert_eq!(
            daemons(&[backup, master]),
            "master sync daemon (mcast=lo, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
             backup sync daemon (mcast=dummy0, syncid=7, maxlen=1024, group=224.0.0.99, port=9000, ttl=3)\n"
        );
        let t = Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        };
        assert_eq!(timeouts(t), "Timeout (tcp tcpfin udp): 900 120 300\n");
    }

    #[test]
    fn large_counters_scale_unless_exact() {
        let mut scaled = String::new();
        for v in [
            99_999_999,
            100_000_000,
            999_999_999,
            1_000_000_000,
            123_456_789_012,
            123_456_789_012_345,
        ] {
            largenum(&mut scaled, v, false);
        }
        assert_eq!(
            scaled,
            " 99999999  100000K  999999K    1000M     123G     123T"
        );
        let mut exact = String::new();
        largenum(&mut exact, 7, true);
        largenum(&mut exact, 123_456_789_012, true);
        assert_eq!(exact, "        7 123456789012");
    }

    #[test]
    fn services_sort_as_ipvsadms_c_comparison_does() {
        // 200.0.0.1 - 10.0.0.1 overflows C's int: ipvsadm lists 200.x first.
        let l = Listing {
            version: 0x010201,
            conn_tab_size: 4096,
            services: vec![
                (svc(tcp("10.0.0.1", 80), "rr", 0, 0, u32::MAX), vec![]),
                (svc(tcp("200.0.0.1", 80), "rr", 0, 0, u32::MAX), vec![]),
                (svc(tcp("20.0.0.1", 80), "rr", 0, 0, u32::MAX), vec![]),
            ],
        };
        let f = Format {
            view: View::Default,
            exact: false,
            only: None,
        };
        let text = render(&l, f).unwrap();
        let order: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(
            order,
            [
                "TCP  200.0.0.1:80 rr",
                "TCP  10.0.0.1:80 rr",
                "TCP  20.0.0.1:80 rr"
            ]
        );
    }
}
