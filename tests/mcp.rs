//! The MCP server as clients meet it: the built binary as a child process, spoken to with
//! rmcp's client (and raw JSON-RPC where the wire matters), against the real kernel sockets of
//! this machine. In-process tests with fixture sources cover what a live host cannot stage
//! (a collector that fails, or never finishes).

use std::ffi::OsString;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use netstat_mcp::error::Error;
use netstat_mcp::mcp::{self, NetstatServer};
use netstat_mcp::query::Service;
use netstat_mcp::source::{BoxFuture, NoRemotes, OwnerCoverage, Snapshot, Source, Want};
use rmcp::ServiceExt;
use rmcp::model::ErrorCode;
use rmcp::service::ServiceError;
use serde_json::{Value, json};

use crate::support::mcp_client::{
    FakeNetstat, Raw, STEP, Server, empty_path, eventually, own_comm, process_gone, within,
};

fn me() -> u64 {
    u64::from(std::process::id())
}

fn listener() -> (TcpListener, u16) {
    let l = crate::support::net::tcp_listener("127.0.0.1");
    let port = l.local_addr().expect("local addr").port();
    (l, port)
}

fn fake_path(fake: &FakeNetstat) -> (&'static str, OsString) {
    fake.path_env()
}

// ---------------------------------------------------------------------------------------------
// Handshake and tools/list

#[tokio::test]
async fn initialize_names_the_server_and_says_what_it_is_for() {
    let server = Server::start().await;
    let info = server.client.peer_info().expect("peer info");
    let implementation = info.server_info.clone().expect("serverInfo");
    assert_eq!(implementation.name, "netstat-mcp");
    assert_eq!(implementation.version, env!("CARGO_PKG_VERSION"));
    let instructions = info.instructions.clone().expect("instructions");
    // Every tool is named in the instructions.
    let tools = within("tools/list", server.client.list_all_tools())
        .await
        .expect("tools/list");
    for tool in &tools {
        assert!(
            instructions.contains(&*tool.name),
            "{}: {instructions}",
            tool.name
        );
    }
    assert!(info.capabilities.tools.is_some());
    server.stop().await;
}

#[tokio::test]
async fn serve_subcommand_serves_mcp_too() {
    let server = Server::start_with(&["serve"], &[]).await;
    assert_eq!(server.tools.len(), 8);
    server.stop().await;
}

#[tokio::test]
async fn tools_list_shows_titles_annotations_and_schemas() {
    let server = Server::start().await;
    let mut names: Vec<&str> = server.tools.iter().map(|t| t.name.as_ref()).collect();
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
    for t in &server.tools {
        let name = t.name.as_ref();
        assert!(t.title.as_deref().is_some_and(|s| !s.is_empty()), "{name}");
        let description = t.description.as_deref().unwrap_or_default();
        assert!(description.len() > 200, "{name}: description too thin");
        let a = t.annotations.clone().expect("annotations");
        assert_eq!(a.read_only_hint, Some(true), "{name}");
        assert_eq!(a.destructive_hint, Some(false), "{name}");
        assert_eq!(a.idempotent_hint, Some(true), "{name}");
        // Open world: the tools that can reach remote hosts.
        let remote = matches!(
            name,
            "query_network_connections"
                | "check_port_occupation"
                | "watch_connections"
                | "connection_health"
                | "traffic"
        );
        assert_eq!(a.open_world_hint, Some(remote), "{name}");
        let input = Value::Object((*t.input_schema).clone());
        assert_eq!(input["type"], "object", "{name}");
        for (field, schema) in input["properties"].as_object().expect("properties") {
            assert!(schema["description"].is_string(), "{name}.{field}");
            // Portable for every client: a single JSON type and no `format` keyword outside
            // the JSON Schema standard set (older clients cannot coerce `["integer","null"]`
            // or know `uint16`).
            assert!(schema["type"].is_string(), "{name}.{field}: {schema}");
            assert_no_custom_format(schema, &format!("{name}.{field}"));
        }
        jsonschema::validator_for(&input).expect("inputSchema is a valid JSON Schema");
        let output = Value::Object((*t.output_schema.clone().expect("outputSchema")).clone());
        assert_eq!(output["type"], "object", "{name}");
        assert_eq!(
            output["required"],
            json!(["success", "message", "data"]),
            "{name}"
        );
    }
    // Permission caveat for pid/program in the tools that return them.
    for t in &server.tools {
        let d = t.description.as_deref().unwrap_or_default();
        assert!(d.contains("root"), "{}: no permission caveat", t.name);
    }
    let q = server
        .tools
        .iter()
        .find(|t| t.name == "query_network_connections")
        .expect("tool");
    let props = Value::Object((*q.input_schema).clone())["properties"].clone();
    assert_eq!(props["proto"]["enum"], json!(["tcp", "udp", "all"]));
    assert_eq!(props["limit"]["default"], 50);
    for p in ["port", "local_port", "remote_port"] {
        assert_eq!(props[p]["minimum"], 1, "{p}");
        assert_eq!(props[p]["maximum"], 65535, "{p}");
    }
    let c = server
        .tools
        .iter()
        .find(|t| t.name == "check_port_occupation")
        .expect("tool");
    let schema = Value::Object((*c.input_schema).clone());
    assert_eq!(schema["required"], json!(["port"]));
    assert_eq!(schema["properties"]["proto"]["enum"], json!(["tcp", "udp"]));
    server.stop().await;
}

