//! Running the upkeep program on a list of ops: the ops go to `UPKEEP_OPS`
//! in one batch update, one BPF_PROG_TEST_RUN runs them all, one batch
//! lookup brings back what each did (three syscalls per up to
//! `upkeep::MAX_OPS` ops). [`OpRunner`] is the seam the reclaimer is
//! written against; tests use a model of the program instead.

use crate::dataplane::store::{Cursor, MapStore, PinnedMap};
use anyhow::{Context, Result, bail};
use aya::programs::ProgramFd;
use lb_common::{
    map_names,
    upkeep::{self, Op},
};
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    path::Path,
};

/// Runs upkeep ops in the kernel (or a model of it).
pub trait OpRunner: Send {
    /// Runs `ops` (at most `upkeep::MAX_OPS`) in order and writes back
    /// their outcomes.
    fn run(&mut self, ops: &mut [Op]) -> Result<()>;
}

/// The upkeep program of the loaded object and its pinned work list.
pub struct ProgramRunner {
    prog: ProgramFd,
    ops: PinnedMap<u32, Op>,
}

impl ProgramRunner {
    /// The program `prog` (a descriptor of its own) with the `UPKEEP_OPS`
    /// pinned in `pin_dir`.
    pub fn new(prog: ProgramFd, pin_dir: &Path) -> Result<ProgramRunner> {
        Ok(ProgramRunner {
            prog,
            ops: PinnedMap::open(pin_dir, map_names::UPKEEP_OPS)?,
        })
    }
}

/// `BPF_PROG_TEST_RUN` from `enum bpf_cmd`.
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr`, as far as used.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// XDP_DROP: what the program returns when it ran its ops.
const XDP_DROP: u32 = 1;

impl ProgramRunner {
    /// One run of the program on `frame`.
    fn test_run(&self, frame: &[u8; upkeep::RUN_FRAME]) -> Result<()> {
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_fd().as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        // SAFETY: `attr` points at `frame`, alive for the call; no output buffers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &raw mut attr,
                size_of::<TestRunAttr>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error()).context("running the upkeep program");
        }
        if attr.retval != XDP_DROP {
            bail!("the upkeep program returned {}", attr.retval);
        }
        Ok(())
    }

    /// The first `n` entries of `UPKEEP_OPS`.
    fn read(&self, n: usize) -> Result<Vec<Op>> {
        let mut done = Vec::with_capacity(n);
        let mut cursor = Cursor::start();
        while done.len() < n && !cursor.done() {
            self.ops
                .lookup_batch(&mut cursor, n - done.len(), &mut done)
                .context("reading UPKEEP_OPS")?;
        }
        Ok(done.into_iter().map(|(_, op)| op).collect())
    }
}

impl OpRunner for ProgramRunner {
    fn run(&mut self, ops: &mut [Op]) -> Result<()> {
        if ops.len() > upkeep::MAX_OPS as usize {
            bail!("{} upkeep ops in one run", ops.len());
        }
        if ops.is_empty() {
            return Ok(());
        }
        let listed: Vec<(u32, Op)> = (0u32..).zip(ops.iter().copied()).collect();
        self.ops
            .update_batch(&listed)
            .context("writing UPKEEP_OPS")?;
        let mut frame = [0u8; upkeep::RUN_FRAME];
        frame[..4].copy_from_slice(&(ops.len() as u32).to_ne_bytes());
        self.test_run(&frame)?;
        let done = self.read(ops.len())?;
        if done.len() != ops.len() {
            bail!("UPKEEP_OPS shorter than the run");
        }
        ops.copy_from_slice(&done);
        Ok(())
    }
}
