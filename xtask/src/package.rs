//! `cargo xtask package`: the Debian package `xlb_VERSION_ARCH.deb`, built
//! with dpkg-deb from exactly the files `cargo xtask install --prefix /usr`
//! installs (`install::plan`), man pages gzipped, plus the changelog,
//! copyright, conffiles and the maintainer scripts in packaging/debian/.
//! Dependencies: the shared libraries the agent links, as dpkg-shlibdeps
//! finds them; init-system-helpers for the maintainer scripts; nftables
//! recommended (the agent runs `nft` only for `no_accept`).
//!
//! dpkg-deb rather than cargo-deb: the file list is `install`'s, so the two
//! cannot drift, and dpkg's own tools need nothing installed or built.

use crate::{build, install, man};
use anyhow::{Context, Result, bail};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the .deb (default: target/release/).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Packages without which the maintainer scripts cannot run, and those the
/// agent uses when present.
const DEPENDS: &str = "init-system-helpers (>= 1.54~)";
const RECOMMENDS: &str = "nftables";
const SUGGESTS: &str = "bpftool, ipvsadm";
const CONFFILES: [&str; 1] = ["/etc/xlb/xlb.toml.example"];

/// The version in packaging/debian/changelog's first entry.
pub fn changelog_version(changelog: &str) -> Result<String> {
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .strip_prefix("xlb (")
        .and_then(|r| r.split_once(')'))
        .map(|(v, _)| v.to_string())
        .context("packaging/debian/changelog must start with `xlb (VERSION) …`")?;
    Ok(version)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `gzip -9n` of `src` into `dst` (no name or time in the header: the same
/// input gives the same package).
fn gzip(src: &Path, dst: &Path) -> Result<()> {
    let file = std::fs::File::create(dst)?;
    let st = Command::new("gzip")
        .args(["-9nc"])
        .arg(src)
        .stdout(file)
        .status()
        .context("running gzip")?;
    if !st.success() {
        bail!("gzip {} failed", src.display());
    }
    Ok(())
}

/// The shared-library dependencies of `bin` (dpkg-shlibdeps, which needs a
/// debian/control next to the package tree in `work`).
fn shlib_depends(work: &Path, bin: &Path) -> Result<String> {
    std::fs::write(
        work.join("debian/control"),
        "Source: xlb\n\nPackage: xlb\nArchitecture: any\n",
    )?;
    let out = output(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!("-e{}", bin.display()))
            .current_dir(work),
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

pub fn control(version: &str, arch: &str, depends: &str, installed_kib: u64) -> String {
    format!(
        "Package: xlb\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: xlb developers <xlb@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}, {DEPENDS}\n\
         Recommends: {RECOMMENDS}\n\
         Suggests: {SUGGESTS}\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP layer-4 load balancer with VRRP\n \
         An XDP load balancer for director nodes: LVS DR, NAT and TUN with the\n \
         LVS schedulers, health checks and VRRP, programmed from\n \
         /etc/xlb/xlb.toml or an existing keepalived.conf. The unit is enabled\n \
         on install and starts only once /etc/xlb/xlb.toml exists: copy and\n \
         edit /etc/xlb/xlb.toml.example, then systemctl start xlb.\n"
    )
}

/// Builds the package; its path.
pub fn build(out: Option<&Path>) -> Result<PathBuf> {
    let root = build::root();
    let changelog = root.join("packaging/debian/changelog");
    let version = changelog_version(&std::fs::read_to_string(&changelog)?)?;
    if version != env!("CARGO_PKG_VERSION") {
        bail!(
            "packaging/debian/changelog is at {version}, the workspace at {}: add a changelog entry",
            env!("CARGO_PKG_VERSION")
        );
    }
    let docs = man::generate()?;
    let bin = build::agent()?;
    let work = root.join("target/release/xlb-deb");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    let pkg = work.join("debian/xlb");
    let place = |dst: &Path| -> Result<PathBuf> {
        let p = pkg.join(dst.strip_prefix("/").unwrap_or(dst));
        std::fs::create_dir_all(p.parent().context("a file has a directory")?)?;
        Ok(p)
    };
    let set_mode =
        |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    for it in install::plan(Path::new("/usr"), &bin, &docs, &root)? {
        let dst = place(&it.dst)?;
        let dst = if it.dst.starts_with("/usr/share/man") {
            let gz = dst.with_file_name(format!(
                "{}.gz",
                dst.file_name().context("page name")?.to_string_lossy()
            ));
            gzip(&it.src, &gz)?;
            gz
        } else {
            std::fs::copy(&it.src, &dst)
                .with_context(|| format!("{} → {}", it.src.display(), dst.display()))?;
            dst
        };
        set_mode(&dst, it.mode)?;
    }
    let doc = place(Path::new("/usr/share/doc/xlb/copyright"))?;
    std::fs::copy(root.join("packaging/debian/copyright"), &doc)?;
    gzip(&changelog, &doc.with_file_name("changelog.gz"))?;
    gzip(&root.join("README.md"), &doc.with_file_name("README.md.gz"))?;
    for f in ["copyright", "changelog.gz", "README.md.gz"] {
        set_mode(&doc.with_file_name(f), 0o644)?;
    }

    let depends = shlib_depends(&work, &pkg.join("usr/sbin/xlb"))?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let kib = output(
        Command::new("du")
            .args(["-sk", "--apparent-size"])
            .arg(&pkg),
    )?;
    let kib: u64 = kib
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .context("du printed no size")?;
    let meta = pkg.join("DEBIAN");
    std::fs::create_dir_all(&meta)?;
    std::fs::write(
        meta.join("control"),
        control(&version, arch.trim(), &depends, kib),
    )?;
    std::fs::write(meta.join("conffiles"), CONFFILES.join("\n") + "\n")?;
    for script in ["postinst", "prerm", "postrm"] {
        let dst = meta.join(script);
        std::fs::copy(root.join("packaging/debian").join(script), &dst)?;
        set_mode(&dst, 0o755)?;
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or(root.join("target/release"));
    std::fs::create_dir_all(&out)?;
    let deb = out.join(format!("xlb_{version}_{}.deb", arch.trim()));
    build::run_checked(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&pkg)
            .arg(&deb),
    )?;
    Ok(deb)
}

pub fn run(args: &Args) -> Result<()> {
    let deb = build(args.out.as_deref())?;
    println!("{}", deb.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changelog_is_at_the_workspace_version() {
        let text =
            std::fs::read_to_string(build::root().join("packaging/debian/changelog")).unwrap();
        assert_eq!(changelog_version(&text).unwrap(), env!("CARGO_PKG_VERSION"));
        assert!(changelog_version("nonsense").is_err());
    }

    #[test]
    fn control_names_the_dependencies() {
        let c = control("1.2.3", "amd64", "libc6 (>= 2.34)", 100);
        assert!(c.contains("\nDepends: libc6 (>= 2.34), init-system-helpers"));
        assert!(c.contains("\nRecommends: nftables\n"));
        // Every continuation line of the description starts with a space.
        let desc = c.split("Description:").nth(1).unwrap();
        assert!(desc.lines().skip(1).all(|l| l.starts_with(' ')), "{c}");
    }
}
