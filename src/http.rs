//! The MCP streamable HTTP transport: `netstat-mcp serve --http ADDR` serves MCP at
//! `/mcp` for agents on other machines.
//!
//! What this module adds around rmcp's [`StreamableHttpService`] (which speaks the protocol,
//! keeps one session per client and refuses foreign `Host`/`Origin` headers):
//! - **Bearer authentication** ([`BearerToken`]): with a token, every request must carry
//!   `Authorization: Bearer <token>`, compared in constant time; anything else gets `401` with
//!   `WWW-Authenticate: Bearer` and no other detail, before rmcp sees the request. Binding a
//!   non-loopback address without a token is refused ([`HttpError::TokenRequired`]).
//! - **DNS-rebinding protection**: the allowed `Host` values are the loopback names with the
//!   bound port, the bound address itself, and the configured hosts; the allowed `Origin`s are
//!   `http(s)://` of those plus configured origins. Requests without `Origin` (non-browser
//!   clients) pass the origin check.
//! - **Well-formed `Host` and `Origin`**: two `Host` or two `Origin` headers, a `Host` with
//!   user information (`evil.example@localhost:8765`) and an absolute-form request target that
//!   names another host than `Host` are refused with `400` before any other check.
//! - **Bounded resources**: at most [`HttpOptions::max_sessions`] sessions (a new one beyond
//!   gets `503`), [`HttpOptions::max_calls_in_flight`] calls answered at once (`503` beyond),
//!   [`HttpOptions::max_connections`] connections (further ones wait in the kernel's accept
//!   queue), request headers within [`HttpOptions::header_timeout`] and a request body of at
//!   most [`MAX_BODY_BYTES`] within [`HttpOptions::body_timeout`] (`408`/`413`, and the
//!   connection is closed).
//! - **Session ids stay secret**: the id a client holds is minted by [`sessions`] and never
//!   logged; rmcp's own id, which rmcp logs, is not accepted on the wire.
//! - **Access log**: one `tracing` line per request (target `netstat_mcp::http::access`):
//!   peer, method, path, status, latency to the response head. Never headers, never the token,
//!   never the session id.
//! - **Graceful shutdown**: when the `shutdown` future resolves, no new connection is
//!   accepted; calls in flight (POST/DELETE responses still streaming) are finished, for at
//!   most [`HttpOptions::drain_timeout`]; then rmcp's sessions are cancelled (which ends the
//!   long-lived GET event streams) and [`serve_http`] returns `Ok`.
//!
//! It knows nothing about sockets or tools: the MCP handler comes from a factory, one
//! handler per session. Connections are served by hyper directly (HTTP/1.1, with a header
//! read timeout, which `axum::serve` does not set); routing and middleware are axum's. The listener and the shutdown signal are passed in, so tests bind
//! `127.0.0.1:0` and decide when to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

mod bearer;
mod guard;
pub(crate) mod sessions;

pub use bearer::BearerToken;
use bearer::require_token;
use guard::{Limits, allow_lists, enforce_limits, host_allowed, well_formed_host_and_origin};
use sessions::Sessions;

/// Where MCP is served.
pub(crate) const MCP_PATH: &str = "/mcp";
/// Where metrics are served (`HttpOptions::metrics`).
pub(crate) const METRICS_PATH: &str = "/metrics";

/// Default bind address of `serve --http` when none is given.
pub(crate) const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8765";

/// The shortest token accepted: a guessable token on a network port is no protection.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// The largest request body accepted (a JSON-RPC message; tool arguments are small).
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

