//! The streamable HTTP transport as a remote agent meets it: rmcp's own HTTP client against
//! [`serve_http`] with the real MCP server on `127.0.0.1:0`, raw requests for the headers a
//! client library would not send (foreign `Host`, no token), and shutdown with calls in flight
//! — in process with a handler whose calls take as long as the test says, and as the built
//! binary stopped by SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use netstat_mcp::http::{BearerToken, HttpError, HttpOptions, serve_http};
use netstat_mcp::mcp::NetstatServer;
use netstat_mcp::query::Service;
use netstat_mcp::source::{Backend, LocalSource, NoRemotes};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

const TOKEN: &str = "test-token-0123456789abcdef";

/// The real MCP server over this machine's sockets.
fn netstat_server() -> NetstatServer {
    NetstatServer::new(Service::new(
        Arc::new(LocalSource::new(Backend::Auto)),
        Arc::new(NoRemotes),
    ))
}

/// A test handler with one tool, `sleep`: it takes `ms` milliseconds and counts the calls that
/// have started (so a test knows they are in flight). With `ended`, it reports when the
/// session that owns it is gone (rmcp drops the handler).
#[derive(Clone, Default)]
struct Placeholder {
    started: Arc<(AtomicUsize, Notify)>,
    _ended: Option<Arc<SessionEnd>>,
}

