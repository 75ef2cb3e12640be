//! Hitless restart: 100 keep-alive connections through a DR service keep
//! streaming, each on its real, while the agent is SIGKILLed and a new one
//! adopts the pinned maps and swaps its program into the pinned XDP links.
//! Then the fallback: maps sized differently are not adopted, and the new
//! agent says why and starts afresh. And a new agent that cannot start (its
//! metrics port is taken) leaves the data plane it would have adopted
//! exactly as it found it, forwarding; so does one stopped by SIGTERM
//! while it waits for next hops during start-up.

mod common;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use common::xlb_bin;
use lb_common::{FlowKey, FlowState};
use std::{collections::BTreeMap, path::Path, time::Duration};
use xlb_testbed::{
    agent::Agent,
    http::{HttpConn, Streamer, get_name},
    lab::{DrLab, LabOptions},
};

const TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 100;
/// Rounds (one request on every connection) each phase waits for.
const ROUNDS: usize = 3;

fn xdp_prog_id(lab: &DrLab) -> Option<u32> {
    let out = lab
        .director
        .run("ip", &["-d", "link", "show", "eth0"])
        .unwrap();
    let after = out.split("prog/xdp id ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Client port → (real id, creation time) of every flow in the pinned `CONNTRACK`,
/// and the map's kernel id.
fn flows(pin: &Path) -> (u32, BTreeMap<u16, (u32, u64)>) {
    let data = MapData::from_pin(pin.join("CONNTRACK")).unwrap();
    let id = data.info().unwrap().id();
    let map: BpfHashMap<MapData, FlowKey, FlowState> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    let flows = map
        .iter()
        .map(Result::unwrap)
        .map(|(k, v)| (u16::from_be(k.sport), (v.real_id, v.created_ns)))
        .collect();
    (id, flows)
}

#[test]
fn sigkill_and_restart_keep_every_connection_on_its_real() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 2, 3],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("restart");
    let config = dir.join("xlb.toml");
    // mh-port spreads one client's connections over the reals.
    let text = lab.agent_config_with("mh", "dr", "native", "scheduler_flags = [\"mh-port\"]\n");
    std::fs::write(&config, &text).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();

    let conns: Vec<(HttpConn, String)> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let per_real = conns.iter().fold(BTreeMap::new(), |mut m, (_, n)| {
        *m.entry(n.clone()).or_insert(0) += 1;
        m
    });
    assert_eq!(per_real.len(), 3, "connections not spread: {per_real:?}");
    let (ct_id, before) = flows(&lab.pin_path);
    for (c, _) in &conns {
        assert!(
            before.contains_key(&c.local_addr().port()),
            "flow not tracked"
        );
    }
    let prog_before = xdp_prog_id(&lab).expect("XDP attached");

    // Every connection asks again and again, checking its real each time,
    // across the kill and the restart.
    let streamer = Streamer::start(conns);
    streamer.wait_rounds(ROUNDS);

    agent.kill().unwrap();
    assert_eq!(
        xdp_prog_id(&lab),
        Some(prog_before),
        "the program must stay attached when the agent dies"
    );
    streamer.wait_rounds(ROUNDS);

    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("adopted the data plane")),
        "the new agent did not adopt: {:#?}",
        agent.log()
    );
    let prog_after = xdp_prog_id(&lab).expect("XDP attached");
    assert_ne!(prog_after, prog_before, "the new agent's program runs");
    streamer.wait_rounds(ROUNDS);
    let asked = streamer.finish().unwrap();
    assert!(asked >= CONNECTIONS * (3 * ROUNDS + 1));

    // The same flow table, each flow with the real and creation time it had.
    let (ct_id_after, after) = flows(&lab.pin_path);
    assert_eq!(ct_id_after, ct_id, "CONNTRACK was recreated, not adopted");
    for (port, flow) in &before {
        assert_eq!(after.get(port), Some(flow), "flow from port {port} changed");
    }

    // A data plane this agent cannot use (another conntrack size) is
    // replaced, with the reason logged.
    agent.kill().unwrap();
    let resized = text.replacen("[dataplane]\n", "[dataplane]\nconntrack_size = 4096\n", 1);
    std::fs::write(&config, resized).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("cannot adopt") && l.contains("CONNTRACK")),
        "no reason logged: {:#?}",
        agent.log()
    );
    let (ct_id_new, _) = flows(&lab.pin_path);
    assert_ne!(ct_id_new, ct_id);
    get_name(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();

    // A plain stop still detaches and unpins everything.
    agent.stop().unwrap();
    assert_eq!(xdp_prog_id(&lab), None, "XDP still attached after SIGTERM");
    assert!(
        !lab.pin_path.exists() || std::fs::read_dir(&lab.pin_path).unwrap().next().is_none(),
        "pins left after SIGTERM"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Everything pinned under `pin` (names).
fn pins(pin: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(pin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A DR lab whose agent was SIGKILLed while 10 keep-alive connections
/// stream through it (they go on streaming), and what it left pinned.
struct Crashed {
    lab: DrLab,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    /// The config the killed agent ran.
    base: String,
    streamer: Streamer,
    ct_id: u32,
    flows_before: BTreeMap<u16, (u32, u64)>,
    pinned: Vec<String>,
}

fn crashed_while_streaming(name: &str) -> Crashed {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir(name);
    let config = dir.join("xlb.toml");
    let base = lab.agent_config_with("mh", "dr", "native", "");
    std::fs::write(&config, &base).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    let conns: Vec<(HttpConn, String)> = (0..10)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let name = c.ask().unwrap();
            (c, name)
        })
        .collect();
    let streamer = Streamer::start(conns);
    streamer.wait_rounds(ROUNDS);
    agent.kill().unwrap();
    xdp_prog_id(&lab).expect("XDP attached");
    let (ct_id, flows_before) = flows(&lab.pin_path);
    let pinned = pins(&lab.pin_path);
    Crashed {
        lab,
        dir,
        config,
        base,
        streamer,
        ct_id,
        flows_before,
        pinned,
    }
}

/// Seen once: after a SIGKILL, the next agent adopted the data plane, then
/// failed on a busy metrics port and detached XDP and unpinned the maps
/// (under Restart=on-failure, an attach/detach loop). Every listener is now
/// bound before an adopted data plane is touched.
#[test]
fn a_failed_start_leaves_the_adopted_data_plane_as_it_found_it() {
    let Crashed {
        lab,
        dir,
        config,
        streamer,
        ct_id,
        flows_before,
        pinned,
        ..
    } = crashed_while_streaming("failstart");
    let prog = xdp_prog_id(&lab).expect("XDP attached");

    // Something else holds the metrics port (the default, 127.0.0.1:9477).
    let squatter = lab
        .director
        .enter(|| std::net::TcpListener::bind("127.0.0.1:9477").unwrap())
        .unwrap();
    let err = Agent::start(&lab.director, &xlb_bin(), &config)
        .err()
        .expect("the agent must fail to start");
    assert!(format!("{err:#}").contains("metrics"), "{err:#}");
    assert_eq!(xdp_prog_id(&lab), Some(prog), "the old program still runs");
    assert_eq!(pins(&lab.pin_path), pinned, "pins changed");
    let (ct_id_after, flows_after) = flows(&lab.pin_path);
    assert_eq!(ct_id_after, ct_id);
    assert_eq!(flows_after, flows_before);
    // And it still forwards the held connections.
    streamer.wait_rounds(ROUNDS);
    let asked = streamer.finish().unwrap();
    assert!(asked >= 10 * 2 * ROUNDS);

    // Once the port is free, the next start adopts it; its stop cleans up.
    drop(squatter);
    let agent = Agent::start(&lab.director, &xlb_bin(), &config).unwrap();
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("adopted the data plane")),
        "{:#?}",
        agent.log()
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGTERM is answered during start-up too: here while the new agent, having
/// adopted the data plane, waits (up to 3 s) for a real nobody answers ARP
/// for. It stops at once and cleanly, and leaves the adopted data plane as
/// it found it, still forwarding the held connections.
#[test]
fn sigterm_during_start_up_leaves_the_adopted_data_plane_forwarding() {
    let Crashed {
        lab,
        dir,
        config,
        base,
        streamer,
        ct_id,
        flows_before,
        pinned,
    } = crashed_while_streaming("termstart");

    // The next config adds a service whose real (on the lab's link) is silent.
    let silent = format!(
        "{base}\n[[service]]\nvip = \"{}\"\nport = 8081\nprotocol = \"tcp\"\nscheduler = \"rr\"\nmethod = \"dr\"\n\n[[service.real]]\naddress = \"10.250.0.99\"\nport = 8081\n",
        lab.vip
    );
    std::fs::write(&config, silent).unwrap();
    let starting = Agent::start_until(
        &lab.director,
        &xlb_bin(),
        &config,
        "adopted the data plane",
        Duration::from_secs(30),
    )
    .unwrap();
    let log = starting
        .stop_logged()
        .expect("a clean exit on SIGTERM during start-up");
    assert!(
        log.iter().any(
            |l| l.contains("during start-up: stopping; an adopted data plane keeps forwarding")
        ),
        "SIGTERM was not answered while waiting for next hops: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("xlb forwarding")),
        "the agent had finished starting: {log:#?}"
    );
    // Adopting swapped the new agent's program into the pinned link (same
    // maps, same layout): still attached, and every flow as it was.
    assert!(xdp_prog_id(&lab).is_some(), "XDP detached");
    assert_eq!(pins(&lab.pin_path), pinned, "pins changed");
    let (ct_id_after, flows_after) = flows(&lab.pin_path);
    assert_eq!(ct_id_after, ct_id);
    assert_eq!(flows_after, flows_before);
    streamer.wait_rounds(ROUNDS);
    let asked = streamer.finish().unwrap();
    assert!(asked >= 10 * 2 * ROUNDS);
    let _ = std::fs::remove_dir_all(dir);
}

/// Seen in the suite: an agent died, its interface was deleted and made
/// anew (same name), and the next agent failed to start ("Link has been
/// severed") on the pinned link the old interface took with it. It now
/// drops that pin and attaches afresh, adopting the maps all the same.
#[test]
fn a_pinned_link_whose_interface_was_made_anew_is_attached_afresh() {
    xlb_testbed::require_root().unwrap();
    let ns = xlb_testbed::netns::Netns::create("severed").unwrap();
    let veth = |ns: &xlb_testbed::netns::Netns| {
        ns.run(
            "ip",
            &["link", "add", "x0", "type", "veth", "peer", "name", "x1"],
        )
        .unwrap();
        for dev in ["x0", "x1"] {
            ns.run("ip", &["link", "set", dev, "up"]).unwrap();
        }
        ns.run("ip", &["addr", "add", "10.251.0.254/24", "dev", "x0"])
            .unwrap();
        // The real's next hop (nobody answers ARP behind x1).
        ns.run(
            "ip",
            &[
                "neigh",
                "replace",
                "10.251.0.2",
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                "x0",
                "nud",
                "permanent",
            ],
        )
        .unwrap();
    };
    veth(&ns);
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/xlb-severed-{}", std::process::id()));
    let dir = common::test_dir("severed");
    let config = dir.join("xlb.toml");
    std::fs::write(
        &config,
        format!(
            "[dataplane]\ninterfaces = [\"x0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\n\n[metrics]\nlisten = \"127.0.0.1:9477\"\n\n[[service]]\nvip = \"10.251.0.1\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\n\n[[service.real]]\naddress = \"10.251.0.2\"\n",
            pin.display()
        ),
    )
    .unwrap();
    let attached = || {
        ns.run("ip", &["-d", "link", "show", "x0"])
            .unwrap()
            .contains("prog/xdp id ")
    };
    Agent::start(&ns, &xlb_bin(), &config)
        .unwrap()
        .kill()
        .unwrap();
    assert!(attached(), "the killed agent's program left x0");

    ns.run("ip", &["link", "del", "x0"]).unwrap();
    veth(&ns);
    assert!(!attached());
    let agent = Agent::start(&ns, &xlb_bin(), &config).unwrap();
    let log = agent.log();
    assert!(
        log.iter()
            .any(|l| l.contains("the pinned XDP link was severed")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("adopted the data plane")),
        "{log:#?}"
    );
    assert!(attached(), "no program on the new x0");
    agent.stop().unwrap();
    assert!(!attached(), "XDP left attached after SIGTERM");
    let _ = std::fs::remove_dir_all(&pin);
    let _ = std::fs::remove_dir_all(dir);
}
