//! The sync codec against byte layouts written out from the kernel's
//! structs (ip_vs_sync.c), and its packing and refusals.

use lb_common::conn;
use lb_sync::{
    Addrs, Decoded, Dropped, Packer, PeData, Policy, SeqAdjust, Skipped, SyncConn, decode, flags,
    needed,
};
use std::net::{Ipv4Addr, Ipv6Addr};

fn v4(client: [u8; 4], cport: u16) -> SyncConn {
    SyncConn {
        protocol: 6,
        addrs: Addrs::V4 {
            client: Ipv4Addr::from(client),
            virt: Ipv4Addr::new(10, 0, 0, 100),
            real: Ipv4Addr::new(10, 0, 1, 1),
        },
        cport,
        vport: 80,
        dport: 8080,
        flags: flags::DROUTE,
        state: conn::ESTABLISHED as u16,
        fwmark: 0,
        timeout: 900,
        seq: None,
        pe: None,
    }
}

/// One IPv4 TCP connection in a version 1 message, byte by byte as
/// `struct ip_vs_sync_mesg` + `struct ip_vs_sync_v4` lay it out.
const GOLDEN_V4: [u8; 44] = [
    0, 7, 0, 44, // reserved, syncid 7, size 44
    1, 1, 0, 0, // nr_conns 1, version 1, spare
    0, 6, 0, 36, // type IPv4, TCP, ver_size: version 0, 36 bytes
    0, 0, 0, 3, // flags: DROUTE
    0, 1, // state ESTABLISHED
    0x9c, 0x40, 0, 80, 0x1f, 0x90, // cport 40000, vport 80, dport 8080
    0, 0, 0, 0, // fwmark
    0, 0, 3, 0x84, // timeout 900 s
    192, 168, 7, 9, 10, 0, 0, 100, 10, 0, 1, 1, // client, virtual, real
];

#[test]
fn a_connection_is_written_as_the_kernel_lays_it_out() {
    let mut p = Packer::new(7, lb_sync::DEFAULT_MAXLEN_V4);
    assert_eq!(p.push(&v4([192, 168, 7, 9], 40000)), None);
    assert_eq!(p.flush().as_deref(), Some(&GOLDEN_V4[..]));
    assert_eq!(p.flush(), None, "a flushed packer holds nothing");
}

#[test]
fn a_kernel_message_reads_back_with_the_backups_flags() {
    let mut msg = GOLDEN_V4;
    // HASHED and ONE_PACKET are the sender's business; a Backup drops them
    // and marks the entry as learned from sync.
    msg[15] |= (flags::HASHED | flags::ONE_PACKET) as u8;
    msg[14] |= (flags::ONE_PACKET >> 8) as u8;
    let d = decode(&msg, 7).expect("a good message");
    let mut want = v4([192, 168, 7, 9], 40000);
    want.flags = flags::DROUTE | flags::SYNC;
    assert_eq!(
        d,
        Decoded {
            syncid: 7,
            version: 1,
            conns: vec![want],
            skipped: vec![],
            cut: None
        }
    );
    assert_eq!(
        decode(&msg, 0).map(|d| d.conns.len()),
        Ok(1),
        "sync id 0 takes any"
    );
    assert_eq!(decode(&msg, 8), Err(Dropped::SyncId(7)));
}

