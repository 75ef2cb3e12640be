//! `xlb-inject IFACE FILE`: sends each line of FILE (an Ethernet frame in
//! hex) out of IFACE through an AF_PACKET socket, in order. Used inside test
//! guests and namespaces to put hand-made frames on a wire.

use anyhow::{Context, Result, bail, ensure};
use std::{ffi::CString, process::ExitCode};

/// Bounds on what one run sends.
const MAX_FRAMES: usize = 10_000;
const MAX_FRAME: usize = 9_000;

fn main() -> ExitCode {
    match run() {
        Ok(n) => {
            eprintln!("xlb-inject: sent {n} frames");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xlb-inject: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, file] = args.as_slice() else {
        bail!("usage: xlb-inject IFACE FILE (one hex-encoded Ethernet frame per line)");
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let mut frames = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let frame =
            hex::decode(line.trim()).with_context(|| format!("{file}:{}: not hex", i + 1))?;
        ensure!(
            (14..=MAX_FRAME).contains(&frame.len()),
            "{file}:{}: a frame of {} bytes (14..={MAX_FRAME})",
            i + 1,
            frame.len()
        );
        frames.push(frame);
    }
    ensure!(
        frames.len() <= MAX_FRAMES,
        "{file}: more than {MAX_FRAMES} frames"
    );

    let name = CString::new(iface.as_str())?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    ensure!(ifindex != 0, "no interface {iface}");
    // Protocol 0: this socket only sends, it receives nothing.
    // SAFETY: plain socket creation; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    ensure!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    let result = send_all(fd, ifindex, &frames);
    // SAFETY: fd is ours and used no more.
    unsafe { libc::close(fd) };
    result.map(|()| frames.len())
}

fn send_all(fd: libc::c_int, ifindex: u32, frames: &[Vec<u8>]) -> Result<()> {
    for (i, frame) in frames.iter().enumerate() {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = i32::try_from(ifindex)?;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        ensure!(
            usize::try_from(sent).ok() == Some(frame.len()),
            "frame {}: sendto: {}",
            i + 1,
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
