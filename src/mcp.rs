//! The MCP server: eight read-only tools over [`Service`], [`NetstatTool`] and [`WatchService`],
//! and `free_port`, offered only when the operator enables it ([`Actions`]).
//!
//! [`NetstatServer`] implements rmcp's `ServerHandler` by hand rather than through typed
//! `Parameters<T>`: a wrong JSON type (`"80"`, `80.5`) must come back as a tool result with
//! `isError: true` and the envelope, which typed parameters would turn into a JSON-RPC error.
//! So `call_tool` takes the raw arguments map and decodes it against the tool's input schema
//! ([`schema::decode`]); both the schema and the decoded struct come from the query layer's
//! input types (`query::input`), the one place an input is declared. Nothing here validates or
//! filters on its own.
//!
//! Every call runs under the request's cancellation token: `notifications/cancelled` drops the
//! work (and kills a running `netstat`). An unknown tool is a JSON-RPC `invalid params` error;
//! everything else a caller can get wrong is a tool error.
//!
//! rmcp is known here and in `http` (the streamable HTTP transport); nowhere else.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    GetPromptRequestParams, GetPromptResponse, Implementation, JsonObject, ListPromptsResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{QuitReason, RequestContext, RoleServer, ServerInitializeError};
use rmcp::transport::IntoTransport;
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod prompts;

use crate::error::Error;
use crate::netstat_tool::{NetstatData, NetstatInput, NetstatTool};
use crate::query::health::DEFAULT_HEALTH_ROWS;
use crate::query::schema::{self, input_schema, output_schema};
use crate::query::{Confirm, Confirmation, FreePortArgs, FreePortData, Requester};
use crate::query::{
    ConnectionsAnswer, ConnectionsArgs, DEFAULT_OCCUPATIONS, DEFAULT_ROWS, Envelope, HealthArgs,
    HealthData, HostsData, NoArgs, PortAnswer, PortArgs, Progress, ProgressEvent, RecentArgs,
    Service, WatchArgs, no_progress,
};
use crate::source::Backend;
use crate::watch::traffic::{TrafficArgs, TrafficData};
use crate::watch::window::{RecentData, WatchData, WatchService};

/// The tool names, as `tools/list` shows them.
pub(crate) const QUERY_NETWORK_CONNECTIONS: &str = "query_network_connections";
pub(crate) const CHECK_PORT_OCCUPATION: &str = "check_port_occupation";
pub(crate) const NETSTAT: &str = "netstat";
pub(crate) const LIST_HOSTS: &str = "list_hosts";
pub(crate) const WATCH_CONNECTIONS: &str = "watch_connections";
pub(crate) const RECENT_CONNECTION_EVENTS: &str = "recent_connection_events";
pub(crate) const CONNECTION_HEALTH: &str = "connection_health";
pub(crate) const TRAFFIC: &str = "traffic";
pub(crate) const FREE_PORT: &str = "free_port";

/// What the server is for, sent in `initialize`.
pub(crate) const INSTRUCTIONS: &str = "netstat-mcp answers questions about TCP/UDP sockets (IPv4 and \
IPv6) on this machine or on configured remote hosts over SSH: which connections exist, and who \
holds port N. Use check_port_occupation for \"is port N in use, and by which process?\", \
query_network_connections for listings with filters (state, ports, pid, program) — its \
data.summary (counts by state and protocol, listeners, top programs and remote hosts) answers \
\"what is this host doing?\" without paging through rows — list_hosts to see which remote \
hosts can be named, watch_connections to see what opens and closes over the next seconds \
(even connections that live 1 ms), recent_connection_events for what opened and closed in the \
last minutes (when the server records), connection_health for \"why is it slow?\" (retransmits, \
RTT, zero windows, queues, UDP drops from the kernel's tcp_info, with a verdict per socket), \
traffic for \"who is using the network?\" (bytes per program, unit, container or remote host \
over the next seconds), and netstat only when netstat's own text output is wanted. Locally, rows also say who the owner is (user, command line, systemd unit, container) \
and scope \"all\" covers every network namespace (containers' sockets). Answers are kept \
under 24 KiB; page with cursor/next_cursor. All tools are read-only. pid/program need root or \
the socket owner's rights; without them they are null and the message says how to fix it.";

/// Added to [`INSTRUCTIONS`] when `free_port` is offered.
const ACTIONS_INSTRUCTIONS: &str = " Exception: free_port (offered because the operator \
enabled it) stops the processes holding a port; it dry-runs unless dry_run is false, and asks \
the user to confirm before it signals anything.";

