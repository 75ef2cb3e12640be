//! The IPVS data plane: the kernel's IPVS programmed over generic netlink
//! from the same desired state the XDP plane gets, as keepalived would.
//!
//! It reconciles rather than replays: every apply dumps the kernel's
//! services and destinations, compares them with the desired ones and sends
//! only the difference, so a restart or a reload leaves unchanged services
//! (their connections and counters) alone. xlb owns the kernel's TCP, UDP
//! and fwmark services: ones it was not asked for are removed.
//!
//! Inactive services (a VRRP Backup's) stay programmed, as keepalived keeps
//! them: IPVS only schedules packets addressed to a local address, and the
//! VIP is local only on the Master, so a Backup forwards nothing twice,
//! while the services are there for connections its sync daemon receives.

use super::{DataPlane, DesiredService};
use crate::config::{Method, ServiceId, Tunnel, global::SyncDaemon};
use crate::ipvs::{
    Daemon, DestEntry, Ipvs, ServiceEntry, Stats, Timeouts,
    types::{self, fwd, svc_flags, tun_type},
};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tracing::{debug, info, warn};

pub struct IpvsDataPlane {
    ipvs: Ipvs,
    sync: Option<Sync>,
}

/// The sync daemon and the role it runs in now.
struct Sync {
    config: SyncDaemon,
    master: bool,
}

impl IpvsDataPlane {
    /// Connects to the kernel's IPVS, sets its timeouts and starts the sync
    /// daemon: as backup while `sync`'s VRRP instance exists (it starts as
    /// Backup), else as master.
    pub fn start(
        timeouts: crate::config::Timeouts,
        sync: Option<(SyncDaemon, bool)>,
    ) -> Result<IpvsDataPlane> {
        let mut ipvs = Ipvs::connect()?;
        let want = Timeouts {
            tcp: timeouts.tcp,
            tcp_fin: timeouts.tcp_fin,
            udp: timeouts.udp,
        };
        if ipvs.timeouts()? != want {
            ipvs.set_timeouts(want).context("setting IPVS timeouts")?;
        }
        let mut plane = IpvsDataPlane { ipvs, sync: None };
        plane.reconcile_daemons(sync.map(|(config, master)| Sync { config, master }))?;
        Ok(plane)
    }

    fn reconcile_daemons(&mut self, want: Option<Sync>) -> Result<()> {
        let wanted = want.as_ref().map(|s| daemon(&s.config, s.master));
        let mut running = false;
        for d in self.ipvs.daemons()? {
            if wanted.as_ref().is_some_and(|w| is_running(&d, w)) {
                running = true;
            } else {
                self.ipvs.del_daemon(d.master)?;
            }
        }
        if let Some(d) = wanted.as_ref().filter(|_| !running) {
            self.ipvs
                .add_daemon(d)
                .with_context(|| format!("starting the IPVS sync daemon on {}", d.interface))?;
            info!(interface = %d.interface, sync_id = d.sync_id, master = d.master, "IPVS sync daemon started");
        }
        self.sync = want;
        Ok(())
    }

    /// Removes every service and stops the sync daemon.
    fn clear(&mut self) -> Result<()> {
        for s in self.ipvs.services()? {
            self.ipvs.del_service(&s.id)?;
        }
        self.reconcile_daemons(None)
    }
}

fn daemon(c: &SyncDaemon, master: bool) -> Daemon {
    Daemon {
        master,
        interface: c.interface.clone(),
        sync_id: u32::from(c.id),
        maxlen: c.maxlen,
        group: c.group,
        port: c.port,
        ttl: c.ttl,
    }
}

/// Whether the kernel's daemon `have` is `want`: the kernel reports its
/// defaults (maxlen, group, port, ttl) for what `want` leaves unset, and a
/// backup's maxlen as it rounded it (1000 asked, 1024 reported), so a
/// backup's maxlen is not compared: it would restart the daemon on every start.
fn is_running(have: &Daemon, want: &Daemon) -> bool {
    fn same<T: PartialEq>(have: Option<T>, want: Option<T>) -> bool {
        want.is_none() || have == want
    }
    have.master == want.master
        && have.interface == want.interface
        && have.sync_id == want.sync_id
        && (!want.master || same(have.maxlen, want.maxlen))
        && same(have.group, want.group)
        && same(have.port, want.port)
        && same(have.ttl, want.ttl)
}