/// Sends on its channel when dropped: the session's handler is gone.
struct SessionEnd(tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for SessionEnd {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Placeholder {
    async fn wait_started(&self, n: usize) {
        let (count, notify) = &*self.started;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = notify.notified();
                if count.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("the calls started within 10 s");
    }
}

impl ServerHandler for Placeholder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let schema = Arc::new(
            json!({"type": "object", "properties": {"ms": {"type": "integer"}}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "sleep",
            "Waits `ms` milliseconds, then answers.",
            schema,
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        match request.name.as_ref() {
            "sleep" => {
                let ms = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("ms"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let (count, notify) = &*self.started;
                count.fetch_add(1, Ordering::SeqCst);
                notify.notify_waiters();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(CallToolResult::success(vec![ContentBlock::text(format!("slept {ms}"))]).into())
            }
            other => Err(McpError::new(
                ErrorCode::INVALID_PARAMS,
                format!("unknown tool {other}"),
                None,
            )),
        }
    }
}

/// A server running in this process until `stop` is sent.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), HttpError>>,
}

impl Server {
    async fn start<S, F>(factory: F, options: HttpOptions) -> Server
    where
        S: ServerHandler + Send + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_http(listener, factory, options, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Sends the shutdown signal and waits (bounded) for `serve_http` to return.
    async fn shutdown(mut self) -> Result<(), HttpError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve_http returned within 15 s of shutdown")
            .expect("serve_http did not panic")
    }
}

fn with_token() -> HttpOptions {
    HttpOptions {
        token: Some(BearerToken::new(TOKEN, "test").expect("token")),
        ..HttpOptions::default()
    }
}

async fn connect(
    url: &str,
    token: Option<&str>,
) -> Result<RunningService<RoleClient, ()>, rmcp::service::ClientInitializeError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(token) = token {
        config = config.auth_header(token.to_string());
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw-test","version":"0"}}}"#;

/// A raw `initialize` POST with the given extra headers.
async fn raw_initialize(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("send initialize")
}

/// `check_port_occupation` for `port` over `client`; returns `structuredContent`.
async fn check_port(client: &RunningService<RoleClient, ()>, port: u16) -> Value {
    let mut args = serde_json::Map::new();
    args.insert("port".into(), json!(port));
    let result = client
        .call_tool(CallToolRequestParams::new("check_port_occupation").with_arguments(args))
        .await
        .expect("tools/call");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    result.structured_content.expect("structuredContent")
}

fn assert_held_by_us(data: &Value, port: u16) {
    assert_eq!(data["success"], true, "{data}");
    assert_eq!(data["data"]["check_port"], port, "{data}");
    assert_eq!(data["data"]["is_occupied"], true, "{data}");
    let pids: Vec<u64> = data["data"]["occupations"]
        .as_array()
        .expect("occupations")
        .iter()
        .filter_map(|o| o["pid"].as_u64())
        .collect();
    assert!(pids.contains(&u64::from(std::process::id())), "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_and_calls_tools() {
    let server = Server::start(netstat_server, HttpOptions::default()).await;
    let client = connect(&server.url(), None).await.expect("initialize");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("netstat-mcp")
    );
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "check_port_occupation",
            "connection_health",
            "list_hosts",
            "netstat",
            "query_network_connections",
            "recent_connection_events",
            "traffic",
            "watch_connections"
        ]
    );

    // The same answers as over stdio: our own listener is found, with our pid.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    assert_held_by_us(&check_port(&client, port).await, port);

    // Bad input is a tool error, and the session keeps serving.
    let mut args = serde_json::Map::new();
    args.insert("port".into(), json!(0));
    let bad = client
        .call_tool(CallToolRequestParams::new("check_port_occupation").with_arguments(args))
        .await
        .expect("tools/call");
    assert_eq!(bad.is_error, Some(true));
    assert!(text_of(&bad).contains("'port'"), "{}", text_of(&bad));
    assert_held_by_us(&check_port(&client, port).await, port);

    client.cancel().await.expect("close client");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_serves_50_concurrent_clients() {
    let server = Server::start(netstat_server, HttpOptions::default()).await;
    let url = server.url();
    let clients = (0..50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            // Each client has its own session and asks about its own port.
            let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = held.local_addr().expect("addr").port();
            let client = connect(&url, None).await.expect("initialize");
            let tools = client.list_all_tools().await.expect("tools/list");
            assert_eq!(tools.len(), 8);
            assert_held_by_us(&check_port(&client, port).await, port);
            client.cancel().await.expect("close client");
        })
    });
    let all = tokio::time::timeout(Duration::from_secs(120), join_all(clients))
        .await
        .expect("50 clients done within 120 s");
    for (i, r) in all.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("client {i} failed: {e}"));
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bearer_token_none_wrong_right() {
    let server = Server::start(netstat_server, with_token()).await;
    let url = server.url();

    for (what, headers) in [
        ("no token", vec![]),
        (
            "wrong token",
            vec![("authorization", "Bearer test-token-0123456789abcdeX")],
        ),
        (
            "token as basic auth",
            vec![("authorization", "Basic dGVzdC10b2tlbg==")],
        ),
        ("token without scheme", vec![("authorization", TOKEN)]),
    ] {
        let response = raw_initialize(&url, &headers).await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{what}"
        );
        assert!(response.headers().get("mcp-session-id").is_none(), "{what}");
        let body = response.text().await.expect("body");
        assert_eq!(body, "Unauthorized\n", "{what}: nothing else in the body");
    }
    // Other paths do not tell an unauthenticated caller what exists.
    let response = reqwest::get(format!("http://{}/anything", server.addr))
        .await
        .expect("GET");
    assert_eq!(response.status(), 401);

    // rmcp's client: no token and a wrong token fail to connect, the right one works.
    assert!(connect(&url, None).await.is_err(), "no token must fail");
    assert!(
        connect(&url, Some("test-token-0123456789abcdeX"))
            .await
            .is_err(),
        "wrong token must fail"
    );
    let client = connect(&url, Some(TOKEN)).await.expect("right token");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    assert_held_by_us(&check_port(&client, port).await, port);
    client.cancel().await.expect("close client");

    // With the right token an unknown path is an honest 404.
    let response = reqwest::Client::new()
        .get(format!("http://{}/anything", server.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_foreign_host_and_origin() {
    let options = HttpOptions {
        allowed_hosts: vec!["mcp.example.test".into()],
        ..HttpOptions::default()
    };
    let server = Server::start(netstat_server, options).await;
    let url = server.url();
    let port = server.addr.port();
    let loopback_host = format!("127.0.0.1:{port}");
    let other_port = format!("localhost:{}", port.wrapping_add(1).max(1));
    let good_origin = format!("http://localhost:{port}");

    for (what, headers) in [
        ("foreign Host", vec![("host", "evil.example.com")]),
        (
            "foreign Host with our port",
            vec![("host", &*format!("evil.example.com:{port}"))],
        ),
        (
            "loopback name on another port",
            vec![("host", &*other_port)],
        ),
        (
            "foreign Origin",
            vec![
                ("host", &*loopback_host),
                ("origin", "http://evil.example.com"),
            ],
        ),
        ("Origin null", vec![("origin", "null")]),
    ] {
        let response = raw_initialize(&url, &headers).await;
        assert_eq!(response.status(), 403, "{what}");
        assert!(response.headers().get("mcp-session-id").is_none(), "{what}");
    }
    for (what, headers) in [
        ("no Origin", vec![]),
        ("localhost Origin", vec![("origin", &*good_origin)]),
        ("configured host", vec![("host", "mcp.example.test")]),
        (
            "configured host and origin",
            vec![
                ("host", "mcp.example.test:443"),
                ("origin", "https://mcp.example.test"),
            ],
        ),
    ] {
        let response = raw_initialize(&url, &headers).await;
        assert_eq!(response.status(), 200, "{what}");
        assert!(response.headers().get("mcp-session-id").is_some(), "{what}");
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_non_loopback_bind_without_token() {
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let result = serve_http(
        listener,
        Placeholder::default,
        HttpOptions::default(),
        std::future::ready(()),
    )
    .await;
    let message = match result {
        Err(e @ HttpError::TokenRequired { .. }) => e.to_string(),
        other => panic!("expected TokenRequired, got {other:?}"),
    };
    assert!(message.contains("--token-env"), "{message}");
    assert!(message.contains("0.0.0.0"), "{message}");

    // With a token the same bind starts, and stops at once on the (already resolved) signal.
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        serve_http(
            listener,
            Placeholder::default,
            with_token(),
            std::future::ready(()),
        ),
    )
    .await
    .expect("returns after shutdown");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_shutdown_finishes_calls_in_flight() {
    let handler = Placeholder::default();
    let factory = handler.clone();
    let server = Server::start(move || factory.clone(), HttpOptions::default()).await;
    let url = server.url();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(&url, None).await.expect("initialize"));
    }
    let mut calls = Vec::new();
    for client in clients {
        calls.push(tokio::spawn(async move {
            let mut args = serde_json::Map::new();
            args.insert("ms".into(), json!(700));
            let result = tokio::time::timeout(
                Duration::from_secs(10),
                client.call_tool(CallToolRequestParams::new("sleep").with_arguments(args)),
            )
            .await;
            let _ = client.cancel().await;
            result
        }));
    }
    handler.wait_started(8).await;
    let shutdown = tokio::spawn(server.shutdown());
    for (i, call) in join_all(calls).await.into_iter().enumerate() {
        let result = call
            .expect("call task")
            .unwrap_or_else(|_| panic!("call {i} got no answer within 10 s"))
            .unwrap_or_else(|e| panic!("call {i} was lost in shutdown: {e}"));
        assert_eq!(text_of(&result), "slept 700", "call {i}");
    }
    let stopped = shutdown.await.expect("shutdown task");
    assert!(stopped.is_ok(), "{stopped:?}");
    // And the port no longer accepts connections.
    assert!(
        reqwest::get(url).await.is_err(),
        "still accepting after shutdown"
    );
}

/// Sends one JSON-RPC message on a session; returns the status.
async fn post_on_session(url: &str, session: &str, body: Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string())
        .send()
        .await
        .expect("send")
        .status()
}

async fn raw_session(url: &str) -> String {
    let response = raw_initialize(url, &[]).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let _ = response.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post_on_session(url, &session, initialized).await, 202);
    session
}

