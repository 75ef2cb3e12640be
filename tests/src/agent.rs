//! The xlb agent as a child process in a namespace: started and waited for
//! until it forwards, stopped with SIGTERM (SIGKILL if it hangs) on drop.
//! Each `xlb run` gets a pid file of its own (unless the caller names one),
//! so tests never write the host's /run/xlb.pid; metrics bind the
//! namespace's own loopback.

use crate::netns::Netns;
use anyhow::{Context, Result, bail};
use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc,
    },
    time::Duration,
};

const AGENT_READY: Duration = Duration::from_secs(30);
static PID_FILES: AtomicU32 = AtomicU32::new(0);

/// A running `xlb run`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Agent {
    child: Child,
    log: Option<std::thread::JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    /// The pid file it was given (none for `xlb decap`).
    pid_file: Option<PathBuf>,
    /// Whether that file is the helper's own, removed on drop.
    private_pid_file: bool,
}

impl Agent {
    /// Starts `xlb run --config CONFIG` in `ns` and waits until it forwards.
    pub fn start(ns: &Netns, xlb: &Path, config: &Path) -> Result<Agent> {
        Agent::start_with(ns, xlb, config, &[])
    }

    /// As [`Agent::start`], with extra arguments to `xlb` (such as `--log-level debug`).
    pub fn start_with(ns: &Netns, xlb: &Path, config: &Path, extra: &[&str]) -> Result<Agent> {
        Agent::start_within(ns, xlb, config, extra, AGENT_READY, &AtomicBool::new(false))
    }

    /// As [`Agent::start_with`], waiting up to `ready` (large configs take
    /// longer to apply) and giving up (the agent is stopped) once `cancel` is set.
    pub fn start_within(
        ns: &Netns,
        xlb: &Path,
        config: &Path,
        extra: &[&str],
        ready: Duration,
        cancel: &AtomicBool,
    ) -> Result<Agent> {
        let run: [&OsStr; 2] = ["--config".as_ref(), config.as_os_str()];
        Agent::start_run(ns, xlb, extra, &run, ready, cancel)
    }

    /// `xlb run --config CONFIG` in `ns`, returned as soon as its log shows
    /// `marker` (a point in its start-up), whether or not it forwards yet.
    pub fn start_until(
        ns: &Netns,
        xlb: &Path,
        config: &Path,
        marker: &'static str,
        ready: Duration,
    ) -> Result<Agent> {
        let run: [&OsStr; 2] = ["--config".as_ref(), config.as_os_str()];
        let never = AtomicBool::new(false);
        Agent::start_run_until(ns, xlb, &[], &run, marker, ready, &never)
    }

    /// `xlb GLOBAL... run RUN...` in `ns` (such as `--keepalived-conf FILE
    /// --pin-path DIR`), waiting up to `ready` until it forwards. Without a
    /// `--pid-file` in `run` the agent gets a private one ([`Agent::pid_file`]).
    pub fn start_run(
        ns: &Netns,
        xlb: &Path,
        global: &[&str],
        run: &[&OsStr],
        ready: Duration,
        cancel: &AtomicBool,
    ) -> Result<Agent> {
        Agent::start_run_until(ns, xlb, global, run, "xlb forwarding", ready, cancel)
    }

