//! The guest's kernel: Debian's `linux-image-amd64` (which has IPVS and ipip
//! as modules), downloaded with apt and unpacked once into a cache shared by
//! every test process, plus module dependency resolution from its modules.dep.
//! Two choices ([`KernelChoice`]): the machine's release's kernel (bookworm's
//! 6.1) from the machine's apt sources, or bookworm-backports' newer one
//! (6.12, with `ip_vs_twos`), fetched with a private apt state in the cache.

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

/// Which Debian kernel a guest boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    /// `linux-image-amd64` from the machine's apt sources (bookworm: 6.1).
    #[default]
    Release,
    /// `linux-image-amd64` from bookworm-backports (6.12 when written), for
    /// what 6.1 lacks (`ip_vs_twos`, Linux 6.2+). Its package lists live in
    /// the cache ([`BACKPORTS_APT`]); the machine's apt configuration and
    /// lists are neither read for sources nor changed. Fetched once: delete
    /// the cache's `current-backports` to pick up a newer package.
    Backports,
}

/// The backports archive, as an apt source line.
const BACKPORTS_SOURCE: &str = "deb http://deb.debian.org/debian bookworm-backports main";
/// The private apt state's directory under the cache.
pub const BACKPORTS_APT: &str = "apt-backports";
/// The file naming the backports package last resolved.
const BACKPORTS_RECORD: &str = "current-backports";

/// An unpacked kernel: the uncompressed `vmlinux` (qemu boots it through PVH,
/// about twice as fast as the bzImage) and its module tree.
pub struct Kernel {
    pub vmlinux: PathBuf,
    /// `lib/modules/<version>`, with a generated modules.dep.
    pub modules: PathBuf,
}

impl Kernel {
    /// The cached release kernel ([`KernelChoice::Release`]).
    pub fn get() -> Result<Kernel> {
        Kernel::choose(KernelChoice::Release)
    }

