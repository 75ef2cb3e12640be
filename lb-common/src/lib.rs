//! Types shared by xlb's XDP programs (`lb-ebpf`) and its agent (`lb-userspace`).
//!
//! Every struct here is the key or value of a BPF map, so each is `#[repr(C)]`
//! with explicit padding fields (hash-map keys are compared byte by byte, so no
//! byte may be left uninitialised) and a compile-time size check. Addresses and
//! ports are kept in network byte order, exactly as they sit in the packet.
#![no_std]

use core::mem::{align_of, size_of};

pub mod hsiphash;
pub mod probe;

/// Names of the maps the agent pins under its pin directory (default `/sys/fs/bpf/xlb`).
pub mod map_names {
    pub const SERVICES: &str = "SERVICES";
    pub const REALS: &str = "REALS";
    pub const MAGLEV: &str = "MAGLEV";
    pub const CONNTRACK: &str = "CONNTRACK";
    pub const IFACES: &str = "IFACES";
    pub const TX_PORTS: &str = "TX_PORTS";
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    pub const REAL_STATS: &str = "REAL_STATS";
    pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const REAL_CONNS: &str = "REAL_CONNS";
    pub const NAT_REPLIES: &str = "NAT_REPLIES";
    /// Bitmap of the source ports NAT replies may come from (`nat_ports`).
    pub const NAT_REPLY_PORTS: &str = "NAT_REPLY_PORTS";
    pub const SERVICE_REALS: &str = "SERVICE_REALS";
    pub const SCHED_CURSORS: &str = "SCHED_CURSORS";
    pub const REAL_OVERLOAD: &str = "REAL_OVERLOAD";
    pub const PERSIST: &str = "PERSIST";
    pub const LBLC: &str = "LBLC";
    pub const LBLCR: &str = "LBLCR";
    /// The upkeep program's work list (`upkeep::Op`), written by the reclaimer.
    pub const UPKEEP_OPS: &str = "UPKEEP_OPS";
    /// One `upkeep::Summary`: what the reclaimer's last pass found.
    pub const UPKEEP: &str = "UPKEEP";
    /// Every pinned map, in a stable order.
    pub const ALL: [&str; 21] = [
        SERVICES,
        REALS,
        MAGLEV,
        CONNTRACK,
        IFACES,
        TX_PORTS,
        SERVICE_STATS,
        REAL_STATS,
        GLOBAL_STATS,
        SETTINGS,
        REAL_CONNS,
        UPKEEP_OPS,
        UPKEEP,
        NAT_REPLIES,
        NAT_REPLY_PORTS,
        SERVICE_REALS,
        SCHED_CURSORS,
        REAL_OVERLOAD,
        PERSIST,
        LBLC,
        LBLCR,
    ];
}

/// Name of the director XDP program in the object file.
pub const PROG_DIRECTOR: &str = "xlb_director";
/// Name of the XDP program that passes everything (for veth peers in labs).
pub const PROG_PASS: &str = "xlb_pass";
/// Name of the upkeep program: never attached, run by the agent's reclaimer
/// through BPF_PROG_TEST_RUN on its work list (`upkeep`).
pub const PROG_UPKEEP: &str = "xlb_upkeep";

/// The benchmark's own XDP programs (`lb-ebpf/src/bin/bench_floor.rs`, object
/// `bench-floor`), kept out of the production object; `cargo xtask bench` loads them.
pub mod bench {
    /// XDP_DROP and nothing else: the cost of running any XDP program.
    pub const PROG_DROP: &str = "bench_drop";
    /// Swaps the Ethernet addresses and returns XDP_TX: the floor a forwarder cannot beat.
    pub const PROG_MAC_SWAP: &str = "bench_mac_swap";
    /// Sets the Ethernet addresses from `MAP_REDIRECT_TO` and redirects the
    /// frame through `MAP_TX_PORTS`: the live section's floor, the least a
    /// forwarder sending frames on to another interface does.
    pub const PROG_REDIRECT: &str = "bench_redirect";
    /// One [`Redirect`]: where `bench_redirect` sends every frame.
    pub const MAP_REDIRECT_TO: &str = "BENCH_REDIRECT_TO";
    /// A device map keyed by ifindex (the kind of xlb's `TX_PORTS`).
    pub const MAP_TX_PORTS: &str = "BENCH_TX_PORTS";
    /// Counts and drops IPv4 UDP frames to `PORT`, bare or in IPIP; passes the rest (ARP).
    pub const PROG_COUNT: &str = "bench_count";
    /// Per-CPU u64: frames `bench_count` has counted.
    pub const MAP_RX: &str = "BENCH_RX";
    /// UDP destination port of the generated traffic.
    pub const PORT: u16 = 7777;