/// The `format` values JSON Schema 2020-12 defines.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn assert_no_custom_format(schema: &Value, at: &str) {
    match schema {
        Value::Object(o) => {
            if let Some(f) = o.get("format") {
                let f = f.as_str().unwrap_or_default();
                assert!(STANDARD_FORMATS.contains(&f), "{at}: format {f:?}");
            }
            for (k, v) in o {
                assert_no_custom_format(v, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_no_custom_format(v, at)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Good inputs against this machine's real sockets

#[tokio::test]
async fn port_check_names_this_test_process_as_the_holder() {
    let (l, port) = listener();
    let server = Server::start().await;
    let out = server
        .call("check_port_occupation", json!({"port": port}))
        .await;
    assert_eq!(out["success"], true, "{out}");
    let data = &out["data"];
    assert_eq!(data["is_occupied"], true);
    assert_eq!(data["check_port"], port);
    assert_eq!(data["proto"], "tcp");
    assert_eq!(data["host"], "localhost");
    let occupations = data["occupations"].as_array().expect("occupations");
    let mine = occupations
        .iter()
        .find(|o| o["state"] == "LISTEN")
        .unwrap_or_else(|| panic!("no LISTEN socket in {out}"));
    assert_eq!(mine["pid"], me());
    assert_eq!(mine["program"], own_comm());
    assert_eq!(mine["local_ip"], "127.0.0.1");
    assert_eq!(data["occupation_count"], 1, "{out}");
    assert_eq!(data["owners"][0]["pid"], me());
    assert_eq!(data["owners"][0]["states"], json!({"LISTEN": 1}));
    let message = out["message"].as_str().expect("message");
    assert_eq!(
        message,
        format!(
            "Port {port}/TCP on local host is occupied by: {} (pid {}; LISTEN 1)",
            own_comm(),
            me()
        )
    );

    drop(l);
    let out = server
        .call(
            "check_port_occupation",
            json!({"port": port, "proto": "tcp"}),
        )
        .await;
    // The listener never accepted anything, so nothing lingers on the port.
    assert_eq!(out["data"]["is_occupied"], false, "{out}");
    assert_eq!(
        out["message"],
        format!("Port {port}/TCP on local host is not occupied")
    );
    server.stop().await;
}

#[tokio::test]
async fn udp_port_check_and_listing() {
    let (udp, _) = crate::support::net::udp_socket();
    let port = udp.local_addr().expect("addr").port();
    let server = Server::start().await;
    let out = server
        .call(
            "check_port_occupation",
            json!({"port": port, "proto": "udp", "host": "localhost"}),
        )
        .await;
    assert_eq!(out["data"]["is_occupied"], true, "{out}");
    assert_eq!(out["data"]["occupations"][0]["pid"], me());
    assert_eq!(out["data"]["occupations"][0]["protocol"], "udp");
    // Asked as TCP, the UDP socket does not count. (Another test's TCP socket may hold the
    // same number at this moment: TCP and UDP ports are separate, so only check the UDP one
    // is absent.)
    let out = server
        .call("check_port_occupation", json!({"port": port}))
        .await;
    let occupations = out["data"]["occupations"].as_array().expect("occupations");
    assert!(
        occupations
            .iter()
            .all(|o| o["protocol"].as_str().is_some_and(|p| p.starts_with("tcp"))),
        "{out}"
    );

    let out = server
        .call(
            "query_network_connections",
            json!({"proto": "udp", "local_port": port}),
        )
        .await;
    let rows = out["data"]["connections"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["state"], Value::Null);
    assert_eq!(rows[0]["foreign_port"], Value::Null);
    assert_eq!(rows[0]["pid"], me());
    server.stop().await;
}

#[tokio::test]
async fn listing_filters_and_limit() {
    let (_l1, p1) = listener();
    let (_l2, p2) = listener();
    let server = Server::start().await;

    let out = server
        .call(
            "query_network_connections",
            json!({"proto": "tcp", "state": "listen", "local_port": p1}),
        )
        .await;
    let data = &out["data"];
    assert_eq!(data["connection_count"], 1, "{out}");
    let row = &data["connections"][0];
    assert_eq!(row["protocol"], "tcp");
    assert_eq!(row["local_port"], p1);
    assert_eq!(row["state"], "LISTEN");
    assert_eq!(row["pid"], me());
    assert_eq!(row["program"], own_comm());
    assert_eq!(data["filter"]["state"], "LISTEN");
    assert_eq!(data["filter"]["limit"], 50);
    assert_eq!(data["next_cursor"], Value::Null);
    assert_eq!(data["summary"]["by_state"], json!({"LISTEN": 1}));
    assert_eq!(data["summary"]["listeners"][0]["local_port"], p1);
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Successfully obtained local TCP connections, total 1"),
        "{out}"
    );

    // This process holds both listeners: the pid filter finds them, limit cuts the rows.
    let out = server
        .call(
            "query_network_connections",
            json!({"pid": me(), "state": "LISTENING", "proto": "tcp", "limit": 1}),
        )
        .await;
    let data = &out["data"];
    let count = data["connection_count"].as_u64().expect("count");
    assert!(count >= 2, "{out}");
    assert_eq!(data["connections"].as_array().map(Vec::len), Some(1));
    assert_eq!(data["truncated"], true);
    let out = server
        .call(
            "query_network_connections",
            json!({"program": own_comm().to_uppercase(), "proto": "tcp", "limit": 0}),
        )
        .await;
    let ports: Vec<u64> = out["data"]["connections"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["local_port"].as_u64())
        .collect();
    assert!(
        ports.contains(&u64::from(p1)) && ports.contains(&u64::from(p2)),
        "{out}"
    );
    assert_eq!(out["data"]["truncated"], false);

    // Everything, default arguments: a bounded answer that validates.
    let out = server.call("query_network_connections", json!({})).await;
    assert_eq!(out["data"]["filter"]["proto"], "all");
    assert!(out["data"]["connections"].as_array().expect("rows").len() <= 50);
    // Null arguments mean "not given".
    let out = server
        .call(
            "query_network_connections",
            json!({"proto": null, "state": null, "local_port": p2}),
        )
        .await;
    assert_eq!(out["data"]["connection_count"], 1, "{out}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: tool errors that name the parameter; the server keeps serving

#[tokio::test]
async fn bad_inputs_are_clear_tool_errors_and_the_server_keeps_serving() {
    let (_l, port) = listener();
    let server = Server::start().await;
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "check_port_occupation",
            json!({"port": 0}),
            &["port", "1 and 65535"],
        ),
        (
            "check_port_occupation",
            json!({"port": 65536}),
            &["port", "65536", "1 and 65535"],
        ),
        (
            "check_port_occupation",
            json!({"port": "80"}),
            &["port", "\"80\"", "integer"],
        ),
        (
            "check_port_occupation",
            json!({"port": 80.5}),
            &["port", "80.5"],
        ),
        ("check_port_occupation", json!({"port": -1}), &["port"]),
        ("check_port_occupation", json!({}), &["port", "required"]),
        (
            "check_port_occupation",
            json!({"port": 80, "proto": "icmp"}),
            &["proto", "icmp", "tcp, udp"],
        ),
        (
            "check_port_occupation",
            json!({"port": 80, "proto": "all"}),
            &["proto", "tcp, udp"],
        ),
        (
            "check_port_occupation",
            json!({"port": 80, "ssh_port": 0}),
            &["ssh_port"],
        ),
        (
            "check_port_occupation",
            json!({"port": 80, "colour": "red"}),
            &["colour"],
        ),
        (
            "query_network_connections",
            json!({"proto": "icmp"}),
            &["proto", "tcp, udp, all"],
        ),
        ("query_network_connections", json!({"proto": 6}), &["proto"]),
        (
            "query_network_connections",
            json!({"proto": "udp", "state": "TIME_WAIT"}),
            &["state", "udp", "TCP only"],
        ),
        // `port` is the SSH port: for the local machine it points to local_port.
        (
            "query_network_connections",
            json!({"port": 22}),
            &["'port'", "SSH port", "local_port"],
        ),
        (
            "query_network_connections",
            json!({"ssh_port": 22}),
            &["'ssh_port'", "local_port"],
        ),
        (
            "query_network_connections",
            json!({"cursor": "not-a-cursor"}),
            &["'cursor'", "next_cursor"],
        ),
        (
            "netstat",
            json!({"args": ["-tttttttttttttttttttttttttttttttttttttttttttttt"]}),
            &["args", "at most 32 characters"],
        ),
        (
            "list_hosts",
            json!({"verbose": true}),
            &["verbose", "no parameters"],
        ),
        (
            "query_network_connections",
            json!({"state": "SLEEPING"}),
            &["state", "SLEEPING", "ESTABLISHED"],
        ),
        (
            "query_network_connections",
            json!({"local_port": 70000}),
            &["local_port"],
        ),
        (
            "query_network_connections",
            json!({"remote_port": "22"}),
            &["remote_port"],
        ),
        ("query_network_connections", json!({"port": 0}), &["port"]),
        (
            "query_network_connections",
            json!({"limit": -5}),
            &["limit"],
        ),
        ("query_network_connections", json!({"pid": 0}), &["pid"]),
        ("query_network_connections", json!({"pid": true}), &["pid"]),
        (
            "netstat",
            json!({"args": ["-r"]}),
            &["args", "'-r'", "-tulpn"],
        ),
        ("netstat", json!({"args": ["-x"]}), &["args", "'-x'"]),
        ("netstat", json!({"args": [";ls"]}), &["args", "';ls'"]),
        ("netstat", json!({"args": ["$(id)"]}), &["args", "'$(id)'"]),
        (
            "netstat",
            json!({"args": ["-t", "-an;id"]}),
            &["args", "'-an;id'"],
        ),
        ("netstat", json!({"args": "-tulpn"}), &["args", "array"]),
        ("netstat", json!({"args": [80]}), &["args"]),
    ];
    for (tool, args, needles) in cases {
        let out = server.call(tool, args.clone()).await;
        assert_eq!(out["success"], false, "{tool}({args}) should fail: {out}");
        let message = out["message"].as_str().expect("message");
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{tool}({args}): message {message:?} lacks {needle:?}"
            );
        }
        // Still serving, and still right.
        let ok = server
            .call("check_port_occupation", json!({"port": port}))
            .await;
        assert_eq!(
            ok["data"]["is_occupied"], true,
            "after {tool}({args}): {ok}"
        );
    }

    let out = server
        .call(
            "check_port_occupation",
            json!({"port": 80, "host": "web-9"}),
        )
        .await;
    assert_eq!(
        out["message"],
        "Authentication config for remote host not found: web-9; no remote hosts are configured"
    );
    let out = server
        .call("query_network_connections", json!({"host": "10.1.2.3"}))
        .await;
    assert_eq!(
        out["message"],
        "Authentication config for remote host not found: 10.1.2.3; no remote hosts are configured"
    );
    // A huge argument is never echoed back whole.
    let huge = "h".repeat(100_000);
    let out = server
        .call("query_network_connections", json!({ "host": huge }))
        .await;
    let message = out["message"].as_str().expect("message");
    assert!(message.len() < 300, "{} bytes", message.len());
    server.stop().await;
}

#[tokio::test]
async fn unknown_tool_is_a_jsonrpc_error_and_the_server_keeps_serving() {
    let server = Server::start().await;
    for name in ["nope", "netstat ", "", "query_network_connections;ls"] {
        match server.call_raw(name, json!({})).await {
            Err(ServiceError::McpError(e)) => {
                assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{name:?}");
                assert!(e.message.contains("Unknown tool"), "{}", e.message);
                assert!(e.message.contains("check_port_occupation"), "{}", e.message);
            }
            other => panic!("{name:?}: expected a JSON-RPC error, got {other:?}"),
        }
        let tools = within("tools/list", server.client.list_all_tools())
            .await
            .expect("tools/list after an unknown tool");
        assert_eq!(tools.len(), 8);
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_jsonrpc_errors_and_garbage_is_ignored() {
    let mut raw = Raw::start(&[]).await;
    // Well-formed JSON, wrong shape: a JSON-RPC error for that id.
    raw.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}))
        .await;
    let r = raw.response(1).await;
    assert!(r["error"]["code"].is_i64(), "{r}");
    raw.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "netstat", "arguments": ["-t"]}}))
        .await;
    let r = raw.response(2).await;
    // Params that do not fit tools/call: invalid params (rmcp alone says -32601 "tools/call").
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let text = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("tools/call") && text.contains("arguments"),
        "{r}"
    );
    raw.send(json!({"jsonrpc": "2.0", "id": 3, "method": "no/such/method"}))
        .await;
    let r = raw.response(3).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    // Not JSON at all, no id to read: a parse error with id null; then still serving.
    raw.send_line("this is not json {").await;
    let r = raw.response(Value::Null).await;
    assert_eq!(r["error"]["code"], -32700, "{r}");
    raw.send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                    "params": {"name": "check_port_occupation", "arguments": {"port": 80.5}}}))
        .await;
    let r = raw.response(4).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["structuredContent"]["success"], false, "{r}");
    raw.close_stdin();
    assert!(raw.wait().await.success());
}

