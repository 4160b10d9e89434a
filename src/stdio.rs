//! The stdio transport: newline-delimited JSON-RPC on stdin and stdout.
//!
//! Lines are read here rather than by rmcp's `AsyncRwTransport`, so that every request a
//! client sends gets an answer. rmcp ignores a line that is not JSON (invalid UTF-8, a lone
//! surrogate, nesting deeper than serde_json's 128 levels, a number out of range), and answers
//! well-formed JSON that is not a JSON-RPC message with id `null`; either way the client waits
//! for that call forever. Here:
//! - a line that is not JSON gets `-32700` (parse error), with the request's id when the
//!   line's top-level `"id"` can still be read, else `null` (JSON-RPC 2.0, section 5.1);
//! - JSON with an id that is not a JSON-RPC request gets `-32600` with that id;
//! - a request of an MCP method whose params do not fit (rmcp takes it for an unknown method:
//!   `-32601 "tools/call"`) gets `-32602` naming the method;
//! - a notification (no id) that does not parse is dropped, as rmcp does: notifications are
//!   never answered.
//!
//! Writes go through rmcp's `AsyncRwTransport` (its framing and writer lock), as do rmcp's
//! own answers. Lines are bounded as rmcp bounds them (16 MiB; a longer one is refused with
//! `-32600`), and at most [`MAX_REFUSALS`] refusals wait to be written: a client that sends
//! bad lines without reading pushes back like one that sends calls.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, ErrorCode, ErrorData, JsonRpcMessage, NumberOrString, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::Semaphore;

/// The longest line read (rmcp's own bound).
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;
/// Refusals written at once at most.
pub(crate) const MAX_REFUSALS: usize = 16;

/// MCP request methods a client sends: one of these that rmcp could not parse had params
/// that do not fit.
const MCP_METHODS: [&str; 13] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "logging/setLevel",
    "completion/complete",
];

/// Newline-delimited JSON-RPC over a reader and a writer (stdin and stdout).
pub(crate) struct Stdio<R, W: AsyncWrite> {
    read: BufReader<R>,
    /// The line being read: kept across a cancelled `receive`, which resumes it.
    line: Vec<u8>,
    /// Dropping the rest of a line that was too long.
    discarding: bool,
    write: AsyncRwTransport<RoleServer, tokio::io::Empty, W>,
    refusals: Refusals,
}

/// Answers a transport layer writes itself, beside rmcp's (refused lines and ids): written on
/// tasks of their own, so a `receive` dropped at an await never loses one, and at most
/// [`MAX_REFUSALS`] at once — the next waits for a slot, so a client that sends bad requests
/// without reading pushes back as one sending calls does.
pub(crate) struct Refusals {
    /// A refusal not yet handed to a writer task.
    pending: Option<TxJsonRpcMessage<RoleServer>>,
    slots: Arc<Semaphore>,
}

impl Refusals {
    pub(crate) fn new() -> Refusals {
        Refusals {
            pending: None,
            slots: Arc::new(Semaphore::new(MAX_REFUSALS)),
        }
    }

    /// Keeps a refusal until the next [`Refusals::flush`].
    pub(crate) fn hold(&mut self, refusal: TxJsonRpcMessage<RoleServer>) {
        self.pending = Some(refusal);
    }

    /// Hands the held refusal to a writer task on `transport` once a slot is free. Cancel-safe:
    /// the refusal stays held until a task has it. `None` when the slots are gone.
    pub(crate) async fn flush<T: Transport<RoleServer>>(
        &mut self,
        transport: &mut T,
    ) -> Option<()> {
        if self.pending.is_some() {
            let permit = Arc::clone(&self.slots).acquire_owned().await.ok()?;
            let refusal = self.pending.take()?;
            let writing = transport.send(refusal);
            tokio::spawn(async move {
                if writing.await.is_err() {
                    tracing::debug!("cannot write a refusal");
                }
                drop(permit);
            });
        }
        Some(())
    }
}

enum LineRead {
    Full,
    TooLong,
    End,
}