/// Why the HTTP server would not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A non-loopback bind without a token.
    #[error(
        "refusing to serve MCP on {addr} without authentication: it is not a loopback address, so \
         anyone who can reach it could query this host. Put a token in an environment variable \
         and name it with --token-env (e.g. `export NETSTAT_MCP_TOKEN=$(openssl rand -hex 32)` \
         and `--token-env NETSTAT_MCP_TOKEN`), or bind 127.0.0.1"
    )]
    TokenRequired { addr: SocketAddr },

    /// `--token-env NAME` names a variable that is not set.
    #[error(
        "--token-env {name}: the environment variable {name} is not set or not valid UTF-8; \
         export it with the bearer token before starting the server"
    )]
    TokenEnvMissing { name: String },

    /// The token is too short (its value is never shown).
    #[error(
        "the bearer token from {source_name} is {len} characters; use at least {min} (e.g. \
         `openssl rand -hex 32`)"
    )]
    TokenTooShort {
        source_name: String,
        len: usize,
        min: usize,
    },

    /// An `--allow-host` value that is not `host` or `host:port`.
    #[error(
        "--allow-host '{value}' is not a host name or host:port (e.g. mcp.example.com or \
         10.0.0.5:8765): {reason}"
    )]
    BadAllowedHost { value: String, reason: String },

    /// An `--allow-origin` value that is not `scheme://host[:port]`.
    #[error(
        "--allow-origin '{value}' is not an origin like https://app.example.com or \
         http://localhost:6274: {reason}"
    )]
    BadAllowedOrigin { value: String, reason: String },

    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}. If another program holds the port, pick another \
         with --http ADDR:PORT (`netstat-mcp port PORT` shows who holds it)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The listener's own address could not be read.
    #[error("cannot read the listening socket's address: {source}")]
    LocalAddr {
        #[source]
        source: std::io::Error,
    },

    /// The HTTP server failed while running.
    #[error("the HTTP server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How to serve: authentication, allowed hosts/origins, timeouts.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Required on every request when set; required to be set for a non-loopback bind.
    pub token: Option<BearerToken>,
    /// Extra allowed `Host` values (`host` = any port, or `host:port`), for a real
    /// deployment's DNS name or address.
    pub allowed_hosts: Vec<String>,
    /// Extra allowed browser `Origin`s (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// A session with no request for this long is closed.
    pub session_idle_timeout: Duration,
    /// On shutdown, how long calls in flight may take to finish before sessions are cancelled.
    pub drain_timeout: Duration,
    /// Sessions open at once; a new one beyond this is refused with `503`.
    pub max_sessions: usize,
    /// Requests other than the event-stream GET answered at once; beyond, `503`.
    pub max_calls_in_flight: usize,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// A client must send a request's headers within this (also while a kept-alive
    /// connection waits for its next request), or the connection is closed.
    pub header_timeout: Duration,
    /// A client must send a request's body within this, or gets `408` and is cut off.
    pub body_timeout: Duration,
    /// Serve `GET /metrics` from this exporter (behind the same token and Host checks).
    pub metrics: Option<crate::metrics::Exporter>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            session_idle_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(25),
            max_sessions: 100,
            max_calls_in_flight: 64,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            metrics: None,
        }
    }
}

/// After the drain, how long connections may take to close before we stop waiting for them.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The assembled service: the axum router plus the handles shutdown needs.
struct App {
    router: Router,
    /// Cancels every rmcp session (and their event streams).
    sessions_cancel: CancellationToken,
    /// Tracks responses to calls (POST/DELETE) until their bodies are finished.
    in_flight: TaskTracker,
}

fn build_app<S, F>(factory: F, options: &HttpOptions, local: SocketAddr) -> Result<App, HttpError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let (hosts, origins) = allow_lists(local, options)?;
    let metrics = options.metrics.clone().map(|exporter| {
        Arc::new(MetricsRoute {
            exporter,
            hosts: hosts.clone(),
        })
    });
    let sessions_cancel = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_cancellation_token(sessions_cancel.clone());
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(options.session_idle_timeout);
    let sessions = Arc::new(Sessions::new(manager, options.max_sessions.max(1)));
    let service = StreamableHttpService::new(move || Ok(factory()), Arc::clone(&sessions), config);
    let in_flight = TaskTracker::new();
    let limits = Arc::new(Limits {
        sessions,
        calls: Arc::new(Semaphore::new(options.max_calls_in_flight.max(1))),
        max_calls: options.max_calls_in_flight.max(1),
        body_timeout: options.body_timeout,
    });

    // Layers run outside in: access log, header checks, token, limits, then rmcp.
    let mut router = Router::new().route_service(MCP_PATH, service);
    if let Some(metrics) = metrics {
        router = router.route(
            METRICS_PATH,
            axum::routing::any(serve_metrics).with_state(metrics),
        );
    }
    let mut router = router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(limits, enforce_limits));
    if let Some(token) = options.token.clone() {
        router = router.layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    }
    let router = router
        .layer(middleware::from_fn(well_formed_host_and_origin))
        .layer(middleware::from_fn_with_state(
            in_flight.clone(),
            access_log,
        ));
    Ok(App {
        router,
        sessions_cancel,
        in_flight,
    })
}

