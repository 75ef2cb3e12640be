//! Raw VRRP sockets (IP protocol 112) bound to one interface: multicast
//! group membership, TTL / hop limit 255 on the way out, and on the way in
//! the TTL (IPv4: the IP header comes with every packet) or the hop limit
//! and destination (IPv6: ancillary data) that validation needs.

use super::packet::{self, PROTO, Received};
use anyhow::{Context, Result, bail};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use std::{
    io::{IoSlice, IoSliceMut},
    net::{IpAddr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
};
use tokio::io::unix::AsyncFd;

/// Adverts are small; anything larger than a jumbo frame is not VRRP.
const BUF: usize = 9000;
/// DSCP CS6 (network control), as keepalived marks adverts: switches that
/// honour it queue adverts ahead of a congested link's data traffic.
const CS6: u32 = 0xc0;

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    /// The source of our adverts (also the v3 pseudo-header's).
    pub src: IpAddr,
}

impl VrrpSocket {
    /// Opens the socket on `ifname`, sending from `src`, joined to `group`
    /// unless adverts are unicast.
    pub fn open(ifname: &str, src: IpAddr, group: Option<IpAddr>) -> Result<VrrpSocket> {
        let ifindex =
            nix::net::if_::if_nametoindex(ifname).with_context(|| format!("interface {ifname}"))?;
        let domain = if src.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(PROTO))))
            .context("raw VRRP socket (needs CAP_NET_RAW)")?;
        s.bind_device(Some(ifname.as_bytes()))
            .with_context(|| format!("binding the VRRP socket to {ifname}"))?;
        match (src, group) {
            (IpAddr::V4(_), g) => {
                s.set_tos_v4(CS6)?;
                s.set_ttl_v4(u32::from(packet::TTL))?;
                s.set_multicast_ttl_v4(u32::from(packet::TTL))?;
                s.set_multicast_loop_v4(false)?;
                if let Some(IpAddr::V4(g)) = g {
                    s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))
                        .with_context(|| format!("joining {g} on {ifname}"))?;
                }
            }
            (IpAddr::V6(_), g) => {
                s.set_tclass_v6(CS6)?;
                s.set_unicast_hops_v6(u32::from(packet::TTL))?;
                s.set_multicast_hops_v6(u32::from(packet::TTL))?;
                s.set_multicast_loop_v6(false)?;
                s.set_recv_hoplimit_v6(true)?;
                nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::Ipv6RecvPacketInfo,
                    &true,
                )?;
                if let Some(IpAddr::V6(g)) = g {
                    s.join_multicast_v6(&g, ifindex)
                        .with_context(|| format!("joining {g} on {ifname}"))?;
                }
            }
        }
        s.set_nonblocking(true)?;
        // SAFETY: the socket owns its descriptor and moves into the AsyncFd,
        // which keeps it open, unchanged, for its whole life.
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)?;
        Ok(VrrpSocket { fd, ifindex, src })
    }

    /// Sends a VRRP message to `dst` from our source address on our interface.
    pub async fn send(&self, msg: &[u8], dst: IpAddr) -> Result<()> {
        let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
        let iov = [IoSlice::new(msg)];
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| {
                let raw = fd.as_raw_fd();
                let r = match self.src {
                    IpAddr::V4(s) => {
                        let info = libc::in_pktinfo {
                            ipi_ifindex: self.ifindex as i32,
                            ipi_spec_dst: libc::in_addr {
                                s_addr: u32::from(s).to_be(),
                            },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        };
                        let c = [ControlMessage::Ipv4PacketInfo(&info)];
                        nix::sys::socket::sendmsg(raw, &iov, &c, MsgFlags::empty(), Some(&to))
                    }
                    IpAddr::V6(s) => {
                        let info = libc::in6_pktinfo {
                            ipi6_addr: libc::in6_addr {
                                s6_addr: s.octets(),
                            },
                            ipi6_ifindex: self.ifindex,
                        };
                        let c = [ControlMessage::Ipv6PacketInfo(&info)];
                        nix::sys::socket::sendmsg(raw, &iov, &c, MsgFlags::empty(), Some(&to))
                    }
                };
                r.map_err(std::io::Error::from)
            });
            match sent {
                Ok(r) => {
                    r.with_context(|| format!("sending an advert to {dst}"))?;
                    return Ok(());
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// The next packet: what the IP layer says about it and the VRRP
    /// message, or the reason it is not even a VRRP message.
    pub async fn recv(&self) -> Result<std::result::Result<(Received, Vec<u8>), packet::Discard>> {
        let mut buf = vec![0u8; BUF];
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|fd| recv_one(fd.get_ref(), &mut buf, self.src.is_ipv6()));
            match got {
                Ok(r) => return Ok(r?),
                Err(_would_block) => continue,
            }
        }
    }
}

type Packet = std::result::Result<(Received, Vec<u8>), packet::Discard>;

fn recv_one(s: &Socket, buf: &mut [u8], ipv6: bool) -> std::io::Result<Packet> {
    if !ipv6 {
        let n = nix::sys::socket::recv(s.as_raw_fd(), buf, MsgFlags::empty())?;
        return Ok(packet::split_ipv4(&buf[..n]).map(|(r, m)| (r, m.to_vec())));
    }
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<SockaddrStorage>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let n = msg.bytes;
    let src = msg
        .address
        .and_then(|a| a.as_sockaddr_in6().map(|a| a.ip()));
    let mut dst = None;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(i) => {
                dst = Some(Ipv6Addr::from(i.ipi6_addr.s6_addr))
            }
            ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).ok(),
            _ => {}
        }
    }
    Ok(match (src, dst, ttl) {
        (Some(src), Some(dst), Some(ttl)) => Ok((
            Received {
                src: src.into(),
                dst: dst.into(),
                ttl,
            },
            iov[0][..n].to_vec(),
        )),
        _ => Err(packet::Discard::Length),
    })
}

/// The address adverts leave from on `ifname`: `configured` if given, else
/// the interface's first IPv4 address, or its link-local IPv6 address (RFC 9568 §5.1.2.1).
pub fn source_address(ifname: &str, ipv6: bool, configured: Option<IpAddr>) -> Result<IpAddr> {
    if let Some(a) = configured {
        return Ok(a);
    }
    for ifa in nix::ifaddrs::getifaddrs().context("listing addresses")? {
        if ifa.interface_name != ifname {
            continue;
        }
        let Some(a) = ifa.address else { continue };
        if !ipv6 && let Some(v4) = a.as_sockaddr_in() {
            return Ok(IpAddr::V4(v4.ip()));
        }
        if ipv6
            && let Some(v6) = a.as_sockaddr_in6()
            && v6.ip().is_unicast_link_local()
        {
            return Ok(IpAddr::V6(v6.ip()));
        }
    }
    bail!(
        "{ifname} has no {} address to send adverts from",
        if ipv6 { "link-local IPv6" } else { "IPv4" }
    )
}