    /// Value of `MAP_REDIRECT_TO`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Redirect {
        /// Ethernet destination written into every frame.
        pub dst: [u8; 6],
        /// Ethernet source written into every frame.
        pub src: [u8; 6],
        /// The interface the frames leave by (a key of `MAP_TX_PORTS`).
        pub ifindex: u32,
    }
}

/// Read-only globals the loader sets before the program is verified.
pub mod globals {
    /// Size of each service's Maglev table (a prime).
    pub const MAGLEV_TABLE_SIZE: &str = "MAGLEV_TABLE_SIZE";
}

/// Default sizes, used as the maps' compiled-in `max_entries`; the agent
/// overrides them from its configuration at load time.
pub mod defaults {
    pub const MAX_SERVICES: u32 = 64;
    pub const MAX_REALS: u32 = 4096;
    pub const CONNTRACK_SIZE: u32 = 1 << 20;
    /// IPVS mh's table size as Debian (and the kernel's default,
    /// `CONFIG_IP_VS_MH_TAB_INDEX=12`) builds it, so mh picks what IPVS picks.
    pub const MAGLEV_TABLE_SIZE: u32 = 4093;
    pub const MAX_IFACES: u32 = 64;
    /// Entries of `PERSIST` (persistence templates), `LBLC` and `LBLCR` (LRU maps).
    pub const AFFINITY_SIZE: u32 = 65536;
}

/// How big each sized map is: the one formula per map, used by the XDP
/// program's compiled-in sizes, the loader and adoption (which compares a
/// pinned data plane with what the loader would create).
pub mod sizes {
    use super::sched_layout::MAX_REALS_PER_SERVICE;

    /// `MAGLEV`: one table of `table_size` slots per service.
    pub const fn maglev(max_services: u32, table_size: u32) -> u32 {
        max_services * table_size
    }

    /// `SERVICE_REALS`: two real lists per service.
    pub const fn service_reals(max_services: u32) -> u32 {
        max_services * 2 * MAX_REALS_PER_SERVICE
    }

    /// A capacity for `used` entries when the config sets none: at least
    /// `floor`, else twice `used` rounded up to a power of two, so a config
    /// may grow by reload before a restart resizes, and a restart after a
    /// small change keeps the size (and the pinned maps are adopted).
    pub const fn with_headroom(used: u32, floor: u32) -> u32 {
        let want = used.saturating_mul(2);
        if want <= floor {
            floor
        } else {
            match want.checked_next_power_of_two() {
                Some(p) => p,
                None => u32::MAX,
            }
        }
    }
}

/// Address family tags used in keys (not the kernel's AF_* values, so that the
/// tag also says how many address words are meaningful).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// IP protocol numbers the data plane balances.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// IP protocol numbers of the tunnels TUN sends and `xlb decap` unwraps.
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6: u8 = 41;

/// Real-server id 0 is never allocated: a Maglev slot holding 0 means "no real".
pub const REAL_NONE: u32 = 0;

/// How a packet reaches its real server (LVS forwarding methods).
pub mod method {
    /// Direct routing: rewrite the destination MAC only.
    pub const DR: u8 = 1;
    /// Masquerading (NAT).
    pub const NAT: u8 = 2;
    /// IP-in-IP tunnelling.
    pub const TUN: u8 = 3;
}

/// `RealInfo::tun_type` for `method::TUN` (IPVS's IP_VS_CONN_F_TUNNEL_TYPE_*).
pub mod tun {
    /// IP-in-IP: IPv4 or IPv6 outer header chosen by the real's family.
    pub const IPIP: u8 = 0;
    /// Generic UDP Encapsulation (variant 1: the inner IP header follows the UDP header).
    pub const GUE: u8 = 1;
}