const CONNECTIONS_DESCRIPTION: &str = "List TCP and UDP sockets (IPv4 and IPv6) on this machine, \
or on a configured remote host over SSH (see list_hosts), like `netstat -tunap` / `ss -tunap`. \
The answer starts with data.summary, counted over every matching socket: by_state, by_protocol, \
listeners (listening TCP and bound UDP sockets with their programs), top_programs and \
top_remote_hosts — often enough on its own. Then up to `limit` rows (default 50) in a stable \
order (protocol, local port, local ip, foreign ip, foreign port); connection_count is the full \
count, truncated says more rows follow, and next_cursor passed back as `cursor` returns the next \
page. Each row: protocol (tcp, tcp6, udp, udp6), receive/send queue, local and foreign address \
and port, TCP state (netstat spelling: LISTEN, ESTABLISHED, TIME_WAIT, ...; null for unconnected \
UDP) and the owning pid and program; locally also the owner's user, uid, command, systemd unit \
and container (docker, podman, containerd, kubernetes, lxc — from its cgroup), every owner of a \
socket several processes share (owners), and the bound interface (link-local or \
SO_BINDTODEVICE). scope \"all\" lists every network namespace of this machine (containers' \
included, needs root); rows then carry netns and data.summary.by_netns counts per namespace. \
Filters: proto, state (LISTEN also lists bound UDP sockets; \
other states are TCP only), local_port, remote_port, pid, program (substring). Use \
check_port_occupation instead to ask whether one port is in use and by whom; use netstat only \
for netstat's text format. pid/program are null for sockets of processes the server's user may \
not inspect (run the server as root, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or use an \
SSH user with those rights) and for sockets no process holds (TIME_WAIT); the message says when \
permissions hid owners. Note: `port` (or `ssh_port`) is the SSH port of a remote host, not a \
socket port, and is refused for the local machine: filter sockets with local_port/remote_port.";

const PORT_DESCRIPTION: &str = "Tell whether a TCP or UDP port is in use on this machine (or on a \
configured remote host over SSH, see list_hosts) and which processes hold it. A port is \
occupied when any socket of that protocol has it as its local port, in any state (LISTEN, \
ESTABLISHED, ... for TCP; any bound socket for UDP); foreign ports never count. Returns \
is_occupied, occupation_count (every socket on the port), owners (every process holding it, with \
its sockets counted per state), kernel_held (sockets no process holds, e.g. TIME_WAIT), and up \
to `limit` socket rows (default 20, listening ones first) in occupations; locally each owner \
also has its user, command line, systemd unit and container, and scope \"all\" checks every \
network namespace (\"which container holds 8080?\"). The message reads, for example, \"Port 5432/TCP on local host is occupied by: postgres (pid 812; LISTEN 1, ESTABLISHED \
4,211)\". bind says whether a server can bind the port and why not (this machine and remote \
Linux hosts): can_bind (for a server that sets SO_REUSEADDR), reason (free, listener, in_use, \
time_wait, reuseport_group), with_reuseaddr, without_reuseaddr, notes (ephemeral_range, \
privileged, reserved), assumes and a detail sentence, for `address` (an IP of the host; \
default [::], IPv4 and IPv6); suggested_ports lists the nearest free ports outside the \
ephemeral range. Use this before binding a port or to find what blocks one (EADDRINUSE); use \
query_network_connections for broader listings. pid/program are null when the owner is a \
process the server's user may not inspect (needs root or CAP_SYS_PTRACE and \
CAP_DAC_READ_SEARCH) or no process (TIME_WAIT); the message says which.";

const NETSTAT_DESCRIPTION: &str = "Run the local `netstat` with shell-style arguments and return \
its text output, for callers that expect netstat's own format (e.g. `-tulpn`, `-an`). Only the \
flags -a -n -t -u -l -p --help are allowed, alone or combined (-tulpn), at most 16 arguments; \
anything else is refused with an error naming the argument. No shell is involved; netstat is \
stopped after 3 s. The output is cut at 64 KiB at a line boundary, and a last line says how \
many lines were left out. Where no netstat binary exists, the same columns are rendered from \
the native socket collector (data.source = \"native\"). Local machine only. Prefer \
query_network_connections or check_port_occupation for structured, summarised answers. The \
PID/Program column (-p) needs root to show other users' processes.";

const HOSTS_DESCRIPTION: &str = "List the remote hosts this server may query over SSH, from its \
configuration: for each, the name to pass as `host` to the other tools, its address, SSH port, \
user name, authentication method (password, key or agent — never a secret) and groups. No \
inputs. Only these hosts are reachable; the local machine is always available (omit `host`). \
Querying a host's sockets needs rights on that host (an SSH user with root or \
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to see other users' processes).";

const WATCH_DESCRIPTION: &str = "Watch TCP and UDP connections open and close for a few seconds \
(duration_secs, 1-50, default 10) on this machine or a configured remote host (see list_hosts), \
and return what changed: opened/closed counts, the same by program and by remote host (top 10), \
and the newest events (at most `limit`, default 50; oldest first), each with a timestamp \
(RFC 3339, ms), the socket's fields (protocol, local and foreign address and port, state, \
queues, pid, program, uid) and, for a close whose open was seen, duration_ms. Locally closes \
come from the kernel's sock_diag destroy notifications, so even a connection that lives 1 ms is \
seen (a connection that opened and closed between two listings shows as an open and a close \
with origin \"destroy\"); a remote host is watched by comparing listings every interval \
(default 2 s), which misses connections shorter than that. Filters as in \
query_network_connections (proto, state, local_port, remote_port, pid, program). Sends \
notifications/progress about once a second when the request carries a progressToken; cancel \
the request to stop early. Use it for \"what keeps connecting and dropping?\"; use \
recent_connection_events for the past and query_network_connections for a snapshot. pid/program \
need root or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, as for listings; subscribing to destroy \
notifications needs no privilege (where a kernel or sandbox refuses it, the message says so).";

