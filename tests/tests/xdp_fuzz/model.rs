//! What the director must do with a frame, written from the forwarding
//! methods' definitions rather than from the program: the parse rules, the
//! service and flow tables, the NAT reply table, the scheduler model from
//! lb-userspace, a FIB of the test's namespace, and the rewrite each method
//! makes (checksums updated per RFC 1624; see csum.rs). It also follows
//! every flow's connection state and every real's counts by IPVS's rules
//! (`lb_common::conn`'s tables; pickups, `conn_reuse_mode` 1, NAT replies),
//! which the test compares with the director's table and counts at the end.

use crate::csum;
use lb_common::{
    ConnCounts, FAMILY_V4, FAMILY_V6, FlowKey, SETTINGS_F_CONN_REUSE, addr_words,
    conn::{self, Dir},
    family_of, flow_hash, sched_hash,
};
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};
use xlb::sched::model;
use xlb_testbed::xdp;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// Maglev table size (a prime; small so the tables load fast).
pub const TABLE: u32 = 251;
/// The director's MAC on the client side (`fb`) and on the reals' side (`fa`).
pub const FB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfb];
pub const FA_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfa];
/// The router towards the clients.
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xcc];
/// The egress MTU of both veths, as the FIB reports it.
pub const LINK_MTU: usize = 1500;
/// Outer sources of tunnels: the director's client-side addresses.
pub fn tun_src(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6("fd00::fe".parse().unwrap())
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Dr,
    Nat,
    Tun,
}

/// A real server as configured and as the model sees it.
pub struct Real {
    pub id: u32,
    /// DR: unused (the VIP is on the real); NAT: the real's address; TUN:
    /// the outer destination, whose family may differ from the VIP's.
    pub addr: IpAddr,
    /// NAT: the port the service's port becomes.
    pub port: u16,
    /// Next-hop MAC (NAT: the neighbour entry the FIB finds).
    pub mac: [u8; 6],
    /// TUN with GUE: the real's GUE port.
    pub gue_port: Option<u16>,
    /// DR and TUN: the interface the real is reached through and its MAC;
    /// `None`: the client side (`fb`), as the fuzzer's reals are.
    pub egress: Option<(u32, [u8; 6])>,
}

pub struct Service {
    pub id: u32,
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub active: bool,
    pub hash_port: bool,
    pub method: Method,
    /// Maglev slot → index into `reals`.
    pub table: Vec<Option<usize>>,
    pub reals: Vec<Real>,
}

/// A flow as the model keys it: family, protocol, addresses, ports (as on the wire).
pub type Flow = (u8, u8, IpAddr, IpAddr, u16, u16);

/// What the parse rules find in a frame.
pub struct Parsed {
    /// The TCP/UDP flow, or for an ICMP error the flow its quote belongs to
    /// (the quote reversed).
    pub flow: Flow,
    pub icmp_error: bool,
    pub l3: usize,
    pub l4: usize,
    /// The upper-layer protocol at `l4` (ICMP / ICMPv6 for errors).
    pub proto: u8,
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

pub fn ip_at(f: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let b: [u8; 16] = f[at..at + 16].try_into().unwrap();
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        let b: [u8; 4] = f[at..at + 4].try_into().unwrap();
        IpAddr::V4(Ipv4Addr::from(b))
    }
}

