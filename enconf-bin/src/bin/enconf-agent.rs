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
    name = "enconf-agent",
    version,
    about = "The enconf agent: applies web hosting configuration on this server",
    after_help = AgentConfig::keys_help()
)]
struct Args {
    /// The configuration file (KEY=VALUE lines; environment variables of the same names win).
    #[arg(long, value_name = "PATH", help = format!("Configuration file [default: {DEFAULT_CONFIG_PATH}]"))]
    config: Option<PathBuf>,
}

/// jemalloc, whose background thread gives freed memory back to the system (within its 10 s
/// decay time): glibc's allocator kept the memory of a thousand closed connections for the
/// life of the process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    enconf_bin::init_tracing();
    enconf_bin::raise_open_files_limit();
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
            let sandbox = Sandbox::new(root);
            if let Err(e) = enconf_agent_lib::stand_ins::install_mail(&sandbox, &config.layout) {
                tracing::error!("cannot write the sandbox's stand-in mail files: {e}");
                return ExitCode::FAILURE;
            }
            runtime.block_on(run(config, sandbox))
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
    let applier = Applier::new(config.layout.clone(), system).with_roles(config.roles);
    let applier = tokio::task::spawn_blocking(move || applier.start().map(|()| applier)).await??;
    let tls = match (&config.tls, &config.client_ca) {
        (Some((cert, key)), None) => Some(server::tls_acceptor(cert, key)?),
        (Some((cert, key)), Some(ca)) => {
            tracing::info!(ca = %ca.display(), "mutual TLS: clients must present a certificate of this authority");
            Some(server::tls_acceptor_requiring_clients(cert, key, ca)?)
        }
        (None, _) => None,
    };
    let address = std::net::SocketAddr::from((config.bind, config.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address} (AGENT_BIND, AGENT_PORT): {e}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = if tls.is_some() { "https" } else { "http" },
        "enconf-agent {} listening",
        env!("CARGO_PKG_VERSION")
    );
    let agent = server::Agent::new(config.token.clone(), applier, config.max_body_bytes);
    if let Some((cert, key)) = &config.tls {
        agent.serve_tls_files(cert.clone(), key.clone());
    }
    server::serve(
        listener,
        server::router(agent),
        tls,
        server::ConnectionLimits::default(),
        enconf_bin::shutdown_signal(),
    )
    .await;
    Ok(())
}
