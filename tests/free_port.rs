//! `free_port` against real processes this test starts (`examples/listener`), never anything
//! else on the machine: dry runs signal nothing, confirmed runs free the port, a process that
//! traps SIGTERM needs `force`, a prefork family is freed through its parent, pid 1, the
//! server itself, its parent and other users' processes are refused, the user's answer to the
//! elicitation decides, and `SOCK_DESTROY` closes one connection only. Over MCP (stdio and
//! HTTP, with a client that answers elicitations) and the CLI.

use std::ffi::OsString;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation,
};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData as McpError, ServiceExt};
use serde_json::{Value, json};

use crate::support::mcp_client::{
    HttpServer, Server, bin, collect_lines, eventually, process_gone, within,
};
use crate::support::world::Holder;

/// How a test client answers the server's confirmation request; `None`: it does not declare
/// elicitation at all.
#[derive(Clone)]
struct Answerer {
    accept: Option<bool>,
    /// The questions it was asked.
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Answerer {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.accept.is_some() {
            capabilities.elicitation = Some(Default::default());
        }
        ClientConfig::new(capabilities, Implementation::new("free-port-test", "0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let message = match &request {
            ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
            _ => String::new(),
        };
        self.asked.lock().unwrap().push(message);
        Ok(match self.accept {
            Some(true) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirm": true}))
            }
            _ => ElicitResult::new(ElicitationAction::Decline),
        })
    }
}

