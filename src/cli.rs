//! The command line: clap options → the same queries the MCP server runs → a table or the
//! JSON the MCP tools return. The MCP server itself starts from `main` when no subcommand (or
//! `serve`) is given. The options of `connections`, `summary` and `port` are the tools' own
//! input structs (`query::input`), flattened into clap.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::error::{Error, InputError};
use crate::query::{
    ConnectionsAnswer, ConnectionsArgs, ConnectionsData, Envelope, HostsData, OwnerDetails,
    PortAnswer, PortArgs, PortData, RowOwners, RowPlace, Service,
};
use crate::source::Backend;

pub mod free_port;
pub mod health;
pub mod metrics;
pub mod watch;

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

#[derive(Debug, Args)]
pub struct ConnectionsOpts {
    #[command(flatten)]
    pub(crate) args: ConnectionsArgs,
    /// Skip the owner (pid/program) lookup: faster, and needs no privileges.
    #[arg(long)]
    pub(crate) no_owners: bool,
    /// List every network namespace on the machine (containers' too), each from inside it
    /// (needs root); rows show their namespace.
    #[arg(long)]
    pub(crate) all_netns: bool,
    /// Print the JSON answer the MCP tool returns instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub struct PortOpts {
    /// The port to check (1-65535).
    #[arg(value_name = "PORT", allow_hyphen_values = true)]
    pub(crate) port: String,
    #[command(flatten)]
    pub(crate) args: PortArgs,
    /// List every network namespace on the machine (containers' too), each from inside it
    /// (needs root); rows show their namespace.
    #[arg(long)]
    pub(crate) all_netns: bool,
    /// Print the JSON answer the MCP tool returns instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub struct SummaryOpts {
    #[command(flatten)]
    pub(crate) args: ConnectionsArgs,
    /// List every network namespace on the machine (containers' too), each from inside it
    /// (needs root); rows show their namespace.
    #[arg(long)]
    pub(crate) all_netns: bool,
    /// Print the JSON summary instead of text.
    #[arg(long)]
    pub(crate) json: bool,
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
    let result = match with_scope(&opts.args, opts.all_netns).validate(None) {
        Ok(mut query) => {
            query.owners = !opts.no_owners;
            service
                .connections_any(&query, &crate::query::no_progress)
                .await
        }
        Err(e) => Err(Error::Input(e)),
    };
    match result {
        Ok(envelope) => {
            let written = if opts.json {
                print_json(&envelope)
            } else {
                print_text(&connections_answer_text(&envelope))
            };
            delivered(written, success_or_2(envelope.success))
        }
        Err(e) => fail::<ConnectionsData>(&e, opts.json),
    }
}