/// How a new connection picks its real server (ipvsadm's scheduler names).
pub mod sched {
    /// Maglev consistent hashing over a weighted lookup table.
    pub const MH: u8 = 1;
    pub const RR: u8 = 2;
    pub const WRR: u8 = 3;
    pub const LC: u8 = 4;
    pub const WLC: u8 = 5;
    pub const LBLC: u8 = 6;
    pub const LBLCR: u8 = 7;
    pub const DH: u8 = 8;
    pub const SH: u8 = 9;
    pub const SED: u8 = 10;
    pub const NQ: u8 = 11;
    pub const FO: u8 = 12;
    pub const OVF: u8 = 13;
    /// Power of two choices (IPVS's `ip_vs_twos`, Linux 6.2+).
    pub const TWOS: u8 = 14;
}

/// `ServiceInfo::flags`: the service forwards; when clear its packets go to the stack.
pub const SERVICE_F_ACTIVE: u32 = 1;
/// `RealInfo::flags`: the slot holds a configured real server.
pub const REAL_F_PRESENT: u32 = 1;
/// `RealInfo::flags`: its next hop is known, so it can take packets. Flows to a
/// real without it are rescheduled.
pub const REAL_F_REACHABLE: u32 = 2;
/// `RealInfo::flags`: the real left its service but its flows continue
/// (nodest policy `keep`): it takes no new flows and is in none of the
/// service's tables; the agent frees the slot once it has no connections.
pub const REAL_F_DRAINING: u32 = 4;

/// An IPv4 or IPv6 address in network byte order; IPv4 uses `addr[0]` only and
/// leaves the other words zero.
pub type Addr = [u32; 4];

/// `SERVICES` flag: sh/mh hash the source port too (`sh-port`, `mh-port`).
pub const SERVICE_F_HASH_PORT: u32 = 2;
/// `SERVICES` flag: sh/mh try the next real when the hashed one is unusable (`*-fallback`).
pub const SERVICE_F_FALLBACK: u32 = 4;
/// `SERVICES` flag: clients keep their real for `persist_timeout_s` (IPVS persistent service).
pub const SERVICE_F_PERSISTENT: u32 = 8;
/// `SERVICES` flag: the live copy of the service's real list and scheduler
/// table is the second one (double buffering, see [`sched_layout`]).
pub const SERVICE_F_TABLE_B: u32 = 16;

/// Where a service's scheduling state sits in the shared arrays.
///
/// Each service owns `MAX_REALS_PER_SERVICE` × 2 slots of `SERVICE_REALS`
/// (its reals in configured order, ended by `REAL_NONE`) and one
/// `MAGLEV_TABLE_SIZE` slice of `MAGLEV`. Maglev uses the whole slice; the
/// other table schedulers (rr/wrr sequence, dh/sh buckets) use its two halves
/// as two buffers. `SERVICE_F_TABLE_B` names the live buffer, so the agent
/// writes the idle one completely and then flips the flag with one update of
/// the service entry.
pub mod sched_layout {
    /// Most reals one service may have (bounds every scheduling loop).
    pub const MAX_REALS_PER_SERVICE: u32 = 256;
    /// Buckets of a dh or sh table (IPVS's `IP_VS_DH_TAB_SIZE` / `IP_VS_SH_TAB_SIZE`).
    pub const HASH_BUCKETS: u32 = 256;

    /// First `SERVICE_REALS` slot of a service's live (or idle) real list.
    #[inline(always)]
    pub fn reals_base(service_id: u32, table_b: bool) -> u32 {
        (service_id * 2 + table_b as u32) * MAX_REALS_PER_SERVICE
    }

    /// First `MAGLEV` slot of a service's rr/wrr/dh/sh buffer.
    #[inline(always)]
    pub fn table_base(service_id: u32, table_size: u32, table_b: bool) -> u32 {
        service_id * table_size + if table_b { table_size / 2 } else { 0 }
    }
}

/// IPVS defaults the schedulers keep (sysctls in IPVS, constants here).
pub mod sched_time {
    /// An lblc/lblcr entry unused this long is forgotten, and an lblcr set not
    /// changed this long drops its most loaded real (`lblc_expiration`,
    /// `lblcr_expiration`: 24 hours).
    pub const LOCALITY_EXPIRE_NS: u64 = 24 * 3600 * 1_000_000_000;
}

