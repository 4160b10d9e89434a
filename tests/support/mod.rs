//! Helpers shared by the integration tests.

pub mod fleet;
pub mod mcp_client;
pub mod net;
pub mod netns;
pub mod quiet_ns;
pub mod sshd;
