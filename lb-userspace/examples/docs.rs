//! Writes xlb's man pages and shell completions into the directory given
//! as argument: `man/xlb.8` and one section 8 page per subcommand (as git
//! does), generated from the clap definitions in `cli.rs`; `man/xlb.toml.5`
//! and `man/xlb-keepalived.5` (src/manpage.rs, from docs/CONFIG.md and the
//! keepalived keyword table); `completions/{xlb.bash,_xlb,xlb.fish}`.
//! `cargo xtask man` runs it; `cargo xtask install` and the Debian package
//! install what it writes.

use clap::CommandFactory;
use clap_complete::{Shell, generate_to};
use clap_mangen::Man;
use std::path::{Path, PathBuf};
use xlb::cli::Cli;

/// `cmd`'s page in section 8 as `dir/NAME.8`.
fn page(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let mut out = Vec::new();
    let name = cmd.get_name().to_string();
    Man::new(cmd).section("8").render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.8")), out)
}

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args_os().nth(1).expect("usage: docs OUTPUT_DIR"));
    let man = out.join("man");
    let completions = out.join("completions");
    // Pages of an earlier layout (section 1) must not be installed again.
    if man.exists() {
        std::fs::remove_dir_all(&man)?;
    }
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = Cli::command();
    cmd.build();
    // A daemon in /usr/sbin: section 8, as keepalived(8) and ipvsadm(8).
    page(cmd.clone(), &man)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap names are 'static; this program runs once and exits.
        let name: &'static str = Box::leak(format!("xlb-{}", sub.get_name()).into_boxed_str());
        let bin: &'static str = Box::leak(format!("xlb {}", sub.get_name()).into_boxed_str());
        page(sub.clone().name(name).bin_name(bin), &man)?;
    }
    std::fs::write(man.join("xlb.toml.5"), xlb::manpage::config_page())?;
    std::fs::write(
        man.join("xlb-keepalived.5"),
        xlb::manpage::keepalived_page(),
    )?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        generate_to(shell, &mut cmd.clone(), "xlb", &completions)?;
    }
    Ok(())
}
