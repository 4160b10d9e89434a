//! Remote hosts at fleet scale, against real OpenSSH servers in network namespaces this test
//! makes (`support::fleet`): ssh_config aliases and ProxyJump through bastions, many hosts per
//! call, filters applied on the remote side; and other systems' listings served through a real
//! sshd by shim commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use netstat_mcp::config::NetstatConfig;
use netstat_mcp::parse::{self, Format};
use netstat_mcp::query::{
    ConnectionsAnswer, ConnectionsArgs, PortAnswer, PortArgs, Service, no_progress,
};
use netstat_mcp::source::remote::commands::Listing;
use netstat_mcp::source::{Backend, LocalSource, RemoteSources, SshRemotes, Want};
use serde_json::{Value, json};

use crate::support::fleet::{Fleet, HostSpec};
use crate::support::sshd::{PASSWORD, Sshd, USER, UserPath, keygen};

fn toml_for(fleet: &Fleet, names: &[&str], ssh_extra: &str, host_extra: &str) -> String {
    let mut text = format!(
        "[ssh]\nknown_hosts = \"{}\"\ncommand_timeout_secs = 60\n{ssh_extra}\n\n",
        fleet.known_hosts.display()
    );
    for n in names {
        let h = fleet.host(n);
        text.push_str(&format!(
            "[[remote_hosts]]\nname = \"{n}\"\nhost = \"{}\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n{host_extra}\n\n",
            h.addr
        ));
    }
    text
}

