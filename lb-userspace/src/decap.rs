//! `xlb decap`: on a real server behind a TUN director, unwraps tunnelled
//! packets for the local VIPs in XDP (for hosts without the ipip/fou modules)
//! until SIGTERM or SIGINT, then detaches.

use crate::{DECAP_OBJECT, config::XdpMode, dataplane::attach_program};
use anyhow::{Context, Result};
use aya::{
    EbpfLoader,
    maps::{HashMap, MapData},
    programs::Xdp,
};
use futures::TryStreamExt;
use lb_common::{DecapVip, addr_words, decap, family_of};
use netlink_packet_route::address::{AddressAttribute, AddressScope};
use std::{collections::BTreeSet, net::IpAddr, time::Duration};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// How often `lo`'s addresses are read again when no `--vip` is given.
const REFRESH: Duration = Duration::from_secs(2);

/// What `xlb decap` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub iface: String,
    /// Inner destinations to unwrap; empty: every global address on `lo`.
    pub vips: Vec<IpAddr>,
    /// GUE UDP port; `None` leaves UDP alone.
    pub gue_port: Option<u16>,
    pub xdp_mode: XdpMode,
}

fn key(addr: IpAddr) -> DecapVip {
    DecapVip {
        addr: addr_words(addr),
        family: family_of(addr),
        _pad: [0; 3],
    }
}

/// The VIPs in the sense LVS-TUN real servers hold them: global addresses on `lo`.
async fn lo_addresses(handle: &rtnetlink::Handle) -> Result<BTreeSet<IpAddr>> {
    let mut links = handle.link().get().match_name("lo").execute();
    let lo = links
        .try_next()
        .await?
        .context("no `lo` interface in this namespace")?
        .header
        .index;
    let mut addrs = handle.address().get().set_link_index_filter(lo).execute();
    let mut out = BTreeSet::new();
    while let Some(a) = addrs.try_next().await? {
        if a.header.scope != AddressScope::Universe {
            continue;
        }
        for attr in &a.attributes {
            if let AddressAttribute::Address(ip) = attr {
                out.insert(*ip);
            }
        }
    }
    Ok(out)
}

/// Makes the map hold exactly `want`; `have` is what it holds now.
fn sync(
    map: &mut HashMap<&mut MapData, DecapVip, u8>,
    have: &mut BTreeSet<IpAddr>,
    want: &BTreeSet<IpAddr>,
) -> Result<()> {
    for gone in have.difference(want) {
        map.remove(&key(*gone))?;
    }
    for new in want.difference(have) {
        map.insert(key(*new), 1, 0)
            .with_context(|| format!("adding VIP {new} (at most {})", decap::MAX_VIPS))?;
    }
    if have != want {
        let vips: Vec<String> = want.iter().map(|v| v.to_string()).collect();
        info!(vips = %vips.join(","), "decapsulating for");
    }
    *have = want.clone();
    Ok(())
}

pub async fn run(opts: &Options) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let port_be = opts.gue_port.unwrap_or(0).to_be();
    let mut ebpf = EbpfLoader::new()
        .override_global(decap::GUE_PORT, &port_be, true)
        .load(crate::require_object(
            DECAP_OBJECT,
            crate::DECAP_OBJECT_PATH,
        )?)
        .context("loading the decap XDP object into the kernel")?;
    let prog: &mut Xdp = ebpf
        .program_mut(decap::PROG)
        .context("the decap object has no decap program")?
        .try_into()?;
    prog.load()
        .context("the kernel verifier rejected the decap program")?;
    let (link, mode) = attach_program(prog, &opts.iface, opts.xdp_mode)?;

    let (conn, handle, _) = rtnetlink::new_connection().context("opening route netlink")?;
    tokio::spawn(conn);
    let result = async {
        let mut map: HashMap<&mut MapData, DecapVip, u8> = HashMap::try_from(
            ebpf.map_mut(decap::VIPS)
                .context("the decap object has no VIP map")?,
        )?;
        let mut have = BTreeSet::new();
        let from_lo = opts.vips.is_empty();
        let want = if from_lo {
            lo_addresses(&handle).await?
        } else {
            opts.vips.iter().copied().collect()
        };
        sync(&mut map, &mut have, &want)?;
        if want.is_empty() {
            warn!("no VIP yet: add the VIPs to `lo` (or pass --vip); nothing is unwrapped until then");
        }
        let gue = opts.gue_port.map_or_else(|| "none".to_string(), |p| p.to_string());
        info!(interface = %opts.iface, %mode, gue_port = %gue, "xlb decapsulating");
        let mut tick = tokio::time::interval(REFRESH);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
                _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
                _ = tick.tick(), if from_lo => {
                    match lo_addresses(&handle).await {
                        Ok(want) => sync(&mut map, &mut have, &want)?,
                        Err(e) => warn!(error = %crate::logging::chain(&e), "reading lo's addresses failed; will retry"),
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    let prog: &mut Xdp = ebpf
        .program_mut(decap::PROG)
        .context("the decap object has no decap program")?
        .try_into()?;
    prog.detach(link)
        .with_context(|| format!("detaching from {}", opts.iface))?;
    info!(interface = %opts.iface, "detached");
    result
}
