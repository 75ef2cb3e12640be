//! Guests: Debian's kernel booted under qemu (software emulation) with a
//! busybox initramfs, for tests that need kernel features the host kernel
//! lacks or cannot load (IPVS, ipip). A [`Guest`] copies in programs and
//! files, loads modules, runs one shell script as init's job and powers off;
//! [`Guest::run`] returns the script's stdout and exit status.
//!
//! The kernel is downloaded once into a cache (see [`kernel::cache_dir`]):
//! Debian's release kernel by default, or a newer one ([`Guest::kernel`]).
//! The guest has no network device: whatever a test sends stays inside it.

mod initramfs;
pub mod ipip;
pub mod job;
pub mod kernel;

pub use initramfs::find_program;

use anyhow::{Context, Result, bail};
use initramfs::Initramfs;
use std::{
    fmt,
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const QEMU: &str = "qemu-system-x86_64";
/// Where programs given to [`Guest::program`] go; first in the guest's PATH.
const BIN_DIR: &str = "/usr/local/bin";
/// Printed on the console when the job starts (the host times the boot by it).
const JOB_START: &str = "xlb-guest: job starting";
const POLL: Duration = Duration::from_millis(20);

/// A guest to boot: build it up, then [`Guest::run`] it.
pub struct Guest {
    script: String,
    programs: Vec<PathBuf>,
    files: Vec<(PathBuf, String)>,
    data: Vec<(String, Vec<u8>)>,
    modules: Vec<String>,
    kernel: kernel::KernelChoice,
    memory_mib: u32,
    cpus: u32,
    timeout: Duration,
}

/// What a guest's job did.
#[derive(Debug)]
pub struct GuestOutput {
    /// The script's stdout, byte for byte (lossily decoded).
    pub stdout: String,
    /// The script's exit status (125 if a module failed to load and the script did not run).
    pub status: i32,
    /// Everything on the console: kernel messages, init's progress, the script's stderr.
    pub console: String,
    /// From starting qemu to the script starting.
    pub boot: Duration,
    /// From starting qemu to its exit.
    pub total: Duration,
}

impl GuestOutput {
    /// `self` if the script exited 0, else an error that shows its output and the console.
    pub fn success(self) -> Result<GuestOutput> {
        if self.status != 0 {
            bail!("the guest's script exited with {}\n{self}", self.status);
        }
        Ok(self)
    }

    /// The `==NAME` sections ([`job::sections`]) of a script that must have
    /// exited 0: logs the guest's timing, and panics showing its output and
    /// the console otherwise.
    pub fn sections(&self) -> std::collections::BTreeMap<String, String> {
        eprintln!(
            "guest: boot to script {:?}, total {:?}",
            self.boot, self.total
        );
        assert_eq!(self.status, 0, "{self}");
        job::sections(&self.stdout)
    }
}

impl fmt::Display for GuestOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- guest stdout (exit status {}) ---", self.status)?;
        writeln!(f, "{}", self.stdout.trim_end())?;
        writeln!(f, "--- guest console ---")?;
        write!(f, "{}", self.console.trim_end())
    }
}

impl Guest {
    /// A guest whose job is `script` (run by busybox `sh`, from `/`, stdout
    /// captured, stderr on the console). 1 vCPU, 512 MiB, 60 s timeout.
    pub fn new(script: impl Into<String>) -> Guest {
        Guest {
            script: script.into(),
            programs: Vec::new(),
            files: Vec::new(),
            data: Vec::new(),
            modules: Vec::new(),
            kernel: kernel::KernelChoice::default(),
            memory_mib: 512,
            cpus: 1,
            timeout: Duration::from_secs(60),
        }
    }

    /// A host program (a path, or a name looked up like [`find_program`]) in
    /// the guest's `/usr/local/bin`, with the shared libraries it links.
    pub fn program(mut self, program: impl AsRef<Path>) -> Guest {
        self.programs.push(program.as_ref().to_path_buf());
        self
    }

    /// The host file `host` at the guest path `guest`.
    pub fn file(mut self, host: impl AsRef<Path>, guest: &str) -> Guest {
        self.files
            .push((host.as_ref().to_path_buf(), guest.to_string()));
        self
    }

    /// A file with `contents` at the guest path `guest`.
    pub fn data(mut self, guest: &str, contents: impl Into<Vec<u8>>) -> Guest {
        self.data.push((guest.to_string(), contents.into()));
        self
    }