impl<R, W> Stdio<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(read: R, write: W) -> Stdio<R, W> {
        Stdio {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            write: AsyncRwTransport::new(tokio::io::empty(), write),
            refusals: Refusals::new(),
        }
    }

    /// Reads up to a newline into `self.line`, never holding more than [`MAX_LINE`] bytes.
    /// Cancel-safe: what was read stays in `self.line`.
    async fn read_line(&mut self) -> LineRead {
        loop {
            let (consumed, done) = {
                let available = match self.read.fill_buf().await {
                    Ok(available) => available,
                    Err(e) => {
                        tracing::error!("cannot read stdin: {e}");
                        return LineRead::End;
                    }
                };
                if available.is_empty() {
                    return LineRead::End;
                }
                let newline = available.iter().position(|b| *b == b'\n');
                let take = newline.map_or(available.len(), |at| at + 1);
                if self.discarding {
                    if newline.is_some() {
                        self.discarding = false;
                    }
                    (take, None)
                } else if self.line.len().saturating_add(take) > MAX_LINE {
                    self.line.clear();
                    self.discarding = newline.is_none();
                    (take, Some(LineRead::TooLong))
                } else {
                    self.line.extend_from_slice(&available[..take]);
                    (take, newline.map(|_| LineRead::Full))
                }
            };
            self.read.consume(consumed);
            if let Some(line) = done {
                return line;
            }
        }
    }
}

/// What a line that rmcp would not take is answered with (`None`: nothing, a notification).
fn refusal(line: &[u8], error: &serde_json::Error) -> Option<TxJsonRpcMessage<RoleServer>> {
    let id = match top_level_id(line) {
        // A notification, however broken: never answered.
        Id::Absent => return None,
        Id::Unreadable => None,
        Id::Read(id) => Some(id),
    };
    let data = match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => ErrorData::new(
            ErrorCode::PARSE_ERROR,
            format!("Parse error: the line is not JSON ({error})"),
            None,
        ),
        _ => ErrorData::invalid_request(
            format!("Invalid Request: not a JSON-RPC 2.0 request ({error})"),
            None,
        ),
    };
    Some(TxJsonRpcMessage::<RoleServer>::error(data, id))
}

/// A request of an MCP method that rmcp could only take as a custom one: its params did
/// not fit.
fn misfit(message: &RxJsonRpcMessage<RoleServer>) -> Option<TxJsonRpcMessage<RoleServer>> {
    let JsonRpcMessage::Request(request) = message else {
        return None;
    };
    let ClientRequest::CustomRequest(custom) = &request.request else {
        return None;
    };
    let method = custom.method.as_str();
    if !MCP_METHODS.contains(&method) {
        return None;
    }
    let hint = if method == "tools/call" {
        ": params must be an object with name (a string) and arguments (an object)"
    } else {
        ""
    };
    Some(TxJsonRpcMessage::<RoleServer>::error(
        ErrorData::invalid_params(format!("Invalid params for {method}{hint}"), None),
        Some(request.id.clone()),
    ))
}

impl<R, W> Transport<RoleServer> for Stdio<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.write.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            self.refusals.flush(&mut self.write).await?;
            match self.read_line().await {
                LineRead::Full => {}
                LineRead::TooLong => {
                    tracing::warn!(max = MAX_LINE, "a line over the length limit was dropped");
                    self.refusals.hold(TxJsonRpcMessage::<RoleServer>::error(
                        ErrorData::invalid_request(
                            format!("Invalid Request: a message is at most {MAX_LINE} bytes"),
                            None,
                        ),
                        None,
                    ));
                    continue;
                }
                // A partial last line (no newline) is not a message.
                LineRead::End => return None,
            }
            let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                self.line.clear();
                continue;
            }
            let parsed = serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(text);
            let outcome = match parsed {
                Ok(message) => match misfit(&message) {
                    Some(refused) => Err(Some(refused)),
                    None => Ok(message),
                },
                Err(e) => {
                    tracing::debug!("refusing a line that is not a JSON-RPC message: {e}");
                    Err(refusal(text, &e))
                }
            };
            self.line.clear();
            match outcome {
                Ok(message) => return Some(message),
                Err(Some(refused)) => self.refusals.hold(refused),
                Err(None) => {}
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.write.close().await
    }
}

/// The `"id"` member of a line's top-level object.
#[derive(Debug, PartialEq)]
pub(crate) enum Id {
    /// The object was read to its end and has none: a notification.
    Absent,
    /// Not an object that could be read, or an id that is not one (not a string, nor an
    /// integer that fits 64 bits).
    Unreadable,
    Read(RequestId),
}

