//! The streamable HTTP transport as a remote agent meets it: rmcp's own HTTP client against
//! [`serve_http`] on `127.0.0.1:0`, raw requests for the headers a client library would not
//! send (foreign `Host`, no token), and shutdown with calls in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use netstat_mcp::http::{BearerToken, HttpError, HttpOptions, serve_http};
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

/// A stand-in MCP handler: `ping` answers at once, `sleep` takes `ms` milliseconds and counts
/// the calls that have started (so a test knows they are in flight).
#[derive(Clone, Default)]
struct Placeholder {
    started: Arc<(AtomicUsize, Notify)>,
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
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("ping", "Answers pong.", schema.clone()),
            Tool::new("sleep", "Waits `ms` milliseconds, then answers.", schema),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        match request.name.as_ref() {
            "ping" => Ok(CallToolResult::success(vec![ContentBlock::text("pong")]).into()),
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
    async fn start(handler: Placeholder, options: HttpOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_http(
            listener,
            move || handler.clone(),
            options,
            async move {
                let _ = stopped.await;
            },
        ));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_and_calls_tools() {
    let server = Server::start(Placeholder::default(), HttpOptions::default()).await;
    let client = connect(&server.url(), None).await.expect("initialize");
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["ping", "sleep"]);
    let result = client
        .call_tool(CallToolRequestParams::new("ping"))
        .await
        .expect("tools/call");
    assert_eq!(text_of(&result), "pong");
    assert_ne!(result.is_error, Some(true));
    client.cancel().await.expect("close client");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_serves_50_concurrent_clients() {
    let server = Server::start(Placeholder::default(), HttpOptions::default()).await;
    let url = server.url();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&url, None).await.expect("initialize");
            let tools = client.list_all_tools().await.expect("tools/list");
            assert_eq!(tools.len(), 2);
            let mut args = serde_json::Map::new();
            args.insert("ms".into(), json!(i % 5 * 10));
            let result = client
                .call_tool(CallToolRequestParams::new("sleep").with_arguments(args))
                .await
                .expect("tools/call");
            assert_eq!(text_of(&result), format!("slept {}", i % 5 * 10));
            client.cancel().await.expect("close client");
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(60), futures_join_all(tasks))
        .await
        .expect("50 clients done within 60 s");
    for (i, r) in all.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("client {i} failed: {e}"));
    }
    server.shutdown().await.expect("clean shutdown");
}

async fn futures_join_all<T>(tasks: Vec<JoinHandle<T>>) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bearer_token_none_wrong_right() {
    let server = Server::start(Placeholder::default(), with_token()).await;
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
    let result = client
        .call_tool(CallToolRequestParams::new("ping"))
        .await
        .expect("tools/call");
    assert_eq!(text_of(&result), "pong");
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
    let server = Server::start(Placeholder::default(), options).await;
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
    let server = Server::start(handler.clone(), HttpOptions::default()).await;
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
    for (i, call) in futures_join_all(calls).await.into_iter().enumerate() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_are_cleaned_up() {
    let options = HttpOptions {
        session_idle_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let server = Server::start(Placeholder::default(), options).await;
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
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_eq!(post_on_session(&url, &session, ping.clone()).await, 404);

    // Abandoned: closed after the idle timeout (300 ms; any request would reset it, so wait
    // well past it once, then look).
    let session = raw_session(&url).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(post_on_session(&url, &session, ping.clone()).await, 404);
    server.shutdown().await.expect("clean shutdown");
}
