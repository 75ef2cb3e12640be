use clap::Parser;
use std::process::ExitCode;
use xlb::{
    agent,
    cli::{Cli, Command},
    config, decap, ipvsadm, load, logging, pidfile, reload, status,
};

/// How long `xlb reload` waits for the agent to report its reload.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `xlb reload`: validate the given config (if any), SIGHUP the agent and
/// wait for its outcome: the exit status is the reload's.
fn reload_agent(
    pid_file: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let checked = config.as_deref().map(load::load).transpose()?;
    let path = pid_file
        .or_else(|| checked.map(|c| c.agent.pid_file))
        .unwrap_or_else(|| config::AgentFiles::default().pid_file);
    let before = reload::read_outcome(pidfile::read(&path)?).seq;
    let pid = pidfile::signal(&path, libc::SIGHUP)?;
    let outcome = reload::wait_outcome(pid, before, RELOAD_WAIT)?;
    if !outcome.ok {
        anyhow::bail!("agent {pid}: reload failed, {}", outcome.message);
    }
    println!("xlb: agent {pid} reloaded its config");
    Ok(())
}

/// `xlb drain`: signal the agent to drain, then wait for it to exit.
fn drain_agent(
    pid_file: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    let checked = config.as_deref().map(load::load).transpose()?;
    let path = pid_file
        .or_else(|| checked.map(|c| c.agent.pid_file))
        .unwrap_or_else(|| config::AgentFiles::default().pid_file);
    let pid = pidfile::signal(&path, agent::drain_signal())?;
    println!("xlb: agent {pid} is draining");
    let until = std::time::Instant::now() + wait;
    // Gone, or a zombie its parent has not reaped yet.
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    while running() {
        if std::time::Instant::now() > until {
            anyhow::bail!("agent {pid} still runs after {}s", wait.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!("xlb: agent {pid} drained and stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Kept to the end: errors are then reported through the log, and
    // dropping it flushes what is queued.
    let mut log_guard = None;
    let result = match cli.command {
        Command::Check { coverage: true, .. } => {
            print!("{}", xlb::keepalived::coverage::render());
            Ok(())
        }
        Command::Check { source, .. } => source.source().and_then(|source| {
            let source = source.on_this_host();
            let c = load::load_from(&source)?;
            let reals: usize = c.services.iter().map(|s| s.reals.len()).sum();
            println!(
                "{}: ok, {} services, {reals} real servers, {} VRRP instances",
                source.path().display(),
                c.services.len(),
                c.vrrp.instances.len()
            );
            Ok(())
        }),
        Command::Convert { file, keepalived } => load::load_from(&load::Source::Keepalived {
            bgp: None,
            path: file,
            options: keepalived.options(),
        })
        .map(|c| print!("{}", xlb::config::emit::to_toml(&c, false))),
        Command::DumpConfig { source } => source
            .source()
            .and_then(|s| load::load_from(&s))
            .map(|c| print!("{}", xlb::config::emit::to_toml(&c, true))),
        Command::Status {
            pin_path,
            config,
            json: true,
            ..
        } => xlb::caps::require_reader("status")
            .and_then(|()| xlb::snapshot::pin_dir(pin_path.as_deref(), config.as_deref()))
            .and_then(|p| status::render_json(&p))
            .map(|s| println!("{s}")),
        Command::Status {
            pin_path,
            config,
            persistent_conn,
            json: false,
        } => xlb::caps::require_reader("status")
            .and_then(|()| xlb::snapshot::pin_dir(pin_path.as_deref(), config.as_deref()))
            .and_then(|pin_path| {
                let view = if persistent_conn {
                    status::View::PersistentConn
                } else {
                    status::View::Default
                };
                status::render(&pin_path, view).and_then(|s| {
                    print!("{s}");
                    print!("{}", status::render_agent(&pin_path)?);
                    Ok(())
                })
            }),
        Command::Flows {
            pin_path,
            config,
            client,
            service,
            real,
            state,
            json,
        } => xlb::caps::require_reader("flows")
            .and_then(|()| xlb::snapshot::pin_dir(pin_path.as_deref(), config.as_deref()))
            .and_then(|pin| xlb::snapshot::Running::find(&pin).flows())
            .and_then(|flows| {
                let filter = xlb::snapshot::flows::Filter {
                    client,
                    service,
                    real,
                    state,
                };
                let kept: Vec<_> = flows.into_iter().filter(|f| filter.keeps(f)).collect();
                if json {
                    println!("{}", serde_json::to_string_pretty(&kept)?);
                } else {
                    print!("{}", ipvsadm::render::connections(&kept, false));
                }
                Ok(())
            }),
        Command::Ipvsadm(args) => xlb::caps::require_reader("ipvsadm")
            .and_then(|()| ipvsadm::run(&args))
            .map(|s| print!("{s}")),
        Command::Run {
            source,
            keep_dataplane,
            dont_release_vrrp,
            pid_file,
            pin_path,
        } => source.source().and_then(|source| {
            let source = source.on_this_host();
            log_guard = Some(logging::init(&cli.log_level, cli.log_format)?);
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                config = %source,
                "xlb starting"
            );
            let overrides = config::Overrides { pin_path, pid_file };
            // VRRP runs on a thread of its own (vrrp::thread); the rest
            // (data plane, checkers, metrics, scripts) shares these two workers.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("xlb-agent")
                .enable_all()
                .build()?
                .block_on(agent::run(
                    &source,
                    agent::Release {
                        dataplane: !keep_dataplane,
                        vrrp: !dont_release_vrrp,
                    },
                    &overrides,
                ))
        }),
        Command::Reload { pid_file, config } => reload_agent(pid_file, config),
        Command::Drain {
            pid_file,
            config,
            wait,
        } => drain_agent(pid_file, config, std::time::Duration::from_secs(wait)),
        Command::Decap {
            iface,
            vips,
            gue_port,
            xdp_mode,
        } => logging::init(&cli.log_level, cli.log_format).and_then(|guard| {
            log_guard = Some(guard);
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
    let Err(e) = result else {
        return ExitCode::SUCCESS;
    };
    // Config errors already start with file:line:col, like a compiler's.
    let text = if e.is::<config::ConfigErrors>() {
        e.to_string()
    } else {
        format!("xlb: {}", logging::chain(&e))
    };
    match (log_guard, cli.log_format) {
        (Some(guard), logging::LogFormat::Json) => {
            for line in text.lines() {
                tracing::error!("{line}");
            }
            drop(guard);
        }
        (guard, _) => {
            // What the log still holds goes first.
            let journal = guard.is_some() && logging::under_journal();
            drop(guard);
            for line in text.lines() {
                if journal {
                    eprintln!("<3>{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }
    ExitCode::FAILURE
}
