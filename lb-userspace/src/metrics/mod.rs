//! The Prometheus endpoint. One [`Registry`] holds every family; each part
//! of the agent adds its own before the endpoint starts serving:
//!
//! - state read at scrape time (the data plane's maps) implements
//!   prometheus-client's [`Collector`](prometheus_client::collector::Collector)
//!   and is added with `Registry::register_collector` (see [`dataplane`]);
//! - state the agent changes as it goes (VRRP transitions, checker results)
//!   keeps a `Family<Labels, Counter | Gauge | Histogram>` handle, registered
//!   once with `Registry::register`, and updates it in place.
//!
//! Names start with `xlb_`; counters end in `_total`.

pub mod bgp;
pub mod checks;
pub mod dataplane;
pub mod exposition;
pub mod family;
pub mod flows;
pub mod maglev;
pub mod next_hops;
pub mod process;
pub mod reloads;
mod server;
pub mod vrrp;

pub use server::serve;

use crate::snapshot::Plane;
use prometheus_client::registry::Registry;
use std::path::Path;

/// What the agent's parts share with the endpoint, each read at scrape time.
#[derive(Clone, Default)]
pub struct Sources {
    pub vrrp: crate::vrrp::counters::Counters,
    pub checks: crate::check::board::CheckBoard,
    pub maglev: maglev::ChurnBoard,
    pub reloads: reloads::ReloadCounters,
    pub next_hops: crate::neigh::Counters,
    pub bgp: crate::bgp::Board,
}

/// A registry with every family: the data plane's, read where `plane`
/// keeps its state (XDP: the maps pinned in `pin_dir`; IPVS: the kernel),
/// (the flow table's families with them), and VRRP's, the checkers',
/// Maglev churn, reloads and (XDP only) the next-hop passes from `sources`.
pub fn registry(plane: Plane, pin_dir: &Path, sources: &Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(process::ProcessCollector));
    registry.register_collector(Box::new(dataplane::DataplaneCollector::new(plane, pin_dir)));
    registry.register_collector(Box::new(vrrp::VrrpCollector::new(sources.vrrp.clone())));
    registry.register_collector(Box::new(checks::CheckCollector::new(
        sources.checks.clone(),
    )));
    registry.register_collector(Box::new(maglev::MaglevCollector::new(
        sources.maglev.clone(),
    )));
    registry.register_collector(Box::new(reloads::ReloadCollector::new(
        sources.reloads.clone(),
    )));
    registry.register_collector(Box::new(bgp::BgpCollector::new(sources.bgp.clone())));
    // Under IPVS the kernel routes to the reals: no next hops are kept.
    if plane == Plane::Xdp {
        registry.register_collector(Box::new(next_hops::NextHopCollector::new(
            sources.next_hops.clone(),
        )));
    }
    registry
}

/// The registry in Prometheus' text exposition format.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config;

    const DP: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

    fn listen(extra: &str) -> Result<Option<std::net::SocketAddr>, String> {
        config::parse("x.toml", &format!("{DP}{extra}"))
            .map(|c| c.metrics.listen)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn on_at_loopback_by_default_and_off_two_ways() {
        let default = Some(config::defaults::METRICS_LISTEN.parse().unwrap());
        assert_eq!(listen(""), Ok(default));
        assert_eq!(listen("[metrics]\n"), Ok(default));
        assert_eq!(
            listen("[metrics]\nlisten = \"[::1]:9100\"\n"),
            Ok(Some("[::1]:9100".parse().unwrap()))
        );
        assert_eq!(listen("[metrics]\nlisten = \"\"\n"), Ok(None));
        assert_eq!(listen("[metrics]\nenabled = false\n"), Ok(None));
    }

    #[test]
    fn a_bad_address_is_located() {
        let err = listen("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(
            err.starts_with("x.toml:4:10: `localhost` is not an address:port"),
            "{err}"
        );
        let err = listen("[metrics]\nport = 1\n").unwrap_err();
        assert!(err.starts_with("x.toml:4:1: unknown field `port`"), "{err}");
    }

    #[test]
    fn bounds_default_small_and_are_checked() {
        let parse = |extra: &str| {
            config::parse("x.toml", &format!("{DP}[metrics]\n{extra}"))
                .map(|c| c.metrics)
                .map_err(|e| e.to_string())
        };
        let d = parse("").unwrap();
        assert_eq!(d, config::Metrics::default());
        assert_eq!(d.max_connections, 8);
        assert_eq!(d.header_timeout, std::time::Duration::from_secs(5));
        let m = parse("max_connections = 2\nheader_timeout = 0.5\nidle_timeout = 30\n").unwrap();
        assert_eq!(m.max_connections, 2);
        assert_eq!(m.header_timeout, std::time::Duration::from_millis(500));
        assert_eq!(m.idle_timeout, std::time::Duration::from_secs(30));
        let err = parse("max_connections = 0\n").unwrap_err();
        assert!(
            err.starts_with("x.toml:4:19: `max_connections` must be from 1 to 1024"),
            "{err}"
        );
        let err = parse("header_timeout = 0\n").unwrap_err();
        assert!(
            err.starts_with("x.toml:4:18: `header_timeout` must be a number of seconds above 0"),
            "{err}"
        );
        let err = parse("idle_timeout = -1\n").unwrap_err();
        assert!(err.starts_with("x.toml:4:16: `idle_timeout`"), "{err}");
    }
}
