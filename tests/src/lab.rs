//! The LVS lab topologies, each host in its own namespace. DR: client,
//! director and real servers on one bridge, the VIP on the director's eth0
//! and on every real's `lo`. NAT: the classic two-armed director, clients on
//! one bridge (director eth0, holding the VIP), real servers on a second one
//! (director eth1) with the director as their default gateway; or one-armed,
//! everything on one bridge and the reals on a subnet of their own.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use aya::Ebpf;
use aya::programs::{Xdp, XdpMode};

use crate::agent::Agent;
use crate::http::{HttpConn, HttpServer, serve_name};
use crate::netns::Netns;
use crate::udp::{UdpServer, serve_udp_name};

/// Host part of the first real's address (10.250.0.11, fd00:250::11).
const FIRST_REAL: u16 = 11;
/// Host part of the VIP; reals must stay below it.
const VIP_HOST: u16 = 100;
const MAX_REALS: usize = (VIP_HOST - FIRST_REAL) as usize;
/// Standby directors take hosts 3.. below the client's 10.
const STANDBY_MAX: u16 = 7;
/// Switch-side name of the director's veth (where `peer_xdp` attaches).
const DIRECTOR_PEER: &str = "dir";
/// Switch-side name of the director's inner veth (NAT).
const DIRECTOR_INNER_PEER: &str = "dir1";
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Client-side and real-side networks (third octet / IPv6 group).
const OUTER_NET: u16 = 250;
const INNER_NET: u16 = 251;
/// NAT reals listen here, not on the service port, so the rewrite shows.
pub const NAT_REAL_PORT: u16 = 8080;

/// Which LVS forwarding method the lab is wired for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabMethod {
    #[default]
    Dr,
    Nat,
    /// LVS-NAT with a one-armed director: client, director and reals share
    /// one bridge; the reals sit on their own subnet with the director's
    /// second address on `eth0` as their gateway.
    NatOneArm,
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// One real server per entry, named real1, real2, ...
    pub weights: Vec<u32>,
    /// Use IPv6 addresses (and VIP) instead of IPv4.
    pub ipv6: bool,
    /// Service port.
    pub port: u16,
    /// eBPF object file and program name of a trivial XDP_PASS program to
    /// attach (driver mode) to the switch-side peer of the director's veth:
    /// veth delivers native XDP_TX frames only to a peer that runs XDP.
    pub peer_xdp: Option<(PathBuf, String)>,
    /// The forwarding method the topology is built for.
    pub method: LabMethod,
    /// Where the agent pins its maps. Tests default to a directory of their
    /// own so that several test runs on one machine never share maps.
    pub pin_path: PathBuf,
    /// Also a UDP service on this port: each real answers datagrams to the
    /// VIP with its name.
    pub udp_port: Option<u16>,
    /// Further directors on the same bridge (DR only), for VRRP: with any,
    /// no director holds the VIP from the start; VRRP puts it on the Master.
    pub standby_directors: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            weights: vec![1, 1, 1],
            ipv6: false,
            port: 80,
            peer_xdp: None,
            method: LabMethod::Dr,
            pin_path: PathBuf::from(format!("/sys/fs/bpf/xlb-test-{}", std::process::id())),
            udp_port: None,
            standby_directors: 0,
        }
    }
}

/// One real server: its namespace and the HTTP server answering with `name`.
#[derive(Debug)]
pub struct Real {
    pub name: String,
    pub ns: Netns,
    pub addr: IpAddr,
    pub weight: u32,
    pub server: HttpServer,
    pub udp: Option<UdpServer>,
}

/// A further director (VRRP Backup); switch port `dir2`, `dir3`, ...
#[derive(Debug)]
pub struct StandbyDirector {
    pub ns: Netns,
    /// On `eth0` (10.250.0.3, .4, ...).
    pub addr: IpAddr,
    /// The switch-side name of its veth.
    pub port: String,
}

