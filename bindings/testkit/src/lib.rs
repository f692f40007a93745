//! A controller and one agent, in this process, on loopback: what the bindings' tests (C, PHP,
//! Python) call through the Management API. The agent runs in sandbox mode (files under a
//! temporary root, commands recorded, not run), so an account is placed and applied as on a
//! real server without touching this machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::config::AgentConfig;
use enconf_agent_lib::server as agent;
use enconf_agent_lib::system::Sandbox;
use enconf_core::controller::api::{self, ApiConfig};
use enconf_core::controller::{Controller, ControllerConfig};
use enconf_core::domain::{AdminToken, AgentToken};
use enconf_core::http::{self, ConnectionLimits};
use enconf_core::secret::SecretKey;
use enconf_core::store::{Engine, Store};
use enconf_core::transport::http::HttpTransport;
use tokio::sync::oneshot;

pub mod cases;

/// The administrator token of every stack.
pub const ADMIN_TOKEN: &str = "bindings-admin-token-0123456789";
/// The agent's token (what a `POST /api/v1/servers` body gives as `agent_token`).
pub const AGENT_TOKEN: &str = "bindings-agent-token-0123456789";

/// A running controller (empty store) and agent; both stop when it is dropped.
#[derive(Debug)]
pub struct Stack {
    /// `http://127.0.0.1:<port>`, the controller.
    pub controller_url: String,
    /// `http://127.0.0.1:<port>`, the agent (web, mail, dns and db roles).
    pub agent_url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

impl Stack {
    /// Starts both and returns once they listen.
    pub fn start() -> Result<Self, Failure> {
        let root = tempfile::tempdir()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (controller_listener, agent_listener) = runtime.block_on(async {
            let bind = || tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)));
            Ok::<_, std::io::Error>((bind().await?, bind().await?))
        })?;
        let controller_url = format!("http://{}", controller_listener.local_addr()?);
        let agent_url = format!("http://{}", agent_listener.local_addr()?);

        let values: BTreeMap<String, String> = [
            ("AGENT_TOKEN", AGENT_TOKEN.to_owned()),
            ("AGENT_MODE", "sandbox".to_owned()),
            (
                "AGENT_SANDBOX_ROOT",
                root.path().join("agent").display().to_string(),
            ),
            ("AGENT_ROLES", "web,mail,dns,db".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config = AgentConfig::from_values(&values)?;
        let sandbox = Sandbox::new(config.sandbox_root.clone());
        enconf_agent_lib::stand_ins::install_mail(&sandbox, &config.layout)?;
        let applier = Applier::new(config.layout.clone(), sandbox).with_roles(config.roles);
        applier.start()?;
        let token = AgentToken::parse(AGENT_TOKEN)?;
        // The agent starts its worker task: it is made inside the runtime.
        let agent_app = {
            let _entered = runtime.enter();
            agent::router(agent::Agent::new(token, applier, 1 << 20))
        };

        let store: Arc<dyn Store> = Engine::Memory.open(&SecretKey::generate()?)?;
        let transport = HttpTransport::new(Duration::from_secs(10), None)?;
        let controller = Controller::new(store, Arc::new(transport), ControllerConfig::default());
        let controller_app = api::router(
            controller,
            ApiConfig {
                admin_token: AdminToken::parse(ADMIN_TOKEN)?,
                max_body_bytes: 1 << 20,
                sign_in_limit: Default::default(),
            },
        );

        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let (agent_stop, agent_stopped) = oneshot::channel::<()>();
                let agent = tokio::spawn(agent::serve(
                    agent_listener,
                    agent_app,
                    None,
                    ConnectionLimits::default(),
                    async {
                        let _ = agent_stopped.await;
                    },
                ));
                http::serve(
                    controller_listener,
                    controller_app,
                    None,
                    ConnectionLimits::default(),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
                let _ = agent_stop.send(());
                let _ = agent.await;
            });
        });
        Ok(Self {
            controller_url,
            agent_url,
            stop: Some(stop),
            thread: Some(thread),
            _root: root,
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