#[tokio::test]
async fn every_broken_line_with_a_readable_id_is_answered_with_that_id() {
    let mut raw = Raw::start(&[]).await;
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let lines: Vec<(Vec<u8>, Value, i64)> = vec![
        // Invalid UTF-8 in a string.
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\xfe\"}}".to_vec(),
            json!(11),
            -32700,
        ),
        // A lone surrogate.
        (
            br#"{"jsonrpc":"2.0","id":"s12","method":"tools/call","params":{"name":"\ud800"}}"#.to_vec(),
            json!("s12"),
            -32700,
        ),
        // Nesting deeper than 128.
        (deep.into_bytes(), json!(13), -32700),
        // A number serde_json cannot hold (so not JSON to it), as the id: no id to answer with.
        (
            br#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.to_vec(),
            Value::Null,
            -32700,
        ),
        // Well-formed, with an id, not a request.
        (
            br#"{"jsonrpc":"2.0","id":14,"method":["ping"]}"#.to_vec(),
            json!(14),
            -32600,
        ),
    ];
    for (line, id, code) in lines {
        raw.send_bytes(&line).await;
        let r = raw.response(id.clone()).await;
        assert_eq!(r["error"]["code"], code, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{r}"
        );
        // Still serving after each.
        raw.send(json!({"jsonrpc": "2.0", "id": 99, "method": "ping"}))
            .await;
        let pong = raw.response(99).await;
        assert!(pong["result"].is_object(), "{pong}");
    }
    // A broken notification (no id) is not answered: the next answer is the ping's.
    raw.send_bytes(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/\xff\"}")
        .await;
    raw.send(json!({"jsonrpc": "2.0", "id": 100, "method": "ping"}))
        .await;
    let (found, seen) = raw.read_until(&json!(100)).await;
    assert!(found.is_some(), "{seen:?}");
    assert_eq!(seen, vec![json!(100)], "only the ping is answered");
    raw.close_stdin();
    assert!(raw.wait().await.success());
}

