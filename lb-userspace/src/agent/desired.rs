//! The desired state of the data plane, composed from the config, what the
//! agent learned at run time (checker verdicts, VRRP mastership) and the
//! cached next hops. Pure, so every rule is unit-tested here.

use super::hops::Hops;
use crate::vocab::{Health, Notice, RealKey};
use crate::{
    config::{Config, Real, Service, ServiceId},
    dataplane::{DesiredReal, DesiredService},
};
use std::collections::{HashMap, HashSet};

/// What the agent knows at run time beside the config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runtime {
    /// Verdicts so far; a real with no verdict yet is down when one of its
    /// checks has `alpha`, up otherwise.
    pub health: HashMap<RealKey, Health>,
    /// VRRP instances that are Master now.
    pub masters: HashSet<String>,
    /// Whether each service has its quorum (keepalived's `quorum_state_up`):
    /// state, because hysteresis makes the threshold depend on it. A service
    /// not in the map has the state it would start with.
    pub quorum: HashMap<ServiceId, bool>,
}

impl Runtime {
    /// Whether the data plane should forward `svc`'s packets: a VIP that a
    /// VRRP instance owns is forwarded only while that instance is Master,
    /// so a Backup that still receives packets (stale ARP caches) leaves
    /// them to its stack instead of forwarding them a second time.
    pub fn service_active(&self, config: &Config, svc: &Service) -> bool {
        let owner = svc.id.addr().and_then(|(vip, ..)| config.vip_owner(vip));
        svc.active && owner.is_none_or(|name| self.masters.contains(name))
    }

    /// The verdict that applies to `real` of `svc` now.
    pub fn health_of(&self, svc: &Service, real: &Real) -> Health {
        let key = RealKey {
            service: svc.id,
            address: real.address,
            port: real.port,
        };
        self.health
            .get(&key)
            .copied()
            .unwrap_or_else(|| Health::initial(real))
    }
}

/// The reals `svc` forwards to now, with their effective weights: a down
/// real is left out, or kept at weight 0 with `inhibit_on_failure`. While
/// the service lacks its quorum and has a sorry server, the sorry server
/// replaces the live reals (keepalived's rule); a `sorry_server_inhibit`
/// sorry server stays at weight 0 otherwise.
fn live_reals(svc: &Service, runtime: &Runtime, hops: &Hops) -> Vec<DesiredReal> {
    let sorry = svc.lifecycle.sorry_server;
    let sorry_active = sorry.is_some() && !runtime.quorum_up(svc);
    let mut out: Vec<DesiredReal> = svc
        .reals
        .iter()
        .filter_map(|real| {
            let weight = match runtime.health_of(svc, real) {
                Health::Up { .. } if sorry_active && real.lifecycle.inhibit_on_failure => 0,
                Health::Up { .. } if sorry_active => return None,
                Health::Up { weight } => weight.unwrap_or(real.weight),
                Health::Down if real.lifecycle.inhibit_on_failure => 0,
                Health::Down => return None,
            };
            Some(DesiredReal {
                address: real.address,
                port: real.port,
                effective_weight: weight,
                u_threshold: real.u_threshold,
                l_threshold: real.l_threshold,
                next_hop: hops.get(real.address, svc.method),
            })
        })
        .collect();
    if let Some(s) = sorry
        && (sorry_active || s.inhibit)
    {
        let weight = u32::from(sorry_active);
        match out
            .iter_mut()
            .find(|d| d.address == s.address && d.port == s.port)
        {
            // A sorry server that is also a real keeps one entry.
            Some(d) => d.effective_weight = d.effective_weight.max(weight),
            None => out.push(DesiredReal {
                address: s.address,
                port: s.port,
                effective_weight: weight,
                u_threshold: 0,
                l_threshold: 0,
                next_hop: hops.get(s.address, svc.method),
            }),
        }
    }
    out
}

impl Runtime {
    /// Sum of the effective weights of the reals of `svc` that are up.
    pub fn weight_sum(&self, svc: &Service) -> u64 {
        svc.reals
            .iter()
            .map(|r| match self.health_of(svc, r) {
                Health::Up { weight } => u64::from(weight.unwrap_or(r.weight)),
                Health::Down => 0,
            })
            .sum()
    }

