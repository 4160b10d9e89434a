//! netstat-mcp: which connections exist on a host, and who holds port N.
//!
//! # Layout
//! - [`model`]: plain data — sockets, endpoints, protocols, TCP states, owners.
//! - [`error`]: the error type; every variant says what to do.
//! - [`source`]: where sockets come from — netlink and `/proc/net` locally, SSH remotely.
//! - [`owners`]: socket inode → (pid, program) from `/proc/<pid>/fd`.
//! - [`query`]: validation, filters, port occupation, result envelopes and messages, and the
//!   [`query::Service`] both faces (CLI, MCP) call.
//! - [`http`]: the streamable HTTP transport — bearer auth, Host/Origin allow-list, access log,
//!   graceful shutdown — around any MCP handler.

pub mod cli;
pub mod error;
pub mod http;
pub mod model;
pub mod owners;
pub mod query;
pub mod source;
