//! lb-sync's codec against the kernel's own sync daemons, in a qemu guest
//! (this host has no IPVS): two namespaces joined by a veth pair, `m` with
//! an IPVS service and a master sync daemon, `b` listening.
//!
//! - A message kernel IPVS sent for a UDP flow decodes to that flow, and
//!   lb-sync writes the decoded connection back byte for byte.
//! - A message lb-sync wrote, sent to a kernel backup daemon, appears in
//!   that kernel's connection table (`ipvsadm -Lnc`).

mod common;

use lb_sync::{Addrs, Packer, SyncConn, decode, flags};
use std::{net::Ipv4Addr, time::Duration};
use xlb_testbed::qemu::{Guest, job::UNTIL_OK};

const SCRIPT: &str = r#"
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
# The real and the client are m's own addresses: IPVS forwards to Local.
in_m ip link add dummy0 type dummy
in_m ip link set dummy0 up
in_m ip addr add 10.71.0.2/32 dev dummy0
in_m ip addr add 10.71.0.9/32 dev dummy0
in_m ip addr add 10.70.0.100/32 dev dummy0
in_m ipvsadm -A -u 10.70.0.100:80 -s rr
in_m ipvsadm -a -u 10.70.0.100:80 -r 10.71.0.2:80 -g
in_m ipvsadm --start-daemon master --mcast-interface vm --syncid 5

# One datagram of m's sync daemon, caught in b (bounded: 60 s).
in_b timeout 60 socat -u UDP4-RECVFROM:8848,reuseaddr,ip-add-membership=224.0.0.81:vb OPEN:/tmp/kernel.bin,creat,trunc &
catcher=$!
# Bound to port 8848 (0x2290) before any flow starts.
until_ok "the catcher" sh -c '/usr/local/bin/ip netns exec b grep -q ":2290 " /proc/net/udp'
# IPVS syncs a UDP flow at its third packet, then every 50th.
for i in 1 2 3 4; do echo x | in_m socat -u - UDP-SENDTO:10.70.0.100:80,bind=10.71.0.9:5555; done
wait $catcher
echo ==kernel; od -An -tx1 -v /tmp/kernel.bin | tr -d ' \n'; echo

# The other way: b's kernel as backup, fed the message lb-sync wrote.
in_b ipvsadm --start-daemon backup --mcast-interface vb --syncid 5
until_ok "b's backup daemon" sh -c '/usr/local/bin/ip netns exec b ipvsadm -L --daemon | grep -q "^backup"'
in_m socat -u OPEN:/etc/xlb/ours.bin UDP4-DATAGRAM:224.0.0.81:8848,ip-multicast-if=10.70.0.1
until_ok "our connection in b" sh -c '/usr/local/bin/ip netns exec b ipvsadm -Lnc | grep -q 10.71.0.50:6000'
echo ==b-conns; in_b ipvsadm -Lnc
"#;

/// A connection b's kernel has never seen: client 10.71.0.50:6000.
fn ours() -> SyncConn {
    SyncConn {
        protocol: 17,
        addrs: Addrs::V4 {
            client: Ipv4Addr::new(10, 71, 0, 50),
            virt: Ipv4Addr::new(10, 70, 0, 100),
            real: Ipv4Addr::new(10, 71, 0, 2),
        },
        cport: 6000,
        vport: 80,
        dport: 80,
        flags: flags::DROUTE,
        state: 0,
        fwmark: 0,
        timeout: 250,
        seq: None,
        pe: None,
    }
}

#[test]
fn kernel_sync_messages_decode_and_ours_reach_the_kernel() {
    xlb_testbed::require_root().unwrap();
    let mut packer = Packer::new(5, lb_sync::DEFAULT_MAXLEN_V4);
    packer.push(&ours());
    let message = packer.flush().expect("one connection");
    let out = Guest::new(format!("{UNTIL_OK}{SCRIPT}"))
        .program("ipvsadm")
        .program("ip")
        .program("socat")
        .data("/etc/xlb/ours.bin", message)
        .modules(&["ip_vs", "ip_vs_rr", "dummy", "veth"])
        .memory_mib(768)
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    let s = out.sections();

    let kernel = hex::decode(s["kernel"].trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let d = decode(&kernel, 5).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((d.syncid, d.version, &d.cut), (5, 1, &None), "{out}");
    let flow = d
        .conns
        .iter()
        .find(|c| c.cport == 5555)
        .unwrap_or_else(|| panic!("no flow from port 5555 in {d:?}"));
    assert_eq!(
        flow.addrs,
        Addrs::V4 {
            client: Ipv4Addr::new(10, 71, 0, 9),
            virt: Ipv4Addr::new(10, 70, 0, 100),
            real: Ipv4Addr::new(10, 71, 0, 2),
        }
    );
    assert_eq!((flow.protocol, flow.vport, flow.dport), (17, 80, 80));
    // The service's method (`-g`), and DR's "no output" mark.
    assert_eq!(flow.flags & flags::FWD_MASK, flags::DROUTE, "{flow:?}");
    assert_ne!(flow.flags & flags::NOOUTPUT, 0, "{flow:?}");
    // UDP's idle timeout, in seconds.
    assert_eq!(flow.timeout, 300, "{flow:?}");

    // Written back, the kernel's connections are the kernel's bytes.
    let mut again = Packer::new(5, lb_sync::DEFAULT_MAXLEN_V4);
    for c in &d.conns {
        let mut sent = c.clone();
        sent.flags &= !flags::SYNC;
        assert_eq!(again.push(&sent), None);
    }
    assert_eq!(again.flush().as_deref(), Some(&kernel[..]), "{out}");

    let entry = s["b-conns"]
        .lines()
        .find(|l| l.contains("10.71.0.50:6000"))
        .unwrap_or_else(|| panic!("b's kernel did not take our connection: {out}"));
    let f: Vec<&str> = entry.split_whitespace().collect();
    assert_eq!(
        (f[0], f[3], f[4], f[5]),
        ("UDP", "10.71.0.50:6000", "10.70.0.100:80", "10.71.0.2:80"),
        "{out}"
    );
}
