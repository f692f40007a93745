//! `enconf-controller`: the panel back end. Opens the store, serves the Management API, checks
//! every agent's health on an interval, and stops gracefully on SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use enconf_core::controller::api::{self, ApiConfig};
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::{AdminToken, AgentToken};
use enconf_core::http;
use enconf_core::protocol::ServerInput;
use enconf_core::secret::SecretKey;
use enconf_core::ssl::ca::AgentCa;
use enconf_core::ssl::issue::{Acme, AcmeConfig};
use enconf_core::store::{Engine, StoreError};
use enconf_core::transport::http::HttpTransport;

/// The file in the data directory that holds a generated admin token.
const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The file in the data directory that holds a generated secret key.
const SECRET_KEY_FILE: &str = "secret-key";
/// The files in the data directory of the authority that issues agents' certificates.
const AGENT_CA_CERT_FILE: &str = "agent-ca.pem";
const AGENT_CA_KEY_FILE: &str = "agent-ca.key";

#[derive(Debug, Parser)]
#[command(
    name = "enconf-controller",
    version,
    about = "The enconf controller: servers, hosting accounts and agents"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address the Management API listens on.
    #[arg(long, env = "ENCONF_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Directory of the store file (enconf.redb) and of a generated admin token.
    #[arg(long, env = "ENCONF_DATA_DIR", default_value = "/var/lib/enconf")]
    data_dir: PathBuf,
    /// Admin token for the API. When unset, one is generated at first start and kept in
    /// DATA_DIR/admin-token (mode 0600).
    #[arg(long, env = "ENCONF_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// File holding the key (64 hex digits) agent tokens are encrypted with in the store. When
    /// unset, one is generated at first start and kept in DATA_DIR/secret-key (mode 0600).
    /// Keep a copy: the store's tokens cannot be read without it.
    #[arg(long, env = "ENCONF_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// Seconds between two health checks of every agent.
    #[arg(long, env = "ENCONF_HEALTH_INTERVAL_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    health_interval_s: u64,
    /// Seconds a call to an agent (a health check included) may take.
    #[arg(long, env = "ENCONF_AGENT_TIMEOUT_S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    agent_timeout_s: u64,
    /// How many agents are checked at the same time at most.
    #[arg(long, env = "ENCONF_HEALTH_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    health_concurrency: u64,
    /// Agents older than this version show "update available" [default: this release].
    #[arg(long, env = "ENCONF_NEWEST_AGENT_VERSION")]
    newest_agent_version: Option<semver::Version>,
    /// The agent's apt repository: its deb822 `.sources` file (as `scripts/apt-repo.sh` writes
    /// it, keys inline). The controller reads the repository's signed index for the newest
    /// agent version (instead of --newest-agent-version), and installation scripts add this
    /// source on servers.
    #[arg(long, env = "ENCONF_AGENT_SOURCES")]
    agent_sources: Option<PathBuf>,
    /// Seconds between two reads of the agent repository's index.
    #[arg(long, env = "ENCONF_AGENT_REPO_INTERVAL_S", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..=604_800))]
    agent_repo_interval_s: u64,
    /// Extra CA certificates (PEM) trusted for agents' HTTPS, besides the controller's own
    /// agent authority (DATA_DIR/agent-ca.pem). The system's CAs are not trusted for agents.
    #[arg(long, env = "ENCONF_AGENT_CA_FILE")]
    agent_ca_file: Option<PathBuf>,
    /// Accept servers whose agent URL is plain `http` on an address other than loopback (their
    /// token crosses the network in clear; the server table warns). Unset: refused, use https.
    #[arg(long, env = "ENCONF_ALLOW_PLAIN_HTTP_AGENTS")]
    allow_plain_http_agents: bool,
    /// Installation scripts make agents require the controller's client certificate on top of
    /// the token (mutual TLS: AGENT_TLS_CLIENT_CA). The controller presents its certificate,
    /// issued by its agent authority at each start, to every agent either way.
    #[arg(long, env = "ENCONF_AGENT_MTLS")]
    agent_mtls: bool,
    /// ACME directory for `letsencrypt` certificates: `letsencrypt`, `letsencrypt-staging` or a
    /// URL. Unset: `letsencrypt` is refused.
    #[arg(long, env = "ENCONF_ACME_DIRECTORY")]
    acme_directory: Option<String>,
    /// CA certificate (PEM) to trust for the ACME server instead of the system's (a test CA).
    #[arg(long, env = "ENCONF_ACME_ROOT_CA", requires = "acme_directory")]
    acme_root_ca: Option<PathBuf>,
    /// Contact e-mail address for the ACME account.
    #[arg(long, env = "ENCONF_ACME_CONTACT", requires = "acme_directory")]
    acme_contact: Option<String>,
    /// Days before expiry an ACME or self-signed certificate is renewed.
    #[arg(long, env = "ENCONF_RENEW_BEFORE_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=365))]
    renew_before_days: u64,
    /// How many backups each account's repository keeps: `daily=7,weekly=4,monthly=6`.
    #[arg(long, env = "ENCONF_BACKUP_KEEP", default_value = "daily=7,weekly=4,monthly=6", value_parser = parse_retention)]
    backup_keep: enconf_core::domain::backup::Retention,
    /// The nightly window of scheduled backups, in UTC: `HH:MM-HH:MM`. Each account's backup
    /// starts at its own offset in it.
    #[arg(long, env = "ENCONF_BACKUP_WINDOW", default_value = "01:00-05:00", value_parser = parse_window)]
    backup_window: (u32, u32),
    /// Where the controller keeps its state: `redb` (DATA_DIR/enconf.redb), `redb:PATH` (a
    /// redb file elsewhere), `memory` (lost at exit), or a `postgres://user@host:port/db` URL
    /// (`?sslmode=require` for TLS) that several controllers share.
    #[arg(
        long,
        env = "ENCONF_STORE",
        default_value = "redb",
        hide_env_values = true
    )]
    store: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ENCONF_MAX_BODY_BYTES", default_value_t = api::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Failed sign-ins one source address (an IPv6 /64) may make in a minute before it must
    /// wait the rest of that minute (429).
    #[arg(long, env = "ENCONF_SIGN_IN_FAILURES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sign_in_failures: u32,
    /// Certificate chain (PEM) to serve the API over HTTPS; needs --tls-key.
    #[arg(long, env = "ENCONF_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "ENCONF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Single-server set-up: when no server is recorded yet, register the agent at this URL as
    /// the one server, with all five roles.
    #[arg(
        long,
        env = "ENCONF_LOCAL_AGENT_URL",
        requires = "local_agent_token_file"
    )]
    local_agent_url: Option<String>,
    /// File holding the token of --local-agent-url.
    #[arg(long, env = "ENCONF_LOCAL_AGENT_TOKEN_FILE")]
    local_agent_token_file: Option<PathBuf>,
    /// Hostname (FQDN) recorded for the single server [default: the one its agent reports,
    /// with `.localdomain` added when it is not fully qualified].
    #[arg(long, env = "ENCONF_LOCAL_HOSTNAME")]
    local_hostname: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copies the store (ENCONF_STORE) into another, empty one, and checks that it holds as
    /// many entries of each table: from redb into PostgreSQL when one machine is outgrown, or
    /// back. Stop the controllers first. The copy opens with the same secret key.
    CopyStore {
        /// The store to copy into, written as ENCONF_STORE is (`redb:PATH`, `postgres://…`).
        #[arg(long)]
        to: String,
    },
}