pub fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The parse rules: Ethernet with at most one 802.1Q tag; IPv4 (options
/// allowed, fragments not) or IPv6 (up to 4 extension headers, no fragment
/// header); TCP with a sane data offset or UDP, or an ICMP error quoting a
/// TCP/UDP packet. `None`: not the director's to balance.
pub fn parse(f: &[u8]) -> Option<Parsed> {
    if f.len() < 14 {
        return None;
    }
    let mut ether = be16(f, 12);
    let mut l3 = 14;
    if ether == 0x8100 {
        if f.len() < 18 {
            return None;
        }
        ether = be16(f, 16);
        l3 = 18;
    }
    let (family, proto, src, dst, l4) = match ether {
        0x0800 => {
            if f.len() < l3 + 20 {
                return None;
            }
            let ihl = (f[l3] & 0x0f) as usize * 4;
            if f[l3] >> 4 != 4 || ihl < 20 {
                return None;
            }
            if (be16(f, l3 + 2) as usize) < ihl || l3 + ihl > f.len() {
                return None;
            }
            let frag = be16(f, l3 + 6);
            if (frag >> 13) & 1 != 0 || frag & 0x1fff != 0 {
                return None;
            }
            let (src, dst) = (ip_at(f, l3 + 12, false), ip_at(f, l3 + 16, false));
            (FAMILY_V4, f[l3 + 9], src, dst, l3 + ihl)
        }
        0x86dd => {
            if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                return None;
            }
            let (mut next, mut off) = (f[l3 + 6], l3 + 40);
            let mut upper = None;
            for _ in 0..4 {
                match next {
                    44 => return None,
                    0 | 43 | 60 | 51 => {
                        if f.len() < off + 2 {
                            return None;
                        }
                        let len = f[off + 1] as usize;
                        let size = if next == 51 {
                            (len + 2) * 4
                        } else {
                            (len + 1) * 8
                        };
                        next = f[off];
                        off += size & 0x7ff;
                    }
                    _ => {
                        upper = Some((next, off));
                        break;
                    }
                }
            }
            let (proto, l4) = upper?;
            let (src, dst) = (ip_at(f, l3 + 8, true), ip_at(f, l3 + 24, true));
            (FAMILY_V6, proto, src, dst, l4)
        }
        _ => return None,
    };
    if (proto == ICMP && family == FAMILY_V4) || (proto == ICMPV6 && family == FAMILY_V6) {
        if f.len() < l4 + 8 {
            return None;
        }
        let kind = f[l4];
        let error = if family == FAMILY_V4 {
            matches!(kind, 3 | 11 | 12)
        } else {
            matches!(kind, 1..=4)
        };
        if !error {
            return None;
        }
        let q = l4 + 8;
        let (qproto, qsrc, qdst, ports) = if family == FAMILY_V4 {
            if f.len() < q + 20 {
                return None;
            }
            let ihl = (f[q] & 0x0f) as usize * 4;
            if f[q] >> 4 != 4 || ihl < 20 {
                return None;
            }
            (
                f[q + 9],
                ip_at(f, q + 12, false),
                ip_at(f, q + 16, false),
                q + (ihl & 0x3c),
            )
        } else {
            if f.len() < q + 40 || f[q] >> 4 != 6 {
                return None;
            }
            (
                f[q + 6],
                ip_at(f, q + 8, true),
                ip_at(f, q + 24, true),
                q + 40,
            )
        };
        if qproto != TCP && qproto != UDP {
            return None;
        }
        if f.len() < ports + 4 {
            return None;
        }
        let (qsport, qdport) = (be16(f, ports), be16(f, ports + 2));
        return Some(Parsed {
            flow: (family, qproto, qdst, qsrc, qdport, qsport),
            icmp_error: true,
            l3,
            l4,
            proto,
        });
    }
    let ok = match proto {
        TCP => f.len() >= l4 + 20 && f[l4 + 12] >> 4 >= 5,
        UDP => f.len() >= l4 + 8,
        _ => false,
    };
    ok.then(|| Parsed {
        flow: (family, proto, src, dst, be16(f, l4), be16(f, l4 + 2)),
        icmp_error: false,
        l3,
        l4,
        proto,
    })
}

/// The test namespace's FIB as `bpf_fib_lookup` answers it: (egress
/// ifindex, next-hop MAC, egress MAC) for destinations with a route and a
/// neighbour, `None` for the rest (the packet then goes to the stack).
pub struct Fib {
    /// `fa`, towards the reals; `fb`, towards the clients.
    pub fa: u32,
    pub fb: u32,
    /// NAT reals (the neighbours on `fa`) → their MACs.
    pub reals: HashMap<IpAddr, [u8; 6]>,
}