const RECENT_DESCRIPTION: &str = "What opened and closed on this machine in the last since_secs \
seconds (default 600), from the recorder that a server started with `serve --record` keeps \
running: opened/closed counts, the same by program and by remote host (top 10), and the newest \
matching events (at most `limit`, default 50; oldest first), e.g. \"what connected to port 5432 \
in the last 10 minutes?\" with local_port 5432. Events have the fields watch_connections \
returns. The recorder keeps a bounded number of events and drops the oldest first: the answer \
says how many were dropped and whether the whole look-back is covered (window_complete). \
Filters as in query_network_connections. Local machine only. Without --record it returns an \
error saying how to enable it; use watch_connections to watch live instead. Owners (pid, \
program) need the server to run as root or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.";

const HEALTH_DESCRIPTION: &str = "How TCP connections (and UDP sockets) are doing, from the \
kernel's own counters (tcp_info and socket memory, what `ss -tinm` prints; no privilege needed): \
on this machine or a configured remote Linux host (see list_hosts). Use it for \"the calls to the \
database are slow — is it the network?\" or \"why does this client hang?\". data.summary counts \
over every matching socket: retransmitting sockets and total_retrans, rtt_ms percentiles (p50, \
p90, p99, max), zero_window (peers that stopped reading), send_backlog, limited (receiver, \
send_buffer, application), UDP drops; by_verdict. Then the worst `limit` sockets (default 20) \
by `sort` (retrans default, rtt, send_queue, recv_queue, bytes, lost), each a \
query_network_connections row plus tcp (rtt_ms, rttvar_ms, min_rtt_ms, rto_ms, cwnd, ssthresh, \
mss, retrans, total_retrans, lost, unacked, sacked, bytes_sent/acked/received/retrans, segs, \
delivery_rate_bps, pacing_rate_bps, busy_ms, rwnd_limited_ms, sndbuf_limited_ms, \
notsent_bytes, snd_wnd, rcv_space, last_send_ms, last_recv_ms, app_limited, ca_state; times in \
ms, rates in bits/s), mem (rmem_alloc, rcvbuf, wmem_queued, sndbuf, drops) and a verdict: ok, \
loss, zero_window, receiver_limited, send_buffer_limited, high_rtt, application_limited or \
drops (UDP). The message names the worst finding. Default filter: TCP in connected states \
(not LISTEN/TIME_WAIT/SYN_RECV); proto, state, local_port, remote_port, pid, program filter as \
in query_network_connections; scope \"all\" covers every network namespace (needs root). Locally \
a row whose owner cannot be read still names its systemd unit and container from the socket's \
cgroup. pid/program need root or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, as for listings.";

const TRAFFIC_DESCRIPTION: &str = "Who is using the network: bytes each program (or systemd unit, \
container, remote host, local port, or connection — `by`) sent and received over the next \
duration_secs seconds (1-50, default 5) on this machine or a configured remote Linux host, from \
the kernel's TCP byte counters (tcp_info): no packet capture, no eBPF, no root. Connections that \
opened or closed during the window count too (a closed one's final counters come with the \
kernel's destroy notification). data: window_secs, totals {sent, received}, opened, closed, and \
groups busiest first (key, sent, received, sent_per_sec, received_per_sec, connections; pids \
for by program), at most `limit` (default 20). sent counts what the peer acknowledged. A \
connection that opened and closed between two of the watcher's listings (every 250 ms) goes to \
its listener's owner, else to `unknown`. UDP is not measured (no byte counters; udp_note). \
Filters as in query_network_connections (proto, state, local_port, remote_port, pid, program). \
Remote hosts are sampled twice with ss, missing connections that close in between. Sends \
notifications/progress every second with a progressToken; cancellable. Use \
connection_health for why a connection is slow; watch_connections for what opens and closes.";

/// One tool call as a handler sees it: the arguments, the progress sink, and the request (its
/// peer, for an elicitation, and where it came from).
struct Call<'a> {
    args: &'a JsonObject,
    progress: Progress<'a>,
    context: &'a RequestContext<RoleServer>,
}