fn parse_retention(s: &str) -> Result<enconf_core::domain::backup::Retention, String> {
    enconf_core::domain::backup::Retention::parse(s).map_err(|r| r.to_string())
}

/// `HH:MM-HH:MM` → (start, length) in seconds; a window may pass midnight.
fn parse_window(s: &str) -> Result<(u32, u32), String> {
    let bad = || "must look like 01:00-05:00 (UTC, hours and minutes)".to_owned();
    let at = |t: &str| -> Result<u32, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(h * 3600 + m * 60)
    };
    let (from, to) = s.split_once('-').ok_or_else(bad)?;
    let (from, to) = (at(from)?, at(to)?);
    let length = (to + 86_400 - from) % 86_400;
    if length == 0 {
        return Err("the window must not be empty".into());
    }
    Ok((from, length))
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            tracing::error!("configuration: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// Bad configuration: exit 2.
    Config(String),
    Run(Box<dyn std::error::Error>),
}

impl<E: std::error::Error + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Run(Box::new(e))
    }
}

/// The store `setting` names (the syntax of `ENCONF_STORE`).
fn engine(setting: &str, data_dir: &Path) -> Result<Engine, Failure> {
    Engine::from_setting(setting, data_dir.join("enconf.redb"))
        .map_err(|e| Failure::Config(format!("ENCONF_STORE: {e}")))
}

