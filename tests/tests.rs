mod mcp;
mod support;
