//! Gratuitous ARP and unsolicited neighbour advertisements: after taking
//! over a VIP, tell the link its new MAC so switches and neighbours stop
//! sending to the old Master. Frames are built here (two fixed layouts, so
//! a small builder beats a packet crate) and sent on an AF_PACKET socket
//! per interface, opened once and kept: closing a packet socket waits for
//! the kernel's RCU grace period (8 to 24 ms measured), which a socket per
//! burst paid on the VRRP thread.

use anyhow::{Context, Result, bail};
use std::{
    collections::HashMap,
    ffi::CString,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{Mutex, PoisonError},
};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1 mapped to Ethernet (RFC 2464 section 7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMPV6: u8 = 58;
const NEIGHBOUR_ADVERT: u8 = 136;
const NA_ROUTER: u8 = 0x80;
const NA_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;

/// The packet sockets announcements go out on, one per interface name,
/// shared by every instance on it and usable from any thread. A socket is
/// opened (in the caller's network namespace) on the first announcement
/// on its interface and kept; it is opened again when the interface's
/// index changed (deleted and created again) or a send failed.
#[derive(Default)]
pub struct Announcer {
    sockets: Mutex<HashMap<String, PacketSocket>>,
}

impl Announcer {
    pub fn new() -> Announcer {
        Announcer::default()
    }

    /// Sends one gratuitous ARP per IPv4 address and one unsolicited
    /// neighbour advertisement per IPv6 address out of `ifname`, from its
    /// MAC. Repeats and pacing (`garp_master_repeat`, `garp_interval`) are
    /// the caller's.
    pub fn announce(&self, ifname: &str, addrs: &[IpAddr]) -> Result<()> {
        let what = || format!("announcing {addrs:?} on {ifname}");
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        let socket = match sockets.remove(ifname) {
            Some(s) if s.current().with_context(what)? => s,
            _ => PacketSocket::open(ifname).with_context(what)?,
        };
        let socket = match send_all(&socket, ifname, addrs) {
            Ok(()) => socket,
            // The interface changed under the socket: once more on a fresh one.
            Err(Failure::Socket(_)) => {
                drop(socket);
                let fresh = PacketSocket::open(ifname).with_context(what)?;
                send_all(&fresh, ifname, addrs).map_err(Failure::into_error)?;
                fresh
            }
            Err(e) => {
                sockets.insert(ifname.to_string(), socket);
                return Err(e.into_error());
            }
        };
        sockets.insert(ifname.to_string(), socket);
        Ok(())
    }

    /// Closes the socket of `ifname` (an interface the agent deleted).
    pub fn forget(&self, ifname: &str) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(ifname);
    }
}

/// Why sending failed: the socket (worth reopening), or the moment (a full
/// transmit queue: the frame is lost, the socket is fine).
enum Failure {
    Socket(anyhow::Error),
    Busy(anyhow::Error),
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Socket(e) | Failure::Busy(e) => e,
        }
    }
}

/// The frames for `addrs`, sent from the interface's current MAC.
fn send_all(socket: &PacketSocket, ifname: &str, addrs: &[IpAddr]) -> Result<(), Failure> {
    let mac = socket
        .mac()
        .with_context(|| format!("reading the MAC address of {ifname}"))
        .map_err(Failure::Socket)?;
    // The router flag tells hosts they may keep using us as a router.
    let router = addrs.iter().any(IpAddr::is_ipv6) && ipv6_forwarding(ifname);
    for addr in addrs {
        let (frame, dst) = match addr {
            IpAddr::V4(ip) => (garp(mac, *ip).to_vec(), BROADCAST),
            IpAddr::V6(ip) => (unsolicited_na(mac, *ip, router).to_vec(), ALL_NODES_MAC),
        };
        if let Err(e) = socket.send(&frame, dst) {
            let busy = matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS));
            let e = anyhow::Error::new(e).context(format!("announcing {addr} on {ifname}"));
            return Err(if busy {
                Failure::Busy(e)
            } else {
                Failure::Socket(e)
            });
        }
    }
    Ok(())
}

/// Whether IPv6 forwarding is on for `ifname` (read in this thread's namespace).
fn ipv6_forwarding(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
        .is_ok_and(|v| v.trim() == "1")
}

