//! The MCP server: three read-only tools over [`Service`] and [`NetstatTool`]. The only module
//! that knows rmcp.
//!
//! [`NetstatServer`] implements rmcp's `ServerHandler` by hand rather than through typed
//! `Parameters<T>`: a wrong JSON type (`"80"`, `80.5`) must come back as a tool result with
//! `isError: true` and the SPEC envelope, which typed parameters would turn into a JSON-RPC
//! error. So `call_tool` takes the raw arguments map and hands it to the query layer's
//! validation (`ConnectionsArgs::from_json`, `PortArgs::from_json`, [`NetstatArgs::from_json`]);
//! the schemas in `tools/list` come from schemars-derived input structs that exist only to
//! describe the inputs to a model. Nothing here validates or filters on its own.
//!
//! Every call runs under the request's cancellation token: `notifications/cancelled` drops the
//! work (and kills a running `netstat`). An unknown tool is a JSON-RPC `invalid params` error;
//! everything else a caller can get wrong is a tool error.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{QuitReason, RequestContext, RoleServer, ServerInitializeError};
use rmcp::transport::IntoTransport;
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::netstat_tool::{NetstatArgs, NetstatData, NetstatTool};
use crate::query::{
    ConnectionsArgs, ConnectionsData, DEFAULT_MCP_LIMIT, Envelope, PortArgs, PortData, Service,
};

/// The tool names, as `tools/list` shows them.
pub const QUERY_NETWORK_CONNECTIONS: &str = "query_network_connections";
pub const CHECK_PORT_OCCUPATION: &str = "check_port_occupation";
pub const NETSTAT: &str = "netstat";

/// What the server is for, sent in `initialize`.
pub const INSTRUCTIONS: &str = "netstat-mcp answers two questions about TCP/UDP sockets (IPv4 and \
IPv6): which connections exist on this machine (or on a configured remote host over SSH), and who \
holds port N. Use check_port_occupation for \"is port N in use, and by which process?\", \
query_network_connections for listings with filters (state, ports, pid, program), and netstat \
only when netstat's own text output is wanted. All tools are read-only. pid/program need root or \
the socket owner's rights; without them they are null and the message says how to fix it.";

const CONNECTIONS_DESCRIPTION: &str = "List TCP and UDP sockets (IPv4 and IPv6) on this machine, \
or on a configured remote host over SSH, like `netstat -tunap` / `ss -tunap`. Each row has \
protocol (tcp, tcp6, udp, udp6), receive/send queue, local and foreign address and port, TCP state \
(netstat spelling: LISTEN, ESTABLISHED, TIME_WAIT, ...; null for unconnected UDP) and the owning \
pid and program. Filters: proto, state (TCP only), local_port, remote_port, pid, program \
(substring). At most `limit` rows are returned (default 500, 0 = all); connection_count is always \
the full count and truncated says when rows were cut. Use check_port_occupation instead to ask \
whether one port is in use and by whom; use netstat only for netstat's text format. pid/program \
are null for sockets of processes the server's user may not inspect (run the server as root, or \
grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, or use an SSH user with those rights) and for \
sockets no process holds (TIME_WAIT); the message says when permissions hid owners. Note: `port` \
is the SSH port of a remote host, not a socket port; filter sockets with local_port/remote_port.";

const PORT_DESCRIPTION: &str = "Tell whether a TCP or UDP port is in use on this machine (or on a \
configured remote host over SSH) and which processes hold it. A port is occupied when any socket \
of that protocol has it as its local port, in any state (LISTEN, ESTABLISHED, ... for TCP; any \
bound socket for UDP); foreign ports never count. Returns is_occupied, one entry per socket and \
owning process (protocol, local address, state, pid, program), and a message such as \"Port \
80/TCP on local host is occupied by: nginx (pid 812)\". Use this before binding a port or to find \
what blocks one; use query_network_connections for broader listings. pid/program are null when \
the owner is a process the server's user may not inspect (needs root or CAP_SYS_PTRACE and \
CAP_DAC_READ_SEARCH) or no process (TIME_WAIT); the message says which.";

const NETSTAT_DESCRIPTION: &str = "Run the local `netstat` with shell-style arguments and return \
its text output, for callers that expect netstat's own format (e.g. `-tulpn`, `-an`). Only the \
flags -a -n -t -u -l -p --help are allowed, alone or combined (-tulpn); anything else is refused \
with an error naming the argument. No shell is involved; netstat is stopped after 3 s. Where no \
netstat binary exists, the same columns are rendered from the native socket collector \
(data.source = \"native\"). Local machine only. Prefer query_network_connections or \
check_port_occupation for structured answers. The PID/Program column (-p) needs root to show \
other users' processes.";

