//! Helpers shared by the integration tests.

pub mod mcp_client;
pub mod net;
pub mod quiet_ns;
pub mod sshd;
pub mod world;