/// The kernel's view of a desired service and its destinations.
pub fn entries(d: &DesiredService) -> (ServiceEntry, Vec<DestEntry>) {
    let s = d;
    let mut flags = svc_flags::of(s.flags);
    if s.persistence.is_some() {
        flags |= svc_flags::PERSISTENT;
    }
    let service = ServiceEntry {
        id: s.id,
        scheduler: s.scheduler.name().to_string(),
        flags,
        timeout: s.persistence.map_or(0, |p| p.timeout_s),
        netmask: types::netmask(s.persistence.as_ref().map(|p| p.mask), s.id.is_ipv6()),
        pe_name: None,
        stats: Stats::default(),
    };
    let (fwd, tun, tun_port) = match (s.method, s.tunnel) {
        (Method::Nat, _) => (fwd::MASQ, tun_type::IPIP, 0),
        (Method::Dr, _) => (fwd::DROUTE, tun_type::IPIP, 0),
        (Method::Tun, Some(Tunnel::Gue { port })) => (fwd::TUNNEL, tun_type::GUE, port),
        (Method::Tun, _) => (fwd::TUNNEL, tun_type::IPIP, 0),
    };
    let dests = d
        .reals
        .iter()
        .map(|r| DestEntry {
            addr: r.address,
            port: r.port,
            fwd,
            weight: r.effective_weight,
            u_threshold: r.u_threshold,
            l_threshold: r.l_threshold,
            active: 0,
            inactive: 0,
            persistent: 0,
            stats: Stats::default(),
            tun_type: tun,
            tun_port,
            tun_flags: 0,
        })
        .collect();
    (service, dests)
}

fn same_service(a: &ServiceEntry, b: &ServiceEntry) -> bool {
    a.scheduler == b.scheduler
        && a.flags & !svc_flags::HASHED == b.flags & !svc_flags::HASHED
        && a.timeout == b.timeout
        && a.netmask == b.netmask
}

/// Whether the kernel's `have` already is `want`. The kernel turns the
/// method of a real that is a local address into Local whatever it was
/// given, so Local matches any method.
fn same_dest(have: &DestEntry, want: &DestEntry) -> bool {
    let (a, b) = (have, want);
    let tunnel = b.fwd != fwd::TUNNEL || (a.tun_type, a.tun_port) == (b.tun_type, b.tun_port);
    (a.fwd == b.fwd || a.fwd == fwd::LOCALNODE)
        && a.weight == b.weight
        && a.u_threshold == b.u_threshold
        && a.l_threshold == b.l_threshold
        && tunnel
}

/// What one apply changed, for the log and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub services_added: usize,
    pub services_changed: usize,
    pub services_removed: usize,
    pub dests_added: usize,
    pub dests_changed: usize,
    pub dests_removed: usize,
}

