//! Which VIPs this director announces, and why: a pure function of what
//! the agent knows (data plane attached, interfaces up, usable reals per
//! service, VRRP mastership of tied instances, draining), so that every
//! rule is a host unit test. The IO (include, bird) is in `speaker.rs`.

use crate::config::{Config, ServiceId, bgp::AnnouncePolicy};
use crate::dataplane::DesiredService;
use serde::{Deserialize, Serialize};
use std::{collections::HashSet, net::IpAddr};

/// What a service can serve now, from the desired state the data plane was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFacts {
    pub id: ServiceId,
    /// Reals that take new flows: forwarded (the service active), weight
    /// above 0 and, where the plane needs one, a next hop.
    pub usable_reals: usize,
}

/// [`ServiceFacts`] of every service of `desired`; `next_hops`: the plane
/// forwards through resolved next hops (XDP), so a real without one is unusable.
pub fn service_facts(desired: &[DesiredService], next_hops: bool) -> Vec<ServiceFacts> {
    desired
        .iter()
        .map(|d| ServiceFacts {
            id: d.id,
            usable_reals: if d.active {
                d.reals
                    .iter()
                    .filter(|r| r.effective_weight > 0 && (!next_hops || r.next_hop.is_some()))
                    .count()
            } else {
                0
            },
        })
        .collect()
}

/// Everything a decision depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The data plane forwards: XDP attached to every interface (or IPVS running).
    pub attached: bool,
    /// Data-plane interfaces that are down (not up with carrier), sorted.
    pub links_down: Vec<String>,
    /// VRRP instances that are Master now.
    pub masters: HashSet<String>,
    /// Per service, in config order.
    pub services: Vec<ServiceFacts>,
    /// `xlb drain` (or SIGTERM with `on_sigterm = "drain"`) is under way.
    pub draining: bool,
    /// The agent stops and withdraws (`on_sigterm = "withdraw"`).
    pub stopping: bool,
}

/// Why a VIP is announced or not; the first rule that applies, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Why {
    Draining,
    Stopping,
    /// XDP is not attached (detached by someone, or not started).
    Detached,
    InterfaceDown {
        interface: String,
    },
    /// The VRRP instance the VIP follows is not Master.
    NotMaster {
        instance: String,
    },
    /// A service of the VIP has no usable real (`announce = "when-healthy"`).
    NoUsableReal {
        service: String,
    },
    /// Every service of the VIP has a usable real.
    Healthy,
    /// `announce = "always"`: the reals' health is not consulted.
    Always,
}

impl Why {
    /// The reason as one word, for metrics labels and the status table.
    pub fn word(&self) -> &'static str {
        match self {
            Why::Draining => "draining",
            Why::Stopping => "stopping",
            Why::Detached => "detached",
            Why::InterfaceDown { .. } => "interface-down",
            Why::NotMaster { .. } => "not-master",
            Why::NoUsableReal { .. } => "no-usable-real",
            Why::Healthy => "healthy",
            Why::Always => "always",
        }
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::InterfaceDown { interface } => write!(f, "interface {interface} is down"),
            Why::NotMaster { instance } => write!(f, "VRRP instance {instance} is not Master"),
            Why::NoUsableReal { service } => write!(f, "{service} has no usable real"),
            Why::Detached => f.write_str("the data plane is not attached"),
            other => f.write_str(other.word()),
        }
    }
}

/// One VIP's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub vip: IpAddr,
    pub announce: bool,
    pub why: Why,
}

