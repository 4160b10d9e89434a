//! Connection health and traffic against the real kernel: connections the tests make in
//! network namespaces of their own (so every count is exact on a busy machine), compared with
//! what `ss` prints for the same sockets; loss made by an nftables rule in a namespace pair;
//! bytes counted over a window by programs the tests start; the cgroup of a socket named for a
//! server running as `nobody`; a remote host through a real sshd.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mcp_client::{Raw, Server, bin};
use crate::support::netns::NetNs;
use crate::support::world::{CgroupTree, Hierarchies, Holder, unique};

/// A python helper that plays the applications of a test: it names itself (`comm`) as told,
/// does what its mode says, prints `READY <port>...` and holds until stdin closes.
const PEER: &str = r#"
import ctypes, os, socket, sys, threading, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
mode = sys.argv[2]
args = sys.argv[3:]
def out(*words):
    print(*words, flush=True)
def drain(s):
    while True:
        try:
            d = s.recv(1 << 20)
        except OSError:
            d = b""
        if not d:
            s.close()
            return
def sink_server(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port)); l.listen(64)
    def run():
        while True:
            s, _ = l.accept()
            threading.Thread(target=drain, args=(s,), daemon=True).start()
    threading.Thread(target=run, daemon=True).start()
    return l
def send_all(s, n):
    chunk = b"x" * 65536
    while n > 0:
        k = s.send(chunk[:min(n, len(chunk))])
        n -= k
if mode == "sink":
    keep = sink_server(int(args[0]))
    out("READY", args[0])
elif mode == "bulk":
    # Connected now; sends N bytes when a line arrives on stdin.
    s = socket.create_connection(("127.0.0.1", int(args[0])))
    out("READY", s.getsockname()[1])
    sys.stdin.readline()
    send_all(s, int(args[1]))
    out("SENT")
elif mode == "short":
    # On a line: connect, wait, send N bytes, wait, close (it lives longer than the watcher's
    # listing interval).
    out("READY", 0)
    sys.stdin.readline()
    s = socket.create_connection(("127.0.0.1", int(args[0])))
    out("PORT", s.getsockname()[1])
    time.sleep(0.8)
    send_all(s, int(args[1]))
    time.sleep(0.8)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    out("SENT")
elif mode == "stream":
    # On a line: connect, send K pieces of N bytes, GAP seconds apart, close.
    out("READY", 0)
    sys.stdin.readline()
    s = socket.create_connection(("127.0.0.1", int(args[0])))
    for i in range(int(args[1])):
        if i:
            time.sleep(float(args[3]))
        send_all(s, int(args[2]))
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    out("SENT")
elif mode == "reuse":
    # A server and its client, connected now. On a line: the client sends N bytes, the server
    # reads them and closes first (the TIME_WAIT is the server side's), the client closes,
    # then connects again from the same port (the same four-tuple: Linux lets a new SYN take
    # over a TIME_WAIT), sends M bytes and holds that connection.
    def connect(local):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", local)); s.connect(("127.0.0.1", int(args[0])))
        return s
    def read_then_close(s, n):
        while n > 0:
            n -= len(s.recv(min(n, 1 << 20)))
        s.close()
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", int(args[0]))); l.listen(4)
    c = connect(0); a, _ = l.accept()
    local = c.getsockname()[1]
    out("READY", local)
    sys.stdin.readline()
    reader = threading.Thread(target=read_then_close, args=(a, int(args[1])))
    reader.start()
    send_all(c, int(args[1]))
    reader.join()
    assert c.recv(1) == b""
    c.close()
    time.sleep(0.8)
    again = connect(local); b, _ = l.accept()
    threading.Thread(target=drain, args=(b,), daemon=True).start()
    send_all(again, int(args[2]))
    out("SENT")
elif mode == "idle":
    s = socket.create_connection(("127.0.0.1", int(args[0])))
    out("READY", s.getsockname()[1])
elif mode == "mixed":
    # Listener, a pair that exchanged data, a pair whose receiver never reads (zero window),
    # IPv6 pair, a UDP socket flooded past its buffer.
    l = socket.socket(); l.bind(("127.0.0.1", int(args[0]))); l.listen(16)
    c = socket.create_connection(("127.0.0.1", int(args[0]))); a, _ = l.accept()
    send_all(c, 300000)
    got = 0
    while got < 300000:
        got += len(a.recv(1 << 20))
    a.sendall(b"y" * 4321); c.recv(8192)
    st = socket.create_connection(("127.0.0.1", int(args[0]))); sr, _ = l.accept()
    sr.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    st.setblocking(False)
    try:
        for _ in range(100000):
            st.send(b"z" * 65536)
    except BlockingIOError:
        pass
    l6 = socket.socket(socket.AF_INET6); l6.bind(("::1", int(args[0]))); l6.listen(4)
    c6 = socket.create_connection(("::1", int(args[0]))); a6, _ = l6.accept(); c6.sendall(b"q" * 777)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048); u.bind(("127.0.0.1", int(args[0])))
    w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(300):
        w.sendto(b"u" * 1000, ("127.0.0.1", int(args[0])))
    time.sleep(0.3)
    out("READY", args[0])
