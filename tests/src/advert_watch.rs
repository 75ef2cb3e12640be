//! VRRP adverts as one host hears them: an AF_PACKET socket on its
//! interface records every IPv4 VRRP advert (v2 or v3) with the instant it
//! arrived, its source and its priority, on a thread bounded in time and in
//! count. The failover figures timed from the old Master's last advert use
//! it (`failover::after_advert`).
//!
//! The header is parsed here rather than with xlb's own decoder: the watcher
//! is a witness of what went on the wire, independent of the daemon it times,
//! and needs only the fixed fields (no checksum or address checks).

use crate::{capture::capture_socket, netns::Netns};
use anyhow::Result;
use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Adverts kept at most (10 a second at 100 ms: hours of recording).
const MAX_ADVERTS: usize = 100_000;
const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_VRRP: u8 = 112;
const TYPE_ADVERT: u8 = 1;
/// Version/type, VRID, priority, address count, interval or auth, checksum.
const VRRP_HEADER: usize = 8;

/// The fixed fields of one advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert {
    pub src: Ipv4Addr,
    /// 2 or 3.
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
}

/// An advert and when it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heard {
    pub at: Instant,
    pub advert: Advert,
}

/// The advert in an Ethernet frame, if it carries one: IPv4 (any header
/// length), protocol 112, not a later fragment, VRRP version 2 or 3 and type
/// ADVERTISEMENT, the fixed header present. `None` for anything else,
/// truncated or malformed frames included.
pub fn parse(frame: &[u8]) -> Option<Advert> {
    let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_HEADER..)?;
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?));
    let fragment_offset = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?) & 0x1fff;
    if ip.get(9) != Some(&PROTO_VRRP) || fragment_offset != 0 || total < ihl + VRRP_HEADER {
        return None;
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let vrrp = ip.get(ihl..total)?;
    let (version, kind) = (vrrp[0] >> 4, vrrp[0] & 0x0f);
    if !(2..=3).contains(&version) || kind != TYPE_ADVERT {
        return None;
    }
    Some(Advert {
        src,
        version,
        vrid: vrrp[1],
        priority: vrrp[2],
    })
}

/// The last advert from `src` with a non-zero priority that arrived before
/// `until`: the one a Backup's Master_Down timer last restarted on.
pub fn last_advert(heard: &[Heard], src: IpAddr, until: Instant) -> Option<Instant> {
    heard
        .iter()
        .filter(|h| IpAddr::V4(h.advert.src) == src && h.advert.priority > 0 && h.at < until)
        .map(|h| h.at)
        .next_back()
}

/// The first priority-0 advert ("I am leaving") from `src` at or after `from`.
pub fn leaving_advert(heard: &[Heard], src: IpAddr, from: Instant) -> Option<Instant> {
    heard
        .iter()
        .find(|h| IpAddr::V4(h.advert.src) == src && h.advert.priority == 0 && h.at >= from)
        .map(|h| h.at)
}

/// Records adverts on one interface until stopped, or until its time limit.
pub struct AdvertWatch {
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdvertWatch {
    /// Starts watching `dev` in `ns`; adverts arriving from now on are
    /// recorded, for at most `limit`.
    pub fn start(ns: &Netns, dev: &str, limit: Duration) -> Result<AdvertWatch> {
        let fd = capture_socket(ns, dev)?;
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (heard, stop) = (heard.clone(), stop.clone());
            std::thread::Builder::new()
                .name("advert-watch".into())
                .spawn(move || watch(&fd, limit, &heard, &stop))?
        };
        Ok(AdvertWatch {
            heard,
            stop,
            thread: Some(thread),
        })
    }

