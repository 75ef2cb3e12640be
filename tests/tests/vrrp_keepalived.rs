//! Interop with keepalived 2.2.7 (the Debian package) in one virtual
//! router, VRRPv2 and VRRPv3: each side becomes Master when it should, in
//! both directions of failover, and every advert on the wire (captured by
//! tcpdump in the observer namespace) decodes cleanly in tshark and carries
//! the same DSCP as keepalived's. Then what a mixed group showed wrong
//! once: VIPs a killed agent left behind, and peers whose address lists differ.

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

/// tshark's view of every VRRP packet: `src version priority checksum_status dsfield`.
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
        .args([
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.checksum.status",
            "-e",
            "ip.dsfield",
        ])
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
    // keepalived marks its adverts DSCP CS6 (network control); so does xlb.
    let dsfield = |addr: &str| -> Vec<String> {
        all.iter()
            .filter(|l| l.starts_with(&format!("{addr}\t")))
            .map(|l| l.split('\t').nth(4).unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        dsfield(&ka_addr).iter().all(|d| d == "0xc0"),
        "keepalived: {:?}",
        dsfield(&ka_addr)
    );
    assert!(
        dsfield(&xlb_addr).iter().all(|d| d == "0xc0"),
        "xlb: {:?}",
        dsfield(&xlb_addr)
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

/// An agent killed as Master leaves its VIP; keepalived takes over, and the
/// agent restarted with a lower priority starts as Backup: it removes the
/// VIP it left, so only the Master answers ARP for it.
#[test]
fn a_restarted_backup_removes_the_vip_a_killed_master_left() {
    let lab = VrrpLab::build(2).unwrap();
    let dir = temp_dir("kastale").unwrap();
    let ka_ns = &lab.nodes[1];
    let mut x = Director::start(&lab.nodes[0], &dir, &instance(150, ""));
    x.wait_state("MASTER");
    let _ka = Keepalived::start(ka_ns, &dir, "a", &keepalived_conf(2, 100, "1")).unwrap();
    wait_until("xlb holding the VIP", ELECTION, || holds_vip(&lab.nodes[0])).unwrap();
    x.kill();
    wait_vip(ka_ns, true);
    assert!(
        holds_vip(&lab.nodes[0]),
        "the killed agent's VIP is still there"
    );
    x.restart_with(&lab.nodes[0], &instance(50, ""));
    x.wait_state("BACKUP");
    wait_until("the stale VIP removed", ELECTION, || {
        !holds_vip(&lab.nodes[0])
    })
    .unwrap();
    assert!(
        x.log()
            .iter()
            .any(|l| l.contains("removed virtual addresses a previous agent left")),
        "the removal is logged"
    );
    assert!(holds_vip(ka_ns), "keepalived still Master");
}

/// keepalived advertising another address list than xlb's: RFC 3768 and
/// 9568 §7.1 say drop (and log) unless the sender is the address owner.
/// xlb drops keepalived's adverts, counts and logs them, and so does not
/// stay Backup under a Master whose VIPs it would not serve.
#[test]
fn adverts_listing_other_addresses_are_dropped_logged_and_counted() {
    let lab = VrrpLab::build(2).unwrap();
    let dir = temp_dir("kaaddr").unwrap();
    let ka_ns = &lab.nodes[1];
    let conf = keepalived_conf(2, 200, "1").replace(
        &format!("    {VIP}/24\n"),
        &format!("    {VIP}/24\n    10.9.0.101/24\n"),
    );
    let _ka = Keepalived::start(ka_ns, &dir, "a", &conf).unwrap();
    wait_vip(ka_ns, true);
    let x = Director::start(&lab.nodes[0], &dir, &instance(100, ""));
    wait_until("keepalived's adverts dropped", ELECTION, || {
        x.status()
            .is_some_and(|s| s.discards.get("addresses").copied().unwrap_or(0) >= 2)
    })
    .unwrap();
    let st = x.status().unwrap();
    assert_eq!(st.adverts_received, 0, "none taken as valid: {st:?}");
    assert!(
        x.log()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("advert discarded (addresses)")),
        "the mismatch is a warning in the log"
    );
}