impl Fib {
    fn lookup(&self, src: IpAddr, dst: IpAddr) -> Option<(u32, [u8; 6], [u8; 6])> {
        // IPv6 link-local, multicast and loopback addresses are never forwarded.
        let strict = |a: IpAddr| match a {
            IpAddr::V6(a) => a.is_multicast() || a.is_unicast_link_local() || a.is_loopback(),
            IpAddr::V4(_) => false,
        };
        if strict(src) || strict(dst) {
            return None;
        }
        if let Some(mac) = self.reals.get(&dst) {
            return Some((self.fa, *mac, FA_MAC));
        }
        let via_gateway = match dst {
            // 192.0.2.0/24 via 10.0.0.1, and the gateway itself.
            IpAddr::V4(a) => a.octets()[..3] == [192, 0, 2] || a == Ipv4Addr::new(10, 0, 0, 1),
            // fd00:1::/64 via fd00::1, and the gateway itself.
            IpAddr::V6(a) => {
                a.segments()[..4] == [0xfd00, 1, 0, 0]
                    || a == "fd00::1".parse::<Ipv6Addr>().unwrap()
            }
        };
        via_gateway.then_some((self.fb, GW_MAC, FB_MAC))
    }
}

/// The director's state as the model keeps it, and what it saw.
pub struct Model {
    pub services: Vec<Service>,
    pub fib: Fib,
    /// Each flow's connection state and real id.
    pub flows: HashMap<Flow, (u32, u32)>,
    /// Each real's live connection counts, by real id.
    pub conns: BTreeMap<u32, ConnCounts>,
    /// A NAT flow's reply tuple (real → client) → the client's flow.
    nat_replies: HashMap<Flow, Flow>,
    /// How many frames took each path (coverage).
    pub paths: BTreeMap<&'static str, usize>,
    /// The path the last frame took.
    pub last: &'static str,
    /// Outer sources of tunnels: IPv4, IPv6.
    pub tun_sources: (IpAddr, IpAddr),
}

fn send(out: &mut [u8], (egress, dmac, smac): (u32, [u8; 6], [u8; 6]), ingress: u32) -> u32 {
    out[0..6].copy_from_slice(&dmac);
    out[6..12].copy_from_slice(&smac);
    if egress == ingress {
        xdp::XDP_TX
    } else {
        xdp::XDP_REDIRECT
    }
}

impl Model {
    pub fn new(services: Vec<Service>, fib: Fib) -> Model {
        Model {
            services,
            fib,
            flows: HashMap::new(),
            conns: BTreeMap::new(),
            nat_replies: HashMap::new(),
            paths: BTreeMap::new(),
            last: "",
            tun_sources: (tun_src(false), tun_src(true)),
        }
    }

    fn took(&mut self, path: &'static str) {
        *self.paths.entry(path).or_default() += 1;
        self.last = path;
    }