/// A `netstat-mcp <args>` over stdio with an [`Answerer`], its stderr lines collected.
struct Client {
    service: RunningService<RoleClient, Answerer>,
    asked: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Client {
    async fn start(args: &[&str], accept: Option<bool>, env: &[(&str, OsString)]) -> Client {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(args)
            .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netstat-mcp");
        let lines = collect_lines(stderr.expect("stderr piped"), |_| {});
        let asked = Arc::new(Mutex::new(Vec::new()));
        let answerer = Answerer {
            accept,
            asked: asked.clone(),
        };
        let service = within("initialize", answerer.serve(transport))
            .await
            .expect("MCP initialize");
        Client {
            service,
            asked,
            stderr: lines,
        }
    }

    /// `free_port` with these arguments: the structured answer.
    async fn free_port(&self, args: Value) -> Value {
        let params = CallToolRequestParams::new("free_port")
            .with_arguments(args.as_object().expect("object").clone());
        let result = within("free_port", self.service.call_tool(params))
            .await
            .expect("free_port answered");
        let value = result.structured_content.expect("structuredContent");
        assert_eq!(
            result.is_error,
            Some(!value["success"].as_bool().unwrap()),
            "{value}"
        );
        value
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    async fn stop(self) {
        let _ = within("close", self.service.cancel()).await;
    }
}

/// A listener process of the test's own on a fresh loopback port, with `extra` options.
fn holder(extra: &[&str]) -> (Holder, u16) {
    let mut args = vec!["--tcp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let h = Holder::start(&[], &args);
    let port = h.ports[0];
    (h, port)
}

/// Whether some process has a LISTEN socket on the port (`ss`, the reference).
fn listening(port: u16) -> bool {
    let out = Command::new("ss")
        .args(["-Htln", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[tokio::test]
async fn without_allow_kill_the_tool_is_not_listed_and_a_call_is_refused() {
    let server = Server::start_with(
        &[],
        &[(
            "NETSTAT_MCP_CONFIG",
            OsString::from("/nonexistent/netstat-mcp-test.toml"),
        )],
    )
    .await;
    assert!(server.tools.iter().all(|t| t.name != "free_port"));
    let (h, port) = holder(&[]);
    let err = server
        .call_raw("free_port", json!({"port": port, "dry_run": false}))
        .await
        .expect_err("an unknown tool is a JSON-RPC error");
    let text = err.to_string();
    assert!(text.contains("Unknown tool 'free_port'"), "{text}");
    assert!(
        !text.contains("free_port,") && !text.contains(", free_port"),
        "{text}"
    );
    assert!(!process_gone(h.pid) && listening(port));
    server.stop().await;
}

#[tokio::test]
async fn dry_run_signals_nothing_and_a_confirmed_run_frees_the_port() {
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    let tools = client.service.list_all_tools().await.expect("tools/list");
    let tool = tools
        .iter()
        .find(|t| t.name == "free_port")
        .expect("listed");
    let hints = tool.annotations.clone().expect("annotations");
    assert_eq!(hints.destructive_hint, Some(true));
    assert_eq!(hints.idempotent_hint, Some(false));
    assert_eq!(hints.read_only_hint, Some(false));

    let (h, port) = holder(&[]);
    let dry = client.free_port(json!({"port": port})).await;
    assert_eq!(dry["success"], true, "{dry}");
    let data = &dry["data"];
    assert_eq!(data["dry_run"], true);
    assert_eq!(data["action"], "signal");
    assert_eq!(data["processes"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(data["processes"][0]["pid"], h.pid);
    assert_eq!(data["processes"][0]["signals"], json!(["SIGTERM"]));
    assert!(data["processes"][0]["exited"].is_null());
    assert!(
        dry["message"].as_str().unwrap().starts_with("Dry run"),
        "{dry}"
    );
    // Nothing happened: no question asked, the process and its listener are there.
    assert!(client.asked.lock().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!process_gone(h.pid) && listening(port));
    assert!(!client.log().contains("action:"), "{}", client.log());

    let done = client
        .free_port(json!({"port": port, "dry_run": false}))
        .await;
    assert_eq!(done["success"], true, "{done}");
    let data = &done["data"];
    assert_eq!(data["free"], true, "{done}");
    assert_eq!(data["confirmed_by"], "elicitation");
    assert_eq!(data["processes"][0]["signals"], json!(["SIGTERM"]));
    assert_eq!(data["processes"][0]["exited"], true);
    assert!(process_gone(h.pid));
    assert!(!listening(port));
    let asked = client.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].contains(&format!("pid {}", h.pid)) && asked[0].contains("SIGTERM"),
        "{asked:?}"
    );
    let log = client.log();
    assert!(
        log.contains(&format!("action: sending SIGTERM to pid {}", h.pid))
            && log.contains("asked by the stdio client"),
        "{log}"
    );
    client.stop().await;
}

#[tokio::test]
async fn a_declined_confirmation_signals_nothing() {
    let client = Client::start(&["serve", "--allow-kill"], Some(false), &[]).await;
    let (h, port) = holder(&[]);
    let answer = client
        .free_port(json!({"port": port, "dry_run": false}))
        .await;
    assert_eq!(answer["success"], false, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("not confirmed"), "{message}");
    assert!(message.contains("nothing was signalled"), "{message}");
    assert_eq!(client.asked.lock().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!process_gone(h.pid) && listening(port));
    assert!(
        !client.log().contains("action: sending"),
        "{}",
        client.log()
    );
    client.stop().await;
}

#[tokio::test]
async fn a_client_without_elicitation_is_refused_unless_the_operator_allows_it() {
    let client = Client::start(&["--allow-kill"], None, &[]).await;
    let (h, port) = holder(&[]);
    let answer = client
        .free_port(json!({"port": port, "dry_run": false}))
        .await;
    assert_eq!(answer["success"], false, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("elicitation") && message.contains("require_elicitation = false"),
        "{message}"
    );
    assert!(!process_gone(h.pid) && listening(port));
    client.stop().await;

    // The same client, with the operator's config enabling the tool and waiving the question.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[actions]\nallow_kill = true\nrequire_elicitation = false\n",
    )
    .unwrap();
    let client = Client::start(&["--config", config.to_str().unwrap()], None, &[]).await;
    let answer = client
        .free_port(json!({"port": port, "dry_run": false}))
        .await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["data"]["confirmed_by"], "client_approval");
    assert_eq!(answer["data"]["free"], true);
    assert!(process_gone(h.pid));
    client.stop().await;
}

#[tokio::test]
async fn a_process_that_traps_sigterm_needs_force() {
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    let (h, port) = holder(&["--on-term", "ignore"]);
    let answer = client
        .free_port(json!({"port": port, "dry_run": false, "timeout_secs": 1}))
        .await;
    assert_eq!(answer["success"], true, "{answer}");
    let data = &answer["data"];
    assert_eq!(data["free"], false, "{answer}");
    assert_eq!(data["processes"][0]["signals"], json!(["SIGTERM"]));
    assert_eq!(data["processes"][0]["exited"], false);
    assert_eq!(data["remaining"][0]["pid"], h.pid, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("force true"),
        "{answer}"
    );
    assert!(!process_gone(h.pid) && listening(port));

    let answer = client
        .free_port(json!({"port": port, "dry_run": false, "timeout_secs": 1, "force": true}))
        .await;
    let data = &answer["data"];
    assert_eq!(data["free"], true, "{answer}");
    assert_eq!(
        data["processes"][0]["signals"],
        json!(["SIGTERM", "SIGKILL"])
    );
    assert_eq!(data["processes"][0]["exited"], true);
    assert!(process_gone(h.pid) && !listening(port));
    assert!(
        client
            .log()
            .contains(&format!("action: sending SIGKILL to pid {}", h.pid))
    );
    client.stop().await;
}

#[tokio::test]
async fn a_prefork_family_is_freed_by_signalling_its_parent() {
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    let (h, port) = holder(&["--workers", "2", "--on-term", "forward"]);
    assert_eq!(h.workers.len(), 2);
    let dry = client.free_port(json!({"port": port})).await;
    let processes = dry["data"]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "only the parent: {dry}");
    assert_eq!(processes[0]["pid"], h.pid);
    assert_eq!(processes[0]["worker_count"], 2);
    let mut workers: Vec<u64> = processes[0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .collect();
    workers.sort_unstable();
    let mut expected: Vec<u64> = h.workers.iter().map(|&w| u64::from(w)).collect();
    expected.sort_unstable();
    assert_eq!(workers, expected);

    let done = client
        .free_port(json!({"port": port, "dry_run": false}))
        .await;
    assert_eq!(done["data"]["free"], true, "{done}");
    // Only the parent was signalled; it stopped its workers.
    let signalled: Vec<&Value> = done["data"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["signals"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(signalled.len(), 1, "{done}");
    assert_eq!(signalled[0]["pid"], h.pid);
    assert!(
        eventually(Duration::from_secs(5), || process_gone(h.pid)
            && h.workers.iter().all(|&w| process_gone(w)))
        .await
    );
    assert!(!listening(port));
    client.stop().await;
}

/// A prefork parent that ignores SIGTERM, with `force`: SIGKILL goes to the parent and to the
/// workers still holding the port after it (each named as the listing named it).
#[tokio::test]
async fn force_also_kills_the_workers_left_holding_the_port() {
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    let (h, port) = holder(&["--workers", "2", "--on-term", "ignore"]);
    let done = client
        .free_port(json!({"port": port, "dry_run": false, "force": true, "timeout_secs": 1}))
        .await;
    assert_eq!(done["data"]["free"], true, "{done}");
    let processes = done["data"]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 3, "{done}");
    assert_eq!(processes[0]["pid"], h.pid);
    assert_eq!(processes[0]["signals"], json!(["SIGTERM", "SIGKILL"]));
    let mut workers: Vec<u64> = Vec::new();
    for w in &processes[1..] {
        assert_eq!(w["program"], "sleep", "{done}");
        assert_eq!(w["signals"], json!(["SIGKILL"]), "{done}");
        assert_eq!(w["exited"], true, "{done}");
        assert_eq!(w["uid"], rustix::process::getuid().as_raw(), "{done}");
        workers.push(w["pid"].as_u64().unwrap());
    }
    workers.sort_unstable();
    let mut expected: Vec<u64> = h.workers.iter().map(|&w| u64::from(w)).collect();
    expected.sort_unstable();
    assert_eq!(workers, expected);
    assert!(process_gone(h.pid) && h.workers.iter().all(|&w| process_gone(w)));
    assert!(!listening(port));
    client.stop().await;
}

#[tokio::test]
async fn the_servers_parent_is_refused() {
    // This test process starts the server: a port it holds is its parent's.
    let own = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = own.local_addr().unwrap().port();
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    for dry_run in [true, false] {
        let answer = client
            .free_port(json!({"port": port, "dry_run": dry_run}))
            .await;
        assert_eq!(answer["success"], false, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("parent") && message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("Nothing was signalled"), "{message}");
    }
    assert!(client.asked.lock().unwrap().is_empty());
    assert!(listening(port));
    client.stop().await;
}

async fn http_client(addr: &str, accept: Option<bool>) -> RunningService<RoleClient, Answerer> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    let answerer = Answerer {
        accept,
        asked: Arc::new(Mutex::new(Vec::new())),
    };
    within(
        "HTTP initialize",
        answerer.serve(StreamableHttpClientTransport::from_config(config)),
    )
    .await
    .expect("initialize over HTTP")
}

async fn call(service: &RunningService<RoleClient, Answerer>, args: Value) -> Value {
    let params =
        CallToolRequestParams::new("free_port").with_arguments(args.as_object().unwrap().clone());
    let result = within("free_port", service.call_tool(params))
        .await
        .expect("answered");
    result.structured_content.expect("structuredContent")
}

#[tokio::test]
async fn over_http_the_server_refuses_itself_and_logs_the_peer_that_asked() {
    let HttpServer {
        child: mut server,
        addr,
        stderr: log,
    } = HttpServer::start(&["--allow-kill"], &[]).await;
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let client = http_client(&addr, Some(true)).await;
    let answer = call(&client, json!({"port": port, "dry_run": false})).await;
    assert_eq!(answer["success"], false, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("this server itself"), "{message}");

    // A real action over HTTP, confirmed through the HTTP client: the log names its address.
    let (h, held) = holder(&[]);
    let done = call(&client, json!({"port": held, "dry_run": false})).await;
    assert_eq!(done["data"]["free"], true, "{done}");
    assert_eq!(done["data"]["confirmed_by"], "elicitation");
    assert!(process_gone(h.pid));
    let text = log.lock().unwrap().join("\n");
    assert!(
        text.contains(&format!("sending SIGTERM to pid {}", h.pid))
            && text.contains("asked by HTTP peer 127.0.0.1:"),
        "{text}"
    );
    let _ = client.cancel().await;
    let _ = server.start_kill();
    let _ = server.wait().await;
}

/// `netstat-mcp free-port <args>` run by `prefix` (e.g. `setpriv …`): exit code, stdout, stderr.
fn cli(prefix: &[&str], args: &[&str]) -> (i32, String, String) {
    let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    argv.push(bin().to_str().unwrap().to_string());
    argv.push("free-port".into());
    argv.extend(args.iter().map(|s| s.to_string()));
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
        .stdin(Stdio::null())
        .output()
        .expect("run netstat-mcp free-port");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn pid_1_is_refused() {
    // The listener is pid 1 of a PID namespace of its own; the CLI runs in that namespace.
    let h = Holder::start(
        &["unshare", "--pid", "--fork", "--mount-proc"],
        &["--tcp", "127.0.0.1:0"],
    );
    assert_eq!(h.pid, 1, "the listener is its namespace's init");
    let port = h.ports[0].to_string();
    // The listener's pid as this namespace sees it: unshare's child.
    let outside = crate::support::sshd::child_pids(h.child.id());
    assert_eq!(outside.len(), 1, "{outside:?}");
    let target = outside[0].to_string();
    let (code, _, stderr) = cli(
        &["nsenter", "--target", &target, "--pid", "--mount"],
        &[&port, "--yes"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pid 1"), "{stderr}");
    assert!(stderr.contains("Nothing was signalled"), "{stderr}");
    assert!(listening(h.ports[0]));
}

#[test]
fn another_users_process_is_refused_for_a_server_that_is_not_root() {
    // The listener runs as root (the test's user); the CLI as nobody, with the rights to see
    // other users' sockets' owners but not to signal them.
    let (h, port) = holder(&[]);
    let caps = "+sys_ptrace,+dac_read_search";
    let (code, _, stderr) = cli(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
        ],
        &[&port.to_string(), "--yes"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("(pid {})", h.pid))
            && stderr.contains("uid 0")
            && stderr.contains("only its own user's processes"),
        "{stderr}"
    );
    assert!(!process_gone(h.pid) && listening(port));
}

#[test]
fn the_cli_shows_the_dry_run_and_acts_only_when_told() {
    let (h, port) = holder(&[]);
    let p = port.to_string();
    let (code, out, _) = cli(&[], &[&p, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("Dry run") && out.contains(&format!("pid {}", h.pid)),
        "{out}"
    );
    // No terminal and no --yes: the dry run is shown, then a refusal.
    let (code, out, err) = cli(&[], &[&p]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.starts_with("Dry run"), "{out}");
    assert!(
        err.contains("no terminal") && err.contains("--yes"),
        "{err}"
    );
    assert!(!process_gone(h.pid) && listening(port));
    let (code, out, err) = cli(&[], &[&p, "--yes", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Two JSON answers: the dry run's, then the run's.
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|v| v.expect("JSON"))
        .collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert_eq!(answers[0]["data"]["dry_run"], true);
    assert_eq!(answers[1]["data"]["free"], true);
    assert_eq!(answers[1]["data"]["confirmed_by"], "yes_flag");
    assert!(
        err.contains(&format!(
            "netstat-mcp: action: sending SIGTERM to pid {}",
            h.pid
        )),
        "{err}"
    );
    assert!(process_gone(h.pid) && !listening(port));
    // Now free: exit 0, nothing to do.
    let (code, out, _) = cli(&[], &[&p, "--yes"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Nothing to do"), "{out}");

    // The local port of an outgoing connection is not "held": nothing is signalled.
    let (server, server_port) = holder(&[]);
    let client = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
    let client_port = client.local_addr().unwrap().port().to_string();
    let (code, out, err) = cli(&[], &[&client_port, "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("Nothing to do"), "{out}");
    assert!(!err.contains("action:"), "{err}");
    assert!(!process_gone(server.pid));
    drop(client);

    // UDP: a bound socket's process is the target.
    let udp = Holder::start(&[], &["--udp", "127.0.0.1:0"]);
    let (code, out, err) = cli(&[], &[&udp.ports[0].to_string(), "--proto", "udp", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("/UDP on local host is free now"), "{out}");
    assert!(process_gone(udp.pid));

    // Still held after SIGTERM: exit 1.
    let (h, port) = holder(&["--on-term", "ignore"]);
    let (code, out, _) = cli(&[], &[&port.to_string(), "--yes", "--timeout-secs", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("Dry run") && out.contains("is still held") && out.contains("force"),
        "{out}"
    );
    assert!(!process_gone(h.pid));
}

/// Reads from `s` until EOF or an error, within `limit`: `Some(true)` when the peer reset or
/// closed it.
fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test]
async fn sock_destroy_closes_one_connection_and_nothing_else() {
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    let (h, port) = holder(&[]);
    let mut conns: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let victim = conns[1].local_addr().unwrap().port();
    let args = json!({
        "port": port,
        "connection": {"remote_ip": "127.0.0.1", "remote_port": victim},
    });
    let dry = client.free_port(args.clone()).await;
    assert_eq!(dry["data"]["action"], "close_connection", "{dry}");
    assert_eq!(dry["data"]["connection"]["remote_port"], victim);
    assert!(dry["data"]["connection"]["closed"].is_null());
    assert!(!closed_by_peer(&mut conns[1], Duration::from_millis(200)));

    let mut run = args.clone();
    run["dry_run"] = json!(false);
    let done = client.free_port(run).await;
    assert_eq!(done["success"], true, "{done}");
    assert_eq!(done["data"]["connection"]["closed"], true, "{done}");
    assert!(done["data"]["processes"].as_array().unwrap().is_empty());
    assert!(closed_by_peer(&mut conns[1], Duration::from_secs(5)));
    assert!(!closed_by_peer(&mut conns[0], Duration::from_millis(200)));
    assert!(!closed_by_peer(&mut conns[2], Duration::from_millis(200)));
    assert!(!process_gone(h.pid) && listening(port));
    assert!(client.log().contains("SOCK_DESTROY"), "{}", client.log());

    // Without CAP_NET_ADMIN the kernel refuses, and the error says what is missing.
    let (code, _, stderr) = cli(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &[
            &port.to_string(),
            "--connection",
            &format!("127.0.0.1:{}", conns[0].local_addr().unwrap().port()),
            "--yes",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    assert!(!closed_by_peer(&mut conns[0], Duration::from_millis(200)));
    client.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_parameter() {
    let client = Client::start(&["--allow-kill"], Some(true), &[]).await;
    let (h, port) = holder(&[]);
    let cases = [
        (json!({"port": 0}), "port"),
        (json!({"port": 70000}), "port"),
        (json!({"port": "80"}), "port"),
        (json!({}), "port"),
        (json!({"port": port, "proto": "sctp"}), "proto"),
        (json!({"port": port, "timeout_secs": 0}), "timeout_secs"),
        (json!({"port": port, "signal": "KILL"}), "arguments"),
        (json!({"port": port, "host": "web-*"}), "host"),
        (
            json!({"port": port, "connection": {"remote_ip": "LISTEN", "remote_port": 1}}),
            "connection.remote_ip",
        ),
        (
            json!({"port": port, "connection": {"remote_ip": "127.0.0.1", "remote_port": 0}}),
            "connection.remote_port",
        ),
        (
            json!({"port": port, "connection": {"remote_ip": "127.0.0.1"}}),
            "connection.remote_port",
        ),
        (
            json!({"port": port, "connection": "127.0.0.1:5"}),
            "connection",
        ),
        (
            json!({"port": port, "dry_run": false, "connection": {"remote_ip": "192.0.2.1", "remote_port": 9}}),
            "connection",
        ),
    ];
    for (args, param) in cases {
        let answer = client.free_port(args.clone()).await;
        assert_eq!(answer["success"], false, "{args}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("Parameter '{param}'")),
            "{args}: {message}"
        );
    }
    // The server kept serving, and nothing was touched.
    assert!(!process_gone(h.pid) && listening(port));
    assert!(client.asked.lock().unwrap().is_empty());
    client.stop().await;
}

/// A remote Linux host (a real sshd of the test's own on loopback): free_port acts there only
/// when its entry says `allow_kill = true`, and then as the SSH user, who can signal only its
/// own processes.
#[test]
fn a_remote_host_needs_allow_kill_in_its_entry() {
    use crate::support::sshd::{PASSWORD, Sshd, USER, UserPath};
    let sshd = Sshd::start(UserPath::System);
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, extra: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            sshd.config_text("", &format!("password = \"{PASSWORD}\"\n{extra}")),
        )
        .expect("write config");
        path.to_str().unwrap().to_string()
    };
    let denied = write("denied.toml", "");
    let allowed = write("allowed.toml", "allow_kill = true");
    let run = |config: &str, args: &[&str]| -> (i32, String, String) {
        let out = Command::new(bin())
            .args(["--config", config, "free-port"])
            .args(args)
            .args(["--host", "test-sshd"])
            .stdin(Stdio::null())
            .output()
            .expect("netstat-mcp free-port --host");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The SSH user's own listener.
    let reuid = format!("--reuid={USER}");
    let regid = format!("--regid={USER}");
    let h = Holder::start(
        &["setpriv", &reuid, &regid, "--clear-groups"],
        &["--tcp", "127.0.0.1:0"],
    );
    let port = h.ports[0].to_string();

    let (code, _, err) = run(&denied, &[&port, "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("allow_kill = true"), "{err}");
    assert!(!process_gone(h.pid) && listening(h.ports[0]));

    let (code, out, err) = run(&allowed, &[&port, "--dry-run", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let dry: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(dry["data"]["host"], "test-sshd", "{dry}");
    assert_eq!(dry["data"]["processes"][0]["pid"], h.pid, "{dry}");
    assert!(!process_gone(h.pid));

    // Root's listener: the SSH user may not signal it (it cannot even see its owner).
    let (root_holder, root_port) = holder(&[]);
    let (code, _, err) = run(&allowed, &[&root_port.to_string(), "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nothing was signalled") || err.contains("Nothing was signalled"),
        "{err}"
    );
    assert!(!process_gone(root_holder.pid) && listening(root_port));

    let (code, out, err) = run(&allowed, &[&port, "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("is free now"), "{out}");
    assert!(
        err.contains(&format!("sending SIGTERM to pid {}", h.pid)) && err.contains("remote host"),
        "{err}"
    );
    assert!(process_gone(h.pid) && !listening(h.ports[0]));
}