#[test]
fn ipv6_sequence_and_persistence_data_round_trip_with_padding() {
    let six = SyncConn {
        protocol: 17,
        addrs: Addrs::V6 {
            client: "2001:db8::7".parse::<Ipv6Addr>().unwrap(),
            virt: "2001:db8::100".parse().unwrap(),
            real: "2001:db8:1::1".parse().unwrap(),
        },
        cport: 5353,
        vport: 53,
        dport: 53,
        flags: flags::TUNNEL | flags::IN_SEQ,
        state: 0,
        fwmark: 42,
        timeout: 300,
        seq: Some((
            SeqAdjust {
                init_seq: 1,
                delta: 2,
                previous_delta: 3,
            },
            SeqAdjust::default(),
        )),
        // 5 + 3 bytes of option data leave the connection off a 4-byte boundary.
        pe: PeData::new(b"abcde".to_vec(), b"sip".to_vec()),
    };
    assert!(six.pe.is_some());
    assert_eq!(six.wire_len(), 72 + 26 + 7 + 5);
    let mut p = Packer::new(1, 1500);
    p.push(&six);
    p.push(&v4([10, 9, 9, 9], 1234));
    let msg = p.flush().unwrap();
    let second = 8 + 112;
    assert_eq!(second % 4, 0);
    assert_eq!(
        msg.len(),
        8 + 110 + 2 + 36,
        "two bytes of padding count in the size"
    );
    assert_eq!(&msg[8 + 110..second], &[0, 0]);
    assert_eq!(u16::from_be_bytes([msg[2], msg[3]]) as usize, msg.len());
    let d = decode(&msg, 1).unwrap();
    assert_eq!(d.cut, None);
    assert_eq!(d.conns.len(), 2);
    let mut back = six.clone();
    back.flags |= flags::SYNC;
    assert_eq!(d.conns[0], back);
    assert_eq!(d.conns[1].addrs, v4([10, 9, 9, 9], 1234).addrs);
}

#[test]
fn messages_stay_within_maxlen_and_lose_nothing() {
    let conns: Vec<SyncConn> = (0..100u16)
        .map(|i| v4([172, 16, 0, i as u8], 1000 + i))
        .collect();
    let mut p = Packer::new(0, lb_sync::DEFAULT_MAXLEN_V4);
    let mut msgs: Vec<Vec<u8>> = conns.iter().filter_map(|c| p.push(c)).collect();
    msgs.extend(p.flush());
    // (1472 - 8) / 36 = 40 connections a message, as the kernel fits them.
    assert_eq!(msgs.iter().map(|m| m[4]).collect::<Vec<_>>(), [40, 40, 20]);
    assert!(msgs.iter().all(|m| m.len() <= lb_sync::DEFAULT_MAXLEN_V4));
    let back: Vec<u16> = msgs
        .iter()
        .flat_map(|m| decode(m, 0).unwrap().conns)
        .map(|c| c.cport)
        .collect();
    assert_eq!(back, (1000..1100).collect::<Vec<_>>());
}

#[test]
fn an_oversize_connection_gets_a_message_of_its_own_and_counts_stop_at_255() {
    let mut p = Packer::new(0, 20);
    assert_eq!(p.push(&v4([1, 1, 1, 1], 1)), None);
    let first = p
        .push(&v4([1, 1, 1, 2], 2))
        .expect("the second does not fit");
    assert_eq!((first[4], first.len()), (1, 44));

    let mut p = Packer::new(0, 65_507);
    let closed: Vec<Vec<u8>> = (0..300u16)
        .filter_map(|i| p.push(&v4([1, 1, 1, 1], i)))
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0][4], 255);
    assert_eq!(p.pending(), 45);
}

#[test]
fn bad_headers_are_refused_whole() {
    assert_eq!(decode(&[0, 1, 0], 0), Err(Dropped::Short(3)));
    let mut msg = GOLDEN_V4.to_vec();
    msg.push(0);
    assert_eq!(decode(&msg, 0), Err(Dropped::Size { said: 44, got: 45 }));
}

/// Two connections, the second broken by `spoil`: what the first gives.
fn second_spoiled(spoil: impl Fn(&mut Vec<u8>)) -> Decoded {
    let mut p = Packer::new(0, 1500);
    p.push(&v4([1, 1, 1, 1], 1));
    p.push(&v4([2, 2, 2, 2], 2));
    let mut msg = p.flush().unwrap();
    spoil(&mut msg);
    let len = msg.len() as u16;
    msg[2..4].copy_from_slice(&len.to_be_bytes());
    decode(&msg, 0).unwrap()
}

