//! netstat-mcp: which connections exist on a host, and who holds port N.
//!
//! # Layout
//! - [`model`]: plain data — sockets, endpoints, protocols, TCP states, owners.
//! - [`parse`]: pure parsers for every socket listing a host may print (netstat, ss, /proc/net,
//!   BSD, lsof, Windows), a format detector, netstat-style rendering, and the local fallback runner.
pub mod model;
pub mod parse;
