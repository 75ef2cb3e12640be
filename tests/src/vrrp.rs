//! A VRRP lab: directors and an observer on one bridge, each in its own
//! namespace, `eth0` inside with 10.9.0.N/24 and fd09::N/64; the switch
//! namespace holds the bridge, so a director's switch port can be taken
//! down to partition it.

use crate::netns::Netns;
use anyhow::{Context, Result, bail};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// Where a test writes configs, scripts and captures; removed on drop.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(tag: &str) -> Result<TempDir> {
    let d = std::env::temp_dir().join(format!("xlb-vrrp-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(TempDir(d))
}

pub struct VrrpLab {
    pub switch: Netns,
    /// Directors: `nodes[i]` has host number [`VrrpLab::host`]`(i)`.
    pub nodes: Vec<Netns>,
    /// Host 2: captures, crafts adverts, plays the real server.
    pub observer: Netns,
}

impl VrrpLab {
    /// `n` directors and an observer.
    pub fn build(n: usize) -> Result<VrrpLab> {
        crate::require_root()?;
        let switch = Netns::create("switch")?;
        switch.run(
            "ip",
            &["link", "add", "br0", "type", "bridge", "forward_delay", "0"],
        )?;
        switch.run("ip", &["link", "set", "br0", "up"])?;
        let observer = Netns::create("obs")?;
        wire(&switch, &observer, "p2", 2)?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let ns = Netns::create(&format!("d{}", i + 1))?;
            wire(&switch, &ns, &format!("p{}", Self::host(i)), Self::host(i))?;
            nodes.push(ns);
        }
        Ok(VrrpLab {
            switch,
            nodes,
            observer,
        })
    }

    /// Director `i`'s host number (10, 11, …).
    pub fn host(i: usize) -> u8 {
        10 + i as u8
    }

    /// Director `i`'s IPv4 address.
    pub fn addr(i: usize) -> String {
        format!("10.9.0.{}", Self::host(i))
    }

    /// Takes director `i`'s port out of the bridge (`false`) or back: a
    /// partition in the switch, with the director's link still up.
    pub fn set_port(&self, i: usize, joined: bool) -> Result<()> {
        let port = format!("p{}", Self::host(i));
        if joined {
            self.switch
                .run("ip", &["link", "set", &port, "master", "br0"])?;
        } else {
            self.switch.run("ip", &["link", "set", &port, "nomaster"])?;
        }
        Ok(())
    }

    /// Takes director `i`'s switch port down (`false`) or up: its eth0 loses carrier.
    pub fn set_carrier(&self, i: usize, up: bool) -> Result<()> {
        let port = format!("p{}", Self::host(i));
        self.switch.run(
            "ip",
            &["link", "set", &port, if up { "up" } else { "down" }],
        )?;
        Ok(())
    }
}

/// Wires `ns` to the bridge with `eth0` inside and addresses for `host`.
fn wire(switch: &Netns, ns: &Netns, port: &str, host: u8) -> Result<()> {
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    switch.run(
        "ip",
        &[
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ],
    )?;
    switch.run("ip", &["link", "set", port, "master", "br0", "up"])?;
    ns.run("ip", &["link", "set", "eth0", "up"])?;
    ns.run(
        "ip",
        &["addr", "add", &format!("10.9.0.{host}/24"), "dev", "eth0"],
    )?;
    ns.run(
        "ip",
        &[
            "addr",
            "add",
            &format!("fd09::{host}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    )?;
    Ok(())
}

/// Polls `cond` every 50 ms until it holds or `limit` passes (then fails with `what`).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// keepalived (the Debian package) running VRRP only, in the foreground, in
/// a namespace; its own process group so every process it forks goes too.
pub struct Keepalived {
    child: std::process::Child,
}

impl Keepalived {
    /// Writes `conf` under `dir` (with pid files beside it) and starts keepalived.
    pub fn start(ns: &Netns, dir: &std::path::Path, tag: &str, conf: &str) -> Result<Keepalived> {
        use std::os::unix::process::CommandExt;
        let path = dir.join(format!("keepalived-{tag}.conf"));
        std::fs::write(&path, conf)?;
        let pid = |what: &str| dir.join(format!("keepalived-{tag}-{what}.pid"));
        let child = ns
            .command("keepalived")
            .args(["--dont-fork", "--log-console", "--vrrp", "-f"])
            .arg(&path)
            .arg("-p")
            .arg(pid("main"))
            .arg("-r")
            .arg(pid("vrrp"))
            .arg("-c")
            .arg(pid("checkers"))
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting keepalived (apt-get install keepalived)")?;
        Ok(Keepalived { child })
    }

    /// Signals the whole group (SIGTERM: keepalived leaves with priority 0;
    /// SIGKILL: it vanishes) and waits, bounded, for it to end.
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.child.id() as i32), sig) };
        for _ in 0..100 {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGTERM);
    }
}