/// Waits (bounded) until a session's handler is dropped.
async fn session_ended(ended: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(Duration::from_secs(60), ended.recv())
        .await
        .expect("a session ended within 60 s")
        .expect("the channel is open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_are_cleaned_up() {
    let options = HttpOptions {
        session_idle_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let factory = move || Placeholder {
        _ended: Some(Arc::new(SessionEnd(ended_tx.clone()))),
        ..Placeholder::default()
    };
    let server = Server::start(factory, options).await;
    let url = server.url();
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});

    // Closed by the client: DELETE, then the session is gone.
    let session = raw_session(&url).await;
    assert_eq!(post_on_session(&url, &session, ping.clone()).await, 200);
    let deleted = reqwest::Client::new()
        .delete(&url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("DELETE");
    // 200, not rmcp's 202: the Python SDK accepts 200, 204 or 405 and logs an error otherwise.
    assert_eq!(deleted.status(), 200);
    assert_eq!(post_on_session(&url, &session, ping.clone()).await, 404);
    session_ended(&mut ended).await;

    // Abandoned: closed after the idle timeout (300 ms). Any request would reset the timer, so
    // the test waits for the session's end (its handler dropped), then looks.
    let session = raw_session(&url).await;
    session_ended(&mut ended).await;
    assert_eq!(post_on_session(&url, &session, ping.clone()).await, 404);
    server.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// The binary: `netstat-mcp serve --http`

/// `netstat-mcp serve --http 127.0.0.1:0 --token-env …` as a child; stderr collected.
struct Binary {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    stderr: Arc<std::sync::Mutex<String>>,
    reader: JoinHandle<()>,
}

const TOKEN_ENV: &str = "NETSTAT_MCP_TEST_TOKEN";

impl Binary {
    async fn start() -> Binary {
        Binary::start_logging(None, "127.0.0.1:0").await
    }

    /// With `RUST_LOG` set to `filter`.
    async fn start_with_log(filter: &str) -> Binary {
        Binary::start_logging(Some(filter), "127.0.0.1:0").await
    }

    async fn start_logging(filter: Option<&str>, addr: &str) -> Binary {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_netstat-mcp"));
        match filter {
            Some(f) => command.env("RUST_LOG", f),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .args(["serve", "--http", addr, "--token-env", TOKEN_ENV])
            .env(TOKEN_ENV, TOKEN)
            .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn netstat-mcp");
        let pid = child.id().expect("pid");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let (addr_tx, addr_rx) = oneshot::channel::<String>();
        let lines = child.stderr.take().expect("stderr");
        let collected = stderr.clone();
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(lines).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("serving MCP over streamable HTTP addr=").nth(1)
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut all = collected.lock().expect("stderr lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(20), addr_rx)
            .await
            .expect("the server reported its address within 20 s")
            .expect("the server started (see its stderr)");
        Binary {
            child,
            pid,
            url: format!("http://{addr}/mcp"),
            stderr,
            reader,
        }
    }

    fn sigterm(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }

    /// Waits (bounded) for the exit; returns the exit code and all of stderr.
    async fn wait(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exited within 30 s of SIGTERM")
            .expect("wait");
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        let stderr = self.stderr.lock().expect("stderr lock").clone();
        (status.code(), stderr)
    }
}

fn authed(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

/// The JSON-RPC messages in an SSE (or plain JSON) response body.
fn messages(body: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

/// Bound to another loopback address, the server accepts requests naming that address as
/// their Host (the README says the bound address is allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bound_to_127_0_0_2_accepts_its_own_address_as_host() {
    let server = Binary::start_logging(None, "127.0.0.2:0").await;
    assert!(
        server.url.starts_with("http://127.0.0.2:"),
        "{}",
        server.url
    );
    let init = authed(reqwest::Client::new().post(&server.url))
        .body(INITIALIZE)
        .send()
        .await
        .expect("initialize");
    assert_eq!(init.status(), 200, "Host: the bound address");
    server.sigterm();
    let (code, _) = server.wait().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigterm_answers_calls_in_flight_then_exits_0() {
    let server = Binary::start().await;
    let http = reqwest::Client::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();

    let init = authed(http.post(&server.url))
        .body(INITIALIZE)
        .send()
        .await
        .expect("initialize");
    assert_eq!(init.status(), 200);
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let _ = init.text().await;
    let on_session = |r: reqwest::RequestBuilder| {
        authed(r)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let sent = on_session(http.post(&server.url))
        .body(initialized.to_string())
        .send()
        .await
        .expect("initialized");
    assert_eq!(sent.status(), 202);

    // Ten calls, each accepted (its response stream open) before the signal.
    let mut responses = Vec::new();
    for id in 10..20 {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "check_port_occupation", "arguments": {"port": port}}});
        let response = on_session(http.post(&server.url))
            .body(call.to_string())
            .send()
            .await
            .expect("tools/call");
        assert_eq!(response.status(), 200, "call {id}");
        responses.push((id, response));
    }
    server.sigterm();

    for (id, response) in responses {
        let body = tokio::time::timeout(Duration::from_secs(20), response.text())
            .await
            .unwrap_or_else(|_| panic!("call {id}: no end of response within 20 s"))
            .unwrap_or_else(|e| panic!("call {id} was cut off: {e}"));
        let answer = messages(&body)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("call {id} got no answer: {body}"));
        let data = &answer["result"]["structuredContent"];
        assert_held_by_us(data, port);
    }

    let (code, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "exit status; stderr:\n{stderr}");

    // The access log: one line per request with method, path, status; never the token.
    let access: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("netstat_mcp::http::access"))
        .collect();
    assert!(access.len() >= 12, "{stderr}");
    assert!(
        access.iter().any(|l| l.contains("method=POST")
            && l.contains("path=/mcp")
            && l.contains("status=202")),
        "{stderr}"
    );
    assert_eq!(
        access.iter().filter(|l| l.contains("status=200")).count(),
        11,
        "initialize and ten calls: {stderr}"
    );
    assert!(access.iter().all(|l| l.contains("latency_ms=")), "{stderr}");
    assert!(
        !stderr.contains(TOKEN),
        "the token leaked into the log:\n{stderr}"
    );
    assert!(
        !stderr.contains(&session),
        "the session id leaked into the log"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI colours in a log that is not a terminal"
    );
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[tokio::test]
async fn binary_refuses_non_loopback_without_token() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["serve", "--http", "0.0.0.0:0"])
        .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
        .output()
        .await
        .expect("run netstat-mcp");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve MCP on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--token-env"), "{stderr}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["serve", "--http", "0.0.0.0:0", "--token-env", TOKEN_ENV])
        .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
        .env_remove(TOKEN_ENV)
        .output()
        .await
        .expect("run netstat-mcp");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{TOKEN_ENV} is not set")),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bounded resources and header edge cases, with raw HTTP where a client library would not
// send such a request.

/// Sends `request` (raw HTTP/1.1, which should say `Connection: close`) and reads until the
/// server closes the connection; returns what it sent back.
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answered and closed within 30 s")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {answer:?}"))
}

