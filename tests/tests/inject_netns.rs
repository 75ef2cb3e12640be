//! `FrameSender::send_many`, the bench's live generator, on a veth pair
//! between two namespaces: a batch sent with `sendmmsg` past the qdisc
//! arrives whole and in order on the peer; a malformed frame or a link that
//! is down is an error, and sends nothing.

use std::time::Duration;
use xlb_testbed::{
    capture::{capture_socket, receive_until},
    frames::eth,
    inject::FrameSender,
    netns::Netns,
};

/// An EtherType of IEEE's "local experimental" range: no stack in the
/// namespaces sends or answers it, so the capture sees only the test's frames.
const ETH_TEST: u16 = 0x88b5;

/// Frame `i` of a batch: broadcast, 60 bytes, its number in the payload.
fn frame(i: u16) -> Vec<u8> {
    let mut payload = vec![0u8; 46];
    payload[..2].copy_from_slice(&i.to_be_bytes());
    eth([0xff; 6], [0x02, 0, 0, 0, 0, 1], ETH_TEST, &payload)
}

/// The numbers of the test's frames among `frames`, in arrival order;
/// `None` for one that did not arrive as sent.
fn ours(frames: &[Vec<u8>]) -> Vec<Option<u16>> {
    frames
        .iter()
        .filter(|f| f.len() >= 14 && f[12..14] == ETH_TEST.to_be_bytes())
        .map(|f| {
            let i = u16::from_be_bytes([f[14], f[15]]);
            (*f == frame(i)).then_some(i)
        })
        .collect()
}

/// `a0` in one namespace, its peer `b0` in another, both up.
fn pair() -> (Netns, Netns) {
    let a = Netns::create("inja").unwrap();
    let b = Netns::create("injb").unwrap();
    a.run(
        "ip",
        &[
            "link",
            "add",
            "a0",
            "type",
            "veth",
            "peer",
            "name",
            "b0",
            "netns",
            b.name(),
        ],
    )
    .unwrap();
    a.run("ip", &["link", "set", "a0", "up"]).unwrap();
    b.run("ip", &["link", "set", "b0", "up"]).unwrap();
    (a, b)
}

fn sender(ns: &Netns) -> FrameSender {
    let s = ns.enter(|| FrameSender::open("a0")).unwrap().unwrap();
    s.bypass_qdisc().unwrap();
    s
}

#[test]
fn a_batch_past_the_qdisc_arrives_whole_and_in_order() {
    xlb_testbed::require_root().unwrap();
    let (a, b) = pair();
    let capture = capture_socket(&b, "b0").unwrap();
    let s = sender(&a);
    // 200: the capture socket's default receive buffer holds about 250
    // such frames, and it is read only once both sends are done.
    let batch: Vec<Vec<u8>> = (0..200).map(frame).collect();
    assert_eq!(s.send_many(&batch).unwrap(), batch.len());
    assert_eq!(s.send_many(&batch[..1]).unwrap(), 1, "and once more");
    let got = receive_until(&capture, Duration::from_secs(5), |f| {
        ours(f).len() > batch.len()
    });
    let mut want: Vec<Option<u16>> = (0..200).map(Some).collect();
    want.push(Some(0));
    assert_eq!(ours(&got), want);
}

#[test]
fn a_malformed_frame_or_a_link_that_is_down_sends_nothing() {
    xlb_testbed::require_root().unwrap();
    let (a, b) = pair();
    let capture = capture_socket(&b, "b0").unwrap();
    let s = sender(&a);
    let mut batch: Vec<Vec<u8>> = (0..3).map(frame).collect();
    batch[2].truncate(10);
    let e = s.send_many(&batch).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    a.run("ip", &["link", "set", "a0", "down"]).unwrap();
    let e = s.send_many(&[frame(7)]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENETDOWN), "{e}");
    let got = receive_until(&capture, Duration::from_millis(500), |_| false);
    assert_eq!(ours(&got), vec![]);
}