// ---------------------------------------------------------------------------------------------
// Concurrency, cancellation, EOF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_on_one_connection_are_all_answered_correctly() {
    let listeners: Vec<(TcpListener, u16)> = (0..10).map(|_| listener()).collect();
    let server = Server::start().await;
    let started = Instant::now();
    let calls = (0..100).map(|i| {
        let port = listeners[i % listeners.len()].1;
        let server = &server;
        async move {
            match i % 4 {
                0 => {
                    let out = server
                        .call("check_port_occupation", json!({"port": port}))
                        .await;
                    assert_eq!(out["data"]["check_port"], port, "call {i}: {out}");
                    assert_eq!(out["data"]["is_occupied"], true, "call {i}: {out}");
                    assert_eq!(out["data"]["occupations"][0]["pid"], me(), "call {i}");
                }
                1 => {
                    let out = server
                        .call(
                            "query_network_connections",
                            json!({"proto": "tcp", "local_port": port, "state": "LISTEN"}),
                        )
                        .await;
                    assert_eq!(out["data"]["connection_count"], 1, "call {i}: {out}");
                    assert_eq!(
                        out["data"]["connections"][0]["local_port"], port,
                        "call {i}"
                    );
                    assert_eq!(out["data"]["connections"][0]["pid"], me(), "call {i}");
                }
                2 => {
                    let bad = 65536 + i;
                    let out = server
                        .call("check_port_occupation", json!({"port": bad}))
                        .await;
                    assert_eq!(out["success"], false, "call {i}");
                    let message = out["message"].as_str().unwrap_or_default();
                    assert!(message.contains(&bad.to_string()), "call {i}: {message}");
                }
                _ => {
                    let out = server
                        .call("netstat", json!({"args": [format!("-x{i}")]}))
                        .await;
                    assert_eq!(out["success"], false, "call {i}");
                    let message = out["message"].as_str().unwrap_or_default();
                    assert!(message.contains(&format!("'-x{i}'")), "call {i}: {message}");
                }
            }
        }
    });
    within("100 concurrent calls", join_all(calls)).await;
    eprintln!(
        "100 concurrent tools/call answered in {:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn cancelled_request_stops_the_running_netstat() {
    let fake = FakeNetstat::new("echo $$ > \"$NETSTAT_PIDFILE\"\nexec sleep 30");
    let pidfile = fake.dir.path().join("pid");
    let mut raw = Raw::start(&[
        fake_path(&fake),
        ("NETSTAT_PIDFILE", pidfile.clone().into_os_string()),
    ])
    .await;
    raw.send(
        json!({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
                    "params": {"name": "netstat", "arguments": {"args": ["-tn"]}}}),
    )
    .await;
    let started = eventually(STEP, || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    })
    .await;
    assert!(started, "the fake netstat never started");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert!(!process_gone(pid), "netstat ended before the cancellation");
    raw.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": "slow", "reason": "test"}}),
    )
    .await;
    // The cancelled call's netstat is killed. (Had the cancellation been ignored, the 3 s
    // timeout would kill it as well, but then the call would be answered: checked below.)
    assert!(
        eventually(STEP, || process_gone(pid)).await,
        "netstat {pid} still runs after the request was cancelled"
    );
    raw.send(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
        .await;
    let (pong, seen) = raw.read_until(&json!(9)).await;
    assert!(pong.is_some(), "no ping answer; saw {seen:?}");
    assert!(
        !seen.contains(&json!("slow")),
        "a cancelled request was answered"
    );
    raw.close_stdin();
    assert!(raw.wait().await.success());
}