/// `copy-store`: copies the configured store into `to`.
async fn copy_store(args: &Args, to: &str) -> Result<(), Failure> {
    let from = engine(&args.store, &args.data_dir)?;
    let to = engine(to, &args.data_dir)?;
    if from == to {
        return Err(Failure::Config("--to names the store being copied".into()));
    }
    let (from_name, to_name) = (from.to_string(), to.to_string());
    let copied = tokio::task::spawn_blocking(move || from.copy_to(&to)).await??;
    let total: usize = copied.iter().map(|(_, n)| n).sum();
    let tables: Vec<String> = copied.iter().map(|(t, n)| format!("{t} {n}")).collect();
    tracing::info!(from = %from_name, to = %to_name, total, "store copied and counted: {}", tables.join(", "));
    Ok(())
}

async fn run(args: Args) -> Result<(), Failure> {
    if let Some(Command::CopyStore { to }) = &args.command {
        return copy_store(&args, to).await;
    }
    let engine = engine(&args.store, &args.data_dir)?;
    // Listening comes first: a start that cannot listen leaves nothing behind (no data
    // directory, token, key or store file).
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(http::tls_acceptor(cert, key).map_err(|e| Failure::Config(e.to_string()))?)
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| Failure::Config(format!("cannot listen on {}: {e}", args.bind)))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.data_dir)
        .map_err(|e| Failure::Config(format!("data directory {}: {e}", args.data_dir.display())))?;
    let admin_token = admin_token(&args)?;

    let key = secret_key(&args)?;
    let store = tokio::task::spawn_blocking(move || engine.open(&key))
        .await?
        .map_err(|e| match e {
            StoreError::WrongKey => Failure::Config(format!(
                "{e}: give the key file the store was created with (ENCONF_SECRET_KEY_FILE)"
            )),
            e => e.into(),
        })?;
    let timeout = Duration::from_secs(args.agent_timeout_s);
    let ca = Arc::new(agent_ca(&args)?);
    // Agents are trusted by the controller's authority (and ENCONF_AGENT_CA_FILE), not by the
    // system's: a certificate anyone else made for an agent's name is refused.
    let identity = ca
        .issue_controller(enconf_core::ssl::ca::now())
        .map_err(|e| Failure::Config(format!("the controller's client certificate: {e}")))?;
    let transport = HttpTransport::for_agents_as(
        timeout,
        ca.cert_pem(),
        args.agent_ca_file.as_deref(),
        Some((&identity.chain_pem, &identity.key_pem)),
    )
    .map_err(|e| Failure::Config(e.to_string()))?;
    drop(identity);
    let config = ControllerConfig {
        newest_agent: args
            .newest_agent_version
            .clone()
            .unwrap_or_else(enconf_core::version::release),
        health_timeout: timeout,
        health_concurrency: usize::try_from(args.health_concurrency).unwrap_or(256),
        renew_before: Duration::from_secs(args.renew_before_days * 24 * 3600),
        retention: args.backup_keep,
        backup_window: args.backup_window,
        allow_plain_http_agents: args.allow_plain_http_agents,
        agent_mtls: args.agent_mtls,
        ..ControllerConfig::default()
    };
    let mut controller =
        Controller::new(Arc::clone(&store), Arc::new(transport), config).with_agent_ca(ca);
    if let Some(directory) = &args.acme_directory {
        let acme = AcmeConfig {
            directory_url: AcmeConfig::directory_for(directory),
            root: args.acme_root_ca.clone(),
            contact: args
                .acme_contact
                .iter()
                .map(|c| format!("mailto:{c}"))
                .collect(),
        };
        tracing::info!(directory = %acme.directory_url, "ACME certificates enabled");
        controller = controller.with_acme(Arc::new(Acme::new(acme, store)));
    }
    if let Some(path) = &args.agent_sources {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Config(format!("agent sources {}: {e}", path.display())))?;
        let repo = enconf_core::apt::Repository::new(&text, timeout)
            .map_err(|e| Failure::Config(format!("agent sources {}: {e}", path.display())))?;
        tracing::info!(uri = %repo.source().uri, "agent updates from the apt repository");
        controller = controller.with_agent_repository(repo);
    }
    if let Some(url) = &args.local_agent_url {
        register_local_agent(&controller, &args, url).await?;
    }

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        url = %format!("{scheme}://{}", listener.local_addr()?),
        health_interval_s = args.health_interval_s,
        "enconf-controller {} listening",
        enconf_core::version::RELEASE
    );

    let app = api::router(
        controller.clone(),
        ApiConfig {
            admin_token,
            max_body_bytes: args.max_body_bytes,
            sign_in_limit: api::SignInLimit {
                failures: args.sign_in_failures,
                ..api::SignInLimit::default()
            },
        },
    );
    // The health monitor and the agent repository's reader run until the API has stopped.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let until_stop = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.changed().await;
        }
    };
    let monitor = tokio::spawn({
        let (controller, stop) = (controller.clone(), until_stop());
        let interval = Duration::from_secs(args.health_interval_s);
        async move { controller.monitor(interval, stop).await }
    });
    let release = tokio::spawn({
        let (controller, stop) = (controller.clone(), until_stop());
        let interval = Duration::from_secs(args.agent_repo_interval_s);
        async move { controller.watch_agent_release(interval, stop).await }
    });
    http::serve(
        listener,
        app,
        tls,
        http::ConnectionLimits::default(),
        enconf_bin::shutdown_signal(),
    )
    .await;
    let _ = stop.send(());
    let _ = tokio::join!(monitor, release);
    Ok(())
}

