//! The benchmark load generator (`examples/loadgen.rs`) holds what it promises and cleans up.
//!
//! Drives the real example binary that `cargo test` builds next to this test binary, and checks
//! the kernel's own socket table (`/proc/net/tcp`) while it holds and after it stops.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A bound on waiting, not a speed check: a loaded machine sets up 20,000 connections slowly.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// `target/<profile>/examples/loadgen`, built by `cargo test` alongside this binary.
fn loadgen_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join("loadgen");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (which builds examples)",
        path.display()
    );
    path
}

/// The READY line's `key=value` fields.
pub(crate) struct Ready {
    pub(crate) pid: u32,
    pub(crate) port: u16,
    pub(crate) idle_port: u16,
    pub(crate) workers: Vec<u32>,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("READY line {line:?} lacks {key}="))
}

/// Starts `examples/loadgen` with these arguments and waits for its READY line.
pub(crate) fn start(args: &[&str]) -> (Child, Ready) {
    let mut child = Command::new(loadgen_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start loadgen");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadgen printed no READY line within {READY_TIMEOUT:?}");
        }
    };
    assert!(line.starts_with("READY "), "unexpected first line {line:?}");
    let ready = Ready {
        pid: field(&line, "pid").parse().expect("pid"),
        port: field(&line, "port").parse().expect("port"),
        idle_port: field(&line, "idle_port").parse().expect("idle_port"),
        workers: field(&line, "workers")
            .split(',')
            .map(|p| p.parse().expect("worker pid"))
            .collect(),
    };
    assert_eq!(ready.pid, child.id());
    (child, ready)
}

/// (local port, remote port, state) of each IPv4 TCP socket with one of `ports` as its local
/// or remote port, from the kernel's table, each socket once.
///
/// `/proc/net/tcp` is produced in pieces: while other processes open and close sockets (other
/// tests, a benchmark's load), a socket can be listed twice or skipped. So duplicates (same
/// inode) are dropped and the table is read until two reads agree on these sockets.
fn tcp_sockets(ports: &[u16]) -> Vec<(u16, u16, u8)> {
    let read = || {
        let text = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
            let (Some(local), Some(remote), Some(state), Some(inode)) = (
                cols.get(1).and_then(|a| port(a)),
                cols.get(2).and_then(|a| port(a)),
                cols.get(3).and_then(|s| u8::from_str_radix(s, 16).ok()),
                cols.get(9),
            ) else {
                continue;
            };
            if ports.contains(&local) || ports.contains(&remote) {
                // TIME_WAIT sockets have inode 0: tell them apart by their addresses.
                let id = if *inode == "0" {
                    format!("{} {}", cols[1], cols[2])
                } else {
                    (*inode).to_string()
                };
                seen.insert((local, remote, state, id));
            }
        }
        seen
    };
    let mut last = read();
    for _ in 0..50 {
        let next = read();
        if next == last {
            break;
        }
        last = next;
        thread::sleep(Duration::from_millis(20));
    }
    last.into_iter().map(|(l, r, s, _)| (l, r, s)).collect()
}

const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