const FREE_PORT_DESCRIPTION: &str = "Free a port: stop the processes holding its LISTEN (TCP) \
or bound (UDP) sockets — for \"kill whatever is on 3000\" after EADDRINUSE. Destructive, so: \
dry_run defaults to true and then only says which processes would get which signals; with \
dry_run false the server first asks the user to confirm (MCP elicitation; a client without it is \
refused unless the operator set require_elicitation = false), then sends SIGTERM, waits up to \
timeout_secs (default 5) for the port to be free, and with force also sends SIGKILL to what \
still holds it. Of a prefork family (nginx master and workers) the parent is signalled. Never \
signals pid 1, kernel threads, this server or its parent, or (unless the server runs as root) \
other users' processes; processes whose outgoing connections merely use the port are not \
targets. Signals go through a pidfd, so a reused pid is never hit. data: processes (pid, \
program, user, command, workers, signals sent, exited), free (no LISTEN/bound socket left; \
TIME_WAIT may remain), remaining holders, confirmed_by. connection {remote_ip, remote_port} \
closes that one TCP connection of the port instead (SOCK_DESTROY, as ss -K; needs \
CAP_NET_ADMIN) and leaves the process running. host: a remote host only when its configured \
entry says allow_kill = true. Use check_port_occupation first to see who holds the port and \
whether a server could bind it anyway (TIME_WAIT, SO_REUSEADDR).";

/// What a tool runs: its handler over the server, with the call.
type Handler =
    for<'a> fn(&'a NetstatServer, Call<'a>) -> futures::future::BoxFuture<'a, CallToolResult>;

/// What a tool does to the world, as its annotations say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Reads only; the same call answers alike (`readOnlyHint`, `idempotentHint`).
    ReadOnly,
    /// Signals processes or closes sockets (`destructiveHint`; not idempotent). Listed only
    /// when the operator enabled actions.
    Destructive,
}

/// A tool, declared once: `tools/list`, the input decoder, dispatch and the unknown-tool
/// error all come from these entries.
struct Entry {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    /// Its input schema (from the input struct) and output schema (from the answer type).
    input: fn() -> JsonObject,
    output: fn() -> JsonObject,
    /// Whether it can reach remote hosts (`openWorldHint`).
    open_world: bool,
    effect: Effect,
    handler: Handler,
}

const REGISTRY: &[Entry] = &[
    Entry {
        name: QUERY_NETWORK_CONNECTIONS,
        title: "Query network connections",
        description: CONNECTIONS_DESCRIPTION,
        input: input_schema::<ConnectionsArgs>,
        output: output_schema::<Envelope<ConnectionsAnswer>>,
        open_world: true,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(s.connections(c.args, c.progress)),
    },
    Entry {
        name: CHECK_PORT_OCCUPATION,
        title: "Check port occupation",
        description: PORT_DESCRIPTION,
        input: input_schema::<PortArgs>,
        output: output_schema::<Envelope<PortAnswer>>,
        open_world: true,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(s.port(c.args, c.progress)),
    },
    Entry {
        name: NETSTAT,
        title: "Run netstat",
        description: NETSTAT_DESCRIPTION,
        input: input_schema::<NetstatInput>,
        output: output_schema::<Envelope<NetstatData>>,
        open_world: false,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(s.netstat(c.args)),
    },
    Entry {
        name: LIST_HOSTS,
        title: "List remote hosts",
        description: HOSTS_DESCRIPTION,
        input: input_schema::<NoArgs>,
        output: output_schema::<Envelope<HostsData>>,
        open_world: false,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(std::future::ready(s.hosts(c.args))),
    },
    Entry {
        name: WATCH_CONNECTIONS,
        title: "Watch connections open and close",
        description: WATCH_DESCRIPTION,
        input: input_schema::<WatchArgs>,
        output: output_schema::<Envelope<WatchData>>,
        open_world: true,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(s.watch_connections(c.args, c.progress)),
    },
    Entry {
        name: RECENT_CONNECTION_EVENTS,
        title: "Recent connection events",
        description: RECENT_DESCRIPTION,
        input: input_schema::<RecentArgs>,
        output: output_schema::<Envelope<RecentData>>,
        open_world: false,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(std::future::ready(s.recent_events(c.args))),
    },
    Entry {
        name: CONNECTION_HEALTH,
        title: "Connection health",
        description: HEALTH_DESCRIPTION,
        input: input_schema::<HealthArgs>,
        output: output_schema::<Envelope<HealthData>>,
        open_world: true,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(s.health(c.args)),
    },
    Entry {
        name: TRAFFIC,
        title: "Network traffic by program",
        description: TRAFFIC_DESCRIPTION,
        input: input_schema::<TrafficArgs>,
        output: output_schema::<Envelope<TrafficData>>,
        open_world: true,
        effect: Effect::ReadOnly,
        handler: |s, c| Box::pin(s.traffic(c.args, c.progress)),
    },
    Entry {
        name: FREE_PORT,
        title: "Free a port",
        description: FREE_PORT_DESCRIPTION,
        input: input_schema::<FreePortArgs>,
        output: output_schema::<Envelope<FreePortData>>,
        open_world: true,
        effect: Effect::Destructive,
        handler: |s, c| Box::pin(s.free_port(c.args, c.context)),
    },
];

fn annotations(title: &str, open_world: bool, effect: Effect) -> ToolAnnotations {
    let read_only = effect == Effect::ReadOnly;
    ToolAnnotations::with_title(title)
        .read_only(read_only)
        .destructive(!read_only)
        .idempotent(read_only)
        .open_world(open_world)
}

