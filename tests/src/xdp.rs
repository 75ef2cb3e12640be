//! xlb's XDP programs driven packet by packet through BPF_PROG_TEST_RUN:
//! load an object, program its maps, run a frame, get the action and the
//! frame that came out. Nothing is attached and nothing is sent.
//!
//! [`tun_output`] gives xlb's TUN encapsulation of client frames in one call,
//! for interop tests that feed it to a kernel tunnel device.

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{
    DecapVip, GlobalCounters, PROG_DIRECTOR, REAL_F_PRESENT, REAL_F_REACHABLE, RealInfo,
    SERVICE_F_ACTIVE, ServiceInfo, ServiceKey, Settings, addr_words, decap, family_of, globals,
    map_names, method, sched, tun,
};
use std::{collections::BTreeMap, net::IpAddr};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// `lo`: present in every namespace, so a fine ingress device for test runs.
pub const LO: u32 = 1;
/// Maglev table size of the loaded director (small: fixtures fill it whole).
pub const TABLE: u32 = 13;

/// The `struct xdp_md` BPF_PROG_TEST_RUN takes as context for a frame of
/// `len` bytes arriving on `ingress`: data, data_end, data_meta,
/// ingress_ifindex, rx_queue_index, egress_ifindex.
pub fn xdp_md(len: usize, ingress: u32) -> Vec<u8> {
    [0, len as u32, 0, ingress, 0, 0]
        .iter()
        .flat_map(|w: &u32| w.to_ne_bytes())
        .collect()
}

/// Runs `prog` once on `frame` arriving on `ingress`: the XDP action and
/// the frame as the program left it.
pub fn test_run(prog: &Xdp, frame: &[u8], ingress: u32) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 512];
    let ctx = xdp_md(frame.len(), ingress);
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

/// How a tunnel real is reached.
#[derive(Clone, Copy, Debug)]
pub struct TunReal {
    pub addr: IpAddr,
    /// Next-hop MAC (the real's or its gateway's).
    pub mac: [u8; 6],
    pub ifindex: u32,
    /// GUE destination port; `None`: IPIP.
    pub gue_port: Option<u16>,
}

/// The director object, loaded with small maps.
pub struct Director {
    pub ebpf: Ebpf,
    /// Ifindex → the interface's MAC and MTU, which each real reached
    /// through it carries (as the agent writes them).
    ifaces: BTreeMap<u32, ([u8; 6], u16)>,
}

impl Director {
    pub fn load(object: &[u8]) -> Result<Director> {
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::MAGLEV_TABLE_SIZE, &TABLE, true)
            .map_max_entries(map_names::MAGLEV, TABLE * lb_common::defaults::MAX_SERVICES)
            .map_max_entries(map_names::CONNTRACK, 4096)
            .load(object)
            .context("loading the director object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_DIRECTOR)
            .context("no director program")?
            .try_into()?;
        prog.load().context("the verifier refused the director")?;
        let mut m: Array<_, Settings> =
            Array::try_from(ebpf.map_mut(map_names::SETTINGS).context("SETTINGS")?)?;
        m.set(0, Settings::ipvs_defaults(), 0)?;
        Ok(Director {
            ebpf,
            ifaces: BTreeMap::new(),
        })
    }

    /// Interface `ifindex` has `mac` and `mtu`: reals written after this
    /// and reached through it carry them.
    pub fn iface(&mut self, ifindex: u32, mac: [u8; 6], mtu: u16) {
        self.ifaces.insert(ifindex, (mac, mtu));
    }

    /// Sets the outer sources of tunnels (an unset family stays zero).
    pub fn tunnel_sources(&mut self, sources: &[IpAddr]) -> Result<()> {
        let mut s = Settings::ipvs_defaults();
        for a in sources {
            match a {
                IpAddr::V4(_) => s.tun_src_v4 = addr_words(*a),
                IpAddr::V6(_) => s.tun_src_v6 = addr_words(*a),
            }
        }
        let mut m: Array<_, Settings> =
            Array::try_from(self.ebpf.map_mut(map_names::SETTINGS).context("SETTINGS")?)?;
        m.set(0, s, 0)?;
        Ok(())
    }

