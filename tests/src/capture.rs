//! Frame capture in a namespace: an AF_PACKET socket that sees every frame
//! on one interface, read until a condition holds or a time limit passes.

use crate::netns::Netns;
use anyhow::Result;
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

/// Frames kept at most, so a flood cannot grow a capture without bound.
const MAX_FRAMES: usize = 10_000;

/// An AF_PACKET socket on `dev` in `ns` receiving every frame, with a
/// 200 ms read timeout. Frames queue from here on, so open it before the
/// traffic starts.
pub fn capture_socket(ns: &Netns, dev: &str) -> Result<OwnedFd> {
    let dev = dev.to_string();
    Ok(ns.enter(move || -> io::Result<OwnedFd> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscalls on a descriptor this closure owns.
        unsafe {
            let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let name = std::ffi::CString::new(dev).map_err(io::Error::other)?;
            let index = libc::if_nametoindex(name.as_ptr());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            if libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            Ok(fd)
        }
    })??)
}

/// Frames received on `fd` until `done` says so or `limit` passes.
pub fn receive_until(
    fd: &OwnedFd,
    limit: Duration,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut frames = Vec::new();
    while Instant::now() < deadline && !done(&frames) && frames.len() < MAX_FRAMES {
        let mut buf = [0u8; 2048];
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            frames.push(buf[..n as usize].to_vec());
        }
    }
    frames
}
