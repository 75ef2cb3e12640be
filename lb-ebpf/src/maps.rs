//! Every map the director program uses. Sizes here are defaults: the agent
//! sets the real `max_entries` from its configuration when it loads the object.

use aya_ebpf::{
    Global,
    bindings::BPF_F_MMAPABLE,
    btf_maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use lb_common::{
    Affinity, Counters, FlowKey, FlowState, GlobalCounters, IfaceInfo, RealConns, RealInfo,
    ReplicaSet, ServiceAddr, ServiceInfo, ServiceKey, Settings, defaults, nat_ports, sizes, upkeep,
};

const MAX_SERVICES: usize = defaults::MAX_SERVICES as usize;
const MAX_REALS: usize = defaults::MAX_REALS as usize;
const MAX_IFACES: usize = defaults::MAX_IFACES as usize;

/// Size of one service's Maglev table; set by the loader (read-only after load,
/// so the verifier treats it as a constant).
#[unsafe(no_mangle)]
pub static MAGLEV_TABLE_SIZE: Global<u32> = Global::new(defaults::MAGLEV_TABLE_SIZE);

/// (VIP, port, protocol) → service.
#[btf_map]
pub static SERVICES: HashMap<ServiceKey, ServiceInfo, MAX_SERVICES> = HashMap::new();

/// Real id → real server. Id 0 is never used.
#[btf_map]
pub static REALS: Array<RealInfo, MAX_REALS> = Array::new();

/// Maglev tables of all services back to back: slot `id * size + hash % size` holds a real id.
/// Mappable, so the agent writes millions of slots with stores instead of syscalls.
#[btf_map]
pub static MAGLEV: Array<
    u32,
    { sizes::maglev(defaults::MAX_SERVICES, defaults::MAGLEV_TABLE_SIZE) as usize },
    { BPF_F_MMAPABLE as usize },
> = Array::new();

/// 5-tuple → the real server the flow was sent to. LRU, so idle flows age out under pressure.
#[btf_map]
pub static CONNTRACK: LruHashMap<FlowKey, FlowState, { defaults::CONNTRACK_SIZE as usize }> =
    LruHashMap::new();

/// Ifindex → the interface's MAC and MTU, as the agent last wrote them. The
/// director reads neither from here: each real carries its egress
/// interface's (`RealInfo::src_mac`, `mtu`), one lookup fewer per packet.
#[btf_map]
pub static IFACES: HashMap<u32, IfaceInfo, MAX_IFACES> = HashMap::new();

/// Ifindex → device, for XDP_REDIRECT to an interface other than the ingress one.
#[btf_map]
pub static TX_PORTS: DevMapHash<MAX_IFACES> = DevMapHash::new();

#[btf_map]
pub static SERVICE_STATS: PerCpuArray<Counters, MAX_SERVICES> = PerCpuArray::new();

#[btf_map]
pub static REAL_STATS: PerCpuArray<Counters, MAX_REALS> = PerCpuArray::new();

#[btf_map]
pub static GLOBAL_STATS: PerCpuArray<GlobalCounters, 1> = PerCpuArray::new();

/// Data-plane-wide settings (tunnel sources, timeouts); one entry, written by the agent.
#[btf_map]
pub static SETTINGS: Array<Settings, 1> = Array::new();

/// Real id → live connections, kept by atomic adds here and in the upkeep
/// program (the agent writes an entry only when it hands out the real id).
#[btf_map]
pub static REAL_CONNS: Array<RealConns, MAX_REALS> = Array::new();

/// NAT replies: the 5-tuple a real server answers with → the client's flow
/// (its `CONNTRACK` key), so the reply can be rewritten back to the VIP.
#[btf_map]
pub static NAT_REPLIES: LruHashMap<FlowKey, FlowKey, { defaults::CONNTRACK_SIZE as usize }> =
    LruHashMap::new();
/// The source ports of every NAT real that has had a flow since the maps
/// were made (`nat_ports::bit`): traffic for no service from any other
/// port cannot be a NAT reply and passes without the `NAT_REPLIES` lookup.
/// Set by the director when it records a flow's reply entry; never
/// cleared (a stale bit only costs that lookup), pinned with `NAT_REPLIES`.
#[btf_map]
pub static NAT_REPLY_PORTS: Array<u64, { nat_ports::WORDS as usize }> = Array::new();
/// Each service's reals in configured order (IPVS's list order), two buffers
/// per service, ended by `REAL_NONE`: slot `(id × 2 + buffer) × 256 + i`.
#[btf_map]
pub static SERVICE_REALS: Array<u32, { sizes::service_reals(defaults::MAX_SERVICES) as usize }> =
    Array::new();

/// Service id → position in its rr/wrr sequence. One counter shared by all
/// CPUs (atomic adds), so the sequence holds across CPUs.
#[btf_map]
pub static SCHED_CURSORS: Array<u64, MAX_SERVICES> = Array::new();

/// Real id → 1 while the real is over its connection thresholds (IPVS's
/// IP_VS_DEST_F_OVERLOAD, which needs memory between the two thresholds).
#[btf_map]
pub static REAL_OVERLOAD: Array<u32, MAX_REALS> = Array::new();

/// Persistence templates: (service, masked client address) → real, last use.
#[btf_map]
pub static PERSIST: LruHashMap<ServiceAddr, Affinity, { defaults::AFFINITY_SIZE as usize }> =
    LruHashMap::new();

/// lblc: (service, destination address) → real, last use.
#[btf_map]
pub static LBLC: LruHashMap<ServiceAddr, Affinity, { defaults::AFFINITY_SIZE as usize }> =
    LruHashMap::new();

/// lblcr: (service, destination address) → its set of reals.
#[btf_map]
pub static LBLCR: LruHashMap<ServiceAddr, ReplicaSet, { defaults::AFFINITY_SIZE as usize }> =
    LruHashMap::new();

/// The upkeep program's work list, written by the agent's reclaimer.
#[btf_map]
pub static UPKEEP_OPS: Array<upkeep::Op, { upkeep::MAX_OPS as usize }> = Array::new();

/// What the reclaimer's last pass found (one entry, written by the agent).
#[btf_map]
pub static UPKEEP: Array<upkeep::Summary, 1> = Array::new();

/// Where a new lblcr set is built (too large for the 512-byte stack).
#[btf_map]
pub static LBLCR_SCRATCH: PerCpuArray<ReplicaSet, 1> = PerCpuArray::new();
