//! The seam between the agent and whatever forwards packets. The agent builds
//! the desired state (services, their reals, each real's next hop) and hands
//! it to a [`DataPlane`]; the XDP implementation turns it into map writes.

mod adopt;
mod batch;
mod ids;
pub mod ipvs;
mod loader;
mod maps;
mod mh_order;
pub mod route_attach;
mod slots;
pub mod store;
mod tables;
pub mod upkeep;
mod veth;
mod xdp;

pub use ipvs::IpvsDataPlane;
pub use maps::StoreError;
pub use tables::{MaglevChurn, TableError};

pub use crate::neigh::NextHop;
pub use loader::{LoadError, attach_program};
pub use xdp::{PinLock, XdpDataPlane};

use crate::config::{Method, Persistence, SchedFlags, Scheduler, ServiceId, Tunnel};
use std::net::IpAddr;

/// A real server as the data plane must forward to it: where, how much,
/// and through which next hop. Its checks and scripts stay with the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredReal {
    pub address: IpAddr,
    pub port: u16,
    /// The weight it is scheduled with now: the configured weight, a
    /// MISC_CHECK's dynamic one, or 0 while inhibited (`inhibit_on_failure`)
    /// or as a sorry server at rest.
    pub effective_weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// `None` while the real cannot be reached (no route, no neighbour entry):
    /// it is then left out of scheduling.
    pub next_hop: Option<NextHop>,
}

/// A service as the data plane must forward it: its key, how it schedules
/// and forwards, and its live reals. Checks, scripts and quorum stay with
/// the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredService {
    pub id: ServiceId,
    pub scheduler: Scheduler,
    pub method: Method,
    /// With `method = "tun"`: IPIP (`None`) or GUE.
    pub tunnel: Option<Tunnel>,
    /// Forwarded now: configured active and, for a VIP a VRRP instance
    /// owns, that instance is Master.
    pub active: bool,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    pub reals: Vec<DesiredReal>,
}

/// Something that forwards packets for services: XDP today, IPVS as fallback.
pub trait DataPlane {
    /// Makes the data plane forward exactly `services`: adds what is new,
    /// changes what differs and removes what is gone. Existing flows stay on
    /// their real server while it remains configured.
    fn apply(&mut self, services: &[DesiredService]) -> anyhow::Result<()>;

    /// As [`DataPlane::apply`], when `services` lists the same services as
    /// the previous apply and only those at the indices `changed` may
    /// differ: a data plane that can should rewrite only those.
    fn apply_changed(
        &mut self,
        services: &[DesiredService],
        _changed: &[usize],
    ) -> anyhow::Result<()> {
        self.apply(services)
    }

    /// Starts the upkeep the data plane needs, off the caller's thread
    /// (XDP: the flow table's reclaimer, `upkeep`); each pass's report
    /// comes on the receiver. `None` where the kernel keeps its own tables
    /// (IPVS). The upkeep stops with [`DataPlane::shutdown`].
    fn start_upkeep(
        &mut self,
    ) -> anyhow::Result<Option<tokio::sync::watch::Receiver<Option<upkeep::Report>>>> {
        Ok(None)
    }

    /// What the upkeep's latest pass found: frees what it shows unused
    /// (XDP: draining reals whose flows are gone).
    fn upkept(&mut self, _report: &upkeep::Report) -> anyhow::Result<()> {
        Ok(())
    }

    /// A VRRP instance became Master or stopped being Master (IPVS: the
    /// sync daemon follows the instance `lvs_sync_daemon` names).
    fn mastership(&mut self, _instance: &str, _master: bool) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether reals need a next hop (a neighbour's MAC, a tunnel route):
    /// XDP writes frames itself; IPVS hands packets to the kernel's routing.
    fn uses_next_hops(&self) -> bool {
        true
    }

    /// How much each Maglev service's table moved on changes (for metrics);
    /// empty where the kernel schedules (IPVS keeps no such record).
    fn maglev_churn(&self) -> std::collections::BTreeMap<crate::config::ServiceId, MaglevChurn> {
        Default::default()
    }

    /// One line for the log: what forwards and where.
    fn describe(&self) -> String;

    /// Which data plane this is (with `kind = "auto"`, the one that started),
    /// so the metrics read it where it keeps its state.
    fn plane(&self) -> crate::snapshot::Plane;

    /// What the data plane holds now (services, reals, counters), for the
    /// SIGUSR1/SIGUSR2 dumps; `detail` chooses the costly parts.
    fn snapshot(
        &mut self,
        detail: crate::snapshot::Detail,
    ) -> anyhow::Result<crate::snapshot::Snapshot>;

    /// Stops forwarding, or with `keep` leaves the data plane running
    /// without the agent.
    fn shutdown(self: Box<Self>, keep: bool) -> anyhow::Result<()>;

    /// A start that failed (or was stopped) after this plane started: one
    /// adopted from a previous agent keeps forwarding with its maps and
    /// flows (the program in its pinned links is this agent's, of the same
    /// map layout); one this agent made is taken away. The default leaves
    /// it running.
    fn abandon(self: Box<Self>) -> anyhow::Result<()> {
        self.shutdown(true)
    }
}
