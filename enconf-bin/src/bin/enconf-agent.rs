//! `enconf-agent`: the agent of one server. Reads its configuration, repairs an interrupted
//! apply, serves the agent API until SIGTERM, then finishes the operations in flight.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::config::{AgentConfig, DEFAULT_CONFIG_PATH, Mode};
use enconf_agent_lib::server;
use enconf_agent_lib::system::{RealSystem, Sandbox, System};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The enconf agent: applies web hosting configuration on this server"
)]
struct Args {
    /// The configuration file (KEY=VALUE lines; environment variables of the same names win).
    #[arg(long, value_name = "PATH", help = format!("Configuration file [default: {DEFAULT_CONFIG_PATH}]"))]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    enconf_bin::init_tracing();
    let args = Args::parse();
    let config = match AgentConfig::load(args.config.as_deref(), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match config.mode {
        Mode::System => runtime.block_on(run(config, RealSystem::new())),
        Mode::Sandbox => {
            let root = config.sandbox_root.clone();
            tracing::info!(root = %root.display(), "sandbox mode: files go under the root, commands are recorded, not run");
            runtime.block_on(run(config, Sandbox::new(root)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run<S: System>(config: AgentConfig, system: S) -> Result<(), Box<dyn std::error::Error>> {
    let applier = Applier::new(config.layout.clone(), system);
    let applier = tokio::task::spawn_blocking(move || applier.start().map(|()| applier)).await??;
    let tls = match &config.tls {
        Some((cert, key)) => Some(server::tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = if tls.is_some() { "https" } else { "http" },
        "enconf-agent {} listening",
        env!("CARGO_PKG_VERSION")
    );
    let agent = server::Agent::new(config.token.clone(), applier, config.max_body_bytes);
    server::serve(
        listener,
        server::router(agent),
        tls,
        enconf_bin::shutdown_signal(),
    )
    .await;
    Ok(())
}
