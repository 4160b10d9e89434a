//! The command line: clap options → the same queries the MCP server runs → a table or the
//! JSON the MCP tools return. The MCP server itself starts from `main` when no subcommand (or
//! `serve`) is given. The options of `connections`, `summary` and `port` are the tools' own
//! input structs (`query::input`), flattened into clap.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::error::{Error, InputError};
use crate::query::{
    ConnectionsAnswer, ConnectionsArgs, ConnectionsData, Envelope, PortAnswer, PortArgs, PortData,
    Service,
};
use crate::source::Backend;

pub mod free_port;
pub mod health;
pub mod metrics;
mod text;
pub mod watch;

use text::{
    connections_answer_text, fleet_text, hosts_table, one_host, port_answer_text, summary_text,
};
pub(crate) use text::{endpoint, owners_cell, socket_columns, table};

/// Network connections and port owners, local (netlink) or remote (SSH); an MCP server.
///
/// With no command, serves the Model Context Protocol on stdio (what MCP clients launch).
#[derive(Debug, Parser)]
#[command(name = "netstat-mcp", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML) with remote hosts; else $NETSTAT_MCP_CONFIG, else
    /// ~/.config/netstat-mcp/config.toml. No file means local only.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// How to list local sockets: netlink sock_diag (falling back to /proc/net, then to parsed
    /// ss/netstat/lsof output), or one of them.
    #[arg(long, global = true, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,

    /// Offer the free_port tool (signal the processes holding a port, after the user
    /// confirms) when serving MCP on stdio; `serve --allow-kill` is the same.
    #[arg(long)]
    pub allow_kill: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Netlink,
    Procfs,
    /// ss, netstat or lsof output, parsed (what other systems use).
    External,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Netlink => Backend::Netlink,
            BackendArg::Procfs => Backend::Procfs,
            BackendArg::External => Backend::External,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP (stdio by default).
    Serve(ServeArgs),
    /// List TCP/UDP sockets (IPv4 and IPv6) with their owning processes.
    Connections(ConnectionsOpts),
    /// Tell whether a local port is in use and which processes hold it.
    /// Exit status: 0 occupied, 1 free, 2 error.
    Port(PortOpts),
    /// What a host is doing, at a glance: sockets by state and protocol, listeners, the
    /// programs and remote hosts with the most connections (the filters of `connections` apply).
    Summary(SummaryOpts),
    /// List the configured remote hosts (name, address, SSH port, user, auth method, groups;
    /// never a secret).
    Hosts(HostsOpts),
    /// Print connections as they open and close (a table line, or JSON per line with --json),
    /// until Ctrl-C or --duration; then a summary on stderr.
    Watch(watch::WatchOpts),
    /// How the connections are doing: retransmits, RTT, zero windows, queues, UDP drops (from
    /// the kernel's tcp_info and socket memory, no privilege needed), the worst first.
    Health(health::HealthOpts),
    /// Who is using the network: bytes sent and received per program (or unit, container,
    /// remote host, local port, connection) over a window, from the kernel's TCP counters —
    /// connections that opened or closed inside it included. --interval refreshes until Ctrl-C.
    Top(health::TopOpts),
    /// Print this host's metrics in the Prometheus text format (0.0.4), or write them
    /// atomically to --output FILE for node_exporter's textfile collector.
    Metrics(metrics::MetricsOpts),
    /// Stop what holds a port: shows which processes would get SIGTERM (the parent of a
    /// prefork family), asks, then signals and says whether the port is free.
    /// Exit status: 0 freed (or already free), 1 not freed, 2 error.
    FreePort(free_port::FreePortOpts),
}

#[derive(Debug, Args)]
pub struct HostsOpts {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve MCP over streamable HTTP at http://ADDR/mcp instead of stdio; ADDR defaults to
    /// 127.0.0.1:8765. A non-loopback ADDR requires --token-env.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = crate::http::DEFAULT_HTTP_ADDR
    )]
    pub http: Option<std::net::SocketAddr>,
    /// Require `Authorization: Bearer <token>` on every HTTP request, the token read from the
    /// environment variable NAME (at least 16 characters, e.g. `openssl rand -hex 32`).
    #[arg(long, value_name = "NAME", requires = "http")]
    pub(crate) token_env: Option<String>,
    /// Also accept this Host header: the name or address clients use to reach the server
    /// (`host` for any port, or `host:port`). Repeatable. Loopback names with the bound port and
    /// the bound address are always accepted; anything else is refused (DNS-rebinding
    /// protection).
    #[arg(long, value_name = "HOST", requires = "http")]
    pub(crate) allow_host: Vec<String>,
    /// Also accept browser requests from this Origin (`https://app.example.com`,
    /// `http://localhost:6274`). Repeatable. Requests without an Origin header are not affected.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    pub(crate) allow_origin: Vec<String>,
    /// Keep a watcher running and remember this machine's connection events (opens and
    /// closes) for the recent_connection_events tool.
    #[arg(long)]
    pub record: bool,
    /// How many events the recorder keeps (the oldest are dropped first); 136 bytes each.
    #[arg(long, value_name = "N", requires = "record", default_value_t = crate::watch::recorder::DEFAULT_CAPACITY as u64,
          value_parser = clap::value_parser!(u64).range(1..=crate::watch::recorder::MAX_CAPACITY as u64))]
    pub record_capacity: u64,
    /// Offer the free_port tool: it signals the processes holding a port (SIGTERM; SIGKILL
    /// with force) after the user confirms through MCP elicitation. Off by default; also
    /// `[actions] allow_kill = true` in the config.
    #[arg(long)]
    pub allow_kill: bool,
    /// Also serve Prometheus metrics at http://ADDR/metrics (same token and Host checks as
    /// /mcp). With --record, connection churn, retransmit and byte counters too.
    #[arg(long, requires = "http")]
    pub metrics: bool,
    /// At most N series per metric family; past it, label sets are summed into
    /// program="other" (info series are left out) and netstat_series_dropped counts them.
    #[arg(long, value_name = "N", requires = "metrics",
          default_value_t = crate::metrics::DEFAULT_MAX_SERIES as u64,
          value_parser = clap::value_parser!(u64).range(1..=crate::metrics::MAX_MAX_SERIES as u64))]
    pub metrics_max_series: u64,
}

