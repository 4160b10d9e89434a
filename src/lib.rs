//! netstat-mcp: which connections exist on a host, and who holds port N.
//!
//! # Layout
//! - [`model`]: plain data — sockets, endpoints, protocols, TCP states, owners.
//! - [`error`]: the error type; every variant says what to do.
//! - [`source`]: where sockets come from — netlink and `/proc/net` locally, SSH remotely.
//! - `owners` (Linux): socket inode → (pid, program) from `/proc/<pid>/fd`.
//! - [`process`]: owner details — user, command line, systemd unit, container (from the
//!   cgroup path) — read once per process, only for the processes an answer shows.
//! - [`query`]: validation, filters, port occupation, result envelopes and messages, and the
//!   [`query::Service`] both faces (CLI, MCP) call.
//! - [`mcp`]: the MCP server: eight read-only tools over the services (and the opt-in
//!   `free_port`). With `inflight` and
//!   [`http`], the only modules that know rmcp.
//! - [`parse`]: pure parsers for every socket listing a host may print (netstat, ss, /proc/net,
//!   BSD, lsof, Windows), a format detector, netstat-style rendering, and the local fallback runner.
//! - `netstat_tool`: the `netstat` tool's allow-list, runner and native fallback rendering.
//! - [`config`]: the TOML configuration file as a validated `NetstatConfig`.
//! - [`ssh`]: the SSH session pool and fixed remote commands.
//! - `inflight`: the bound on calls in flight on one stdio MCP connection (a transport
//!   wrapper that stops reading while the bound is reached).
//! - [`watch`]: monitoring over time — open/close events from the kernel's destroy
//!   notifications and diffed listings (local), diffed listings over SSH (remote), and the
//!   bounded recorder behind `serve --record`.
//! - [`metrics`]: this host's sockets, listeners and (with the recorder) connection churn and
//!   traffic as Prometheus series, for `/metrics` and node_exporter's textfile collector.
//! - [`http`]: the streamable HTTP transport — bearer auth, Host/Origin checks, capped
//!   sessions, calls and connections, header/body timeouts, session ids of our own, access log,
//!   graceful shutdown — around any MCP handler.
//! - `fleet`: host selection (names, globs, `@groups`) and the bounded fan-out of one call
//!   over several hosts.
//! - `child`: the one runner of local programs (no shell, timeout, killed when dropped).
//! - [`cli`]: the command line's options, subcommands and printers (table or JSON).
//!
//! # Public surface
//!
//! `pub` is what the binary (`src/main.rs`), the integration tests, the examples and the fuzz
//! target use; everything else is `pub(crate)` (modules shown without a link above), so the
//! compiler reports code nothing uses. These docs are for contributors and link crate-private
//! items: read them with `cargo doc --document-private-items`.

#![forbid(unsafe_code)]
// Without the faces (`default-features = false`) what only they call — the tools' answers
// over time, the remote and multi-host paths — is unused; the default build is the one whose
// dead code the compiler reports.
#![cfg_attr(
    not(all(feature = "mcp", feature = "ssh")),
    allow(dead_code, unused_imports)
)]
// The docs link crate-private items on purpose (see "Public surface").
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod child;

// The facade: what a Rust program calls to take a snapshot of this machine's sockets, filter
// it, check a port, and read the rows.
pub use error::{Error, InputError};
pub use model::{Endpoint, Owner, Protocol, Socket, TcpState, Transport};
pub use query::{ConnectionsArgs, PortArgs, Service};
pub use source::{Backend, LocalSource, NoRemotes, Snapshot, Source, Want};

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "ssh")]
pub mod config;
pub mod error;
pub(crate) mod fleet;
#[cfg(feature = "mcp")]
pub mod http;
#[cfg(feature = "mcp")]
pub(crate) mod inflight;
pub(crate) mod limits;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod metrics;
pub mod model;
#[cfg(feature = "mcp")]
pub(crate) mod netstat_tool;
#[cfg(target_os = "linux")]
pub mod owners;
pub mod parse;
pub mod process;
pub mod query;
pub mod source;
#[cfg(feature = "ssh")]
pub mod ssh;
#[cfg(feature = "mcp")]
pub(crate) mod stdio;
pub(crate) mod text_file;
pub mod watch;