/// Inputs of `query_network_connections`, for the schema only (parsing is the query layer's).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct ConnectionsInput {
    /// Protocol family: tcp, udp or all (default all). IPv4 and IPv6 are both included.
    #[schemars(extend("default" = "all"))]
    proto: Option<ProtoAll>,
    /// TCP state filter, case-insensitive: ESTABLISHED, LISTEN, TIME_WAIT, SYN_SENT, SYN_RECV,
    /// FIN_WAIT1, FIN_WAIT2, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING; ss spellings (ESTAB, SYN-SENT,
    /// FIN-WAIT-1, UNCONN, ...) and LISTENING are accepted too. Not valid with proto udp; with
    /// proto all it lists TCP sockets in that state only.
    #[schemars(extend("examples" = ["LISTEN", "ESTABLISHED"]))]
    state: Option<String>,
    /// A configured remote host, by its name or address. Omitted, localhost, 127.0.0.1 or ::1
    /// mean this machine.
    host: Option<String>,
    /// SSH port of the remote host (overrides the configured one). NOT a socket port: use
    /// local_port or remote_port to filter sockets.
    #[schemars(range(min = 1, max = 65535))]
    port: Option<u16>,
    /// Only sockets whose local port is this one.
    #[schemars(range(min = 1, max = 65535))]
    local_port: Option<u16>,
    /// Only sockets whose remote (foreign) port is this one.
    #[schemars(range(min = 1, max = 65535))]
    remote_port: Option<u16>,
    /// Only sockets held by this process id.
    #[schemars(range(min = 1))]
    pid: Option<u32>,
    /// Only sockets held by a program whose name contains this text (case-insensitive).
    program: Option<String>,
    /// Return at most this many rows (default 500; 0 means no limit). connection_count still
    /// counts all matches.
    #[schemars(extend("default" = 500))]
    limit: Option<u32>,
}

/// Inputs of `check_port_occupation`, for the schema only.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct PortInput {
    /// The port to check (local port of a socket).
    #[schemars(range(min = 1, max = 65535))]
    port: u16,
    /// Protocol: tcp (default) or udp.
    #[schemars(extend("default" = "tcp"))]
    proto: Option<ProtoOne>,
    /// A configured remote host, by its name or address. Omitted, localhost, 127.0.0.1 or ::1
    /// mean this machine.
    host: Option<String>,
    /// SSH port of the remote host (overrides the configured one).
    #[schemars(range(min = 1, max = 65535))]
    ssh_port: Option<u16>,
}

/// Inputs of `netstat`, for the schema only.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct NetstatInput {
    /// netstat arguments, e.g. ["-tulpn"] or ["-a", "-n"]. Allowed: -a -n -t -u -l -p --help,
    /// and short flags combined from those letters. Default: none (netstat's plain listing).
    #[schemars(extend("items" = {"type": "string", "pattern": "^(--help|-[antulp]+)$"}, "maxItems" = 16))]
    args: Option<Vec<String>>,
}

/// tcp, udp or all.
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase", inline)]
#[allow(dead_code)]
enum ProtoAll {
    Tcp,
    Udp,
    All,
}

/// tcp or udp.
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase", inline)]
#[allow(dead_code)]
enum ProtoOne {
    Tcp,
    Udp,
}

/// An object JSON Schema (draft 2020-12) for `T`, without the wrapper's title and description.
fn object_schema<T: JsonSchema>(for_output: bool) -> Arc<JsonObject> {
    let mut settings = SchemaSettings::draft2020_12();
    if for_output {
        settings = settings.for_serialize();
    }
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut object = match serde_json::to_value(schema) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    object.remove("title");
    object.remove("description");
    object.insert("type".into(), Value::String("object".into()));
    Arc::new(object)
}

fn annotations(title: &str, open_world: bool) -> ToolAnnotations {
    ToolAnnotations::with_title(title)
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(open_world)
}

/// The three tools as `tools/list` shows them.
pub fn tools() -> Vec<Tool> {
    let tool = |name: &'static str,
                title: &str,
                description: &'static str,
                input: Arc<JsonObject>,
                output: Arc<JsonObject>,
                open_world: bool| {
        Tool::new_with_raw(name, Some(Cow::Borrowed(description)), input)
            .with_title(title)
            .with_raw_output_schema(output)
            .with_annotations(annotations(title, open_world))
    };
    vec![
        tool(
            QUERY_NETWORK_CONNECTIONS,
            "Query network connections",
            CONNECTIONS_DESCRIPTION,
            object_schema::<ConnectionsInput>(false),
            object_schema::<Envelope<ConnectionsData>>(true),
            true,
        ),
        tool(
            CHECK_PORT_OCCUPATION,
            "Check port occupation",
            PORT_DESCRIPTION,
            object_schema::<PortInput>(false),
            object_schema::<Envelope<PortData>>(true),
            true,
        ),
        tool(
            NETSTAT,
            "Run netstat",
            NETSTAT_DESCRIPTION,
            object_schema::<NetstatInput>(false),
            object_schema::<Envelope<NetstatData>>(true),
            false,
        ),
    ]
}