#[tokio::test]
async fn stdin_eof_finishes_in_flight_requests_then_exits_zero() {
    let fake = FakeNetstat::new("sleep 1\necho \"slow netstat $*\"");
    let mut raw = Raw::start(&[fake_path(&fake)]).await;
    raw.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "netstat", "arguments": {"args": ["-an"]}}}))
        .await;
    raw.close_stdin();
    let r = raw.response(7).await;
    let out = &r["result"]["structuredContent"];
    assert_eq!(out["success"], true, "{r}");
    assert_eq!(out["data"]["output"], "slow netstat -an\n");
    let status = raw.wait().await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn eof_before_initialize_exits_zero() {
    let status = within(
        "exit",
        tokio::process::Command::new(crate::support::mcp_client::bin())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run");
    assert_eq!(status.status.code(), Some(0));
    assert!(
        status.stdout.is_empty(),
        "stdout must carry only the protocol"
    );
}

// ---------------------------------------------------------------------------------------------
// The netstat tool

#[tokio::test]
async fn netstat_passes_allowed_flags_verbatim_without_a_shell() {
    let fake = FakeNetstat::new("for a in \"$@\"; do echo \"[$a]\"; done");
    let server = Server::start_with(&[], &[fake_path(&fake)]).await;
    let out = server
        .call("netstat", json!({"args": ["-tulpn", "-a", "--help"]}))
        .await;
    assert_eq!(out["success"], true, "{out}");
    assert_eq!(out["data"]["source"], "binary");
    assert_eq!(out["data"]["output"], "[-tulpn]\n[-a]\n[--help]\n");
    assert_eq!(out["data"]["command"], "netstat -tulpn -a --help");
    assert_eq!(out["data"]["exit_code"], 0);
    let out = server.call("netstat", json!({})).await;
    assert_eq!(out["data"]["output"], "", "{out}");
    server.stop().await;
}

#[tokio::test]
async fn netstat_warning_about_unidentified_processes_says_how_to_fix_it() {
    let fake = FakeNetstat::new(
        "echo '(Not all processes could be identified, non-owned process info' >&2\n\
         echo ' will not be shown, you would have to be root to see it all.)' >&2\n\
         echo 'Active Internet connections (only servers)'",
    );
    let server = Server::start_with(&[], &[fake_path(&fake)]).await;
    let out = server.call("netstat", json!({"args": ["-tlpn"]})).await;
    assert_eq!(out["success"], true, "{out}");
    assert!(
        out["data"]["stderr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("(Not all processes could be identified"),
        "{out}"
    );
    let message = out["message"].as_str().unwrap_or_default();
    assert!(message.contains("CAP_SYS_PTRACE"), "{message}");
    // Without -p the same warning is not about the PID column.
    let out = server.call("netstat", json!({"args": ["-tln"]})).await;
    let message = out["message"].as_str().unwrap_or_default();
    assert!(!message.contains("CAP_SYS_PTRACE"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn netstat_failure_and_timeout_are_tool_errors() {
    let failing = FakeNetstat::new("echo 'netstat: no support for AF INET' >&2\nexit 3");
    let server = Server::start_with(&[], &[fake_path(&failing)]).await;
    let out = server.call("netstat", json!({"args": ["-t"]})).await;
    assert_eq!(out["success"], false);
    let message = out["message"].as_str().unwrap_or_default();
    assert!(message.contains("no support for AF INET"), "{message}");
    assert!(message.contains('3'), "{message}");
    server.stop().await;

    let hanging = FakeNetstat::new("echo $$ > \"$NETSTAT_PIDFILE\"\nexec sleep 30");
    let pidfile = hanging.dir.path().join("pid");
    let server = Server::start_with(
        &[],
        &[
            fake_path(&hanging),
            ("NETSTAT_PIDFILE", pidfile.clone().into_os_string()),
        ],
    )
    .await;
    // The fake sleeps 30 s: only the runner's 3 s timeout ends the call this way.
    let out = server.call("netstat", json!({"args": ["-an"]})).await;
    assert_eq!(out["success"], false);
    let message = out["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not finish within 3 s"), "{message}");
    assert!(!message.contains("add -n"), "-n was given: {message}");
    // Without -n netstat looks names up, the usual reason it is slow: the message says so.
    let out = server.call("netstat", json!({"args": ["-a"]})).await;
    let message = out["message"].as_str().unwrap_or_default();
    assert!(message.contains("was stopped; add -n"), "{message}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        eventually(STEP, || process_gone(pid)).await,
        "the timed-out netstat {pid} was not killed"
    );
    // Still serving.
    let out = server
        .call("check_port_occupation", json!({"port": 1}))
        .await;
    assert_eq!(out["success"], true);
    server.stop().await;
}

#[tokio::test]
async fn netstat_without_a_binary_renders_the_columns_natively() {
    let (_l, port) = listener();
    let (_dir, path) = empty_path();
    let server = Server::start_with(&[], &[path]).await;
    let out = server.call("netstat", json!({"args": ["-tlnp"]})).await;
    assert_eq!(out["success"], true, "{out}");
    let data = &out["data"];
    assert_eq!(data["source"], "native");
    assert_eq!(data["exit_code"], Value::Null);
    let text = data["output"].as_str().expect("output");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Active Internet connections (only servers)")
    );
    let header = lines.next().unwrap_or_default();
    for column in [
        "Proto",
        "Recv-Q",
        "Send-Q",
        "Local Address",
        "Foreign Address",
        "State",
        "PID/Program name",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let mine = text
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{port} ")))
        .unwrap_or_else(|| panic!("listener {port} missing from:\n{text}"));
    assert!(mine.starts_with("tcp "), "{mine}");
    assert!(mine.contains("LISTEN"), "{mine}");
    // net-tools cuts `pid/program` to 19 characters; the native rendering does the same.
    let owner: String = format!("{}/{}", me(), own_comm())
        .chars()
        .take(19)
        .collect();
    assert!(mine.trim_end().ends_with(&owner), "{mine}");
    // -l: no connected sockets; -t: no UDP.
    assert!(!text.contains("ESTABLISHED"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("udp")), "{text}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no netstat binary"),
        "{out}"
    );
    let help = server.call("netstat", json!({"args": ["--help"]})).await;
    assert!(
        help["data"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("usage: netstat"),
        "{help}"
    );
    server.stop().await;
}

/// The real netstat where the machine has one, else the native rendering: either way this
/// test's listener shows up in netstat's columns.
#[tokio::test]
async fn netstat_lists_a_real_listener() {
    let (_l, port) = listener();
    let server = Server::start().await;
    let out = server.call("netstat", json!({"args": ["-tln"]})).await;
    assert_eq!(out["success"], true, "{out}");
    let has_binary = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("netstat").is_file()));
    let expected = if has_binary { "binary" } else { "native" };
    assert_eq!(out["data"]["source"], expected);
    let text = out["data"]["output"].as_str().expect("output");
    assert!(text.contains("Local Address"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("127.0.0.1:{port} ")) && l.contains("LISTEN")),
        "listener {port} missing from:\n{text}"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// In-process, with fixture sources

/// A source that fails the way a broken host does.
struct Failing;

impl Source for Failing {
    fn collect(&self, _want: Want) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async {
            Err(Error::NoLocalSource {
                detail: "netlink refused (EPERM); /proc/net/tcp unreadable".into(),
            })
        })
    }
}

/// A source that never answers, and reports when its work is dropped.
struct Stuck {
    dropped: tokio::sync::mpsc::UnboundedSender<()>,
}

struct SignalOnDrop(tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Source for Stuck {
    fn collect(&self, _want: Want) -> BoxFuture<'_, Result<Snapshot, Error>> {
        let guard = SignalOnDrop(self.dropped.clone());
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(Snapshot {
                sockets: Vec::new(),
                owners: OwnerCoverage::NotRequested,
                notes: Vec::new(),
                processes: None,
            })
        })
    }
}

