#![doc = include_str!("../README.md")]

#[cfg(feature = "client")]
pub mod client;
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
