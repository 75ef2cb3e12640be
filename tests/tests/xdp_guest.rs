//! The XDP data plane on the guest's kernel (Debian stable's, older than the
//! host's; tests/src/qemu.rs): its verifier must accept the director and
//! `xlb decap`, or xlb would fall back to IPVS where it matters most.
//!
//! In the guest, a client, a director and a real server, each a network
//! namespace, joined by two veth pairs (the director routes between them):
//! `xlb run` with `kind = "xdp"` serves a DR, a NAT, an IPIP-tunnel and a
//! GUE-tunnel UDP service, the real unwraps tunnels with `xlb decap`. Each
//! service's datagrams reach the real with the client's source (the VIP has
//! no route on the director, so only XDP can deliver them), and `xlb status`
//! reads the XDP plane's counters.

mod common;

use std::{path::Path, time::Duration};
use xlb_testbed::qemu::{
    Guest,
    job::{UNTIL_OK, WAIT_AGENT, client_director_real},
};

const CLIENT: &str = "10.81.0.10";
const REAL: &str = "10.80.0.2";
/// Routed nowhere on the director: a datagram to it reaches the real through XDP or not at all.
const VIP: &str = "10.90.0.100";
const GUE_PORT: u16 = 6080;
/// Datagrams sent to each service before the one that stops its receiver.
const DATAGRAMS: usize = 3;

/// The services: name, VIP port, method lines, the port the real receives on.
const SERVICES: [(&str, u16, &str, u16); 4] = [
    ("dr", 80, "method = \"dr\"\n", 80),
    ("nat", 81, "method = \"nat\"\n", 8081),
    ("ipip", 82, "method = \"tun\"\n", 82),
    (
        "gue",
        83,
        "method = \"tun\"\ntunnel = \"gue\"\ngue_port = 6080\n",
        83,
    ),
];

fn config() -> String {
    // Generic mode: native XDP_TX/redirect into a veth needs an XDP program
    // on the peer too; the verifier's verdict is the same in either mode.
    let mut s = String::from(
        "[dataplane]\nkind = \"xdp\"\ninterfaces = [\"d1\", \"d0\"]\nxdp_mode = \"generic\"\n\
         pin_path = \"/sys/fs/bpf/xlb-guest\"\n",
    );
    for (_, port, method, real_port) in SERVICES {
        s.push_str(&format!(
            "\n[[service]]\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"udp\"\nscheduler = \"rr\"\n{method}\
             [[service.real]]\naddress = \"{REAL}\"\nport = {real_port}\n"
        ));
    }
    s
}

