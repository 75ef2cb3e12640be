//! The guest's kernel: Debian's `linux-image-amd64` (which has IPVS and ipip
//! as modules), downloaded with apt and unpacked once into a cache shared by
//! every test process, plus module dependency resolution from its modules.dep.

use anyhow::{Context, Result, bail, ensure};
use std::{
    collections::HashMap,
    fs::File,
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The metapackage that names the current kernel package.
const META_PACKAGE: &str = "linux-image-amd64";
/// How long to wait for another process that is filling the cache.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// Where kernels are cached: `XLB_QEMU_CACHE`, else /var/cache/xlb-qemu.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XLB_QEMU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xlb-qemu"))
}

/// An unpacked kernel: the uncompressed `vmlinux` (qemu boots it through PVH,
/// about twice as fast as the bzImage) and its module tree.
pub struct Kernel {
    pub vmlinux: PathBuf,
    /// `lib/modules/<version>`, with a generated modules.dep.
    pub modules: PathBuf,
}

impl Kernel {
    /// The cached kernel, downloaded and unpacked first if the cache lacks it.
    /// Concurrent callers serialise on a lock file; the cache entry appears by
    /// an atomic rename, so a killed process never leaves a half-made one.
    pub fn get() -> Result<Kernel> {
        let cache = cache_dir();
        if let Some(k) = recorded(&cache) {
            return Ok(k);
        }
        let package = current_package()?;
        let entry = cache.join(&package);
        if Kernel::at(&entry).is_none() {
            std::fs::create_dir_all(&cache)
                .with_context(|| format!("creating {}", cache.display()))?;
            let _lock = lock(&cache.join(".lock"))?;
            if Kernel::at(&entry).is_none() {
                fill(&cache, &package, &entry)?;
            }
        }
        record(&cache, &package)?;
        Kernel::at(&entry).with_context(|| format!("{} is incomplete", entry.display()))
    }

    fn at(entry: &Path) -> Option<Kernel> {
        let k = Kernel {
            vmlinux: entry.join("vmlinux"),
            modules: entry.join("modules"),
        };
        (k.vmlinux.is_file() && k.modules.join("modules.dep").is_file()).then_some(k)
    }

    /// The module files to insmod, in an order that loads each one after its
    /// dependencies, for `names` (module names, `-` and `_` alike).
    pub fn resolve_modules(&self, names: &[String]) -> Result<Vec<(String, PathBuf)>> {
        let dep_file = self.modules.join("modules.dep");
        let deps = std::fs::read_to_string(&dep_file)
            .with_context(|| format!("reading {}", dep_file.display()))?;
        let order = load_order(&deps, names)?;
        Ok(order
            .into_iter()
            .map(|rel| (module_name(&rel), self.modules.join(rel)))
            .collect())
    }
}

/// Under the cache lock: unpacks `package` into a private directory, then
/// renames it to `entry`.
fn fill(cache: &Path, package: &str, entry: &Path) -> Result<()> {
    // Holding the lock, any build directory is a killed process's leftover.
    for e in std::fs::read_dir(cache)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".build-") {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    let build = cache.join(format!(".build-{}", std::process::id()));
    let result = unpack(package, &build).and_then(|ready| {
        std::fs::rename(&ready, entry)
            .with_context(|| format!("renaming {} to {}", ready.display(), entry.display()))
    });
    let _ = std::fs::remove_dir_all(&build);
    result
}

/// The file naming the package last resolved, so that most runs skip
/// apt-cache (seconds on a busy machine).
const RECORD: &str = "current";
/// Changes when `apt-get update` fetches new package lists.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// The kernel last resolved, unless the package lists changed since.
fn recorded(cache: &Path) -> Option<Kernel> {
    let record = cache.join(RECORD);
    let recorded_at = std::fs::metadata(&record).and_then(|m| m.modified()).ok()?;
    let lists_at = std::fs::metadata(APT_LISTS).and_then(|m| m.modified()).ok();
    if lists_at.is_some_and(|l| l > recorded_at) {
        return None;
    }
    let package = std::fs::read_to_string(&record).ok()?;
    Kernel::at(&cache.join(package.trim()))
}

