//! The agent process's own families, named as Prometheus' client libraries
//! name them (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`,
//! `process_virtual_memory_bytes`), read from /proc at scrape time (the
//! prometheus-client crate has no process collector), and `xlb_build_info`.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

/// The process's figures; `None` where /proc could not be read.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Fields of /proc/self/stat after the command (which may hold spaces and
/// parentheses, so the split is at its last `)`); index 0 is field 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// Figures from the texts of /proc/self/stat and /proc/stat, with the
/// clock tick rate and page size.
pub fn parse(stat: &str, proc_stat: &str, ticks: f64, page: u64) -> Figures {
    let fields = stat_fields(stat).unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let boot = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    Figures {
        // utime (14) and stime (15), in clock ticks.
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(u, s)| (u + s) as f64 / ticks),
        // vsize (23) in bytes, rss (24) in pages.
        virtual_bytes: field(23),
        resident_bytes: field(24).map(|p| p * page),
        // starttime (22): ticks after boot.
        start_time_seconds: field(22)
            .zip(boot)
            .map(|(t, b)| b as f64 + t as f64 / ticks),
        open_fds: None,
        max_fds: None,
    }
}

fn read() -> Figures {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut f = parse(&stat, &proc_stat, ticks.max(1) as f64, page.max(1) as u64);
    f.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        f.max_fds = Some(lim.rlim_cur);
    }
    f
}

#[derive(Debug, Default)]
pub struct ProcessCollector;

fn gauge_f64(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<f64>,
) -> Result<(), std::fmt::Error> {
    if let Some(v) = value {
        let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(v).encode(m)?;
    }
    Ok(())
}

fn gauge_u64(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<u64>,
) -> Result<(), std::fmt::Error> {
    if let Some(v) = value {
        let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = read();
        if let Some(cpu) = f.cpu_seconds {
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time the agent has used, in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(m)?;
        }
        gauge_u64(
            &mut encoder,
            "process_resident_memory_bytes",
            "The agent's resident memory, in bytes",
            f.resident_bytes,
        )?;
        gauge_u64(
            &mut encoder,
            "process_virtual_memory_bytes",
            "The agent's virtual memory, in bytes",
            f.virtual_bytes,
        )?;
        gauge_u64(
            &mut encoder,
            "process_open_fds",
            "File descriptors the agent has open",
            f.open_fds,
        )?;
        gauge_u64(
            &mut encoder,
            "process_max_fds",
            "The agent's limit on open file descriptors (RLIMIT_NOFILE)",
            f.max_fds,
        )?;
        gauge_f64(
            &mut encoder,
            "process_start_time_seconds",
            "When the agent started, in seconds since the Unix epoch",
            f.start_time_seconds,
        )?;
        let m = encoder.encode_descriptor(
            "xlb_build",
            "The agent's version (always 1)",
            None,
            MetricType::Info,
        )?;
        prometheus_client::metrics::info::Info::new(vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )])
        .encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_an_awkward_command() {
        // Fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime priority nice threads
        // itrealvalue starttime vsize rss ...
        let stat = "42 (xlb (a) b) S 1 42 42 0 -1 0 0 0 0 0 150 50 0 0 20 0 3 0 1000 4096000 250 0";
        let f = parse(stat, "cpu 1 2\nbtime 1700000000\n", 100.0, 4096);
        assert_eq!(f.cpu_seconds, Some(2.0));
        assert_eq!(f.virtual_bytes, Some(4_096_000));
        assert_eq!(f.resident_bytes, Some(250 * 4096));
        assert_eq!(f.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(parse("", "", 100.0, 4096), Figures::default());
    }
}
