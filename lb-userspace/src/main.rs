use clap::Parser;
use std::process::ExitCode;
use xlb::{
    agent,
    cli::{Cli, Command},
    config, decap, logging, status,
};

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
            persistent_conn,
        } => {
            let view = if persistent_conn {
                status::View::PersistentConn
            } else {
                status::View::Default
            };
            status::render(&pin_path, view).and_then(|s| {
                print!("{s}");
                let vrrp = xlb::vrrp::counters::read(&pin_path)?;
                if let Some(v) = vrrp {
                    print!("{}", xlb::vrrp::counters::render(&v));
                }
                Ok(())
            })
        }
        Command::Run {
            config,
            keep_dataplane,
        } => logging::init(&cli.log_level).and_then(|()| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(agent::run(&config, keep_dataplane))
        }),
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