async fn in_process(
    source: Arc<dyn Source>,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let (server_end, client_end) = tokio::io::duplex(1 << 16);
    let server = NetstatServer::new(Service::new(source, Arc::new(NoRemotes)));
    tokio::spawn(async move {
        if let Err(e) = mcp::serve(server, server_end).await {
            eprintln!("in-process server: {e}");
        }
    });
    within("initialize", ().serve(client_end))
        .await
        .expect("initialize")
}

#[tokio::test]
async fn collection_failure_is_a_tool_error_with_the_cause() {
    let client = in_process(Arc::new(Failing)).await;
    let tools = within("tools/list", client.list_all_tools())
        .await
        .expect("tools/list");
    for (tool, args) in [
        ("query_network_connections", json!({})),
        ("check_port_occupation", json!({"port": 22})),
    ] {
        let params = rmcp::model::CallToolRequestParams::new(tool)
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        let result = within(tool, client.call_tool(params))
            .await
            .expect("a tool result, not a JSON-RPC error");
        assert_eq!(result.is_error, Some(true));
        let out = result.structured_content.expect("structured");
        let schema = tools
            .iter()
            .find(|t| t.name == tool)
            .and_then(|t| t.output_schema.clone())
            .expect("outputSchema");
        let validator =
            jsonschema::validator_for(&Value::Object((*schema).clone())).expect("valid schema");
        assert!(
            validator.is_valid(&out),
            "{tool}: {out} does not match its outputSchema"
        );
        assert_eq!(out["success"], false);
        assert_eq!(out["data"], Value::Null);
        let message = out["message"].as_str().unwrap_or_default();
        assert!(message.contains("netlink refused"), "{message}");
    }
    let _ = client.cancel().await;
}