/// The job: topology, receivers on the real, decap, the agent, datagrams.
fn script() -> String {
    let mut receivers = String::new();
    let mut sends = String::new();
    let mut results = String::new();
    for (name, port, _, real_port) in SERVICES {
        // NAT delivers to the real's own address; the others keep the VIP.
        let bind = if name == "nat" { REAL } else { VIP };
        receivers.push_str(&format!(
            "in_r xlb-udp-recv {bind}:{real_port} /tmp/{name}.ready 73746f70 60 > /tmp/{name}.out 2>/tmp/{name}.err &\n\
             echo $! > /tmp/{name}.pid\n\
             until_ok \"{name} receiver\" test -e /tmp/{name}.ready || exit 1\n"
        ));
        sends.push_str(&format!(
            "for i in $(seq {DATAGRAMS}); do printf p$i | in_c socat -u - UDP-SENDTO:{VIP}:{port}; done\n\
             printf stop | in_c socat -u - UDP-SENDTO:{VIP}:{port}\n"
        ));
        results.push_str(&format!(
            "wait $(cat /tmp/{name}.pid); rc=$?; echo ==rc-{name}; echo $rc\n\
             echo ==recv-{name}; cat /tmp/{name}.out; cat /tmp/{name}.err >&2\n"
        ));
    }
    let topology = client_director_real(CLIENT);
    format!(
        r#"{WAIT_AGENT}{UNTIL_OK}{topology}
in_r ip addr add {REAL}/24 dev r0
in_r ip addr add {VIP}/32 dev lo
in_r ip link set r0 up
# NAT: the real answers through the director.
in_r ip route add default via 10.80.0.1
# Checksum offload would leave partial checksums that XDP forwards as they are.
in_c ethtool -K c0 tx off >/dev/null
in_r ethtool -K r0 tx off >/dev/null
{receivers}
/usr/local/bin/nsenter --net=/run/netns/r /usr/local/bin/xlb decap --iface r0 --vip {VIP} --gue-port {GUE_PORT} 2>/tmp/decap.log &
decap=$!
/usr/local/bin/nsenter --net=/run/netns/d /usr/local/bin/xlb run -c /etc/xlb/xdp.toml 2>/tmp/agent.log &
pid=$!
wait_agent /tmp/agent.log $pid || exit 1
until_ok "the real resolved" sh -c '! /usr/local/bin/nsenter --net=/run/netns/d /usr/local/bin/xlb status --pin-path /sys/fs/bpf/xlb-guest | grep -q unreachable'
echo ==attached; in_d ip -d link show d1; in_d ip -d link show d0
echo ==decap-attached; in_r ip -d link show r0
{sends}
{results}
echo ==status; in_d xlb status --pin-path /sys/fs/bpf/xlb-guest
kill $pid; wait $pid; rc=$?
echo ==agent-rc; echo $rc
kill $decap; wait $decap; rc=$?
echo ==decap-rc; echo $rc
cat /tmp/agent.log /tmp/decap.log >&2
"#
    )
}

#[test]
fn the_xdp_director_and_decap_load_attach_and_forward_on_the_guest_kernel() {
    xlb_testbed::require_root().unwrap();
    let out = Guest::new(script())
        .program(common::xlb_bin())
        .program(Path::new(env!("CARGO_BIN_EXE_xlb-udp-recv")))
        .program("ip")
        .program("socat")
        .program("ethtool")
        .program("nsenter")
        .data("/etc/xlb/xdp.toml", config())
        .modules(&["veth"])
        .memory_mib(768)
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let s = out.sections();
    // Both director interfaces carry the director in generic mode, the
    // real's the decap program (native, else generic).
    for dev in ["d1", "d0"] {
        let link = s["attached"]
            .lines()
            .skip_while(|l| !l.contains(&format!(": {dev}@")))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(link.contains("xdpgeneric"), "{dev}:\n{link}\n{out}");
    }
    assert!(s["decap-attached"].contains("xdp"), "{out}");
    // Every service's datagrams arrived, from the client, in order.
    for (name, ..) in SERVICES {
        assert_eq!(s[&format!("rc-{name}")].trim(), "0", "{name}\n{out}");
        let got: Vec<&str> = s[&format!("recv-{name}")].lines().collect();
        let want: Vec<String> = (1..=DATAGRAMS).map(|i| hex_of(&format!("p{i}"))).collect();
        assert_eq!(got.len(), DATAGRAMS, "{name}: {got:?}\n{out}");
        for (line, payload) in got.iter().zip(&want) {
            let (from, data) = line.split_once(' ').unwrap();
            assert!(from.starts_with(&format!("{CLIENT}:")), "{name}: {line}");
            assert_eq!(data, payload, "{name}: {line}");
        }
    }
    // The XDP plane counted the flows: each service's real has one flow per
    // datagram (each sent from a new port), the stop datagram included.
    let status = &s["status"];
    assert!(
        status.starts_with("xlb data plane, maps pinned at /sys/fs/bpf/xlb-guest\n"),
        "{status}"
    );
    let conns: Vec<u64> = status
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("-> {REAL}:")))
        .map(|l| l.split_whitespace().nth(6).unwrap().parse().unwrap())
        .collect();
    assert_eq!(conns, [DATAGRAMS as u64 + 1; 4], "{status}");
    assert_eq!(s["agent-rc"].trim(), "0", "{out}");
    assert_eq!(s["decap-rc"].trim(), "0", "{out}");
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
