//! The flow table, decoded: each connection the data plane follows (and
//! each persistence template, as IPVS lists them among its connections)
//! with its client, virtual service, real server, state and time left.
//! Read from XDP's `CONNTRACK` and `PERSIST` maps, or from the kernel's
//! `/proc/net/ip_vs_conn` under IPVS; printed by `xlb flows` and by
//! `xlb ipvsadm -Lnc`.

use super::xdp::open;
use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, MapData};
use lb_common::{
    Affinity, FlowKey, FlowState, RealInfo, ServiceAddr, ServiceInfo, ServiceKey, Settings,
    addr_ip, conn, map_names,
};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
};

/// One connection (or persistence template) of the flow table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// `TCP` or `UDP` (a template of a fwmark service: `IP`).
    pub protocol: String,
    /// IPVS's state name (`PICKUP` for a flow first seen mid-stream;
    /// `NONE` for a template).
    pub state: String,
    pub client: SocketAddr,
    #[serde(rename = "virtual")]
    pub virtual_addr: SocketAddr,
    pub real: SocketAddr,
    /// Seconds until it expires if nothing more is seen.
    pub expires_s: u64,
    /// A persistence template (client port 0), not a connection.
    pub template: bool,
}

/// What a flow's filter may ask for (`xlb flows --client/--service/--real/--state`).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub client: Option<IpAddr>,
    pub service: Option<SocketAddr>,
    pub real: Option<IpAddr>,
    pub state: Option<String>,
}

impl Filter {
    pub fn keeps(&self, f: &Flow) -> bool {
        self.client.is_none_or(|c| f.client.ip() == c)
            && self.service.is_none_or(|s| f.virtual_addr == s)
            && self.real.is_none_or(|r| f.real.ip() == r)
            && self
                .state
                .as_ref()
                .is_none_or(|s| f.state.eq_ignore_ascii_case(s))
    }
}

fn protocol_name(proto: u8) -> &'static str {
    match proto {
        lb_common::PROTO_TCP => "TCP",
        lb_common::PROTO_UDP => "UDP",
        _ => "IP",
    }
}

/// Seconds left of `timeout_s` after `idle_ns` (0 once over).
fn left(timeout_s: u64, idle_ns: u64) -> u64 {
    (timeout_s * 1_000_000_000).saturating_sub(idle_ns) / 1_000_000_000
}

/// The XDP flow table pinned under `dir`, as of `now_ns` (CLOCK_MONOTONIC):
/// live connections first, then templates, each sorted by client. Expired
/// entries the upkeep has not removed yet, and entries being released, are
/// left out, as the data plane treats them as gone.
pub fn read(dir: &Path, now_ns: u64) -> Result<Vec<Flow>> {
    let services: HashMap<MapData, ServiceKey, ServiceInfo> =
        open(dir, map_names::SERVICES)?.try_into()?;
    let by_id: BTreeMap<u32, (ServiceKey, ServiceInfo)> = services
        .iter()
        .filter_map(|e| e.ok())
        .map(|(k, i)| (i.id, (k, i)))
        .collect();
    let reals: Array<MapData, RealInfo> = open(dir, map_names::REALS)?.try_into()?;
    let real = |id: u32| -> Result<SocketAddr> {
        let r = reals.get(&id, 0).context("reading a flow's real")?;
        Ok(SocketAddr::new(
            addr_ip(r.addr, r.family),
            u16::from_be(r.port),
        ))
    };
    let settings: Array<MapData, Settings> = open(dir, map_names::SETTINGS)?.try_into()?;
    let settings = settings.get(&0, 0)?;
    let table: HashMap<MapData, FlowKey, FlowState> =
        open(dir, map_names::CONNTRACK)?.try_into()?;
    let mut flows = Vec::new();
    for entry in table.iter() {
        let (k, v) = entry?;
        let state = v.state as u32;
        if state == conn::RELEASED || conn::expired(state, v.seen_ns, now_ns, &settings) {
            continue;
        }
        let Some((svc, _)) = by_id.get(&v.service_id) else {
            continue;
        };
        let dst = addr_ip(k.dst, k.family);
        // A fwmark service has no address of its own: the packet's is shown.
        let port = if svc.port == 0 {
            u16::from_be(k.dport)
        } else {
            u16::from_be(svc.port)
        };
        flows.push(Flow {
            protocol: protocol_name(k.proto).to_string(),
            state: conn::name(state).to_string(),
            client: SocketAddr::new(addr_ip(k.src, k.family), u16::from_be(k.sport)),
            virtual_addr: SocketAddr::new(dst, port),
            real: real(v.real_id)?,
            expires_s: left(
                u64::from(conn::timeout_s(state, &settings)),
                now_ns.saturating_sub(v.seen_ns),
            ),
            template: false,
        });
    }
    flows.sort_by_key(|f| (f.client, f.virtual_addr));
    let templates: HashMap<MapData, ServiceAddr, Affinity> =
        open(dir, map_names::PERSIST)?.try_into()?;
    let mut kept = Vec::new();
    for entry in templates.iter() {
        let (k, a) = entry?;
        let Some((svc, info)) = by_id.get(&k.service_id) else {
            continue;
        };
        let timeout = u64::from(info.persist_timeout_s);
        let idle = now_ns.saturating_sub(a.last_ns);
        if idle >= timeout * 1_000_000_000 {
            continue;
        }
        kept.push(Flow {
            protocol: protocol_name(svc.proto).to_string(),
            state: conn::name(conn::NONE).to_string(),
            client: SocketAddr::new(addr_ip(k.addr, svc.family), 0),
            virtual_addr: SocketAddr::new(addr_ip(svc.addr, svc.family), u16::from_be(svc.port)),
            real: real(a.real_id)?,
            expires_s: left(timeout, idle),
            template: true,
        });
    }
    kept.sort_by_key(|f| (f.client, f.virtual_addr));
    flows.extend(kept);
    Ok(flows)
}