impl ServeArgs {
    /// The HTTP options these flags ask for; `env` reads an environment variable (pass
    /// `std::env::var_os`).
    pub fn http_options(
        &self,
        env: impl FnOnce(&str) -> Option<std::ffi::OsString>,
    ) -> Result<crate::http::HttpOptions, crate::http::HttpError> {
        let token = match &self.token_env {
            Some(name) => Some(crate::http::BearerToken::from_env(name, env)?),
            None => None,
        };
        Ok(crate::http::HttpOptions {
            token,
            allowed_hosts: self.allow_host.clone(),
            allowed_origins: self.allow_origin.clone(),
            ..crate::http::HttpOptions::default()
        })
    }
}

/// The flags of every command that lists sockets: where to look and how to print.
#[derive(Debug, Args)]
pub struct Listed {
    /// List every network namespace on the machine (containers' too), each from inside it
    /// (needs root); rows show their namespace.
    #[arg(long)]
    pub(crate) all_netns: bool,
    /// Print JSON instead of text: the answer the MCP tool returns (for `summary`, its
    /// summary).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub struct ConnectionsOpts {
    #[command(flatten)]
    pub(crate) args: ConnectionsArgs,
    /// Skip the owner (pid/program) lookup: faster, and needs no privileges.
    #[arg(long)]
    pub(crate) no_owners: bool,
    #[command(flatten)]
    pub(crate) listed: Listed,
}

#[derive(Debug, Args)]
pub struct PortOpts {
    /// The port to check (1-65535).
    #[arg(value_name = "PORT", allow_hyphen_values = true)]
    pub(crate) port: String,
    #[command(flatten)]
    pub(crate) args: PortArgs,
    #[command(flatten)]
    pub(crate) listed: Listed,
}

#[derive(Debug, Args)]
pub struct SummaryOpts {
    #[command(flatten)]
    pub(crate) args: ConnectionsArgs,
    #[command(flatten)]
    pub(crate) listed: Listed,
}

/// The listing's arguments with `scope` set by `--all-netns`.
fn with_scope(args: &ConnectionsArgs, all_netns: bool) -> ConnectionsArgs {
    ConnectionsArgs {
        scope: all_netns.then(|| "all".to_string()),
        ..args.clone()
    }
}