elif mode == "stall":
    # A sender whose receiver stopped reading: writes on each stdin line.
    l = socket.socket(); l.bind(("127.0.0.1", int(args[0]))); l.listen(4)
    st = socket.create_connection(("127.0.0.1", int(args[0]))); sr, _ = l.accept()
    sr.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    st.setblocking(False)
    def fill(n):
        try:
            for _ in range(n):
                st.send(b"z" * 4096)
        except BlockingIOError:
            pass
    fill(64)
    out("READY", st.getsockname()[1])
    for line in sys.stdin:
        fill(64)
        out("MORE")
    sys.exit(0)
for line in sys.stdin:
    pass
"#;

/// A running peer; closing stdin ends it, and it is killed by pid on drop.
struct Peer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub port: u16,
}

impl Peer {
    fn start(mut cmd: Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 peer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Peer {
            child,
            lines,
            port: 0,
        };
        let ready = peer.line("READY");
        peer.port = ready
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("READY <port>");
        peer
    }

    /// Waits (at most 60 s) for a line starting with `prefix`.
    fn line(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("peer printed no {prefix} line: {e}"),
            }
        }
    }

    fn poke(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write to peer");
        stdin.flush().expect("flush");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer(ns: &NetNs, name: &str, mode: &str, args: &[&str]) -> Peer {
    let mut cmd = ns.command("python3");
    cmd.args(["-c", PEER, name, mode]).args(args);
    Peer::start(cmd)
}

/// Runs a command inside `ns` and returns its stdout (it must succeed).
fn in_ns(ns: &NetNs, program: &str, args: &[&str]) -> String {
    let out = ns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn health_json(ns: &NetNs, args: &[&str]) -> Value {
    let mut all = vec!["health", "--json"];
    all.extend_from_slice(args);
    let text = in_ns(ns, bin().to_str().unwrap(), &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("health --json: {e}: {text}"))
}

/// One socket as `ss -tinm` / `ss -uanm` printed it: its endpoints and its `key:value` words
/// (`rtt` → `0.016/0.008`, `pacing_rate` → `123bps`, bare words → "").
#[derive(Debug, Clone)]
struct SsRow {
    local: String,
    peer: String,
    words: HashMap<String, String>,
}

/// Reads `ss -tinm` text independently of the crate's parser.
fn ss_rows(text: &str) -> Vec<SsRow> {
    let mut rows: Vec<SsRow> = Vec::new();
    for line in text.lines() {
        if line.starts_with("State") || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            rows.push(SsRow {
                local: cols[3].to_string(),
                peer: cols[4].to_string(),
                words: HashMap::new(),
            });
            continue;
        }
        let Some(row) = rows.last_mut() else { continue };
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            match w.split_once(':') {
                Some((k, v)) => {
                    row.words.insert(k.to_string(), v.to_string());
                }
                None if matches!(w, "pacing_rate" | "delivery_rate" | "send") => {
                    let v = words.next().unwrap_or_default();
                    row.words.insert(w.to_string(), v.to_string());
                }
                None => {
                    row.words.insert(w.to_string(), String::new());
                }
            }
        }
    }
    rows
}

fn endpoint(ip: &Value, port: &Value) -> String {
    let ip = ip.as_str().unwrap();
    if ip.contains(':') {
        format!("[{ip}]:{}", port)
    } else {
        format!("{ip}:{}", port)
    }
}

/// `ss` prints ms with `%g`: compare at 3 decimals (µs).
fn ms_eq(ours: &Value, ss: &str) -> bool {
    let (Some(a), Ok(b)) = (ours.as_f64(), ss.parse::<f64>()) else {
        return false;
    };
    ((a - b) * 1000.0).abs() < 0.5 || ((a - b) / b.max(1e-9)).abs() < 1e-5
}

fn num(ss: Option<&String>) -> u64 {
    ss.map_or(0, |v| {
        v.trim_end_matches("bps")
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0)
    })
}