/// The registry entries this server offers: the destructive ones only when the operator
/// enabled actions.
fn offered(actions: &Actions) -> impl Iterator<Item = &'static Entry> + '_ {
    REGISTRY
        .iter()
        .filter(|e| e.effect == Effect::ReadOnly || actions.allow_kill)
}

/// The tools as `tools/list` shows them, built once per server.
fn tools(actions: &Actions) -> Vec<Tool> {
    offered(actions)
        .map(|e| {
            Tool::new_with_raw(
                e.name,
                Some(Cow::Borrowed(e.description)),
                Arc::new((e.input)()),
            )
            .with_title(e.title)
            .with_raw_output_schema(Arc::new((e.output)()))
            .with_annotations(annotations(e.title, e.open_world, e.effect))
        })
        .collect()
}

pub use crate::limits::Actions;

/// The MCP server: tools over a [`Service`].
#[derive(Clone)]
pub struct NetstatServer {
    service: Service,
    netstat: NetstatTool,
    watch: WatchService,
    actions: Actions,
    /// `tools/list`, in registry order: the input schemas arguments are decoded against.
    tools: Arc<[Tool]>,
}

impl NetstatServer {
    pub fn new(service: Service) -> NetstatServer {
        NetstatServer {
            watch: WatchService::new(service.clone(), Backend::Auto),
            service,
            netstat: NetstatTool::default(),
            actions: Actions::default(),
            tools: tools(&Actions::default()).into(),
        }
    }

    /// Allows (or not) what [`Actions`] says; `free_port` is listed only with `allow_kill`.
    pub fn with_actions(mut self, actions: Actions) -> NetstatServer {
        self.actions = actions;
        self.tools = tools(&actions).into();
        self
    }

    /// A tool's arguments decoded against its input schema (the one `tools/list` shows).
    fn decode<T: DeserializeOwned>(&self, tool: &str, args: &JsonObject) -> Result<T, Error> {
        let empty = JsonObject::new();
        let schema = self
            .tools
            .iter()
            .find(|t| t.name == tool)
            .map_or(&empty, |t| &*t.input_schema);
        schema::decode(schema, args).map_err(Error::Input)
    }

    async fn connections(&self, args: &JsonObject, progress: Progress<'_>) -> CallToolResult {
        let query = self
            .decode::<ConnectionsArgs>(QUERY_NETWORK_CONNECTIONS, args)
            .and_then(|a| a.validate(Some(DEFAULT_ROWS)).map_err(Error::Input));
        envelope_result(match query {
            Ok(query) => self.service.connections_any(&query, progress).await,
            Err(e) => Err(e),
        })
    }

    async fn port(&self, args: &JsonObject, progress: Progress<'_>) -> CallToolResult {
        let query = self
            .decode::<PortArgs>(CHECK_PORT_OCCUPATION, args)
            .and_then(|a| a.validate(Some(DEFAULT_OCCUPATIONS)).map_err(Error::Input));
        envelope_result(match query {
            Ok(query) => self.service.port_any(&query, progress).await,
            Err(e) => Err(e),
        })
    }

    async fn netstat(&self, args: &JsonObject) -> CallToolResult {
        let args = self
            .decode::<NetstatInput>(NETSTAT, args)
            .and_then(|a| a.validate().map_err(Error::Input));
        envelope_result(match args {
            Ok(args) => self.netstat.run(&self.service, &args).await,
            Err(e) => Err(e),
        })
    }

    /// Uses this watch service (its local backend, and the recorder when recording).
    pub fn with_watch(mut self, watch: WatchService) -> NetstatServer {
        self.watch = watch;
        self
    }

    async fn watch_connections(&self, args: &JsonObject, progress: Progress<'_>) -> CallToolResult {
        let query = match self
            .decode::<WatchArgs>(WATCH_CONNECTIONS, args)
            .and_then(|a| a.validate_window().map_err(Error::Input))
        {
            Ok(q) => q,
            Err(e) => return envelope_result::<WatchData>(Err(e)),
        };
        // Through the call's one ordered forwarder, like every other tool's progress: each
        // second's notification in order, and all of them before the result.
        let mut progress = move |elapsed: u64, total: u64, tally: &crate::watch::Tally| {
            progress(ProgressEvent::step(
                elapsed as usize,
                total as usize,
                format!(
                    "{elapsed} of {total} s: {} opened, {} closed",
                    tally.opened, tally.closed
                ),
            ));
        };
        envelope_result(self.watch.window(&query, &mut progress).await)
    }

    fn recent_events(&self, args: &JsonObject) -> CallToolResult {
        let result = self
            .decode::<RecentArgs>(RECENT_CONNECTION_EVENTS, args)
            .and_then(|a| a.validate().map_err(Error::Input))
            .and_then(|q| self.watch.recent(&q));
        envelope_result::<RecentData>(result)
    }