    /// Kernel modules to load before the script, with their dependencies.
    pub fn modules(mut self, names: &[&str]) -> Guest {
        self.modules.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// The kernel to boot (default: the release's, [`kernel::KernelChoice::Release`]).
    pub fn kernel(mut self, choice: kernel::KernelChoice) -> Guest {
        self.kernel = choice;
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Guest {
        self.memory_mib = mib;
        self
    }

    pub fn cpus(mut self, cpus: u32) -> Guest {
        self.cpus = cpus;
        self
    }

    /// The whole run's limit; qemu is killed when it passes.
    pub fn timeout(mut self, timeout: Duration) -> Guest {
        self.timeout = timeout;
        self
    }

    /// Boots the guest, runs the script and waits for the guest to power off.
    /// Errors if qemu fails, the timeout passes or the guest never reports
    /// the script's end; a non-zero exit status is not an error here
    /// (see [`GuestOutput::success`]).
    pub fn run(&self) -> Result<GuestOutput> {
        let kernel = kernel::Kernel::choose(self.kernel)?;
        let modules = kernel.resolve_modules(&self.modules)?;
        let marker = Marker::new();
        let dir = RunDir::new()?;

        let mut fs = Initramfs::default();
        for d in [
            "proc", "sys", "dev", "run", "tmp", "bin", "sbin", "usr/bin", "usr/sbin",
        ] {
            fs.dir(d);
        }
        fs.program(&find_program("busybox")?, "/bin/busybox")?;
        let names: Vec<&str> = modules.iter().map(|(n, _)| n.as_str()).collect();
        fs.data("/init", init_script(&names, &marker).into_bytes(), true);
        let mut names_in_bin = Vec::new();
        for (name, path) in &modules {
            fs.data(
                &format!("/lib/modules/{name}.ko"),
                kernel::read_module(path)?,
                false,
            );
        }
        for p in &self.programs {
            let host = find_program(&p.to_string_lossy())?;
            let name = host
                .file_name()
                .context("a program path without a file name")?;
            let name = name.to_string_lossy().into_owned();
            fs.program(&host, &format!("{BIN_DIR}/{name}"))?;
            names_in_bin.push(name);
        }
        fs.data("/job.sh", job_script(&self.script, &names_in_bin), true);
        for (host, guest) in &self.files {
            fs.file(host, guest)?;
        }
        for (guest, contents) in &self.data {
            fs.data(guest, contents.clone(), false);
        }
        let initrd = dir.path.join("initrd.cpio");
        std::fs::write(&initrd, fs.into_cpio()?)?;

        let console = dir.path.join("console.log");
        let output = dir.path.join("output.log");
        let qemu_err = dir.path.join("qemu.err");
        let mut cmd = Command::new(find_program(QEMU)?);
        cmd.args([
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ])
        // A panic (init died) reboots, which -no-reboot turns into an exit.
        .arg("-no-reboot")
        .args([
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ])
        .arg("-kernel")
        .arg(&kernel.vmlinux)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        // ttyS0: the console; ttyS1: only the job's framed stdout.
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", output.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&qemu_err)?);
        // SAFETY: prctl is async-signal-safe. If this thread dies, so does qemu.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut qemu = Qemu(cmd.spawn().with_context(|| format!("starting {QEMU}"))?);
        let mut boot = None;
        let exit = loop {
            if let Some(st) = qemu.0.try_wait()? {
                break st;
            }
            if boot.is_none() && read_lossy(&console).contains(JOB_START) {
                boot = Some(started.elapsed());
            }
            if started.elapsed() > self.timeout {
                drop(qemu);
                bail!(
                    "the guest did not power off within {:?}; killed it\n--- guest console ---\n{}",
                    self.timeout,
                    read_lossy(&console)
                );
            }
            std::thread::sleep(POLL);
        };
        let total = started.elapsed();
        let console_text = read_lossy(&console);
        let boot = boot.unwrap_or(total);
        if !exit.success() {
            bail!(
                "{QEMU} failed ({exit}): {}\n--- guest console ---\n{console_text}",
                read_lossy(&qemu_err).trim()
            );
        }
        let framed = std::fs::read(&output).unwrap_or_default();
        let Some((stdout, status)) = marker.parse(&framed) else {
            bail!(
                "the guest powered off without reporting its script's end\n--- guest console ---\n{console_text}"
            );
        };
        Ok(GuestOutput {
            stdout,
            status,
            console: console_text,
            boot,
            total,
        })
    }
}

/// The guest's /init: mounts, module loading (autoloading off, so only the
/// modules asked for are there), the job, its framed output on ttyS1, power off.
fn init_script(modules: &[&str], marker: &Marker) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH={BIN_DIR}:/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo > /proc/sys/kernel/modprobe
stty -F /dev/ttyS1 raw -echo
/bin/busybox ip link set lo up
rc=0
for m in {modules}; do
    insmod /lib/modules/$m.ko || {{ echo "xlb-guest: insmod $m failed" >&2; rc=125; break; }}
done
echo "{JOB_START}"
if [ $rc = 0 ]; then
    cd /
    sh /job.sh > /tmp/job.out
    rc=$?
fi
echo "xlb-guest: job exited with $rc"
{{ echo "{begin}"; cat /tmp/job.out; echo; echo "{end} $rc"; }} > /dev/ttyS1
poweroff -f
"#,
        modules = modules.join(" "),
        begin = marker.begin(),
        end = marker.end(),
    )
}