    /// The action and output frame for `f` arriving on `ingress`, updating
    /// the flow tables.
    pub fn expect(&mut self, f: &[u8], ingress: u32) -> (u32, Vec<u8>) {
        let pass = (xdp::XDP_PASS, f.to_vec());
        let Some(p) = parse(f) else {
            self.took("not balanced");
            return pass;
        };
        let (family, proto, src, dst, sport, dport) = p.flow;
        let Some(si) = self.services.iter().position(|s| {
            s.vip == dst && s.port == dport && s.proto == proto && family_of(s.vip) == family
        }) else {
            return self.reply(f, &p, ingress);
        };
        let svc = &self.services[si];
        if !svc.active || (p.icmp_error && !self.flows.contains_key(&p.flow)) {
            self.took("for no flow or inactive service");
            return pass;
        }
        // The flow keeps its real; with a fixed table that is the scheduler's
        // choice for it, which the model computes either way.
        let port = if svc.hash_port { sport } else { 0 };
        let fold = sched_hash::fold(family, &addr_words(src));
        let first = (sched_hash::mh(fold, port, 0) % svc.table.len() as u32) as usize;
        let mut reals: Vec<model::Real> = svc.reals.iter().map(|_| model::Real::new(1)).collect();
        let Some(i) = model::hashed(&svc.table, &mut reals, false, first, |_| 0) else {
            self.took("dropped: no real");
            return (xdp::XDP_DROP, f.to_vec());
        };
        let (method, real) = (svc.method, &svc.reals[i]);
        let (addr, rport, mac, gue, real_id) =
            (real.addr, real.port, real.mac, real.gue_port, real.id);
        let (egress, egress_mac) = real.egress.unwrap_or((self.fib.fb, FB_MAC));
        if !p.icmp_error && self.client_packet(&p, f, real_id, method) && method == Method::Nat {
            self.nat_replies
                .insert((family, proto, addr, src, rport, sport), p.flow);
        }
        match method {
            Method::Dr => {
                self.took(if p.icmp_error { "DR ICMP error" } else { "DR" });
                let mut out = f.to_vec();
                let action = send(&mut out, (egress, mac, egress_mac), ingress);
                (action, out)
            }
            Method::Nat => {
                let mut out = f.to_vec();
                let from = if p.icmp_error {
                    self.took("NAT ICMP error to the real");
                    icmp_nat(&mut out, &p, true, addr, rport)
                } else {
                    self.took("NAT to the real");
                    nat_rewrite(&mut out, &p, false, addr, rport);
                    src
                };
                self.route(out, p.l3, (from, addr), ingress)
            }
            Method::Tun => {
                self.took(match (gue, addr.is_ipv6()) {
                    (Some(_), false) => "TUN GUE over IPv4",
                    (Some(_), true) => "TUN GUE over IPv6",
                    (None, false) => "TUN IPIP over IPv4",
                    (None, true) => "TUN IPIP over IPv6",
                });
                match encapsulate(f, &p, (self.tun_sources, addr), gue) {
                    Some(mut out) => {
                        let action = send(&mut out, (egress, mac, egress_mac), ingress);
                        (action, out)
                    }
                    None => pass,
                }
            }
        }
    }

    /// Adds `delta` (+1 or -1) to the real's count of `state`'s class.
    fn count(&mut self, real_id: u32, state: u32, up: bool) {
        if !conn::is_counted(state) {
            return;
        }
        let c = self.conns.entry(real_id).or_default();
        let field = if conn::is_active(state) {
            &mut c.active
        } else {
            &mut c.inactive
        };
        *field = if up {
            field.wrapping_add(1)
        } else {
            field.wrapping_sub(1)
        };
    }

    /// Moves a flow to `new`, and its real's counts with it.
    fn set_state(&mut self, flow: Flow, new: u32) {
        let (old, real_id) = self.flows[&flow];
        self.count(real_id, old, false);
        self.count(real_id, new, true);
        self.flows.insert(flow, (new, real_id));
    }

    /// A client packet (not an ICMP error) of a flow that goes to `real_id`
    /// (with a fixed table, a flow never changes real here): a new flow,
    /// a new connection on a closed flow's ports, or a state transition.
    /// True when the director records a flow (and, for NAT, its reply entry).
    fn client_packet(&mut self, p: &Parsed, f: &[u8], real_id: u32, method: Method) -> bool {
        let flags = if p.proto == TCP { f[p.l4 + 13] } else { 0 };
        let opens = p.proto == TCP && conn::opens(flags);
        let dir = if method == Method::Nat {
            Dir::Input
        } else {
            Dir::InputOnly
        };
        match self.flows.get(&p.flow).copied() {
            Some((state, _))
                if !(opens
                    && conn::reused(state, SETTINGS_F_CONN_REUSE, dir == Dir::InputOnly)) =>
            {
                if p.proto == TCP {
                    self.set_state(p.flow, conn::tcp_next(state, flags, dir));
                }
                false
            }
            old => {
                if let Some((state, old_real)) = old {
                    self.count(old_real, state, false);
                }
                let state = conn::first(p.proto, flags);
                self.count(real_id, state, true);
                self.flows.insert(p.flow, (state, real_id));
                true
            }
        }
    }