    /// An active Maglev service `id` on `vip`:`port`/`proto` forwarding with `method`.
    pub fn service(
        &mut self,
        vip: IpAddr,
        port: u16,
        proto: u8,
        id: u32,
        method: u8,
    ) -> Result<()> {
        let key = ServiceKey {
            addr: addr_words(vip),
            port: port.to_be(),
            proto,
            family: family_of(vip),
        };
        let info = ServiceInfo {
            id,
            flags: SERVICE_F_ACTIVE,
            sched: sched::MH,
            method,
            ..ServiceInfo::default()
        };
        let mut m: HashMap<_, ServiceKey, ServiceInfo> =
            HashMap::try_from(self.ebpf.map_mut(map_names::SERVICES).context("SERVICES")?)?;
        m.insert(key, info, 0)?;
        Ok(())
    }

    /// Real `id` of service `service_id` as a tunnel endpoint, and the
    /// service's whole Maglev table pointing at it.
    pub fn tun_real(&mut self, id: u32, service_id: u32, real: &TunReal, port: u16) -> Result<()> {
        let &(src_mac, mtu) = self
            .ifaces
            .get(&real.ifindex)
            .with_context(|| format!("no interface {} set", real.ifindex))?;
        let info = RealInfo {
            addr: addr_words(real.addr),
            port: port.to_be(),
            family: family_of(real.addr),
            method: method::TUN,
            mac: real.mac,
            tun_type: if real.gue_port.is_some() {
                tun::GUE
            } else {
                tun::IPIP
            },
            ifindex: real.ifindex,
            src_mac,
            mtu,
            weight: 1,
            service_id,
            flags: REAL_F_PRESENT | REAL_F_REACHABLE,
            tun_port: real.gue_port.unwrap_or(0).to_be(),
            ..RealInfo::default()
        };
        let mut m: Array<_, RealInfo> =
            Array::try_from(self.ebpf.map_mut(map_names::REALS).context("REALS")?)?;
        m.set(id, info, 0)?;
        let mut t: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut(map_names::MAGLEV).context("MAGLEV")?)?;
        for slot in 0..TABLE {
            t.set(service_id * TABLE + slot, id, 0)?;
        }
        Ok(())
    }

    pub fn run(&self, frame: &[u8], ingress: u32) -> Result<(u32, Vec<u8>)> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_DIRECTOR)
            .context("no director program")?
            .try_into()?;
        test_run(prog, frame, ingress)
    }

    /// The global counters summed over CPUs.
    pub fn global(&self) -> Result<GlobalCounters> {
        let m: PerCpuArray<&MapData, GlobalCounters> =
            PerCpuArray::try_from(self.ebpf.map(map_names::GLOBAL_STATS).context("stats")?)?;
        Ok(m.get(&0, 0)?
            .iter()
            .fold(GlobalCounters::default(), |a, c| a + *c))
    }
}

/// xlb's TUN output for client `frames` (Ethernet, to `vip`:`port`/`proto`)
/// arriving on `lo`, towards `real` from `source` with egress MTU `mtu`:
/// each frame's XDP action and the frame that came out.
pub fn tun_output(
    object: &[u8],
    (vip, port, proto): (IpAddr, u16, u8),
    real: &TunReal,
    source: IpAddr,
    (director_mac, mtu): ([u8; 6], u16),
    frames: &[Vec<u8>],
) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut d = Director::load(object)?;
    d.iface(real.ifindex, director_mac, mtu);
    d.tunnel_sources(&[source])?;
    d.service(vip, port, proto, 0, method::TUN)?;
    d.tun_real(1, 0, real, port)?;
    frames.iter().map(|f| d.run(f, LO)).collect()
}

/// The `xlb decap` object, loaded with its GUE port.
pub struct Decap {
    pub ebpf: Ebpf,
}

impl Decap {
    pub fn load(object: &[u8], gue_port: Option<u16>) -> Result<Decap> {
        let port = gue_port.unwrap_or(0).to_be();
        let mut ebpf = EbpfLoader::new()
            .override_global(decap::GUE_PORT, &port, true)
            .load(object)
            .context("loading the decap object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(decap::PROG)
            .context("no decap program")?
            .try_into()?;
        prog.load()
            .context("the verifier refused the decap program")?;
        Ok(Decap { ebpf })
    }

    pub fn vip(&mut self, addr: IpAddr) -> Result<()> {
        let mut m: HashMap<_, DecapVip, u8> =
            HashMap::try_from(self.ebpf.map_mut(decap::VIPS).context("DECAP_VIPS")?)?;
        let key = DecapVip {
            addr: addr_words(addr),
            family: family_of(addr),
            _pad: [0; 3],
        };
        m.insert(key, 1, 0)?;
        Ok(())
    }

    pub fn run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let prog: &Xdp = self
            .ebpf
            .program(decap::PROG)
            .context("no decap program")?
            .try_into()?;
        test_run(prog, frame, LO)
    }
}