#[test]
fn a_malformed_connection_cuts_the_message_and_keeps_what_came_before() {
    const SECOND: usize = 8 + 36;
    let d = second_spoiled(|m| m[SECOND] = 2);
    assert_eq!((d.conns.len(), d.cut), (1, Some(Dropped::Type(1, 2))));
    let d = second_spoiled(|m| m[SECOND + 2] = 0x10);
    assert_eq!(d.cut, Some(Dropped::ConnVersion(1, 1)));
    let d = second_spoiled(|m| m.truncate(m.len() - 4));
    assert_eq!(d.cut, Some(Dropped::Truncated(1)));
    // An option with length 0.
    let d = second_spoiled(|m| {
        m[SECOND + 3] = 38;
        m.extend_from_slice(&[1, 0]);
    });
    assert_eq!(
        d.cut,
        Some(Dropped::Option(1, "option length zero or past the end"))
    );
    assert_eq!(d.conns[0].cport, 1);
}

#[test]
fn an_unusable_connection_is_skipped_and_the_rest_read() {
    const FIRST: usize = 8;
    // A mandatory option nobody knows (type 5) on the first connection.
    let d = second_spoiled(|m| {
        m[FIRST + 3] = 40;
        m.splice(FIRST + 36..FIRST + 36, [5, 2, 0xaa, 0xbb]);
    });
    assert_eq!(d.skipped, [Skipped::UnknownOption(5)]);
    assert_eq!(d.conns.iter().map(|c| c.cport).collect::<Vec<_>>(), [2]);
    // The same option marked "may be ignored" is ignored.
    let d = second_spoiled(|m| {
        m[FIRST + 3] = 40;
        m.splice(FIRST + 36..FIRST + 36, [5 | 64, 2, 0xaa, 0xbb]);
    });
    assert_eq!((d.skipped.len(), d.conns.len()), (0, 2));
    // SCTP, and a TCP state past the last.
    let d = second_spoiled(|m| m[FIRST + 1] = 132);
    assert_eq!(d.skipped, [Skipped::Protocol(132)]);
    let d = second_spoiled(|m| m[FIRST + 9] = 11);
    assert_eq!(
        d.skipped,
        [Skipped::State {
            protocol: 6,
            state: 11
        }]
    );
}

#[test]
fn version_0_messages_are_read() {
    // struct ip_vs_sync_mesg_v0 + ip_vs_sync_conn_v0, one UDP connection.
    let msg = [
        1, 3, 0, 28, // nr_conns 1, syncid 3, size 28
        0, 17, 0x13, 0x88, 0, 53, 0, 53, // reserved, UDP, cport 5000, vport 53, dport 53
        10, 1, 1, 1, 10, 0, 0, 53, 10, 0, 2, 2, // client, virtual, real
        0, 0x43, 0, 0, // flags: DROUTE | HASHED | SYNC(set anyway), state 0
    ];
    let d = decode(&msg, 3).unwrap();
    assert_eq!(d.version, 0);
    let c = &d.conns[0];
    assert_eq!((c.protocol, c.cport, c.dport, c.timeout), (17, 5000, 53, 0));
    assert_eq!(c.flags, flags::DROUTE | flags::SYNC);
}

#[test]
fn the_send_rule_is_the_kernels() {
    let p = Policy::default();
    use conn::{ESTABLISHED, FIN_WAIT, NONE, SYN_RECV};
    // An embryonic connection is never sent.
    assert!(!needed(&p, 6, false, SYN_RECV, NONE, 3));
    // Established: at the threshold, then every period.
    assert!(needed(&p, 6, false, ESTABLISHED, SYN_RECV, 3));
    assert!(!needed(&p, 6, false, ESTABLISHED, ESTABLISHED, 4));
    assert!(needed(&p, 6, false, ESTABLISHED, ESTABLISHED, 53));
    // A move to a closing state goes at once.
    assert!(needed(&p, 6, false, FIN_WAIT, ESTABLISHED, 17));
    assert!(!needed(&p, 6, false, FIN_WAIT, FIN_WAIT, 17));
    // UDP on packet counts; templates whenever asked.
    assert!(needed(&p, 17, false, 0, 0, 103));
    assert!(!needed(&p, 17, false, 0, 0, 4));
    assert!(needed(&p, 6, true, 0, 0, 4));
    // With no period, only the threshold packet.
    let once = Policy {
        threshold: 3,
        period: 0,
    };
    assert!(needed(&once, 17, false, 0, 0, 3) && !needed(&once, 17, false, 0, 0, 53));
}