/// A gratuitous ARP in request form, as keepalived sends it: sender and
/// target are the VIP, the target MAC is broadcast.
pub fn garp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 section 7.2.6) from
/// `ip` to all nodes: override flag, target `ip`, target link-layer option.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr, router: bool) -> [u8; 86] {
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip6 = &mut f[14..54];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip6[6] = ICMPV6;
    // Hop limit 255: receivers drop ND packets that crossed a router.
    ip6[7] = 255;
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());
    let icmp = &mut f[54..86];
    icmp[0] = NEIGHBOUR_ADVERT;
    icmp[4] = NA_OVERRIDE | if router { NA_ROUTER } else { 0 };
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = OPT_TARGET_LL_ADDR;
    icmp[25] = 1; // in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The Internet checksum over the IPv6 pseudo-header and `body`.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> u16 {
    let len = u32::try_from(body.len()).expect("ICMPv6 body fits u32");
    let mut pseudo = Vec::with_capacity(40 + body.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    pseudo.extend_from_slice(body);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An AF_PACKET socket bound to one interface with protocol 0, so it
/// receives nothing.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// The interface's name as `ifreq` carries it (NUL-terminated).
    name: [libc::c_char; libc::IFNAMSIZ],
}

impl PacketSocket {
    fn open(ifname: &str) -> Result<PacketSocket> {
        let c_name = CString::new(ifname).context("interface name has a NUL byte")?;
        if ifname.len() >= libc::IFNAMSIZ {
            bail!("interface name {ifname} is too long");
        }
        // SAFETY: plain syscall; protocol 0 means the socket receives nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("opening an AF_PACKET socket");
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // The name fits (checked above) and stays NUL-terminated.
        let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (dst, src) in name.iter_mut().zip(c_name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let mut socket = PacketSocket {
            fd,
            ifindex: 0,
            name,
        };
        socket.ifindex = socket.index().context("no such interface")?;
        // SAFETY: sockaddr_ll is plain data.
        let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        at.sll_family = libc::AF_PACKET as u16;
        at.sll_ifindex = socket.ifindex;
        // SAFETY: `at` is a valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const at).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error()).context("binding to the interface");
        }
        socket.mac().context("reading its MAC address")?;
        Ok(socket)
    }

    /// An `ifreq` naming the interface, for its ioctls.
    fn request(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain data, valid all zero.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.name;
        req
    }

    /// The interface's index now (SIOCGIFINDEX: no socket opened for it).
    fn index(&self) -> io::Result<i32> {
        let mut req = self.request();
        // SAFETY: SIOCGIFINDEX fills ifr_ifindex of a valid ifreq.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the union member the ioctl just wrote.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// Whether the socket is still bound to the interface of that name:
    /// false once it was deleted and created again (another index); an
    /// error when no interface has the name.
    fn current(&self) -> Result<bool> {
        Ok(self.index().context("no such interface")? == self.ifindex)
    }

    /// The interface's MAC now (it can be changed while the socket stays).
    fn mac(&self) -> Result<[u8; 6]> {
        let mut req = self.request();
        // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: the union member the ioctl just wrote.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        if hw.sa_family != libc::ARPHRD_ETHER {
            bail!("not an Ethernet interface (hardware type {})", hw.sa_family);
        }
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *dst = *src as u8;
        }
        Ok(mac)
    }

    /// Sends without waiting: a full transmit queue loses the frame rather
    /// than stalling the caller (VRRP's thread).
    fn send(&self, frame: &[u8], dst: [u8; 6]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst);
        // SAFETY: frame and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != frame.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];

    #[test]
    fn garp_bytes() {
        let f = garp(MAC, Ipv4Addr::new(10, 0, 0, 100));
        #[rustfmt::skip]
        let want = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0, 0, 0, 0, 0x0a, 10, 0, 0, 100,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 0, 0, 100,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn unsolicited_na_bytes() {
        let ip: Ipv6Addr = "fd00::64".parse().unwrap();
        let f = unsolicited_na(MAC, ip, false);
        let vip = ip.octets();
        let mut want = vec![0x33, 0x33, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 0x0a, 0x86, 0xdd];
        want.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
        want.extend_from_slice(&vip);
        want.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // Checksum computed independently (Python) over pseudo-header and message.
        want.extend_from_slice(&[136, 0, 0x59, 0xcc, 0x20, 0, 0, 0]);
        want.extend_from_slice(&vip);
        want.extend_from_slice(&[2, 1, 0x02, 0, 0, 0, 0, 0x0a]);
        assert_eq!(f.to_vec(), want);
        let r = unsolicited_na(MAC, ip, true);
        assert_eq!(r[58], NA_OVERRIDE | NA_ROUTER);
    }

    #[test]
    fn checksum_of_a_correct_message_folds_to_zero() {
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let f = unsolicited_na(MAC, ip, true);
        assert_eq!(icmpv6_checksum(ip, ALL_NODES, &f[54..]), 0);
    }
}