/// Reads the `"id"` of a line's top-level object however broken the rest of the line is
/// (nesting, encoding, numbers out of range elsewhere). Reads only the top level: nested
/// values are skipped by counting brackets outside strings, with no recursion.
pub(crate) fn top_level_id(line: &[u8]) -> Id {
    let mut at = skip_space(line, 0);
    if line.get(at) != Some(&b'{') {
        return Id::Unreadable;
    }
    at = skip_space(line, at + 1);
    if line.get(at) == Some(&b'}') {
        return Id::Absent;
    }
    loop {
        if line.get(at) != Some(&b'"') {
            return Id::Unreadable;
        }
        let Some(key_end) = string_end(line, at) else {
            return Id::Unreadable;
        };
        let key = &line[at + 1..key_end - 1];
        at = skip_space(line, key_end);
        if line.get(at) != Some(&b':') {
            return Id::Unreadable;
        }
        at = skip_space(line, at + 1);
        let Some(value_end) = value_end(line, at) else {
            return Id::Unreadable;
        };
        if key == b"id" {
            return id_value(&line[at..value_end]).map_or(Id::Unreadable, Id::Read);
        }
        at = skip_space(line, value_end);
        match line.get(at) {
            Some(b',') => at = skip_space(line, at + 1),
            Some(b'}') => return Id::Absent,
            _ => return Id::Unreadable,
        }
    }
}

fn skip_space(line: &[u8], mut at: usize) -> usize {
    while line.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The index just past the string starting at `at` (its opening quote).
fn string_end(line: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the value starting at `at`.
fn value_end(line: &[u8], at: usize) -> Option<usize> {
    match line.get(at)? {
        b'"' => string_end(line, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < line.len() {
                match line[i] {
                    b'"' => {
                        i = string_end(line, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = at;
            while i < line.len() && !matches!(line[i], b',' | b'}' | b']') {
                i += 1;
            }
            Some(i)
        }
    }
}

fn id_value(raw: &[u8]) -> Option<RequestId> {
    let raw = raw.trim_ascii();
    if raw.first() == Some(&b'"') {
        let text: String = serde_json::from_slice(raw).ok()?;
        return Some(NumberOrString::String(text.into()));
    }
    std::str::from_utf8(raw)
        .ok()?
        .parse::<i64>()
        .ok()
        .map(NumberOrString::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_read_from_broken_lines() {
        let n = |v| Id::Read(NumberOrString::Number(v));
        assert_eq!(
            top_level_id(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            n(7)
        );
        assert_eq!(
            top_level_id(br#"{"method":"x","params":{"a":[1,{"id":9}]},"id":"ab\"c"}"#),
            Id::Read(NumberOrString::String("ab\"c".into()))
        );
        // Invalid UTF-8 and a lone surrogate elsewhere in the line.
        assert_eq!(
            top_level_id(b"{\"id\": 3, \"method\": \"\xff\xfe\", \"p\": \"\\ud800\"}"),
            n(3)
        );
        // Nesting far deeper than serde_json's limit.
        let deep = format!(
            r#"{{"params":{}{}, "id":12}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(top_level_id(deep.as_bytes()), n(12));
        // Ids that cannot be one: out of range, cut short, not an object.
        assert_eq!(
            top_level_id(br#"{"jsonrpc":"2.0","id":1e400}"#),
            Id::Unreadable
        );
        assert_eq!(top_level_id(b"[1,2]"), Id::Unreadable);
        assert_eq!(top_level_id(b"{\"id"), Id::Unreadable);
        assert_eq!(top_level_id(b"{\"method\": \"x\", "), Id::Unreadable);
        assert_eq!(top_level_id(b""), Id::Unreadable);
        // Notifications, broken inside.
        assert_eq!(top_level_id(br#"{"method":"ping"}"#), Id::Absent);
        assert_eq!(
            top_level_id(b"{\"method\":\"\xff\", \"p\": [[[]]] }"),
            Id::Absent
        );
        assert_eq!(top_level_id(b" { } "), Id::Absent);
    }

    #[test]
    fn refusals_name_the_error_and_the_id() {
        let line = b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"\xff\"}";
        let e = serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line).unwrap_err();
        let refused = serde_json::to_value(refusal(line, &e)).unwrap_or_default();
        assert_eq!(refused["id"], 5, "{refused}");
        assert_eq!(refused["error"]["code"], -32700, "{refused}");
        // Well-formed, with an id, not a request.
        let line = br#"{"jsonrpc":"2.0","id":6,"method":7}"#;
        let e = serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line).unwrap_err();
        let refused = serde_json::to_value(refusal(line, &e)).unwrap_or_default();
        assert_eq!(refused["id"], 6, "{refused}");
        assert_eq!(refused["error"]["code"], -32600, "{refused}");
        // A misshapen notification is not answered.
        let line = br#"{"jsonrpc":"2.0","method":7}"#;
        let e = serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line).unwrap_err();
        assert!(refusal(line, &e).is_none());
    }
}