    async fn health(&self, args: &JsonObject) -> CallToolResult {
        let query = self
            .decode::<HealthArgs>(CONNECTION_HEALTH, args)
            .and_then(|a| a.validate(Some(DEFAULT_HEALTH_ROWS)).map_err(Error::Input));
        envelope_result(match query {
            Ok(query) => self.service.health(&query).await,
            Err(e) => Err(e),
        })
    }

    async fn traffic(&self, args: &JsonObject, progress: Progress<'_>) -> CallToolResult {
        let query = self
            .decode::<TrafficArgs>(TRAFFIC, args)
            .and_then(|a| a.validate().map_err(Error::Input));
        envelope_result(match query {
            Ok(query) => self.watch.traffic(&query, progress).await,
            Err(e) => Err(e),
        })
    }

    async fn free_port(
        &self,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let query = match self
            .decode::<FreePortArgs>(FREE_PORT, args)
            .and_then(|a| a.validate().map_err(Error::Input))
        {
            Ok(q) => q,
            Err(e) => return envelope_result::<FreePortData>(Err(e)),
        };
        let requester = Requester {
            who: who_asked(context),
            require_confirmation: self.actions.require_elicitation,
        };
        let confirm = Elicit {
            peer: context.peer.clone(),
        };
        envelope_result(self.service.free_port(&query, &confirm, &requester).await)
    }

    fn hosts(&self, args: &JsonObject) -> CallToolResult {
        envelope_result(
            self.decode::<NoArgs>(LIST_HOSTS, args)
                .map(|_| self.service.hosts()),
        )
    }
}

/// How the action log names a caller: the HTTP peer's address, else the stdio client.
fn who_asked(context: &RequestContext<RoleServer>) -> String {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        })
        .map_or_else(
            || "the stdio client".to_string(),
            |peer| format!("HTTP peer {}", peer.0),
        )
}

/// What the user is asked to fill in: one yes/no.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Approval {
    /// Yes: do it. No (or decline): nothing is done.
    confirm: bool,
}
rmcp::elicit_safe!(Approval);

/// How long the user has to answer, well within a client's request timeout.
const ELICITATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks the user through MCP elicitation (the client shows the question and a yes/no form).
struct Elicit {
    peer: rmcp::Peer<RoleServer>,
}

impl Confirm for Elicit {
    fn ask<'a>(&'a self, question: &'a str) -> futures::future::BoxFuture<'a, Confirmation> {
        use rmcp::service::ElicitationError as E;
        Box::pin(async move {
            match self
                .peer
                .elicit_with_timeout::<Approval>(question, Some(ELICITATION_TIMEOUT))
                .await
            {
                Ok(Some(Approval { confirm: true })) => Confirmation::Confirmed("elicitation"),
                Ok(_) => Confirmation::Declined("the user answered no".into()),
                Err(E::UserDeclined) => Confirmation::Declined("the user declined".into()),
                Err(E::UserCancelled) => Confirmation::Declined("the user cancelled".into()),
                Err(E::CapabilityNotSupported) => Confirmation::Unavailable(
                    "this client does not support MCP elicitation, so the user cannot be asked. \
                     Use a client that does, or the operator can set [actions] \
                     require_elicitation = false to rely on the client's own approval of each \
                     call"
                        .into(),
                ),
                Err(E::Service(rmcp::service::ServiceError::Timeout { .. })) => {
                    Confirmation::Declined(format!(
                        "no answer within {} s",
                        ELICITATION_TIMEOUT.as_secs()
                    ))
                }
                Err(E::Service(rmcp::service::ServiceError::McpError(e)))
                    if e.message.contains("not allowed on protocol") =>
                {
                    Confirmation::Unavailable(
                        "this protocol version does not let the server ask the user".into(),
                    )
                }
                Err(e) => Confirmation::Declined(format!("the confirmation failed ({e})")),
            }
        })
    }
}

/// A tool result from an envelope: `structuredContent` plus the same JSON as text (one
/// serialization of the typed envelope; keys in struct order, so `success` and `message` come
/// first), `isError` when the envelope says `success: false`.
fn envelope_result<T: Serialize + crate::query::output::Rows>(
    result: Result<Envelope<T>, Error>,
) -> CallToolResult {
    let mut envelope = match result {
        Ok(envelope) => envelope,
        Err(e) => {
            if e.is_input() {
                tracing::debug!(cause = %e, "tool input refused");
            } else {
                tracing::warn!(cause = %e, "tool failed");
            }
            Envelope::error(&e)
        }
    };
    crate::query::answer::fit_ceiling(&mut envelope);
    match serde_json::to_value(&envelope) {
        Ok(value) if envelope.success => CallToolResult::structured(value),
        Ok(value) => CallToolResult::structured_error(value),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
            "internal error: the result could not be encoded as JSON: {e}"
        ))]),
    }
}

