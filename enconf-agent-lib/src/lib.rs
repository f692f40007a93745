//! # enconf-agent-lib
//!
//! The enconf agent as a library: it validates, renders and applies server configuration.
//! Nothing is implemented yet.