    /// Whether `svc` has its quorum: the remembered state, or the one it
    /// starts with (weights ≥ quorum + hysteresis).
    pub fn quorum_up(&self, svc: &Service) -> bool {
        self.quorum.get(&svc.id).copied().unwrap_or_else(|| {
            let l = &svc.lifecycle;
            self.weight_sum(svc) >= u64::from(l.quorum) + u64::from(l.hysteresis)
        })
    }

    /// Records a checker's verdict on `key` and returns what changed: the
    /// real going up or down, and the service crossing its quorum
    /// (gained at ≥ quorum + hysteresis, lost below quorum − hysteresis or
    /// when no weight is left, as keepalived does).
    /// The other services of a `virtual_server_group` take the same verdict
    /// for the real at the same place, silently: keepalived checks a group's
    /// real once and announces it once.
    pub fn set_health(&mut self, config: &Config, key: RealKey, health: Health) -> Vec<Notice> {
        let Some(svc) = config.services.iter().find(|s| s.id == key.service) else {
            return Vec::new();
        };
        let Some(at) = svc
            .reals
            .iter()
            .position(|r| r.address == key.address && r.port == key.port)
        else {
            return Vec::new();
        };
        let notices = self.set_one(svc, at, key, health);
        for &i in &group_of(config, svc.id) {
            let other = &config.services[i];
            if let (true, Some(r)) = (other.id != svc.id, other.reals.get(at)) {
                let key = RealKey {
                    service: other.id,
                    address: r.address,
                    port: r.port,
                };
                self.set_one(other, at, key, health);
            }
        }
        notices
    }

    /// [`Self::set_health`] for one service's real at position `at`.
    fn set_one(&mut self, svc: &Service, at: usize, key: RealKey, health: Health) -> Vec<Notice> {
        let real = &svc.reals[at];
        let was_quorum = self.quorum_up(svc);
        let was_up = matches!(self.health_of(svc, real), Health::Up { .. });
        self.health.insert(key, health);
        let up = matches!(health, Health::Up { .. });
        let mut notices = Vec::new();
        if up != was_up {
            let l = &real.lifecycle;
            notices.push(Notice::Real {
                key,
                up,
                command: if up { &l.notify_up } else { &l.notify_down }.clone(),
            });
        }
        let l = &svc.lifecycle;
        let sum = self.weight_sum(svc);
        let quorum = if was_quorum {
            let threshold = u64::from(l.quorum).saturating_sub(u64::from(l.hysteresis));
            sum > 0 && sum >= threshold
        } else {
            sum >= u64::from(l.quorum) + u64::from(l.hysteresis)
        };
        self.quorum.insert(svc.id, quorum);
        if quorum != was_quorum {
            notices.push(Notice::Quorum {
                service: svc.id,
                up: quorum,
                command: if quorum { &l.quorum_up } else { &l.quorum_down }.clone(),
                weight_sum: sum,
            });
        }
        notices
    }

    /// What `omega` services announce when the agent stops: every real that
    /// is up goes down, then the service loses its quorum.
    pub fn stopping(&self, config: &Config) -> Vec<Notice> {
        let mut notices = Vec::new();
        // A group announces once, as its first service.
        let first_of_group = |i: usize| group_of(config, config.services[i].id).first() == Some(&i);
        for svc in config
            .services
            .iter()
            .enumerate()
            .filter(|(i, s)| s.lifecycle.omega && first_of_group(*i))
            .map(|(_, s)| s)
        {
            for real in &svc.reals {
                if matches!(self.health_of(svc, real), Health::Up { .. }) {
                    notices.push(Notice::Real {
                        key: RealKey {
                            service: svc.id,
                            address: real.address,
                            port: real.port,
                        },
                        up: false,
                        command: real.lifecycle.notify_down.clone(),
                    });
                }
            }
            if self.quorum_up(svc) {
                notices.push(Notice::Quorum {
                    service: svc.id,
                    up: false,
                    command: svc.lifecycle.quorum_down.clone(),
                    weight_sum: self.weight_sum(svc),
                });
            }
        }
        notices
    }
}