    /// A frame for no service: a NAT real's reply (or an ICMP error about a
    /// packet to the real) goes back to the client from the VIP; anything
    /// else passes.
    fn reply(&mut self, f: &[u8], p: &Parsed, ingress: u32) -> (u32, Vec<u8>) {
        let Some(&client) = self.nat_replies.get(&p.flow) else {
            self.took("for no service");
            return (xdp::XDP_PASS, f.to_vec());
        };
        if !p.icmp_error && p.proto == TCP {
            let state = self.flows[&client].0;
            self.set_state(client, conn::reply_next(state, f[p.l4 + 13]));
        }
        let (_, _, csrc, vip, _, vport) = client;
        let mut out = f.to_vec();
        let to = if p.icmp_error {
            self.took("NAT ICMP error to the client");
            icmp_nat(&mut out, p, false, vip, vport)
        } else {
            self.took("NAT reply");
            nat_rewrite(&mut out, p, true, vip, vport);
            csrc
        };
        self.route(out, p.l3, (vip, to), ingress)
    }

    /// Sends a rewritten packet from `src` to `dst` by the FIB, or to the
    /// stack (as it now is) when the FIB has no next hop or the packet
    /// exceeds the MTU.
    fn route(
        &mut self,
        mut out: Vec<u8>,
        l3: usize,
        (src, dst): (IpAddr, IpAddr),
        ingress: u32,
    ) -> (u32, Vec<u8>) {
        match self.fib.lookup(src, dst) {
            Some(hop) if out.len() - l3 <= LINK_MTU => {
                let action = send(&mut out, hop, ingress);
                (action, out)
            }
            _ => {
                self.took("NAT rewritten, to the stack");
                (xdp::XDP_PASS, out)
            }
        }
    }
}