#[tokio::test]
async fn cancelling_a_call_drops_the_collection() {
    let (tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let client = in_process(Arc::new(Stuck { dropped: tx })).await;
    let params = rmcp::model::CallToolRequestParams::new("query_network_connections");
    // The client gives up after 300 ms: dropping the call sends notifications/cancelled.
    let gave_up = tokio::time::timeout(Duration::from_millis(300), client.call_tool(params)).await;
    assert!(gave_up.is_err(), "the stuck source answered");
    within("collection dropped", dropped.recv())
        .await
        .expect("the server dropped the collection after the cancellation");
    // The connection still works.
    let tools = within("tools/list", client.list_all_tools())
        .await
        .expect("tools/list");
    assert_eq!(tools.len(), 8);
    let _ = client.cancel().await;
}

#[tokio::test]
async fn list_hosts_names_the_configured_hosts_and_never_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[[remote_hosts]]
name = "web-1"
host = "192.0.2.10"
username = "ops"
password = "Inl1ne-S3cret-0042"

[[remote_hosts]]
name = "db-1"
host = "192.0.2.20"
port = 2222
username = "dba"
password_env = "NM_TEST_DB_PASSWORD"

[[remote_hosts]]
name = "cache-1"
host = "192.0.2.30"
username = "ops"
use_agent = true

[[remote_hosts]]
name = "web-2"
host = "192.0.2.40"
username = "ops"
password_env = "NM_TEST_UNSET_PASSWORD"
"#,
    )
    .expect("write config");
    let server = Server::start_with(
        &["--config", config.to_str().expect("utf-8 path")],
        &[("NM_TEST_DB_PASSWORD", "Env-S3cret-0099".into())],
    )
    .await;
    let (out, size) = server.call_sized("list_hosts", json!({})).await;
    assert!(size < 24 * 1024);
    let text = out.to_string();
    for secret in ["Inl1ne-S3cret-0042", "Env-S3cret-0099"] {
        assert!(!text.contains(secret), "list_hosts leaked a secret: {text}");
    }
    let data = &out["data"];
    assert_eq!(data["host_count"], 3);
    let hosts = data["hosts"].as_array().expect("hosts");
    let names: Vec<&str> = hosts.iter().filter_map(|h| h["name"].as_str()).collect();
    assert_eq!(names, ["web-1", "db-1", "cache-1"]);
    assert_eq!(hosts[1]["port"], 2222);
    assert_eq!(hosts[1]["username"], "dba");
    assert!(
        hosts[0]["auth"]
            .as_str()
            .unwrap_or_default()
            .starts_with("password")
    );
    assert!(
        hosts[2]["auth"]
            .as_str()
            .unwrap_or_default()
            .contains("agent")
    );
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("3 remote host")
    );
    // The entry that cannot be used is listed with why, and the message names it.
    assert_eq!(data["unusable_count"], 1);
    let unusable = &data["unusable"][0];
    assert_eq!(unusable["name"], "web-2");
    assert_eq!(unusable["entry"], "remote_hosts[3] (web-2)");
    let problem = unusable["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("password_env") && problem.contains("NM_TEST_UNSET_PASSWORD"),
        "{problem}"
    );
    assert!(
        out["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 configured host(s) cannot be used: web-2"),
        "{out}"
    );
    assert_eq!(data["truncated"], false);

    // The unknown-host error names the configured hosts, so an agent can pick one.
    let out = server
        .call("query_network_connections", json!({"host": "web-9"}))
        .await;
    assert_eq!(
        out["message"],
        "Authentication config for remote host not found: web-9; configured hosts: web-1, db-1, cache-1"
    );
    server.stop().await;

    // The CLI's `hosts` prints the same rows.
    let cli = std::process::Command::new(crate::support::mcp_client::bin())
        .args([
            "--config",
            config.to_str().expect("utf-8 path"),
            "hosts",
            "--json",
        ])
        .env("NM_TEST_DB_PASSWORD", "Env-S3cret-0099")
        .output()
        .expect("run hosts");
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(!stdout.contains("S3cret"), "{stdout}");
    // --json is exactly what list_hosts returns.
    let answer: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(answer["data"]["hosts"].as_array().map(Vec::len), Some(3));
}