/// The MCP server: tools over a [`Service`].
#[derive(Clone)]
pub struct NetstatServer {
    service: Service,
    netstat: NetstatTool,
    tools: Arc<[Tool]>,
}

impl NetstatServer {
    pub fn new(service: Service) -> NetstatServer {
        NetstatServer {
            service,
            netstat: NetstatTool::default(),
            tools: tools().into(),
        }
    }

    /// Uses another `netstat` runner (a different binary or timeout).
    pub fn with_netstat(mut self, netstat: NetstatTool) -> NetstatServer {
        self.netstat = netstat;
        self
    }

    async fn connections(&self, args: &JsonObject) -> CallToolResult {
        let result = match ConnectionsArgs::from_json(args)
            .and_then(|a| a.validate(Some(DEFAULT_MCP_LIMIT)))
        {
            Ok(query) => self.service.connections(&query).await,
            Err(e) => Err(Error::Input(e)),
        };
        envelope_result(result)
    }

    async fn port(&self, args: &JsonObject) -> CallToolResult {
        let result = match PortArgs::from_json(args).and_then(|a| a.validate()) {
            Ok(query) => self.service.port(&query).await,
            Err(e) => Err(Error::Input(e)),
        };
        envelope_result(result)
    }

    async fn netstat(&self, args: &JsonObject) -> CallToolResult {
        let result = match NetstatArgs::from_json(args) {
            Ok(args) => self.netstat.run(&self.service, &args).await,
            Err(e) => Err(Error::Input(e)),
        };
        envelope_result(result)
    }
}

/// A tool result from an envelope: `structuredContent` plus the same JSON as text, `isError`
/// when the envelope says `success: false`.
fn envelope_result<T: Serialize>(result: Result<Envelope<T>, Error>) -> CallToolResult {
    let envelope = match result {
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
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("netstat-mcp", env!("CARGO_PKG_VERSION"))
                    .with_title("netstat MCP")
                    .with_description(env!("CARGO_PKG_DESCRIPTION")),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
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
        let work: std::pin::Pin<Box<dyn Future<Output = CallToolResult> + Send + '_>> = match name {
            QUERY_NETWORK_CONNECTIONS => Box::pin(self.connections(&args)),
            CHECK_PORT_OCCUPATION => Box::pin(self.port(&args)),
            NETSTAT => Box::pin(self.netstat(&args)),
            other => {
                tracing::debug!(tool = %other.escape_default(), "unknown tool");
                return Err(McpError::new(
                    ErrorCode::INVALID_PARAMS,
                    format!(
                        "Unknown tool '{}'. Available tools: {QUERY_NETWORK_CONNECTIONS}, {CHECK_PORT_OCCUPATION}, {NETSTAT}",
                        other.escape_default()
                    ),
                    None,
                ));
            }
        };
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

/// Serves MCP on stdin/stdout (what MCP clients launch), with at most
/// [`DEFAULT_MAX_IN_FLIGHT`](crate::inflight::DEFAULT_MAX_IN_FLIGHT) calls unanswered: beyond
/// that, stdin is not read until an answer is written. Logs must go to stderr.
pub async fn serve_stdio(server: NetstatServer) -> Result<(), ServeError> {
    let stdio = IntoTransport::<RoleServer, std::io::Error, _>::into_transport(
        rmcp::transport::io::stdio_pipes(),
    );
    let bounded =
        crate::inflight::InFlightBound::new(stdio, crate::inflight::DEFAULT_MAX_IN_FLIGHT);
    serve(server, bounded).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> Tool {
        tools().into_iter().find(|t| t.name == name).unwrap()
    }

    #[test]
    fn input_schemas_describe_every_field() {
        for t in tools() {
            let props = t
                .input_schema
                .get("properties")
                .unwrap()
                .as_object()
                .unwrap();
            assert!(!props.is_empty(), "{}", t.name);
            for (field, schema) in props {
                assert!(
                    schema.get("description").and_then(Value::as_str).is_some(),
                    "{}.{field} has no description: {schema}",
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
        for t in tools() {
            let out = t.output_schema.clone().unwrap();
            assert_eq!(out.get("type"), Some(&Value::from("object")));
            let data = out["properties"]["data"].to_string();
            assert!(data.contains("null"), "{}: {data}", t.name);
        }
    }

    #[test]
    fn annotations_follow_the_spec() {
        for t in tools() {
            let a = t.annotations.clone().unwrap();
            assert_eq!(a.read_only_hint, Some(true));
            assert_eq!(a.destructive_hint, Some(false));
            assert_eq!(a.idempotent_hint, Some(true));
            assert_eq!(a.open_world_hint, Some(t.name != NETSTAT), "{}", t.name);
            assert!(t.title.is_some());
        }
    }
}