/// LVS-NAT's rewrite of one end (`src`: the reply's source, else the
/// destination) to `addr`:`port`, with the IPv4 header checksum and the
/// TCP/UDP checksum updated (an IPv4 UDP checksum of 0 stays 0; one that
/// would become 0 is sent as 0xffff).
fn nat_rewrite(out: &mut [u8], p: &Parsed, src: bool, addr: IpAddr, port: u16) {
    let v4 = addr.is_ipv4();
    let addr_at = p.l3
        + match (v4, src) {
            (true, true) => 12,
            (true, false) => 16,
            (false, true) => 8,
            (false, false) => 24,
        };
    let port_at = p.l4 + if src { 0 } else { 2 };
    let check_at = p.l4 + csum::check_offset(p.proto);
    let new = octets(addr);
    let old = out[addr_at..addr_at + new.len()].to_vec();
    let check = be16(out, check_at);
    if !(p.proto == UDP && v4 && check == 0) {
        csum::account(out, check_at, &old, &new);
        csum::rewrite(out, port_at, &port.to_be_bytes(), check_at);
        if p.proto == UDP && be16(out, check_at) == 0 {
            out[check_at..check_at + 2].copy_from_slice(&[0xff, 0xff]);
        }
    } else {
        out[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    }
    if v4 {
        csum::rewrite(out, addr_at, &new, p.l3 + 10);
    } else {
        out[addr_at..addr_at + 16].copy_from_slice(&new);
    }
}

/// An ICMP error of a NAT flow, rewritten as IPVS rewrites it: towards the
/// real, the outer destination and the quoted source (address and port)
/// become the real's; towards the client, the outer source and the quoted
/// destination become the VIP's. The outer IPv4, quoted IPv4 and ICMP
/// checksums follow (ICMPv6's covers the outer addresses too). Returns the
/// outer address left as it was (the other end of the route).
fn icmp_nat(out: &mut [u8], p: &Parsed, to_real: bool, addr: IpAddr, port: u16) -> IpAddr {
    let (l3, q, icmp_check) = (p.l3, p.l4 + 8, p.l4 + 2);
    let new = octets(addr);
    let port_word = if to_real { 0 } else { 2 };
    if addr.is_ipv4() {
        let (outer, quoted, kept) = if to_real { (16, 12, 12) } else { (12, 16, 16) };
        let kept = ip_at(out, l3 + kept, false);
        csum::rewrite(out, l3 + outer, &new, l3 + 10);
        let ports = q + (((out[q] & 0x0f) as usize * 4) & 0x3c);
        let (old_addr, old_check) = (
            out[q + quoted..q + quoted + 4].to_vec(),
            out[q + 10..q + 12].to_vec(),
        );
        csum::rewrite(out, q + quoted, &new, q + 10);
        let new_check = out[q + 10..q + 12].to_vec();
        csum::account(out, icmp_check, &old_addr, &new);
        csum::account(out, icmp_check, &old_check, &new_check);
        csum::rewrite(out, ports + port_word, &port.to_be_bytes(), icmp_check);
        kept
    } else {
        let (outer, quoted, kept) = if to_real { (24, 8, 8) } else { (8, 24, 24) };
        let kept = ip_at(out, l3 + kept, true);
        csum::rewrite(out, l3 + outer, &new, icmp_check);
        csum::rewrite(out, q + quoted, &new, icmp_check);
        csum::rewrite(out, q + 40 + port_word, &port.to_be_bytes(), icmp_check);
        kept
    }
}

/// LVS-TUN: the client's IP packet (from `p.l3`, through the end of the
/// frame) behind a new IP header of the real's family from the director's
/// tunnel source, and for GUE a UDP header (source port from the flow hash,
/// checksum 0) and a 4-byte GUE header naming the inner protocol. The outer
/// header copies the inner DSCP/ECN and IPv4 ID; DF is kept from an IPv4
/// inner packet and always set over an IPv6 one; an IPv6 outer header's
/// flow label is the flow hash. `None`: the inner packet's declared length
/// runs past the frame (it goes to the stack).
fn encapsulate(
    f: &[u8],
    p: &Parsed,
    ((src4, src6), real): ((IpAddr, IpAddr), IpAddr),
    gue_port: Option<u16>,
) -> Option<Vec<u8>> {
    let l3 = p.l3;
    let inner_v6 = p.flow.0 == FAMILY_V6;
    let (len, tos, id, df, inner_proto) = if inner_v6 {
        (
            40 + usize::from(be16(f, l3 + 4)),
            f[l3] << 4 | f[l3 + 1] >> 4,
            [0, 0],
            true,
            41u8,
        )
    } else {
        (
            usize::from(be16(f, l3 + 2)),
            f[l3 + 1],
            [f[l3 + 4], f[l3 + 5]],
            f[l3 + 6] & 0x40 != 0,
            4u8,
        )
    };
    if l3 + len > f.len() {
        return None;
    }
    let (family, proto, src, dst, sport, dport) = p.flow;
    let key = FlowKey {
        src: addr_words(src),
        dst: addr_words(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        family,
        _pad: [0; 2],
    };
    let hash = flow_hash(&key);
    let udp_len = if gue_port.is_some() { 8 + 4 } else { 0 };
    let outer_proto = if gue_port.is_some() { UDP } else { inner_proto };
    let mut out = vec![0u8; 12];
    if l3 == 18 {
        out.extend_from_slice(&[0x81, 0x00, f[14], f[15]]);
    }
    if real.is_ipv6() {
        let label = hash & 0xf_ffff;
        out.extend_from_slice(&[0x86, 0xdd]);
        out.extend_from_slice(&[
            0x60 | tos >> 4,
            tos << 4 | (label >> 16) as u8,
            (label >> 8) as u8,
            label as u8,
        ]);
        out.extend_from_slice(&((udp_len + len) as u16).to_be_bytes());
        out.extend_from_slice(&[outer_proto, 64]);
        out.extend_from_slice(&octets(src6));
        out.extend_from_slice(&octets(real));
    } else {
        out.extend_from_slice(&[0x08, 0x00]);
        let mut h = vec![0x45, tos];
        h.extend_from_slice(&((20 + udp_len + len) as u16).to_be_bytes());
        h.extend_from_slice(&id);
        h.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, 64, outer_proto, 0, 0]);
        h.extend_from_slice(&octets(src4));
        h.extend_from_slice(&octets(real));
        let c = csum::ipv4_header(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        out.extend(h);
    }
    if let Some(gue) = gue_port {
        let sport = 0xc000 | (hash & 0x3fff) as u16;
        out.extend_from_slice(&sport.to_be_bytes());
        out.extend_from_slice(&gue.to_be_bytes());
        out.extend_from_slice(&((udp_len + len) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, inner_proto, 0, 0]);
    }
    out.extend_from_slice(&f[l3..]);
    Some(out)
}
