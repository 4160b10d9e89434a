pub mod mcp_client;
