//! CPU time spent forwarding, per CPU, free of what else the machine runs.
//! On veth, the whole chain (generator, director, receiver) runs on the
//! sending CPU: in the sending thread's own `send` (the kernel runs the
//! NAPI polls it raised when it re-enables bottom halves, and this kernel
//! charges that time to the thread) or, under load, in that CPU's
//! `ksoftirqd`. The two together, over the packets that CPU forwarded, are
//! the CPU time per packet, which another process sharing the CPU does not
//! inflate the way it inflates wall-clock rates.

use std::time::Duration;

/// The calling thread's CPU time so far.
pub fn thread_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; this clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The `ksoftirqd` thread of each CPU, found once.
pub struct Ksoftirqd {
    /// By CPU number; `None` where none was found (the time then counts 0).
    pids: Vec<Option<u32>>,
}

impl Ksoftirqd {
    pub fn find(cpus: usize) -> Ksoftirqd {
        let mut pids = vec![None; cpus];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if let Some(cpu) = comm
                .trim()
                .strip_prefix("ksoftirqd/")
                .and_then(|c| c.parse::<usize>().ok())
                .filter(|&c| c < cpus)
            {
                pids[cpu] = Some(pid);
            }
        }
        Ksoftirqd { pids }
    }

    /// Time `cpu`'s ksoftirqd has run (`/proc/<pid>/schedstat`, nanoseconds).
    pub fn ran(&self, cpu: usize) -> Duration {
        self.pids
            .get(cpu)
            .copied()
            .flatten()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
            .and_then(|s| parse_schedstat(&s))
            .unwrap_or_default()
    }
}

/// The first field of a schedstat line: nanoseconds on the CPU.
fn parse_schedstat(s: &str) -> Option<Duration> {
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_its_run_time() {
        assert_eq!(
            parse_schedstat("1234567 89 10\n"),
            Some(Duration::from_nanos(1_234_567))
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }
}