impl ServerHandler for NetstatServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        )
        .with_server_info(
            Implementation::new("netstat-mcp", env!("CARGO_PKG_VERSION"))
                .with_title("netstat MCP")
                .with_description(env!("CARGO_PKG_DESCRIPTION")),
        )
        .with_instructions(if self.actions.allow_kill {
            format!("{INSTRUCTIONS}{ACTIONS_INSTRUCTIONS}")
        } else {
            INSTRUCTIONS.to_string()
        })
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(prompts::list()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        if request.name != prompts::DIAGNOSE_PORT {
            return Err(McpError::invalid_params(
                format!(
                    "unknown prompt '{}': the prompts are: {}",
                    crate::error::shorten(&request.name),
                    prompts::DIAGNOSE_PORT
                ),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        // Arguments are strings in MCP; a number is taken as its text.
        let arg = |name: &str| {
            args.get(name).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let (port, proto, host) = (arg("port"), arg("proto"), arg("host"));
        prompts::diagnose_port(port.as_deref(), proto.as_deref(), host.as_deref())
            .map(GetPromptResponse::from)
            .map_err(|e| McpError::invalid_params(e.0, None))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.as_ref();
        let args = request.arguments.unwrap_or_default();
        let started = Instant::now();
        // A multi-host call reports each finished host when the client asked for progress.
        // Notifications go out in order from one task; the queue holds at most one event per
        // host of the call.
        let (progress_tx, mut progress_rx) =
            tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
        let forwarder = context.meta.get_progress_token().map(|token| {
            let peer = context.peer.clone();
            tokio::spawn(async move {
                while let Some(event) = progress_rx.recv().await {
                    let param = ProgressNotificationParam::new(token.clone(), event.done as f64)
                        .with_total(event.total as f64)
                        .with_message(event.message());
                    if peer.notify_progress(param).await.is_err() {
                        break;
                    }
                }
            })
        });
        let report = move |event: ProgressEvent| {
            let _ = progress_tx.send(event);
        };
        let progress: Progress<'_> = if forwarder.is_some() {
            &report
        } else {
            &no_progress
        };
        let Some(entry) = offered(&self.actions).find(|e| e.name == name) else {
            tracing::debug!(tool = %name.escape_default(), "unknown tool");
            return Err(McpError::new(
                ErrorCode::INVALID_PARAMS,
                format!(
                    "Unknown tool '{}'. Available tools: {}",
                    crate::query::shorten(name),
                    offered(&self.actions)
                        .map(|e| e.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            ));
        };
        let call = Call {
            args: &args,
            progress,
            context: &context,
        };
        let work = (entry.handler)(self, call);
        let result = tokio::select! {
            biased;
            _ = context.ct.cancelled() => {
                tracing::info!(tool = name, id = %context.id, "tool call cancelled; work stopped");
                return Err(McpError::new(
                    ErrorCode::INTERNAL_ERROR,
                    "the request was cancelled",
                    None,
                ));
            }
            result = work => result,
        };
        // Every host's notification goes out before the result.
        drop(report);
        if let Some(forwarder) = forwarder {
            let _ = forwarder.await;
        }
        tracing::info!(
            tool = name,
            ok = result.is_error != Some(true),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tool call"
        );
        Ok(result.into())
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The MCP handshake failed.
    #[error("MCP initialization failed: {detail}. Check that the client speaks MCP over stdio")]
    Initialize { detail: String },
    /// The service task ended abnormally.
    #[error("the MCP service stopped unexpectedly: {detail}")]
    Service { detail: String },
}

/// Serves MCP on any transport until the peer closes it; in-flight requests are answered
/// before this returns (rmcp drains them for up to 5 s).
pub async fn serve<T, E, A>(server: NetstatServer, transport: T) -> Result<(), ServeError>
where
    T: IntoTransport<RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let running = match server.serve(transport).await {
        Ok(running) => running,
        Err(ServerInitializeError::ConnectionClosed(why)) => {
            tracing::info!(%why, "client closed the connection before initializing");
            return Ok(());
        }
        // The client went away before reading our answer (stdout closed): nobody is left to
        // tell, so this is a quiet end, as for a closed connection.
        Err(ServerInitializeError::TransportError { error, .. })
            if is_broken_pipe(error.error.as_ref()) =>
        {
            tracing::info!("client closed its end before the initialize response; exiting");
            return Ok(());
        }
        Err(e) => {
            return Err(ServeError::Initialize {
                detail: e.to_string(),
            });
        }
    };
    tracing::info!("MCP server ready");
    match running.waiting().await {
        Ok(QuitReason::Closed) | Ok(QuitReason::Cancelled) => {
            tracing::info!("client closed the connection; exiting");
            Ok(())
        }
        Ok(other) => Err(ServeError::Service {
            detail: format!("{other:?}"),
        }),
        Err(e) => Err(ServeError::Service {
            detail: e.to_string(),
        }),
    }
}

/// Whether `error` (or anything it was caused by) is a write to a closed pipe.
fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Serves MCP on stdin/stdout (what MCP clients launch), with at most
/// [`DEFAULT_MAX_IN_FLIGHT`](crate::inflight::DEFAULT_MAX_IN_FLIGHT) calls unanswered: beyond
/// that, stdin is not read until an answer is written. Logs must go to stderr.
pub async fn serve_stdio(server: NetstatServer) -> Result<(), ServeError> {
    let (stdin, stdout) = rmcp::transport::io::stdio_pipes();
    let stdio = crate::stdio::Stdio::new(stdin, stdout);
    let bounded =
        crate::inflight::InFlightBound::new(stdio, crate::inflight::DEFAULT_MAX_IN_FLIGHT);
    serve(server, bounded).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every tool, the destructive ones included.
    fn all_tools() -> Vec<Tool> {
        tools(&Actions {
            allow_kill: true,
            require_elicitation: true,
        })
    }

    fn tool(name: &str) -> Tool {
        all_tools().into_iter().find(|t| t.name == name).unwrap()
    }

    #[test]
    fn free_port_is_offered_only_when_allowed() {
        let names = |t: Vec<Tool>| {
            t.into_iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
        };
        assert!(!names(tools(&Actions::default())).contains(&FREE_PORT.to_string()));
        assert!(names(all_tools()).contains(&FREE_PORT.to_string()));
        assert_eq!(all_tools().len(), REGISTRY.len());
    }

    #[test]
    fn input_schemas_describe_every_field() {
        for t in all_tools() {
            let props = t
                .input_schema
                .get("properties")
                .unwrap()
                .as_object()
                .unwrap();
            assert!(!props.is_empty() || t.name == LIST_HOSTS, "{}", t.name);
            for (field, schema) in props {
                assert!(
                    schema.get("description").and_then(Value::as_str).is_some(),
                    "{}.{field} has no description: {schema}",
                    t.name
                );
                // Portable: one JSON type, no format keyword (older clients cannot use
                // ["integer", "null"] or formats such as uint16).
                assert!(schema["type"].is_string(), "{}.{field}: {schema}", t.name);
                assert!(
                    !schema.to_string().contains("\"format\""),
                    "{}.{field}",
                    t.name
                );
            }
            assert_eq!(t.input_schema.get("type"), Some(&Value::from("object")));
            assert_eq!(
                t.input_schema.get("additionalProperties"),
                Some(&Value::Bool(false))
            );
        }
    }

    #[test]
    fn proto_is_an_enum_and_ports_have_ranges() {
        let q = tool(QUERY_NETWORK_CONNECTIONS);
        let props = q.input_schema["properties"].as_object().unwrap();
        let proto = props["proto"].to_string();
        for v in ["\"tcp\"", "\"udp\"", "\"all\""] {
            assert!(proto.contains(v), "{proto}");
        }
        for p in ["port", "local_port", "remote_port"] {
            assert_eq!(props[p]["minimum"], 1, "{p}");
            assert_eq!(props[p]["maximum"], 65535, "{p}");
        }
        let c = tool(CHECK_PORT_OCCUPATION);
        assert_eq!(c.input_schema["required"], serde_json::json!(["port"]));
        assert!(
            !c.input_schema["properties"]["proto"]
                .to_string()
                .contains("all")
        );
    }

    #[test]
    fn output_schemas_allow_the_error_envelope() {
        for t in all_tools() {
            let out = t.output_schema.clone().unwrap();
            assert_eq!(out.get("type"), Some(&Value::from("object")));
            let data = out["properties"]["data"].to_string();
            assert!(data.contains("null"), "{}: {data}", t.name);
        }
    }

    /// Every `type` in every schema is one string (MCP Inspector's `type-union` rule: several
    /// clients read `type` as a single string).
    #[test]
    fn every_schema_type_is_a_single_string() {
        fn walk(v: &Value, at: &str, tool: &str) {
            match v {
                Value::Object(o) => {
                    if let Some(t) = o.get("type") {
                        assert!(t.is_string(), "{tool}: {at}.type is {t}");
                    }
                    for (k, v) in o {
                        walk(v, &format!("{at}.{k}"), tool);
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| walk(i, at, tool)),
                _ => {}
            }
        }
        for t in all_tools() {
            let out = Value::Object(t.output_schema.clone().unwrap().as_ref().clone());
            walk(&out, "outputSchema", &t.name);
            walk(
                &Value::Object(t.input_schema.as_ref().clone()),
                "inputSchema",
                &t.name,
            );
        }
    }

    #[test]
    fn annotations_follow_the_spec() {
        for t in all_tools() {
            let a = t.annotations.clone().unwrap();
            let destructive = t.name == FREE_PORT;
            assert_eq!(a.read_only_hint, Some(!destructive), "{}", t.name);
            assert_eq!(a.destructive_hint, Some(destructive), "{}", t.name);
            assert_eq!(a.idempotent_hint, Some(!destructive), "{}", t.name);
            // Open world: the tools that can reach remote hosts.
            let remote = t.name == QUERY_NETWORK_CONNECTIONS
                || t.name == CHECK_PORT_OCCUPATION
                || t.name == WATCH_CONNECTIONS
                || t.name == CONNECTION_HEALTH
                || t.name == TRAFFIC
                || t.name == FREE_PORT;
            assert_eq!(a.open_world_hint, Some(remote), "{}", t.name);
            assert!(t.title.is_some());
        }
    }
}