/// `ip` as the maps hold it.
pub fn addr_words(ip: core::net::IpAddr) -> Addr {
    match ip {
        core::net::IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        core::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            core::array::from_fn(|i| {
                u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// The address a map holds as `words` with family tag `family`.
pub fn addr_ip(words: Addr, family: u8) -> core::net::IpAddr {
    let b: [[u8; 4]; 4] = words.map(u32::to_ne_bytes);
    if family == FAMILY_V4 {
        core::net::Ipv4Addr::from(b[0]).into()
    } else {
        core::net::Ipv6Addr::from(*b.as_flattened().first_chunk::<16>().expect("16 bytes")).into()
    }
}

/// The family tag (`FAMILY_V4` / `FAMILY_V6`) of `ip`.
pub fn family_of(ip: core::net::IpAddr) -> u8 {
    if ip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

/// Key of `SERVICES`: a virtual service (VIP, port, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: Addr,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Value of `SERVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Index into `MAGLEV` (times the table size) and `SERVICE_STATS`.
    pub id: u32,
    /// `SERVICE_F_*`.
    pub flags: u32,
    /// `sched::*`.
    pub sched: u8,
    /// Default `method::*` for the service's reals.
    pub method: u8,
    pub _pad: [u8; 2],
    /// Used length of the service's slice of the scheduler table (wrr
    /// sequence); table-hashing schedulers use the whole table.
    pub table_len: u32,
    /// Persistence timeout in seconds (with `SERVICE_F_PERSISTENT`).
    pub persist_timeout_s: u32,
    /// Mask applied to the client address for persistence (IPv4 in word 0).
    pub persist_mask: Addr,
}

/// Value of `REALS`, indexed by real id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealInfo {
    pub addr: Addr,
    /// Network byte order.
    pub port: u16,
    pub family: u8,
    /// `method::*`.
    pub method: u8,
    /// Next-hop MAC address of the real server (DR).
    pub mac: [u8; 6],
    /// `tun::*`, for `method::TUN`.
    pub tun_type: u8,
    pub _pad: u8,
    /// Interface the real server is reached through.
    pub ifindex: u32,
    pub weight: u32,
    /// The service this real belongs to (reals are per service, as in IPVS).
    pub service_id: u32,
    /// `REAL_F_*`.
    pub flags: u32,
    /// GUE destination port, network byte order.
    pub tun_port: u16,
    pub _pad2: [u8; 2],
    /// Connection thresholds (IPVS `uthreshold` / `lthreshold`); 0 = none.
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// MAC address of the interface `ifindex`, the frame's new source: kept
    /// with the real (rewritten when it changes, as the next hop is) so
    /// forwarding needs no per-interface lookup.
    pub src_mac: [u8; 6],
    /// MTU of the interface `ifindex` (for "fragmentation needed" when
    /// encapsulating).
    pub mtu: u16,
}

/// Key of `CONNTRACK`: a flow's 5-tuple as the client sent it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

impl FlowKey {
    /// The tuple a NAT real server answers this client flow with when the
    /// flow was sent to `real`: what `NAT_REPLIES` is keyed by. The data
    /// plane writes it and the agent's expiry deletes it, so both use this.
    #[inline(always)]
    pub fn nat_reply(&self, real: &RealInfo) -> FlowKey {
        FlowKey {
            src: real.addr,
            dst: self.src,
            sport: real.port,
            dport: self.sport,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }
}

/// Value of `CONNTRACK`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub real_id: u32,
    pub service_id: u32,
    /// `bpf_ktime_get_ns()` when the flow was first seen.
    pub created_ns: u64,
    /// `bpf_ktime_get_ns()` of the last packet, in either direction; the
    /// agent expires the flow `conn::timeout_s(state)` after it.
    pub seen_ns: u64,
    /// `conn::*`; changed with compare-and-swap so that exactly one CPU
    /// moves the real's counts on a transition (64-bit: the BPF target has
    /// no 32-bit atomics).
    pub state: u64,
}

pub mod conn;
pub mod upkeep;

/// Value of `IFACES`, keyed by ifindex: what the data plane needs to send out of an interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    pub mac: [u8; 6],
    /// The interface's MTU (for "fragmentation needed" when encapsulating).
    pub mtu: u16,
}

/// Value of `SETTINGS` (one entry): data-plane-wide settings the agent may
/// change at run time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Outer source address of IPv4 tunnels (word 0).
    pub tun_src_v4: Addr,
    /// Outer source address of IPv6 tunnels.
    pub tun_src_v6: Addr,
    /// Idle timeouts in seconds (IPVS `--set tcp tcpfin udp`); never 0,
    /// which would expire every flow in those states at once.
    pub tcp_timeout_s: u32,
    pub tcp_fin_timeout_s: u32,
    pub udp_timeout_s: u32,
    /// `SETTINGS_F_*`.
    pub flags: u32,
    /// [`MAP_LAYOUT_VERSION`] of the agent that created the maps: a restarted
    /// agent adopts pinned maps only when it matches its own.
    pub layout_version: u32,
}

impl Settings {
    /// IPVS's defaults (timeouts, `conn_reuse_mode` 1) and nothing else
    /// set: what a loader writes before the program runs (the agent then
    /// writes its config's).
    pub const fn ipvs_defaults() -> Settings {
        Settings {
            tun_src_v4: [0; 4],
            tun_src_v6: [0; 4],
            tcp_timeout_s: conn::DEFAULT_TCP_S,
            tcp_fin_timeout_s: conn::DEFAULT_TCP_FIN_S,
            udp_timeout_s: conn::DEFAULT_UDP_S,
            flags: SETTINGS_F_CONN_REUSE,
            layout_version: 0,
        }
    }
}

/// `Settings` flag: some service uses NAT, so traffic that is for no
/// service may be a real server's reply (a `NAT_REPLIES` lookup); without
/// it such traffic passes at once.
pub const SETTINGS_F_NAT: u32 = 1;
/// `Settings` flag: nodest policy `expire` (IPVS `expire_nodest_conn`): a
/// packet of a flow whose real no longer serves its service is dropped and
/// the flow deleted; without it the flow is scheduled anew (`reschedule`;
/// under `keep` a removed real stays as `REAL_F_DRAINING` until its flows end).
pub const SETTINGS_F_NODEST_EXPIRE: u32 = 2;
/// `Settings` flag: IPVS's `conn_reuse_mode` bit 1 (any nonzero mode): a
/// SYN on the ports of a flow in TIME_WAIT or CLOSE (or a pickup) opens a
/// new connection, scheduled and counted, instead of reusing the flow
/// (`conn::reused`).
pub const SETTINGS_F_CONN_REUSE: u32 = 4;
/// `Settings` flag: `conn_reuse_mode` bit 2: also for a FIN_WAIT flow whose
/// replies the director does not see (DR, TUN), the last state it sees
/// there after a close.
pub const SETTINGS_F_CONN_REUSE_FIN_WAIT: u32 = 8;

/// The NAT reply port bitmap (`map_names::NAT_REPLY_PORTS`): bit `port % 64`
/// of word `port / 64`, for a port as it sits in the packet (network order).
pub mod nat_ports {
    /// Words of 64 bits: one bit per port.
    pub const WORDS: u32 = 65536 / 64;

    /// The word and the bit of `port` (network order, as in `FlowKey`).
    #[inline(always)]
    pub const fn bit(port: u16) -> (u32, u64) {
        ((port >> 6) as u32, 1 << (port & 63))
    }
}

/// Version of the maps' layout and meaning, stamped into `SETTINGS`. Bump it
/// whenever a map's key or value changes in meaning without changing size
/// (sizes are compared separately), so a new agent never adopts maps it
/// would misread.
pub const MAP_LAYOUT_VERSION: u32 = 6;

/// Connection counts of one real server, as ipvsadm's ActiveConn / InActConn.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    // 64-bit because the BPF target has no 32-bit atomics.
    pub active: u64,
    pub inactive: u64,
}

