//! Resources a stdio client can grow stay bounded: a client that pipelines 20,000 calls and
//! does not read its answers cannot make the server hold them all.
//!
//! The server runs in network and PID namespaces of its own (`unshare`), holding exactly the
//! sockets the test puts there, so the size of every answer is the same on a busy machine as on
//! an idle one, and its owner scan sees only itself.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::mcp_client::bin;
use crate::support::sshd::child_pids;

/// The ceiling the issue sets for the server's resident memory.
const RSS_LIMIT_KB: u64 = 64 * 1024;
const CALLS: usize = 20_000;

/// `netstat-mcp` (stdio) as PID 1 of fresh network and PID namespaces, loopback up.
struct Isolated {
    unshare: Child,
    /// The server's pid as this machine sees it.
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Isolated {
    fn start() -> Option<Isolated> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED the pipelining memory test: needs root for namespaces");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root; this test must not skip there"
            );
            return None;
        }
        let mut unshare = Command::new("unshare")
            .args(["--net", "--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(["--", "sh", "-c", "ip link set lo up && exec \"$0\""])
            .arg(bin())
            .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare (util-linux)");
        let exe = bin().canonicalize().expect("binary path");
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            let found = child_pids(unshare.id())
                .into_iter()
                .find(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe));
            if let Some(pid) = found {
                break pid;
            }
            if let Ok(Some(status)) = unshare.try_wait() {
                panic!("unshare exited with {status} before the server started");
            }
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdin = unshare.stdin.take();
        let stdout = BufReader::new(unshare.stdout.take().expect("stdout"));
        Some(Isolated {
            unshare,
            pid,
            stdin,
            stdout,
        })
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "the server closed stdout");
        line
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// Sockets held open inside the server's network namespace: `udp` bound UDP sockets and
/// `pairs` loopback TCP connections (client and accepted ends) on one listener.
fn sockets_in_netns_of(pid: u32, udp: usize, pairs: usize) -> Vec<Box<dyn Send>> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
        // SAFETY: setns(2) on a valid namespace descriptor moves only this thread, which
        // creates the sockets and then ends; sockets keep the namespace they were made in.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let mut held: Vec<Box<dyn Send>> = Vec::new();
        for _ in 0..udp {
            held.push(Box::new(
                std::net::UdpSocket::bind("127.0.0.1:0").expect("udp in netns"),
            ));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen in netns");
        let addr = listener.local_addr().expect("addr");
        for _ in 0..pairs {
            held.push(Box::new(
                std::net::TcpStream::connect(addr).expect("connect"),
            ));
            held.push(Box::new(listener.accept().expect("accept").0));
        }
        held.push(Box::new(listener));
        held
    })
    .join()
    .expect("socket thread")
}

/// Pipelines `CALLS` calls of `tool(arguments)` without reading, then reads every answer.
fn pipelined(what: &str, tool: &str, arguments: Value, sockets: usize) {
    let Some(mut server) = Isolated::start() else {
        return;
    };
    let stdin = server.stdin.as_mut().expect("stdin");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "pipelining-test", "version": "0"}}});
    writeln!(stdin, "{init}").expect("write initialize");
    let answer: Value = serde_json::from_str(&server.line()).expect("initialize answer");
    assert_eq!(answer["id"], 0, "{answer}");
    let stdin = server.stdin.as_mut().expect("stdin");
    writeln!(
        stdin,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .expect("write initialized");
    let _held = sockets_in_netns_of(server.pid, sockets / 3, sockets / 3);
    let baseline = server.status_kb("VmRSS");

    // Write every call from a thread; this thread does not read (the client is "paused").
    let written = Arc::new(AtomicUsize::new(0));
    let mut stdin = server.stdin.take().expect("stdin");
    let writer = {
        let written = Arc::clone(&written);
        let arguments = arguments.clone();
        let tool = tool.to_string();
        std::thread::spawn(move || {
            for id in 1..=CALLS {
                let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": tool, "arguments": arguments}});
                writeln!(stdin, "{call}").expect("write a call");
                written.fetch_add(1, Ordering::SeqCst);
            }
            stdin
        })
    };
    // The writer stalls once the server stops reading (its bound reached, the pipe full); it
    // could only finish if the server read everything while no answer was read.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut last, mut still) = (usize::MAX, 0);
    while still < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = written.load(Ordering::SeqCst);
        if now == last {
            still += 1;
        } else {
            (last, still) = (now, 0);
        }
        if now == CALLS {
            break;
        }
    }
    let paused_at = written.load(Ordering::SeqCst);
    let rss_paused = server.status_kb("VmRSS");
    eprintln!("{what}: reader paused after {paused_at} calls written; server RSS {rss_paused} kB");
    // The bound (16) plus what the pipe and the server's read buffer hold (~600 calls here).
    assert!(
        paused_at < 2_000,
        "{what}: the server read {paused_at} of {CALLS} calls while none of its answers was read"
    );

    // Resume reading: every call is answered, in full.
    let mut answered = 0usize;
    let mut bytes = 0usize;
    while answered < CALLS {
        let line = server.line();
        bytes += line.len();
        let head = &line[..line.len().min(80)];
        assert!(head.contains("\"id\":"), "{what}: not an answer: {head}");
        assert!(
            line.contains("\"success\":true"),
            "{what}: a failed answer: {}",
            &line[..line.len().min(400)]
        );
        answered += 1;
    }
    let mut stdin = writer.join().expect("writer thread");
    stdin.flush().expect("flush");
    let peak = server.status_kb("VmHWM");
    eprintln!(
        "{what}: {sockets} sockets; baseline RSS {baseline} kB; reader paused after {paused_at} calls written, RSS {rss_paused} kB; {answered} answers, {} MB in all; peak RSS {peak} kB",
        bytes / 1_000_000
    );
    assert!(
        peak < RSS_LIMIT_KB,
        "{what}: peak RSS {peak} kB, over {RSS_LIMIT_KB} kB"
    );
    drop(stdin);
    let status = server.unshare.wait().expect("wait");
    assert!(status.success(), "{what}: exit {status}");
}

