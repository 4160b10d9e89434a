//! Metrics for Prometheus against the real things: Debian's `prometheus` scraping
//! `serve --http --metrics` with the bearer token, `promtool check metrics` on every
//! exposition we write, node_exporter's textfile collector reading `metrics --output`, and the
//! recorder's counters over real loopback connections.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::mcp_client::HttpServer;
use crate::support::net::{our_program, tcp_listener};

const TOKEN_ENV: &str = "NETSTAT_MCP_METRICS_TEST_TOKEN";
const TOKEN: &str = "metrics-test-token-0123456789abcdef";
/// What Prometheus 2.42 (Debian 12) sends: OpenMetrics first.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A child process ended (and waited for) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `netstat-mcp serve --http 127.0.0.1:0 --token-env … --metrics [extra]`.
struct Served {
    child: tokio::process::Child,
    addr: String,
}

impl Served {
    async fn start(extra: &[&str]) -> Served {
        let mut args = vec!["--token-env", TOKEN_ENV, "--metrics"];
        args.extend_from_slice(extra);
        let server = HttpServer::start(&args, &[(TOKEN_ENV, TOKEN)]).await;
        Served {
            child: server.child,
            addr: server.addr,
        }
    }

    async fn scrape(&self, accept: Option<&str>, token: &str) -> (u16, String, String) {
        let mut request = reqwest::Client::new()
            .get(format!("http://{}/metrics", self.addr))
            .bearer_auth(token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.expect("GET /metrics");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, content_type, response.text().await.expect("body"))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of an exposition (our own writer's simple form: no escapes in values used here).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().expect("value"))
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include every pair of `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `promtool check metrics` on `text`: its exit status and output.
fn promtool(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Holds `n` accepted loopback connections to `listener` (both ends).
fn hold_connections(listener: &TcpListener, n: usize) -> Vec<TcpStream> {
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(addr).expect("connect"));
        held.push(listener.accept().expect("accept").0);
    }
    held
}

/// GETs `url` (Prometheus' or node_exporter's HTTP API) as JSON or text, bounded.
async fn get_text(url: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_serve_metrics_with_the_token_and_a_wrong_token_is_down() {
    let listener = tcp_listener("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let _held = hold_connections(&listener, 3);
    let served = Served::start(&[]).await;

    // What Prometheus asks for is what it gets: OpenMetrics.
    let (status, content_type, body) = served.scrape(Some(PROMETHEUS_ACCEPT), TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"));
    let (status, _, _) = served.scrape(None, "not-the-token-at-all-000000").await;
    assert_eq!(status, 401, "a wrong token is refused");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    let target = served.addr.clone();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             - job_name: netstat\n  authorization:\n    credentials: {TOKEN}\n  static_configs:\n  - targets: ['{target}']\n\
             - job_name: wrongtoken\n  authorization:\n    credentials: wrong-token-0000000000000000\n  static_configs:\n  - targets: ['{target}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let web = free_port();
    let prometheus = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test.sh installs it)"),
    );
    let api = format!("http://127.0.0.1:{web}/api/v1");
    let query = |q: String| {
        let api = api.clone();
        async move {
            let url = reqwest::Url::parse_with_params(&format!("{api}/query"), &[("query", q)])
                .expect("url");
            let text = reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["data"]["result"].as_array().cloned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let info = loop {
        if let Some(result) = query(format!("netstat_listener_info{{port=\"{port}\"}}")).await
            && !result.is_empty()
        {
            break result;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never stored our listener"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(
        info[0]["metric"]["program"],
        our_program().as_str(),
        "{info:?}"
    );
    assert_eq!(info[0]["metric"]["job"], "netstat");
    let connections = query(format!("netstat_listener_connections{{port=\"{port}\"}}"))
        .await
        .expect("query");
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(
        connections[0]["value"][1], "3",
        "the connections the test holds"
    );

    let targets = loop {
        let text = get_text(&format!("{api}/targets")).await;
        let v: serde_json::Value = serde_json::from_str(&text).expect("targets JSON");
        let targets = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let health = |job: &str| {
            targets
                .iter()
                .find(|t| t["labels"]["job"] == job)
                .map(|t| t["health"].as_str().unwrap_or("").to_string())
        };
        if health("wrongtoken").as_deref() == Some("down") {
            break targets;
        }
        assert!(
            Instant::now() < deadline,
            "the wrong-token target never went down: {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let netstat = targets
        .iter()
        .find(|t| t["labels"]["job"] == "netstat")
        .expect("netstat job");
    assert_eq!(netstat["health"], "up", "{netstat}");
    drop(prometheus);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_every_exposition_at_10_and_20000_connections() {
    let listener = tcp_listener("127.0.0.1");
    let _held = hold_connections(&listener, 10);
    let served = Served::start(&[]).await;
    let cli = || {
        let out = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
            .arg("metrics")
            .output()
            .expect("netstat-mcp metrics");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    for (what, text) in [
        ("metrics at 10", cli()),
        ("/metrics at 10", served.scrape(None, TOKEN).await.2),
    ] {
        let (ok, said) = promtool(&text);
        assert!(ok, "{what}: promtool says {said}\n{text}");
        assert!(text.contains("netstat_listener_connections"), "{what}");
    }
    let (status, content_type, _) = served.scrape(Some("text/plain"), TOKEN).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );

    let (mut loadgen, ready) = crate::loadgen::start(&["--connections", "20000"]);
    // A scrape that arrives while one runs gets its result: the same text, down to the
    // scrape's own duration.
    let (a, b) = tokio::join!(served.scrape(None, TOKEN), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        served.scrape(None, TOKEN).await
    });
    assert_eq!(a.2, b.2, "the second scrape shared the first one's result");
    let text = served.scrape(None, TOKEN).await.2;
    let s = samples(&text);
    assert_eq!(
        sum(
            &s,
            "netstat_listener_connections",
            &[("port", &ready.port.to_string())]
        ),
        20000.0
    );
    let (ok, said) = promtool(&text);
    assert!(ok, "/metrics at 20,000: promtool says {said}");
    let (ok, said) = promtool(&cli());
    assert!(ok, "metrics at 20,000: promtool says {said}");
    drop(loadgen.stdin.take());
    let _ = loadgen.wait();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_exports_the_textfile_we_write() {
    let listener = tcp_listener("127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("netstat.prom");
    let out = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["metrics", "--output"])
        .arg(&file)
        .output()
        .expect("netstat-mcp metrics --output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "the exposition goes to the file only"
    );
    let written = std::fs::read_to_string(&file).expect("the textfile");
    let (ok, said) = promtool(&written);
    assert!(ok, "textfile: promtool says {said}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary left"
    );

    let web = free_port();
    let _exporter = Reaped(
        Command::new("prometheus-node-exporter")
            .arg(format!(
                "--collector.textfile.directory={}",
                dir.path().display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter (scripts/test.sh installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{web}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = text
            && let Ok(t) = r.text().await
        {
            break t;
        }
        assert!(Instant::now() < deadline, "node_exporter did not answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exported = samples(
        &text
            .lines()
            .filter(|l| l.starts_with("netstat_") || l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let ours = sum(
        &exported,
        "netstat_listener_info",
        &[("port", &port.to_string())],
    );
    assert_eq!(ours, 1.0, "node_exporter exports our listener:\n{text}");
    assert!(text.contains("node_textfile_scrape_error 0"), "{text}");
}

/// A listener whose accepted connections are closed at once by a thread of its own.
fn closing_acceptor(listener: TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let mut buf = [0u8; 16];
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    // The client closes first; then this end closes.
                    let _ = s.read(&mut buf);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_record_1000_short_connections_count_exactly_and_counters_never_go_back() {
    let short = tcp_listener("127.0.0.1");
    let short_port = short.local_addr().unwrap().port();
    let held = tcp_listener("127.0.0.1");
    let held_port = held.local_addr().unwrap().port();
    let served = Served::start(&["--record"]).await;
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    let mut check_monotonic = |s: &[Sample]| {
        for (name, labels, v) in s {
            if !name.ends_with("_total") {
                continue;
            }
            let key = format!("{name}{labels:?}");
            if let Some(before) = last.get(&key) {
                assert!(v >= before, "{key} went back from {before} to {v}");
            }
            last.insert(key, *v);
        }
    };
    let first = samples(&served.scrape(None, TOKEN).await.2);
    check_monotonic(&first);
    let in_short = [("role", "in"), ("port", &*short_port.to_string())];
    let opened0 = sum(&first, "netstat_connections_opened_total", &in_short);
    let closed0 = sum(&first, "netstat_connections_closed_total", &in_short);

    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = closing_acceptor(short, stop.clone());
    let addr = ("127.0.0.1", short_port);
    let client = std::thread::spawn(move || {
        for _ in 0..1000 {
            drop(TcpStream::connect(addr).expect("connect"));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    // Connections that outlive the listing interval are counted under their program.
    let long: Vec<TcpStream> = hold_connections(&held, 3);
    let mut middle = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = samples(&served.scrape(None, TOKEN).await.2);
        check_monotonic(&s);
        middle.push(s);
    }
    drop(long);
    client.join().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (opened, closed, s) = loop {
        let s = samples(&served.scrape(None, TOKEN).await.2);
        check_monotonic(&s);
        let opened = sum(&s, "netstat_connections_opened_total", &in_short) - opened0;
        let closed = sum(&s, "netstat_connections_closed_total", &in_short) - closed0;
        let held_closed = sum(
            &s,
            "netstat_connections_closed_total",
            &[("role", "in"), ("port", &held_port.to_string())],
        );
        if (opened >= 1000.0 && closed >= 1000.0 && held_closed >= 3.0) || Instant::now() > deadline
        {
            break (opened, closed, s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop.store(true, Ordering::Relaxed);
    acceptor.join().expect("acceptor");
    assert_eq!(
        (opened, closed),
        (1000.0, 1000.0),
        "exactly the 1,000 connections"
    );
    let program = our_program();
    let held_in = [
        ("program", program.as_str()),
        ("role", "in"),
        ("port", &*held_port.to_string()),
    ];
    assert_eq!(
        sum(&s, "netstat_connections_opened_total", &held_in),
        3.0,
        "under their program"
    );
    assert_eq!(sum(&s, "netstat_connections_closed_total", &held_in), 3.0);
    assert!(
        s.iter().any(|(n, l, _)| n == "netstat_traffic_bytes_total"
            && l.get("direction").map(String::as_str) == Some("sent")),
        "byte counters are exported"
    );
    served.stop().await;
}

#[test]
fn five_thousand_listeners_stay_within_max_series() {
    let listeners: Vec<TcpListener> = (0..5000)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["metrics", "--metrics-max-series", "100"])
        .output()
        .expect("netstat-mcp metrics");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let s = samples(&text);
    let count = |name: &str| s.iter().filter(|(n, _, _)| n == name).count();
    assert_eq!(
        count("netstat_listener_info"),
        100,
        "info past the cap is dropped"
    );
    assert_eq!(
        count("netstat_listener_connections"),
        100,
        "other buckets included"
    );
    assert!(
        s.iter().any(|(n, l, _)| n == "netstat_listener_connections"
            && l.get("program").map(String::as_str) == Some("other")),
        "folded into program=\"other\""
    );
    let dropped = |family: &str| sum(&s, "netstat_series_dropped", &[("family", family)]);
    assert!(dropped("netstat_listener_info") >= 4900.0, "{text}");
    assert!(dropped("netstat_listener_connections") >= 4910.0);
    let (ok, said) = promtool(&text);
    assert!(ok, "{said}");
    drop(listeners);
}

/// GET /metrics over a plain TCP stream (blocking, `Connection: close`): the body.
fn blocking_scrape(addr: &str) -> String {
    use std::io::Write as _;
    let mut s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// In a network namespace of its own (so no other test's traffic counts), a connection that
/// lives a few milliseconds and carries 4 MiB adds 4 MiB sent and 4 MiB received, from its
/// final counters; the scrapes' own bytes are the only other traffic there.
#[test]
fn with_record_a_5_ms_connection_adds_its_bytes() {
    crate::support::net::in_empty_netns("metrics bytes", || {
        use std::io::{BufRead as _, Write as _};
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(up.success());
        let server = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
            .args(["serve", "--http", "127.0.0.1:0", "--token-env", TOKEN_ENV])
            .args(["--metrics", "--record"])
            .env(TOKEN_ENV, TOKEN)
            .env_remove("RUST_LOG")
            .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netstat-mcp");
        let mut server = Reaped(server);
        let stderr = server.0.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("serving MCP over streamable HTTP addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server's address");
        let bytes = |s: &[Sample], direction: &str| {
            sum(
                s,
                "netstat_traffic_bytes_total",
                &[("direction", direction)],
            )
        };
        let before = samples(&blocking_scrape(&addr));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().unwrap();
        let sink = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut all = Vec::new();
            s.read_to_end(&mut all).expect("read");
            all.len()
        });
        let started = Instant::now();
        {
            let mut out = TcpStream::connect(target).expect("connect");
            out.write_all(&vec![7u8; 4 << 20]).expect("write 4 MiB");
        }
        assert_eq!(sink.join().expect("sink"), 4 << 20);
        let lived = started.elapsed();
        let want = f64::from(4u32 << 20);
        let deadline = Instant::now() + Duration::from_secs(20);
        let after = loop {
            let s = samples(&blocking_scrape(&addr));
            let sent = bytes(&s, "sent") - bytes(&before, "sent");
            let received = bytes(&s, "received") - bytes(&before, "received");
            if (sent >= want && received >= want) || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for direction in ["sent", "received"] {
            let n = bytes(&after, direction) - bytes(&before, direction);
            assert!(
                (want..want + f64::from(256u32 << 10)).contains(&n),
                "{direction}: {n} bytes counted for a 4 MiB transfer that lived {lived:?}"
            );
        }
    });
}

/// The README's scrape config and alert rules are what Prometheus accepts (`promtool check
/// config` and `check rules` on the blocks as the README shows them).
#[test]
fn the_readme_scrape_config_and_alerts_are_valid_for_prometheus() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## Monitor a fleet with Prometheus")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the section");
    let yaml: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(yaml.len(), 2, "a scrape config and the alert rules");
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("netstat-mcp.token");
    std::fs::write(&token, "t").expect("token file");
    let config = yaml[0].replace(
        "/etc/prometheus/netstat-mcp.token",
        &token.display().to_string(),
    );
    let checks = [("config", config), ("rules", yaml[1].to_string())];
    for (what, text) in checks {
        let file = dir.path().join(format!("{what}.yml"));
        std::fs::write(&file, text).expect("write");
        let out = Command::new("promtool")
            .args(["check", what])
            .arg(&file)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