/// A raw `initialize` POST with these header lines (each ending in CRLF) and request target.
fn raw_initialize_request(target: &str, header_lines: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\n{header_lines}content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{INITIALIZE}",
        INITIALIZE.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_ambiguous_host_and_origin() {
    let server = Server::start(Placeholder::default, HttpOptions::default()).await;
    let port = server.addr.port();
    let good_host = format!("host: localhost:{port}\r\n");
    // The same raw request, well formed, is served: the refusals below are about one header.
    let ok = raw_http(server.addr, &raw_initialize_request("/mcp", &good_host)).await;
    assert_eq!(status_of(&ok), 200, "{ok}");
    let same_host_absolute =
        raw_initialize_request(&format!("http://localhost:{port}/mcp"), &good_host);
    let ok = raw_http(server.addr, &same_host_absolute).await;
    assert_eq!(status_of(&ok), 200, "absolute form naming the Host: {ok}");

    for (what, request) in [
        (
            "two Host headers, the allowed one first",
            raw_initialize_request("/mcp", &format!("{good_host}host: evil.example:{port}\r\n")),
        ),
        (
            "Host with user information",
            raw_initialize_request("/mcp", &format!("host: evil.example@localhost:{port}\r\n")),
        ),
        (
            "absolute-form request target naming another host",
            raw_initialize_request("http://evil.example/mcp", &good_host),
        ),
        (
            "absolute-form request target with user information",
            raw_initialize_request(
                &format!("http://evil.example@localhost:{port}/mcp"),
                &good_host,
            ),
        ),
        (
            "two Origin headers, the allowed one first",
            raw_initialize_request(
                "/mcp",
                &format!(
                    "{good_host}origin: http://localhost:{port}\r\norigin: http://evil.example\r\n"
                ),
            ),
        ),
    ] {
        let answer = raw_http(server.addr, &request).await;
        let status = status_of(&answer);
        assert!((400..500).contains(&status), "{what}: {answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("mcp-session-id"),
            "{what}: a session was made: {answer}"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_beyond_the_cap_are_refused() {
    let options = HttpOptions {
        max_sessions: 3,
        ..HttpOptions::default()
    };
    let server = Server::start(Placeholder::default, options).await;
    let url = server.url();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(raw_session(&url).await);
    }
    let refused = raw_initialize(&url, &[]).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("mcp-session-id").is_none());
    assert!(refused.headers().get("retry-after").is_some());
    let text = refused.text().await.expect("body");
    assert!(text.contains("3 MCP sessions are open"), "{text}");
    // The open sessions keep working.
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    assert_eq!(post_on_session(&url, &sessions[0], ping.clone()).await, 200);
    // Ending one makes room for a new one.
    let deleted = reqwest::Client::new()
        .delete(&url)
        .header("mcp-session-id", &sessions[0])
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    let again = raw_session(&url).await;
    assert_eq!(post_on_session(&url, &again, ping).await, 200);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_calls_beyond_the_in_flight_cap_are_refused() {
    let handler = Placeholder::default();
    let factory = handler.clone();
    let options = HttpOptions {
        max_calls_in_flight: 2,
        ..HttpOptions::default()
    };
    let server = Server::start(move || factory.clone(), options).await;
    let url = server.url();
    let session = raw_session(&url).await;
    let call = |id: u64, ms: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "sleep", "arguments": {"ms": ms}}})
    };
    // Two calls in flight: each answer's stream stays open (and read) until the call ends.
    let slow: Vec<_> = (10..12)
        .map(|id| {
            let (url, session) = (url.clone(), session.clone());
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", &session)
                    .header("mcp-protocol-version", "2025-06-18")
                    .body(call(id, 3_000).to_string())
                    .send()
                    .await
                    .expect("send");
                let status = response.status();
                let body = response.text().await.expect("body");
                (status, body)
            })
        })
        .collect();
    handler.wait_started(2).await;
    assert_eq!(post_on_session(&url, &session, call(12, 0)).await, 503);
    for s in slow {
        let (status, body) = s.await.expect("call task");
        assert_eq!(status, 200);
        assert!(body.contains("slept 3000"), "{body}");
    }
    assert_eq!(post_on_session(&url, &session, call(13, 0)).await, 200);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let options = HttpOptions {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..HttpOptions::default()
    };
    let server = Server::start(Placeholder::default, options).await;
    let port = server.addr.port();
    // Reads until the server closes; the client itself never sends more than it did.
    let until_closed = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
            .await
            .expect("the server closed the connection within 30 s");
        // A reset is a close too.
        let _ = read;
        String::from_utf8_lossy(&answer).into_owned()
    };

    // A body promised but never sent in full: 408, connection closed.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        INITIALIZE.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream
        .write_all(&INITIALIZE.as_bytes()[..10])
        .await
        .expect("write a little body");
    let answer = until_closed(stream).await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("mcp-session-id"));

    // Headers never finished: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream
        .write_all(format!("POST /mcp HTTP/1.1\r\nhost: localhost:{port}\r\n").as_bytes())
        .await
        .expect("write part of the head");
    let answer = until_closed(stream).await;
    assert!(!answer.contains(" 200 "), "{answer}");

    // A connection that sends nothing at all is closed too.
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let answer = until_closed(stream).await;
    assert!(!answer.contains(" 200 "), "{answer}");

    // And the server still serves.
    let ok = raw_http(
        server.addr,
        &raw_initialize_request("/mcp", &format!("host: localhost:{port}\r\n")),
    )
    .await;
    assert_eq!(status_of(&ok), 200, "{ok}");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_never_logs_session_ids_even_at_trace() {
    let server = Binary::start_with_log("trace").await;
    let http = reqwest::Client::new();
    let init = authed(http.post(&server.url))
        .body(INITIALIZE)
        .send()
        .await
        .expect("initialize");
    assert_eq!(init.status(), 200);
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let _ = init.text().await;
    let on_session = |r: reqwest::RequestBuilder| {
        authed(r)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let sent = on_session(http.post(&server.url))
        .body(initialized.to_string())
        .send()
        .await
        .expect("initialized");
    assert_eq!(sent.status(), 202);
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "check_port_occupation", "arguments": {"port": 1}}});
    let answer = on_session(http.post(&server.url))
        .body(call.to_string())
        .send()
        .await
        .expect("tools/call");
    assert_eq!(answer.status(), 200);
    let _ = answer.text().await;
    let deleted = on_session(http.delete(&server.url))
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    // The id is no longer valid.
    let after = on_session(http.post(&server.url))
        .body(json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}).to_string())
        .send()
        .await
        .expect("ping");
    assert_eq!(after.status(), 404);
    server.sigterm();
    let (code, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.lines().count() > 20,
        "trace logging was on: {stderr}"
    );
    assert!(
        !stderr.contains(&session),
        "the session id is in the log:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains(&session))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!stderr.contains(TOKEN), "the token is in the log");
}

