//! The kernel's IPVS sync daemon run by xlb's IPVS data plane, in a qemu
//! guest (tests/src/qemu.rs):
//!
//! - TOML `[global] lvs_sync_daemon` naming no VRRP instance starts a master
//!   daemon; stopping the agent stops it.
//! - keepalived.conf `lvs_sync_daemon`, two directors in two network
//!   namespaces of the guest joined by a veth pair, each running VRRP: the
//!   higher priority one starts its daemon as backup and turns it into a
//!   master when it becomes Master, the other stays backup; a connection
//!   IPVS schedules on the Master shows up in the Backup's connection table
//!   (`ipvsadm -Lnc`), sent by the kernel's sync daemons; stopping the
//!   agents stops the daemons.

mod common;

use std::time::Duration;
use xlb_testbed::qemu::{
    Guest,
    job::{UNTIL_OK, WAIT_AGENT},
};

const TOML: &str = r#"[global]
lvs_sync_daemon = { interface = "dummy0", instance = "VI_9", id = 9 }

[dataplane]
kind = "ipvs"
interfaces = []

[[service]]
vip = "10.30.0.1"
port = 80
protocol = "udp"
scheduler = "rr"
[[service.real]]
address = "10.30.0.2"
"#;

/// One director's keepalived.conf: `dev` its side of the veth pair. The
/// fwmark service selects the IPVS data plane (XDP cannot serve it).
fn keepalived_conf(name: &str, dev: &str, priority: u8) -> String {
    format!(
        r#"global_defs {{
    router_id {name}
    lvs_sync_daemon {dev} VI_1 id 4 maxlen 1000 port 9000 ttl 2 group 224.0.0.99
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface {dev}
    virtual_router_id 51
    priority {priority}
    advert_int 2
    virtual_ipaddress {{
        10.70.0.100/32
    }}
}}
virtual_server 10.70.0.100 80 {{
    protocol UDP
    lb_algo rr
    lb_kind DR
    real_server 10.71.0.2 80 {{
        weight 1
    }}
}}
virtual_server fwmark 1 {{
    lb_algo rr
    lb_kind DR
    real_server 10.71.0.3 80 {{
        weight 1
    }}
}}
"#
    )
}

const SCRIPT: &str = r#"
# Loading dummy made dummy0. The sync daemon sends from its address.
ip link set dummy0 up multicast on
ip addr add 10.30.0.9/24 dev dummy0
/usr/local/bin/xlb run -c /etc/xlb/sync.toml 2>/tmp/toml.log &
pid=$!
wait_agent /tmp/toml.log $pid || exit 1
echo ==toml-daemon; ipvsadm -L --daemon
kill $pid; wait $pid
echo ==toml-stopped; ipvsadm -L --daemon

# (A new shell runs busybox's ip, hence the paths in `sh -c`; the agents
# start by path, so that $! is theirs: `ip netns exec` execs its command.)
# Two directors: m (priority 150) and b (50), joined by vm -- vb.
ip netns add m
ip netns add b
ip link add vm netns m type veth peer name vb netns b
in_m() { ip netns exec m "$@"; }
in_b() { ip netns exec b "$@"; }
in_m ip link set lo up
in_b ip link set lo up
in_m ip addr add 10.70.0.1/24 dev vm
in_b ip addr add 10.70.0.2/24 dev vb
in_m ip link set vm up
in_b ip link set vb up
# m's real and client addresses are its own, so IPVS forwards to Local.
in_m ip link add dummy0 type dummy
in_m ip link set dummy0 up
in_m ip addr add 10.71.0.2/32 dev dummy0
in_m ip addr add 10.71.0.9/32 dev dummy0

/usr/local/bin/ip netns exec m /usr/local/bin/xlb run --keepalived-conf /etc/xlb/m.conf --pid-file /run/m.pid 2>/tmp/m.log &
mpid=$!
wait_agent /tmp/m.log $mpid || exit 1
until_ok "m's master daemon" sh -c '/usr/local/bin/ip netns exec m ipvsadm -L --daemon | grep -q "^master"'
echo ==m-daemon; in_m ipvsadm -L --daemon
echo ==m-log; grep "IPVS sync daemon started" /tmp/m.log | sed 's/.*IPVS sync daemon started/started/'

