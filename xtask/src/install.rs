//! `cargo xtask install [--prefix DIR] [--destdir DIR]`: builds the agent,
//! its man pages and completions, and installs them with the systemd unit
//! and, unless one exists, an example config at /etc/xlb/xlb.toml.example
//! (never at /etc/xlb/xlb.toml, the agent's default: an enabled unit starts
//! only once the operator has written that). `--destdir` stages everything under another root, as
//! packagers do.

use crate::{build, man};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Installation prefix: the binary goes to PREFIX/sbin.
    #[arg(long, default_value = "/usr/local")]
    prefix: PathBuf,
    /// Stage under this directory instead of / (for packaging).
    #[arg(long)]
    destdir: Option<PathBuf>,
}

/// One file to install.
#[derive(Debug, PartialEq, Eq)]
pub struct Item {
    pub src: PathBuf,
    /// Absolute, before DESTDIR.
    pub dst: PathBuf,
    pub mode: u32,
    /// False for config files: an existing one is the operator's.
    pub replace: bool,
}

/// Where everything goes for `prefix`, with the binary, pages and
/// completions taken from `bin` and `docs` (as `man::generate` writes them).
pub fn plan(prefix: &Path, bin: &Path, docs: &Path, root: &Path) -> Result<Vec<Item>> {
    let item = |src: PathBuf, dst: PathBuf, mode| Item {
        src,
        dst,
        mode,
        replace: true,
    };
    let mut items = vec![item(bin.to_path_buf(), prefix.join("sbin/xlb"), 0o755)];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(docs.join("man"))
        .with_context(|| format!("reading {}", docs.join("man").display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    for page in pages {
        let name = page.file_name().context("page name")?.to_owned();
        // The section is the page's extension: xlb.8, xlb.toml.5.
        let section = page
            .extension()
            .and_then(|e| e.to_str())
            .context("a man page's name ends in its section")?;
        items.push(item(
            page.clone(),
            prefix.join(format!("share/man/man{section}")).join(name),
            0o644,
        ));
    }
    // Debian's zsh reads vendor-completions under /usr, site-functions elsewhere.
    let zsh = if prefix == Path::new("/usr") {
        "share/zsh/vendor-completions/_xlb"
    } else {
        "share/zsh/site-functions/_xlb"
    };
    for (src, dst) in [
        ("xlb.bash", "share/bash-completion/completions/xlb"),
        ("_xlb", zsh),
        ("xlb.fish", "share/fish/vendor_completions.d/xlb.fish"),
    ] {
        items.push(item(
            docs.join("completions").join(src),
            prefix.join(dst),
            0o644,
        ));
    }
    // systemd looks in /lib/systemd/system for /usr, in PREFIX/lib/... (as
    // /usr/local/lib/systemd/system) otherwise.
    let unit_dir = if prefix == Path::new("/usr") {
        PathBuf::from("/lib/systemd/system")
    } else {
        prefix.join("lib/systemd/system")
    };
    items.push(item(
        root.join("packaging/xlb.service"),
        unit_dir.join("xlb.service"),
        0o644,
    ));
    items.push(Item {
        src: root.join("examples/dr.toml"),
        dst: PathBuf::from("/etc/xlb/xlb.toml.example"),
        mode: 0o644,
        replace: false,
    });
    Ok(items)
}

/// The unit with `/usr/sbin/xlb` replaced by the binary's installed path.
pub fn unit_text(unit: &str, prefix: &Path) -> String {
    unit.replace(
        "/usr/sbin/xlb",
        &prefix.join("sbin/xlb").display().to_string(),
    )
}

pub fn run(args: &Args) -> Result<()> {
    let docs = man::generate()?;
    let bin = build::agent()?;
    let root = build::root();
    let stage = |dst: &Path| match &args.destdir {
        Some(d) => d.join(dst.strip_prefix("/").unwrap_or(dst)),
        None => dst.to_path_buf(),
    };
    for it in plan(&args.prefix, &bin, &docs, &root)? {
        let dst = stage(&it.dst);
        if !it.replace && dst.exists() {
            println!("kept     {} (exists)", dst.display());
            continue;
        }
        std::fs::create_dir_all(dst.parent().context("destination has a parent")?)?;
        if it.src.ends_with("packaging/xlb.service") {
            let unit = std::fs::read_to_string(&it.src)?;
            std::fs::write(&dst, unit_text(&unit, &args.prefix))?;
        } else {
            std::fs::copy(&it.src, &dst)
                .with_context(|| format!("{} → {}", it.src.display(), dst.display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(it.mode))?;
        println!("installed {}", dst.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-install-{}", std::process::id()));
        std::fs::create_dir_all(d.join("man")).unwrap();
        for p in ["xlb.8", "xlb-run.8", "xlb.toml.5"] {
            std::fs::write(d.join("man").join(p), "").unwrap();
        }
        d
    }

    #[test]
    fn usr_and_usr_local_layouts() {
        let docs = docs();
        let root = Path::new("/src");
        let dsts = |prefix: &str| -> Vec<String> {
            plan(Path::new(prefix), Path::new("/b/xlb"), &docs, root)
                .unwrap()
                .into_iter()
                .map(|i| i.dst.display().to_string())
                .collect()
        };
        assert_eq!(
            dsts("/usr"),
            [
                "/usr/sbin/xlb",
                "/usr/share/man/man8/xlb-run.8",
                "/usr/share/man/man8/xlb.8",
                "/usr/share/man/man5/xlb.toml.5",
                "/usr/share/bash-completion/completions/xlb",
                "/usr/share/zsh/vendor-completions/_xlb",
                "/usr/share/fish/vendor_completions.d/xlb.fish",
                "/lib/systemd/system/xlb.service",
                "/etc/xlb/xlb.toml.example",
            ]
        );
        let local = dsts("/usr/local");
        assert!(local.contains(&"/usr/local/share/zsh/site-functions/_xlb".to_string()));
        assert!(local.contains(&"/usr/local/lib/systemd/system/xlb.service".to_string()));
        let config = plan(Path::new("/usr"), Path::new("/b/xlb"), &docs, root)
            .unwrap()
            .pop()
            .unwrap();
        assert!(!config.replace, "an existing config must be kept");
        let _ = std::fs::remove_dir_all(docs);
    }

    #[test]
    fn the_unit_runs_the_installed_binary() {
        let unit = "ExecStart=/usr/sbin/xlb run\nExecReload=/usr/sbin/xlb reload\n";
        assert_eq!(
            unit_text(unit, Path::new("/opt/xlb")),
            "ExecStart=/opt/xlb/sbin/xlb run\nExecReload=/opt/xlb/sbin/xlb reload\n"
        );
    }
}