/// What `GET /metrics` needs: the exporter, and the Host allow-list rmcp applies to `/mcp`.
struct MetricsRoute {
    exporter: crate::metrics::Exporter,
    hosts: Vec<String>,
}

/// `GET /metrics`: one exposition, OpenMetrics when `Accept` prefers it, else text 0.0.4.
async fn serve_metrics(State(route): State<Arc<MetricsRoute>>, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = (
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed: /metrics answers GET\n",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let headers = request.headers();
    if !host_allowed(headers.get(header::HOST), &route.hosts) {
        return (
            StatusCode::FORBIDDEN,
            "Forbidden: Host header not allowed (see --allow-host)\n",
        )
            .into_response();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    match route.exporter.scrape(format).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(cause = %e, "metrics scrape failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("netstat-mcp: the scrape failed: {e}\n"),
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found: MCP is served at /mcp\n").into_response()
}

/// Logs each request and keeps calls in flight tracked until their response body ends.
async fn access_log(
    State(in_flight): State<TaskTracker>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string())
        .unwrap_or_else(|| "-".to_string());
    // A GET is the long-lived server→client event stream: not a call, not waited for.
    let token = (method != Method::GET).then(|| in_flight.token());
    let response = next.run(request).await;
    tracing::info!(
        target: "netstat_mcp::http::access",
        peer = %peer,
        method = %method,
        path = %path.escape_default(),
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    match token {
        Some(token) => response.map(|body| {
            Body::new(Guarded {
                inner: body,
                _guard: token,
            })
        }),
        None => response,
    }
}

/// A response body that holds `G` (a task-tracker token, a call permit) until it is finished
/// or dropped.
pub(super) struct Guarded<G> {
    pub(super) inner: Body,
    pub(super) _guard: G,
}

impl<G: Send + Unpin + 'static> HttpBody for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Binds `addr` for [`serve_http`], refusing a non-loopback address when `options` has no token
/// (before anything listens on it).
pub async fn bind(addr: SocketAddr, options: &HttpOptions) -> Result<TcpListener, HttpError> {
    if !addr.ip().is_loopback() && options.token.is_none() {
        return Err(HttpError::TokenRequired { addr });
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves MCP over streamable HTTP on `listener` until `shutdown` resolves, then drains calls in
/// flight and returns `Ok(())`.
///
/// `factory` makes one handler per client session. Refuses to start when the listener is not
/// on a loopback address and `options.token` is `None`.
pub async fn serve_http<S, F>(
    listener: TcpListener,
    factory: F,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::LocalAddr { source })?;
    if !local.ip().is_loopback() && options.token.is_none() {
        return Err(HttpError::TokenRequired { addr: local });
    }
    let app = build_app(factory, &options, local)?;
    tracing::info!(
        addr = %local,
        path = MCP_PATH,
        auth = if options.token.is_some() { "bearer" } else { "none" },
        "serving MCP over streamable HTTP"
    );

    // shutdown → stop accepting; calls in flight finish (bounded); sessions cancelled.
    let (stop_accepting_tx, stop_accepting_rx) = tokio::sync::oneshot::channel::<()>();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn(drain_on(
        shutdown,
        stop_accepting_tx,
        app.in_flight.clone(),
        app.sessions_cancel.clone(),
        options.drain_timeout,
        drained_tx,
    ));
    let (connections, failure) = accept_until(listener, &app, &options, stop_accepting_rx).await;
    if failure.is_none() {
        let grace_over = async move {
            // Resolves only once the drain is done (a dropped sender: the drain task died).
            if drained_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        tokio::select! {
            () = connections.wait() => {}
            () = grace_over => {
                tracing::warn!("some connections did not close after shutdown; stopping anyway");
            }
        }
    }
    drain.abort();
    app.sessions_cancel.cancel();
    tracing::info!("HTTP server stopped");
    match failure {
        None => Ok(()),
        Some(source) => Err(HttpError::Serve {
            addr: local,
            source,
        }),
    }
}

/// The drain: on `shutdown`, stop accepting, let calls in flight finish (at most
/// `drain_timeout`), cancel the sessions, then say it is done.
async fn drain_on(
    shutdown: impl Future<Output = ()>,
    stop_accepting: tokio::sync::oneshot::Sender<()>,
    in_flight: TaskTracker,
    sessions_cancel: CancellationToken,
    drain_timeout: Duration,
    drained: tokio::sync::oneshot::Sender<()>,
) {
    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing calls in flight");
    let _ = stop_accepting.send(());
    in_flight.close();
    if tokio::time::timeout(drain_timeout, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = in_flight.len(),
            timeout_s = drain_timeout.as_secs_f64(),
            "calls still running after the drain timeout; cancelling them"
        );
    }
    sessions_cancel.cancel();
    let _ = drained.send(());
}

/// The accept loop: at most `max_connections` served at once, until `stop` fires or the
/// listener fails (that error is returned). Returns the closed tracker of the connections
/// still being served, each told to finish its response and close.
async fn accept_until(
    listener: TcpListener,
    app: &App,
    options: &HttpOptions,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (TaskTracker, Option<std::io::Error>) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    // Dropping this sender tells every connection to finish its response and close.
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(());
    let mut failure = None;
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if accept_error_is_transient(&e) => {
                    // Out of descriptors or a connection reset before accept: wait a little.
                    tracing::warn!(cause = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            http1.clone(),
            stream,
            peer,
            app.router.clone(),
            closing_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    drop(closing_tx);
    connections.close();
    (connections, failure)
}

/// Errors of `accept` that concern one connection or a momentary shortage, not the listener.
fn accept_error_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// Serves one connection with `router` until it closes, or until `closing` says so (then the
/// response being sent is finished first).
async fn serve_connection(
    http1: hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    mut closing: tokio::sync::watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let connection = http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(cause = %e, "connection ended with an error");
            }
            return;
        }
        _ = closing.changed() => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        tracing::debug!(cause = %e, "connection ended with an error");
    }
}

/// Resolves on SIGINT or SIGTERM (what `serve --http` stops on).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(cause = %e, "cannot listen for SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    let int = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(cause = %e, "cannot listen for SIGINT; stop with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = term => tracing::info!("SIGTERM received"),
        () = int => tracing::info!("SIGINT received"),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer::*;
    use super::guard::*;
    use super::*;

    fn token() -> BearerToken {
        BearerToken::new("0123456789abcdef-secret", "test").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_resume_is_handed_on_after_the_last_event() {
        assert_eq!(next_event_id("1/0").as_deref(), Some("2/0"));
        assert_eq!(next_event_id("41").as_deref(), Some("42"));
        assert_eq!(next_event_id("x/0"), None);
        assert_eq!(next_event_id(&usize::MAX.to_string()), None);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("7/3"));
        resume_after_last_event(&mut headers);
        assert_eq!(headers["last-event-id"], "8/3");
    }

    #[test]
    fn tokens_equal_only_for_identical_bytes() {
        let expected = b"0123456789abcdef";
        assert!(tokens_equal(b"0123456789abcdef", expected));
        for presented in [
            &b""[..],
            b"0123456789abcde",
            b"0123456789abcdef0",
            b"0123456789abcdeF",
            b"1123456789abcdef",
            b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0",
        ] {
            assert!(!tokens_equal(presented, expected), "{presented:?}");
        }
        // A presented token that is a prefix padded with the complement bytes must not match.
        let padded: Vec<u8> = expected.iter().map(|b| !b).collect();
        assert!(!tokens_equal(&padded, expected));
        assert!(!tokens_equal(b"x", b""));
        assert!(tokens_equal(b"", b""));
    }

    #[test]
    fn authorization_header_forms() {
        let t = token();
        assert!(t.accepts(b"Bearer 0123456789abcdef-secret"));
        assert!(t.accepts(b"bearer 0123456789abcdef-secret"));
        assert!(t.accepts(b"BEARER   0123456789abcdef-secret"));
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"0123456789abcdef-secret",
            b"Basic 0123456789abcdef-secret",
            b"Bearer 0123456789abcdef-secreT",
            b"Bearer 0123456789abcdef-secret ",
            b"Bearer 0123456789abcdef-secret\0",
            b"Bearerx 0123456789abcdef-secret",
        ] {
            assert!(!t.accepts(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn token_from_env_missing_short_and_good() {
        let err = BearerToken::from_env("MCP_TOKEN", |_| None).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("--token-env MCP_TOKEN"), "{msg}");
        assert!(msg.contains("not set"), "{msg}");

        let err = BearerToken::from_env("MCP_TOKEN", |_| Some("short-secret".into())).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("$MCP_TOKEN is 12 characters"), "{msg}");
        assert!(!msg.contains("short-secret"), "the token leaked: {msg}");

        let asked = std::cell::Cell::new(String::new());
        let good = BearerToken::from_env("MCP_TOKEN", |name| {
            asked.set(name.to_string());
            Some(" 0123456789abcdef-secret\n".into())
        });
        assert_eq!(asked.take(), "MCP_TOKEN");
        let good = good.unwrap_or_else(|e| panic!("{e}"));
        assert!(good.accepts(b"Bearer 0123456789abcdef-secret"));
        assert_eq!(format!("{good:?}"), "BearerToken(<redacted>)");
    }

    #[test]
    fn allowed_host_entries() {
        let ok = |v: &str| parse_allowed_host(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("MCP.example.com"), "mcp.example.com");
        assert_eq!(ok("10.0.0.5:8765"), "10.0.0.5:8765");
        assert_eq!(ok("[fd00::5]:8765"), "[fd00::5]:8765");
        assert_eq!(ok("fd00::5"), "[fd00::5]");
        for bad in [
            "",
            "  ",
            "user@host",
            "http://host",
            "host/path",
            "*.example.com",
            "host:port",
            "host:0",
            "host:70000",
            "host:",
        ] {
            let err = parse_allowed_host(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|m| m.starts_with("--allow-host")),
                "{bad:?} → {err:?}"
            );
        }
    }

    #[test]
    fn the_bound_address_is_an_allowed_host_loopback_or_not() {
        let lists = |addr: &str| {
            allow_lists(addr.parse().unwrap(), &HttpOptions::default())
                .unwrap()
                .0
        };
        assert!(lists("127.0.0.2:8765").contains(&"127.0.0.2:8765".to_string()));
        assert!(lists("[::1]:8765").contains(&"[::1]:8765".to_string()));
        let one = lists("127.0.0.1:8765");
        assert_eq!(one.iter().filter(|h| *h == "127.0.0.1:8765").count(), 1);
        assert!(
            !lists("0.0.0.0:8765")
                .iter()
                .any(|h| h.starts_with("0.0.0.0"))
        );
    }

    #[test]
    fn allowed_origin_entries() {
        let ok = |v: &str| parse_allowed_origin(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("https://App.example.com/"), "https://app.example.com");
        assert_eq!(ok("http://localhost:6274"), "http://localhost:6274");
        for bad in ["app.example.com", "ftp://x", "https://x/path", "https://"] {
            assert!(parse_allowed_origin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allow_lists_use_the_bound_port_and_address() {
        let opts = HttpOptions {
            allowed_hosts: vec!["mcp.example.com".into()],
            allowed_origins: vec!["https://ui.example.com:443".into()],
            ..HttpOptions::default()
        };
        let local: SocketAddr = "127.0.0.1:8765".parse().unwrap_or_else(|e| panic!("{e}"));
        let (hosts, origins) = allow_lists(local, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            hosts,
            [
                "localhost:8765",
                "127.0.0.1:8765",
                "[::1]:8765",
                "mcp.example.com"
            ]
        );
        assert!(origins.contains(&"http://localhost:8765".to_string()));
        assert!(origins.contains(&"http://[::1]:8765".to_string()));
        assert!(origins.contains(&"https://mcp.example.com:*".to_string()));
        assert!(origins.contains(&"https://ui.example.com:443".to_string()));

        let lan: SocketAddr = "192.168.1.5:9000".parse().unwrap_or_else(|e| panic!("{e}"));
        let (hosts, _) =
            allow_lists(lan, &HttpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(hosts.contains(&"192.168.1.5:9000".to_string()), "{hosts:?}");
        let any: SocketAddr = "0.0.0.0:9000".parse().unwrap_or_else(|e| panic!("{e}"));
        let (hosts, _) =
            allow_lists(any, &HttpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hosts.len(), 3, "{hosts:?}");
    }
}
