//! Answers sized for an agent, against the real kernel over the real stdio transport: every
//! default answer within its byte budget on a loaded host, a summary that agrees with `ss`,
//! and paging that yields exactly one full listing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

use serde_json::{Value, json};

use crate::support::mcp_client::{Server, bin};
use crate::support::quiet_ns::QuietNs;

/// The largest text block of a default answer (24 KiB).
const BUDGET: usize = 24 * 1024;
/// The `netstat` tool's own cap on its output (64 KiB), which bounds its whole text block.
const NETSTAT_BUDGET: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_answer_fits_its_budget_with_20000_connections() {
    let (mut child, ready) = crate::loadgen::start(&["--connections", "20000", "--udp", "100"]);
    let server = Server::start().await;
    let port = ready.port;
    let cases = [
        ("query_network_connections", json!({}), BUDGET),
        (
            "query_network_connections",
            json!({"state": "ESTABLISHED"}),
            BUDGET,
        ),
        (
            "query_network_connections",
            json!({"state": "LISTEN"}),
            BUDGET,
        ),
        ("check_port_occupation", json!({ "port": port }), BUDGET),
        (
            "check_port_occupation",
            json!({ "port": ready.idle_port }),
            BUDGET,
        ),
        ("list_hosts", json!({}), BUDGET),
        ("netstat", json!({}), NETSTAT_BUDGET),
        ("netstat", json!({"args": ["-tanp"]}), NETSTAT_BUDGET),
        ("connection_health", json!({}), BUDGET),
        (
            "connection_health",
            json!({"proto": "all", "sort": "bytes"}),
            BUDGET,
        ),
        ("traffic", json!({}), BUDGET),
        (
            "traffic",
            json!({"by": "connection", "duration_secs": 2}),
            BUDGET,
        ),
    ];
    let mut answers = Vec::new();
    for (tool, args, budget) in cases {
        let (value, size) = server.call_sized(tool, args.clone()).await;
        // netstat itself may need more than its 3 s on a busy machine with 40,000 sockets:
        // then the answer is that timeout, which is within the budget too.
        let netstat_timed_out = tool == "netstat"
            && value["message"]
                .as_str()
                .is_some_and(|m| m.contains("did not finish within 3 s"));
        assert!(
            value["success"] == true || netstat_timed_out,
            "{tool}({args}): {value}"
        );
        assert!(
            size <= budget,
            "{tool}({args}): text block of {size} bytes, over the {budget}-byte budget"
        );
        answers.push(value);
    }

    // The listing counts everything and summarises it, whatever it shows.
    let listing = &answers[0]["data"];
    let count = listing["connection_count"].as_u64().expect("count");
    assert!(count >= 40_002, "two ends of 20,000 connections: {count}");
    assert_eq!(listing["truncated"], true);
    assert!(listing["next_cursor"].is_string());
    let estab = listing["summary"]["by_state"]["ESTABLISHED"]
        .as_u64()
        .unwrap_or(0);
    assert!(estab >= 40_000, "{}", listing["summary"]);
    let loadgen_pids: Vec<u64> = std::iter::once(ready.pid)
        .chain(ready.workers.iter().copied())
        .map(u64::from)
        .collect();
    let top = listing["summary"]["top_programs"]
        .as_array()
        .expect("top_programs");
    assert!(
        top.iter()
            .any(|p| loadgen_pids.contains(&p["pid"].as_u64().unwrap_or(0))),
        "the load generator's processes hold the most sockets: {top:?}"
    );

    // The port check on the loaded listener: the exact count, and every owner named.
    let check = &answers[3];
    let data = &check["data"];
    assert_eq!(
        data["occupation_count"], 20_001,
        "listener + 20,000 accepted"
    );
    assert_eq!(data["truncated"], true);
    assert_eq!(data["occupations"][0]["state"], "LISTEN", "listening first");
    let owners = data["owners"].as_array().expect("owners");
    assert_eq!(data["owner_count"].as_u64(), Some(owners.len() as u64));
    let mut established = 0;
    for o in owners {
        let pid = o["pid"].as_u64().expect("pid");
        assert!(
            loadgen_pids.contains(&pid),
            "owner {pid} is not the load generator's"
        );
        established += o["states"]["ESTABLISHED"].as_u64().unwrap_or(0);
    }
    assert_eq!(established, 20_000, "{owners:?}");
    let message = check["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("(pid {}; LISTEN 1)", ready.pid)),
        "the parent holds the listener: {message}"
    );
    for o in owners {
        assert!(
            message.contains(&format!("(pid {};", o["pid"])),
            "{message} does not name owner {o}"
        );
    }
    for netstat in [&answers[6], &answers[7]] {
        if netstat["success"] == true {
            let data = &netstat["data"];
            assert_eq!(data["truncated"], true, "40,000 lines cannot fit in 64 KiB");
            let last = data["output"]
                .as_str()
                .and_then(|o| o.lines().last())
                .unwrap_or_default();
            assert!(last.contains("lines left out"), "{last}");
        }
    }

    // Health counts every connection in its summary and shows the 20 worst.
    let health = &answers[8]["data"];
    assert!(
        health["connection_count"].as_u64().unwrap_or(0) >= 40_000,
        "{health}"
    );
    assert_eq!(
        health["summary"]["connection_count"],
        health["connection_count"]
    );
    assert!(health["connections"].as_array().map_or(0, Vec::len) <= 20);
    assert_eq!(health["truncated"], true);
    // Traffic over idle connections: counted, within the budget.
    assert!(
        answers[10]["data"]["connection_count"]
            .as_u64()
            .unwrap_or(0)
            >= 40_000
    );

    server.stop().await;
    drop(child.stdin.take());
    assert!(crate::loadgen::wait_exit(&mut child).success());
}

