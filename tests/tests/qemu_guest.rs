//! The qemu guest harness against kernel features this host lacks: IPVS
//! programmed by ipvsadm, and IPIP decapsulation of hand-made frames.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    time::Duration,
};
use xlb_testbed::{
    frames,
    qemu::{
        Guest,
        ipip::{self, Datagram, Tools},
    },
};

fn tools() -> Tools<'static> {
    Tools {
        inject: Path::new(env!("CARGO_BIN_EXE_xlb-inject")),
        udp_recv: Path::new(env!("CARGO_BIN_EXE_xlb-udp-recv")),
    }
}

#[test]
fn the_scripts_output_and_status_come_back_exactly() {
    xlb_testbed::require_root().unwrap();
    let out = Guest::new(
        "printf 'line\\r\\n  spaced  \\n' ; cat /etc/note; echo to-stderr >&2; exit 7\n",
    )
    .data("/etc/note", "no newline at the end")
    .run()
    .unwrap();
    eprintln!(
        "guest: boot to script {:?}, total {:?}",
        out.boot, out.total
    );
    assert!(
        out.status == 7 && out.stdout == "line\r\n  spaced  \nno newline at the end",
        "{out}"
    );
    assert!(out.console.contains("to-stderr"), "{out}");
    let e = out.success().unwrap_err().to_string();
    assert!(e.contains("exited with 7"), "{e}");
}

#[test]
fn a_guest_that_does_not_finish_is_killed_at_the_timeout() {
    xlb_testbed::require_root().unwrap();
    let e = Guest::new("sleep 600")
        .timeout(Duration::from_secs(2))
        .run()
        .expect_err("a 600 s script finished within 2 s");
    assert!(
        e.to_string()
            .contains("did not power off within 2s; killed it"),
        "{e:#}"
    );
}

#[test]
fn ipvsadm_programs_the_guest_kernels_ipvs() {
    xlb_testbed::require_root().unwrap();
    let out = Guest::new(
        "set -e\n\
         ipvsadm -A -t 10.0.0.1:80 -s rr\n\
         ipvsadm -a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 2\n\
         ipvsadm -A -t 10.0.0.1:443 -s wrr\n\
         ipvsadm -a -t 10.0.0.1:443 -r 10.0.0.3:443 -g -w 5\n\
         ipvsadm -L -n\n",
    )
    .program("ipvsadm")
    .modules(&["ip_vs", "ip_vs_rr", "ip_vs_wrr"])
    .timeout(Duration::from_secs(50))
    .run()
    .unwrap();
    eprintln!(
        "guest: boot to script {:?}, total {:?}",
        out.boot, out.total
    );
    // ipvsadm's dest line is "  -> %-28s %-7s %-6d %-10u %-10u": trailing blanks included.
    let dest = |addr: &str, fwd: &str, weight: u32| {
        format!("  -> {addr:<28} {fwd:<7} {weight:<6} {:<10} {:<10}\n", 0, 0)
    };
    let expected = [
        "IP Virtual Server version 1.2.1 (size=4096)\n".to_string(),
        "Prot LocalAddress:Port Scheduler Flags\n".into(),
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".into(),
        "TCP  10.0.0.1:80 rr\n".into(),
        dest("10.0.0.2:80", "Masq", 2),
        "TCP  10.0.0.1:443 wrr\n".into(),
        dest("10.0.0.3:443", "Route", 5),
    ]
    .concat();
    assert!(
        out.status == 0 && out.stdout == expected,
        "unexpected ipvsadm listing\n--- expected ---\n{expected}{out}"
    );
}

#[test]
fn the_guest_kernel_decapsulates_ipip_to_the_vip() {
    xlb_testbed::require_root().unwrap();
    let vip = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 7777);
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000);
    let director = Ipv4Addr::new(10, 99, 0, 1);
    let to_vip =
        |payload: &[u8]| ipip::frame_to_real(director, &frames::udp4(client, vip, payload));
    // Same frame, inner destination an address the real server does not own.
    let elsewhere = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 101), 7777);
    let wrong_inner = ipip::frame_to_real(
        director,
        &frames::udp4(client, elsewhere, b"to the wrong address"),
    );

    let d = ipip::ipip_delivers(
        &tools(),
        vip,
        &[to_vip(b"first"), wrong_inner, to_vip(b"second")],
    )
    .unwrap();
    eprintln!(
        "guest: boot to script {:?}, total {:?}",
        d.guest.boot, d.guest.total
    );
    let expected = [
        Datagram {
            from: client,
            payload: b"first".to_vec(),
        },
        Datagram {
            from: client,
            payload: b"second".to_vec(),
        },
    ];
    assert!(
        d.received == expected,
        "received {:?}, expected {expected:?}\n{}",
        d.received,
        d.guest
    );
}

/// Interop: frames xlb's XDP director encapsulates for a TUN real (IPIP,
/// produced by the real program through BPF_PROG_TEST_RUN on this host) are
/// unwrapped by a real kernel `ipip` device in the guest and delivered to
/// the VIP, from the client's address.
#[test]
fn a_kernel_ipip_device_decapsulates_xlbs_tun_output() {
    use xlb_testbed::{netns::Netns, xdp};
    xlb_testbed::require_root().unwrap();
    let vip = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 7777);
    let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000);
    let inputs: Vec<Vec<u8>> = [b"alpha".as_slice(), b"beta", b"gamma"]
        .iter()
        .map(|p| {
            frames::eth(
                ipip::DIRECTOR_MAC,
                [0x02, 0, 0, 0, 0, 0xcc],
                frames::ETH_IPV4,
                &frames::udp4(client, vip, p),
            )
        })
        .collect();
    let real = xdp::TunReal {
        addr: ipip::REAL.into(),
        mac: ipip::REAL_MAC,
        ifindex: 1,
        gue_port: None,
    };
    // BPF_PROG_TEST_RUN only, in a namespace of its own: nothing is attached.
    let ns = Netns::create("tunout").unwrap();
    let outputs = ns
        .enter(|| {
            xdp::tun_output(
                xlb::EBPF_OBJECT,
                (vip.ip().to_owned().into(), vip.port(), lb_common::PROTO_UDP),
                &real,
                ipip::DIRECTOR.into(),
                (ipip::DIRECTOR_MAC, 1500),
                &inputs,
            )
        })
        .unwrap()
        .unwrap();
    let frames: Vec<Vec<u8>> = outputs
        .into_iter()
        .map(|(action, frame)| {
            assert_eq!(action, 3, "XDP_TX expected from the director");
            frame
        })
        .collect();
    let d = ipip::ipip_delivers(&tools(), vip, &frames).unwrap();
    let expected: Vec<Datagram> = [b"alpha".as_slice(), b"beta", b"gamma"]
        .iter()
        .map(|p| Datagram {
            from: client,
            payload: p.to_vec(),
        })
        .collect();
    assert!(
        d.received == expected,
        "received {:?}, expected {expected:?}\n{}",
        d.received,
        d.guest
    );
}