impl IpvsDataPlane {
    /// Makes the kernel's services equal to `services`, touching only what differs.
    pub fn reconcile(&mut self, services: &[DesiredService]) -> Result<Changes> {
        let want: BTreeMap<ServiceId, (ServiceEntry, Vec<DestEntry>)> =
            services.iter().map(|d| (d.id, entries(d))).collect();
        let have: BTreeMap<ServiceId, ServiceEntry> = self
            .ipvs
            .services()?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let mut c = Changes::default();
        for id in have.keys().filter(|id| !want.contains_key(id)) {
            self.ipvs
                .del_service(id)
                .with_context(|| format!("removing IPVS service {id}"))?;
            c.services_removed += 1;
        }
        for (id, (svc, dests)) in &want {
            let current = match have.get(id) {
                None => {
                    self.ipvs
                        .add_service(svc)
                        .with_context(|| format!("adding IPVS service {id}"))?;
                    c.services_added += 1;
                    Vec::new()
                }
                Some(old) => {
                    if !same_service(old, svc) {
                        self.ipvs
                            .edit_service(svc)
                            .with_context(|| format!("changing IPVS service {id}"))?;
                        c.services_changed += 1;
                    }
                    self.ipvs.dests(id)?
                }
            };
            let key = |d: &DestEntry| (d.addr, d.port);
            for old in current
                .iter()
                .filter(|o| !dests.iter().any(|d| key(d) == key(o)))
            {
                self.ipvs
                    .del_dest(id, old)
                    .with_context(|| format!("removing real {}:{} of {id}", old.addr, old.port))?;
                c.dests_removed += 1;
            }
            for d in dests {
                match current.iter().find(|o| key(o) == key(d)) {
                    None => {
                        self.ipvs.add_dest(id, d).with_context(|| {
                            format!("adding real {}:{} to {id}", d.addr, d.port)
                        })?;
                        c.dests_added += 1;
                    }
                    Some(old) if !same_dest(old, d) => {
                        self.ipvs.edit_dest(id, d).with_context(|| {
                            format!("changing real {}:{} of {id}", d.addr, d.port)
                        })?;
                        c.dests_changed += 1;
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(c)
    }
}

impl DataPlane for IpvsDataPlane {
    fn uses_next_hops(&self) -> bool {
        false
    }

    fn apply(&mut self, services: &[DesiredService]) -> Result<()> {
        let c = self.reconcile(services)?;
        debug!(
            services_added = c.services_added,
            services_changed = c.services_changed,
            services_removed = c.services_removed,
            dests_added = c.dests_added,
            dests_changed = c.dests_changed,
            dests_removed = c.dests_removed,
            "IPVS reconciled"
        );
        Ok(())
    }

    fn mastership(&mut self, instance: &str, master: bool) -> Result<()> {
        let Some(sync) = &self.sync else {
            return Ok(());
        };
        if sync.config.instance != instance || sync.master == master {
            return Ok(());
        }
        let next = Sync {
            config: sync.config.clone(),
            master,
        };
        self.reconcile_daemons(Some(next))
    }

    fn describe(&self) -> String {
        "kernel IPVS (generic netlink)".to_string()
    }

    fn plane(&self) -> crate::snapshot::Plane {
        crate::snapshot::Plane::Ipvs
    }

    fn snapshot(&mut self, _detail: crate::snapshot::Detail) -> Result<crate::snapshot::Snapshot> {
        // The kernel's dump carries every part (persistence counts included) at once.
        crate::snapshot::ipvs::read(&mut self.ipvs)
    }

    fn shutdown(mut self: Box<Self>, keep: bool) -> Result<()> {
        if keep {
            info!("data plane kept running: IPVS services left in the kernel");
            return Ok(());
        }
        if let Err(e) = self.clear() {
            warn!(error = %crate::logging::chain(&e), "removing the IPVS services failed");
            return Err(e);
        }
        info!("IPVS services removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, SchedFlags};
    use crate::dataplane::DesiredReal;

    fn desired(text: &str) -> Vec<DesiredService> {
        let c = config::parse("t.toml", text).unwrap();
        c.services
            .into_iter()
            .map(|s| DesiredService {
                id: s.id,
                scheduler: s.scheduler,
                method: s.method,
                tunnel: s.tunnel,
                active: s.active,
                flags: s.flags,
                persistence: s.persistence,
                reals: s
                    .reals
                    .iter()
                    .map(|r| DesiredReal {
                        address: r.address,
                        port: r.port,
                        effective_weight: r.weight,
                        u_threshold: r.u_threshold,
                        l_threshold: r.l_threshold,
                        next_hop: None,
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn a_service_becomes_ipvss_attributes() {
        let d = desired(
            r#"
[dataplane]
kind = "ipvs"
interfaces = []
[[service]]
vip = "10.0.0.1"
port = 53
protocol = "udp"
scheduler = "sh"
scheduler_flags = ["sh-port", "sh-fallback"]
method = "tun"
tunnel = "gue"
gue_port = 6080
persistence_timeout = 60
persistence_granularity = "255.255.0.0"
[[service.real]]
address = "10.1.0.1"
weight = 7
uthreshold = 10
lthreshold = 5
"#,
        );
        let (svc, dests) = entries(&d[0]);
        assert_eq!(svc.scheduler, "sh");
        assert_eq!(
            svc.flags,
            svc_flags::PERSISTENT | svc_flags::SCHED1 | svc_flags::SCHED2
        );
        assert_eq!(
            (svc.timeout, svc.netmask.to_ne_bytes()),
            (60, [255, 255, 0, 0])
        );
        let r = &dests[0];
        assert_eq!(
            (r.fwd, r.weight, r.u_threshold, r.l_threshold),
            (fwd::TUNNEL, 7, 10, 5)
        );
        assert_eq!((r.tun_type, r.tun_port, r.port), (tun_type::GUE, 6080, 53));
    }

    #[test]
    fn without_persistence_the_netmask_keeps_every_bit() {
        let d = desired(
            "[dataplane]\nkind = \"ipvs\"\ninterfaces = []\n[[service]]\nvip = \"2001:db8::1\"\nport = 80\nmethod = \"nat\"\n\
             [[service]]\nfwmark = 3\n",
        );
        let (v6, _) = entries(&d[0]);
        assert_eq!((v6.flags, v6.netmask), (0, 128));
        let (fwm, _) = entries(&d[1]);
        assert_eq!(fwm.netmask, u32::MAX);
        assert_eq!(svc_flags::of(SchedFlags::default()), 0);
    }

    #[test]
    fn a_running_daemon_with_the_kernels_defaults_is_the_one_wanted() {
        let want = Daemon {
            master: true,
            interface: "eth1".into(),
            sync_id: 5,
            maxlen: None,
            group: None,
            port: Some(8848),
            ttl: None,
        };
        let have = Daemon {
            maxlen: Some(1472),
            group: Some("224.0.0.81".parse().unwrap()),
            ttl: Some(1),
            ..want.clone()
        };
        assert!(is_running(&have, &want));
        for other in [
            Daemon {
                master: false,
                ..have.clone()
            },
            Daemon {
                sync_id: 6,
                ..have.clone()
            },
            Daemon {
                port: Some(8849),
                ..have.clone()
            },
        ] {
            assert!(!is_running(&other, &want), "{other:?}");
        }
    }

    #[test]
    fn a_backup_is_running_whatever_maxlen_the_kernel_rounded_it_to() {
        let want = Daemon {
            master: false,
            interface: "eth1".into(),
            sync_id: 5,
            maxlen: Some(1000),
            group: None,
            port: None,
            ttl: None,
        };
        let have = Daemon {
            maxlen: Some(1024),
            ..want.clone()
        };
        assert!(is_running(&have, &want));
        let master = Daemon {
            master: true,
            ..want.clone()
        };
        let master_have = Daemon {
            master: true,
            ..have
        };
        assert!(!is_running(&master_have, &master));
    }

    #[test]
    fn a_local_real_reported_as_local_needs_no_change() {
        let d = desired(
            "[dataplane]\nkind = \"ipvs\"\ninterfaces = []\n[[service]]\nvip = \"10.0.0.1\"\nport = 80\n\
             [[service.real]]\naddress = \"10.0.0.2\"\n",
        );
        let (_, dests) = entries(&d[0]);
        let want = &dests[0];
        let local = DestEntry {
            fwd: fwd::LOCALNODE,
            active: 3,
            ..want.clone()
        };
        assert!(same_dest(&local, want));
        let heavier = DestEntry {
            weight: 2,
            ..want.clone()
        };
        assert!(!same_dest(&heavier, want));
        let masq = DestEntry {
            fwd: fwd::MASQ,
            ..want.clone()
        };
        assert!(!same_dest(&masq, want));
    }
}