/// The `diagnose_port` prompt over the real stdio: listed with its arguments, rendered with
/// the steps built on the tools, and a bad argument named in a JSON-RPC error.
#[tokio::test]
async fn the_diagnose_port_prompt_is_listed_and_rendered() {
    use rmcp::model::GetPromptRequestParams;
    let server = Server::start().await;
    let info = server.client.peer_info().expect("peer info");
    assert!(
        info.capabilities.prompts.is_some(),
        "the prompts capability is declared"
    );
    let prompts = within("prompts/list", server.client.list_all_prompts())
        .await
        .expect("prompts/list");
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].name, "diagnose_port");
    let args = prompts[0].arguments.clone().expect("arguments");
    let required: Vec<(&str, bool)> = args
        .iter()
        .map(|a| (a.name.as_str(), a.required == Some(true)))
        .collect();
    assert_eq!(
        required,
        vec![("port", true), ("proto", false), ("host", false)]
    );
    let arguments = json!({"port": "8080"}).as_object().unwrap().clone();
    let got = within(
        "prompts/get",
        server
            .client
            .get_prompt(GetPromptRequestParams::new("diagnose_port").with_arguments(arguments)),
    )
    .await
    .expect("prompts/get");
    let text = serde_json::to_string(&got.messages).unwrap();
    for needed in [
        "check_port_occupation",
        "\\\"port\\\": 8080",
        "suggested_ports",
        "dry_run",
    ] {
        assert!(text.contains(needed), "{needed}: {text}");
    }
    let bad = json!({"port": "http"}).as_object().unwrap().clone();
    let err = within(
        "prompts/get bad",
        server
            .client
            .get_prompt(GetPromptRequestParams::new("diagnose_port").with_arguments(bad)),
    )
    .await
    .expect_err("refused");
    match err {
        ServiceError::McpError(e) => {
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
            assert!(e.message.contains("'port'"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}
