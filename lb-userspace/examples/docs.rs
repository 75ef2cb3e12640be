//! Writes xlb's man pages (one per subcommand, as git does) and shell
//! completions, generated from the clap definitions in `cli.rs`, into the
//! directory given as argument: `man/*.1` and `completions/{xlb.bash,_xlb,xlb.fish}`.
//! `cargo xtask man` runs it; `cargo xtask install` and the Debian package
//! install what it writes.

use clap::CommandFactory;
use clap_complete::{Shell, generate_to};
use std::path::PathBuf;
use xlb::cli::Cli;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args_os().nth(1).expect("usage: docs OUTPUT_DIR"));
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command();
    // xlb.1 and xlb-run.1, xlb-reload.1, ...
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        generate_to(shell, &mut cmd.clone(), "xlb", &completions)?;
    }
    Ok(())
}
