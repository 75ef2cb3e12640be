//! Files in /run/xlb that agents of dead test runs left behind: a killed
//! agent cannot remove its lock (`<pin path>.lock`) or its state files
//! (`vrrp-`, `checks-`, `rates-<pin path>.json`), and test pin paths carry the test process's
//! pid (`/sys/fs/bpf/xlb-<role>-<pid>…`), so every killed agent would
//! leave one more file for good.

use anyhow::{Context, Result};
use std::{io, path::Path};

const RUN_DIR: &str = "/run/xlb";

/// The test pid in a run file's name (`sys_fs_bpf_xlb-vrrp-9852-27.lock`,
/// `vrrp-sys_fs_bpf_xlb-test-1442.json`); None for anything else, such as
/// the production agent's `sys_fs_bpf_xlb.lock`.
fn owner_pid(name: &str) -> Option<libc::pid_t> {
    let stem = name
        .strip_suffix(".lock")
        .or_else(|| name.strip_suffix(".json"))?;
    let pin = ["vrrp-", "checks-", "rates-"]
        .iter()
        .find_map(|p| stem.strip_prefix(p))
        .unwrap_or(stem);
    let rest = pin.strip_prefix("sys_fs_bpf_xlb-")?;
    // The first all-digit segment after the role (`vrrp`, `dp-lab`, …).
    let mut parts = rest.split('-');
    let role = parts.next()?;
    if role.is_empty() || role.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    parts
        .find(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// Removes the run files of test processes no longer alive; returns their names.
pub fn sweep() -> Result<Vec<String>> {
    crate::netns::sweep_dead_owners(
        Path::new(RUN_DIR),
        owner_pid,
        |name| match std::fs::remove_file(Path::new(RUN_DIR).join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {RUN_DIR}/{name}"))
            }
            _ => Ok(()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_pin_paths_name_an_owner() {
        assert_eq!(owner_pid("sys_fs_bpf_xlb-vrrp-9852-27.lock"), Some(9852));
        assert_eq!(owner_pid("sys_fs_bpf_xlb-test-1442.lock"), Some(1442));
        assert_eq!(owner_pid("rates-sys_fs_bpf_xlb-test-1442.json"), Some(1442));
        assert_eq!(
            owner_pid("checks-sys_fs_bpf_xlb-vrrp-9852-27.json"),
            Some(9852)
        );
        assert_eq!(owner_pid("rates-sys_fs_bpf_xlb.json"), None);
        assert_eq!(owner_pid("sys_fs_bpf_xlb-dp-lab-13497.lock"), Some(13497));
        assert_eq!(
            owner_pid("sys_fs_bpf_xlb-bench-13716-chk.lock"),
            Some(13716)
        );
        assert_eq!(owner_pid("vrrp-sys_fs_bpf_xlb-test-1442.json"), Some(1442));
        // The production agent's files, and anything else, are never touched.
        assert_eq!(owner_pid("sys_fs_bpf_xlb.lock"), None);
        assert_eq!(owner_pid("vrrp-sys_fs_bpf_xlb.json"), None);
        assert_eq!(owner_pid("sys_fs_bpf_xlb-prod.lock"), None);
        assert_eq!(owner_pid("sys_fs_bpf_xlb-vrrp-12.lock.tmp"), None);
        assert_eq!(owner_pid("sys_fs_bpf_other-vrrp-12.lock"), None);
        assert_eq!(owner_pid("sys_fs_bpf_xlb-1-2.lock"), None);
    }

    #[test]
    fn a_dead_runs_files_go_and_a_live_ones_stay() -> Result<()> {
        crate::require_root()?;
        let mut child = std::process::Command::new("true").spawn()?;
        let dead = child.id();
        child.wait()?;
        std::fs::create_dir_all(RUN_DIR)?;
        let stale = format!("sys_fs_bpf_xlb-sweeptest-{dead}-0.lock");
        let live = format!("sys_fs_bpf_xlb-sweeptest-{}-0.lock", std::process::id());
        for name in [&stale, &live] {
            std::fs::write(format!("{RUN_DIR}/{name}"), "")?;
        }
        let removed = sweep();
        let live_left = std::path::Path::new(RUN_DIR).join(&live).exists();
        let _ = std::fs::remove_file(format!("{RUN_DIR}/{live}"));
        let _ = std::fs::remove_file(format!("{RUN_DIR}/{stale}"));
        assert!(removed?.contains(&stale));
        assert!(live_left);
        Ok(())
    }
}
