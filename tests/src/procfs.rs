//! What /proc says about a process: CPU time, resident memory, open
//! descriptors, and its descriptor limit (read and set with prlimit). Used
//! by the bench and the stress lab to watch an agent from outside.

use anyhow::{Context, Result};

/// utime + stime of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces: state is the first.
    let rest = stat.rsplit_once(')').context("no ) in stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).context("no utime")?.parse::<f64>()?
        + f.get(12).context("no stime")?.parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks / hz as f64)
}

/// `VmRSS` of `pid`, in MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    status_kib(pid, "VmRSS:").map(|k| k / 1024.0)
}

/// `VmHWM` of `pid` (the largest resident set it has had), in MiB.
pub fn peak_rss_mib(pid: u32) -> Result<f64> {
    status_kib(pid, "VmHWM:").map(|k| k / 1024.0)
}

fn status_kib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// How many descriptors `pid` has open.
pub fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// The soft and hard `RLIMIT_NOFILE` of `pid` (0: this process).
pub fn nofile(pid: u32) -> Result<(u64, u64)> {
    prlimit_nofile(pid, None)
}

/// Sets the soft `RLIMIT_NOFILE` of `pid` (0: this process), keeping its
/// hard limit; fails when `soft` is above the hard limit.
pub fn set_nofile(pid: u32, soft: u64) -> Result<()> {
    let (_, hard) = nofile(pid)?;
    anyhow::ensure!(
        soft <= hard,
        "a descriptor limit of {soft} is above the hard limit {hard} of process {pid}"
    );
    prlimit_nofile(pid, Some((soft, hard))).map(drop)
}

fn prlimit_nofile(pid: u32, new: Option<(u64, u64)>) -> Result<(u64, u64)> {
    let set = new.map(|(soft, hard)| libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    });
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 reads `set` (or nothing) and writes `old`, both valid.
    let rc = unsafe {
        libc::prlimit64(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            set.as_ref().map_or(std::ptr::null(), |s| s as *const _),
            &mut old,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("prlimit RLIMIT_NOFILE of process {pid}"));
    }
    Ok((old.rlim_cur, old.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(rss_mib(me).unwrap() > 0.0);
        assert!(peak_rss_mib(me).unwrap() >= rss_mib(me).unwrap() * 0.5);
        let fds = open_fds(me).unwrap();
        let (soft, hard) = nofile(0).unwrap();
        assert!(
            fds >= 3 && (fds as u64) < soft && soft <= hard,
            "{fds} {soft} {hard}"
        );
    }

    #[test]
    fn a_limit_above_the_hard_one_is_refused() {
        let (_, hard) = nofile(0).unwrap();
        if hard < u64::MAX {
            assert!(set_nofile(0, hard + 1).is_err());
        }
        // Setting the soft limit to what it is changes nothing.
        let (soft, _) = nofile(0).unwrap();
        set_nofile(0, soft).unwrap();
        assert_eq!(nofile(0).unwrap().0, soft);
    }
}
