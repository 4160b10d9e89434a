//! Monitoring over time against the real kernel: `watch` and the recorder run inside network
//! namespaces the tests create (destroy notifications and dumps are per namespace, so counts
//! are exact however busy the machine is); the remote watch runs against a real sshd.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::mcp_client::{Raw, bin, eventually};
use crate::support::netns::NetNs;
use crate::support::sshd::{PASSWORD, Sshd, UserPath};

/// The fixture's listening port (inside the test's own namespace, so any port is free).
const PORT: u16 = 7000;

/// A running `netstat-mcp watch`, its stdout lines collected as JSON.
struct WatchProcess {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl WatchProcess {
    fn start(mut cmd: std::process::Command) -> WatchProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netstat-mcp watch");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch --json printed a non-JSON line ({e}): {line}")
                });
                sink.lock().unwrap().push(v);
            }
        });
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = WatchProcess {
            child,
            events,
            stderr: rx,
            stderr_seen: Vec::new(),
        };
        let ready = w.stderr_line(|l| l.contains("watching"));
        assert!(ready.is_some(), "watch did not start: {:?}", w.stderr_seen);
        w
    }

    /// Waits (at most 30 s) for a stderr line matching `pred`.
    fn stderr_line(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits (at most 60 s: a remote listing on a loaded machine can take seconds) until an
    /// event matches `pred`.
    fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no {what} event within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, then the summary line from stderr.
    fn stop(mut self) -> String {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT watch");
        let summary = self
            .stderr_line(|l| l.contains("opened") && l.contains("closed"))
            .unwrap_or_else(|| panic!("no summary on stderr: {:?}", self.stderr_seen));
        let status = self.child.wait().expect("wait for watch");
        assert!(status.success(), "watch exited with {status}");
        summary
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_listener_event(e: &Value, kind: &str) -> bool {
    e["event"] == kind && e["local_port"] == PORT && e["foreign_port"].is_null()
}

/// Opens and closes `n` loopback connections to `listener` inside `ns`, each as short as
/// the machine allows. Returns the client ports and how many lived under 5 ms.
fn short_connections(ns: &NetNs, listener: Arc<TcpListener>, n: usize) -> (Vec<u16>, usize) {
    ns.run(move || {
        let mut ports = Vec::with_capacity(n);
        let mut short = 0;
        for _ in 0..n {
            let t = Instant::now();
            let c = TcpStream::connect(("127.0.0.1", PORT)).expect("connect");
            let (s, _) = listener.accept().expect("accept");
            ports.push(c.local_addr().expect("addr").port());
            drop(c);
            drop(s);
            if t.elapsed() < Duration::from_millis(5) {
                short += 1;
            }
        }
        (ports, short)
    })
}

/// Client ports of `ports` whose connection has a close event with the right 4-tuple (either
/// end's socket: 127.0.0.1:PORT <-> 127.0.0.1:client).
fn closes_seen(events: &[Value], ports: &HashSet<u16>) -> (HashSet<u16>, usize) {
    let mut seen = HashSet::new();
    let mut phantoms = 0;
    for e in events {
        if e["event"] != "close" || e["local_ip"] != "127.0.0.1" || e["foreign_ip"] != "127.0.0.1" {
            continue;
        }
        let (l, f) = (
            e["local_port"].as_u64().unwrap_or(0) as u16,
            e["foreign_port"].as_u64().unwrap_or(0) as u16,
        );
        let client = if l == PORT {
            f
        } else if f == PORT {
            l
        } else {
            continue;
        };
        if ports.contains(&client) {
            seen.insert(client);
        } else {
            phantoms += 1;
        }
    }
    (seen, phantoms)
}

/// Runs the 1,000-connection fixture under `watch --json`; returns (seen, short, total,
/// summary).
fn thousand_short_connections(destroy: bool) -> (usize, usize, usize, String) {
    const N: usize = 1000;
    let ns = NetNs::new("watch");
    let mut cmd = ns.command(bin());
    cmd.args(["watch", "--json", "--proto", "tcp"]);
    if !destroy {
        cmd.env("NETSTAT_MCP_WATCH_NO_DESTROY", "1");
    }
    let w = WatchProcess::start(cmd);
    let listener = Arc::new(ns.run(|| TcpListener::bind(("127.0.0.1", PORT)).expect("bind")));
    // The listener's open shows the watcher is listing; its close, later, that everything
    // before it has been reported.
    w.wait_event("listener open", |e| is_listener_event(e, "open"));
    let (ports, short) = short_connections(&ns, listener.clone(), N);
    drop(listener);
    w.wait_event("listener close", |e| is_listener_event(e, "close"));
    let ports: HashSet<u16> = ports.into_iter().collect();
    assert_eq!(ports.len(), N, "client ports are distinct");
    if destroy {
        // Normally complete already; allow late notifications a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while closes_seen(&w.events.lock().unwrap(), &ports).0.len() < N
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let events = w.events.clone();
    let summary = w.stop();
    let (seen, phantoms) = closes_seen(&events.lock().unwrap(), &ports);
    assert_eq!(
        phantoms, 0,
        "close events for connections the test never made"
    );
    (seen.len(), short, N, summary)
}

#[test]
fn watch_sees_short_lived_connections_close() {
    let (seen, short, n, summary) = thousand_short_connections(true);
    eprintln!(
        "watch (destroy notifications): {seen} of {n} connections seen closing ({short} lived under 5 ms); {summary}"
    );
    assert!(summary.contains("destroy notifications on"), "{summary}");
    assert!(
        seen * 100 >= n * 99,
        "only {seen} of {n} short connections were seen closing: {summary}"
    );
}

#[test]
fn watch_without_destroy_notifications_is_a_poller() {
    let (seen, short, n, summary) = thousand_short_connections(false);
    eprintln!(
        "watch (listings only): {seen} of {n} connections seen closing ({short} lived under 5 ms), {} missed; {summary}",
        n - seen
    );
    assert!(summary.contains("destroy notifications off"), "{summary}");
    assert!(seen <= n);
}

/// Progress notifications for `token` among `messages`.
fn progress_of(messages: &[Value], token: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| {
            m["method"] == "notifications/progress" && m["params"]["progressToken"] == token
        })
        .cloned()
        .collect()
}

/// Threads of `pid` named like the watch engine's.
fn watch_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with("nm-watch"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_connections_over_stdio_reports_progress_counts_and_stops_on_cancel() {
    let ns = NetNs::new("wtool");
    let listener = Arc::new(ns.run(|| TcpListener::bind(("127.0.0.1", PORT)).expect("bind")));
    let mut raw = Raw::start_command(ns.tokio_command(bin())).await;
    let pid = raw.child.id().expect("server pid");

    // A window with a progress token: progress arrives, and the counts match what we did.
    raw.send(json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "watch_connections",
                   "arguments": {"duration_secs": 4, "local_port": PORT, "proto": "tcp"},
                   "_meta": {"progressToken": "w1"}}
    }))
    .await;
    let mut messages = Vec::new();
    while progress_of(&messages, "w1").is_empty() {
        let m = raw.next_message().await.expect("server closed stdout");
        assert!(
            m.get("id") != Some(&json!(1)),
            "answered before any progress: {m}"
        );
        messages.push(m);
    }
    const N: usize = 50;
    let (ports, _) = short_connections(&ns, listener.clone(), N);
    let response = loop {
        let m = raw.next_message().await.expect("server closed stdout");
        if m.get("id") == Some(&json!(1)) {
            break m;
        }
        messages.push(m);
    };
    let progress = progress_of(&messages, "w1");
    assert!(progress.len() >= 2, "progress notifications: {progress:?}");
    assert_eq!(progress[0]["params"]["total"], 4.0);
    // One ordered stream of notifications, all before the result.
    let values: Vec<f64> = progress
        .iter()
        .filter_map(|p| p["params"]["progress"].as_f64())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "progress out of order: {values:?}"
    );
    let text = response["result"]["content"][0]["text"]
        .as_str()
        .expect("text block");
    assert!(text.len() <= 24 * 1024, "answer is {} bytes", text.len());
    let data = &response["result"]["structuredContent"]["data"];
    assert_eq!(response["result"]["isError"], false, "{response}");
    assert_eq!(data["destroy_notifications"], true, "{data}");
    assert_eq!(data["opened"], N, "{data}");
    assert_eq!(data["closed"], N, "{data}");
    let events = data["events"].as_array().expect("events");
    assert_eq!(events.len(), 50, "default limit");
    let ports: HashSet<u16> = ports.into_iter().collect();
    assert!(events.iter().all(|e| {
        e["local_port"] == PORT && ports.contains(&(e["foreign_port"].as_u64().unwrap_or(0) as u16))
    }));

    // A long window, cancelled: the watcher stops and the server keeps serving.
    raw.send(json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "watch_connections", "arguments": {"duration_secs": 50},
                   "_meta": {"progressToken": "w2"}}
    }))
    .await;
    let mut messages = Vec::new();
    while progress_of(&messages, "w2").is_empty() {
        messages.push(raw.next_message().await.expect("server closed stdout"));
    }
    assert!(watch_threads(pid) >= 1, "the watch engine is not running");
    raw.send(json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2, "reason": "test"}
    }))
    .await;
    let cancelled = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || watch_threads(pid) == 0).await,
        "the watch engine kept running after the cancellation"
    );
    eprintln!(
        "watch_connections: engine threads gone {} ms after the cancellation",
        cancelled.elapsed().as_millis()
    );
    let answer = raw
        .call_tool(3, "recent_connection_events", json!({"since_secs": 60}))
        .await;
    assert_eq!(answer["success"], false);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("serve --record"),
        "{answer}"
    );
    drop(listener);
}