/// Value of `REAL_CONNS`: one real's connections, kept by atomic adds in
/// the kernel only (the director as flows open, move and close; the upkeep
/// program as the reclaimer expires flows and finds evicted ones), so a
/// scheduler reads one entry per real.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealConns {
    /// Live connections (ActiveConn, InActConn).
    pub live: ConnCounts,
    /// How many ever left each class (closed, expired, moved to the other
    /// class): only grows. The reclaimer tells a flow that ended during its
    /// walk from one the LRU evicted by it; in the same cache line as
    /// `live`, so its atomic add costs next to nothing.
    pub left: ConnCounts,
}

/// The decapsulation program `xlb decap` attaches on real servers (a separate
/// object, so its few small maps are all a real server loads).
pub mod decap {
    /// Name of the XDP program in the decap object.
    pub const PROG: &str = "xlb_decap";
    /// `DecapVip` → 1: inner destinations that are decapsulated.
    pub const VIPS: &str = "DECAP_VIPS";
    /// Read-only global: GUE UDP port in network byte order; 0 leaves UDP alone.
    pub const GUE_PORT: &str = "DECAP_GUE_PORT";
    /// Capacity of `DECAP_VIPS`.
    pub const MAX_VIPS: u32 = 256;
}

/// Key of the decap program's `DECAP_VIPS`: an address whose tunnelled packets are unwrapped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecapVip {
    pub addr: Addr,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Key of `PERSIST`, `LBLC` and `LBLCR`: an address seen by one service (the
/// masked client address for persistence, the destination address for lblc/lblcr).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceAddr {
    pub service_id: u32,
    pub addr: Addr,
}

