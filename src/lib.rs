//! netstat-mcp: which connections exist on a host, and who holds port N.
//!
//! # Layout
//! - [`model`]: plain data — sockets, endpoints, protocols, TCP states, owners.
//! - [`config`]: the TOML configuration file as a validated `NetstatConfig`.
//! - [`ssh`]: the SSH session pool and fixed remote commands.
pub mod config;
pub mod model;
pub mod ssh;