#[test]
fn pipelined_port_checks_with_the_reader_paused_stay_under_64_mb() {
    pipelined(
        "port checks",
        "check_port_occupation",
        json!({"port": 9}),
        30,
    );
}

#[test]
fn pipelined_limit_0_listings_with_the_reader_paused_stay_under_64_mb() {
    // 30 sockets: each answer is ~12 kB, so 20,000 answers held at once would be ~250 MB.
    pipelined(
        "limit 0 listings",
        "query_network_connections",
        json!({"limit": 0}),
        30,
    );
}

/// Threads of a watch engine (`nm-watch`, `nm-watch-destroy`) in process `pid`.
fn engine_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("nm-watch"))
        .count()
}

/// Writes one JSON-RPC message.
fn send(server: &mut Isolated, message: &Value) {
    let stdin = server.stdin.as_mut().expect("stdin");
    writeln!(stdin, "{message}").expect("write");
    stdin.flush().expect("flush");
}

fn watch_call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "watch_connections", "arguments": {"duration_secs": 40}}})
}

/// Reads messages until one with `id` comes; the others are returned too.
fn until_id(server: &mut Isolated, id: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message: Value = serde_json::from_str(&server.line()).expect("a JSON-RPC message");
        let done = message["id"] == id;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

#[test]
fn a_reused_id_is_refused_and_cancel_and_ping_pass_a_full_bound() {
    let Some(mut server) = Isolated::start() else {
        return;
    };
    send(
        &mut server,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bound-test", "version": "0"}}}),
    );
    until_id(&mut server, 0);
    send(
        &mut server,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let idle_threads = server.status_kb("Threads");

    // 40 watches with one id: the first runs, the 39 others are refused (-32600) at once.
    for _ in 0..40 {
        send(&mut server, &watch_call(7));
    }
    let mut refused = 0;
    while refused < 39 {
        let message: Value = serde_json::from_str(&server.line()).expect("JSON-RPC");
        assert_eq!(message["id"], 7, "{message}");
        assert_eq!(message["error"]["code"], -32600, "{message}");
        let text = message["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains("already in use"), "{message}");
        refused += 1;
    }
    // 15 more (16 in flight, the bound) and 8 beyond it, which wait in the queue.
    for id in 8..=30 {
        send(&mut server, &watch_call(id));
    }
    std::thread::sleep(Duration::from_secs(2));
    let busy_threads = server.status_kb("Threads");
    let busy_rss = server.status_kb("VmRSS");
    eprintln!(
        "threads: idle {idle_threads}, 16 watches in flight {busy_threads}; RSS {busy_rss} kB"
    );
    // A running watch has three threads (two of its engine, one of the blocking pool that
    // started it): 16 make 48 more; 24 running (the queue leaking) would make 72.
    assert!(
        busy_threads <= idle_threads + 16 * 3 + 6,
        "{busy_threads} threads with 16 calls allowed in flight (idle: {idle_threads})"
    );

    // Behind the full bound, a ping is answered and cancellations take effect at once.
    let started = Instant::now();
    send(
        &mut server,
        &json!({"jsonrpc": "2.0", "id": 999, "method": "ping"}),
    );
    let seen = until_id(&mut server, 999);
    let ping = started.elapsed();
    assert!(
        seen.last().is_some_and(|m| m["result"].is_object()),
        "{seen:?}"
    );
    eprintln!("ping with 16 calls in flight answered in {ping:?}");
    assert!(ping < Duration::from_secs(5), "ping took {ping:?}");
    for id in 7..=30 {
        send(
            &mut server,
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "test"}}),
        );
    }
    // Every watcher stops: its engine threads end (each within about 100 ms; the blocking
    // pool's idle threads linger on for 10 s, so they are not counted).
    let cancelled = Instant::now();
    let deadline = cancelled + Duration::from_secs(10);
    let mut engines = engine_threads(server.pid);
    while engines > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        engines = engine_threads(server.pid);
    }
    let stopped = cancelled.elapsed();
    eprintln!("after the cancellations: {engines} engine threads, {stopped:?} after them");
    assert_eq!(
        engines, 0,
        "engine threads 10 s after cancelling every call"
    );
    assert!(
        stopped < Duration::from_secs(5),
        "watchers stopped after {stopped:?}"
    );
    // And the server still answers: a new call with a once-used id runs.
    send(
        &mut server,
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "list_hosts", "arguments": {}}}),
    );
    let seen = until_id(&mut server, 7);
    let answer = seen.last().expect("an answer");
    assert!(answer["result"].is_object(), "{answer}");
}