/// Every tcp and mem field of our answer equals what ss printed for the same socket, taken
/// just before and just after (counters that move lie between the two).
#[test]
fn health_fields_equal_what_ss_prints() {
    let ns = NetNs::new("hexact");
    let _mixed = peer(&ns, "nm-mixed", "mixed", &["7300"]);
    let started = std::time::Instant::now();
    let before = ss_rows(&in_ns(&ns, "ss", &["-tinm"]));
    let answer = health_json(&ns, &["--limit", "0"]);
    let after = ss_rows(&in_ns(&ns, "ss", &["-tinm"]));
    let between_ms = started.elapsed().as_millis() as u64 + 1;
    assert_eq!(answer["success"], true, "{answer}");
    let rows = answer["data"]["connections"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "three TCP pairs: {answer}");
    let mut compared = 0;
    for row in rows {
        let local = endpoint(&row["local_ip"], &row["local_port"]);
        let peer = endpoint(&row["foreign_ip"], &row["foreign_port"]);
        let find = |rows: &[SsRow]| {
            rows.iter()
                .find(|r| r.local == local && r.peer == peer)
                .cloned()
                .unwrap_or_else(|| panic!("ss lists no {local} -> {peer}"))
        };
        let (b, a) = (find(&before), find(&after));
        let tcp = &row["tcp"];
        let mem = &row["mem"];
        // Values that stay put on an idle connection: equal.
        let rtt = b.words["rtt"].split_once('/').unwrap();
        assert!(
            ms_eq(&tcp["rtt_ms"], rtt.0),
            "{local}: rtt {} vs {}",
            tcp["rtt_ms"],
            rtt.0
        );
        assert!(ms_eq(&tcp["rttvar_ms"], rtt.1), "{local}: rttvar");
        assert!(ms_eq(&tcp["rto_ms"], &b.words["rto"]), "{local}: rto");
        assert!(
            ms_eq(&tcp["min_rtt_ms"], &b.words["minrtt"]),
            "{local}: minrtt"
        );
        for (ours, theirs) in [
            ("cwnd", "cwnd"),
            ("mss", "mss"),
            ("rcv_space", "rcv_space"),
            ("lost", "lost"),
            ("sacked", "sacked"),
            ("unacked", "unacked"),
            ("snd_wnd", "snd_wnd"),
            ("bytes_sent", "bytes_sent"),
            ("bytes_acked", "bytes_acked"),
            ("bytes_received", "bytes_received"),
            ("bytes_retrans", "bytes_retrans"),
            ("notsent_bytes", "notsent"),
        ] {
            let (lo, hi) = (num(b.words.get(theirs)), num(a.words.get(theirs)));
            let v = tcp[ours]
                .as_u64()
                .unwrap_or_else(|| panic!("{local}: no {ours}"));
            assert!(
                lo.min(hi) <= v && v <= lo.max(hi),
                "{local}: {ours} {v} not in [{lo}, {hi}]"
            );
        }
        // Counters that move: between the two reads.
        for (ours, theirs) in [("segs_out", "segs_out"), ("segs_in", "segs_in")] {
            let (lo, hi) = (num(b.words.get(theirs)), num(a.words.get(theirs)));
            let v = tcp[ours]
                .as_u64()
                .unwrap_or_else(|| panic!("{local}: no {ours}"));
            assert!(
                lo <= v && v <= hi,
                "{local}: {ours} {v} not in [{lo}, {hi}]"
            );
        }
        // Times since the last send/receive grow, but a send (a zero-window probe) restarts
        // them: at most the larger of the two reads plus the time between them.
        for (ours, theirs) in [("last_send_ms", "lastsnd"), ("last_recv_ms", "lastrcv")] {
            let (lo, hi) = (num(b.words.get(theirs)), num(a.words.get(theirs)));
            let v = tcp[ours]
                .as_u64()
                .unwrap_or_else(|| panic!("{local}: no {ours}"));
            assert!(
                v <= lo.max(hi) + between_ms,
                "{local}: {ours} {v} over [{lo}, {hi}] + {between_ms} ms"
            );
        }
        let retrans = b.words.get("retrans").map_or("0/0", String::as_str);
        let (now, total) = retrans.split_once('/').unwrap();
        assert_eq!(
            tcp["retrans"].as_u64(),
            now.parse().ok(),
            "{local}: retrans"
        );
        assert_eq!(
            tcp["total_retrans"].as_u64(),
            total.parse().ok(),
            "{local}: total_retrans"
        );
        assert_eq!(
            tcp["pacing_rate_bps"].as_u64().unwrap_or(0),
            num(b.words.get("pacing_rate")),
            "{local}: pacing_rate"
        );
        assert_eq!(
            tcp["delivery_rate_bps"].as_u64().unwrap_or(0),
            num(b.words.get("delivery_rate")),
            "{local}: delivery_rate"
        );
        // Busy time grows while data waits (the stalled sender): between the reads, in the
        // whole ms ss prints.
        let busy = tcp["busy_ms"].as_f64().unwrap_or(0.0) as u64;
        let (lo, hi) = (num(b.words.get("busy")), num(a.words.get("busy")));
        assert!(
            lo <= busy && busy <= hi,
            "{local}: busy {busy} not in [{lo}, {hi}]"
        );
        assert_eq!(
            tcp["app_limited"].as_bool(),
            Some(b.words.contains_key("app_limited")),
            "{local}: app_limited"
        );
        let skmem = &b.words["skmem"];
        for (ours, key) in [
            ("rmem_alloc", "r"),
            ("rcvbuf", "rb"),
            ("wmem_queued", "w"),
            ("sndbuf", "tb"),
            ("drops", "d"),
        ] {
            let ss_value = skmem
                .trim_matches(|c| c == '(' || c == ')')
                .split(',')
                .find_map(|p| {
                    let split = p.find(|c: char| c.is_ascii_digit())?;
                    (&p[..split] == key)
                        .then(|| p[split..].parse::<u64>().ok())
                        .flatten()
                })
                .unwrap_or_else(|| panic!("skmem {skmem} has no {key}"));
            assert_eq!(mem[ours].as_u64(), Some(ss_value), "{local}: mem.{ours}");
        }
        compared += 1;
    }
    assert_eq!(compared, 6);
    // The stalled sender: its peer advertises a zero window.
    let stalled: Vec<&Value> = rows
        .iter()
        .filter(|r| r["verdict"] == "zero_window")
        .collect();
    assert_eq!(stalled.len(), 1, "{answer}");
    assert!(stalled[0]["send_queue"].as_u64().unwrap() > 0);
    assert_eq!(answer["data"]["summary"]["zero_window"], 1);
    assert!(
        answer["message"].as_str().unwrap().contains("zero window"),
        "{}",
        answer["message"]
    );
}