/// `recent_connection_events` of a server in `ns`.
async fn recent(raw: &mut Raw, id: i64, args: Value) -> Value {
    let v = raw.call_tool(id, "recent_connection_events", args).await;
    assert_eq!(v["success"], true, "{v}");
    v["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_counts_a_burst_exactly() {
    let ns = NetNs::new("wrec");
    // The listener exists before the recorder starts: it is baseline, not an open.
    let listener = Arc::new(ns.run(|| TcpListener::bind(("127.0.0.1", PORT)).expect("bind")));
    let mut cmd = ns.tokio_command(bin());
    cmd.args(["serve", "--record"]);
    let mut raw = Raw::start_command(cmd).await;
    const N: usize = 200;
    let (_ports, _) = short_connections(&ns, listener.clone(), N);
    drop(listener);
    let args = json!({"local_port": PORT, "since_secs": 60, "limit": 5});
    // Every connection's server end and the listener close; notifications arrive in no
    // particular order, so wait for the count (bounded), then check it is exact.
    let mut id = 10;
    let deadline = Instant::now() + Duration::from_secs(30);
    let data = loop {
        id += 1;
        let data = recent(&mut raw, id, args.clone()).await;
        if data["closed"].as_u64().unwrap_or(0) > N as u64 {
            break data;
        }
        assert!(
            Instant::now() < deadline,
            "the burst was not recorded: {data}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(data["opened"], N, "{data}");
    assert_eq!(
        data["closed"],
        N + 1,
        "every connection and the listener: {data}"
    );
    assert_eq!(
        data["window_complete"], false,
        "the recorder ran less than 60 s"
    );
    assert_eq!(data["dropped_events"], 0);
    assert_eq!(data["events"].as_array().map(Vec::len), Some(5));
    assert_eq!(data["truncated"], true);
    let programs = data["by_program"].as_array().expect("by_program");
    assert!(!programs.is_empty());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// `n` connections closed with a reset (no TIME_WAIT left in the namespace).
fn reset_connections(ns: &NetNs, listener: Arc<TcpListener>, n: usize) {
    ns.run(move || {
        for _ in 0..n {
            let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            c.set_linger(Some(Duration::ZERO)).expect("linger");
            c.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], PORT)).into())
                .expect("connect");
            let (s, _) = listener.accept().expect("accept");
            drop(c);
            drop(s);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_storm_drops_the_oldest_in_bounded_memory() {
    const CAPACITY: u64 = 2000;
    let ns = NetNs::new("wstorm");
    let listener = Arc::new(ns.run(|| TcpListener::bind(("127.0.0.1", PORT)).expect("bind")));
    let mut cmd = ns.tokio_command(bin());
    cmd.args([
        "serve",
        "--record",
        "--record-capacity",
        &CAPACITY.to_string(),
    ]);
    let mut raw = Raw::start_command(cmd).await;
    let pid = raw.child.id().expect("pid");
    let args = json!({"since_secs": 600, "limit": 1});
    // Each connection is 4 events (open and close of both ends).
    let mut id = 100;
    let total_recorded = |data: &Value| {
        data["stored_events"].as_u64().unwrap_or(0) + data["dropped_events"].as_u64().unwrap_or(0)
    };
    // Fill the ring (2,000 connections: 8,000 events), then measure.
    reset_connections(&ns, listener.clone(), 2000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        id += 1;
        let data = recent(&mut raw, id, args.clone()).await;
        if data["stored_events"] == CAPACITY {
            break;
        }
        assert!(Instant::now() < deadline, "the ring did not fill: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_full = rss_kib(pid);
    // A storm five times larger, then the listener's close. Notifications come in no
    // particular order: wait until all 48,001 events are in, or the listener's close is and
    // the total has stopped moving (a busy machine may lose a few, which must be reported).
    reset_connections(&ns, listener.clone(), 10_000);
    drop(listener);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut previous = 0;
    let data = loop {
        id += 1;
        let data = recent(&mut raw, id, args.clone()).await;
        let total = total_recorded(&data);
        id += 1;
        let listener = recent(
            &mut raw,
            id,
            json!({"since_secs": 600, "local_port": PORT, "state": "LISTEN"}),
        )
        .await;
        if total >= 48_001 || (listener["closed"] == 1 && total == previous) {
            break data;
        }
        previous = total;
        assert!(Instant::now() < deadline, "storm not recorded: {data}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let rss_storm = rss_kib(pid);
    let total = total_recorded(&data);
    eprintln!(
        "recorder storm: capacity {CAPACITY}, {total} events recorded (48,001 made), {} dropped; RSS {rss_full} KiB when full, {rss_storm} KiB after the storm",
        data["dropped_events"]
    );
    assert_eq!(data["stored_events"], CAPACITY, "{data}");
    assert_eq!(data["capacity"], CAPACITY);
    // 48,001 events made (the listener's close too); a busy machine may lose a few
    // notifications, which the answer reports rather than hides.
    assert!((40_000..=48_001).contains(&total), "{data}");
    assert_eq!(data["window_complete"], false);
    let answer = raw
        .call_tool(id + 1, "recent_connection_events", args.clone())
        .await;
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("has dropped"), "{message}");
    if total < 48_001 {
        assert!(
            message.contains("were lost"),
            "lost events must be reported: {message}"
        );
    }
    assert!(
        rss_storm <= rss_full + 16 * 1024,
        "RSS grew from {rss_full} KiB to {rss_storm} KiB under the storm"
    );
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_events_with_limit_0_fit_the_answer_ceiling_in_bounded_memory() {
    let ns = NetNs::new("wlimit0");
    let listener = Arc::new(ns.run(|| TcpListener::bind(("127.0.0.1", PORT)).expect("bind")));
    let mut cmd = ns.tokio_command(bin());
    cmd.args(["serve", "--record"]);
    let mut raw = Raw::start_command(cmd).await;
    let pid = raw.child.id().expect("pid");
    // 20,000 connections: 80,000 events (open and close of both ends).
    reset_connections(&ns, listener.clone(), 20_000);
    let count = json!({"since_secs": 600, "limit": 1});
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut id, mut previous, mut still) = (1000, 0, 0);
    let stored = loop {
        id += 1;
        let data = recent(&mut raw, id, count.clone()).await;
        let stored = data["stored_events"].as_u64().unwrap_or(0);
        // Done when all are in, or when none came for 2 s (a busy machine's recorder may
        // fall behind for a moment without having stopped).
        still = if stored > 0 && stored == previous {
            still + 1
        } else {
            0
        };
        if stored >= 80_000 || still >= 4 {
            break stored;
        }
        previous = stored;
        assert!(
            Instant::now() < deadline,
            "the events were not recorded: {data}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(stored >= 76_000, "{stored} events recorded of 80,000");
    let idle = status_kib(pid, "VmRSS");
    id += 1;
    raw.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "recent_connection_events",
                   "arguments": {"since_secs": 600, "limit": 0}}}))
        .await;
    let response = raw.response(id).await;
    let peak = status_kib(pid, "VmHWM");
    let after = status_kib(pid, "VmRSS");
    let line = response.to_string().len();
    let answer = &response["result"]["structuredContent"];
    let answer_bytes = answer.to_string().len();
    let data = &answer["data"];
    let events = data["events"].as_array().map_or(0, Vec::len);
    eprintln!(
        "limit 0 over {stored} events: {events} returned, answer {answer_bytes} B, message line {line} B; RSS {idle} KiB before, {after} KiB after, peak {peak} KiB"
    );
    assert_eq!(answer["success"], true, "{}", answer["message"]);
    assert!(answer_bytes <= 2 * 1024 * 1024, "{answer_bytes} bytes");
    assert!(events > 1000 && (events as u64) < stored, "{events} events");
    assert_eq!(data["truncated"], true);
    assert!(data["event_count"].as_u64().unwrap_or(0) >= stored);
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("cut to"), "{message}");
    // The figures: 23 MB -> 304-563 MB. Peak is since the start (the ring's filling
    // included), so it bounds the answer's cost from above.
    assert!(
        peak <= idle + 64 * 1024,
        "peak RSS {peak} KiB, idle {idle} KiB: over 64 MB more"
    );
    drop(listener);
}

#[test]
fn remote_watch_sees_connections_open_and_close_on_the_remote_host() {
    let sshd = Sshd::start(UserPath::System);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        sshd.config_text("", &format!("password = \"{PASSWORD}\"")),
    )
    .expect("write config");
    let listener = crate::support::net::tcp_listener("127.0.0.1");
    let port = listener.local_addr().expect("addr").port();
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--config").arg(&config).args([
        "watch",
        "--host",
        "test-sshd",
        "--json",
        "--interval-ms",
        "500",
        "--local-port",
        &port.to_string(),
    ]);
    let w = WatchProcess::start(cmd);
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let cport = client.local_addr().expect("addr").port();
    let tuple = move |e: &Value| e["local_port"] == port && e["foreign_port"] == cport;
    let open = w.wait_event("remote open", |e| e["event"] == "open" && tuple(e));
    assert_eq!(open["state"], "ESTABLISHED", "{open}");
    assert_eq!(open["origin"], "dump");
    drop(client);
    drop(server);
    let close = w.wait_event("remote close", |e| e["event"] == "close" && tuple(e));
    assert!(close["duration_ms"].is_u64(), "{close}");
    let summary = w.stop();
    assert!(summary.contains("destroy notifications off"), "{summary}");
    assert!(
        summary.contains("remote host test-sshd"),
        "the summary names the remote host: {summary}"
    );
}

/// Results validate against the tools' output schemas (checked by `Server::call`), and bad
/// inputs are tool errors naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_tools_answer_within_their_schemas() {
    use crate::support::mcp_client::Server;
    let held = crate::support::net::tcp_listener("127.0.0.1");
    let port = held.local_addr().expect("addr").port();
    let server = Server::start_with(&["serve", "--record", "--record-capacity", "1000"], &[]).await;
    let watched = server
        .call(
            "watch_connections",
            json!({"duration_secs": 1, "local_port": port}),
        )
        .await;
    assert_eq!(watched["success"], true, "{watched}");
    assert_eq!(watched["data"]["event_count"], 0, "{watched}");
    let recent = server
        .call(
            "recent_connection_events",
            json!({"local_port": port, "since_secs": 60}),
        )
        .await;
    assert_eq!(recent["success"], true, "{recent}");
    assert_eq!(recent["data"]["capacity"], 1000);
    for (tool, args, needle) in [
        (
            "watch_connections",
            json!({"duration_secs": 61}),
            "'duration_secs'",
        ),
        (
            "watch_connections",
            json!({"duration_secs": "5"}),
            "'duration_secs'",
        ),
        (
            "watch_connections",
            json!({"interval_ms": 1}),
            "'interval_ms'",
        ),
        (
            "recent_connection_events",
            json!({"since_secs": -1}),
            "'since_secs'",
        ),
        (
            "recent_connection_events",
            json!({"host": "web-1"}),
            "'host'",
        ),
    ] {
        let answer = server.call(tool, args.clone()).await;
        assert_eq!(answer["success"], false, "{tool}({args})");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{tool}({args}): {message}");
    }
    server.stop().await;
    drop(held);
}