/// The kernel's IPVS connections, from `/proc/net/ip_vs_conn`'s text:
/// `Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires [PEName PEData]`,
/// IPv4 addresses in hex, IPv6 in colon form, ports in hex.
pub fn from_proc(text: &str) -> Result<Vec<Flow>> {
    let addr = |ip: &str, port: &str| -> Result<SocketAddr> {
        let ip: IpAddr = if ip.contains(':') {
            ip.parse().with_context(|| format!("address {ip}"))?
        } else {
            IpAddr::from(
                u32::from_str_radix(ip, 16)
                    .with_context(|| format!("address {ip}"))?
                    .to_be_bytes(),
            )
        };
        let port = u16::from_str_radix(port, 16).with_context(|| format!("port {port}"))?;
        Ok(SocketAddr::new(ip, port))
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            let [pro, fip, fport, tip, tport, dip, dport, state, expires, ..] = w[..] else {
                anyhow::bail!("unexpected line in /proc/net/ip_vs_conn: {line}");
            };
            let client = addr(fip, fport)?;
            Ok(Flow {
                protocol: pro.to_string(),
                state: state.to_string(),
                client,
                virtual_addr: addr(tip, tport)?,
                real: addr(dip, dport)?,
                expires_s: expires
                    .parse()
                    .with_context(|| format!("expiry {expires}"))?,
                template: client.port() == 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_connection_file_is_read_for_both_families() {
        let text = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n\
                    TCP 0A000001 D431 0A000064 0050 0A00000B 0050 ESTABLISHED     899\n\
                    TCP 0A000001 0000 0A000064 0050 0A00000B 0050 NONE            359\n\
                    UDP fd00:0000:0000:0000:0000:0000:0000:0001 D431 fd00:0000:0000:0000:0000:0000:0000:0064 0035 fd00:0000:0000:0000:0000:0000:0000:000b 0035 UDP 299\n";
        let flows = from_proc(text).unwrap();
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0].client, "10.0.0.1:54321".parse().unwrap());
        assert_eq!(flows[0].virtual_addr, "10.0.0.100:80".parse().unwrap());
        assert_eq!(flows[0].real, "10.0.0.11:80".parse().unwrap());
        assert_eq!(
            (flows[0].state.as_str(), flows[0].expires_s),
            ("ESTABLISHED", 899)
        );
        assert!(flows[1].template && !flows[0].template);
        assert_eq!(flows[2].client, "[fd00::1]:54321".parse().unwrap());
        assert!(from_proc("header\nTCP 0A000001\n").is_err());
    }

    #[test]
    fn time_left_rounds_down_and_stops_at_zero() {
        assert_eq!(left(900, 0), 900);
        assert_eq!(left(900, 1), 899);
        assert_eq!(left(900, 901_000_000_000), 0);
    }

    #[test]
    fn a_filter_keeps_what_matches_every_given_field() {
        let f = Flow {
            protocol: "TCP".into(),
            state: "ESTABLISHED".into(),
            client: "10.0.0.1:1000".parse().unwrap(),
            virtual_addr: "10.0.0.100:80".parse().unwrap(),
            real: "10.0.0.11:80".parse().unwrap(),
            expires_s: 1,
            template: false,
        };
        assert!(Filter::default().keeps(&f));
        let by_real = Filter {
            real: Some("10.0.0.11".parse().unwrap()),
            state: Some("established".into()),
            ..Filter::default()
        };
        assert!(by_real.keeps(&f));
        let other = Filter {
            service: Some("10.0.0.100:443".parse().unwrap()),
            ..Filter::default()
        };
        assert!(!other.keeps(&f));
    }
}
