//! Reload (SIGHUP) of VRRP instances in a director namespace, with the
//! kernel's own record of address changes (`ip -o monitor address`) as the
//! witness: an instance the reload does not touch stays Master with no
//! transition and its VIP is never deleted (keepalived #2159, #754); a VIP
//! added to an instance is the only address added; a priority change is
//! taken in place; a removed instance releases its VIP; an invalid file
//! changes nothing; a reload that fails once it is applied (an instance
//! whose new interface cannot carry adverts) changes nothing either.

mod common;

use common::vrrp::{Director, ELECTION, FAST};
use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex, PoisonError},
};
use xlb_testbed::{
    netns::Netns,
    vrrp::{VrrpLab, temp_dir, wait_until},
};

/// An instance on eth0 with priority `prio` and `vips` (last octets in 10.9.0.0/24).
fn inst(name: &str, vrid: u8, prio: u8, vips: &[u8]) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"10.9.0.{v}/24\"")).collect();
    format!(
        "[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {prio}\nvirtual_ipaddress = [{}]\n{FAST}\n",
        vips.join(", ")
    )
}

/// Added until the monitor shows it listens.
const PROBE: &str = "10.9.0.250/32";
/// Added at the end: once the monitor shows it, it has shown everything before.
const MARKER: &str = "10.9.0.251/32";

/// `ip -o monitor address` in a namespace, its lines collected until dropped.
struct AddrMonitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl AddrMonitor {
    /// Starts the monitor and returns once it reports a probe address
    /// (so nothing after this call can be missed). The probe is added again
    /// until seen: `ip` subscribes some time after it starts.
    fn start(ns: &Netns) -> AddrMonitor {
        let mut child = ns
            .command("ip")
            .args(["-o", "monitor", "address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        let m = AddrMonitor {
            child,
            lines,
            reader: Some(reader),
        };
        wait_until("the monitor to see the probe", ELECTION, || {
            if m.lines().iter().any(|l| l.contains(PROBE)) {
                return true;
            }
            let _ = ns.run("ip", &["addr", "del", PROBE, "dev", "eth0"]);
            let _ = ns.run("ip", &["addr", "add", PROBE, "dev", "eth0"]);
            false
        })
        .unwrap();
        m
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Addresses (`10.9.0.N/P`) in lines that are (`deleted`) or are not deletions.
    fn seen(&self, deleted: bool) -> Vec<String> {
        self.lines()
            .iter()
            .filter(|l| l.starts_with("Deleted") == deleted)
            .filter_map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "inet")
                    .nth(1)
                    .map(str::to_string)
            })
            .filter(|a| a != PROBE && a != MARKER)
            .collect()
    }
}

impl Drop for AddrMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn addresses(ns: &Netns) -> String {
    ns.run("ip", &["-o", "-4", "addr", "show", "dev", "eth0"])
        .unwrap()
}

fn has(ns: &Netns, addr: &str) -> bool {
    addresses(ns).contains(&format!("inet {addr}/"))
}

#[test]
fn reload_touches_only_what_changed() {
    let lab = VrrpLab::build(1).unwrap();
    let ns = &lab.nodes[0];
    let dir = temp_dir("reload").unwrap();
    let d = Director::start(
        ns,
        &dir,
        &(inst("VI_1", 51, 150, &[100]) + &inst("VI_2", 52, 150, &[101])),
    );
    for name in ["VI_1", "VI_2"] {
        wait_until(&format!("{name} Master"), ELECTION, || {
            d.instance(name).is_some_and(|s| s.state == "MASTER")
        })
        .unwrap();
    }
    wait_until("both VIPs", ELECTION, || {
        has(ns, "10.9.0.100") && has(ns, "10.9.0.101")
    })
    .unwrap();
    let mon = AddrMonitor::start(ns);
    let vi1 = d.instance("VI_1").unwrap();
    let vi2 = d.instance("VI_2").unwrap();

    // VI_2's priority changes (in place), VI_3 is new, VI_1 is untouched.
    let vi3 = inst("VI_3", 53, 150, &[102]);
    d.reload(&(inst("VI_1", 51, 150, &[100]) + &inst("VI_2", 52, 120, &[101]) + &vi3));
    wait_until("VI_3 Master", ELECTION, || {
        d.instance("VI_3").is_some_and(|s| s.state == "MASTER")
    })
    .unwrap();
    let now2 = d.instance("VI_2").unwrap();
    assert_eq!(
        (now2.base_priority, now2.priority),
        (120, 120),
        "VI_2 took its new priority"
    );
    assert_eq!(
        (now2.state.as_str(), now2.transitions),
        ("MASTER", vi2.transitions),
        "VI_2 changed in place, without a transition"
    );

    // VI_1 gains a VIP: only that address is added.
    d.reload(&(inst("VI_1", 51, 150, &[100, 110]) + &inst("VI_2", 52, 120, &[101]) + &vi3));
    wait_until("the added VIP", ELECTION, || has(ns, "10.9.0.110")).unwrap();

    // VI_2 goes: it releases its VIP and leaves the status.
    d.reload(&(inst("VI_1", 51, 150, &[100, 110]) + &vi3));
    wait_until("VI_2's VIP released", ELECTION, || !has(ns, "10.9.0.101")).unwrap();
    assert!(
        d.instance("VI_2").is_none(),
        "a removed instance leaves the status"
    );

    // An invalid file changes nothing.
    d.reload(&inst("VI_1", 51, 150, &[100]).replace("priority = 150", "priority = 300"));
    assert!(
        d.log()
            .iter()
            .any(|l| l.contains("reload: nothing changed")),
        "the invalid file was refused"
    );
    assert!(has(ns, "10.9.0.110"), "the refused file removed nothing");

    let now1 = d.instance("VI_1").unwrap();
    assert_eq!(
        (now1.state.as_str(), now1.transitions, now1.became_master),
        ("MASTER", vi1.transitions, vi1.became_master),
        "reloads that did not concern VI_1 made it change state"
    );
    assert!(
        now1.adverts_sent > vi1.adverts_sent,
        "VI_1 kept advertising"
    );
    // The kernel's record: VI_1's VIP never went away, and only the new
    // addresses were added; VI_2's was deleted. Events arrive in order, so
    // once the marker shows, everything before it has.
    ns.run("ip", &["addr", "add", MARKER, "dev", "eth0"])
        .unwrap();
    wait_until("the monitor to see the marker", ELECTION, || {
        mon.lines().iter().any(|l| l.contains(MARKER))
    })
    .unwrap();
    let (deleted, added) = (mon.seen(true), mon.seen(false));
    assert_eq!(deleted, ["10.9.0.101/24"], "deletions: {:#?}", mon.lines());
    let mut added = added;
    added.sort();
    assert_eq!(
        added,
        ["10.9.0.102/24", "10.9.0.110/24"],
        "additions: {:#?}",
        mon.lines()
    );
}

