//! What a request must be before rmcp sees it: a `Host` and `Origin` of the allow-lists
//! (DNS-rebinding protection), each given once and well-formed, and within the limits on
//! sessions, calls in flight and body size and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::sessions::Sessions;
use super::{Guarded, HttpError, HttpOptions, MAX_BODY_BYTES};

/// A validated `--allow-host` entry, as rmcp's allow-list wants it (`host` or `host:port`,
/// IPv6 in brackets).
pub(super) fn parse_allowed_host(value: &str) -> Result<String, HttpError> {
    let bad = |reason: &str| HttpError::BadAllowedHost {
        value: value.escape_default().to_string(),
        reason: reason.to_string(),
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if trimmed.contains(['@', '/', '?', '#', '*']) {
        return Err(bad(
            "give only a host name or address, optionally with :port",
        ));
    }
    // A bare IPv6 address (`::1`) is written with brackets in Host headers.
    let bracketed;
    let candidate = if trimmed.parse::<std::net::Ipv6Addr>().is_ok() {
        bracketed = format!("[{trimmed}]");
        bracketed.as_str()
    } else {
        trimmed
    };
    let authority = Authority::try_from(candidate).map_err(|e| bad(&e.to_string()))?;
    if authority.host().is_empty() {
        return Err(bad("the host part is empty"));
    }
    let after_host = authority
        .as_str()
        .get(authority.host().len()..)
        .unwrap_or("");
    if let Some(port) = after_host.strip_prefix(':')
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(bad("the port must be a number between 1 and 65535"));
    }
    Ok(authority.as_str().to_ascii_lowercase())
}