/usr/local/bin/ip netns exec b /usr/local/bin/xlb run --keepalived-conf /etc/xlb/b.conf --pid-file /run/b.pid 2>/tmp/b.log &
bpid=$!
wait_agent /tmp/b.log $bpid || exit 1
echo ==b-daemon; in_b ipvsadm -L --daemon

# One UDP flow of four datagrams (IPVS syncs a flow at its third packet)
# to the VIP, which VRRP put on m.
for i in 1 2 3 4; do echo x | in_m socat -u - UDP-SENDTO:10.70.0.100:80,bind=10.71.0.9:5555; done
echo ==m-conns; in_m ipvsadm -Lnc
until_ok "the flow on b" sh -c '/usr/local/bin/ip netns exec b ipvsadm -Lnc | grep -q 10.71.0.9:5555'
echo ==b-conns; in_b ipvsadm -Lnc

kill $bpid; wait $bpid
kill $mpid; wait $mpid
echo ==m-stopped; in_m ipvsadm -L --daemon
echo ==b-stopped; in_b ipvsadm -L --daemon
cat /tmp/toml.log /tmp/m.log /tmp/b.log >&2
"#;

/// The connection entry for the flow from 10.71.0.9:5555 in `ipvsadm -Lnc`
/// output, without its expiry column: protocol, state, source, virtual, destination.
fn flow(conns: &str) -> Option<Vec<String>> {
    conns
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 6 && f[3] == "10.71.0.9:5555")
        .map(|f| {
            [f[0], f[2], f[3], f[4], f[5]]
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
}

#[test]
fn sync_daemons_follow_the_config_and_vrrp_and_sync_connections() {
    xlb_testbed::require_root().unwrap();
    let out = Guest::new(format!("{WAIT_AGENT}{UNTIL_OK}{SCRIPT}"))
        .program(common::xlb_bin())
        .program("ipvsadm")
        .program("ip")
        .program("socat")
        .data("/etc/xlb/sync.toml", TOML)
        .data("/etc/xlb/m.conf", keepalived_conf("m", "vm", 150))
        .data("/etc/xlb/b.conf", keepalived_conf("b", "vb", 50))
        .modules(&["ip_vs", "ip_vs_rr", "dummy", "veth"])
        .memory_mib(768)
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let s = out.sections();
    // IPVS's defaults for what the config leaves out: maxlen, group, port, ttl.
    assert_eq!(
        s["toml-daemon"],
        "master sync daemon (mcast=dummy0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n",
        "{out}"
    );
    assert_eq!(s["toml-stopped"], "", "{out}");
    assert_eq!(
        s["m-daemon"],
        "master sync daemon (mcast=vm, syncid=4, maxlen=1000, group=224.0.0.99, port=9000, ttl=2)\n",
        "{out}"
    );
    // m started as VRRP Backup, its daemon as backup; then Master, master.
    let started: Vec<&str> = s["m-log"].lines().collect();
    assert!(
        started.len() == 2
            && started[0].contains("master=false")
            && started[1].contains("master=true"),
        "{out}"
    );
    // A backup's maxlen is its receive buffer, which the kernel sizes itself.
    assert_eq!(
        s["b-daemon"],
        "backup sync daemon (mcast=vb, syncid=4, maxlen=1024, group=224.0.0.99, port=9000, ttl=2)\n",
        "{out}"
    );
    let want: Vec<String> = [
        "UDP",
        "UDP",
        "10.71.0.9:5555",
        "10.70.0.100:80",
        "10.71.0.2:80",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(flow(&s["m-conns"]), Some(want.clone()), "{out}");
    assert_eq!(flow(&s["b-conns"]), Some(want), "{out}");
    assert_eq!(s["m-stopped"], "", "{out}");
    assert_eq!(s["b-stopped"], "", "{out}");
}