/// The configured admin token, or the one kept in the data directory (generated on first
/// start).
fn admin_token(args: &Args) -> Result<AdminToken, Failure> {
    if let Some(t) = &args.admin_token {
        return AdminToken::parse(t)
            .map_err(|r| Failure::Config(format!("ENCONF_ADMIN_TOKEN {r}")));
    }
    let path = args.data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = AdminToken::parse(text.trim_end_matches('\n'))
                .map_err(|r| Failure::Config(format!("{}: the token {r}", path.display())))?;
            tracing::info!(path = %path.display(), "admin token read from the data directory");
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = AdminToken::generate()?;
            write_secret(&path, token.expose_secret())?;
            tracing::info!(path = %path.display(), "admin token generated and stored (mode 0600)");
            Ok(token)
        }
        Err(e) => Err(Failure::Config(format!("{}: {e}", path.display()))),
    }
}

/// The key agent tokens are sealed with in the store: from the configured file, or the one
/// kept in the data directory (generated on first start). A key file others can read is
/// refused.
fn secret_key(args: &Args) -> Result<SecretKey, Failure> {
    let (path, generate) = match &args.secret_key_file {
        Some(path) => (path.clone(), false),
        None => (args.data_dir.join(SECRET_KEY_FILE), true),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            private(&path, "the secret key file")?;
            SecretKey::from_hex(&text)
                .map_err(|r| Failure::Config(format!("{}: the key {r}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            let key = SecretKey::generate()?;
            write_secret(&path, &key.to_hex())?;
            tracing::info!(path = %path.display(), "secret key generated and stored (mode 0600): keep a copy with the store's backups");
            Ok(key)
        }
        Err(e) => Err(Failure::Config(format!("{}: {e}", path.display()))),
    }
}

/// Refuses a secret file (`what`) that others than its owner may read.
fn private(path: &Path, what: &str) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Failure::Config(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Failure::Config(format!(
            "{}: {what} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

/// The authority that issues agents' HTTPS certificates: `agent-ca.pem` and `agent-ca.key`
/// (mode 0600) in the data directory, made at first start. Several controllers sharing a
/// store need the same two files.
fn agent_ca(args: &Args) -> Result<AgentCa, Failure> {
    let cert_path = args.data_dir.join(AGENT_CA_CERT_FILE);
    let key_path = args.data_dir.join(AGENT_CA_KEY_FILE);
    let config = |path: &Path, e: &dyn std::fmt::Display| {
        Failure::Config(format!("{}: {e}", path.display()))
    };
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            private(&key_path, "the agent CA key")?;
            let cert = std::fs::read_to_string(&cert_path).map_err(|e| config(&cert_path, &e))?;
            let key = std::fs::read_to_string(&key_path).map_err(|e| config(&key_path, &e))?;
            AgentCa::from_pem(&cert, &key).map_err(|e| config(&key_path, &e))
        }
        (false, false) => {
            let ca = AgentCa::generate(enconf_core::ssl::ca::now())
                .map_err(|e| Failure::Config(format!("generating the agent CA: {e}")))?;
            write_secret(&key_path, ca.key_pem().trim_end())?;
            std::fs::write(&cert_path, ca.cert_pem()).map_err(|e| config(&cert_path, &e))?;
            tracing::info!(path = %cert_path.display(), "agent CA generated: agents' HTTPS certificates are issued by it");
            Ok(ca)
        }
        (true, false) => Err(config(
            &key_path,
            &"missing beside the agent CA certificate",
        )),
        (false, true) => Err(config(&cert_path, &"missing beside the agent CA key")),
    }
}

/// Writes a secret to a new file, mode 0600 from its creation, durably.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The hostname the local agent reports, made fully qualified (`vm` → `vm.localdomain`);
/// `server.localdomain` when it does not answer or its name is not a valid one.
async fn local_hostname(controller: &Controller, url: &str, token: &str) -> String {
    const FALLBACK: &str = "server.localdomain";
    let (Ok(url), Ok(token)) = (url.parse(), AgentToken::parse(token)) else {
        return FALLBACK.to_owned();
    };
    let endpoint = enconf_core::transport::AgentEndpoint { url, token };
    let reported = match controller.agent_health(&endpoint).await {
        Ok(health) => health.hostname,
        Err(e) => {
            tracing::warn!(error = %e, "the local agent did not say its hostname; recording {FALLBACK}");
            return FALLBACK.to_owned();
        }
    };
    let candidates = [reported.clone(), format!("{reported}.localdomain")];
    candidates
        .into_iter()
        .find(|name| enconf_core::domain::DomainName::parse(name).is_ok())
        .unwrap_or_else(|| FALLBACK.to_owned())
}

/// Single-server set-up: records the local agent as the one server when none is recorded.
async fn register_local_agent(
    controller: &Controller,
    args: &Args,
    url: &str,
) -> Result<(), Failure> {
    if !controller
        .servers()
        .await
        .map_err(|e| Failure::Run(e.into()))?
        .is_empty()
    {
        return Ok(());
    }
    let Some(token_file) = &args.local_agent_token_file else {
        return Err(Failure::Config(
            "--local-agent-url needs --local-agent-token-file".into(),
        ));
    };
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| Failure::Config(format!("{}: {e}", token_file.display())))?;
    let token = token.trim_end_matches('\n').to_owned();
    let hostname = match &args.local_hostname {
        Some(h) => h.clone(),
        None => local_hostname(controller, url, &token).await,
    };
    let input = ServerInput {
        name: Some("local".into()),
        hostname: Some(hostname),
        agent_url: Some(url.to_owned()),
        agent_token: Some(token),
        roles: Some(
            ["web", "mail", "dns", "db", "backup"]
                .map(String::from)
                .to_vec(),
        ),
        ..ServerInput::default()
    };
    let server = controller
        .add_server(&input)
        .await
        .map_err(|e| Failure::Config(format!("registering the local agent: {e}")))?;
    tracing::info!(
        server = %server.id,
        reachable = server.reachable,
        "the local agent is registered as the single server (web,mail,dns,db,backup)"
    );
    Ok(())
}
