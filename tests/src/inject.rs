//! Hand-made Ethernet frames put on a wire: an AF_PACKET socket that only
//! sends, out of one interface of the namespace it was opened in. Used by
//! `xlb-inject` (inside guests and namespaces) and by tests that flood a
//! link.

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

    /// Sends one whole frame (at least its 14-byte Ethernet header), to the
    /// destination MAC it carries.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
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
}