/// Notes `package` as the current kernel (atomically, like the cache entries).
fn record(cache: &Path, package: &str) -> Result<()> {
    let tmp = cache.join(format!(".{RECORD}-{}", std::process::id()));
    std::fs::write(&tmp, package)?;
    std::fs::rename(&tmp, cache.join(RECORD))?;
    Ok(())
}

/// The kernel package `linux-image-amd64` depends on, e.g. `linux-image-6.1.0-56-amd64`.
fn current_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", META_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .context("running apt-cache (the guest tests need Debian's kernel package)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .map(|v| format!("linux-image-{v}"))
        .with_context(|| {
            format!(
                "apt-cache knows no {META_PACKAGE}: run `apt-get update` (or `cargo xtask setup`)"
            )
        })
}

/// An exclusive flock on `path`, released when the file is dropped.
fn lock(path: &Path) -> Result<File> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on an open descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        if Instant::now() > deadline {
            bail!("{} stayed locked for {LOCK_WAIT:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Downloads and unpacks `package` under `build`; returns the directory that
/// holds `vmlinux` and `modules/`.
fn unpack(package: &str, build: &Path) -> Result<PathBuf> {
    eprintln!("qemu: downloading {package} into {}", build.display());
    std::fs::create_dir_all(build)?;
    // apt's download sandbox user cannot write a root-owned directory; we are root anyway.
    run(Command::new("apt-get")
        .args(["download", "-qq", "-o", "APT::Sandbox::User=root", package])
        .current_dir(build))?;
    let deb = std::fs::read_dir(build)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let root = build.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    std::fs::remove_file(&deb)?;

    let version = std::fs::read_dir(root.join("lib/modules"))
        .context("the package has no lib/modules")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("the package has an empty lib/modules")?;
    // The package ships no modules.dep (the postinst makes it); busybox writes one.
    run(Command::new("busybox")
        .args(["depmod", "-b"])
        .arg(&root)
        .arg(&version))?;

    let ready = build.join("kernel");
    std::fs::create_dir(&ready)?;
    let bzimage = std::fs::read(root.join(format!("boot/vmlinuz-{version}")))
        .context("the package has no boot/vmlinuz")?;
    let vmlinux = decompress(xz_payload(&bzimage)?)?;
    ensure!(
        vmlinux.starts_with(b"\x7fELF"),
        "the decompressed kernel is no ELF file"
    );
    std::fs::write(ready.join("vmlinux"), vmlinux)?;
    std::fs::rename(
        root.join("lib/modules").join(&version),
        ready.join("modules"),
    )?;
    Ok(ready)
}

/// The compressed kernel inside a bzImage, located by the setup header
/// (boot protocol 2.08+: payload_offset at 0x248 and payload_length at 0x24c,
/// counted from the protected-mode code after the setup sectors).
fn xz_payload(bzimage: &[u8]) -> Result<&[u8]> {
    ensure!(
        bzimage.len() > 0x250 && &bzimage[0x202..0x206] == b"HdrS",
        "not a bzImage"
    );
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let word = |at: usize| {
        usize::try_from(u32::from_le_bytes(
            bzimage[at..at + 4].try_into().expect("4 bytes"),
        ))
        .expect("usize holds u32")
    };
    let start = (setup_sects + 1) * 512 + word(0x248);
    let payload = bzimage
        .get(start..start + word(0x24c))
        .context("the bzImage payload lies outside the file")?;
    ensure!(
        payload.starts_with(b"\xfd7zXZ\0"),
        "the kernel payload is not xz-compressed"
    );
    Ok(payload)
}

/// xz-decompresses `data` with the system's `xz` (xz-utils is part of every
/// Debian install; one call per cache fill does not justify a crate).
fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running xz")?;
    let mut stdin = child.stdin.take().expect("piped");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer.join().expect("writer thread")?;
    ensure!(
        out.status.success(),
        "xz failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

/// `kernel/net/ipv4/ipip.ko` → `ipip`; `crc32c-intel.ko` → `crc32c_intel`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".ko").unwrap_or(file).replace('-', "_")
}

/// Paths (relative to the module directory) of `names` and everything they
/// depend on, dependencies first, each once.
fn load_order(modules_dep: &str, names: &[String]) -> Result<Vec<String>> {
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_name: HashMap<String, &str> = HashMap::new();
    for line in modules_dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(path, rest.split_whitespace().collect());
        by_name.insert(module_name(path), path);
    }
    let mut order = Vec::new();
    for name in names {
        let path = by_name
            .get(&name.replace('-', "_"))
            .with_context(|| format!("the guest kernel has no module {name}"))?;
        visit(path, &deps, &by_name, &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    path: &str,
    deps: &HashMap<&str, Vec<&str>>,
    by_name: &HashMap<String, &str>,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    ensure!(depth < 64, "module dependencies nest too deep at {path}");
    if order.iter().any(|p| p == path) {
        return Ok(());
    }
    // libcrc32c finds its crc32c implementation through the crypto API at load
    // time (a soft dependency modules.dep does not list); with module
    // autoloading off, crc32c_generic has to be loaded first by hand.
    if module_name(path) == "libcrc32c"
        && let Some(generic) = by_name.get("crc32c_generic")
    {
        visit(generic, deps, by_name, order, depth + 1)?;
    }
    for dep in deps.get(path).into_iter().flatten() {
        visit(dep, deps, by_name, order, depth + 1)?;
    }
    order.push(path.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPS: &str = "\
kernel/net/netfilter/ipvs/ip_vs_rr.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko
kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko:
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/net/ipv4/ipip.ko: kernel/net/ipv4/tunnel4.ko kernel/net/ipv4/ip_tunnel.ko
kernel/net/ipv4/tunnel4.ko:
kernel/net/ipv4/ip_tunnel.ko:
";

    fn names(order: &[String]) -> Vec<String> {
        order.iter().map(|p| module_name(p)).collect()
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let order = load_order(DEPS, &["ip_vs".into(), "ip_vs_rr".into(), "ipip".into()]).unwrap();
        let names = names(&order);
        let at = |n: &str| names.iter().position(|m| m == n).unwrap();
        assert_eq!(names.len(), 10, "{names:?}");
        assert!(at("crc32c_generic") < at("libcrc32c"), "{names:?}");
        assert!(at("libcrc32c") < at("nf_conntrack"), "{names:?}");
        assert!(at("nf_defrag_ipv4") < at("nf_conntrack"), "{names:?}");
        assert!(at("nf_defrag_ipv6") < at("nf_conntrack"), "{names:?}");
        assert!(at("nf_conntrack") < at("ip_vs"), "{names:?}");
        assert!(at("ip_vs") < at("ip_vs_rr"), "{names:?}");
        assert!(
            at("tunnel4") < at("ipip") && at("ip_tunnel") < at("ipip"),
            "{names:?}"
        );
        assert!(!names.contains(&"crc32c_intel".to_string()));
    }

    #[test]
    fn dashes_and_underscores_name_the_same_module() {
        let order = load_order(DEPS, &["crc32c-intel".into()]).unwrap();
        assert_eq!(order, ["kernel/arch/x86/crypto/crc32c-intel.ko"]);
    }

    #[test]
    fn an_unknown_module_is_an_error() {
        let e = load_order(DEPS, &["ip_vs_nope".into()]).unwrap_err();
        assert!(e.to_string().contains("no module ip_vs_nope"), "{e}");
    }

    #[test]
    fn a_bzimage_without_header_is_refused() {
        assert!(xz_payload(&[0u8; 4096]).is_err());
    }
}