    /// As [`Agent::start_run`], waiting for `marker` instead of forwarding.
    fn start_run_until(
        ns: &Netns,
        xlb: &Path,
        global: &[&str],
        run: &[&OsStr],
        marker: &'static str,
        ready: Duration,
        cancel: &AtomicBool,
    ) -> Result<Agent> {
        let mut args: Vec<&OsStr> = global.iter().map(|a| a.as_ref()).collect();
        args.push("run".as_ref());
        args.extend_from_slice(run);
        let given = run
            .iter()
            .position(|a| *a == OsStr::new("--pid-file"))
            .and_then(|i| run.get(i + 1))
            .map(PathBuf::from);
        let private = given.is_none();
        let pid_file = given.unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "xlb-test-{}-{}.pid",
                std::process::id(),
                PID_FILES.fetch_add(1, Ordering::Relaxed)
            ))
        });
        if private {
            args.extend(["--pid-file".as_ref(), pid_file.as_os_str()]);
        }
        let mut agent = Agent::spawn(ns, xlb, &args, marker, ready, cancel);
        if let Ok(a) = &mut agent {
            a.pid_file = Some(pid_file);
            a.private_pid_file = private;
        } else if private {
            let _ = std::fs::remove_file(&pid_file);
        }
        agent
    }

    /// `xlb decap ARGS` in `ns` (a TUN real server), once it has attached.
    pub fn start_decap(ns: &Netns, xlb: &Path, args: &[&str]) -> Result<Agent> {
        let mut all = vec!["decap"];
        all.extend_from_slice(args);
        let all: Vec<&OsStr> = all.iter().map(|a| a.as_ref()).collect();
        let never = AtomicBool::new(false);
        Agent::spawn(ns, xlb, &all, "xlb decapsulating", AGENT_READY, &never)
    }

    /// Runs `xlb ARGS` in `ns` and waits up to `ready` until its log shows
    /// `marker`, giving up once `cancel` is set.
    fn spawn(
        ns: &Netns,
        xlb: &Path,
        args: &[&OsStr],
        marker: &'static str,
        ready: Duration,
        cancel: &AtomicBool,
    ) -> Result<Agent> {
        let mut child = ns
            .command(xlb)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", xlb.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let log = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  agent | {line}");
                if line.contains(marker) {
                    let _ = tx.send(());
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        let mut agent = Agent {
            child,
            log: Some(log),
            lines,
            pid_file: None,
            private_pid_file: false,
        };
        let deadline = std::time::Instant::now() + ready;
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Ok(agent);
            }
            if let Some(st) = agent.child.try_wait()? {
                // Its stderr is closed now: the log thread ends once it has read everything.
                if let Some(log) = agent.log.take() {
                    let _ = log.join();
                }
                // The error it printed (`xlb: ...`), which may span lines (verifier output).
                let log = agent.log();
                let error = log.iter().position(|l| l.starts_with("xlb: ")).map_or_else(
                    || log.last().cloned().unwrap_or_default(),
                    |i| log[i..].join("\n"),
                );
                bail!("the agent exited before forwarding ({st}): {error}");
            }
            if cancel.load(Ordering::SeqCst) {
                bail!("interrupted while the agent was starting");
            }
            if std::time::Instant::now() > deadline {
                bail!("the agent did not start forwarding within {ready:?}");
            }
        }
    }

    /// The agent's process id (to read its memory use in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid file `xlb run` writes (for `xlb reload --pid-file`).
    pub fn pid_file(&self) -> Option<&Path> {
        self.pid_file.as_deref()
    }

    /// What the agent has written to stderr so far, a line per entry.
    pub fn log(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// SIGTERM and wait; fails unless the agent exits cleanly.
    pub fn stop(mut self) -> Result<()> {
        let st = self.terminate()?;
        if !st.success() {
            bail!("the agent exited with {st}");
        }
        Ok(())
    }

    /// As [`Agent::stop`], returning everything the agent logged.
    pub fn stop_logged(mut self) -> Result<Vec<String>> {
        let st = self.terminate()?;
        if !st.success() {
            bail!("the agent exited with {st}");
        }
        Ok(self.log())
    }

    /// SIGTERM, then waits up to `limit` for the agent to exit, polling
    /// every millisecond: how long it took, or `None` when it was still
    /// running at `limit` (it is then killed).
    pub fn stop_within(mut self, limit: Duration) -> Result<Option<Duration>> {
        if self.child.try_wait()?.is_some() {
            bail!("the agent had exited before SIGTERM");
        }
        let sent = std::time::Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while sent.elapsed() < limit {
            if self.child.try_wait()?.is_some() {
                return Ok(Some(sent.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(None)
    }

    /// Sends `signal` and waits for the agent to exit (SIGKILL after 10 s);
    /// its exit status.
    pub fn stop_with(mut self, signal: i32) -> Result<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        for _ in 0..1000 {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("the agent did not exit within 10 s of signal {signal}")
    }

    /// SIGKILL and wait: the agent gets no chance to clean up, as in a crash.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        if let Some(log) = self.log.take() {
            let _ = log.join();
        }
        Ok(())
    }

    fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Some(st) = self.child.try_wait()? {
                if let Some(log) = self.log.take() {
                    let _ = log.join();
                }
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.terminate();
        // A killed agent leaves its pid file behind.
        if let (true, Some(p)) = (self.private_pid_file, &self.pid_file) {
            let _ = std::fs::remove_file(p);
        }
    }
}
