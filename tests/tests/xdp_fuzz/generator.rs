//! Frames from a grammar of what reaches a director, from both sides, with
//! correct checksums most of the time, mutated now and then. IP headers
//! come from the shared builder (`xlb_testbed::frames`) with random fields;
//! transport headers and ICMP messages are random bytes by design.

use crate::{
    csum,
    model::{Flow, ICMP, ICMPV6, TCP, UDP},
};
use lb_common::{FAMILY_V4, FAMILY_V6};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};
use xlb_testbed::frames;

const MAX_FRAME: usize = 1600;

/// A service to aim frames at, and for NAT its reals (address, port) that
/// replies come from.
pub struct Target {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub nat_reals: Vec<(IpAddr, u16)>,
}

pub struct Frame {
    pub bytes: Vec<u8>,
    /// Arrived from the reals' side (`fa`) rather than the clients' (`fb`).
    pub from_reals: bool,
}

pub struct Generator {
    rng: fastrand::Rng,
    /// Services by family (IPv4, IPv6).
    targets: [Vec<Target>; 2],
    /// Flows sent so far (IPv4, IPv6), for ICMP errors that quote them.
    sent: [Vec<Flow>; 2],
    /// Flows sent to NAT services: (flow, index into `targets`).
    sent_nat: [Vec<(Flow, usize)>; 2],
}

impl Generator {
    pub fn new(seed: u64, targets: Vec<Target>) -> Generator {
        let (v6, v4): (Vec<Target>, Vec<Target>) =
            targets.into_iter().partition(|t| t.vip.is_ipv6());
        Generator {
            rng: fastrand::Rng::with_seed(seed),
            targets: [v4, v6],
            sent: [Vec::new(), Vec::new()],
            sent_nat: [Vec::new(), Vec::new()],
        }
    }