/// A receiver that stops reading: the sender's peer window is 0 and its send queue grows.
#[test]
fn a_receiver_that_stops_reading_is_a_zero_window_with_a_growing_send_queue() {
    let ns = NetNs::new("hzero");
    let mut stall = peer(&ns, "nm-stall", "stall", &["7301"]);
    let port = stall.port.to_string();
    let first = health_json(&ns, &["--local-port", &port]);
    stall.poke();
    stall.line("MORE");
    let second = health_json(&ns, &["--local-port", &port]);
    let row = |v: &Value| v["data"]["connections"][0].clone();
    let (a, b) = (row(&first), row(&second));
    assert_eq!(a["verdict"], "zero_window", "{first}");
    assert_eq!(b["verdict"], "zero_window", "{second}");
    assert_eq!(a["tcp"]["snd_wnd"], 0);
    let queue = |r: &Value| r["send_queue"].as_u64().unwrap();
    assert!(
        queue(&b) > queue(&a),
        "send queue {} then {}",
        queue(&a),
        queue(&b)
    );
}

/// A UDP socket whose receiver never reads, flooded past its buffer: drops equal ss's `d`.
#[test]
fn udp_drops_equal_what_ss_prints() {
    let ns = NetNs::new("hudp");
    let _mixed = peer(&ns, "nm-mixed", "mixed", &["7302"]);
    let answer = health_json(&ns, &["--proto", "udp"]);
    let ss = in_ns(&ns, "ss", &["-uanm"]);
    let flooded = ss_rows(&ss)
        .into_iter()
        .find(|r| r.local == "127.0.0.1:7302")
        .unwrap_or_else(|| panic!("ss lists no 127.0.0.1:7302: {ss}"));
    let d: u64 = flooded.words["skmem"]
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .find_map(|p| p.strip_prefix('d'))
        .and_then(|d| d.parse().ok())
        .expect("ss -uanm prints a drop counter");
    assert!(d > 0, "{ss}");
    let rows = answer["data"]["connections"].as_array().expect("rows");
    let row = rows
        .iter()
        .find(|r| r["local_port"] == 7302)
        .unwrap_or_else(|| panic!("no row for 7302: {answer}"));
    assert_eq!(row["verdict"], "drops", "{answer}");
    assert_eq!(row["mem"]["drops"].as_u64(), Some(d), "{answer}");
    assert_eq!(answer["data"]["summary"]["drops"].as_u64(), Some(d));
    assert_eq!(answer["data"]["summary"]["dropping"], 1);
    assert!(row.get("tcp").is_none(), "UDP has no tcp_info: {row}");
}

