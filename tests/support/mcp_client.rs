//! Driving the built `netstat-mcp` binary over MCP: with rmcp's client over the child's stdio
//! ([`Server`]), or with raw JSON-RPC lines where a test needs to control the wire ([`Raw`]).
//! Also fake `netstat` scripts for the `netstat` tool's runner.

use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netstat-mcp"))
}

/// Awaits `fut`, failing the test after [`STEP`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

pub use super::net::our_program as own_comm;

/// Keeps a child's stderr lines as they come (a task reads them), calling `on_line` with each
/// first.
pub fn collect_lines(
    stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            on_line(&line);
            kept.lock().unwrap().push(line);
        }
    });
    lines
}

/// `netstat-mcp serve --http 127.0.0.1:0 [args]` of the test's own (no config file, `RUST_LOG`
/// unset, killed on drop): the address it reported and its stderr lines.
pub struct HttpServer {
    pub child: Child,
    pub addr: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> HttpServer {
        let mut child = Command::new(bin())
            .args(["serve", "--http", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn netstat-mcp");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let mut tx = Some(tx);
        let stderr = collect_lines(child.stderr.take().expect("stderr"), move |line| {
            if let Some(rest) = line.split("serving MCP over streamable HTTP addr=").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        });
        // A loaded machine (the metrics tests' first scrape) may take longer than one step.
        let addr = tokio::time::timeout(2 * STEP, rx)
            .await
            .expect("the server reported its address in time")
            .expect("the server started (see its stderr)");
        HttpServer {
            child,
            addr,
            stderr,
        }
    }
}

/// A `netstat-mcp` child process with an rmcp client on its stdio.
pub struct Server {
    pub client: RunningService<RoleClient, ()>,
    pub tools: Vec<Tool>,
    validators: HashMap<String, jsonschema::Validator>,
}

impl Server {
    /// Starts `netstat-mcp` with no arguments (as MCP clients launch it).
    pub async fn start() -> Server {
        Server::start_with(&[], &[]).await
    }

    /// Starts `netstat-mcp <args>` with extra environment variables.
    pub async fn start_with(args: &[&str], env: &[(&str, OsString)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::start_command(cmd).await
    }

    /// Starts the server with a command of the test's own (e.g. `ip netns exec NS netstat-mcp`).
    pub async fn start_command(mut cmd: Command) -> Server {
        cmd.kill_on_drop(true);
        let transport = TokioChildProcess::new(cmd).expect("spawn netstat-mcp");
        let client = within("initialize", ().serve(transport))
            .await
            .expect("MCP initialize");
        let tools = within("tools/list", client.list_all_tools())
            .await
            .expect("tools/list");
        let validators = tools
            .iter()
            .map(|t| {
                let schema = Value::Object(
                    t.output_schema
                        .as_deref()
                        .cloned()
                        .unwrap_or_else(|| panic!("{} has no outputSchema", t.name)),
                );
                let v = jsonschema::validator_for(&schema).unwrap_or_else(|e| {
                    panic!("{}: outputSchema is not a valid schema: {e}", t.name)
                });
                (t.name.to_string(), v)
            })
            .collect();
        Server {
            client,
            tools,
            validators,
        }
    }

    /// `tools/call` as the client sends it; JSON-RPC errors come back as `Err`.
    pub async fn call_raw(&self, name: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let mut params = CallToolRequestParams::new(name.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        within(name, self.client.call_tool(params)).await
    }

    /// Calls a tool, checks the result as [`Server::call`] does, and also returns the size in
    /// bytes of its text block (what a client hands to the model).
    pub async fn call_sized(&self, name: &str, args: Value) -> (Value, usize) {
        let result = self
            .call_raw(name, args.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}({args}) failed at the JSON-RPC level: {e}"));
        let size = result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map_or(0, |t| t.text.len());
        (self.check(name, &result), size)
    }

    /// Calls a tool and checks the result's shape: `structuredContent` validates against the
    /// tool's `outputSchema`, the first text block is the same JSON, and `isError` agrees with
    /// `success`. Returns the structured content.
    pub async fn call(&self, name: &str, args: Value) -> Value {
        let result = self
            .call_raw(name, args.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}({args}) failed at the JSON-RPC level: {e}"));
        self.check(name, &result)
    }

    /// The checks of [`Server::call`] on a result in hand.
    pub fn check(&self, name: &str, result: &CallToolResult) -> Value {
        let structured = result
            .structured_content
            .clone()
            .unwrap_or_else(|| panic!("{name}: no structuredContent in {result:?}"));
        let validator = self.validators.get(name).expect("known tool");
        let errors: Vec<String> = validator
            .iter_errors(&structured)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: structuredContent does not match outputSchema: {errors:?}\n{structured}"
        );
        let text = result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_else(|| panic!("{name}: no text block"));
        let from_text: Value = serde_json::from_str(&text).expect("text block is JSON");
        assert_eq!(
            from_text, structured,
            "{name}: text and structuredContent differ"
        );
        let success = structured["success"].as_bool().expect("success is a bool");
        assert_eq!(
            result.is_error,
            Some(!success),
            "{name}: isError must be the opposite of success"
        );
        if !success {
            assert!(structured["data"].is_null(), "{name}: error with data");
        }
        structured
    }

    pub async fn stop(self) {
        let _ = within("close", self.client.cancel()).await;
    }
}

/// A `netstat-mcp` child driven with raw JSON-RPC lines.
pub struct Raw {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Raw {
    /// Starts the server and completes the MCP handshake.
    pub async fn start(env: &[(&str, OsString)]) -> Raw {
        let mut cmd = Command::new(bin());
        // Verbose logging, discarded: every stdout line must still be a JSON-RPC message.
        cmd.env("RUST_LOG", "trace");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Raw::start_command(cmd).await
    }

    /// Starts the server with this command (e.g. inside a network namespace) and completes
    /// the MCP handshake. stderr is discarded.
    pub async fn start_command(mut cmd: Command) -> Raw {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn netstat-mcp");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut raw = Raw {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        raw.send(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"}
            }
        }))
        .await;
        let init = raw.response(0).await;
        assert_eq!(init["result"]["serverInfo"]["name"], "netstat-mcp");
        raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        raw
    }

    pub async fn send(&mut self, message: Value) {
        self.send_line(&message.to_string()).await;
    }

    pub async fn send_line(&mut self, line: &str) {
        self.send_bytes(line.as_bytes()).await;
    }

    /// Writes one line of any bytes (not necessarily UTF-8 or JSON).
    pub async fn send_bytes(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        within("write", async {
            stdin.write_all(line).await.expect("write");
            stdin.write_all(b"\n").await.expect("write");
            stdin.flush().await.expect("flush");
        })
        .await;
    }

    /// Reads messages until the response with this id; returns it. Panics on EOF.
    pub async fn response(&mut self, id: impl Into<Value>) -> Value {
        let id = id.into();
        let (found, seen) = self.read_until(&id).await;
        found.unwrap_or_else(|| panic!("no response with id {id}; saw {seen:?}"))
    }

    /// Reads messages until the response with this id or EOF; returns it (if any) and the ids
    /// of every response seen on the way.
    pub async fn read_until(&mut self, id: &Value) -> (Option<Value>, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            let line = within("read", self.lines.next_line())
                .await
                .expect("read stdout");
            let Some(line) = line else {
                return (None, seen);
            };
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"));
            let got = message.get("id").cloned().unwrap_or(Value::Null);
            seen.push(got.clone());
            if &got == id {
                return (Some(message), seen);
            }
        }
    }

    /// The next message from the server (response or notification); `None` at EOF.
    pub async fn next_message(&mut self) -> Option<Value> {
        let line = within("read", self.lines.next_line())
            .await
            .expect("read stdout")?;
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}")),
        )
    }

    /// Calls a tool and returns its result's `structuredContent` (panics on a JSON-RPC error).
    pub async fn call_tool(&mut self, id: i64, name: &str, args: Value) -> Value {
        self.send(json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": args}
        }))
        .await;
        let response = self.response(id).await;
        response["result"]["structuredContent"].clone()
    }

    /// Reads messages until the response with this id; returns it and every message before it
    /// (notifications included).
    pub async fn response_and_before(&mut self, id: impl Into<Value>) -> (Value, Vec<Value>) {
        let id = id.into();
        let mut before = Vec::new();
        loop {
            let line = within("read", self.lines.next_line())
                .await
                .expect("read stdout")
                .unwrap_or_else(|| panic!("EOF before the response with id {id}"));
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"));
            if message.get("id") == Some(&id) {
                return (message, before);
            }
            before.push(message);
        }
    }

    /// Closes the server's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for the server to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        within("exit", self.child.wait()).await.expect("wait")
    }
}

/// A directory holding one fake `netstat` script, for `PATH`.
pub struct FakeNetstat {
    pub dir: tempfile::TempDir,
}

impl FakeNetstat {
    /// A `netstat` that runs this shell script body.
    pub fn new(body: &str) -> FakeNetstat {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("netstat");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeNetstat { dir }
    }

    /// `PATH` with this directory first, then the system directories (scripts need `sleep`).
    pub fn path_env(&self) -> (&'static str, OsString) {
        let mut path = self.dir.path().as_os_str().to_owned();
        path.push(":/usr/bin:/bin");
        ("PATH", path)
    }
}

/// An empty directory for `PATH`: no `netstat` binary at all.
pub fn empty_path() -> (tempfile::TempDir, (&'static str, OsString)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = ("PATH", dir.path().as_os_str().to_owned());
    (dir, env)
}

/// Whether the process is gone (or a zombie waiting to be reaped).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
    }
}

/// Polls `cond` every 20 ms for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