/// The `id:` of each event in an SSE body, in order.
fn event_ids(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|id| id.trim().to_string())
        .collect()
}

/// A GET with `Last-Event-ID` on a session: the replayed stream's body (bounded wait).
async fn resume(url: &str, session: &str, last: &str) -> String {
    let response = authed(reqwest::Client::new().get(url))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", last)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    // A completed request's replay ends by itself; a live one would stay open.
    tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the replay ended")
        .expect("body")
}

/// A client that resumes with `Last-Event-ID` gets the events after it, not that event again
/// (rmcp 3.9 replays from it, and the TypeScript SDK then reconnects with the same id forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_resume_replays_only_the_events_after_last_event_id() {
    use futures::StreamExt;
    let server = Binary::start().await;
    let client = reqwest::Client::new();
    let init = authed(client.post(&server.url))
        .body(INITIALIZE)
        .send()
        .await
        .expect("initialize");
    let session = init
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_string();
    let _ = init.text().await;
    let initialized = authed(client.post(&server.url))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .send()
        .await
        .expect("initialized");
    assert_eq!(initialized.status(), 202);
    // A 5 s watch with progress (an event a second, then the answer); the client's
    // connection drops after two events, as a network blip would.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "watch_connections", "arguments": {"duration_secs": 5},
        "_meta": {"progressToken": "watch"}}});
    let response = authed(client.post(&server.url))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(call.to_string())
        .send()
        .await
        .expect("call");
    let mut stream = response.bytes_stream();
    let mut body = String::new();
    while event_ids(&body).len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a chunk");
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    let seen = event_ids(&body);
    let last = seen[1].clone();
    let index = |id: &str| {
        id.split('/')
            .next()
            .and_then(|i| i.parse::<u64>().ok())
            .expect("an event index")
    };
    // Resuming replays what came after `last` and goes on live to the answer.
    let replay = resume(&server.url, &session, &last).await;
    let replayed = event_ids(&replay);
    assert!(
        replayed.iter().all(|id| index(id) > index(&last)),
        "resumed after {last}, got {replayed:?} (seen before: {seen:?})"
    );
    assert!(
        messages(&replay).iter().any(|m| m["id"] == 2),
        "the answer comes on the resumed stream: {replay}"
    );
    server.sigterm();
    let (code, _) = server.wait().await;
    assert_eq!(code, Some(0));
}