/// The job as given, after one line that makes each copied program win over
/// a busybox applet of the same name (Debian's busybox shell runs its own
/// applets before searching PATH, so `ip` would be busybox's).
fn job_script(script: &str, programs: &[String]) -> Vec<u8> {
    let shadows: Vec<String> = programs
        .iter()
        .filter(|n| {
            n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|n| format!("{n}() {{ {BIN_DIR}/{n} \"$@\"; }}; "))
        .collect();
    format!("{}\n{script}", shadows.concat().trim_end()).into_bytes()
}

/// Frames the job's output with lines no script prints by accident.
struct Marker(String);

impl Marker {
    fn new() -> Marker {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Marker(format!("{:x}{:x}", std::process::id(), nanos))
    }

    fn begin(&self) -> String {
        format!("XLB-BEGIN-{}", self.0)
    }

    fn end(&self) -> String {
        format!("XLB-END-{}", self.0)
    }

    /// The job's stdout and exit status from what the guest wrote to ttyS1:
    /// `BEGIN\n<stdout>\nEND <status>\n`.
    fn parse(&self, framed: &[u8]) -> Option<(String, i32)> {
        let text = String::from_utf8_lossy(framed);
        let begin = format!("{}\n", self.begin());
        let end = format!("\n{} ", self.end());
        let start = text.find(&begin)? + begin.len();
        let stop = start + text[start..].rfind(&end)?;
        let status = text[stop + end.len()..]
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()?;
        Some((text[start..stop].to_string(), status))
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// A running qemu, killed (and reaped) on drop.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A private scratch directory for one run, removed on drop.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn new() -> Result<RunDir> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "xlb-qemu-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_output_keeps_bytes_and_status() {
        let m = Marker("abc".into());
        let framed = "junk\nXLB-BEGIN-abc\nline one\n  two\r\n\nXLB-END-abc 3\n";
        assert_eq!(
            m.parse(framed.as_bytes()),
            Some(("line one\n  two\r\n".into(), 3))
        );
        let empty = "XLB-BEGIN-abc\n\nXLB-END-abc 0\n";
        assert_eq!(m.parse(empty.as_bytes()), Some((String::new(), 0)));
    }

    #[test]
    fn output_without_its_end_is_not_parsed() {
        let m = Marker("abc".into());
        assert_eq!(m.parse(b"XLB-BEGIN-abc\npartial"), None);
        // A marker with another nonce is someone else's.
        assert_eq!(m.parse(b"XLB-BEGIN-abd\n\nXLB-END-abd 0\n"), None);
    }

    #[test]
    fn copied_programs_shadow_applets_on_the_first_line() {
        let job = job_script("ip link\n", &["ip".into(), "xlb-inject".into()]);
        assert_eq!(
            String::from_utf8(job).unwrap(),
            "ip() { /usr/local/bin/ip \"$@\"; };\nip link\n"
        );
    }

    #[test]
    fn init_loads_modules_in_the_order_given() {
        let init = init_script(&["a", "b_c"], &Marker("n".into()));
        assert!(init.contains("for m in a b_c; do"), "{init}");
        assert!(
            init.contains(r#"echo "XLB-BEGIN-n"; cat /tmp/job.out; echo; echo "XLB-END-n $rc";"#),
            "{init}"
        );
    }
}