/// Two namespaces joined by a veth pair, the receiver's dropping 10% of incoming TCP packets
/// (nftables `numgen random`): a bulk transfer retransmits, and says so.
#[test]
fn a_lossy_path_shows_retransmits_and_the_loss_verdict() {
    let sender = NetNs::new("hlossa");
    let receiver = NetNs::new("hlossb");
    let (a, b) = (unique("nla"), unique("nlb"));
    let run = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().expect("ip");
        assert!(st.success(), "ip {args:?}");
    };
    run(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    run(&["link", "set", &a, "netns", &sender.name]);
    run(&["link", "set", &b, "netns", &receiver.name]);
    run(&[
        "-n",
        &sender.name,
        "addr",
        "add",
        "10.213.7.1/24",
        "dev",
        &a,
    ]);
    run(&[
        "-n",
        &receiver.name,
        "addr",
        "add",
        "10.213.7.2/24",
        "dev",
        &b,
    ]);
    run(&["-n", &sender.name, "link", "set", &a, "up"]);
    run(&["-n", &receiver.name, "link", "set", &b, "up"]);
    let nft = |args: &str| {
        let out = receiver
            .command("nft")
            .arg(args)
            .output()
            .expect("nft (nftables) is installed by the test command");
        assert!(
            out.status.success(),
            "nft {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nft("add table inet nmloss");
    nft("add chain inet nmloss input { type filter hook input priority 0; }");
    nft("add rule inet nmloss input meta l4proto tcp numgen random mod 10 < 1 drop");
    // The receiver reads everything; the sender sends 4 MiB and keeps the connection open.
    let script = r#"
import socket, sys
if sys.argv[1] == "recv":
    l = socket.socket(); l.bind(("10.213.7.2", 7303)); l.listen(1)
    print("READY 7303", flush=True)
    s, _ = l.accept()
    got = 0
    while got < 4 << 20:
        d = s.recv(1 << 20)
        if not d: break
        got += len(d)
    print("GOT", got, flush=True)
    sys.stdin.readline()
else:
    s = socket.create_connection(("10.213.7.2", 7303))
    s.sendall(b"x" * (4 << 20))
    print("READY", s.getsockname()[1], flush=True)
    sys.stdin.readline()
"#;
    let mut cmd = receiver.command("python3");
    cmd.args(["-c", script, "recv"]);
    let mut rx = Peer::start(cmd);
    let mut cmd = sender.command("python3");
    cmd.args(["-c", script, "send"]);
    let tx = Peer::start(cmd);
    rx.line("GOT");
    let answer = health_json(&sender, &["--remote-port", "7303"]);
    let row = &answer["data"]["connections"][0];
    assert_eq!(
        row["local_port"].as_u64(),
        Some(u64::from(tx.port)),
        "{answer}"
    );
    assert!(
        row["tcp"]["total_retrans"].as_u64().unwrap() > 0,
        "{answer}"
    );
    assert_eq!(row["verdict"], "loss", "{answer}");
    let summary = &answer["data"]["summary"];
    assert_eq!(summary["retransmitting"], 1, "{answer}");
    assert!(summary["total_retrans"].as_u64().unwrap() > 0);
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("1 of 1 TCP connections to port 7303"),
        "{message}"
    );
    assert!(message.contains("Worst finding: loss"), "{message}");
}

/// A listener started in a cgroup named like a docker scope, asked about by a server running
/// as `nobody` (which cannot read the owner's /proc): the socket's cgroup id names the
/// container and the unit.
#[test]
fn the_socket_cgroup_names_unit_and_container_without_privilege() {
    let h = Hierarchies::find();
    let unified = h.unified.expect("a cgroup v2 hierarchy (root)");
    let top = format!("{}.slice", unique("nmh"));
    let id: String = (0..64)
        .map(|i| char::from(b"0123456789abcdef"[(i * 7 + std::process::id() as usize) % 16]))
        .collect();
    let tree = CgroupTree::new(std::slice::from_ref(&unified), &top);
    let scope = format!("docker-{id}.scope");
    let _group = tree.group(std::slice::from_ref(&unified), &scope);
    let procs = unified.join(&top).join(&scope).join("cgroup.procs");
    // Into the cgroup first, then open the socket: a socket keeps the cgroup it was made in.
    let join = format!("echo $$ > {} && exec \"$@\"", procs.display());
    let holder = Holder::start(&["sh", "-c", &join, "sh"], &["--tcp", "127.0.0.1:0"]);
    let port = holder.ports[0].to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args([
            "health",
            "--json",
            "--state",
            "LISTEN",
            "--local-port",
            &port,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("health --json");
    let row = &answer["data"]["connections"][0];
    assert!(
        row["pid"].is_null(),
        "nobody cannot see root's process: {row}"
    );
    assert_eq!(row["unit"], scope.as_str(), "{answer}");
    assert_eq!(row["container"]["runtime"], "docker", "{answer}");
    assert_eq!(row["container"]["id"], &id[..12], "{answer}");
    drop(holder);
}

/// Calls `traffic` (id 1) with `arguments`, and returns once the window runs: its first
/// progress notification comes a second after the window's first listing (or sample).
async fn start_traffic(raw: &mut Raw, arguments: Value) {
    raw.send(json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "traffic",
                   "arguments": arguments,
                   "_meta": {"progressToken": "t1"}}
    }))
    .await;
    loop {
        let m = raw.next_message().await.expect("server closed stdout");
        assert!(
            m.get("id") != Some(&json!(1)),
            "answered before any progress: {m}"
        );
        if m["method"] == "notifications/progress" {
            break;
        }
    }
}

/// Bytes per program over a window: one connection alive across it sends exactly 8 MiB, one
/// opened and closed inside it 3 MiB, one idle nothing; by program and by connection.
async fn traffic_of_three_connections(server: Raw, ns: &NetNs, by: &str) -> (Value, u16, u16, u16) {
    let mut raw = server;
    let sink = peer(ns, "nm-sink", "sink", &["7310"]);
    let sink_port = sink.port.to_string();
    let mut bulk = peer(
        ns,
        "nm-bulk",
        "bulk",
        &[&sink_port, &(8u64 << 20).to_string()],
    );
    let mut short = peer(
        ns,
        "nm-short",
        "short",
        &[&sink_port, &(3u64 << 20).to_string()],
    );
    let idle = peer(ns, "nm-idle", "idle", &[&sink_port]);
    start_traffic(&mut raw, json!({"duration_secs": 6, "by": by})).await;
    bulk.poke();
    short.poke();
    let short_port: u16 = short
        .line("PORT")
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap();
    bulk.line("SENT");
    short.line("SENT");
    let response = raw.response(1).await;
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.len() <= 24 * 1024);
    let answer = response["result"]["structuredContent"].clone();
    (answer, bulk.port, short_port, idle.port)
}

fn group<'a>(answer: &'a Value, key: &str) -> &'a Value {
    answer["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key}: {answer}"))
}