/// The decision for every `[[bgp.vip]]` of `config`, in config order (none without `[bgp]`).
pub fn decide(config: &Config, facts: &Facts) -> Vec<Decision> {
    let Some(bgp) = &config.bgp else {
        return Vec::new();
    };
    bgp.vips
        .iter()
        .map(|v| {
            let withdrawn = |why| Decision {
                vip: v.address,
                announce: false,
                why,
            };
            if facts.draining {
                return withdrawn(Why::Draining);
            }
            if facts.stopping {
                return withdrawn(Why::Stopping);
            }
            if !facts.attached {
                return withdrawn(Why::Detached);
            }
            if let Some(i) = facts.links_down.first() {
                return withdrawn(Why::InterfaceDown {
                    interface: i.clone(),
                });
            }
            if let Some(i) = v.tied_instance(config)
                && !facts.masters.contains(i)
            {
                return withdrawn(Why::NotMaster {
                    instance: i.to_string(),
                });
            }
            if bgp.announce == AnnouncePolicy::Always {
                return Decision {
                    vip: v.address,
                    announce: true,
                    why: Why::Always,
                };
            }
            // Every service of the VIP must serve: a VIP attracts all its
            // ports' traffic, and a port this director cannot serve would be
            // dropped here while another director could serve it.
            let empty = v.services(config).find(|s| {
                facts
                    .services
                    .iter()
                    .find(|f| f.id == s.id)
                    .is_none_or(|f| f.usable_reals == 0)
            });
            match empty {
                Some(s) => withdrawn(Why::NoUsableReal {
                    service: s.id.to_string(),
                }),
                None => Decision {
                    vip: v.address,
                    announce: true,
                    why: Why::Healthy,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        crate::config::parse(
            "t.toml",
            &format!(
                r#"
[dataplane]
interfaces = ["eth0"]
[[service]]
vip = "10.0.0.10"
port = 80
[[service.real]]
address = "192.168.1.1"
[[service]]
vip = "10.0.0.10"
port = 443
[[service.real]]
address = "192.168.1.1"
[[service]]
vip = "10.0.0.20"
port = 80
[[service.real]]
address = "192.168.1.1"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 100
virtual_ipaddress = ["10.0.0.20/32"]
[bgp]
{extra}
[[bgp.vip]]
address = "10.0.0.10"
[[bgp.vip]]
address = "10.0.0.20"
"#
            ),
        )
        .unwrap()
    }

    /// Everything healthy: attached, links up, VI_1 Master, one real each.
    fn healthy(c: &Config) -> Facts {
        Facts {
            attached: true,
            masters: ["VI_1".to_string()].into(),
            services: c
                .services
                .iter()
                .map(|s| ServiceFacts {
                    id: s.id,
                    usable_reals: 1,
                })
                .collect(),
            ..Facts::default()
        }
    }

    fn words(d: &[Decision]) -> Vec<(bool, &'static str)> {
        d.iter().map(|d| (d.announce, d.why.word())).collect()
    }

    #[test]
    fn healthy_vips_are_announced() {
        let c = config("");
        assert_eq!(
            words(&decide(&c, &healthy(&c))),
            [(true, "healthy"), (true, "healthy")]
        );
    }

    #[test]
    fn a_service_losing_its_last_real_withdraws_its_vip_only() {
        let c = config("");
        let mut f = healthy(&c);
        f.services[1].usable_reals = 0;
        let d = decide(&c, &f);
        assert_eq!(words(&d), [(false, "no-usable-real"), (true, "healthy")]);
        assert_eq!(d[0].why.to_string(), "TCP 10.0.0.10:443 has no usable real");
        // `always` does not look at the reals.
        let c = config("announce = \"always\"");
        assert_eq!(words(&decide(&c, &f)), [(true, "always"), (true, "always")]);
    }

    #[test]
    fn the_tied_instance_leaving_master_withdraws_its_vip() {
        let c = config("");
        let mut f = healthy(&c);
        f.masters.clear();
        assert_eq!(
            words(&decide(&c, &f)),
            [(true, "healthy"), (false, "not-master")]
        );
    }

    #[test]
    fn detach_link_down_drain_and_stop_withdraw_everything_even_under_always() {
        let c = config("announce = \"always\"");
        type Change = fn(&mut Facts);
        let cases: [(&str, Change); 4] = [
            ("detached", |f| f.attached = false),
            ("interface-down", |f| f.links_down = vec!["eth0".into()]),
            ("draining", |f| f.draining = true),
            ("stopping", |f| f.stopping = true),
        ];
        for (word, change) in cases {
            let mut f = healthy(&c);
            change(&mut f);
            assert_eq!(
                words(&decide(&c, &f)),
                [(false, word), (false, word)],
                "{word}"
            );
        }
    }

    #[test]
    fn usable_reals_need_weight_activity_and_a_next_hop() {
        use crate::dataplane::DesiredReal;
        let c = config("");
        let s = &c.services[0];
        let real = DesiredReal {
            address: s.reals[0].address,
            port: 80,
            effective_weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            next_hop: None,
        };
        let mut desired = vec![DesiredService {
            id: s.id,
            scheduler: s.scheduler,
            method: s.method,
            tunnel: None,
            active: true,
            flags: s.flags,
            persistence: None,
            reals: vec![real],
        }];
        // No next hop resolved: unusable under XDP, usable under IPVS.
        assert_eq!(service_facts(&desired, true)[0].usable_reals, 0);
        assert_eq!(service_facts(&desired, false)[0].usable_reals, 1);
        desired[0].reals[0].effective_weight = 0;
        assert_eq!(service_facts(&desired, false)[0].usable_reals, 0);
        desired[0].reals[0].effective_weight = 1;
        desired[0].active = false;
        assert_eq!(service_facts(&desired, false)[0].usable_reals, 0);
    }
}