    /// The cached kernel `choice`, downloaded and unpacked first if the cache
    /// lacks it. Concurrent callers serialise on a lock file; the cache entry
    /// appears by an atomic rename, so a killed process never leaves a
    /// half-made one.
    pub fn choose(choice: KernelChoice) -> Result<Kernel> {
        match choice {
            KernelChoice::Release => release(),
            KernelChoice::Backports => backports(),
        }
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

fn release() -> Result<Kernel> {
    let cache = cache_dir();
    if let Some(k) = recorded(&cache) {
        return Ok(k);
    }
    let package = current_package(&[])?;
    let entry = cache.join(&package);
    if Kernel::at(&entry).is_none() {
        std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        let _lock = lock(&cache.join(".lock"))?;
        if Kernel::at(&entry).is_none() {
            fill(&cache, &package, &entry, &[])?;
        }
    }
    record(&cache, RECORD, &package)?;
    Kernel::at(&entry).with_context(|| format!("{} is incomplete", entry.display()))
}

/// The backports kernel: the recorded one, else (under the cache lock) a
/// private `apt-get update` of the backports source alone, the package its
/// metapackage names, downloaded and unpacked like the release kernel's.
fn backports() -> Result<Kernel> {
    let cache = cache_dir();
    let recorded = |cache: &Path| {
        let package = std::fs::read_to_string(cache.join(BACKPORTS_RECORD)).ok()?;
        Kernel::at(&cache.join(package.trim()))
    };
    if let Some(k) = recorded(&cache) {
        return Ok(k);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let _lock = lock(&cache.join(".lock"))?;
    if let Some(k) = recorded(&cache) {
        return Ok(k);
    }
    let apt = private_apt(&cache.join(BACKPORTS_APT), BACKPORTS_SOURCE)?;
    let package = current_package(&apt)?;
    let entry = cache.join(&package);
    if Kernel::at(&entry).is_none() {
        fill(&cache, &package, &entry, &apt)?;
    }
    record(&cache, BACKPORTS_RECORD, &package)?;
    Kernel::at(&entry).with_context(|| format!("{} is incomplete", entry.display()))
}

/// apt options for a private apt state in `dir` knowing only `source`
/// (its own source list, package lists and caches; the machine's dpkg
/// status and keyrings are only read), after fetching its package lists.
fn private_apt(dir: &Path, source: &str) -> Result<Vec<String>> {
    let lists = dir.join("lists");
    let parts = dir.join("sources.list.d");
    let cache = dir.join("cache");
    for d in [
        &lists.join("partial"),
        &parts,
        &cache.join("archives/partial"),
    ] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let list = dir.join("sources.list");
    std::fs::write(&list, format!("{source}\n"))
        .with_context(|| format!("writing {}", list.display()))?;
    let options: Vec<String> = [
        ("Dir::Etc::SourceList", &list),
        ("Dir::Etc::SourceParts", &parts),
        ("Dir::State::Lists", &lists),
        ("Dir::Cache", &cache),
    ]
    .iter()
    .flat_map(|(key, path)| ["-o".to_string(), format!("{key}={}", path.display())])
    .collect();
    eprintln!(
        "qemu: fetching the package lists of `{source}` into {}",
        dir.display()
    );
    run(Command::new("apt-get")
        .args(["update", "-qq", "-o", "APT::Sandbox::User=root"])
        .args(&options))
    .with_context(|| format!("fetching the package lists of `{source}`"))?;
    Ok(options)
}

/// Under the cache lock: unpacks `package` (found with apt `options`) into
/// a private directory, then renames it to `entry`.
fn fill(cache: &Path, package: &str, entry: &Path, options: &[String]) -> Result<()> {
    // Holding the lock, any build directory is a killed process's leftover.
    for e in std::fs::read_dir(cache)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".build-") {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    let build = cache.join(format!(".build-{}", std::process::id()));
    let result = unpack(package, &build, options).and_then(|ready| {
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

/// Notes `package` in the record file `name` (atomically, like the cache entries).
fn record(cache: &Path, name: &str, package: &str) -> Result<()> {
    let tmp = cache.join(format!(".{name}-{}", std::process::id()));
    std::fs::write(&tmp, package)?;
    std::fs::rename(&tmp, cache.join(name))?;
    Ok(())
}

/// The kernel package `linux-image-amd64` depends on (apt `options`), e.g.
/// `linux-image-6.1.0-56-amd64`.
fn current_package(options: &[String]) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(options)
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
fn unpack(package: &str, build: &Path, options: &[String]) -> Result<PathBuf> {
    eprintln!("qemu: downloading {package} into {}", build.display());
    std::fs::create_dir_all(build)?;
    // apt's download sandbox user cannot write a root-owned directory; we are root anyway.
    run(Command::new("apt-get")
        .args(["download", "-qq", "-o", "APT::Sandbox::User=root"])
        .args(options)
        .arg(package)
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
    let vmlinux = decompress(payload(&bzimage)?)?;
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

/// How a kernel or module is compressed: bookworm's 6.1 with xz, the 6.12
/// from backports with zstd (its modules with xz).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    Xz,
    Zstd,
}

/// The compressed kernel inside a bzImage, located by the setup header
/// (boot protocol 2.08+: payload_offset at 0x248 and payload_length at 0x24c,
/// counted from the protected-mode code after the setup sectors).
fn payload(bzimage: &[u8]) -> Result<(Compression, &[u8])> {
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
    if payload.starts_with(b"\xfd7zXZ\0") {
        Ok((Compression::Xz, payload))
    } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
        // The build appends the decompressed size (4 bytes) after the frame.
        let frame = payload
            .get(..payload.len().saturating_sub(4))
            .context("the kernel payload is too short")?;
        Ok((Compression::Zstd, frame))
    } else {
        bail!("the kernel payload is neither xz- nor zstd-compressed")
    }
}

/// A module file's contents, decompressed if it is a `.ko.xz` (the 6.12
/// package's; the guest's busybox insmod takes plain ELF).
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        decompress((Compression::Xz, &data))
            .with_context(|| format!("decompressing {}", path.display()))
    } else {
        Ok(data)
    }
}

/// Decompresses `data` with the system's `xz` or `zstd` (xz-utils is part of
/// every Debian install, zstd is one package; a few calls per cache fill or
/// guest do not justify a crate).
fn decompress((compression, data): (Compression, &[u8])) -> Result<Vec<u8>> {
    let (program, args): (&str, &[&str]) = match compression {
        Compression::Xz => ("xz", &["-dc", "--single-stream"]),
        Compression::Zstd => ("zstd", &["-dcq"]),
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer.join().expect("writer thread")?;
    ensure!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

/// `kernel/net/ipv4/ipip.ko` → `ipip`; `crc32c-intel.ko` → `crc32c_intel`;
/// `ip_vs_twos.ko.xz` → `ip_vs_twos`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let file = file.strip_suffix(".xz").unwrap_or(file);
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
    fn compressed_modules_are_named_without_their_suffixes() {
        assert_eq!(
            module_name("kernel/net/netfilter/ipvs/ip_vs_twos.ko.xz"),
            "ip_vs_twos"
        );
        let deps = "kernel/net/netfilter/ipvs/ip_vs_twos.ko.xz: kernel/net/netfilter/ipvs/ip_vs.ko.xz\n\
                    kernel/net/netfilter/ipvs/ip_vs.ko.xz:\n";
        let order = load_order(deps, &["ip_vs_twos".into()]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/net/netfilter/ipvs/ip_vs.ko.xz",
                "kernel/net/netfilter/ipvs/ip_vs_twos.ko.xz"
            ]
        );
    }

    #[test]
    fn an_unknown_module_is_an_error() {
        let e = load_order(DEPS, &["ip_vs_nope".into()]).unwrap_err();
        assert!(e.to_string().contains("no module ip_vs_nope"), "{e}");
    }

    #[test]
    fn a_bzimage_without_header_is_refused() {
        assert!(payload(&[0u8; 4096]).is_err());
    }
}