fn config_at(text: &str, dir: &Path, home: Option<&Path>) -> NetstatConfig {
    NetstatConfig::parse(text, &dir.join("config.toml"), home, &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn service(remotes: &SshRemotes) -> Service {
    Service::new(
        Arc::new(LocalSource::new(Backend::Auto)),
        Arc::new(remotes.clone()),
    )
}

fn map(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("object")
}

async fn connections(
    service: &Service,
    args: Value,
) -> netstat_mcp::query::Envelope<ConnectionsAnswer> {
    let q = ConnectionsArgs::from_json(&map(args))
        .unwrap()
        .validate(Some(50))
        .unwrap();
    service.connections_any(&q, &no_progress).await.unwrap()
}

fn many(
    env: &netstat_mcp::query::Envelope<ConnectionsAnswer>,
) -> &netstat_mcp::query::FleetData<
    netstat_mcp::query::FleetSummary,
    netstat_mcp::query::ConnectionsData,
> {
    match env.data.as_ref() {
        Some(ConnectionsAnswer::Many(d)) => d,
        other => panic!("not a multi-host answer: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// ssh_config and ProxyJump

struct JumpFleet {
    fleet: Fleet,
    home: tempfile::TempDir,
}

/// A bastion reachable from the test, and two hosts reachable only through it; a key the
/// test user accepts everywhere; an ssh_config naming all three, the inner ones with
/// ProxyJump.
fn jump_fleet() -> JumpFleet {
    let fleet = Fleet::start(&[
        HostSpec::reachable("bastion"),
        HostSpec::behind("inner-1", "bastion"),
        HostSpec::behind("inner-2", "bastion"),
    ]);
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let key = ssh.join("id_fleet");
    fleet.authorize(&keygen(&key, "ed25519", ""));
    let mut text = String::from("# written by the fleet test\nHost bastion\n");
    text.push_str(&format!("  HostName {}\n", fleet.host("bastion").addr));
    for inner in ["inner-1", "inner-2"] {
        text.push_str(&format!(
            "Host {inner}\n  HostName {}\n  ProxyJump bastion\n",
            fleet.host(inner).addr
        ));
    }
    text.push_str(&format!(
        "Host *\n  User {USER}\n  IdentityFile ~/.ssh/id_fleet\n  UserKnownHostsFile {}\n",
        fleet.known_hosts.display()
    ));
    std::fs::write(ssh.join("config"), text).unwrap();
    JumpFleet { fleet, home }
}

impl JumpFleet {
    fn config(&self) -> NetstatConfig {
        config_at(
            "[ssh]\nuse_ssh_config = true\n",
            self.home.path(),
            Some(self.home.path()),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_jump_alias_reaches_inner_hosts_through_one_pooled_bastion() {
    let jf = jump_fleet();
    let fleet = &jf.fleet;
    let (bastion, inner) = (fleet.host("bastion"), fleet.host("inner-1"));
    // The bastion is the only route: from here the inner host cannot be reached at all (the
    // fleet's subnet is unreachable here except for the reachable hosts' own links).
    let direct = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((inner.addr, 22)),
        Duration::from_secs(2),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            direct.kind(),
            std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
        ),
        "{direct}"
    );

    let config = jf.config();
    assert!(config.broken_hosts.is_empty(), "{:?}", config.warnings);
    let remotes = SshRemotes::new(config);
    let service = service(&remotes);
    let env = connections(&service, json!({"host": "inner-1", "limit": 0})).await;
    assert!(env.success, "{}", env.message);
    assert!(
        env.message.contains("remote host inner-1 (") && env.message.contains("via bastion"),
        "{}",
        env.message
    );
    // The inner sshd saw the connection come from the bastion's side of their link.
    let via = inner.addr.octets();
    let bastion_side = format!("{}.{}.{}.{}", via[0], via[1], via[2], via[3] - 1);
    assert!(
        inner
            .log()
            .contains(&format!("Connection from {bastion_side}")),
        "inner sshd log:\n{}",
        inner.log()
    );
    assert!(
        bastion.log().contains("Accepted publickey"),
        "{}",
        bastion.log()
    );
    assert!(
        inner.log().contains("Accepted publickey"),
        "{}",
        inner.log()
    );
    // The inner host's listing is its own namespace's: its sshd on its own address.
    let target = remotes.lookup("inner-1", None).unwrap();
    let snap = target.source.collect(Want::all()).await.unwrap();
    assert!(
        snap.sockets
            .iter()
            .any(|s| s.local_ip == std::net::IpAddr::V4(inner.addr) && s.local_port == 22),
        "{:?}",
        snap.sockets
    );
    // One bastion session, shared: bastion + inner-1 + inner-2 = 3 handshakes, and repeat
    // calls add none.
    connections(&service, json!({"host": "inner-2", "limit": 0})).await;
    assert_eq!(remotes.pool().handshakes(), 3);
    let both = connections(&service, json!({"host": "inner-*", "limit": 0})).await;
    assert_eq!(many(&both).host_count, 2);
    assert_eq!(many(&both).failed_hosts, 0, "{}", both.message);
    assert_eq!(remotes.pool().handshakes(), 3);
    assert_eq!(remotes.pool().open_sessions().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_has_its_host_key_verified() {
    let jf = jump_fleet();
    let fleet = &jf.fleet;
    let good = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    let stranger = keygen(&jf.home.path().join("stranger"), "ed25519", "");
    let replace = |name: &str| -> String {
        let addr = fleet.host(name).addr.to_string();
        good.lines()
            .map(|l| {
                if l.split_whitespace().next() == Some(addr.as_str()) {
                    format!("{addr} {stranger}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    };

    // A wrong bastion key: refused at the bastion; the inner host never sees a connection.
    std::fs::write(&fleet.known_hosts, replace("bastion")).unwrap();
    let remotes = SshRemotes::new(jf.config());
    let err = remotes
        .lookup("inner-1", None)
        .unwrap()
        .source
        .collect(Want::all())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is reached through bastion bastion")
            && err.contains("HOST KEY CHANGED for bastion"),
        "{err}"
    );
    assert!(
        !fleet.host("inner-1").log().contains("Connection from"),
        "{}",
        fleet.host("inner-1").log()
    );
    assert!(
        !fleet.host("bastion").log().contains("Accepted"),
        "a credential went to a bastion with the wrong key"
    );

    // A wrong inner key behind a good bastion: the inner host's key is checked end to end.
    std::fs::write(&fleet.known_hosts, replace("inner-1")).unwrap();
    let remotes = SshRemotes::new(jf.config());
    let err = remotes
        .lookup("inner-1", None)
        .unwrap()
        .source
        .collect(Want::all())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("HOST KEY CHANGED for inner-1"), "{err}");
    assert!(
        !fleet.host("inner-1").log().contains("Accepted"),
        "a credential went to the wrong inner host"
    );

    // Both right: it works.
    std::fs::write(&fleet.known_hosts, &good).unwrap();
    let remotes = SshRemotes::new(jf.config());
    remotes
        .lookup("inner-1", None)
        .unwrap()
        .source
        .collect(Want::all())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Many hosts per call

const WEB: [&str; 5] = ["web-1", "web-2", "web-3", "web-4", "web-5"];

/// A `netstat` on every host that, before running the real one, marks itself started and
/// waits (at most 30 s) until `expect` hosts have started: all of them "meet" only if the
/// commands run at the same time. Each records whether it met the others.
fn barrier_shims(fleet: &Fleet) {
    for h in &fleet.hosts {
        h.shim(
            "netstat",
            &format!(
                "#!/bin/sh\nd={shared}\n: > \"$d/started.{name}\"\nn=0\nwhile [ $n -lt 1500 ]; do\n  c=$(ls \"$d\" | grep -c '^started\\.')\n  if [ \"$c\" -ge \"$(cat \"$d/expect\")\" ]; then : > \"$d/met.{name}\"; break; fi\n  sleep 0.02; n=$((n+1))\ndone\nexec /usr/bin/netstat \"$@\"\n",
                shared = fleet.shared.display(),
                name = h.name
            ),
        );
    }
}

fn reset_barrier(fleet: &Fleet, expect: usize) {
    for e in std::fs::read_dir(&fleet.shared).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    std::fs::write(fleet.shared.join("expect"), expect.to_string()).unwrap();
}

fn met(fleet: &Fleet) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&fleet.shared)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("met.")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_over_five_hosts_runs_them_together_and_survives_a_dead_one() {
    let specs: Vec<HostSpec> = WEB.iter().map(|n| HostSpec::reachable(n)).collect();
    let mut fleet = Fleet::start(&specs);
    barrier_shims(&fleet);
    let text = toml_for(&fleet, &WEB, "", "groups = [\"web\"]");
    let remotes = SshRemotes::new(config_at(&text, fleet.root(), None));
    let service = service(&remotes);

    reset_barrier(&fleet, 5);
    let env = connections(&service, json!({"host": "web-*"})).await;
    let data = many(&env);
    assert!(env.success, "{}", env.message);
    assert_eq!(data.host_count, 5);
    assert_eq!(data.failed_hosts, 0, "{}", env.message);
    let names: Vec<&str> = data.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(names, WEB);
    // All five listings were running at the same time: each met the other four.
    assert_eq!(met(&fleet), WEB, "the hosts' commands did not overlap");
    // Each host's own answer, and the merged summary over all of them.
    let mut total = 0;
    for (h, name) in data.hosts.iter().zip(WEB) {
        let d = h.data.as_ref().expect("data");
        assert_eq!(d.host, name);
        assert!(
            d.summary.listeners.iter().any(|l| l.local_ip
                == std::net::IpAddr::V4(fleet.host(name).addr)
                && l.local_port == 22),
            "{name}: {:?}",
            d.summary.listeners
        );
        total += d.connection_count;
    }
    assert_eq!(data.summary.connection_count, total);
    assert_eq!(
        data.summary
            .listeners
            .iter()
            .filter(|l| l.local_port == 22)
            .count(),
        5
    );
    assert!(serde_json::to_string(&env).unwrap().len() <= 24 * 1024);

    // One sshd stopped: the other four answer, the fifth carries a clear error.
    fleet.host_mut("web-5").stop_sshd();
    reset_barrier(&fleet, 4);
    let env = connections(&service, json!({"host": "@web"})).await;
    let data = many(&env);
    assert!(env.success, "{}", env.message);
    assert_eq!(data.host_count, 5);
    assert_eq!(data.failed_hosts, 1);
    for h in &data.hosts[..4] {
        assert!(h.success, "{}: {}", h.host, h.message);
    }
    let dead = &data.hosts[4];
    assert_eq!(dead.host, "web-5");
    assert!(!dead.success && dead.data.is_none());
    assert!(
        dead.message.contains("web-5") && dead.message.contains("refused"),
        "{}",
        dead.message
    );
    assert!(
        env.message.contains("4 of 5 host(s)") && env.message.contains("Failed: web-5"),
        "{}",
        env.message
    );
    assert_eq!(met(&fleet), &WEB[..4]);

    // A port check over the same hosts; the CLI's and MCP's face of it are tested below.
    let q = PortArgs::from_json(&map(json!({"host": "web-1,web-2,web-9", "port": 22})))
        .unwrap()
        .validate(Some(20))
        .unwrap();
    reset_barrier(&fleet, 0);
    let env = service.port_any(&q, &no_progress).await.unwrap();
    let Some(PortAnswer::Many(data)) = &env.data else {
        panic!("{env:?}")
    };
    assert_eq!(data.summary.occupied_on, ["web-1", "web-2"]);
    assert_eq!(data.summary.failed, ["web-9"]);
    assert!(
        data.hosts[2]
            .message
            .starts_with("Authentication config for remote host not found: web-9"),
        "{}",
        data.hosts[2].message
    );
    assert!(
        env.message
            .starts_with("Port 22/TCP is occupied on 2 of 2 answering host(s)"),
        "{}",
        env.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallel_bounds_the_hosts_in_flight() {
    let specs: Vec<HostSpec> = WEB.iter().map(|n| HostSpec::reachable(n)).collect();
    let fleet = Fleet::start(&specs);
    // Each netstat counts the ones running beside it (itself included), holds a moment, ends.
    for h in &fleet.hosts {
        h.shim(
            "netstat",
            &format!(
                "#!/bin/sh\nd={shared}\n: > \"$d/running.{name}\"\nls \"$d\" | grep -c '^running\\.' >> \"$d/counts\"\nsleep 0.3\nrm -f \"$d/running.{name}\"\nexec /usr/bin/netstat \"$@\"\n",
                shared = fleet.shared.display(),
                name = h.name
            ),
        );
    }
    let text = toml_for(&fleet, &WEB, "max_parallel = 2", "");
    let remotes = SshRemotes::new(config_at(&text, fleet.root(), None));
    let env = connections(&service(&remotes), json!({"host": "web-*", "limit": 0})).await;
    assert_eq!(many(&env).failed_hosts, 0, "{}", env.message);
    let counts: Vec<usize> = std::fs::read_to_string(fleet.shared.join("counts"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c <= 2),
        "more than 2 hosts at once: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_reports_progress_per_finished_host() {
    let specs: Vec<HostSpec> = WEB[..3].iter().map(|n| HostSpec::reachable(n)).collect();
    let fleet = Fleet::start(&specs);
    let text = toml_for(&fleet, &WEB[..3], "", "groups = [\"web\"]");
    let path = fleet.root().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut raw = crate::support::mcp_client::Raw::start(&[(
        "NETSTAT_MCP_CONFIG",
        path.clone().into_os_string(),
    )])
    .await;
    raw.send(json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "query_network_connections", "arguments": {"host": "@web"},
                   "_meta": {"progressToken": "fleet-1"}}
    }))
    .await;
    let (response, before) = raw.response_and_before(7).await;
    let result = &response["result"]["structuredContent"];
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["data"]["host_count"], 3);
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{before:?}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["params"]["progressToken"], "fleet-1");
        assert_eq!(p["params"]["progress"], (i + 1) as f64);
        assert_eq!(p["params"]["total"], 3.0);
        assert!(
            p["params"]["message"]
                .as_str()
                .unwrap()
                .contains("answered"),
            "{p}"
        );
    }
    // The text block is the same JSON, within the budget.
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.len() <= 24 * 1024);
    raw.close_stdin();
    raw.wait().await;

    // The CLI's face: a table per host, then the overall message; a port check over a glob.
    let cli = |args: &[&str]| {
        std::process::Command::new(crate::support::mcp_client::bin())
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .expect("run netstat-mcp")
    };
    let out = cli(&["connections", "--host", "web-*", "--state", "LISTEN"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in &WEB[..3] {
        assert!(stdout.contains(&format!("== {name}\n")), "{stdout}");
        assert!(
            stdout.contains(&format!("{}:22", fleet.host(name).addr)),
            "{stdout}"
        );
    }
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Successfully obtained connections on 3 of 3 host(s)"),
        "{stdout}"
    );
    let out = cli(&["port", "22", "--host", "@web", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["data"]["summary"]["occupied_on"],
        json!(["web-1", "web-2", "web-3"])
    );
}

// ---------------------------------------------------------------------------------------------
// Filters that travel

/// A port check on a host holding 50,000 connections ships only the matching rows,
/// with `ss` on the remote side, and with awk over /proc/net plus the fd scan where no ss
/// exists (owners included, for a process the SSH user may inspect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_checks_are_filtered_on_the_remote_side() {
    let fleet = Fleet::start(&[HostSpec::reachable("busy")]);
    let busy = fleet.host("busy");
    // Load inside the host's namespace: 50,000 loopback connections (100,000 sockets).
    let mut child = busy
        .exec(loadgen_bin())
        .args(loadgen_args())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start loadgen");
    let ready = read_ready(&mut child);
    let idle_port: u16 = field(&ready, "idle_port").parse().unwrap();
    // A listener of the SSH user's own in the namespace (its owner is visible to that user).
    let mut own = busy
        .exec("runuser")
        .args(["-u", USER, "--", "python3", "-c", "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',9876))\ns.listen()\nimport os\nprint(s.getsockname()[1],os.getpid(),flush=True)\ntime.sleep(120)"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python listener");
    let (own_port, own_pid): (u16, u32) = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(own.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut words = line.split_whitespace();
        (
            words.next().unwrap().parse().unwrap(),
            words.next().unwrap().parse().unwrap(),
        )
    };
    let text = toml_for(&fleet, &["busy"], "", "");
    let cfg = config_at(&text, fleet.root(), None);
    // The host is loaded: over 100,000 TCP sockets in its namespace (counted here, as root,
    // without SSH). The netstat -tunapW path would ship about 100 bytes for each of them;
    // bench/remote.sh measures both paths side by side.
    let loaded = busy
        .exec("ss")
        .args(["-tanH"])
        .output()
        .expect("ss in the namespace");
    let sockets = String::from_utf8_lossy(&loaded.stdout).lines().count();
    assert!(
        sockets >= 100_000,
        "only {sockets} TCP sockets in the namespace"
    );

    let remotes = SshRemotes::new(cfg.clone());
    let service = service(&remotes);
    let port = |p: u16| {
        PortArgs::from_json(&map(json!({"host": "busy", "port": p})))
            .unwrap()
            .validate(Some(20))
            .unwrap()
    };
    let before = remotes.pool().bytes_received();
    let env = service.port(&port(idle_port)).await.unwrap();
    let shipped = remotes.pool().bytes_received() - before;
    assert!(env.data.as_ref().unwrap().is_occupied, "{}", env.message);
    assert_eq!(
        env.data.as_ref().unwrap().occupation_count,
        1,
        "{}",
        env.message
    );
    // A listener whose owner the SSH user may not see is "an unknown process", never "held by
    // the kernel" (text rows carry no inode).
    assert!(
        env.message.contains("occupied by: an unknown process"),
        "{}",
        env.message
    );
    assert!(!env.message.contains("kernel"), "{}", env.message);
    assert_eq!(
        remotes.profile("busy", None).unwrap().filtered,
        Some(Listing::SsFiltered)
    );
    assert!(
        shipped < 4 * 1024,
        "ss path shipped {shipped} bytes for one socket of {sockets}"
    );

    // No ss on the host: awk over /proc/net, and the owner from the /proc/<pid>/fd scan.
    busy.shim(
        "ss",
        "#!/bin/sh\necho 'sh: 1: ss: not found' >&2\nexit 127\n",
    );
    let remotes = SshRemotes::new(cfg.clone());
    let service = netstat_mcp::query::Service::new(
        Arc::new(LocalSource::new(Backend::Auto)),
        Arc::new(remotes.clone()),
    );
    let before = remotes.pool().bytes_received();
    let env = service.port(&port(own_port)).await.unwrap();
    let shipped = remotes.pool().bytes_received() - before;
    assert_eq!(
        remotes.profile("busy", None).unwrap().filtered,
        Some(Listing::ProcNetScan)
    );
    let data = env.data.as_ref().unwrap();
    assert_eq!(data.occupation_count, 1, "{}", env.message);
    assert_eq!(data.owners.len(), 1, "{}", env.message);
    assert_eq!(data.owners[0].pid, own_pid);
    assert!(shipped < 8 * 1024, "awk path shipped {shipped} bytes");
    // A state filter travels too: LISTEN sockets only, not the 100,000 established ones.
    let before = remotes.pool().bytes_received();
    let q = ConnectionsArgs::from_json(&map(
        json!({"host": "busy", "proto": "tcp", "state": "LISTEN"}),
    ))
    .unwrap()
    .validate(Some(50))
    .unwrap();
    let env = service.connections(&q).await.unwrap();
    let shipped = remotes.pool().bytes_received() - before;
    assert!(
        env.data.as_ref().unwrap().connection_count >= 3,
        "{}",
        env.message
    );
    assert!(shipped < 16 * 1024, "LISTEN filter shipped {shipped} bytes");

    let _ = own.kill();
    let _ = own.wait();
    drop(child.stdin.take());
    let _ = child.wait();
}

fn loadgen_bin() -> PathBuf {
    // `target/<profile>/examples/loadgen`, built by `cargo test` alongside this binary.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    profile_dir.join("examples").join("loadgen")
}

fn loadgen_args() -> Vec<String> {
    ["--connections", "50000", "--hold-secs", "300"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn read_ready(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "loadgen: {line}");
    line
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

// ---------------------------------------------------------------------------------------------
// Other systems through a real sshd

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn cat_shim(sshd: &Sshd, name: &str, file: &Path) {
    sshd.shim(
        name,
        &format!("#!/bin/sh\nexec /bin/cat '{}'\n", file.display()),
    );
}

fn fail_shim(sshd: &Sshd, name: &str, stderr: &str, code: u8) {
    sshd.shim(
        name,
        &format!("#!/bin/sh\necho '{stderr}' >&2\nexit {code}\n"),
    );
}

async fn remote_listing(
    sshd: &Sshd,
) -> (
    SshRemotes,
    netstat_mcp::query::Envelope<netstat_mcp::query::ConnectionsData>,
) {
    let remotes = SshRemotes::new(sshd.config("", &format!("password = \"{PASSWORD}\"")));
    let q = ConnectionsArgs::from_json(&map(json!({"host": "test-sshd", "limit": 0})))
        .unwrap()
        .validate(Some(50))
        .unwrap();
    let env = service(&remotes).connections(&q).await.unwrap();
    (remotes, env)
}

/// Every data line of `text` became a row or a reported skipped line.
fn assert_every_line_accounted(
    format: Format,
    text: &str,
    env: &netstat_mcp::query::Envelope<netstat_mcp::query::ConnectionsData>,
) {
    let local = parse::parse(format, text);
    let data = env.data.as_ref().expect("data");
    assert_eq!(
        data.connection_count,
        local.sockets.len(),
        "{}",
        env.message
    );
    if local.skipped.is_empty() {
        assert!(
            !env.message.contains("could not be read"),
            "{}",
            env.message
        );
    } else {
        assert!(
            env.message
                .contains(&format!("{} line(s) of the remote", local.skipped.len())),
            "{} skipped locally; message: {}",
            local.skipped.len(),
            env.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macos_and_freebsd_listings_with_lsof_owners() {
    let sshd = Sshd::start(UserPath::Bare);
    sshd.shim("uname", "#!/bin/sh\necho Darwin\n");
    let file = fixture("bsd/macos-parse-netstat-doc-an.txt");
    // netstat -an -p tcp / -p udp: the capture's lines of that protocol (headers and other
    // sections with the TCP part), as a real netstat splits them.
    sshd.shim(
        "netstat",
        &format!(
            "#!/bin/sh\nf='{}'\ncase \"$*\" in\n  *'-p udp'*) exec /usr/bin/awk 'NR<=2 || $1 ~ /^udp/' \"$f\" ;;\n  *) exec /usr/bin/awk '$1 !~ /^udp/' \"$f\" ;;\nesac\n",
            file.display()
        ),
    );
    cat_shim(
        &sshd,
        "lsof",
        &fixture("lsof/debian12-4.95-nP-iTCP-iUDP.txt"),
    );
    let (remotes, env) = remote_listing(&sshd).await;
    assert!(env.success, "{}", env.message);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_every_line_accounted(Format::Bsd, &text, &env);
    assert!(
        env.message.contains("netstat -an` (macOS/BSD host)"),
        "{}",
        env.message
    );
    let profile = remotes.profile("test-sshd", None).unwrap();
    assert_eq!(profile.unfiltered, Some(Listing::BsdNetstat));
    // A port check there: no bind verdict (macOS's rules are not Linux's), and the message
    // says why and what the listing does tell. (Its narrowed listing runs awk, as macOS has.)
    sshd.shim("awk", "#!/bin/sh\nexec /usr/bin/awk \"$@\"\n");
    let q = PortArgs::from_json(&map(json!({"host": "test-sshd", "port": 22})))
        .unwrap()
        .validate(Some(20))
        .unwrap();
    let port = service(&remotes).port(&q).await.unwrap();
    let data = port.data.as_ref().expect("data");
    assert!(data.bind.is_none());
    assert!(
        port.message
            .contains("bind is null: this host's bind rules (it is not Linux)"),
        "{}",
        port.message
    );

    // FreeBSD's capture holds a UNIX-socket section: its lines are reported, not dropped.
    let file = fixture("bsd/freebsd12-an.txt");
    sshd.shim("uname", "#!/bin/sh\necho FreeBSD\n");
    sshd.shim(
        "netstat",
        &format!(
            "#!/bin/sh\nf='{}'\ncase \"$*\" in\n  *'-p udp'*) exec /usr/bin/awk 'NR<=2 || $1 ~ /^udp/' \"$f\" ;;\n  *) exec /usr/bin/awk '$1 !~ /^udp/' \"$f\" ;;\nesac\n",
            file.display()
        ),
    );
    let (_, env) = remote_listing(&sshd).await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert_every_line_accounted(Format::Bsd, &text, &env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_listing_with_tasklist_names() {
    let sshd = Sshd::start(UserPath::Bare);
    // What cmd.exe says to `uname -s`, then `cmd /c ver`.
    fail_shim(
        &sshd,
        "uname",
        "'uname' is not recognized as an internal or external command,",
        1,
    );
    sshd.shim(
        "cmd",
        "#!/bin/sh\nprintf '\\r\\nMicrosoft Windows [Version 10.0.19045.3803]\\r\\n'\n",
    );
    let file = fixture("windows/windows10-aon.txt");
    cat_shim(&sshd, "netstat", &file);
    cat_shim(
        &sshd,
        "tasklist",
        &fixture("windows/windows10-tasklist-derived.csv"),
    );
    let (remotes, env) = remote_listing(&sshd).await;
    assert!(env.success, "{}", env.message);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_every_line_accounted(Format::Windows, &text, &env);
    assert_eq!(
        remotes.profile("test-sshd", None).unwrap().os,
        netstat_mcp::source::remote::commands::RemoteOs::Windows
    );
    // tasklist named the programs of the pids netstat printed.
    let named = env
        .data
        .as_ref()
        .unwrap()
        .connections
        .iter()
        .filter(|c| c.program.as_deref().is_some_and(|p| p.ends_with(".exe")))
        .count();
    assert!(named > 10, "{named} rows named; {}", env.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_without_pid_column_and_unreadable_output_falling_through() {
    let sshd = Sshd::start(UserPath::Bare);
    sshd.shim("uname", "#!/bin/sh\necho Linux\n");
    let file = fixture("busybox/debian12-1.35-tuna.txt");
    cat_shim(&sshd, "netstat", &file);
    // An `ss` that prints another system's text: no readable row, so it is not an answer.
    cat_shim(&sshd, "ss", &fixture("bsd/macos10.14-An.txt"));
    let (remotes, env) = remote_listing(&sshd).await;
    assert!(env.success, "{}", env.message);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_every_line_accounted(Format::Busybox, &text, &env);
    // The missing owners are blamed on busybox, not on permissions.
    assert!(
        env.message.contains("busybox built without -p"),
        "{}",
        env.message
    );
    assert!(!env.message.contains("run as root"), "{}", env.message);
    assert!(!env.message.contains("may not inspect"), "{}", env.message);
    assert_eq!(
        remotes.profile("test-sshd", None).unwrap().unfiltered,
        Some(Listing::NetstatWide)
    );

    // With netstat gone, ss's foreign text falls through to /proc/net (cat: no awk here).
    std::fs::remove_file(sshd.bin.join("netstat")).unwrap();
    let (remotes, env) = remote_listing(&sshd).await;
    assert!(env.success, "{}", env.message);
    assert_eq!(
        remotes.profile("test-sshd", None).unwrap().unfiltered,
        Some(Listing::ProcNet)
    );
    assert!(env.data.as_ref().unwrap().connection_count > 0);
    assert!(
        env.message.contains("neither netstat, ss nor awk"),
        "{}",
        env.message
    );
    // One hint, not two contradictory ones: no permission advice where none would help.
    assert!(!env.message.contains("may not inspect"), "{}", env.message);
    assert!(!env.message.contains("root"), "{}", env.message);
}

// ---------------------------------------------------------------------------------------------
// Hostile input never reaches a shell

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hosts_and_aliases_reach_no_shell() {
    let sshd = Sshd::start(UserPath::System);
    // If any of these ever ran on the host, it would leave a mark.
    let mark = sshd.state.join("pwned");
    for cmd in ["id", "touch", "reboot"] {
        sshd.shim(cmd, &format!("#!/bin/sh\n: > '{}'\n", mark.display()));
    }
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let key = ssh.join("id_test");
    sshd.authorize(&keygen(&key, "ed25519", ""));
    // Aliases whose names, addresses, users or bastions hold shell text.
    std::fs::write(
        ssh.join("config"),
        format!(
            "Host good\n  HostName 127.0.0.1\n  Port {port}\n\
             Host $(id)\n  HostName 127.0.0.1\n\
             Host evil-hostname\n  HostName 127.0.0.1;id\n\
             Host evil-user\n  HostName 127.0.0.1\n  User root;id\n\
             Host evil-jump\n  HostName 127.0.0.1\n  ProxyJump good;id\n\
             Host evil-command\n  ProxyCommand id\n\
             Host *\n  User {USER}\n  IdentityFile ~/.ssh/id_test\n  UserKnownHostsFile {kh}\n",
            port = sshd.port,
            kh = sshd.known_hosts.display()
        ),
    )
    .unwrap();
    let cfg = config_at(
        "[ssh]\nuse_ssh_config = true\n",
        home.path(),
        Some(home.path()),
    );
    assert!(cfg.find_host("good").is_some(), "{:?}", cfg.warnings);
    for alias in [
        "$(id)",
        "evil-hostname",
        "evil-user",
        "evil-jump",
        "evil-command",
    ] {
        assert!(
            cfg.find_host(alias).is_none(),
            "{alias} became a usable host"
        );
    }
    let remotes = SshRemotes::new(cfg);
    let service = service(&remotes);
    let cases = [
        "$(id)",
        "evil-hostname",
        "evil-user",
        "evil-jump",
        "evil-command",
        "good;id",
        "good && id",
        "`id`",
        "good\nid",
        "@$(id)",
        "*;id",
        "good' || id '",
        "evil-*",
    ];
    for host in cases {
        let q = ConnectionsArgs::from_json(&map(json!({"host": host, "limit": 0})))
            .and_then(|a| a.validate(Some(50)));
        let outcome = match q {
            Err(e) => format!("input error: {e}"),
            Ok(q) => match service.connections_any(&q, &no_progress).await {
                Err(e) => format!("error: {e}"),
                Ok(env) => env.message,
            },
        };
        assert!(
            !mark.exists(),
            "{host:?} ran a command on the host: {outcome}"
        );
        assert!(
            !outcome.starts_with("Successfully obtained connections on 1"),
            "{host:?}: {outcome}"
        );
    }
    // The good alias next to hostile ones: only it answers.
    let env = connections(&service, json!({"host": "good,$(id),evil-user"})).await;
    let data = many(&env);
    assert_eq!(data.failed_hosts, 2, "{}", env.message);
    assert!(data.hosts[0].success, "{}", data.hosts[0].message);
    assert!(!mark.exists());
    // Only the good alias was ever connected to.
    assert_eq!(remotes.pool().handshakes(), 1);
}

/// Hundreds of hosts that fail, or names nobody configured, still give default answers within
/// the 24 KiB budget: messages, names and finally entries shrink, and the counts stay whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_answers_over_256_failing_hosts_fit_the_budget() {
    use crate::support::mcp_client::Server;
    let (_held, closed) = crate::support::net::refusing_tcp_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("[ssh]\nconnect_timeout_secs = 5\n\n");
    for i in 0..256 {
        text.push_str(&format!(
            "[[remote_hosts]]\nname = \"refusing-host-{i:03}\"\nhost = \"127.0.0.1\"\nport = {closed}\nusername = \"ops\"\npassword = \"x\"\ngroups = [\"all\"]\n\n"
        ));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).expect("write config");
    let server = Server::start_with(&["--config", config.to_str().unwrap()], &[]).await;
    let long: Vec<String> = (0..256)
        .map(|i| format!("{i:03}{}", "n".repeat(237)))
        .collect();
    let long = long.join(",");
    for (tool, args) in [
        ("query_network_connections", json!({"host": "@all"})),
        ("check_port_occupation", json!({"host": "@all", "port": 22})),
        ("query_network_connections", json!({"host": long})),
        ("check_port_occupation", json!({"host": long, "port": 22})),
    ] {
        // Every host failed: success is false, and data still holds each host's entry.
        let result = server.call_raw(tool, args).await.expect("tools/call");
        let text = result.content[0]
            .as_text()
            .expect("text block")
            .text
            .clone();
        let size = text.len();
        let value: Value = serde_json::from_str(&text).expect("JSON");
        eprintln!("{tool}: {size} bytes");
        assert!(size <= 24 * 1024, "{tool}: {size} bytes");
        assert_eq!(value["data"]["host_count"], 256, "{value}");
        assert_eq!(value["data"]["failed_hosts"], 256);
        assert_eq!(value["success"], false);
    }
    server.stop().await;
}
