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
//! - [`executor`]: the one executor of every plan: journal, staged validation, go live,
//!   reload, barrier, rollback, recovery.
//! - [`roles`]: what each role (web, mail, dns, db, backup) does for an account;
//!   [`services`]: how each service is validated and reloaded; [`certs`], [`acme`],
//!   [`panel`]: the server's own certificates, ACME answers and names; [`webmail`]: Roundcube
//!   at the server's webmail path; [`settings`]: editing
//!   the settings files the agent shares with the administrator; [`stand_ins`]: the files a
//!   sandbox agent's mail role edits in place of installed services'.
//! - [`preview`]: an account's web configuration rendered for a panel's preview.
//! - [`apply`]: the operations, split by role and module onto the executor.
//! - [`server`]: the HTTP(S) API; [`upgrade`]: the agent's self-upgrade of its package.
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

pub mod acme;
pub mod apply;
pub mod backup;
pub mod certs;
pub mod config;
pub mod executor;
pub mod identity;
mod owners;
pub mod panel;
mod parallel;
pub mod phpmyadmin;
pub mod preview;
pub mod render;
pub mod roles;
pub mod server;
pub mod services;
pub mod settings;
pub mod sql;
pub mod stand_ins;
pub mod system;
pub mod tokens;
pub mod transport;
pub mod upgrade;
pub mod userdb;
pub mod webmail;