/// Value of `PERSIST` and `LBLC`: the real an address is tied to, and when
/// that tie was last used (`bpf_ktime_get_ns()`, CLOCK_MONOTONIC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Affinity {
    pub real_id: u32,
    pub _pad: u32,
    pub last_ns: u64,
}

/// Value of `LBLCR`: the set of reals serving one destination address, in
/// IPVS's order (the most recently added first).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSet {
    /// Last time the entry was used.
    pub last_ns: u64,
    /// Last time a real was added to or dropped from the set.
    pub modified_ns: u64,
    pub len: u32,
    pub _pad: u32,
    pub reals: [u32; sched_layout::MAX_REALS_PER_SERVICE as usize],
}

impl Default for ReplicaSet {
    fn default() -> ReplicaSet {
        ReplicaSet {
            last_ns: 0,
            modified_ns: 0,
            len: 0,
            _pad: 0,
            reals: [REAL_NONE; sched_layout::MAX_REALS_PER_SERVICE as usize],
        }
    }
}

/// Per-CPU counters of one service or one real server.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_conns: u64,
}

/// Per-CPU counters of what the program did with every packet it saw.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters {
    /// Packets handed to the stack (not ours, inactive service, or not parseable).
    pub pass: u64,
    /// Packets dropped (a service with no usable real server).
    pub drop: u64,
    /// Internal failures (map updates, missing interface data).
    pub error: u64,
    /// Packets forwarded out of the interface they came in on.
    pub tx: u64,
    /// Packets forwarded out of another interface.
    pub redirect: u64,
    /// Of `pass`: frames too short or with bad headers.
    pub malformed: u64,
    /// Of `pass`: IP fragments, which the stack reassembles.
    pub fragments: u64,
    /// Of `tx`: ICMP "fragmentation needed" / ICMPv6 "packet too big" sent
    /// back to the client because the tunnelled packet would exceed the egress MTU.
    pub too_big: u64,
    /// Of `drop`: packets of flows whose real left the service, dropped
    /// (and the flow deleted) under `SETTINGS_F_NODEST_EXPIRE`.
    pub nodest_expired: u64,
    /// TCP flows created from a packet that is not a SYN (`conn::PICKUP`).
    pub pickups: u64,
    /// SYNs on the ports of a closed flow that opened a new connection
    /// (`conn_reuse_mode`).
    pub reused: u64,
    /// Flows found idle past their timeout on lookup, handled as gone.
    pub stale: u64,
}

/// Summing the per-CPU copies of a counter set.
impl core::ops::Add for Counters {
    type Output = Counters;
    fn add(self, o: Counters) -> Counters {
        Counters {
            packets: self.packets + o.packets,
            bytes: self.bytes + o.bytes,
            new_conns: self.new_conns + o.new_conns,
        }
    }
}

