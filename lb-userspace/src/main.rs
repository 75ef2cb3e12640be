use clap::Parser;
use std::process::ExitCode;
use xlb::{
    agent,
    cli::{Cli, Command},
    config, decap, logging, pidfile, status,
};

/// `xlb reload`: validate the given config (if any), then SIGHUP the agent.
fn reload_agent(
    pid_file: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let checked = config.as_deref().map(config::load).transpose()?;
    let path = pid_file
        .or_else(|| checked.map(|c| c.agent.pid_file))
        .unwrap_or_else(|| config::AgentFiles::default().pid_file);
    let pid = pidfile::signal(&path, libc::SIGHUP)?;
    println!("xlb: asked agent {pid} to reload its config (its log says how it went)");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => config::load(&config).map(|c| {
            let reals: usize = c.services.iter().map(|s| s.reals.len()).sum();
            println!(
                "{}: ok, {} services, {reals} real servers",
                config.display(),
                c.services.len()
            );
        }),
        Command::Status {
            pin_path,
            json: true,
            ..
        } => status::render_json(&pin_path).map(|s| println!("{s}")),
        Command::Status {
            pin_path,
            persistent_conn,
            json: false,
        } => {
            let view = if persistent_conn {
                status::View::PersistentConn
            } else {
                status::View::Default
            };
            status::render(&pin_path, view).map(|s| print!("{s}"))
        }
        Command::Run {
            config,
            keep_dataplane,
            pid_file,
        } => logging::init(&cli.log_level).and_then(|()| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(agent::run(&config, keep_dataplane, pid_file.as_deref()))
        }),
        Command::Reload { pid_file, config } => reload_agent(pid_file, config),
        Command::Decap {
            iface,
            vips,
            gue_port,
            xdp_mode,
        } => logging::init(&cli.log_level).and_then(|()| {
            let opts = decap::Options {
                iface,
                vips,
                gue_port,
                xdp_mode: xdp_mode.into(),
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(decap::run(&opts))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Config errors already start with file:line:col, like a compiler's.
        Err(e) if e.is::<config::ConfigErrors>() => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xlb: {e:#}");
            ExitCode::FAILURE
        }
    }
}
