//! The guest's root file system: an initramfs (newc cpio) built in memory
//! from host files, host programs with the shared libraries they link, and
//! generated files.

use anyhow::{Context, Result, bail};
use std::{
    collections::BTreeMap,
    io::Cursor,
    path::{Path, PathBuf},
    process::Command,
};

const DIR: u32 = 0o040755;
const EXEC: u32 = 0o100755;
const FILE: u32 = 0o100644;

/// Files by guest path (absolute, without the leading `/`). A BTreeMap keeps
/// every directory ahead of what it contains, as the kernel's unpacker needs.
#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<String, (u32, Vec<u8>)>,
}

impl Initramfs {
    /// An empty directory (and its parents).
    pub fn dir(&mut self, guest: &str) {
        let path = guest.trim_matches('/');
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.entries.entry(at.clone()).or_insert((DIR, Vec::new()));
        }
    }

    /// `data` at `guest`, executable or not.
    pub fn data(&mut self, guest: &str, data: Vec<u8>, executable: bool) {
        let path = guest.trim_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries
            .insert(path, (if executable { EXEC } else { FILE }, data));
    }

    /// The host file `host` at `guest`, keeping its executable bit.
    pub fn file(&mut self, host: &Path, guest: &str) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = std::fs::metadata(host)?.permissions();
        use std::os::unix::fs::PermissionsExt;
        self.data(guest, data, mode.mode() & 0o111 != 0);
        Ok(())
    }

    /// The program `host` at `guest`, and every shared library `ldd` says it
    /// loads at the path `ldd` found it, so the guest's dynamic loader finds it too.
    pub fn program(&mut self, host: &Path, guest: &str) -> Result<()> {
        self.file(host, guest)?;
        for lib in shared_libraries(host)? {
            let at = lib.to_string_lossy().into_owned();
            if !self.entries.contains_key(at.trim_start_matches('/')) {
                self.file(&lib, &at)?;
            }
        }
        Ok(())
    }

    /// The archive.
    pub fn into_cpio(self) -> Result<Vec<u8>> {
        let inputs = self.entries.into_iter().map(|(path, (mode, data))| {
            (cpio::NewcBuilder::new(&path).mode(mode), Cursor::new(data))
        });
        Ok(cpio::write_cpio(inputs, Vec::new())?)
    }
}

/// Where `name` is installed: itself if it contains a `/`, else the first
/// match in PATH or the sbin directories (root's tools live there).
pub fn find_program(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed (run `cargo xtask setup`)"))
}

/// The shared libraries (dynamic loader included) `ldd` lists for `program`.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", program.display(), err.trim());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", program.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("statically linked") {
            continue;
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)";
        // the vDSO ("linux-vdso.so.1 (0x…)") is the kernel's and has no file.
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!("{} is not found", name.trim());
                }
                target
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_names_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibpopt.so.0 => /lib/x86_64-linux-gnu/libpopt.so.0 (0x00007fb8)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fb8)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007fb8)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libpopt.so.0",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let e = parse_ldd("\tlibgone.so.1 => not found\n").unwrap_err();
        assert!(e.to_string().contains("libgone.so.1"), "{e}");
    }

    #[test]
    fn the_archive_lists_parents_before_children() {
        let mut fs = Initramfs::default();
        fs.data("/usr/local/bin/tool", b"x".to_vec(), true);
        fs.dir("/proc");
        let cpio = fs.into_cpio().unwrap();
        let mut names = Vec::new();
        let mut rest = &cpio[..];
        loop {
            let r = cpio::NewcReader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            names.push((r.entry().name().to_string(), r.entry().mode()));
            rest = r.finish().unwrap();
        }
        assert_eq!(
            names,
            [
                ("proc".to_string(), DIR),
                ("usr".to_string(), DIR),
                ("usr/local".to_string(), DIR),
                ("usr/local/bin".to_string(), DIR),
                ("usr/local/bin/tool".to_string(), EXEC),
            ]
        );
    }
}
