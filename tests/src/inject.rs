//! Hand-made Ethernet frames put on a wire: an AF_PACKET socket that only
//! sends, out of one interface of the namespace it was opened in, one frame
//! per call or a batch per `sendmmsg`. Used by `xlb-inject` (inside guests
//! and namespaces), by tests that flood a link and by the bench's live
//! generator.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

pub struct FrameSender {
    fd: OwnedFd,
    ifindex: i32,
}

impl FrameSender {
    /// A sender on `dev` of the calling thread's namespace (enter a
    /// [`crate::netns::Netns`] first to use one of its interfaces).
    pub fn open(dev: &str) -> io::Result<FrameSender> {
        let name = CString::new(dev).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {dev}"),
            ));
        }
        // Protocol 0: this socket only sends, it receives nothing.
        // SAFETY: plain socket creation; the descriptor is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FrameSender {
            // SAFETY: `raw` is a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            ifindex: i32::try_from(ifindex).map_err(io::Error::other)?,
        })
    }

    /// From now on, frames go straight to the driver, past the interface's
    /// queueing discipline (`PACKET_QDISC_BYPASS`): a generator's fast path.
    pub fn bypass_qdisc(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: a valid int option for the length given.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Where frames go: this interface, to the destination MAC `frame` carries.
    fn to(&self, frame: &[u8]) -> io::Result<libc::sockaddr_ll> {
        if frame.len() < 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame of {} bytes", frame.len()),
            ));
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        Ok(to)
    }

    /// Sends one whole frame (at least its 14-byte Ethernet header), to the
    /// destination MAC it carries.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let to = self.to(frame)?;
        // SAFETY: the buffer and address are valid for the lengths given.
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
        match usize::try_from(sent) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(n) => Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                frame.len()
            ))),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Sends whole frames (each at least an Ethernet header) with one
    /// `sendmmsg`, each to the destination MAC it carries. Returns how many
    /// the kernel took: all of them, unless an error stopped it after the
    /// first (an error on the first is returned).
    pub fn send_many<F: AsRef<[u8]>>(&self, frames: &[F]) -> io::Result<usize> {
        let mut to = Vec::with_capacity(frames.len());
        for f in frames {
            to.push(self.to(f.as_ref())?);
        }
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ref().as_ptr().cast_mut().cast(),
                iov_len: f.as_ref().len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .zip(&mut to)
            .map(|(v, to)| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid start.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = (to as *mut libc::sockaddr_ll).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let n = u32::try_from(msgs.len()).map_err(io::Error::other)?;
        // SAFETY: every header points at a live address and buffer (the
        // kernel only reads them) for the lengths given.
        let sent = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n, 0) };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }
}