/// Services in the pinned SERVICES map.
fn service_count(d: &Director) -> usize {
    d.services_active().len()
}

/// keepalived #2159's worse cousin, seen on xlb before: a reload that moves
/// an instance to an interface that cannot carry adverts while adding a
/// service put the service in the maps, stopped the instance (its VIP
/// gone) and logged "done". Now everything is prepared first: the reload
/// fails as a whole, `xlb reload` says which item and exits non-zero, the
/// failure is counted, and the Master, its VIP and the maps are as they were.
#[test]
fn a_reload_failing_at_apply_time_changes_nothing() {
    let lab = VrrpLab::build(1).unwrap();
    let ns = &lab.nodes[0];
    let dir = temp_dir("reloadfail").unwrap();
    // An interface that exists but has no IPv4 address to send adverts from:
    // only applying the instance can find that out.
    ns.run(
        "ip",
        &[
            "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
        ],
    )
    .unwrap();
    for dev in ["dum0", "dum1"] {
        ns.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    let service = |port: u16| {
        format!(
            "[[service]]\nvip = \"10.9.0.100\"\nport = {port}\nprotocol = \"tcp\"\n[[service.real]]\naddress = \"10.9.0.50\"\nport = {port}\n\n"
        )
    };
    let good = service(80) + &inst("VI_1", 51, 150, &[100]);
    let d = Director::start(ns, &dir, &good);
    d.wait_state("MASTER");
    wait_until("the VIP", ELECTION, || has(ns, "10.9.0.100")).unwrap();
    assert_eq!(service_count(&d), 1);
    let before = d.status().unwrap();
    let mon = AddrMonitor::start(ns);

    let bad =
        service(80) + &service(81) + &inst("VI_1", 51, 150, &[100]).replace("\"eth0\"", "\"dum0\"");
    let out = d.xlb_reload(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the failed reload exited 0: {err}");
    assert!(
        err.contains("nothing changed") && err.contains("VI_1") && err.contains("dum0"),
        "the failing item is named: {err}"
    );
    assert_eq!(service_count(&d), 1, "the new service was not written");
    let now = d.status().unwrap();
    assert_eq!(
        (now.state.as_str(), now.transitions),
        ("MASTER", before.transitions),
        "the instance kept running"
    );
    ns.run("ip", &["addr", "add", MARKER, "dev", "eth0"])
        .unwrap();
    wait_until("the monitor to see the marker", ELECTION, || {
        mon.lines().iter().any(|l| l.contains(MARKER))
    })
    .unwrap();
    assert!(
        mon.seen(true).is_empty(),
        "an address went: {:#?}",
        mon.lines()
    );
    let metrics = ns
        .enter(|| xlb_testbed::scrape::scrape(ns, "127.0.0.1:9477".parse().unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(
        metrics.get("xlb_reloads_total{result=\"failed\"}"),
        Some(&1.0)
    );
    assert_eq!(metrics.get("xlb_reloads_total{result=\"ok\"}"), Some(&0.0));

    // The same file with the interface fixed reloads: both parts apply.
    let out = d.xlb_reload(&(service(80) + &service(81) + &inst("VI_1", 51, 150, &[100])));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(service_count(&d), 2);
}