/// A validated `--allow-origin` entry.
pub(super) fn parse_allowed_origin(value: &str) -> Result<String, HttpError> {
    let bad = |reason: &str| HttpError::BadAllowedOrigin {
        value: value.escape_default().to_string(),
        reason: reason.to_string(),
    };
    let trimmed = value.trim().trim_end_matches('/');
    let uri = axum::http::Uri::try_from(trimmed).map_err(|e| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(bad("it has no host"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(bad("an origin has no path"));
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// `host` as it appears in a Host header (IPv6 in brackets).
pub(super) fn host_literal(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The allowed Host and Origin lists for a server bound to `local`.
pub(super) fn allow_lists(
    local: SocketAddr,
    options: &HttpOptions,
) -> Result<(Vec<String>, Vec<String>), HttpError> {
    let port = local.port();
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect();
    // The bound address itself, loopback ones too (`127.0.0.2:8765`).
    let bound = format!("{}:{port}", host_literal(local.ip()));
    if !local.ip().is_unspecified() && !hosts.contains(&bound) {
        hosts.push(bound);
    }
    for extra in &options.allowed_hosts {
        hosts.push(parse_allowed_host(extra)?);
    }
    let mut origins = Vec::new();
    for host in &hosts {
        // A host allowed on any port allows its origins on any port.
        let has_port = Authority::try_from(host.as_str()).is_ok_and(|a| a.port().is_some());
        let suffix = if has_port { "" } else { ":*" };
        origins.push(format!("http://{host}{suffix}"));
        origins.push(format!("https://{host}{suffix}"));
    }
    for extra in &options.allowed_origins {
        origins.push(parse_allowed_origin(extra)?);
    }
    hosts.dedup();
    Ok((hosts, origins))
}

/// Whether a Host header names an allowed host: an entry `host` allows it on any port,
/// `host:port` on that port only (names compared case-insensitively).
pub(super) fn host_allowed(host: Option<&HeaderValue>, allowed: &[String]) -> bool {
    let Some(host) = host
        .and_then(|h| h.to_str().ok())
        .and_then(|h| Authority::try_from(h).ok())
    else {
        return false;
    };
    allowed.iter().any(|entry| {
        Authority::try_from(entry.as_str()).is_ok_and(|a| {
            a.host().eq_ignore_ascii_case(host.host())
                && a.port_u16().is_none_or(|p| Some(p) == host.port_u16())
        })
    })
}

/// Refuses, with `400`, requests whose `Host` or `Origin` could be read two ways: rmcp's
/// allow-list then checks the one `Host` (and `Origin`) there is.
pub(super) async fn well_formed_host_and_origin(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    let problem = if hosts.next().is_some() {
        Some("more than one Host header")
    } else if host.is_some_and(|h| h.as_bytes().contains(&b'@')) {
        Some("a Host header with user information")
    } else if headers.get_all(header::ORIGIN).iter().nth(1).is_some() {
        Some("more than one Origin header")
    } else if let Some(target) = request.uri().authority() {
        // An absolute-form request target (`POST http://other/mcp`) names the host the request
        // is for; it must be the Host header's.
        let same = host.is_some_and(|h| {
            h.as_bytes()
                .eq_ignore_ascii_case(target.as_str().as_bytes())
        });
        (target.as_str().contains('@') || !same)
            .then_some("a request target naming another host than the Host header")
    } else {
        None
    };
    match problem {
        Some(why) => (StatusCode::BAD_REQUEST, format!("Bad Request: {why}\n")).into_response(),
        None => next.run(request).await,
    }
}

/// What [`enforce_limits`] needs.
pub(super) struct Limits {
    pub(super) sessions: Arc<Sessions>,
    pub(super) calls: Arc<Semaphore>,
    pub(super) max_calls: usize,
    pub(super) body_timeout: Duration,
}

/// Caps sessions and calls in flight, and reads the request body (bounded in size and time)
/// before rmcp does.
pub(super) async fn enforce_limits(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let busy = |what: String| {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, what).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    };
    let new_session =
        request.method() == Method::POST && !request.headers().contains_key("mcp-session-id");
    if new_session && limits.sessions.is_full() {
        return busy(format!(
            "Service Unavailable: {} MCP sessions are open, the most this server keeps; end one (HTTP DELETE with its Mcp-Session-Id) or wait for idle ones to expire\n",
            limits.sessions.max()
        ));
    }
    // The event-stream GET lives as long as its session (capped above); everything else is a
    // call, answered within bounded time.
    let permit = if request.method() == Method::GET {
        None
    } else {
        match Arc::clone(&limits.calls).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return busy(format!(
                    "Service Unavailable: {} requests are being answered, the most this server takes at once; retry shortly\n",
                    limits.max_calls
                ));
            }
        }
    };
    let (mut parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                closing(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "Payload Too Large: a request body may hold at most {MAX_BODY_BYTES} bytes\n"
                    ),
                )
            } else {
                closing(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: the request body could not be read\n".to_string(),
                )
            };
        }
        Err(_) => {
            return closing(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Request Timeout: the request body did not arrive within {} s\n",
                    limits.body_timeout.as_secs_f64()
                ),
            );
        }
    };
    let delete = parts.method == Method::DELETE;
    resume_after_last_event(&mut parts.headers);
    let mut response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // rmcp answers a session's DELETE with 202 Accepted; the session is gone by then, and
    // clients expect 200 (the Python SDK accepts 200, 204 or 405 and logs an error otherwise).
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    match permit {
        Some(permit) => response.map(|body| {
            Body::new(Guarded {
                inner: body,
                _guard: permit,
            })
        }),
        None => response,
    }
}

/// `Last-Event-ID` names the last event a client received, and a resumed stream should start
/// after it; rmcp 3.9 replays from that event itself (its cache sync skips `index - first`
/// events, not one more), so a client that reconnects gets it again, and reconnecting with
/// the new last id gets it once more, forever. The header is handed on one event later
/// (`N/R` → `N+1/R`), which makes the replay start where it should; an id that does not
/// parse is left for rmcp to refuse.
pub(super) fn resume_after_last_event(headers: &mut axum::http::HeaderMap) {
    let Some(next) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(next_event_id)
    else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&next) {
        headers.insert("last-event-id", value);
    }
}

/// `N` → `N+1`, `N/R` → `N+1/R` (rmcp's event ids: index, then the request's stream).
pub(super) fn next_event_id(id: &str) -> Option<String> {
    let (index, stream) = match id.split_once('/') {
        Some((index, stream)) => (index, Some(stream)),
        None => (id, None),
    };
    let next = index.trim().parse::<usize>().ok()?.checked_add(1)?;
    Some(match stream {
        Some(stream) => format!("{next}/{stream}"),
        None => next.to_string(),
    })
}

/// A refusal after which the connection is closed (the rest of the request is not read).
pub(super) fn closing(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
