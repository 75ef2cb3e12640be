//! Attaching and owning the data plane: auto mode's fallback, failures that
//! must leave nothing behind, one agent per pin directory, unreachable reals.
//! A bridge device stands in for a NIC without native XDP.

mod common;

use common::xlb_bin;
use std::{path::PathBuf, process::Command};
use xlb_testbed::{agent::Agent, netns::Netns};

struct Setup {
    ns: Netns,
    pin: String,
    dir: PathBuf,
}

fn setup(tag: &str) -> Setup {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create(tag).unwrap();
    ns.run("ip", &["link", "add", "br0", "type", "bridge"])
        .unwrap();
    ns.run("ip", &["addr", "add", "10.77.0.1/24", "dev", "br0"])
        .unwrap();
    ns.run("ip", &["link", "set", "br0", "up"]).unwrap();
    ns.run(
        "ip",
        &[
            "link", "add", "name", "v0", "type", "veth", "peer", "name", "v1",
        ],
    )
    .unwrap();
    ns.run("ip", &["link", "set", "v0", "up"]).unwrap();
    ns.run("ip", &["link", "set", "v1", "up"]).unwrap();
    let pin = format!("/sys/fs/bpf/xlb-test-{}-{tag}", std::process::id());
    let dir = std::env::temp_dir().join(format!("xlb-attach-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Setup { ns, pin, dir }
}

impl Setup {
    fn config(&self, interfaces: &str, mode: &str) -> PathBuf {
        let text = format!(
            "[dataplane]\ninterfaces = [{interfaces}]\nxdp_mode = \"{mode}\"\npin_path = \"{}\"\n\n\
             [[service]]\nvip = \"10.77.0.100\"\nport = 80\n\n[[service.real]]\naddress = \"10.77.0.9\"\n",
            self.pin
        );
        let p = self.dir.join(format!("{mode}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn link(&self, dev: &str) -> String {
        self.ns.run("ip", &["-d", "link", "show", dev]).unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // The agent leaves its lock file (removing a lock others may hold is racy);
        // a test's private pin path gets a private lock file, so tidy it here.
        let flat = self.pin.trim_matches('/').replace('/', "_");
        let _ = std::fs::remove_file(format!("/run/xlb/{flat}.lock"));
    }
}

#[test]
fn auto_mode_falls_back_to_generic_and_says_why() {
    let s = setup("auto");
    let agent = Agent::start(&s.ns, &xlb_bin(), &s.config("\"br0\"", "auto")).unwrap();
    assert!(s.link("br0").contains("xdpgeneric"), "{}", s.link("br0"));
    let log = agent.log().join("\n");
    assert!(
        log.contains("native XDP unavailable, using generic mode"),
        "{log}"
    );
    assert!(log.contains("br0 (generic)"), "{log}");
    agent.stop().unwrap();
    assert!(
        !s.link("br0").contains("xdp"),
        "still attached: {}",
        s.link("br0")
    );
    assert!(!PathBuf::from(&s.pin).exists());
}

#[test]
fn a_failed_attach_undoes_everything() {
    let s = setup("native");
    // v0 takes native XDP, br0 does not: the agent must detach v0 again and unpin.
    let out =
        s.ns.command(xlb_bin())
            .args(["run", "--config"])
            .arg(s.config("\"v0\", \"br0\"", "native"))
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attaching XDP in native mode to br0"), "{err}");
    assert!(
        !s.link("v0").contains("xdp"),
        "v0 left attached: {}",
        s.link("v0")
    );
    assert!(
        !PathBuf::from(&s.pin).join("SERVICES").exists(),
        "maps left pinned"
    );
}

#[test]
fn one_agent_per_pin_directory() {
    let s = setup("lock");
    let config = s.config("\"v0\"", "native");
    let agent = Agent::start(&s.ns, &xlb_bin(), &config).unwrap();
    let out =
        s.ns.command(xlb_bin())
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another xlb agent is running"), "{err}");
    // The first agent is untouched.
    assert!(s.link("v0").contains("prog/xdp"));
    assert!(PathBuf::from(&s.pin).join("SERVICES").exists());
    agent.stop().unwrap();
}

#[test]
fn an_unreachable_real_is_listed_but_not_scheduled() {
    let s = setup("unreach");
    // 10.77.0.9 is on br0's subnet, but nothing answers ARP on a bridge without ports.
    let agent = Agent::start(&s.ns, &xlb_bin(), &s.config("\"v0\"", "native")).unwrap();
    let log = agent.log().join("\n");
    assert!(
        log.contains("real server unreachable, left out of scheduling"),
        "{log}"
    );
    let out = Command::new(xlb_bin())
        .args(["status", "--pin-path", &s.pin])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let line = status
        .lines()
        .find(|l| l.contains("-> 10.77.0.9:80"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.ends_with("unreachable"), "{line}");
    agent.stop().unwrap();
}

#[test]
fn a_real_that_comes_up_later_is_added() {
    let s = setup("later");
    // The real lives behind v1, moved to its own namespace and left down for now.
    let real = Netns::create("lreal").unwrap();
    s.ns.run("ip", &["link", "set", "v1", "netns", real.name()])
        .unwrap();
    s.ns.run("ip", &["addr", "add", "10.77.1.1/24", "dev", "v0"])
        .unwrap();
    real.run("ip", &["addr", "add", "10.77.1.9/24", "dev", "v1"])
        .unwrap();
    let text = format!(
        "[dataplane]\ninterfaces = [\"v0\"]\nxdp_mode = \"native\"\npin_path = \"{}\"\n\n\
         [[service]]\nvip = \"10.77.1.100\"\nport = 80\n\n[[service.real]]\naddress = \"10.77.1.9\"\n",
        s.pin
    );
    let config = s.dir.join("later.toml");
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&s.ns, &xlb_bin(), &config).unwrap();
    let status = || {
        let out = Command::new(xlb_bin())
            .args(["status", "--pin-path", &s.pin])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(status().contains("unreachable"), "{}", status());

    real.run("ip", &["link", "set", "v1", "up"]).unwrap();
    // The agent looks again every 5 s; give it a few rounds, bounded.
    let mut now = String::new();
    for _ in 0..150 {
        now = status();
        if now.contains("-> 10.77.1.9:80") && !now.contains("unreachable") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !now.contains("unreachable"),
        "real never became reachable:\n{now}"
    );
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("real server reachable again"))
    );

    // Its slots in the Maglev table now name it.
    let maglev = aya::maps::MapData::from_pin(format!("{}/MAGLEV", s.pin)).unwrap();
    let maglev: aya::maps::Array<_, u32> = aya::maps::Map::from_map_data(maglev)
        .unwrap()
        .try_into()
        .unwrap();
    // The agent writes the real before its table slots (so a packet never
    // meets a slot naming a real not yet written): wait for the table, bounded.
    let mut filled = false;
    for _ in 0..100 {
        filled = maglev
            .iter()
            .take(lb_common::defaults::MAGLEV_TABLE_SIZE as usize)
            .all(|r| r.unwrap() != 0);
        if filled {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(filled, "table not filled");
    agent.stop().unwrap();
}

#[test]
fn native_xdp_on_a_veth_warns_until_its_peer_has_a_program() {
    use aya::programs::{Xdp, XdpMode};
    let s = setup("vethpeer");
    let config = s.config("\"v0\"", "native");
    let agent = Agent::start(&s.ns, &xlb_bin(), &config).unwrap();
    let log = agent.log().join("\n");
    assert!(
        log.contains("native XDP on veth v0: its peer (ifindex")
            && log.contains("has no XDP program, so every frame sent back out is dropped"),
        "{log}"
    );
    agent.stop().unwrap();

    // The lab's pass program on the peer: nothing to warn about.
    let mut ebpf = aya::Ebpf::load_file(xlb::EBPF_OBJECT_PATH).unwrap();
    let pass: &mut Xdp = ebpf
        .program_mut(lb_common::PROG_PASS)
        .unwrap()
        .try_into()
        .unwrap();
    pass.load().unwrap();
    s.ns.enter(|| pass.attach("v1", XdpMode::Driver))
        .unwrap()
        .unwrap();
    let agent = Agent::start(&s.ns, &xlb_bin(), &config).unwrap();
    assert!(s.link("v0").contains("xdp"), "{}", s.link("v0"));
    let log = agent.log().join("\n");
    assert!(!log.contains("native XDP on veth"), "{log}");
    agent.stop().unwrap();
}