fn close_to(got: &Value, want: u64) -> bool {
    let got = got.as_u64().unwrap_or(u64::MAX);
    got.abs_diff(want) <= want / 1000 + 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_counts_the_bytes_of_long_short_and_idle_connections() {
    let ns = NetNs::new("htraf");
    let raw = Raw::start_command(ns.tokio_command(bin())).await;
    let (answer, _, _, _) = traffic_of_three_connections(raw, &ns, "program").await;
    assert_eq!(answer["success"], true, "{answer}");
    assert!(
        close_to(&group(&answer, "nm-bulk")["sent"], 8 << 20),
        "{answer}"
    );
    assert!(
        close_to(&group(&answer, "nm-short")["sent"], 3 << 20),
        "{answer}"
    );
    assert_eq!(group(&answer, "nm-idle")["sent"], 0, "{answer}");
    assert!(
        close_to(&group(&answer, "nm-sink")["received"], 11 << 20),
        "{answer}"
    );
    assert_eq!(group(&answer, "nm-short")["connections"], 1);
    assert!(answer["data"]["closed"].as_u64().unwrap() >= 1, "{answer}");
    assert!(
        close_to(&answer["data"]["totals"]["sent"], 11 << 20),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_by_connection_as_nobody_counts_bytes_without_owners() {
    let ns = NetNs::new("htrafu");
    let mut cmd = ns.tokio_command("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin());
    let raw = Raw::start_command(cmd).await;
    let (answer, bulk, short, idle) = traffic_of_three_connections(raw, &ns, "connection").await;
    assert_eq!(answer["success"], true, "{answer}");
    let key = |port: u16| format!("tcp 127.0.0.1:{port} -> 127.0.0.1:7310");
    assert!(
        close_to(&group(&answer, &key(bulk))["sent"], 8 << 20),
        "{answer}"
    );
    assert!(
        close_to(&group(&answer, &key(short))["sent"], 3 << 20),
        "{answer}"
    );
    assert_eq!(group(&answer, &key(idle))["sent"], 0, "{answer}");
}

/// A four-tuple used twice in one window: a connection alive at its start sends 2 MiB and
/// closes, and a new one from the same port to the same server sends 1 MiB and stays. Closes
/// are matched to listings by socket cookie, so the first one's bytes count although its
/// tuple is live again at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_counts_both_connections_of_a_reused_four_tuple() {
    let ns = NetNs::new("htrafr");
    let mut raw = Raw::start_command(ns.tokio_command(bin())).await;
    let (first, second) = (2u64 << 20, 1u64 << 20);
    let mut reuse = peer(
        &ns,
        "nm-reuse",
        "reuse",
        &["7311", &first.to_string(), &second.to_string()],
    );
    start_traffic(&mut raw, json!({"duration_secs": 5, "by": "connection"})).await;
    reuse.poke();
    reuse.line("SENT");
    let answer = raw.response(1).await["result"]["structuredContent"].clone();
    assert_eq!(answer["success"], true, "{answer}");
    let port = reuse.port;
    let out = group(&answer, &format!("tcp 127.0.0.1:{port} -> 127.0.0.1:7311"));
    assert!(close_to(&out["sent"], first + second), "{answer}");
    assert_eq!(out["connections"], 2, "{answer}");
    let back = group(&answer, &format!("tcp 127.0.0.1:7311 -> 127.0.0.1:{port}"));
    assert!(close_to(&back["received"], first + second), "{answer}");
    assert!(answer["data"]["closed"].as_u64().unwrap() >= 2, "{answer}");
}

/// The tools are listed, answer within their schemas (checked by `Server::call`), and bad
/// input names the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_traffic_answer_within_their_schemas() {
    let server = Server::start().await;
    let names: Vec<&str> = server.tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        names.contains(&"connection_health") && names.contains(&"traffic"),
        "{names:?}"
    );
    let health = server
        .call("connection_health", json!({"proto": "all", "sort": "rtt"}))
        .await;
    assert_eq!(health["success"], true, "{health}");
    let traffic = server
        .call("traffic", json!({"duration_secs": 1, "by": "local_port"}))
        .await;
    assert_eq!(traffic["success"], true, "{traffic}");
    assert!(
        traffic["data"]["udp_note"]
            .as_str()
            .unwrap()
            .contains("UDP")
    );
    for (tool, args, param) in [
        ("connection_health", json!({"sort": "speed"}), "sort"),
        ("connection_health", json!({"proto": "icmp"}), "proto"),
        ("connection_health", json!({"limit": -1}), "limit"),
        ("traffic", json!({"duration_secs": 60}), "duration_secs"),
        ("traffic", json!({"duration_secs": 0}), "duration_secs"),
        ("traffic", json!({"by": "pid"}), "by"),
        ("traffic", json!({"scope": "all"}), "scope"),
        ("traffic", json!({"port": 22}), "port"),
    ] {
        let answer = server.call(tool, args.clone()).await;
        assert_eq!(answer["success"], false, "{tool}({args})");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("'{param}'")),
            "{tool}({args}): {message}"
        );
    }
    server.stop().await;
}