    fn client(&mut self, v6: bool) -> IpAddr {
        let n = self.rng.u8(1..=16);
        if v6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, n as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
        }
    }

    /// A service, or now and then an address or port that is none.
    fn target(&mut self, v6: bool) -> (IpAddr, u16, u8, Option<usize>) {
        let fam = usize::from(v6);
        match self.rng.u8(0..10) {
            0 => (
                if v6 {
                    IpAddr::V6("fd00::200".parse().unwrap())
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200))
                },
                80,
                TCP,
                None,
            ),
            1 => (self.targets[fam][0].vip, 9999, TCP, None),
            _ => {
                let i = self.rng.usize(0..self.targets[fam].len());
                let t = &self.targets[fam][i];
                (t.vip, t.port, t.proto, Some(i))
            }
        }
    }

    fn transport(&mut self, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        if proto == TCP {
            t.extend((0..8).map(|_| self.rng.u8(..)));
            let doff = if self.rng.u8(0..20) == 0 {
                self.rng.u8(0..16)
            } else {
                5
            };
            t.push(doff << 4);
            t.push(self.rng.u8(..)); // flags
            t.extend((0..6).map(|_| self.rng.u8(..)));
        } else {
            t.extend_from_slice(&[0, 8, 0, 0]);
        }
        // Now and then a full-size packet, either side of the 1500-byte MTU.
        let payload = if self.rng.u8(0..30) == 0 {
            self.rng.usize(1420..1480)
        } else {
            self.rng.usize(0..48)
        };
        t.extend((0..payload).map(|_| self.rng.u8(..)));
        if proto == UDP {
            let len = t.len() as u16;
            t[4..6].copy_from_slice(&len.to_be_bytes());
        }
        t
    }

    fn ipv4(&mut self, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let words = if self.rng.u8(0..8) == 0 {
            self.rng.u8(5..=8)
        } else {
            5
        };
        let ihl = words as usize * 4;
        let tos = self.rng.u8(..);
        let bad_total = (self.rng.u8(0..30) == 0).then(|| self.rng.u16(..));
        let id = self.rng.u16(..);
        let frag: u16 = match self.rng.u8(0..25) {
            0 => 0x2000,
            1 => self.rng.u16(1..0x2000),
            2..=12 => 0x4000, // DF only
            _ => 0,
        };
        let mut h = frames::Ipv4 {
            tos,
            id,
            frag,
            options: vec![1; ihl - 20], // NOP options
            ..frames::Ipv4::new(src, dst, proto)
        }
        .packet(payload);
        if let Some(total) = bad_total {
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = frames::checksum(0, &h[..ihl]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        h
    }

    fn ipv6(&mut self, proto: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
        // Extension headers, most packets none.
        let mut chain: Vec<u8> = Vec::new();
        if self.rng.u8(0..4) == 0 {
            for _ in 0..self.rng.usize(1..=5) {
                chain.push([0, 43, 60, 51, 44][self.rng.usize(0..5)]);
            }
        }
        let mut ext = Vec::new();
        for (i, &kind) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(proto);
            let units = self.rng.u8(0..2);
            let size = if kind == 51 {
                (units as usize + 2) * 4
            } else if kind == 44 {
                8
            } else {
                (units as usize + 1) * 8
            };
            let mut hdr = vec![next, if kind == 44 { 0 } else { units }];
            hdr.resize(size, 0);
            ext.extend(hdr);
        }
        let first = chain.first().copied().unwrap_or(proto);
        let tc = self.rng.u8(..);
        ext.extend_from_slice(payload);
        frames::ipv6_tc(tc, 0, first, src, dst, &ext)
    }

    /// An IP packet carrying `payload`, whose checksum is made right seven
    /// times in eight (an IPv4 UDP one is sometimes left 0: none).
    fn ip(&mut self, proto: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> (u16, Vec<u8>) {
        let mut payload = payload.to_vec();
        let at = csum::check_offset(proto);
        let v4_udp_none = proto == UDP && src.is_ipv4() && self.rng.u8(0..4) == 0;
        if self.rng.u8(0..8) != 0 && payload.len() >= at + 2 && !v4_udp_none {
            let (s, d) = (crate::model::octets(src), crate::model::octets(dst));
            let mut c = csum::upper(proto, &s, &d, &payload, at);
            if proto == UDP && c == 0 {
                c = 0xffff;
            }
            payload[at..at + 2].copy_from_slice(&c.to_be_bytes());
        } else if v4_udp_none {
            payload[at..at + 2].copy_from_slice(&[0, 0]);
        }
        match (src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => (0x86dd, self.ipv6(proto, s, d, &payload)),
            (IpAddr::V4(s), IpAddr::V4(d)) => (0x0800, self.ipv4(proto, s, d, &payload)),
            _ => unreachable!("mixed families"),
        }
    }

    /// An ICMP error from `router` to `to`, quoting `quoted_src` →
    /// `quoted_dst` (ports `ports`, the first 8 transport bytes).
    fn icmp(
        &mut self,
        (router, to): (IpAddr, IpAddr),
        (proto, quoted_src, quoted_dst): (u8, IpAddr, IpAddr),
        ports: (u16, u16),
    ) -> (u16, Vec<u8>) {
        let v6 = to.is_ipv6();
        let mut head = ports.0.to_be_bytes().to_vec();
        head.extend_from_slice(&ports.1.to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        let (_, quoted) = self.ip(proto, quoted_src, quoted_dst, &head);
        let kind = if v6 {
            [1, 2, 3, 4, 128, 135][self.rng.usize(0..6)]
        } else {
            [3, 11, 12, 0, 8, 5][self.rng.usize(0..6)]
        };
        let mut icmp = vec![kind, self.rng.u8(0..5), 0, 0, 0, 0, 0, 0];
        icmp.extend(quoted);
        self.ip(if v6 { ICMPV6 } else { ICMP }, router, to, &icmp)
    }

    /// An ICMP error from a router near the client about the VIP's reply to
    /// a flow sent earlier (or a made-up one).
    fn icmp_to_vip(&mut self, v6: bool) -> (u16, Vec<u8>) {
        let known = &self.sent[usize::from(v6)];
        let pick =
            (!known.is_empty() && self.rng.bool()).then(|| known[self.rng.usize(0..known.len())]);
        let (proto, client, vip, sport, dport) = match pick {
            Some((_, p, c, v, s, d)) => (p, c, v, s, d),
            None => {
                let (vip, port, proto, _) = self.target(v6);
                let c = self.client(v6);
                (proto, c, vip, self.rng.u16(1024..), port)
            }
        };
        let router = if v6 {
            IpAddr::V6("fd00:9::1".parse().unwrap())
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
        };
        self.icmp((router, vip), (proto, vip, client), (dport, sport))
    }

    /// From a NAT real's side: its reply to a flow sent earlier (from one of
    /// the service's reals, not always the flow's), or an ICMP error about a
    /// packet the director sent to a real.
    fn real_side(&mut self, v6: bool) -> Option<(u16, Vec<u8>)> {
        let fam = usize::from(v6);
        let known = &self.sent_nat[fam];
        if known.is_empty() {
            return None;
        }
        let ((_, proto, client, _, cport, _), t) = known[self.rng.usize(0..known.len())];
        let reals = &self.targets[fam][t].nat_reals;
        let (real, rport) = reals[self.rng.usize(0..reals.len())];
        if self.rng.u8(0..4) == 0 {
            let router = if self.rng.bool() {
                real
            } else if v6 {
                IpAddr::V6("fd01::fe".parse().unwrap())
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, 254))
            };
            return Some(self.icmp((router, client), (proto, client, real), (cport, rport)));
        }
        let t = self.transport(proto, rport, cport);
        Some(self.ip(proto, real, client, &t))
    }

    pub fn frame(&mut self) -> Frame {
        let v6 = self.rng.u8(0..3) == 0;
        let mut from_reals = false;
        let (ether, l3) = match self.rng.u8(0..20) {
            0 => (0x0806, (0..28).map(|_| self.rng.u8(..)).collect()),
            1 => (self.rng.u16(..), (0..40).map(|_| self.rng.u8(..)).collect()),
            2 | 3 => self.icmp_to_vip(v6),
            4..=6 if !self.sent_nat[usize::from(v6)].is_empty() => {
                from_reals = true;
                self.real_side(v6).unwrap()
            }
            _ => {
                let (dst, dport, proto, target) = self.target(v6);
                let src = self.client(v6);
                let sport = self.rng.u16(40000..40064);
                let t = self.transport(proto, sport, dport);
                let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
                let flow = (family, proto, src, dst, sport, dport);
                self.sent[usize::from(v6)].push(flow);
                if let Some(i) =
                    target.filter(|&i| !self.targets[usize::from(v6)][i].nat_reals.is_empty())
                {
                    self.sent_nat[usize::from(v6)].push((flow, i));
                }
                self.ip(proto, src, dst, &t)
            }
        };
        let mut f = vec![0x02, 0, 0, 0, 0, 0xfb, 0x02, 0xcc, 0, 0, 0, 1];
        if self.rng.u8(0..10) == 0 {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&self.rng.u16(..0x1000).to_be_bytes());
        }
        f.extend_from_slice(&ether.to_be_bytes());
        f.extend::<Vec<u8>>(l3);
        if self.rng.u8(0..4) == 0 {
            self.mutate(&mut f);
        }
        Frame {
            bytes: f,
            from_reals,
        }
    }

    /// Bit flips, byte overwrites, truncation, extension.
    fn mutate(&mut self, f: &mut Vec<u8>) {
        for _ in 0..self.rng.usize(1..=4) {
            match self.rng.u8(0..4) {
                0 => {
                    let i = self.rng.usize(0..f.len());
                    f[i] ^= 1 << self.rng.u8(0..8);
                }
                1 => {
                    let i = self.rng.usize(0..f.len());
                    f[i] = self.rng.u8(..);
                }
                2 => f.truncate(self.rng.usize(14..=f.len())),
                _ => {
                    let more = self.rng.usize(1..64).min(MAX_FRAME.saturating_sub(f.len()));
                    f.extend((0..more).map(|_| self.rng.u8(..)));
                }
            }
        }
    }
}

/// Targets and NAT reals of the services, for the generator.
pub fn targets(services: &[crate::model::Service]) -> Vec<Target> {
    let mut by_key: HashMap<(IpAddr, u16, u8), Target> = HashMap::new();
    for s in services {
        let nat = s.method == crate::model::Method::Nat;
        by_key.insert(
            (s.vip, s.port, s.proto),
            Target {
                vip: s.vip,
                port: s.port,
                proto: s.proto,
                nat_reals: if nat {
                    s.reals.iter().map(|r| (r.addr, r.port)).collect()
                } else {
                    Vec::new()
                },
            },
        );
    }
    let mut t: Vec<Target> = by_key.into_values().collect();
    // A fixed order: the generator's choices must follow the seed alone.
    t.sort_by_key(|t| (t.vip, t.port, t.proto));
    t
}
