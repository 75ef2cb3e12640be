//! The agent's log: `tracing` to stderr, with the XDP program's aya-log
//! records (emitted at debug level in the kernel) forwarded into it. Lines
//! are written by a thread of their own (tracing-appender): a log call
//! never waits for stderr's reader, so logging cannot stall the VRRP thread;
//! should the reader fall far behind, lines are dropped, not waited for.

use anyhow::{Context, Result};
use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;
use tracing::warn;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `level` is a tracing filter (`info`, `debug`, `xlb=trace`…),
/// overridden by `RUST_LOG` when set. Keep the guard until the process
/// ends: dropping it flushes what is queued.
pub fn init(level: &str) -> Result<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .with_context(|| format!("bad log level `{level}`"))?;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(guard)
}

/// The aya-log level the kernel side should emit at (1 error … 4 debug):
/// below debug the program skips formatting its debug records entirely.
pub fn kernel_level() -> u8 {
    if tracing::enabled!(target: "lb_ebpf", tracing::Level::DEBUG) {
        4
    } else {
        2
    }
}

/// Forwards the program's log ring buffer into the agent's log until the agent exits.
pub fn forward_ebpf_logs(ebpf: &mut Ebpf) -> Result<()> {
    let logger = EbpfLogger::init(ebpf).context("opening the XDP program's log buffer")?;
    // SAFETY: the logger owns the ring buffer's fd and keeps it open while the AsyncFd holds it.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)? };
    tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    warn!(error = %e, "XDP log forwarding stopped");
                    return;
                }
            }
        }
    });
    Ok(())
}
