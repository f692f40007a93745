//! # enconf-agent-lib
//!
//! The enconf agent as a library: the only part of enconf that touches a server. It validates
//! every input with the core's rules, renders config files with pure functions, and applies
//! them through a [`System`](system::System): atomically, validated in isolation, reloaded once
//! per batch, rolled back on failure, journaled against crashes.
//!
//! - [`config`]: `config.env` and environment variables.
//! - [`render`]: specs → nginx server blocks and PHP-FPM pools (the hot path).
//! - [`system`]: the machine ([`RealSystem`](system::RealSystem)) or a directory
//!   ([`Sandbox`](system::Sandbox)).
//! - [`apply`]: plans, validation, reload, rollback, journal.
//! - [`server`]: the HTTP(S) API.
//! - [`transport`]: the controller's in-process way to reach agents (tests, single-process
//!   embeddings).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use enconf_agent_lib::{apply::Applier, config::AgentConfig, server, system::RealSystem};
//! let config = AgentConfig::load(None, |k| std::env::var(k).ok())?;
//! let applier = Applier::new(config.layout.clone(), RealSystem::new());
//! applier.start()?;
//! let agent = server::Agent::new(config.token.clone(), applier, config.max_body_bytes);
//! let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
//! server::serve(listener, server::router(agent), None, Default::default(), std::future::pending()).await;
//! # Ok(()) }
//! ```

pub mod apply;
pub mod config;
pub mod identity;
mod owners;
pub mod render;
pub mod server;
pub mod system;
pub mod transport;
pub mod userdb;