impl core::ops::Add for GlobalCounters {
    type Output = GlobalCounters;
    fn add(self, o: GlobalCounters) -> GlobalCounters {
        GlobalCounters {
            pass: self.pass + o.pass,
            drop: self.drop + o.drop,
            error: self.error + o.error,
            tx: self.tx + o.tx,
            redirect: self.redirect + o.redirect,
            malformed: self.malformed + o.malformed,
            fragments: self.fragments + o.fragments,
            too_big: self.too_big + o.too_big,
            nodest_expired: self.nodest_expired + o.nodest_expired,
            pickups: self.pickups + o.pickups,
            reused: self.reused + o.reused,
            stale: self.stale + o.stale,
        }
    }
}

macro_rules! assert_layout {
    ($t:ty, $size:expr, $align:expr) => {
        const _: () = assert!(size_of::<$t>() == $size && align_of::<$t>() == $align);
    };
}
assert_layout!(ServiceKey, 20, 4);
assert_layout!(ServiceInfo, 36, 4);
assert_layout!(RealInfo, 64, 4);
assert_layout!(FlowKey, 40, 4);
assert_layout!(FlowState, 32, 8);
assert_layout!(IfaceInfo, 8, 2);
assert_layout!(Settings, 52, 4);
assert_layout!(ConnCounts, 16, 8);
assert_layout!(RealConns, 32, 8);
assert_layout!(Counters, 24, 8);
assert_layout!(GlobalCounters, 96, 8);
assert_layout!(DecapVip, 20, 4);
assert_layout!(ServiceAddr, 20, 4);
assert_layout!(Affinity, 16, 8);
assert_layout!(ReplicaSet, 1048, 8);
assert_layout!(bench::Redirect, 16, 4);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C), Copy, with explicit padding, so every byte is initialised.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceInfo {}
    unsafe impl aya::Pod for RealInfo {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for IfaceInfo {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for ConnCounts {}
    unsafe impl aya::Pod for RealConns {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for GlobalCounters {}
    unsafe impl aya::Pod for DecapVip {}
    unsafe impl aya::Pod for ServiceAddr {}
    unsafe impl aya::Pod for Affinity {}
    unsafe impl aya::Pod for ReplicaSet {}
    unsafe impl aya::Pod for bench::Redirect {}
}

/// The hashes the table schedulers use, after IPVS: the data plane and the
/// agent's reference model share them, so tests can predict every choice.
pub mod sched_hash {
    use super::{
        Addr, FAMILY_V6,
        hsiphash::{Key, hsiphash_u32},
    };

    /// IPVS's address fold, in host order: IPv4 as is, IPv6 the XOR of its words.
    #[inline(always)]
    pub fn fold(family: u8, addr: &Addr) -> u32 {
        let w = if family == FAMILY_V6 {
            addr[0] ^ addr[1] ^ addr[2] ^ addr[3]
        } else {
            addr[0]
        };
        u32::from_be(w)
    }

    /// dh: bucket of a destination address: `hash_32(addr, 8)`, the top 8
    /// bits of addr × GOLDEN_RATIO_32, as IPVS's `ip_vs_dh_hashkey` (kernels
    /// before 3.x took the low bits of addr × 2654435761; the guest test
    /// against 6.1's IPVS pins this one).
    #[inline(always)]
    pub fn dh_bucket(fold: u32) -> u32 {
        fold.wrapping_mul(0x61c8_8647) >> 24
    }

    /// sh: bucket of a source address (and port with `sh-port`), moved on by
    /// `offset` for the fallback walk, as IPVS's `ip_vs_sh_hashkey`.
    #[inline(always)]
    pub fn sh_bucket(fold: u32, port: u16, offset: u32) -> u32 {
        // hash_32(v, 8): the top 8 bits of v × GOLDEN_RATIO_32.
        let h = (port as u32).wrapping_add(fold).wrapping_mul(0x61c8_8647) >> 24;
        offset.wrapping_add(h) & (super::sched_layout::HASH_BUCKETS - 1)
    }

    /// IPVS mh's two constant keys (ip_vs_mh.c `generate_hash_secret`):
    /// the first places clients and each real's first slot, the second
    /// gives each real's stride through the table.
    pub const MH_KEY1: Key = Key(2_654_435_761, 2_654_435_761);
    pub const MH_KEY2: Key = Key(2_654_446_892, 2_654_446_892);

    /// mh: IPVS's `ip_vs_mh_hashkey`, hsiphash of offset + port + address
    /// fold. A client's slot is `mh(fold, port, 0) % size` (port 0 unless
    /// `mh-port`); the fallback walk probes offsets after it. A real's first
    /// slot is `mh(its fold, its port, 0) % size`.
    #[inline(always)]
    pub fn mh(fold: u32, port: u16, offset: u32) -> u32 {
        hsiphash_u32(MH_KEY1, offset.wrapping_add(port as u32).wrapping_add(fold))
    }

    /// mh: the hash behind a real's stride, `mh_skip(..) % (size − 1) + 1`.
    #[inline(always)]
    pub fn mh_skip(fold: u32, port: u16) -> u32 {
        hsiphash_u32(MH_KEY2, (port as u32).wrapping_add(fold))
    }
}

/// Hash of a flow's 5-tuple, used to pick its Maglev slot. Kernel and tests
/// share it so a fixture can predict which real a new flow lands on.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    // murmur3's 32-bit mixing over the words of the tuple: cheap, branch-free
    // and unrolled, so the verifier sees a straight line.
    let ports = (key.sport as u32) << 16 | key.dport as u32;
    let tail = (key.proto as u32) << 8 | key.family as u32;
    let words = [
        key.src[0], key.src[1], key.src[2], key.src[3], key.dst[0], key.dst[1], key.dst[2],
        key.dst[3], ports, tail,
    ];
    let mut h: u32 = 0x9747_b28c;
    let mut i = 0;
    while i < words.len() {
        let mut k = words[i].wrapping_mul(0xcc9e_2d51);
        k = k.rotate_left(15).wrapping_mul(0x1b87_3593);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        i += 1;
    }
    h ^= 40;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_map_words() {
        use core::net::IpAddr;
        for text in ["10.1.2.3", "fd00:250::11", "::ffff:10.0.0.1"] {
            let ip: IpAddr = text.parse().unwrap();
            let words = addr_words(ip);
            assert_eq!(addr_ip(words, family_of(ip)), ip, "{text}");
        }
        // IPv4 uses the first word only, bytes in packet order.
        let v4 = addr_words("10.1.2.3".parse().unwrap());
        assert_eq!(
            (v4[0].to_ne_bytes(), &v4[1..]),
            ([10, 1, 2, 3], &[0, 0, 0][..])
        );
    }

    #[test]
    fn a_nat_reply_swaps_the_client_and_the_real() {
        let flow = FlowKey {
            src: [1, 0, 0, 0],
            dst: [2, 0, 0, 0],
            sport: 1000,
            dport: 80,
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let real = RealInfo {
            addr: [3, 0, 0, 0],
            port: 8080,
            ..RealInfo::default()
        };
        let reply = flow.nat_reply(&real);
        assert_eq!((reply.src, reply.sport), ([3, 0, 0, 0], 8080));
        assert_eq!((reply.dst, reply.dport), ([1, 0, 0, 0], 1000));
        assert_eq!((reply.proto, reply.family), (PROTO_TCP, FAMILY_V4));
    }

    #[test]
    fn flow_hash_depends_on_every_field() {
        let base = FlowKey {
            src: [0x0a00_0001, 0, 0, 0],
            dst: [0x0a00_0064, 0, 0, 0],
            sport: 1234,
            dport: 80,
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let h = flow_hash(&base);
        let variants = [
            FlowKey {
                sport: 1235,
                ..base
            },
            FlowKey { dport: 81, ..base },
            FlowKey {
                proto: PROTO_UDP,
                ..base
            },
            FlowKey {
                src: [0x0a00_0002, 0, 0, 0],
                ..base
            },
            FlowKey {
                dst: [0x0a00_0064, 0, 0, 1],
                ..base
            },
        ];
        for v in variants {
            assert_ne!(flow_hash(&v), h, "{v:?}");
        }
    }
}