/// The table form: a header, then one aligned line per event; `--duration` ends it with the
/// summary on stderr.
#[test]
fn watch_prints_a_table_until_its_duration() {
    let ns = NetNs::new("wtable");
    let mut child = ns
        .command(bin())
        .args(["watch", "--proto", "tcp", "--duration", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = stderr.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("watching local host"), "{first}");
    let listener = ns.run(|| TcpListener::bind(("127.0.0.1", PORT)).expect("bind"));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("read stdout");
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    assert!(child.wait().expect("wait").success());
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("Time") && header.contains("Foreign Address"),
        "{header}"
    );
    assert!(
        lines.any(|l| l.contains(" open ")
            && l.contains(&format!("127.0.0.1:{PORT}"))
            && l.contains("LISTEN")),
        "no open line for the listener in:\n{out}"
    );
    let summary = rest.last().cloned().unwrap_or_default();
    assert!(summary.contains("1 opened"), "{summary}");
    drop(listener);
}

/// A duration past what the clock can count is "until stopped", not a panic; and a stdout that
/// cannot be written (`/dev/full`) is an error exit, as for every other command, while a reader
/// that went away is a quiet one.
#[test]
fn watch_survives_a_huge_duration_and_reports_a_full_disk() {
    let ns = NetNs::new("wdur");
    let mut child = ns
        .command(bin())
        .args(["watch", "--duration", "9223372036854775807"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = stderr.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("watching local host"), "{first}");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}: {rest:?}");
    assert!(!rest.iter().any(|l| l.contains("panicked")), "{rest:?}");

    // /dev/full: the header line cannot be written.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = ns
        .command(bin())
        .args(["watch", "--duration", "2"])
        .stdin(Stdio::null())
        .stdout(full)
        .output()
        .expect("run watch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot write to stdout"), "{err}");
}