/// Runs `summary`: what a host (or several: a list, glob or group) is doing, for a person (or
/// `--json`: the summary, merged over the hosts). Exit 0, 2 on error.
pub async fn summary(service: &Service, opts: &SummaryOpts) -> ExitCode {
    let result = match with_scope(&opts.args, opts.all_netns).validate(Some(0)) {
        Ok(query) => {
            service
                .connections_any(&query, &crate::query::no_progress)
                .await
        }
        Err(e) => Err(Error::Input(e)),
    };
    match result {
        Ok(envelope) => {
            let written = if opts.json {
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
        Err(e) => fail::<ConnectionsData>(&e, opts.json),
    }
}

/// Runs `port`. Exit 0 occupied, 1 free, 2 error.
pub async fn port(service: &Service, opts: &PortOpts) -> ExitCode {
    let port = match opts.port.trim().parse::<i64>() {
        Ok(p) => Some(p),
        Err(_) => {
            let e = InputError {
                param: "port".into(),
                given: format!("'{}'", crate::query::shorten(&opts.port)),
                allowed: "must be an integer between 1 and 65535".into(),
            };
            return fail::<PortData>(&Error::Input(e), opts.json);
        }
    };
    let args = PortArgs {
        port,
        scope: opts.all_netns.then(|| "all".to_string()),
        ..opts.args.clone()
    };
    let result = match args.validate(None) {
        Ok(query) => service.port_any(&query, &crate::query::no_progress).await,
        Err(e) => Err(Error::Input(e)),
    };
    match result {
        Ok(envelope) => {
            let written = if opts.json {
                print_json(&envelope)
            } else {
                print_text(&port_answer_text(&envelope))
            };
            let occupied = match &envelope.data {
                Some(PortAnswer::One(d)) => d.is_occupied,
                Some(PortAnswer::Many(d)) => !d.summary.occupied_on.is_empty(),
                None => false,
            };
            delivered(
                written,
                if !envelope.success {
                    ExitCode::from(2)
                } else if occupied {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                },
            )
        }
        Err(e) => fail::<PortData>(&e, opts.json),
    }
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

/// The configured hosts as an aligned table, with where the config came from.
pub(crate) fn hosts_table(data: &HostsData) -> String {
    let from = data
        .config
        .clone()
        .unwrap_or_else(|| "no config file".to_string());
    if data.hosts.is_empty() {
        let mut out = format!(
            "No usable remote hosts configured ({from}); only the local machine is available\n"
        );
        unusable_lines(&mut out, data);
        return out;
    }
    let cells: Vec<Vec<String>> = data
        .hosts
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.host.clone(),
                r.port.to_string(),
                r.username.clone(),
                r.auth.clone(),
                r.groups.join(","),
                r.via.join(","),
                r.source.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Name", "Host", "Port", "User", "Auth", "Groups", "Via", "Source",
        ],
        &[false, false, true, false, false, false, false, false],
        &cells,
    );
    let _ = writeln!(out, "{} remote host(s) from {from}", data.hosts.len());
    unusable_lines(&mut out, data);
    out
}

/// The entries that cannot be used, each with why.
fn unusable_lines(out: &mut String, data: &HostsData) {
    if data.unusable_count == 0 {
        return;
    }
    let _ = writeln!(out, "\nCannot be used ({}):", data.unusable_count);
    for u in &data.unusable {
        let _ = writeln!(
            out,
            "  {}: {}",
            u.name.as_deref().unwrap_or(&u.entry),
            u.problem
        );
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

/// `addr:port` with IPv6 in brackets, `*` for no port.
fn endpoint(ip: std::net::IpAddr, port: Option<u16>) -> String {
    let port = port.map_or_else(|| "*".to_string(), |p| p.to_string());
    if ip.is_ipv6() {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn owner_cell(pid: Option<u32>, program: Option<&str>) -> String {
    match (pid, program) {
        (Some(pid), Some(p)) => format!("{pid}/{p}"),
        (Some(pid), None) => pid.to_string(),
        _ => "-".to_string(),
    }
}

/// The row's owner, or every owner of a shared socket (`812/nginx,813/nginx`, at most 3 and
/// then `+N`).
fn owners_cell(pid: Option<u32>, program: Option<&str>, owners: &RowOwners) -> String {
    let all = owners.all();
    if all.len() < 2 {
        return owner_cell(pid, program);
    }
    let mut cell: Vec<String> = all
        .iter()
        .take(3)
        .map(|o| format!("{}/{}", o.pid, o.program))
        .collect();
    if all.len() > 3 {
        cell.push(format!("+{}", all.len() - 3));
    }
    cell.join(",")
}

/// `ip:port` with the bound interface as `ss` shows it: `0.0.0.0%lo:53`, `[fe80::1]%eth0:22`.
fn local_endpoint(ip: std::net::IpAddr, port: u16, place: &RowPlace) -> String {
    match place.interface() {
        None => endpoint(ip, Some(port)),
        Some(iface) if ip.is_ipv6() => format!("[{ip}]%{iface}:{port}"),
        Some(iface) => format!("{ip}%{iface}:{port}"),
    }
}

/// The container (`docker:3f4e5d6c7b8a`), else the systemd unit, else `-`.
fn service_cell(details: Option<&OwnerDetails>) -> String {
    match details {
        Some(OwnerDetails {
            container: Some(c), ..
        }) => format!("{}:{}", c.runtime, c.id),
        Some(OwnerDetails { unit: Some(u), .. }) => u.to_string(),
        _ => "-".to_string(),
    }
}

fn netns_cell(netns: Option<&crate::model::Netns>) -> String {
    match netns {
        Some(crate::model::Netns {
            name: Some(name), ..
        }) => name.to_string(),
        Some(ns) => ns.inode.to_string(),
        None => "-".to_string(),
    }
}

/// Columns shown only when some row has them: User, Service (container or unit), Netns.
struct Extra {
    user: bool,
    service: bool,
    netns: bool,
}

impl Extra {
    fn of<'a>(rows: impl Iterator<Item = (&'a RowOwners, &'a RowPlace)> + Clone) -> Extra {
        let details = || rows.clone().filter_map(|(o, _)| o.details());
        Extra {
            user: details().any(|d| d.user.is_some()),
            service: details().any(|d| d.container.is_some() || d.unit.is_some()),
            netns: rows.clone().any(|(_, p)| p.netns().is_some()),
        }
    }

    fn headers(&self, headers: &mut Vec<&'static str>, right: &mut Vec<bool>) {
        for (on, name) in [
            (self.user, "User"),
            (self.service, "Service"),
            (self.netns, "Netns"),
        ] {
            if on {
                headers.push(name);
                right.push(false);
            }
        }
    }

    fn cells(&self, row: &mut Vec<String>, owners: &RowOwners, place: &RowPlace) {
        if self.user {
            row.push(
                owners
                    .details()
                    .and_then(|d| d.user.as_deref())
                    .unwrap_or("-")
                    .to_string(),
            );
        }
        if self.service {
            row.push(service_cell(owners.details()));
        }
        if self.netns {
            row.push(netns_cell(place.netns()));
        }
    }
}

/// One host's listing, or a table per host (each under its name and message) and the
/// overall message last.
pub(crate) fn connections_answer_text(envelope: &Envelope<ConnectionsAnswer>) -> String {
    match &envelope.data {
        Some(ConnectionsAnswer::Many(fleet)) => fleet_text(envelope, fleet, connections_table),
        Some(ConnectionsAnswer::One(data)) => connections_table(&one_host(envelope, data)),
        None => format!("{}\n", envelope.message),
    }
}

/// One host's port check, or each host's under its name and the overall message last.
pub(crate) fn port_answer_text(envelope: &Envelope<PortAnswer>) -> String {
    match &envelope.data {
        Some(PortAnswer::Many(fleet)) => fleet_text(envelope, fleet, port_text),
        Some(PortAnswer::One(data)) => port_text(&one_host(envelope, data)),
        None => format!("{}\n", envelope.message),
    }
}

/// A one-host answer as the envelope its renderer takes.
fn one_host<A, T: Clone>(envelope: &Envelope<A>, data: &T) -> Envelope<T> {
    Envelope {
        success: envelope.success,
        message: envelope.message.clone(),
        data: Some(data.clone()),
    }
}

/// Each host's answer rendered under `== name`, then the overall message.
fn fleet_text<A, S, T: Clone>(
    envelope: &Envelope<A>,
    fleet: &crate::query::FleetData<S, T>,
    render: fn(&Envelope<T>) -> String,
) -> String {
    let mut out = String::new();
    for h in &fleet.hosts {
        let _ = writeln!(out, "== {}", h.host);
        out.push_str(&render(&Envelope {
            success: h.success,
            message: h.message.clone(),
            data: h.data.clone(),
        }));
        out.push('\n');
    }
    let _ = writeln!(out, "{}", envelope.message);
    out
}

/// The listing as an aligned table with the message as a footer.
pub(crate) fn connections_table(envelope: &Envelope<ConnectionsData>) -> String {
    let mut out = String::new();
    if let Some(data) = &envelope.data {
        let extra = Extra::of(data.connections.iter().map(|c| (&c.owners, &c.place)));
        let rows: Vec<Vec<String>> = data
            .connections
            .iter()
            .map(|c| {
                let mut row = vec![
                    c.protocol.to_string(),
                    c.recv_queue.to_string(),
                    c.send_queue.to_string(),
                    local_endpoint(c.local_ip, c.local_port, &c.place),
                    endpoint(c.foreign_ip, c.foreign_port),
                    c.state.unwrap_or_default().to_string(),
                    owners_cell(c.pid, c.program.as_deref(), &c.owners),
                ];
                extra.cells(&mut row, &c.owners, &c.place);
                row
            })
            .collect();
        let mut headers = vec![
            "Proto",
            "Recv-Q",
            "Send-Q",
            "Local Address",
            "Foreign Address",
            "State",
            "PID/Program",
        ];
        let mut right = vec![false, true, true, false, false, false, false];
        extra.headers(&mut headers, &mut right);
        out.push_str(&table(&headers, &right, &rows));
    }
    let _ = writeln!(out, "{}", envelope.message);
    if let Some(cursor) = envelope.data.as_ref().and_then(|d| d.next_cursor.as_ref()) {
        let _ = writeln!(out, "Next page: add --cursor {cursor}");
    }
    out
}

/// The port check as its message, then the holding sockets.
pub(crate) fn port_text(envelope: &Envelope<PortData>) -> String {
    let mut out = format!("{}\n", envelope.message);
    if let Some(data) = envelope.data.as_ref().filter(|d| d.is_occupied) {
        let extra = Extra::of(data.occupations.iter().map(|o| (&o.owners, &o.place)));
        let rows: Vec<Vec<String>> = data
            .occupations
            .iter()
            .map(|o| {
                let mut row = vec![
                    o.protocol.to_string(),
                    local_endpoint(o.local_ip, o.local_port, &o.place),
                    endpoint(o.foreign_ip, o.foreign_port),
                    o.state.unwrap_or_default().to_string(),
                    owners_cell(o.pid, o.program.as_deref(), &o.owners),
                ];
                extra.cells(&mut row, &o.owners, &o.place);
                row
            })
            .collect();
        let mut headers = vec![
            "Proto",
            "Local Address",
            "Foreign Address",
            "State",
            "PID/Program",
        ];
        let mut right = vec![false; 5];
        extra.headers(&mut headers, &mut right);
        out.push_str(&table(&headers, &right, &rows));
        if let Some(bind) = &data.bind {
            let verdict = if bind.can_bind { "yes" } else { "no" };
            let _ = writeln!(
                out,
                "\nCan a server bind {}? {verdict}: {}",
                bind.address, bind.detail
            );
            if !bind.notes.is_empty() {
                let _ = writeln!(out, "Notes: {}", bind.notes.join(", "));
            }
            if let Some(assumes) = &bind.assumes {
                let _ = writeln!(out, "{assumes}");
            }
        }
        if !data.suggested_ports.is_empty() {
            let ports: Vec<String> = data.suggested_ports.iter().map(u16::to_string).collect();
            let _ = writeln!(out, "Free ports nearby: {}", ports.join(", "));
        }
    }
    out
}

/// The summary for a person: counts, listeners, top programs and remote hosts.
pub(crate) fn summary_text(envelope: &Envelope<ConnectionsData>) -> String {
    let mut out = String::new();
    let Some(data) = &envelope.data else {
        let _ = writeln!(out, "{}", envelope.message);
        return out;
    };
    let s = &data.summary;
    let counts = |map: &std::collections::BTreeMap<&'static str, usize>| {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by_key(|(name, n)| (std::cmp::Reverse(**n), **name));
        entries
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "{} sockets on {}", data.connection_count, data.host);
    let _ = writeln!(out, "By state:    {}", counts(&s.by_state));
    let _ = writeln!(out, "By protocol: {}", counts(&s.by_protocol));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Listening ({}{}):",
        s.listener_count,
        if s.listeners_truncated {
            format!(", first {} shown", s.listeners.len())
        } else {
            String::new()
        }
    );
    let with_container = s.listeners.iter().any(|l| l.container.is_some());
    let with_netns = s.listeners.iter().any(|l| l.netns.is_some());
    let rows: Vec<Vec<String>> = s
        .listeners
        .iter()
        .map(|l| {
            let local = match &l.interface {
                None => endpoint(l.local_ip, Some(l.local_port)),
                Some(i) if l.local_ip.is_ipv6() => format!("[{}]%{i}:{}", l.local_ip, l.local_port),
                Some(i) => format!("{}%{i}:{}", l.local_ip, l.local_port),
            };
            let mut row = vec![
                l.protocol.to_string(),
                local,
                owner_cell(l.pid, l.program.as_deref()),
            ];
            if with_container {
                row.push(
                    l.container
                        .as_ref()
                        .map_or("-".to_string(), |c| format!("{}:{}", c.runtime, c.id)),
                );
            }
            if with_netns {
                row.push(match &l.netns {
                    Some(ns) => ns
                        .name
                        .as_deref()
                        .map_or(ns.inode.to_string(), str::to_string),
                    None => "-".to_string(),
                });
            }
            row
        })
        .collect();
    let mut headers = vec!["Proto", "Local Address", "PID/Program"];
    if with_container {
        headers.push("Container");
    }
    if with_netns {
        headers.push("Netns");
    }
    out.push_str(&table(&headers, &vec![false; headers.len()], &rows));
    if let Some(namespaces) = &s.by_netns {
        let _ = writeln!(out);
        let _ = writeln!(out, "By network namespace:");
        let rows: Vec<Vec<String>> = namespaces
            .iter()
            .map(|n| {
                vec![
                    n.count.to_string(),
                    n.inode.to_string(),
                    n.name.as_deref().unwrap_or("-").to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["Sockets", "Inode", "Name"],
            &[true, true, false],
            &rows,
        ));
    }
    if !s.top_programs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Top programs:");
        let rows: Vec<Vec<String>> = s
            .top_programs
            .iter()
            .map(|p| vec![p.count.to_string(), format!("{}/{}", p.pid, p.program)])
            .collect();
        out.push_str(&table(&["Sockets", "PID/Program"], &[true, false], &rows));
    }
    if !s.top_remote_hosts.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Top remote hosts:");
        let rows: Vec<Vec<String>> = s
            .top_remote_hosts
            .iter()
            .map(|r| vec![r.count.to_string(), r.foreign_ip.to_string()])
            .collect();
        out.push_str(&table(&["Sockets", "Address"], &[true, false], &rows));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", envelope.message);
    out
}

/// Renders an aligned text table; `right` marks right-aligned (numeric) columns.
fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                text.push(' ');
            }
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(text, "{cell:>w$}");
            } else {
                let _ = write!(text, "{cell:<w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}