/// A fixture in a quiet namespace: listeners, established pairs over IPv4 and IPv6,
/// TIME_WAIT, CLOSE_WAIT/FIN_WAIT2, bound and connected UDP sockets; `READY` on stdout, then
/// it holds until stdin closes.
const FIXTURE: &str = r#"
import socket, sys
keep = []
def listener(family, addr):
    l = socket.socket(family, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(addr)
    l.listen(1024)
    keep.append(l)
    return l
def pair(l, family, addr):
    c = socket.socket(family, socket.SOCK_STREAM)
    c.connect(addr)
    s, _ = l.accept()
    return c, s
v4 = ("127.0.0.1", 7000)
v6 = ("::1", 7001)
l4 = listener(socket.AF_INET, v4)
l6 = listener(socket.AF_INET6, v6)
for _ in range(150):
    keep.extend(pair(l4, socket.AF_INET, v4))
for _ in range(40):
    keep.extend(pair(l6, socket.AF_INET6, v6))
for _ in range(5):
    # The client closes first: its end lingers in TIME_WAIT.
    c, s = pair(l4, socket.AF_INET, v4)
    c.close()
    s.recv(1)
    s.close()
for _ in range(4):
    # The client stops writing, the server keeps its end: CLOSE_WAIT and FIN_WAIT2.
    c, s = pair(l4, socket.AF_INET, v4)
    c.shutdown(socket.SHUT_WR)
    keep.extend([c, s])
for port in (7100, 7101, 7102):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", port))
    keep.append(u)
for _ in range(2):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.connect(("127.0.0.1", 7100))
    keep.append(u)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind(("::1", 7103))
keep.append(u)
print("READY", flush=True)
sys.stdin.read()
"#;

/// The fixture process, stopped (by pid) on drop.
struct Fixture(Child);

impl Fixture {
    fn start(ns: &QuietNs) -> Fixture {
        let mut child = ns
            .command("python3")
            .args(["-c", FIXTURE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 (the fixture needs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read READY");
        assert_eq!(line.trim(), "READY", "fixture failed to start");
        Fixture(child)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// State → count as `ss -tanH` and `ss -uanH` show them inside the namespace, in netstat
/// spelling (UDP as UNCONN/ESTABLISHED), and protocol → count.
fn ss_counts(ns: &QuietNs) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut states = BTreeMap::new();
    let mut protocols = BTreeMap::new();
    for (flags, transport) in [("-tanH", "tcp"), ("-uanH", "udp")] {
        let out = ns.command("ss").arg(flags).output().expect("run ss");
        assert!(out.status.success(), "ss {flags} failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(state), Some(local)) = (cols.first(), cols.get(3)) else {
                continue;
            };
            let name = match (transport, *state) {
                ("udp", "UNCONN") => "UNCONN".to_string(),
                (_, "ESTAB") => "ESTABLISHED".to_string(),
                (_, "TIME-WAIT") => "TIME_WAIT".to_string(),
                (_, "CLOSE-WAIT") => "CLOSE_WAIT".to_string(),
                (_, "FIN-WAIT-2") => "FIN_WAIT2".to_string(),
                (_, "FIN-WAIT-1") => "FIN_WAIT1".to_string(),
                (_, "LAST-ACK") => "LAST_ACK".to_string(),
                (_, "SYN-SENT") => "SYN_SENT".to_string(),
                (_, "SYN-RECV") => "SYN_RECV".to_string(),
                (_, other) => other.to_string(),
            };
            *states.entry(name).or_insert(0) += 1;
            let family = if local.starts_with('[') { "6" } else { "" };
            *protocols.entry(format!("{transport}{family}")).or_insert(0) += 1;
        }
    }
    (states, protocols)
}

fn as_counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .expect("an object of counts")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("a count")))
        .collect()
}

/// `ss` again until two readings agree (closing sockets settle within milliseconds).
fn settled(ns: &QuietNs) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut last = ss_counts(ns);
    for _ in 0..100 {
        let now = ss_counts(ns);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("socket counts in the fixture namespace never settled: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_agrees_with_ss_and_pages_yield_one_full_listing() {
    let ns = QuietNs::new("answers");
    let fixture = Fixture::start(&ns);
    let server = Server::start_command(ns.tokio_command(bin())).await;

    let before = settled(&ns);
    let (answer, size) = server
        .call_sized("query_network_connections", json!({}))
        .await;
    let after = ss_counts(&ns);
    assert_eq!(
        before, after,
        "the fixture namespace changed during the call"
    );
    let data = &answer["data"];
    let summary = &data["summary"];
    assert_eq!(as_counts(&summary["by_state"]), before.0, "{summary}");
    assert_eq!(as_counts(&summary["by_protocol"]), before.1, "{summary}");
    let total: u64 = before.0.values().sum();
    assert_eq!(data["connection_count"].as_u64(), Some(total));
    assert!(size <= BUDGET, "{size} bytes");
    // 2 TCP listeners and 4 bound UDP sockets; the fixture holds them all.
    assert_eq!(summary["listener_count"], 6, "{summary}");
    let pid = u64::from(fixture.0.id());
    assert_eq!(summary["top_programs"][0]["pid"], pid, "{summary}");
    assert_eq!(summary["top_remote_hosts"][0]["foreign_ip"], "127.0.0.1");

    // One full listing, then the same listing in pages of 37.
    let full = server
        .call("query_network_connections", json!({"limit": 0}))
        .await;
    let row = |r: &Value| {
        (
            r["protocol"].to_string(),
            r["local_ip"].to_string(),
            r["local_port"].to_string(),
            r["foreign_ip"].to_string(),
            r["foreign_port"].to_string(),
            r["state"].to_string(),
            r["pid"].to_string(),
        )
    };
    let all: Vec<_> = full["data"]["connections"]
        .as_array()
        .expect("rows")
        .iter()
        .map(row)
        .collect();
    assert_eq!(all.len() as u64, total);
    assert_eq!(full["data"]["next_cursor"], Value::Null);
    let mut paged = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 100, "paging did not end");
        let mut args = json!({"limit": 37});
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = server.call("query_network_connections", args).await;
        let rows = page["data"]["connections"].as_array().expect("rows");
        assert!(rows.len() <= 37);
        assert_eq!(page["data"]["connection_count"].as_u64(), Some(total));
        paged.extend(rows.iter().map(row));
        cursor = page["data"]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages as u64, total.div_ceil(37));
    assert_eq!(
        paged, all,
        "pages must yield the full listing, in order, once"
    );
    let mut unique = paged.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), paged.len(), "no row twice");

    // LISTEN includes the bound UDP sockets, as netstat -l does.
    let listening = server
        .call("query_network_connections", json!({"state": "LISTEN"}))
        .await;
    let protocols: Vec<&str> = listening["data"]["connections"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["protocol"].as_str())
        .collect();
    assert_eq!(protocols, ["tcp", "tcp6", "udp", "udp", "udp", "udp6"]);
    server.stop().await;
    drop(fixture);
}