pub struct DrLab {
    /// Holds bridge `br0` and the switch-side peer of every host's veth.
    pub switch: Netns,
    /// Interface `eth0`.
    pub client: Netns,
    /// Interface `eth0` (the XDP attach point), which also holds the VIP.
    pub director: Netns,
    /// Interface `eth0`, VIP on `lo`.
    pub reals: Vec<Real>,
    pub vip: IpAddr,
    pub port: u16,
    pub director_addr: IpAddr,
    pub client_addr: IpAddr,
    pub director_if: String,
    pub pin_path: PathBuf,
    pub method: LabMethod,
    pub udp_port: Option<u16>,
    /// [`LabOptions::standby_directors`]: `eth0` like `director`, no VIP.
    pub standby: Vec<StandbyDirector>,
    ipv6: bool,
    /// Keeps the peer XDP program attached while the lab lives.
    peer_ebpf: Option<Ebpf>,
}

impl DrLab {
    /// Build the whole topology; on any error everything created so far is
    /// removed (each piece cleans itself up on Drop).
    pub fn build(opts: &LabOptions) -> Result<DrLab> {
        crate::require_root()?;
        if opts.weights.len() > MAX_REALS {
            bail!("at most {MAX_REALS} reals fit the address plan");
        }
        if opts.port == 0 {
            bail!("service port must not be 0");
        }
        if opts.standby_directors > 0 && opts.method != LabMethod::Dr {
            bail!("more than one director is wired for DR only");
        }
        if opts.standby_directors > usize::from(STANDBY_MAX) {
            bail!("at most {STANDBY_MAX} standby directors fit the address plan");
        }
        // Fail before creating anything rather than halfway through.
        if !in_path("ethtool") {
            bail!(
                "`ethtool` is required (to turn off TX checksum offload on the lab's veths); \
                 install the Debian package `ethtool`"
            );
        }
        if let Err(e) = crate::sweep_stale() {
            eprintln!("xlb-testbed: sweeping what killed runs left failed: {e:#}");
        }
        let ipv6 = opts.ipv6;
        let nat = matches!(opts.method, LabMethod::Nat | LabMethod::NatOneArm);
        let two_arms = opts.method == LabMethod::Nat;
        let vip = host_addr(ipv6, OUTER_NET, VIP_HOST);
        let director_addr = host_addr(ipv6, OUTER_NET, 2);
        let client_addr = host_addr(ipv6, OUTER_NET, 10);
        let gateway = host_addr(ipv6, INNER_NET, 1);

        let switch = Netns::create("sw")?;
        switch.run(
            "ip",
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        switch.run("ip", &["link", "set", "br0", "up"])?;
        let real_bridge = if two_arms { "br1" } else { "br0" };
        if two_arms {
            switch.run(
                "ip",
                &["link", "add", "br1", "type", "bridge", "forward_delay", "0"],
            )?;
            switch.run("ip", &["link", "set", "br1", "up"])?;
        }

        let client = add_host(&switch, "cl", "cl")?;
        add_addr(&client, "eth0", client_addr, false)?;

        let director = add_host(&switch, "dir", DIRECTOR_PEER)?;
        add_addr(&director, "eth0", director_addr, false)?;
        // The director owns the VIP on the wire: it answers ARP/ND for it
        // (with several, VRRP gives it to the Master).
        if opts.standby_directors == 0 {
            add_addr(&director, "eth0", vip, true)?;
        }
        let mut standby = Vec::with_capacity(opts.standby_directors);
        for i in 0..opts.standby_directors as u16 {
            let port = format!("{DIRECTOR_PEER}{}", i + 2);
            let ns = add_host(&switch, &port, &port)?;
            let addr = host_addr(ipv6, OUTER_NET, 3 + i);
            add_addr(&ns, "eth0", addr, false)?;
            standby.push(StandbyDirector { ns, addr, port });
        }
        if nat {
            if two_arms {
                add_port(&switch, &director, DIRECTOR_INNER_PEER, "eth1", "br1")?;
                add_addr(&director, "eth1", gateway, false)?;
            } else {
                add_addr(&director, "eth0", gateway, false)?;
                // Packets the stack forwards (no neighbour yet for XDP) leave
                // by the interface they came in on: no redirects to the reals.
                for dev in ["all", "eth0"] {
                    director.sysctl(&format!("net.ipv4.conf.{dev}.send_redirects"), "0")?;
                }
            }
            // LVS-NAT: the director routes between the two networks.
            director.sysctl("net.ipv4.ip_forward", "1")?;
            director.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }

        let mut reals = Vec::with_capacity(opts.weights.len());
        for (i, &weight) in opts.weights.iter().enumerate() {
            let n = i + 1;
            let ns = Netns::create(&format!("r{n}"))?;
            add_port(&switch, &ns, &format!("r{n}"), "eth0", real_bridge)?;
            let (addr, listen_port) = if nat {
                let addr = host_addr(ipv6, INNER_NET, FIRST_REAL + i as u16);
                add_addr(&ns, "eth0", addr, false)?;
                // LVS-NAT: replies must go back through the director.
                ns.run(
                    "ip",
                    &["route", "add", "default", "via", &gateway.to_string()],
                )?;
                (addr, NAT_REAL_PORT)
            } else {
                // LVS-DR: reals accept VIP traffic but never answer ARP for it,
                // and never use it as the source of their own ARP requests.
                for dev in ["all", "eth0"] {
                    ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                    ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
                }
                let addr = host_addr(ipv6, OUTER_NET, FIRST_REAL + i as u16);
                add_addr(&ns, "eth0", addr, false)?;
                add_addr(&ns, "lo", vip, true)?;
                (addr, opts.port)
            };
            let name = format!("real{n}");
            // Wildcard bind so packets addressed to the VIP are accepted too.
            let bind = if ipv6 { "[::]" } else { "0.0.0.0" };
            let server = serve_name(&ns, format!("{bind}:{listen_port}").parse()?, &name)?;
            // DR/TUN: bound to the VIP itself, so replies leave from the VIP.
            let udp_addr = if nat { addr } else { vip };
            let udp = match opts.udp_port {
                Some(port) => Some(serve_udp_name(&ns, SocketAddr::new(udp_addr, port), &name)?),
                None => None,
            };
            reals.push(Real {
                name,
                ns,
                addr,
                weight,
                server,
                udp,
            });
        }

        let mut peers = vec![DIRECTOR_PEER];
        if two_arms {
            peers.push(DIRECTOR_INNER_PEER);
        }
        peers.extend(standby.iter().map(|s| s.port.as_str()));
        let peer_ebpf = match &opts.peer_xdp {
            Some((path, prog)) => Some(attach_peer_xdp(&switch, path, prog, &peers)?),
            None => None,
        };

        let lab = DrLab {
            switch,
            client,
            director,
            reals,
            vip,
            port: opts.port,
            director_addr,
            client_addr,
            director_if: "eth0".to_string(),
            pin_path: opts.pin_path.clone(),
            method: opts.method,
            udp_port: opts.udp_port,
            standby,
            ipv6,
            peer_ebpf,
        };
        lab.wait_reachable()?;
        Ok(lab)
    }

    pub fn vip_socket(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }

    /// `n` new HTTP connections from the client to the VIP, each answered
    /// by a real's name: how many each real answered.
    ///
    /// Each connection comes from a source port no earlier one used (below
    /// the kernel's ephemeral range): a reused port would be an old flow,
    /// which keeps its real even when that real takes no new connections.
    pub fn spread(&self, n: usize, timeout: Duration) -> Result<BTreeMap<String, usize>> {
        static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let any = match self.vip {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let mut seen = BTreeMap::new();
        for i in 0..n {
            let k = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = 10_000 + (k % 22_000) as u16;
            let name = HttpConn::open_bound(
                &self.client,
                SocketAddr::new(any, port),
                self.vip_socket(),
                timeout,
            )
            .and_then(|mut c| c.request(true))
            .with_context(|| format!("request {} of {n} through the VIP", i + 1))?;
            *seen.entry(name).or_insert(0) += 1;
        }
        Ok(seen)
    }

    /// What `xlb status` prints for this lab's pinned maps.
    pub fn status(&self, xlb: &std::path::Path) -> Result<String> {
        let out = std::process::Command::new(xlb)
            .args(["status", "--pin-path"])
            .arg(&self.pin_path)
            .output()
            .with_context(|| format!("running {}", xlb.display()))?;
        if !out.status.success() {
            bail!(
                "xlb status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The `nodest expired N` counter of `xlb status`: flows the director
    /// dropped because their real had left.
    pub fn nodest_expired(&self, xlb: &std::path::Path) -> Result<u64> {
        let status = self.status(xlb)?;
        status
            .split("nodest expired ")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no nodest counter in {status}"))
    }

    /// Switch-side name of the director's veth (where `peer_xdp` attaches).
    pub fn director_peer_if(&self) -> &str {
        DIRECTOR_PEER
    }

    /// An `xlb` config balancing the lab's service over its reals from the
    /// director's interface.
    pub fn agent_config(&self, scheduler: &str, method: &str, xdp_mode: &str) -> String {
        self.agent_config_full(&self.pin_path, scheduler, method, xdp_mode, None, "")
    }

    /// As [`DrLab::agent_config`]; with `gue_port` a `tun` service uses GUE
    /// to that port instead of IPIP.
    pub fn agent_config_gue(
        &self,
        scheduler: &str,
        method: &str,
        xdp_mode: &str,
        gue_port: Option<u16>,
    ) -> String {
        self.agent_config_full(&self.pin_path, scheduler, method, xdp_mode, gue_port, "")
    }

    /// As [`DrLab::agent_config`], with `extra` TOML lines in the service
    /// (scheduler flags, persistence).
    pub fn agent_config_with(
        &self,
        scheduler: &str,
        method: &str,
        xdp_mode: &str,
        extra: &str,
    ) -> String {
        self.agent_config_full(&self.pin_path, scheduler, method, xdp_mode, None, extra)
    }

    /// The lab's config: the TCP service, and the UDP one when the lab has
    /// one, each with `extra` lines; GUE with `gue_port` for `tun`.
    /// As [`DrLab::agent_config`], with maps pinned at `pin` (each of
    /// several directors needs a directory of its own).
    pub fn agent_config_pinned(
        &self,
        pin: &std::path::Path,
        scheduler: &str,
        method: &str,
        xdp_mode: &str,
    ) -> String {
        self.agent_config_full(pin, scheduler, method, xdp_mode, None, "")
    }

    fn agent_config_full(
        &self,
        pin: &std::path::Path,
        scheduler: &str,
        method: &str,
        xdp_mode: &str,
        gue_port: Option<u16>,
        extra: &str,
    ) -> String {
        let interfaces = match self.method {
            LabMethod::Nat => "\"eth0\", \"eth1\"",
            LabMethod::Dr | LabMethod::NatOneArm => "\"eth0\"",
        };
        let mut s = format!(
            "[dataplane]\ninterfaces = [{interfaces}]\nxdp_mode = \"{xdp_mode}\"\npin_path = \"{}\"\n",
            pin.display(),
        );
        let services = std::iter::once(("tcp", self.port)).chain(self.udp_port.map(|p| ("udp", p)));
        for (protocol, port) in services {
            s.push_str(&format!(
                "\n[[service]]\nvip = \"{}\"\nport = {port}\nprotocol = \"{protocol}\"\nscheduler = \"{scheduler}\"\nmethod = \"{method}\"\n{extra}",
                self.vip,
            ));
            if let Some(gue) = gue_port {
                s.push_str(&format!("tunnel = \"gue\"\ngue_port = {gue}\n"));
            }
            // NAT reals listen on their own port (TCP only; UDP keeps the service's).
            let real_port = match self.method {
                LabMethod::Nat | LabMethod::NatOneArm if protocol == "tcp" => NAT_REAL_PORT,
                _ => port,
            };
            for r in &self.reals {
                s.push_str(&format!(
                    "\n[[service.real]]\naddress = \"{}\"\nport = {real_port}\nweight = {}\n",
                    r.addr, r.weight
                ));
            }
        }
        s
    }

    /// Starts `xlb decap` on every real's `eth0` (VIPs from its `lo`), as TUN
    /// real servers without kernel tunnel modules need; stopped on drop.
    pub fn start_decap(&self, xlb: &std::path::Path, gue_port: Option<u16>) -> Result<Vec<Agent>> {
        let port = gue_port.map(|p| p.to_string());
        let mut args = vec!["--iface", "eth0"];
        if let Some(p) = &port {
            args.extend(["--gue-port", p.as_str()]);
        }
        self.reals
            .iter()
            .map(|r| {
                Agent::start_decap(&r.ns, xlb, &args)
                    .with_context(|| format!("xlb decap on {}", r.name))
            })
            .collect()
    }

    /// How a human can look around in each namespace (for `--keep`).
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let family = if self.ipv6 { "IPv6" } else { "IPv4" };
        let vip = self.vip_socket();
        let _ = writeln!(s, "xlb LVS-DR lab ({family}), service {vip}");
        let row = |s: &mut String, role: &str, ns: &Netns, what: String| {
            let _ = writeln!(s, "  {role:<9} {:<22} {what}", ns.name());
        };
        row(
            &mut s,
            "switch",
            &self.switch,
            format!("bridge br0; ports cl, {DIRECTOR_PEER}, r1..."),
        );
        row(
            &mut s,
            "client",
            &self.client,
            format!("eth0 {}", self.client_addr),
        );
        row(
            &mut s,
            "director",
            &self.director,
            format!(
                "{} {} + VIP {} (XDP attach point)",
                self.director_if, self.director_addr, self.vip
            ),
        );
        for d in &self.standby {
            row(
                &mut s,
                "director",
                &d.ns,
                format!("eth0 {} (VRRP decides who holds the VIP)", d.addr),
            );
        }
        for r in &self.reals {
            row(
                &mut s,
                &r.name,
                &r.ns,
                format!("eth0 {}, VIP on lo, weight {}", r.addr, r.weight),
            );
        }
        let client = self.client.name();
        let _ = writeln!(s, "Enter a namespace:");
        let _ = writeln!(s, "  ip netns exec NAME bash");
        let _ = writeln!(
            s,
            "  nsenter --net=/run/netns/NAME bash   (keeps /sys/fs/bpf visible)"
        );
        let _ = writeln!(s, "Try: ip netns exec {client} curl -s http://{vip}/");
        let _ = writeln!(
            s,
            "The lab (HTTP servers, peer XDP program, namespaces) lives as long as this process."
        );
        s
    }

    /// Bounded wait until the client reaches the director and every real.
    fn wait_reachable(&self) -> Result<()> {
        let deadline = Instant::now() + REACH_TIMEOUT;
        let director: Vec<(SocketAddr, bool)> = std::iter::once(self.director_addr)
            .chain(self.standby.iter().map(|s| s.addr))
            .map(|a| (SocketAddr::new(a, self.port), false))
            .collect();
        let reals: Vec<(SocketAddr, bool)> = match self.method {
            LabMethod::Nat | LabMethod::NatOneArm => self
                .reals
                .iter()
                .map(|r| (SocketAddr::new(r.addr, NAT_REAL_PORT), true))
                .collect(),
            LabMethod::Dr => self
                .reals
                .iter()
                .map(|r| (SocketAddr::new(r.addr, self.port), true))
                .collect(),
        };
        // NAT reals sit behind the director: only it reaches them directly.
        match self.method {
            LabMethod::Nat | LabMethod::NatOneArm => {
                wait_connect(&self.client, director, deadline)?;
                wait_connect(&self.director, reals, deadline)
            }
            LabMethod::Dr => wait_connect(
                &self.client,
                director.into_iter().chain(reals).collect(),
                deadline,
            ),
        }
    }
}

/// Bounded wait until `from` connects to every target (a refusal counts
/// when `must_accept` is false: it proves the host answered).
fn wait_connect(from: &Netns, targets: Vec<(SocketAddr, bool)>, deadline: Instant) -> Result<()> {
    from.enter(|| -> Result<()> {
        for (target, must_accept) in targets {
            // Each attempt is short; the deadline bounds the whole wait.
            for attempt in 0.. {
                let err = match TcpStream::connect_timeout(&target, Duration::from_millis(250)) {
                    Ok(_) => break,
                    // A refusal proves the host answered (nothing listens there).
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        if !must_accept {
                            break;
                        }
                        e
                    }
                    Err(e) => e,
                };
                if Instant::now() >= deadline || attempt >= 200 {
                    return Err(anyhow!(err)).with_context(|| {
                        format!(
                            "{target} not reachable from {} within {REACH_TIMEOUT:?}",
                            from.name()
                        )
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    })?
}

impl Drop for DrLab {
    fn drop(&mut self) {
        // Detach XDP and stop servers before the namespaces go (fields drop after).
        drop(self.peer_ebpf.take());
        for r in &mut self.reals {
            r.server.stop();
            drop(r.udp.take());
        }
        // Pins a killed agent left (pid numbers come round again: a later
        // test process would adopt them).
        let _ = std::fs::remove_dir_all(&self.pin_path);
    }
}

/// 10.`net`.0.`host` or fd00:`net`::`host` (same digits, so real1 is .11 / ::11).
fn host_addr(ipv6: bool, net: u16, host: u16) -> IpAddr {
    let text = if ipv6 {
        format!("fd00:{net}::{host}")
    } else {
        format!("10.{net}.0.{host}")
    };
    text.parse().expect("address plan yields valid addresses")
}

/// New namespace for a host, wired to bridge `br0` with `eth0` inside and
/// `port_name` on the switch.
pub(crate) fn add_host(switch: &Netns, role: &str, port_name: &str) -> Result<Netns> {
    let ns = Netns::create(role)?;
    add_port(switch, &ns, port_name, "eth0", "br0")?;
    Ok(ns)
}

/// Wires `ns` to `bridge`: `dev` inside, `port_name` on the switch; links up,
/// TX checksum offload off, IPv6 addresses usable at once.
fn add_port(switch: &Netns, ns: &Netns, port_name: &str, dev: &str, bridge: &str) -> Result<()> {
    // Addresses are usable at once instead of after duplicate detection.
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    // Created from inside the switch namespace with the peer placed directly
    // in the host namespace: neither end ever exists in the root namespace.
    switch.run(
        "ip",
        &[
            "link",
            "add",
            port_name,
            "type",
            "veth",
            "peer",
            "name",
            dev,
            "netns",
            ns.name(),
        ],
    )?;
    switch.run("ip", &["link", "set", port_name, "master", bridge, "up"])?;
    ns.run("ip", &["link", "set", dev, "up"])?;
    // A locally sent packet carries only a partial checksum with offload on,
    // and XDP_TX would forward it unfixed.
    ns.run("ethtool", &["-K", dev, "tx", "off"])
        .context("ethtool (Debian package `ethtool`)")?;
    Ok(())
}

/// Add `addr` to `dev`: the subnet prefix, or a host prefix for the VIP.
pub(crate) fn add_addr(ns: &Netns, dev: &str, addr: IpAddr, host_only: bool) -> Result<()> {
    let prefix = match (addr, host_only) {
        (IpAddr::V4(_), false) => 24,
        (IpAddr::V4(_), true) => 32,
        (IpAddr::V6(_), false) => 64,
        (IpAddr::V6(_), true) => 128,
    };
    let cidr = format!("{addr}/{prefix}");
    let mut args = vec!["addr", "add", cidr.as_str(), "dev", dev];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    ns.run("ip", &args)?;
    Ok(())
}

/// Load `prog` from `path` and attach it in driver mode to the director's
/// switch-side veths `peers`. The attach resolves the interface in the
/// calling thread's namespace, so it runs inside the switch namespace.
fn attach_peer_xdp(
    switch: &Netns,
    path: &std::path::Path,
    prog: &str,
    peers: &[&str],
) -> Result<Ebpf> {
    let mut ebpf =
        Ebpf::load_file(path).with_context(|| format!("load eBPF object {}", path.display()))?;
    let program: &mut Xdp = ebpf
        .program_mut(prog)
        .ok_or_else(|| anyhow!("no program {prog:?} in {}", path.display()))?
        .try_into()
        .with_context(|| format!("{prog:?} is not an XDP program"))?;
    program
        .load()
        .with_context(|| format!("load XDP program {prog:?}"))?;
    for peer in peers {
        switch
            .enter(|| program.attach(peer, XdpMode::Driver))?
            .with_context(|| {
                format!(
                    "attach {prog:?} (driver mode) to {peer} in {}",
                    switch.name()
                )
            })?;
    }
    Ok(ebpf)
}

pub(crate) fn in_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program)).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpConn, get_name};

    const T: Duration = Duration::from_secs(3);

    fn our_namespaces() -> Vec<String> {
        let prefix = format!("xlb-{}-", std::process::id());
        std::fs::read_dir(crate::netns::NETNS_DIR)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_lab(ipv6: bool) -> Result<()> {
        crate::require_root()?;
        let _guard = crate::ns_test_guard();
        let opts = LabOptions {
            weights: vec![1, 2, 3],
            ipv6,
            ..LabOptions::default()
        };
        let lab = DrLab::build(&opts)?;
        assert_eq!(lab.reals.len(), 3);
        assert_eq!(lab.reals[0].addr, host_addr(ipv6, OUTER_NET, 11));
        for r in &lab.reals {
            let got = get_name(&lab.client, SocketAddr::new(r.addr, lab.port), T)?;
            assert_eq!(got, r.name);
        }
        let mut conn = HttpConn::open(&lab.client, SocketAddr::new(lab.reals[1].addr, 80), T)?;
        assert_eq!(conn.ask()?, "real2");
        assert_eq!(conn.ask()?, "real2");
        assert_eq!(conn.local_addr().ip(), lab.client_addr);
        // Without XDP the director owns the VIP and nothing listens: refused.
        assert!(get_name(&lab.client, lab.vip_socket(), T).is_err());
        let text = lab.describe();
        assert!(text.contains(lab.client.name()), "{text}");
        let names: Vec<String> = [&lab.switch, &lab.client, &lab.director]
            .into_iter()
            .chain(lab.reals.iter().map(|r| &r.ns))
            .map(|ns| ns.name().to_string())
            .collect();
        assert_eq!(names.len(), 6);
        assert!(names.iter().all(|n| our_namespaces().contains(n)));
        drop(conn);
        drop(lab);
        assert_eq!(our_namespaces(), Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn ipv4_lab_reals_answer() -> Result<()> {
        check_lab(false)
    }

    #[test]
    fn ipv6_lab_reals_answer() -> Result<()> {
        check_lab(true)
    }

    /// A trivial XDP_PASS program as LLVM IR, so the test needs only `llc`.
    const PASS_IR: &str = r#"
target datalayout = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
target triple = "bpfel"
@_license = global [4 x i8] c"GPL\00", section "license", align 1
@llvm.used = appending global [1 x i8*] [i8* getelementptr inbounds ([4 x i8], [4 x i8]* @_license, i32 0, i32 0)], section "llvm.metadata"
define i32 @xdp_pass(i8* %ctx) #0 section "xdp" {
  ret i32 2
}
attributes #0 = { nounwind }
"#;

    /// Compile PASS_IR into `dir`; None when `llc` is not installed.
    fn pass_object(dir: &std::path::Path) -> Result<Option<PathBuf>> {
        if !in_path("llc") {
            return Ok(None);
        }
        let ir = dir.join("pass.ll");
        let obj = dir.join("pass.o");
        std::fs::write(&ir, PASS_IR)?;
        let out = crate::netns::run_bounded(
            std::process::Command::new("llc")
                .args(["-march=bpfel", "-filetype=obj", "-o"])
                .arg(&obj)
                .arg(&ir),
            Duration::from_secs(30),
        )?;
        if !out.status.success() {
            bail!("llc failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Some(obj))
    }

    #[test]
    fn peer_xdp_is_attached_to_director_peer() -> Result<()> {
        crate::require_root()?;
        let _guard = crate::ns_test_guard();
        let dir = std::env::temp_dir().join(format!("xlb-testbed-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let result = (|| -> Result<()> {
            let Some(obj) = pass_object(&dir)? else {
                eprintln!("llc not installed: skipping the peer_xdp check");
                return Ok(());
            };
            let opts = LabOptions {
                weights: vec![1],
                peer_xdp: Some((obj, "xdp_pass".into())),
                ..LabOptions::default()
            };
            let lab = DrLab::build(&opts)?;
            let link = lab
                .switch
                .run("ip", &["link", "show", lab.director_peer_if()])?;
            assert!(link.contains("xdp"), "{link}");
            // XDP_PASS on the peer must not disturb normal traffic.
            let real = SocketAddr::new(lab.reals[0].addr, lab.port);
            assert_eq!(get_name(&lab.client, real, T)?, "real1");
            drop(lab);
            assert_eq!(our_namespaces(), Vec::<String>::new());
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn failed_build_leaves_nothing() -> Result<()> {
        crate::require_root()?;
        let _guard = crate::ns_test_guard();
        let opts = LabOptions {
            peer_xdp: Some(("/nonexistent/xlb.o".into(), "x".into())),
            ..LabOptions::default()
        };
        let err = DrLab::build(&opts).err().expect("missing object must fail");
        assert!(format!("{err:#}").contains("/nonexistent/xlb.o"), "{err:#}");
        assert_eq!(our_namespaces(), Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn address_plan() {
        assert_eq!(host_addr(false, OUTER_NET, 100).to_string(), "10.250.0.100");
        assert_eq!(host_addr(true, OUTER_NET, 12).to_string(), "fd00:250::12");
    }
}
