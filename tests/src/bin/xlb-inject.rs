//! `xlb-inject IFACE FILE`: sends each line of FILE (an Ethernet frame in
//! hex) out of IFACE through an AF_PACKET socket, in order. Used inside test
//! guests and namespaces to put hand-made frames on a wire.

use anyhow::{Context, Result, bail, ensure};
use std::process::ExitCode;
use xlb_testbed::inject::FrameSender;

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

    let sender =
        FrameSender::open(iface).with_context(|| format!("AF_PACKET socket on {iface}"))?;
    for (i, frame) in frames.iter().enumerate() {
        sender
            .send(frame)
            .with_context(|| format!("frame {}: sendto", i + 1))?;
    }
    Ok(frames.len())
}
