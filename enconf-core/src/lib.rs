//! # enconf-core
//!
//! The concepts of the enconf hosting control panel, shared by the controller and the agent:
//!
//! - [`domain`]: typed, validated values (servers, accounts, domain names, user names, roles…).
//!   A value that exists is valid; an invalid one cannot be built.
//! - [`protocol`]: the wire types of the controller and agent HTTP APIs and their error shape.
//! - [`store`]: the [`Store`](store::Store) trait and its backends (redb, in-memory).
//! - [`secret`]: the key secrets are encrypted with at rest.
//! - [`placement`]: which server gets a new account, as a pure function.
//! - [`version`]: agent versions and the "update available" rule.
//!
//! ```
//! use enconf_core::domain::{DomainName, RoleSet};
//! let roles: RoleSet = "web,db".parse().unwrap();
//! assert_eq!(roles.to_string(), "web,db");
//! assert!(DomainName::parse("shop.example;").is_err());
//! ```

#[cfg(feature = "controller")]
pub mod controller;
pub mod domain;
#[cfg(feature = "http")]
pub mod http;
pub mod placement;
pub mod protocol;
pub mod secret;
#[cfg(feature = "certs")]
pub mod ssl;
pub mod store;
pub mod transport;
pub mod version;
