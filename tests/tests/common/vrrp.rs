//! VRRP test helpers shared by vrrp_netns and vrrp_keepalived: an `xlb run`
//! director with its own pin path and status file, instance configs, and
//! an advert capture in the observer namespace.

use super::xlb_bin;
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use lb_common::{SERVICE_F_ACTIVE, ServiceInfo, ServiceKey, map_names};
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};
use xlb::vrrp::{counters, packet};
use xlb_testbed::{agent::Agent, netns::Netns, vrrp::wait_until};

/// Long enough for any election here (the slowest: v2, 1 s adverts, ~4 s).
pub const ELECTION: Duration = Duration::from_secs(20);
static SEQ: AtomicU32 = AtomicU32::new(0);

/// One `xlb run` in a director namespace, with its own pin path; removes
/// its pins and status file when dropped (also after SIGKILL).
pub struct Director {
    agent: Option<Agent>,
    config: PathBuf,
    pub pin: PathBuf,
}

/// The config file: the data plane on `eth0` pinned at `pin`, then `body`.
fn config_text(pin: &std::path::Path, body: &str) -> String {
    format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n{body}",
        pin.display()
    )
}

impl Director {
    pub fn start(ns: &Netns, dir: &std::path::Path, body: &str) -> Director {
        Director::start_with(ns, dir, body, &[])
    }

    /// As [`Director::start`], with extra arguments after `run` (`--dont-release-vrrp`).
    pub fn start_with(
        ns: &Netns,
        dir: &std::path::Path,
        body: &str,
        run_args: &[&str],
    ) -> Director {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-vrrp-{}-{n}", std::process::id()));
        let config = dir.join(format!("xlb-{n}.toml"));
        std::fs::write(&config, config_text(&pin, body)).unwrap();
        let mut run: Vec<&std::ffi::OsStr> = run_args.iter().map(std::ffi::OsStr::new).collect();
        run.extend(["--config".as_ref(), config.as_os_str()]);
        let never = std::sync::atomic::AtomicBool::new(false);
        let ready = std::time::Duration::from_secs(30);
        let agent = Agent::start_run(ns, &xlb_bin(), &[], &run, ready, &never).unwrap();
        Director {
            agent: Some(agent),
            config,
            pin,
        }
    }

    /// Rewrites the config with `body` and sends SIGHUP; returns once the
    /// agent logged the reload's outcome (`reload: done`, or nothing changed).
    pub fn reload(&self, body: &str) {
        std::fs::write(&self.config, config_text(&self.pin, body)).unwrap();
        let outcomes = |log: Vec<String>| {
            log.iter()
                .filter(|l| l.contains("reload: done") || l.contains("reload: nothing changed"))
                .count()
        };
        let agent = self.agent.as_ref().unwrap();
        let before = outcomes(agent.log());
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
        wait_until("the reload's outcome in the log", ELECTION, || {
            outcomes(agent.log()) > before
        })
        .unwrap();
    }

    /// Rewrites the config with `body` and runs `xlb reload` against the
    /// agent; its output (the command waits for the reload's outcome).
    pub fn xlb_reload(&self, body: &str) -> std::process::Output {
        std::fs::write(&self.config, config_text(&self.pin, body)).unwrap();
        let agent = self.agent.as_ref().unwrap();
        std::process::Command::new(xlb_bin())
            .arg("reload")
            .arg("--pid-file")
            .arg(agent.pid_file().expect("test agents have a pid file"))
            .output()
            .unwrap()
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.agent.as_ref().expect("running").pid()
    }

    /// The agent's log so far.
    pub fn log(&self) -> Vec<String> {
        self.agent.as_ref().map(Agent::log).unwrap_or_default()
    }

    /// Starts the agent again after [`Director::kill`], with the same config
    /// and pin path: it adopts the data plane the killed agent left.
    pub fn restart(&mut self, ns: &Netns) {
        assert!(self.agent.is_none(), "restart after kill");
        self.agent = Some(Agent::start(ns, &xlb_bin(), &self.config).unwrap());
    }

    /// As [`Director::restart`], with `body` as the new config.
    pub fn restart_with(&mut self, ns: &Netns, body: &str) {
        std::fs::write(&self.config, config_text(&self.pin, body)).unwrap();
        self.restart(ns);
    }

    pub fn status(&self) -> Option<counters::InstanceStatus> {
        self.instance("VI_1")
    }

    pub fn instance(&self, name: &str) -> Option<counters::InstanceStatus> {
        counters::read(&self.pin)
            .ok()
            .flatten()
            .and_then(|s| s.instances.into_iter().find(|i| i.name == name))
    }

    pub fn state(&self) -> String {
        self.status().map(|s| s.state).unwrap_or_default()
    }

    pub fn wait_state(&self, state: &str) {
        wait_until(&format!("state {state}"), ELECTION, || {
            self.state() == state
        })
        .unwrap_or_else(|e| panic!("{e} (now {:?})", self.status()));
    }

    pub fn kill(&mut self) {
        let a = self.agent.take().unwrap();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(a.pid() as i32, libc::SIGKILL) };
        drop(a);
    }

    pub fn stop(&mut self) {
        self.agent.take().unwrap().stop().unwrap();
    }

    /// Whether every service in the pinned SERVICES map is active.
    pub fn services_active(&self) -> Vec<bool> {
        let data = MapData::from_pin(self.pin.join(map_names::SERVICES)).unwrap();
        let map: BpfHashMap<MapData, ServiceKey, ServiceInfo> =
            BpfHashMap::try_from(Map::from_map_data(data).unwrap()).unwrap();
        map.iter()
            .map(|kv| kv.unwrap().1.flags & SERVICE_F_ACTIVE != 0)
            .collect()
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        drop(self.agent.take());
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = std::fs::remove_file(counters::status_path(&self.pin));
    }
}

/// VI_1 on eth0, VRID 51, VIP 10.9.0.100, with `extra` keys.
pub fn instance(priority: u8, extra: &str) -> String {
    format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {priority}\nvirtual_ipaddress = [\"10.9.0.100/24\"]\n{extra}\n"
    )
}

/// v3 with 200 ms adverts keeps the tests quick.
pub const FAST: &str = "version = 3\nadvert_int = 0.2\n";

/// Adverts seen by the observer during `f`: (source, priority), in order.
pub fn capture_during(obs: &Netns, limit: Duration, f: impl FnOnce()) -> Vec<(IpAddr, u8)> {
    let sock = obs
        .enter(|| {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 18), &Ipv4Addr::new(10, 9, 0, 2))
                .unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .unwrap();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut seen = Vec::new();
            let end = Instant::now() + limit;
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
            while Instant::now() < end {
                if let Ok(n) = sock.recv(&mut buf) {
                    // SAFETY: recv initialised the first n bytes.
                    let b: Vec<u8> = buf[..n]
                        .iter()
                        .map(|x| unsafe { x.assume_init() })
                        .collect();
                    if let Ok((rx, msg)) = packet::split_ipv4(&b)
                        && msg.len() > 2
                    {
                        seen.push((rx.src, msg[2]));
                    }
                }
            }
            seen
        });
        f();
        h.join().unwrap()
    })
}