/// The positions of the services of `service`'s `virtual_server_group`
/// (itself alone when it has none), in config order.
pub fn group_of(config: &Config, service: ServiceId) -> Vec<usize> {
    let group = config
        .services
        .iter()
        .find(|s| s.id == service)
        .and_then(|s| s.group.as_ref());
    config
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| match group {
            Some(g) => s.group.as_ref() == Some(g),
            None => s.id == service,
        })
        .map(|(i, _)| i)
        .collect()
}

/// Every service as the data plane must forward it now, in config order.
pub fn compose(config: &Config, runtime: &Runtime, hops: &Hops) -> Vec<DesiredService> {
    config
        .services
        .iter()
        .map(|svc| compose_service(config, runtime, hops, svc))
        .collect()
}

/// One service of [`compose`]: what an event about `svc` alone changes.
pub fn compose_service(
    config: &Config,
    runtime: &Runtime,
    hops: &Hops,
    svc: &Service,
) -> DesiredService {
    DesiredService {
        id: svc.id,
        scheduler: svc.scheduler,
        method: svc.method,
        tunnel: svc.tunnel,
        active: runtime.service_active(config, svc),
        flags: svc.flags,
        persistence: svc.persistence,
        reals: live_reals(svc, runtime, hops),
    }
}

/// Positions in `config.services` of the services whose VIP `instance`
/// owns: those a mastership change of `instance` switches.
pub fn owned_by(config: &Config, instance: &str) -> Vec<usize> {
    config
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.id.addr()
                .and_then(|(vip, ..)| config.vip_owner(vip))
                .is_some_and(|owner| owner == instance)
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        self, Command,
        check::{Check, CheckCommon, CheckKind, SorryServer},
        vrrp::{Instance, VirtualAddress},
    };
    use std::{net::IpAddr, time::Duration};

    fn config() -> Config {
        config::parse(
            "t.toml",
            r#"
[dataplane]
interfaces = ["eth0"]
[[service]]
vip = "10.0.0.1"
port = 80
[[service.real]]
address = "10.1.0.1"
weight = 3
[[service.real]]
address = "10.1.0.2"
weight = 2
"#,
        )
        .unwrap()
    }

    fn checked(mut c: Config) -> Config {
        for r in &mut c.services[0].reals {
            r.lifecycle.checks.push(Check {
                kind: CheckKind::Tcp,
                common: CheckCommon {
                    connect_ip: None,
                    connect_port: None,
                    bindto: None,
                    bind_port: None,
                    connect_timeout: Duration::from_secs(1),
                    retry: 1,
                    delay_before_retry: Duration::from_secs(1),
                    delay_loop: Duration::from_secs(1),
                    warmup: Duration::ZERO,
                    alpha: false,
                    fwmark: None,
                    smtp_alert: None,
                },
            });
        }
        c
    }

    fn weights(d: &[DesiredService]) -> Vec<(IpAddr, u32)> {
        d[0].reals
            .iter()
            .map(|r| (r.address, r.effective_weight))
            .collect()
    }

    fn key(c: &Config, i: usize) -> RealKey {
        RealKey {
            service: c.services[0].id,
            address: c.services[0].reals[i].address,
            port: c.services[0].reals[i].port,
        }
    }

    #[test]
    fn a_group_shares_each_verdict_and_announces_it_once() {
        let mut c = checked(config());
        c.services[0].group = Some("G".into());
        let mut second = c.services[0].clone();
        second.id = ServiceId::Addr {
            vip: "10.0.0.2".parse().unwrap(),
            port: 80,
            protocol: config::Protocol::Tcp,
        };
        c.services.push(second);
        let mut loner = c.services[0].clone();
        loner.id = ServiceId::Addr {
            vip: "10.0.0.3".parse().unwrap(),
            port: 80,
            protocol: config::Protocol::Tcp,
        };
        loner.group = None;
        c.services.push(loner);
        assert_eq!(group_of(&c, c.services[1].id), [0, 1]);
        assert_eq!(group_of(&c, c.services[2].id), [2]);
        let mut rt = Runtime::default();
        let notices = rt.set_health(&c, key(&c, 0), Health::Down);
        // One announcement (notify_down, FIFO line), for the first service.
        let reals: Vec<RealKey> = notices
            .iter()
            .filter_map(|n| match n {
                Notice::Real { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        assert_eq!(reals, [key(&c, 0)]);
        let d = compose(&c, &rt, &Hops::default());
        let first = c.services[0].reals[0].address;
        for (i, s) in d.iter().enumerate() {
            let has = s.reals.iter().any(|r| r.address == first);
            assert_eq!(
                has,
                i == 2,
                "service {i}: only the group's members lost the real"
            );
        }
    }

    #[test]
    fn down_real_leaves_or_is_inhibited() {
        let mut c = checked(config());
        let mut rt = Runtime::default();
        rt.health.insert(key(&c, 0), Health::Down);
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(weights(&d), vec![("10.1.0.2".parse().unwrap(), 2)]);
        c.services[0].reals[0].lifecycle.inhibit_on_failure = true;
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(
            weights(&d),
            vec![
                ("10.1.0.1".parse().unwrap(), 0),
                ("10.1.0.2".parse().unwrap(), 2)
            ]
        );
    }

    #[test]
    fn alpha_starts_checked_reals_down_and_dynamic_weight_applies() {
        let mut c = checked(config());
        for r in &mut c.services[0].reals {
            r.lifecycle.checks[0].common.alpha = true;
        }
        let mut rt = Runtime::default();
        assert!(compose(&c, &rt, &Hops::default())[0].reals.is_empty());
        rt.health.insert(key(&c, 1), Health::Up { weight: Some(7) });
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(weights(&d), vec![("10.1.0.2".parse().unwrap(), 7)]);
    }

    #[test]
    fn owned_vip_is_active_only_while_master() {
        let mut c = config();
        let mut instance = Instance {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            version: 2,
            priority: 100,
            initial_state: Default::default(),
            advert_int: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept: true,
            auth: None,
            mcast_src_ip: None,
            unicast_src_ip: None,
            unicast_peers: vec![],
            check_unicast_src: false,
            virtual_ipaddress: vec![],
            virtual_ipaddress_excluded: vec![],
            virtual_routes: vec![],
            virtual_rules: vec![],
            track_interfaces: vec![],
            track_scripts: vec![],
            track_files: vec![],
            vmac: None,
            garp: Default::default(),
            lower_prio_no_advert: false,
            higher_prio_send_advert: true,
            notify: Default::default(),
            smtp_alert: None,
        };
        let mut rt = Runtime::default();
        c.vrrp.instances.push(instance.clone());
        assert!(
            compose(&c, &rt, &Hops::default())[0].active,
            "VIP of no instance"
        );
        assert!(owned_by(&c, "VI_1").is_empty());
        instance.virtual_ipaddress.push(VirtualAddress {
            address: "10.0.0.1".parse().unwrap(),
            prefix: 32,
            dev: None,
            brd: None,
            scope: None,
            label: None,
        });
        c.vrrp.instances[0] = instance;
        assert!(!compose(&c, &rt, &Hops::default())[0].active);
        assert_eq!(owned_by(&c, "VI_1"), vec![0]);
        assert!(owned_by(&c, "VI_2").is_empty());
        rt.masters.insert("VI_1".into());
        assert!(compose(&c, &rt, &Hops::default())[0].active);
        assert_eq!(
            compose_service(&c, &rt, &Hops::default(), &c.services[0]),
            compose(&c, &rt, &Hops::default())[0]
        );
    }

    fn cmd(w: &str) -> Option<Command> {
        Some(Command(vec![w.into()]))
    }

    #[test]
    fn quorum_crossings_with_hysteresis_notify_once() {
        // Weights 3 and 2; quorum 4 ± 1: up at ≥ 5, down below 3.
        let mut c = checked(config());
        let l = &mut c.services[0].lifecycle;
        l.quorum = 4;
        l.hysteresis = 1;
        l.quorum_up = cmd("up");
        l.quorum_down = cmd("down");
        c.services[0].reals[0].lifecycle.notify_down = cmd("rs-down");
        let mut rt = Runtime::default();
        assert!(rt.quorum_up(&c.services[0]), "starts with 5");
        let n = rt.set_health(&c, key(&c, 1), Health::Down);
        assert_eq!(
            n,
            vec![Notice::Real {
                key: key(&c, 1),
                up: false,
                command: None
            }],
            "3 is not below 4 - 1: quorum kept"
        );
        let n = rt.set_health(&c, key(&c, 0), Health::Down);
        assert_eq!(n.len(), 2);
        assert_eq!(
            n[0],
            Notice::Real {
                key: key(&c, 0),
                up: false,
                command: cmd("rs-down")
            }
        );
        assert_eq!(
            n[1],
            Notice::Quorum {
                service: c.services[0].id,
                up: false,
                command: cmd("down"),
                weight_sum: 0,
            }
        );
        // Same verdict again: nothing to say.
        assert!(rt.set_health(&c, key(&c, 0), Health::Down).is_empty());
        // 3 is below 4 + 1: still no quorum; 5 regains it.
        let n = rt.set_health(&c, key(&c, 0), Health::Up { weight: None });
        assert_eq!(n.len(), 1);
        assert!(!rt.quorum_up(&c.services[0]));
        let n = rt.set_health(&c, key(&c, 1), Health::Up { weight: None });
        assert_eq!(
            n[1],
            Notice::Quorum {
                service: c.services[0].id,
                up: true,
                command: cmd("up"),
                weight_sum: 5,
            }
        );
        // A dynamic weight can lose the quorum without a real going down.
        let n = rt.set_health(&c, key(&c, 0), Health::Up { weight: Some(0) });
        assert!(matches!(n[..], [Notice::Quorum { up: false, .. }]), "{n:?}");
    }

    #[test]
    fn sorry_server_only_while_quorum_is_lost() {
        let mut c = checked(config());
        c.services[0].lifecycle.sorry_server = Some(SorryServer {
            address: "10.1.0.99".parse().unwrap(),
            port: 80,
            inhibit: false,
        });
        let sorry: IpAddr = "10.1.0.99".parse().unwrap();
        let mut rt = Runtime::default();
        let d = compose(&c, &rt, &Hops::default());
        assert!(!weights(&d).iter().any(|(a, _)| *a == sorry));
        rt.set_health(&c, key(&c, 0), Health::Down);
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(weights(&d), vec![("10.1.0.2".parse().unwrap(), 2)]);
        rt.set_health(&c, key(&c, 1), Health::Down);
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(weights(&d), vec![(sorry, 1)], "every real down");
        rt.set_health(&c, key(&c, 1), Health::Up { weight: None });
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(weights(&d), vec![("10.1.0.2".parse().unwrap(), 2)]);
        // sorry_server_inhibit: present at weight 0 while not needed.
        c.services[0]
            .lifecycle
            .sorry_server
            .as_mut()
            .unwrap()
            .inhibit = true;
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(
            weights(&d),
            vec![("10.1.0.2".parse().unwrap(), 2), (sorry, 0)]
        );
        // Quorum lost with a sorry server: live inhibit_on_failure reals stay at 0.
        c.services[0].lifecycle.quorum = 3;
        c.services[0].reals[1].lifecycle.inhibit_on_failure = true;
        rt.set_health(&c, key(&c, 1), Health::Up { weight: Some(1) });
        let d = compose(&c, &rt, &Hops::default());
        assert_eq!(
            weights(&d),
            vec![("10.1.0.2".parse().unwrap(), 0), (sorry, 1)]
        );
    }

    #[test]
    fn omega_announces_every_live_real_and_the_quorum_at_stop() {
        let mut c = checked(config());
        let rt = Runtime::default();
        assert!(rt.stopping(&c).is_empty(), "without omega");
        c.services[0].lifecycle.omega = true;
        let n = rt.stopping(&c);
        assert_eq!(n.len(), 3);
        assert!(matches!(n[2], Notice::Quorum { up: false, .. }));
    }
}
