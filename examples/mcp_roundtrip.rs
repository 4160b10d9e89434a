//! Times MCP `tools/call` round trips against a running netstat-mcp server over stdio.
//!
//! ```text
//! mcp_roundtrip [--server PATH] [--server-arg ARG]... --tool NAME [--args JSON]
//!               [--calls K] [--warmup W]
//! ```
//!
//! Starts the server once (default `target/release/netstat-mcp` next to this example, with no
//! arguments: the stdio MCP server), initializes the session, makes W warm-up calls, then times
//! K calls of the tool with the given JSON object as arguments. Prints one JSON object on stdout:
//! `{"tool", "arguments", "calls", "median_ms", "p90_ms", "min_ms", "max_ms", "rows",
//! "text_bytes"}` where `rows` is `data.connection_count` (query_network_connections),
//! `data.occupation_count` (check_port_occupation) or `data.host_count` (list_hosts) from the
//! last result, so the benchmark can check the server saw the same sockets as the other tools,
//! and `text_bytes` is the size of that result's text block (what a client hands to a model).
//! A tool error (`isError: true`) or a transport error fails the run with exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, Value, json};

/// Upper bound on one call, so a hung server cannot hang the benchmark.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
enum RoundtripError {
    #[error("bad argument {arg}: {reason} (see the usage at the top of examples/mcp_roundtrip.rs)")]
    Usage { arg: String, reason: String },
    #[error("cannot start the MCP server {path}: {source}; build it with `cargo build --release`")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MCP session with {path} failed during {stage}: {detail}")]
    Session {
        path: String,
        stage: &'static str,
        detail: String,
    },
    #[error("tool {tool} returned an error: {detail}")]
    ToolError { tool: String, detail: String },
}

#[derive(Debug)]
struct Options {
    server: PathBuf,
    server_args: Vec<String>,
    tool: String,
    arguments: Map<String, Value>,
    calls: usize,
    warmup: usize,
}

fn usage(arg: &str, reason: impl Into<String>) -> RoundtripError {
    RoundtripError::Usage {
        arg: arg.to_string(),
        reason: reason.into(),
    }
}

fn default_server() -> PathBuf {
    // target/release/examples/mcp_roundtrip -> target/release/netstat-mcp
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("netstat-mcp")))
        .unwrap_or_else(|| PathBuf::from("netstat-mcp"))
}

fn parse_args(args: &[String]) -> Result<Options, RoundtripError> {
    let mut opts = Options {
        server: default_server(),
        server_args: Vec::new(),
        tool: String::new(),
        arguments: Map::new(),
        calls: 50,
        warmup: 5,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| usage(arg, "a value is required"));
        match arg.as_str() {
            "--server" => opts.server = PathBuf::from(value()?),
            "--server-arg" => opts.server_args.push(value()?.clone()),
            "--tool" => opts.tool = value()?.clone(),
            "--args" => {
                let text = value()?;
                opts.arguments = match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(map)) => map,
                    Ok(_) => return Err(usage(arg, "must be a JSON object")),
                    Err(e) => return Err(usage(arg, format!("not JSON: {e}"))),
                };
            }
            "--calls" => opts.calls = value()?.parse().map_err(|e| usage(arg, format!("{e}")))?,
            "--warmup" => opts.warmup = value()?.parse().map_err(|e| usage(arg, format!("{e}")))?,
            other => return Err(usage(other, "unknown argument")),
        }
    }
    if opts.tool.is_empty() {
        return Err(usage("--tool", "required"));
    }
    if opts.calls == 0 {
        return Err(usage("--calls", "must be at least 1"));
    }
    Ok(opts)
}

/// The `rows` figure for the count check, read from the structured result.
fn rows(result: &CallToolResult) -> Option<u64> {
    let data = result.structured_content.as_ref()?.get("data")?;
    ["connection_count", "occupation_count", "host_count"]
        .iter()
        .find_map(|key| data.get(*key).and_then(Value::as_u64))
}

/// The size of a result's first text block.
fn text_bytes(result: &CallToolResult) -> Option<usize> {
    Some(result.content.first()?.as_text()?.text.len())
}

/// The value at quantile `q` (0..=1) of sorted samples, nearest-rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(opts: &Options) -> Result<Value, RoundtripError> {
    let path = opts.server.display().to_string();
    let mut command = tokio::process::Command::new(&opts.server);
    command.args(&opts.server_args);
    let transport = TokioChildProcess::new(command).map_err(|source| RoundtripError::Spawn {
        path: path.clone(),
        source,
    })?;
    let session_err = |stage: &'static str| {
        let path = path.clone();
        move |e: String| RoundtripError::Session {
            path,
            stage,
            detail: e,
        }
    };
    let client = ().serve(transport).await.map_err(|e| session_err("initialize")(e.to_string()))?;

    let params =
        CallToolRequestParams::new(opts.tool.clone()).with_arguments(opts.arguments.clone());
    let mut samples = Vec::with_capacity(opts.calls);
    let mut last: Option<CallToolResult> = None;
    for i in 0..opts.warmup + opts.calls {
        let start = Instant::now();
        let result = tokio::time::timeout(CALL_TIMEOUT, client.call_tool(params.clone()))
            .await
            .map_err(|_| session_err("tools/call")(format!("no answer in {CALL_TIMEOUT:?}")))?
            .map_err(|e| session_err("tools/call")(e.to_string()))?;
        let elapsed = start.elapsed();
        if result.is_error == Some(true) {
            let detail = serde_json::to_string(&result.content).unwrap_or_default();
            return Err(RoundtripError::ToolError {
                tool: opts.tool.clone(),
                detail,
            });
        }
        if i >= opts.warmup {
            samples.push(elapsed.as_secs_f64() * 1000.0);
        }
        last = Some(result);
    }
    let _ = client.cancel().await;

    samples.sort_by(f64::total_cmp);
    Ok(json!({
        "tool": opts.tool,
        "arguments": Value::Object(opts.arguments.clone()),
        "calls": samples.len(),
        "median_ms": quantile(&samples, 0.5),
        "p90_ms": quantile(&samples, 0.9),
        "min_ms": samples.first().copied(),
        "max_ms": samples.last().copied(),
        "rows": last.as_ref().and_then(rows),
        "text_bytes": last.as_ref().and_then(text_bytes),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match parse_args(&args) {
        Ok(opts) => run(&opts).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp_roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_uses_nearest_rank() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(quantile(&s, 0.5), 5.0);
        assert_eq!(quantile(&s, 0.9), 9.0);
        assert_eq!(quantile(&[3.0], 0.9), 3.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn arguments_must_be_an_object() {
        let args: Vec<String> = ["--tool", "x", "--args", "[1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            matches!(parse_args(&args), Err(RoundtripError::Usage { arg, .. }) if arg == "--args")
        );
    }
}