/// Exit 0 for an answer that succeeded, 2 for one that did not.
pub(crate) fn success_or_2(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Runs `connections`. Exit 0 on success, 2 on error.
pub async fn connections(service: &Service, opts: &ConnectionsOpts) -> ExitCode {
    let result = match with_scope(&opts.args, opts.listed.all_netns).validate(None) {
        Ok(mut query) => {
            query.owners = !opts.no_owners;
            service
                .connections_any(&query, &crate::query::no_progress)
                .await
        }
        Err(e) => Err(Error::Input(e)),
    };
    show(result, opts.listed.json, connections_answer_text, |e| {
        success_or_2(e.success)
    })
}

/// Runs `summary`: what a host (or several: a list, glob or group) is doing, for a person (or
/// `--json`: the summary, merged over the hosts). Exit 0, 2 on error.
pub async fn summary(service: &Service, opts: &SummaryOpts) -> ExitCode {
    let result = match with_scope(&opts.args, opts.listed.all_netns).validate(Some(0)) {
        Ok(query) => {
            service
                .connections_any(&query, &crate::query::no_progress)
                .await
        }
        Err(e) => Err(Error::Input(e)),
    };
    match result {
        Ok(envelope) => {
            let written = if opts.listed.json {
                let summary = match &envelope.data {
                    Some(ConnectionsAnswer::One(d)) => serde_json::to_value(&d.summary).ok(),
                    // Several hosts: the merged summary and each host's outcome (what the
                    // message refers to), without their rows.
                    Some(ConnectionsAnswer::Many(f)) => Some(serde_json::json!({
                        "summary": f.summary,
                        "hosts": f.hosts.iter().map(|h| serde_json::json!({
                            "host": h.host,
                            "success": h.success,
                            "message": h.message,
                            "summary": h.data.as_ref().map(|d| &d.summary),
                        })).collect::<Vec<_>>(),
                    })),
                    None => None,
                };
                print_json(&Envelope {
                    success: envelope.success,
                    message: envelope.message.clone(),
                    data: summary,
                })
            } else {
                print_text(&match &envelope.data {
                    Some(ConnectionsAnswer::Many(fleet)) => {
                        fleet_text(&envelope, fleet, summary_text)
                    }
                    Some(ConnectionsAnswer::One(data)) => summary_text(&one_host(&envelope, data)),
                    None => format!("{}\n", envelope.message),
                })
            };
            delivered(written, success_or_2(envelope.success))
        }
        Err(e) => fail::<ConnectionsData>(&e, opts.listed.json),
    }
}

/// A PORT argument: any integer here (the query checks the range and says so); text that is
/// not a number is refused the same way.
fn port_number(text: &str) -> Result<i64, InputError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| InputError::new("port", crate::query::quoted(text), crate::query::PORT_RANGE))
}

/// Runs `port`. Exit 0 occupied, 1 free, 2 error.
pub async fn port(service: &Service, opts: &PortOpts) -> ExitCode {
    let port = match port_number(&opts.port) {
        Ok(p) => Some(p),
        Err(e) => return fail::<PortData>(&Error::Input(e), opts.listed.json),
    };
    let args = PortArgs {
        port,
        scope: opts.listed.all_netns.then(|| "all".to_string()),
        ..opts.args.clone()
    };
    let result = match args.validate(None) {
        Ok(query) => service.port_any(&query, &crate::query::no_progress).await,
        Err(e) => Err(Error::Input(e)),
    };
    show(result, opts.listed.json, port_answer_text, |envelope| {
        let occupied = match &envelope.data {
            Some(PortAnswer::One(d)) => d.is_occupied,
            Some(PortAnswer::Many(d)) => !d.summary.occupied_on.is_empty(),
            None => false,
        };
        if !envelope.success {
            ExitCode::from(2)
        } else if occupied {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}

/// Runs `hosts`: the configured remote hosts. `--json` prints exactly what the `list_hosts`
/// tool returns (its envelope, fitted to the answer budget); the table lists every host.
/// Exit 0.
pub fn hosts(service: &Service, opts: &HostsOpts) -> ExitCode {
    let written = if opts.json {
        print_json(&service.hosts())
    } else if let Some(data) = &service.hosts_within(None).data {
        print_text(&hosts_table(data))
    } else {
        Ok(())
    };
    delivered(written, ExitCode::SUCCESS)
}

/// Prints a command's answer (`--json`: the envelope the MCP tool returns; else `text` of it)
/// or its error, and exits with `code` of the answer, or 2 for the error.
pub(crate) fn show<T: Serialize>(
    result: Result<Envelope<T>, Error>,
    json: bool,
    text: impl FnOnce(&Envelope<T>) -> String,
    code: impl FnOnce(&Envelope<T>) -> ExitCode,
) -> ExitCode {
    match result {
        Ok(envelope) => {
            let written = if json {
                print_json(&envelope)
            } else {
                print_text(&text(&envelope))
            };
            delivered(written, code(&envelope))
        }
        Err(e) => fail::<T>(&e, json),
    }
}

pub(crate) fn fail<T: Serialize>(err: &Error, json: bool) -> ExitCode {
    let code = ExitCode::from(2);
    if json {
        delivered(print_json(&Envelope::<T>::error(err)), code)
    } else {
        print_error(&format!("netstat-mcp: {err}"));
        code
    }
}

/// The exit code once output is written. A reader that went away (`| head -1`) is not an
/// error: exit quietly with the code the command has anyway, as ripgrep does. Any other write
/// failure (a full disk) is reported and exits 2.
pub(crate) fn delivered(written: std::io::Result<()>, code: ExitCode) -> ExitCode {
    match written {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            print_error(&format!("netstat-mcp: cannot write the output: {e}"));
            ExitCode::from(2)
        }
    }
}

/// A line on stderr; a closed or broken stderr is ignored (never a panic).
pub fn print_error(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Text on stdout, without the panic `print!` raises on a closed pipe.
pub(crate) fn print_text(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

pub(crate) fn print_json<T: Serialize>(value: &T) -> std::io::Result<()> {
    use std::io::Write as _;
    // Pretty for a person at a terminal; compact (a third of the bytes) for pipes and programs.
    let pretty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if pretty {
        serde_json::to_writer_pretty(&mut out, value)
    } else {
        serde_json::to_writer(&mut out, value)
    }
    .map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()
}