/// `top --interval` refreshes until stopped, and a reader that goes away ends it quietly.
#[test]
fn top_refreshes_and_survives_a_closed_pipe() {
    let mut child = Command::new(bin())
        .args(["top", "--interval", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn top");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a line");
    assert!(first.starts_with("Program"), "{first:?}");
    let mut views = 0;
    for line in (&mut stdout).lines() {
        if line.expect("line").starts_with("TCP traffic on local host") {
            views += 1;
            if views == 2 {
                break;
            }
        }
    }
    assert_eq!(views, 2, "two refreshed views");
    drop(stdout);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("top kept running after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
}

/// `top --interval` views follow one another without a gap: a connection that opens in one
/// view, sends 64 KiB every 10 ms across several views and closes in a later one adds up to
/// exactly what it sent over the views (no byte lost between two views, none counted twice),
/// and a short connection inside them to its 3 MiB.
#[test]
fn top_views_add_up_without_a_gap() {
    let ns = NetNs::new("htop");
    let _sink = peer(&ns, "nm-sink", "sink", &["7312"]);
    let (pieces, piece) = (300u64, 64u64 << 10);
    let mut stream = peer(
        &ns,
        "nm-stream",
        "stream",
        &["7312", &pieces.to_string(), &piece.to_string(), "0.01"],
    );
    let mut short = peer(
        &ns,
        "nm-short",
        "short",
        &["7312", &(3u64 << 20).to_string()],
    );
    let mut top = ns
        .command(bin())
        .args(["top", "--interval", "1", "--json", "--by", "program"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn top");
    // Each view with when it arrived.
    let (tx, views) = std::sync::mpsc::channel::<(std::time::Instant, String)>();
    let stdout = top.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((std::time::Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let next_view = || -> (std::time::Instant, Value) {
        let (at, line) = views
            .recv_timeout(Duration::from_secs(30))
            .expect("top prints a view a second");
        let view = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        (at, view)
    };
    // The first view ends before either connection opens.
    let mut seen = vec![next_view().1];
    stream.poke();
    short.poke();
    stream.line("SENT");
    short.line("SENT");
    let done = std::time::Instant::now();
    // Every view until two have ended since both closed: the one running then holds their
    // last bytes (or the next, for a close that came after its closing listing).
    let mut after = 0;
    while after < 2 {
        let (at, view) = next_view();
        seen.push(view);
        if at > done {
            after += 1;
        }
    }
    let _ = top.kill();
    let _ = top.wait();
    let sent = |program: &str| -> u64 {
        seen.iter()
            .flat_map(|v| v["data"]["groups"].as_array().cloned().unwrap_or_default())
            .filter(|g| g["key"] == program)
            .map(|g| g["sent"].as_u64().unwrap())
            .sum()
    };
    let all = Value::Array(seen.clone());
    assert!(seen.len() >= 4, "{all}");
    assert!(
        seen.iter().all(|v| v["success"] == true),
        "every view succeeds: {all}"
    );
    for (program, want) in [("nm-stream", pieces * piece), ("nm-short", 3 << 20)] {
        let got = sent(program);
        assert!(
            got.abs_diff(want) <= want / 1000 + 4,
            "{program}: {got} bytes over the views, want {want}: {all}"
        );
    }
    // The stream spans several views (its bytes are not all in one).
    let holding = seen
        .iter()
        .filter(|v| {
            v["data"]["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["key"] == "nm-stream" && g["sent"] != 0))
        })
        .count();
    assert!(holding >= 2, "{all}");
}

/// A remote Linux host through a real sshd: `ss -tinm` there gives the same fields, with the
/// values the local answer has for the same socket (counters between two local reads).
#[test]
fn a_remote_linux_host_reports_the_same_health_as_the_local_answer() {
    use crate::support::sshd::{PASSWORD, Sshd, UserPath};
    let sshd = Sshd::start(UserPath::System);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        sshd.config_text("", &format!("password = \"{PASSWORD}\"")),
    )
    .expect("write config");
    let listener = crate::support::net::tcp_listener("127.0.0.1");
    let port = listener.local_addr().unwrap().port().to_string();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&vec![7u8; 100_000]).unwrap();
    let mut buf = vec![0u8; 100_000];
    std::io::Read::read_exact(&mut server, &mut buf).unwrap();
    server.write_all(b"pong").unwrap();
    std::io::Read::read_exact(&mut client, &mut buf[..4]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let run = |args: &[&str]| -> Value {
        let out = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(["health", "--json", "--local-port", &port])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run health");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let before = run(&[]);
    let remote = run(&["--host", "test-sshd"]);
    let after = run(&[]);
    assert_eq!(remote["success"], true, "{remote}");
    assert_eq!(remote["data"]["host"], "test-sshd");
    let row = |v: &Value| v["data"]["connections"][0].clone();
    let (b, r, a) = (row(&before), row(&remote), row(&after));
    assert_eq!(
        r["foreign_port"], b["foreign_port"],
        "the same socket: {remote}"
    );
    for f in ["rtt_ms", "rttvar_ms", "rto_ms", "min_rtt_ms"] {
        let (x, y) = (r["tcp"][f].as_f64().unwrap(), b["tcp"][f].as_f64().unwrap());
        assert!((x - y).abs() < 0.0005, "{f}: remote {x}, local {y}");
    }
    for f in [
        "cwnd",
        "mss",
        "rcv_space",
        "snd_wnd",
        "unacked",
        "lost",
        "retrans",
        "total_retrans",
        "bytes_sent",
        "bytes_acked",
        "bytes_received",
        "bytes_retrans",
        "notsent_bytes",
    ] {
        assert_eq!(r["tcp"][f], b["tcp"][f], "{f}: {r} vs {b}");
    }
    for f in ["segs_out", "segs_in", "last_send_ms", "last_recv_ms"] {
        let v = r["tcp"][f]
            .as_u64()
            .unwrap_or_else(|| panic!("remote {f}: {r}"));
        let (lo, hi) = (b["tcp"][f].as_u64().unwrap(), a["tcp"][f].as_u64().unwrap());
        assert!(lo <= v && v <= hi, "{f}: {v} not in [{lo}, {hi}]");
    }
    for f in ["rmem_alloc", "rcvbuf", "sndbuf", "wmem_queued", "drops"] {
        assert_eq!(r["mem"][f], b["mem"][f], "mem.{f}");
    }
    // ss prints no congestion-avoidance state: left out remotely, not guessed.
    assert!(r["tcp"].get("ca_state").is_none());
    assert_eq!(r["verdict"], b["verdict"]);
}

/// A macOS host has no per-connection counters: a clear error naming what is missing, never an
/// empty success.
#[test]
fn a_macos_host_is_refused_with_what_is_missing() {
    use crate::support::sshd::{PASSWORD, Sshd, UserPath};
    let sshd = Sshd::start(UserPath::Bare);
    sshd.shim("uname", "#!/bin/sh\necho Darwin\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        sshd.config_text("", &format!("password = \"{PASSWORD}\"")),
    )
    .expect("write config");
    for args in [
        vec!["health", "--json", "--host", "test-sshd"],
        vec!["top", "--json", "--duration", "1", "--host", "test-sshd"],
    ] {
        let out = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(answer["success"], false, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("need a Linux host with iproute2's ss")
                && message.contains("macOS/BSD"),
            "{args:?}: {message}"
        );
    }
}

/// A remote Linux host's traffic from two ss samples: a connection alive across the window
/// that sends 2 MiB during it counts 2 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_traffic_counts_bytes_between_two_samples() {
    use crate::support::sshd::{PASSWORD, Sshd, UserPath};
    let sshd = Sshd::start(UserPath::System);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        sshd.config_text("", &format!("password = \"{PASSWORD}\"")),
    )
    .expect("write config");
    let listener = crate::support::net::tcp_listener("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let cport = client.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while got < 2 << 20 {
            match std::io::Read::read(&mut server, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        // Kept open: a connection closed between the two samples is not seen remotely.
        (got, server)
    });
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("--config").arg(&config);
    let mut raw = Raw::start_command(cmd).await;
    start_traffic(
        &mut raw,
        json!({"host": "test-sshd", "duration_secs": 3, "local_port": port, "by": "connection"}),
    )
    .await;
    client.write_all(&vec![1u8; 2 << 20]).unwrap();
    let (got, _server) = reader.join().unwrap();
    assert_eq!(got, 2 << 20);
    let response = raw.response(1).await;
    let answer = &response["result"]["structuredContent"];
    assert_eq!(answer["success"], true, "{answer}");
    let key = format!("tcp 127.0.0.1:{port} -> 127.0.0.1:{cport}");
    assert!(
        close_to(&group(answer, &key)["received"], 2 << 20),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("two ss listings"),
        "{answer}"
    );
}

/// A close the kernel notified carries the connection's totals (as bcc's tcplife): `watch
/// --json` in a namespace of the test's own, one connection that sends 3 MiB and receives
/// 1,234 bytes, then closes.
#[test]
fn close_events_carry_bytes_retransmits_and_rtt() {
    let ns = NetNs::new("hclose");
    let mut watch = ns
        .command(bin())
        .args(["watch", "--json", "--proto", "tcp"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut err = BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).expect("watch says it is watching");
    assert!(line.contains("watching"), "{line}");
    let script = r#"
import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 7320)); l.listen(1)
c = socket.create_connection(("127.0.0.1", 7320)); s, _ = l.accept()
time.sleep(0.6)
c.sendall(b"x" * (3 << 20))
got = 0
while got < 3 << 20:
    got += len(s.recv(1 << 20))
s.sendall(b"y" * 1234)
got = 0
while got < 1234:
    got += len(c.recv(4096))
time.sleep(0.6)
c.close(); s.close()
time.sleep(0.5)
"#;
    let status = ns
        .command("python3")
        .args(["-c", script])
        .status()
        .expect("python3");
    assert!(status.success());
    let mut out = BufReader::new(watch.stdout.take().unwrap());
    let mut close = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while close.is_none() && std::time::Instant::now() < deadline {
        let mut l = String::new();
        if out.read_line(&mut l).expect("read") == 0 {
            break;
        }
        let e: Value = serde_json::from_str(&l).expect("json line");
        if e["event"] == "close" && e["foreign_port"] == 7320 {
            close = Some(e);
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let close = close.expect("the client's close event");
    assert_eq!(close["origin"], "destroy", "{close}");
    assert_eq!(close["sent"], 3u64 << 20, "{close}");
    assert_eq!(close["received"], 1234, "{close}");
    assert!(close["total_retrans"].is_u64(), "{close}");
    assert!(close["rtt_ms"].as_f64().is_some_and(|r| r > 0.0), "{close}");
    assert_eq!(
        close["program"], "python3",
        "a listing saw it open: {close}"
    );
}
