//! Reading xlb's Prometheus endpoint from inside a namespace, as a
//! monitoring system there would.

use crate::netns::Netns;
use anyhow::{Context, Result, ensure};
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

const TIMEOUT: Duration = Duration::from_secs(3);

/// The samples of one scrape: `name{labels}` → value.
pub type Samples = BTreeMap<String, f64>;

/// One scrape of `http://addr/metrics` from `ns`.
pub fn scrape(ns: &Netns, addr: SocketAddr) -> Result<Samples> {
    let body = ns.enter(|| fetch(addr, TIMEOUT))??;
    parse(&body)
}

/// The body of `GET /metrics` from `addr`, from the calling thread's
/// namespace; connecting, and each read, bounded by `timeout`.
pub fn fetch(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: xlb\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP reply: {reply:?}"))?;
    ensure!(head.starts_with("HTTP/1.1 200"), "metrics endpoint: {head}");
    Ok(body.to_string())
}

/// The samples of an OpenMetrics text body.
pub fn parse(body: &str) -> Result<Samples> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .with_context(|| format!("not a sample: {l:?}"))?;
            Ok((k.to_string(), v.parse().with_context(|| format!("{l:?}"))?))
        })
        .collect()
}

/// Sum of the samples of `family` whose labels contain every one of `labels`.
pub fn total(samples: &Samples, family: &str, labels: &[&str]) -> u64 {
    samples
        .iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(family) && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| *v as u64)
        .sum()
}

/// The sample of `family` whose labels contain every one of `labels`, if any.
pub fn sample(samples: &Samples, family: &str, labels: &[&str]) -> Option<f64> {
    samples
        .iter()
        .find(|(k, _)| k.split('{').next() == Some(family) && labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| *v)
}

/// A scrape that reflects the flow table as it is now: the map fill and
/// flow figures come from the agent's upkeep, which publishes them once
/// per pass, so this waits (bounded by `wait`) until a pass that started
/// after the call has finished (`xlb_upkeep_passes_total` up by two).
pub fn scrape_after_pass(ns: &Netns, addr: SocketAddr, wait: Duration) -> Result<Samples> {
    let passes = |s: &Samples| total(s, "xlb_upkeep_passes_total", &[]);
    let first = passes(&scrape(ns, addr)?);
    let deadline = std::time::Instant::now() + wait;
    loop {
        let s = scrape(ns, addr)?;
        if passes(&s) >= first + 2 {
            return Ok(s);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no upkeep pass in {wait:?} (passes stuck at {})",
            passes(&s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
