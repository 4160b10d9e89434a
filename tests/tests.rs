//! The one integration test binary: every file under tests/ is a module here.

mod support;

mod answers;
mod architecture;
mod bind;
mod cli;
mod fleet;
mod free_port;
mod health;
mod http;
mod limits;
mod loadgen;
mod local;
mod mcp;
mod metrics;
mod owners;
mod parse;
mod ssh;
mod watch;