fn count(sockets: &[(u16, u16, u8)], f: impl Fn(&(u16, u16, u8)) -> bool) -> usize {
    sockets.iter().filter(|s| f(s)).count()
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show one with state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub(crate) fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadgen did not exit within {EXIT_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn loadgen_holds_both_ends_across_workers_and_cleans_up_when_stdin_closes() {
    // 300 connections at 100 per worker: three acceptors and three connectors.
    let (mut child, ready) = start(&["--connections", "300", "--udp", "5", "--per-worker", "100"]);
    assert_eq!(ready.workers.len(), 6, "3 acceptors + 3 connectors");
    assert!(ready.workers.iter().all(|&p| alive(p)));

    let port = ready.port;
    let sockets = tcp_sockets(&[port, ready.idle_port]);
    assert_eq!(count(&sockets, |s| s.0 == port && s.2 == LISTEN), 1);
    assert_eq!(
        count(&sockets, |s| s.0 == port && s.2 == ESTABLISHED),
        300,
        "accepted ends on the loaded port"
    );
    assert_eq!(
        count(&sockets, |s| s.1 == port && s.2 == ESTABLISHED),
        300,
        "client ends towards the loaded port"
    );
    assert_eq!(
        count(&sockets, |s| s.0 == ready.idle_port && s.2 == LISTEN),
        1
    );

    drop(child.stdin.take());
    let status = wait_exit(&mut child);
    assert!(status.success(), "loadgen exited with {status}");
    for pid in &ready.workers {
        assert!(!alive(*pid), "worker {pid} outlived the generator");
    }
    let after = tcp_sockets(&[port]);
    assert_eq!(
        count(&after, |s| s.0 == port || s.1 == port),
        0,
        "sockets (or TIME_WAIT) left on the loaded port"
    );
}

#[test]
fn loadgen_stops_and_reaps_its_workers_on_sigterm() {
    let (mut child, ready) = start(&["--connections", "50", "--hold-secs", "120"]);
    assert_eq!(ready.workers.len(), 2);
    // The child we started and still own (not yet reaped).
    let pid = rustix::process::Pid::from_raw(i32::try_from(ready.pid).expect("pid fits"))
        .expect("a valid pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = wait_exit(&mut child);
    assert!(status.success(), "loadgen exited with {status} on SIGTERM");
    for pid in &ready.workers {
        assert!(!alive(*pid), "worker {pid} outlived the generator");
    }
}

#[test]
fn loadgen_exits_after_hold_secs_without_any_signal() {
    let (mut child, ready) = start(&["--connections", "10", "--hold-secs", "1", "--no-stdin"]);
    let status = wait_exit(&mut child);
    assert!(status.success(), "loadgen exited with {status}");
    assert!(!alive(ready.workers[0]));
}

/// `bench/report.py`, run from the repository root.
fn report_py(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("bench/report.py")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run python3 (needed by the benchmark's count check)")
}

#[test]
fn bench_report_unit_tests_pass() {
    let out = Command::new("python3")
        .arg("bench/test_report.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run python3 bench/test_report.py");
    assert!(
        out.status.success(),
        "bench/test_report.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn benchmark_count_check_agrees_with_the_kernel_on_real_ss_output() {
    let (mut child, ready) = start(&["--connections", "200", "--per-worker", "100"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let run_ss = |args: &[&str], file: &str| {
        let out = Command::new("ss").args(args).output().expect("run ss");
        assert!(out.status.success(), "ss {args:?} failed");
        let path = dir.path().join(file);
        std::fs::write(&path, &out.stdout).expect("write ss output");
        path
    };
    let port = ready.port.to_string();
    let all = run_ss(&["-tanp"], "all.out");
    let filter = format!("sport = :{port}");
    let local = run_ss(&["-tanp", &filter], "local.out");
    let count = |mode: &str, path: &std::path::Path| {
        let out = report_py(&[
            "count",
            "--kind",
            "ss",
            "--mode",
            mode,
            "--port",
            &port,
            path.to_str().expect("utf-8 temp path"),
        ]);
        assert!(out.status.success(), "report.py count failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Listener + 200 accepted + 200 client ends, every one owned by a loadgen process.
    assert_eq!(count("list", &all), "401 401");
    assert_eq!(count("local", &local), "201 201");
    drop(child.stdin.take());
    assert!(wait_exit(&mut child).success());
}

#[test]
fn loadgen_default_ports_are_below_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("read ip_local_port_range");
    let first: u16 = range
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("ephemeral range start");
    let (mut child, ready) = start(&["--connections", "20"]);
    assert!(
        ready.port < first,
        "loaded port {} in the ephemeral range",
        ready.port
    );
    assert!(
        ready.idle_port < first,
        "idle port {} in the ephemeral range",
        ready.idle_port
    );
    assert_ne!(ready.port, ready.idle_port);
    drop(child.stdin.take());
    assert!(wait_exit(&mut child).success());
}

/// `netstat-mcp port <port> --proto tcp --json` → (pid, state) of each occupation.
fn port_owners(port: u16) -> Vec<(Option<u64>, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["port", &port.to_string(), "--proto", "tcp", "--json"])
        .output()
        .expect("run netstat-mcp port");
    assert!(out.status.success(), "port {port} reported free");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    v["data"]["occupations"]
        .as_array()
        .expect("occupations array")
        .iter()
        .map(|o| (o["pid"].as_u64(), o["state"].as_str().map(str::to_string)))
        .collect()
}

#[test]
fn port_owners_are_found_when_big_processes_are_scanned_after_the_owner() {
    // Acceptors hold 300 sockets each: more than owners::SMALL_PROCESS, so once the idle
    // listener's owner (the parent) is found, they are checked without listing their fds.
    let (mut child, ready) = start(&["--connections", "600", "--per-worker", "300"]);
    let parent = u64::from(ready.pid);
    let idle = port_owners(ready.idle_port);
    assert_eq!(idle, vec![(Some(parent), Some("LISTEN".to_string()))]);

    let loaded = port_owners(ready.port);
    assert_eq!(loaded.len(), 601, "listener + 600 accepted sockets");
    let ours: Vec<u64> = ready.workers.iter().map(|&p| u64::from(p)).collect();
    for (pid, state) in &loaded {
        let pid = pid.expect("every socket on the loaded port has an owner");
        match state.as_deref() {
            Some("LISTEN") => assert_eq!(pid, parent),
            Some("ESTABLISHED") => assert!(ours.contains(&pid), "accepted socket owned by {pid}"),
            other => panic!("unexpected state {other:?}"),
        }
    }
    drop(child.stdin.take());
    assert!(wait_exit(&mut child).success());
}