    /// What has been heard so far.
    pub fn heard(&self) -> Vec<Heard> {
        self.heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops watching: every advert heard, in arrival order.
    pub fn finish(mut self) -> Vec<Heard> {
        self.halt();
        self.heard()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AdvertWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The capture socket times out every 200 ms, so `stop` is seen that often.
fn watch(fd: &OwnedFd, limit: Duration, heard: &Mutex<Vec<Heard>>, stop: &AtomicBool) {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < limit && !stop.load(Ordering::SeqCst) {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let at = Instant::now();
        let Some(advert) = usize::try_from(n).ok().and_then(|n| parse(&buf[..n])) else {
            continue;
        };
        let mut heard = heard.lock().unwrap_or_else(PoisonError::into_inner);
        if heard.len() >= MAX_ADVERTS {
            return;
        }
        heard.push(Heard { at, advert });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame with an IPv4 header of `ihl` words and a VRRP advert.
    fn frame(ihl: u8, version: u8, kind: u8, priority: u8) -> Vec<u8> {
        let mut f = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
        f.extend([0x00, 0x00, 0x5e, 0x00, 0x01, 51]);
        f.extend(ETHERTYPE_IPV4.to_be_bytes());
        let ip_len = usize::from(ihl) * 4;
        let vrrp = [(version << 4) | kind, 51, priority, 1, 0, 10, 0xab, 0xcd];
        let total = (ip_len + vrrp.len() + 4) as u16;
        let mut ip = vec![0x40 | ihl, 0xc0];
        ip.extend(total.to_be_bytes());
        ip.extend([0, 0, 0, 0, 255, PROTO_VRRP, 0, 0]);
        ip.extend([10, 250, 0, 2, 224, 0, 0, 18]);
        ip.resize(ip_len, 1); // options, if any
        f.extend(ip);
        f.extend(vrrp);
        f.extend([10, 250, 0, 100]);
        f
    }

    #[test]
    fn parses_v2_and_v3_adverts_with_or_without_ip_options() {
        let want = |version, priority| Advert {
            src: Ipv4Addr::new(10, 250, 0, 2),
            version,
            vrid: 51,
            priority,
        };
        assert_eq!(parse(&frame(5, 3, 1, 150)), Some(want(3, 150)));
        assert_eq!(parse(&frame(5, 2, 1, 0)), Some(want(2, 0)));
        assert_eq!(parse(&frame(6, 3, 1, 100)), Some(want(3, 100)));
    }

    #[test]
    fn anything_else_is_not_an_advert() {
        assert_eq!(parse(&frame(5, 4, 1, 150)), None, "version 4");
        assert_eq!(parse(&frame(5, 3, 2, 150)), None, "type 2");
        assert_eq!(parse(&frame(4, 3, 1, 150)), None, "IHL below 5");
        let mut udp = frame(5, 3, 1, 150);
        udp[ETH_HEADER + 9] = 17;
        assert_eq!(parse(&udp), None, "not protocol 112");
        let mut arp = frame(5, 3, 1, 150);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp), None, "not IPv4");
        let mut fragment = frame(5, 3, 1, 150);
        fragment[ETH_HEADER + 7] = 1;
        assert_eq!(parse(&fragment), None, "a later fragment");
        let mut lying = frame(5, 3, 1, 150);
        lying[ETH_HEADER + 3] = 0xff;
        assert_eq!(parse(&lying), None, "total length beyond the frame");
        let mut short = frame(5, 3, 1, 150);
        short[ETH_HEADER + 3] = 20 + 7;
        assert_eq!(parse(&short), None, "VRRP header cut short");
    }

    #[test]
    fn every_truncation_is_rejected_without_panicking() {
        let f = frame(5, 3, 1, 150);
        // The total length covers the addresses, so only the whole frame parses.
        for n in 0..f.len() {
            assert_eq!(parse(&f[..n]), None, "cut at {n}");
        }
        assert!(parse(&f).is_some());
    }

    fn heard(t0: Instant, ms: u64, src: [u8; 4], priority: u8) -> Heard {
        Heard {
            at: t0 + Duration::from_millis(ms),
            advert: Advert {
                src: Ipv4Addr::from(src),
                version: 3,
                vrid: 51,
                priority,
            },
        }
    }

    #[test]
    fn last_advert_is_the_masters_latest_before_the_limit() {
        let t0 = Instant::now();
        let (master, backup) = ([10, 250, 0, 2], [10, 250, 0, 3]);
        let log = [
            heard(t0, 0, master, 150),
            heard(t0, 100, master, 150),
            heard(t0, 200, master, 150),
            // The Backup's own adverts once it took over.
            heard(t0, 560, backup, 100),
            heard(t0, 660, backup, 100),
        ];
        let m = IpAddr::from(master);
        assert_eq!(
            last_advert(&log, m, t0 + Duration::from_millis(600)),
            Some(log[2].at)
        );
        // Only adverts before the limit count.
        assert_eq!(last_advert(&log, m, log[2].at), Some(log[1].at));
        assert_eq!(last_advert(&log, m, t0), None);
        assert_eq!(
            last_advert(
                &log,
                IpAddr::from([10, 250, 0, 9]),
                t0 + Duration::from_secs(1)
            ),
            None
        );
    }

    #[test]
    fn a_priority_zero_advert_is_leaving_not_the_last_advert() {
        let t0 = Instant::now();
        let master = [10, 250, 0, 2];
        let log = [
            heard(t0, 0, master, 150),
            heard(t0, 100, master, 150),
            heard(t0, 130, master, 0),
            heard(t0, 140, master, 0),
        ];
        let m = IpAddr::from(master);
        let end = t0 + Duration::from_secs(1);
        assert_eq!(last_advert(&log, m, end), Some(log[1].at));
        assert_eq!(leaving_advert(&log, m, log[1].at), Some(log[2].at));
        assert_eq!(leaving_advert(&log, m, log[3].at), Some(log[3].at));
        assert_eq!(leaving_advert(&log, m, end), None);
    }
}
