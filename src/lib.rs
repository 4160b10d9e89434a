//! netstat-mcp: which connections exist on a host, and who holds port N.
//!
//! # Layout
//! - [`model`]: plain data — sockets, endpoints, protocols, TCP states, owners.
pub mod model;
