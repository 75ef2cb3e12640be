//! Gratuitous ARP and unsolicited neighbour advertisements: after taking
//! over a VIP, tell the link its new MAC so switches and neighbours stop
//! sending to the old Master. Frames are built here (two fixed layouts, so
//! a small builder beats a packet crate) and sent on an AF_PACKET socket.

use anyhow::{Context, Result, bail};
use std::{
    ffi::CString,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
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

/// Sends one gratuitous ARP per IPv4 address and one unsolicited neighbour
/// advertisement per IPv6 address out of `ifname`, from its MAC. Repeats
/// and pacing (`garp_master_repeat`, `garp_interval`) are the caller's.
pub fn announce(ifname: &str, addrs: &[IpAddr]) -> Result<()> {
    let what = || format!("announcing {addrs:?} on {ifname}");
    let socket = PacketSocket::open(ifname).with_context(what)?;
    // The router flag tells hosts they may keep using us as a router.
    let router = addrs.iter().any(IpAddr::is_ipv6) && ipv6_forwarding(ifname);
    for addr in addrs {
        let (frame, dst) = match addr {
            IpAddr::V4(ip) => (garp(socket.mac, *ip).to_vec(), BROADCAST),
            IpAddr::V6(ip) => (
                unsolicited_na(socket.mac, *ip, router).to_vec(),
                ALL_NODES_MAC,
            ),
        };
        socket
            .send(&frame, dst)
            .with_context(|| format!("announcing {addr} on {ifname}"))?;
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

/// An AF_PACKET socket bound to nothing (it never receives), with the
/// interface's index and MAC.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
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
        // SAFETY: ifreq is plain data; the name fits (checked above) and stays NUL-terminated.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(c_name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFINDEX fills ifr_ifindex of a valid ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } < 0 {
            return Err(io::Error::last_os_error()).context("no such interface");
        }
        // SAFETY: the union member the ioctl just wrote.
        let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };
        // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
            return Err(io::Error::last_os_error()).context("reading its MAC address");
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
        Ok(PacketSocket { fd, ifindex, mac })
    }

    fn send(&self, frame: &[u8], dst: [u8; 6]) -> Result<()> {
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
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error().into());
        }
        if sent as usize != frame.len() {
            bail!("sent {sent} of {} bytes", frame.len());
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
