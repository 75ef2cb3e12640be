//! Interop with keepalived 2.2.7 (the Debian package) in one virtual
//! router, VRRPv2 and VRRPv3: each side becomes Master when it should, in
//! both directions of failover, and every advert on the wire (captured by
//! tcpdump in the observer namespace) decodes cleanly in tshark.

mod common;

use common::vrrp::{Director, ELECTION, instance};
use std::{path::Path, process::Command, time::Duration};
use xlb_testbed::{
    netns::Netns,
    vrrp::{Keepalived, VrrpLab, temp_dir, wait_until},
};

const VIP: &str = "10.9.0.100";

fn keepalived_conf(version: u8, priority: u8, advert_int: &str) -> String {
    format!(
        "global_defs {{\n  router_id ka\n  vrrp_version {version}\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
         priority {priority}\n  advert_int {advert_int}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
    )
}

/// keepalived is Master exactly when it holds the VIP.
fn holds_vip(ns: &Netns) -> bool {
    ns.run("ip", &["-4", "addr", "show", "dev", "eth0"])
        .is_ok_and(|o| o.contains(&format!("{VIP}/24")))
}

fn wait_vip(ns: &Netns, held: bool) {
    wait_until(
        &format!(
            "keepalived {} the VIP",
            if held { "holding" } else { "dropping" }
        ),
        ELECTION,
        || holds_vip(ns) == held,
    )
    .unwrap();
}

/// tcpdump in the observer until dropped; returns the capture's path.
struct Capture {
    child: std::process::Child,
}

impl Capture {
    fn start(obs: &Netns, file: &Path) -> Capture {
        let child = obs
            .command("tcpdump")
            .args(["-i", "eth0", "-U", "-n", "-w"])
            .arg(file)
            .arg("ip proto 112")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump installed");
        // tcpdump writes the file header once it listens.
        wait_until("tcpdump listening", Duration::from_secs(10), || {
            std::fs::metadata(file).is_ok_and(|m| m.len() > 0)
        })
        .unwrap();
        Capture { child }
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tshark's view of every VRRP packet: `src version priority checksum_status`.
fn tshark(file: &Path, filter: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args([
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "vrrp.version",
        ])
        .args(["-e", "vrrp.prio", "-e", "vrrp.checksum.status"])
        .output()
        .expect("tshark installed (apt-get install tshark)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn interop(version: u8) {
    let lab = VrrpLab::build(2).unwrap();
    let dir = temp_dir(&format!("ka{version}")).unwrap();
    let pcap = dir.join("vrrp.pcap");
    let cap = Capture::start(&lab.observer, &pcap);
    let (ka_int, xlb_int) = if version == 3 {
        ("0.5", "version = 3\nadvert_int = 0.5\n")
    } else {
        ("1", "")
    };
    let ka_ns = &lab.nodes[1];
    let mut ka =
        Keepalived::start(ka_ns, &dir, "a", &keepalived_conf(version, 100, ka_int)).unwrap();

    // xlb (150) wins against keepalived (100).
    let mut x = Director::start(&lab.nodes[0], &dir, &instance(150, xlb_int));
    x.wait_state("MASTER");
    wait_until("keepalived hears xlb", ELECTION, || !holds_vip(ka_ns)).unwrap();
    wait_until("xlb hears keepalived or nothing", ELECTION, || {
        x.status().is_some_and(|s| s.adverts_sent >= 4)
    })
    .unwrap();
    assert!(
        !holds_vip(ka_ns),
        "keepalived stays Backup under a stronger xlb"
    );

    // As Master, xlb holds the VIP on its interface.
    wait_until("xlb holding the VIP", ELECTION, || holds_vip(&lab.nodes[0])).unwrap();

    // xlb dies: keepalived takes over.
    x.kill();
    wait_vip(ka_ns, true);

    // xlb returns (adopting the data plane it left) and preempts keepalived.
    x.restart(&lab.nodes[0]);
    x.wait_state("MASTER");
    wait_vip(ka_ns, false);

    // xlb stops cleanly (priority 0): keepalived takes over, xlb's VIP is gone.
    x.stop();
    wait_vip(ka_ns, true);
    assert!(!holds_vip(&lab.nodes[0]), "a stopped xlb removes its VIP");

    // A weaker xlb joins as Backup and takes over when keepalived stops.
    let x = Director::start(&lab.nodes[0], &dir, &instance(50, xlb_int));
    x.wait_state("BACKUP");
    wait_until("xlb hears keepalived", ELECTION, || {
        x.status().is_some_and(|s| s.adverts_received >= 3)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", x.status()));
    assert_eq!(x.state(), "BACKUP", "xlb accepts keepalived's adverts");
    ka.signal(libc::SIGTERM).unwrap();
    x.wait_state("MASTER");

    // keepalived returns with a higher priority and preempts xlb.
    let _ka = Keepalived::start(ka_ns, &dir, "b", &keepalived_conf(version, 200, ka_int)).unwrap();
    wait_vip(ka_ns, true);
    x.wait_state("BACKUP");
    cap.stop();

    let all = tshark(&pcap, "vrrp");
    let xlb_addr = VrrpLab::addr(0);
    let ka_addr = VrrpLab::addr(1);
    assert!(
        all.iter().any(|l| l.starts_with(&format!("{xlb_addr}\t"))),
        "adverts from xlb captured: {all:?}"
    );
    assert!(
        all.iter().any(|l| l.starts_with(&format!("{ka_addr}\t"))),
        "adverts from keepalived captured"
    );
    assert!(
        all.iter()
            .any(|l| l.starts_with(&format!("{xlb_addr}\t{version}\t0\t"))),
        "xlb's priority-0 advert on stop"
    );
    for l in &all {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.get(1), Some(&version.to_string().as_str()), "{l}");
        assert_eq!(f.get(3), Some(&"1"), "checksum good in tshark: {l}");
    }
    assert!(
        tshark(&pcap, "vrrp && _ws.malformed").is_empty(),
        "no malformed VRRP packet"
    );
}

#[test]
fn interop_with_keepalived_v2() {
    interop(2);
}

#[test]
fn interop_with_keepalived_v3() {
    interop(3);
}
