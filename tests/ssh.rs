//! SSH against a real OpenSSH sshd on 127.0.0.1 (started per test by `support::sshd`):
//! authentication methods, host key policy, errors, session pool, timeouts and cancellation.

use std::time::{Duration, Instant};

use netstat_mcp::config::{NetstatConfig, RemoteHost};
use netstat_mcp::source::remote::commands::{self, Filter, Listing};
use netstat_mcp::ssh::{CommandOutput, RemoteCommand, SshError, SshPool};

/// The remote command for an unfiltered `listing`, with owners.
fn listing(listing: Listing) -> RemoteCommand {
    commands::command(listing, &Filter::none(), true)
}

use crate::support::net::refusing_tcp_port;
use crate::support::sshd::{self, Agent, PASSWORD, Sshd, UserPath, keygen, pids_with_cmdline};

fn password() -> String {
    format!("password = \"{PASSWORD}\"")
}

fn pool_and_host(config: &NetstatConfig) -> (SshPool, RemoteHost) {
    let host = config
        .find_host("test-sshd")
        .expect("test-sshd configured")
        .clone();
    (SshPool::new(config.ssh.clone()), host)
}

async fn run(config: &NetstatConfig, command: RemoteCommand) -> Result<CommandOutput, SshError> {
    let (pool, host) = pool_and_host(config);
    pool.run(&host, None, command).await
}

/// `netstat -tunapW` over SSH shows the server's own listening socket.
fn assert_sees_listener(out: &CommandOutput, port: u16) {
    assert!(out.success(), "{out:?}");
    let listen = format!("127.0.0.1:{port}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(&listen) && l.contains("LISTEN")),
        "no LISTEN line for {listen} in:\n{}",
        out.stdout
    );
}

/// Polls `cond` every 20 ms for at most `secs`.
async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_runs_netstat() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("", &password());
    let out = run(&config, listing(Listing::NetstatWide)).await.unwrap();
    assert_sees_listener(&out, sshd.port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_ed25519_ecdsa_rsa() {
    let sshd = Sshd::start(UserPath::System);
    let keys = tempfile::tempdir().unwrap();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let path = keys.path().join(format!("id_{kind}"));
        sshd.authorize(&keygen(&path, kind, ""));
        let config = sshd.config("", &format!("key_file = \"{}\"", path.display()));
        let out = run(&config, listing(Listing::Ss))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", sshd.log()));
        assert!(out.success(), "{kind}: {out:?}");
        assert!(
            sshd.log()
                .contains(&format!("Accepted publickey for {}", sshd::USER)),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_with_passphrase_from_env() {
    let sshd = Sshd::start(UserPath::System);
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("id_enc");
    sshd.authorize(&keygen(&path, "ed25519", "open sesame"));
    let text = sshd.config_text(
        "",
        &format!(
            "key_file = \"{}\"\nkey_passphrase_env = \"TEST_KEY_PASS\"",
            path.display()
        ),
    );
    let cfg_path = sshd.root().join("config.toml");
    let with =
        |pass: &'static str| move |name: &str| (name == "TEST_KEY_PASS").then(|| pass.to_string());
    let good = NetstatConfig::parse(&text, &cfg_path, None, &with("open sesame")).unwrap();
    let out = run(&good, RemoteCommand::TRUE).await.unwrap();
    assert!(out.success());

    let bad = NetstatConfig::parse(&text, &cfg_path, None, &with("wrong")).unwrap();
    let err = run(&bad, RemoteCommand::TRUE).await.unwrap_err();
    assert!(matches!(err, SshError::KeyFile { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("passphrase"), "{msg}");
    assert!(!msg.contains("wrong"), "secret in message: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_auth() {
    let sshd = Sshd::start(UserPath::System);
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("id_agent");
    sshd.authorize(&keygen(&path, "ed25519", ""));
    let agent = Agent::start();
    agent.add(&path);
    // The key file is gone: only the agent can sign.
    std::fs::remove_file(&path).unwrap();
    let config = sshd.config(
        "",
        &format!("agent_socket = \"{}\"", agent.socket.display()),
    );
    assert_eq!(
        config.remote_hosts[0].auth_method(),
        format!("agent ({})", agent.socket.display())
    );
    let out = run(&config, RemoteCommand::TRUE).await.unwrap();
    assert!(out.success());

    // An agent without the key: authentication fails, naming what was tried.
    let empty = Agent::start();
    let config = sshd.config(
        "",
        &format!("agent_socket = \"{}\"", empty.socket.display()),
    );
    let err = run(&config, RemoteCommand::TRUE).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_auth_failure_without_the_secret() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("", "password = \"not-the-password-93\"");
    let err = run(&config, RemoteCommand::TRUE).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{msg}");
    assert!(
        msg.contains("authentication failed for user netstat-mcp-test"),
        "{msg}"
    );
    assert!(msg.contains("password (in config)"), "{msg}");
    assert!(msg.contains("publickey"), "server's methods listed: {msg}");
    assert!(
        !msg.contains("not-the-password-93"),
        "secret in message: {msg}"
    );
    assert!(!format!("{err:?}").contains("not-the-password-93"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_refused_with_fingerprint() {
    let sshd = Sshd::start(UserPath::System);
    std::fs::write(&sshd.known_hosts, "").unwrap();
    let config = sshd.config("", &password());
    let err = run(&config, RemoteCommand::TRUE).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{msg}");
    // The fingerprint is the one ssh-keygen shows for the server's key.
    let fingerprints: Vec<String> = ["host_ed25519.pub", "host_ecdsa.pub"]
        .iter()
        .map(|f| {
            let out = std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(sshd.root().join(f))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        fingerprints.iter().any(|f| msg.contains(f.as_str())),
        "{msg} vs {fingerprints:?}"
    );
    assert!(
        msg.contains(&format!("ssh-keyscan -p {} -t", sshd.port)),
        "{msg}"
    );
    // Strict never writes known_hosts.
    assert_eq!(std::fs::read_to_string(&sshd.known_hosts).unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_refused() {
    let sshd = Sshd::start(UserPath::System);
    let other = tempfile::tempdir().unwrap();
    let impostor = keygen(&other.path().join("k"), "ed25519", "");
    std::fs::write(
        &sshd.known_hosts,
        format!("[127.0.0.1]:{} {impostor}\n", sshd.port),
    )
    .unwrap();
    for policy in ["strict", "accept-new"] {
        let config = sshd.config(&format!("host_key_policy = \"{policy}\""), &password());
        let err = run(&config, RemoteCommand::TRUE).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SshError::HostKeyChanged { line: 1, .. }),
            "{policy}: {msg}"
        );
        assert!(msg.contains("HOST KEY CHANGED"), "{msg}");
        assert!(msg.contains("ssh-keygen -R"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entry_accepted() {
    let sshd = Sshd::start(UserPath::System);
    let status = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&sshd.known_hosts)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&sshd.known_hosts).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let config = sshd.config("", &password());
    run(&config, RemoteCommand::TRUE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_learns_then_pins() {
    let first = Sshd::start(UserPath::System);
    std::fs::write(&first.known_hosts, "").unwrap();
    let config = first.config("host_key_policy = \"accept-new\"", &password());
    run(&config, RemoteCommand::TRUE).await.unwrap();
    let learnt = std::fs::read_to_string(&first.known_hosts).unwrap();
    assert_eq!(learnt.lines().count(), 1, "{learnt}");
    let prefix = format!("[127.0.0.1]:{} ", first.port);
    assert!(learnt.starts_with(&prefix), "{learnt}");
    assert!(
        first
            .host_keys
            .iter()
            .any(|k| learnt.trim_end().ends_with(k.as_str())),
        "{learnt}"
    );
    // Known now: a fresh pool connects and learns nothing more.
    run(&config, RemoteCommand::TRUE).await.unwrap();
    assert_eq!(std::fs::read_to_string(&first.known_hosts).unwrap(), learnt);

    // Pinned: another server (other keys) at the learnt address is refused, even under accept-new.
    let second = Sshd::start(UserPath::System);
    let pinned = learnt.replace(&prefix, &format!("[127.0.0.1]:{} ", second.port));
    std::fs::write(&second.known_hosts, &pinned).unwrap();
    let config = second.config("host_key_policy = \"accept-new\"", &password());
    let err = run(&config, RemoteCommand::TRUE).await.unwrap_err();
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&second.known_hosts).unwrap(),
        pinned
    );
}

/// What an sshd log shows of authentication: any of these means a credential was offered or
/// a login was attempted.
fn auth_attempts(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            [
                "Accepted",
                "Failed",
                "authenticating user",
                "userauth",
                "password",
                "publickey",
                "Invalid user",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect()
}

/// Credentials stay put: an SSH port given by the caller that the configuration does not name
/// reaches a server (here a second sshd with other host keys) but, with no key known for that
/// `[host]:port`, is refused during the key exchange, before any credential is offered, even
/// under accept-new, and known_hosts is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_given_ssh_port_offers_no_credential_to_an_unknown_key() {
    let configured = Sshd::start(UserPath::System);
    let stranger = Sshd::start(UserPath::System);
    assert_ne!(configured.host_keys, stranger.host_keys);
    let known_before = std::fs::read_to_string(&configured.known_hosts).unwrap();
    for policy in ["accept-new", "strict"] {
        let config = configured.config(&format!("host_key_policy = \"{policy}\""), &password());
        let (pool, host) = pool_and_host(&config);
        let err = pool
            .run(&host, Some(stranger.port), RemoteCommand::TRUE)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SshError::CallerPortKeyUnknown { port, configured_port, .. }
                if port == stranger.port && configured_port == configured.port),
            "{policy}: {msg}"
        );
        assert!(msg.contains("not the configured SSH port"), "{msg}");
        assert!(
            msg.contains(&format!("ssh-keyscan -p {} -t", stranger.port)),
            "{msg}"
        );
        assert!(!msg.contains(PASSWORD), "{msg}");
    }
    assert_eq!(
        std::fs::read_to_string(&configured.known_hosts).unwrap(),
        known_before,
        "known_hosts changed"
    );
    // The stranger was reached (the refusal is about its key) but saw no login attempt.
    let log = stranger.log();
    assert!(log.contains("Connection from 127.0.0.1"), "{log}");
    assert!(
        auth_attempts(&log).is_empty(),
        "credentials were offered:\n{log}"
    );

    // The configured port, given explicitly, is the configured host as usual.
    let config = configured.config("host_key_policy = \"accept-new\"", &password());
    let (pool, host) = pool_and_host(&config);
    pool.run(&host, Some(configured.port), RemoteCommand::TRUE)
        .await
        .unwrap();

    // Once the stranger's key is known for its [host]:port, the caller's port is used.
    let mut known = known_before.clone();
    for k in &stranger.host_keys {
        known.push_str(&format!("[127.0.0.1]:{} {k}\n", stranger.port));
    }
    std::fs::write(&configured.known_hosts, &known).unwrap();
    let (pool, host) = pool_and_host(&config);
    pool.run(&host, Some(stranger.port), RemoteCommand::TRUE)
        .await
        .unwrap();
    assert!(
        stranger.log().contains("Accepted password"),
        "{}",
        stranger.log()
    );
}

/// Two entries for the same user@host:port do not share a pooled session: each authenticates
/// with its own credentials, so the one with a wrong password fails (in either order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_entries_for_one_login_each_use_their_own_credentials() {
    let sshd = Sshd::start(UserPath::System);
    let text = format!(
        "{}\n[[remote_hosts]]\nname = \"same-login-wrong\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\npassword = \"not-the-password-77\"\n",
        sshd.config_text("", &password()),
        sshd.port,
        sshd::USER
    );
    let config = NetstatConfig::parse(&text, &sshd.root().join("c.toml"), None, &|_| None).unwrap();
    assert_eq!(config.remote_hosts.len(), 2);
    let right = config.find_host("test-sshd").unwrap().clone();
    let wrong = config.find_host("same-login-wrong").unwrap().clone();
    for order in [[&right, &wrong], [&wrong, &right]] {
        let pool = SshPool::new(config.ssh.clone());
        for host in order {
            let result = pool.run(host, None, RemoteCommand::TRUE).await;
            if host.name == "same-login-wrong" {
                let err = result.unwrap_err();
                assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");
            } else {
                assert!(result.unwrap().success());
            }
        }
        // The right entry's session stays pooled and reused.
        pool.run(&right, None, RemoteCommand::TRUE).await.unwrap();
        assert_eq!(pool.handshakes(), 2, "one handshake per entry");
    }
    let log = sshd.log();
    assert_eq!(log.matches("Accepted password").count(), 2, "{log}");
    assert!(log.matches("Failed password").count() >= 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_is_refused() {
    let sshd = Sshd::start(UserPath::System);
    let (_held, closed) = refusing_tcp_port();
    let config = sshd.config("", &password());
    let (pool, host) = pool_and_host(&config);
    let err = pool
        .run(&host, Some(closed), RemoteCommand::TRUE)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::Refused { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{closed}")), "{msg}");
    assert!(msg.contains("test-sshd (127.0.0.1)"), "{msg}");
}

/// A port that accepts TCP but never speaks SSH: the connect timeout covers the key exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_a_connect_timeout() {
    let sshd = Sshd::start(UserPath::System);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = sshd.config("connect_timeout_secs = 1", &password());
    let (pool, host) = pool_and_host(&config);
    // The server never answers: only the connect timeout can end the call (the outer bound is
    // just there to fail rather than hang).
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        pool.run(&host, Some(port), RemoteCommand::TRUE),
    )
    .await
    .expect("the connect timeout ended the call")
    .unwrap_err();
    assert!(
        matches!(err, SshError::ConnectTimeout { secs: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("connect_timeout_secs"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_call_reuses_the_session() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("", &password());
    let (pool, host) = pool_and_host(&config);
    let t0 = Instant::now();
    assert_sees_listener(
        &pool
            .run(&host, None, listing(Listing::NetstatWide))
            .await
            .unwrap(),
        sshd.port,
    );
    let first = t0.elapsed();
    let t1 = Instant::now();
    assert_sees_listener(
        &pool
            .run(&host, None, listing(Listing::NetstatWide))
            .await
            .unwrap(),
        sshd.port,
    );
    let second = t1.elapsed();
    assert_eq!(
        pool.handshakes(),
        1,
        "the second call must not handshake again"
    );
    assert_eq!(pool.open_sessions().await, 1);
    eprintln!("first call (with handshake) {first:?}, repeat call {second:?}");
    let accepted = sshd.log().matches("Accepted password").count();
    assert_eq!(accepted, 1, "sshd saw {accepted} logins");

    // Many calls at once share the one session (and stay under sshd's MaxSessions 10).
    let calls = (0..20).map(|_| {
        let pool = pool.clone();
        let host = host.clone();
        tokio::spawn(async move { pool.run(&host, None, RemoteCommand::TRUE).await })
    });
    for c in calls.collect::<Vec<_>>() {
        c.await.unwrap().unwrap();
    }
    assert_eq!(pool.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_session_is_replaced() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("", &password());
    let (pool, host) = pool_and_host(&config);
    pool.run(&host, None, RemoteCommand::TRUE).await.unwrap();
    assert!(sshd.kill_sessions() >= 1, "no session process to kill");
    let out = pool
        .run(&host, None, listing(Listing::NetstatWide))
        .await
        .unwrap();
    assert_sees_listener(&out, sshd.port);
    assert_eq!(pool.handshakes(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_closed() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("idle_timeout_secs = 1", &password());
    let (pool, host) = pool_and_host(&config);
    pool.run(&host, None, RemoteCommand::TRUE).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.open_sessions().await > 0 {
        assert!(
            Instant::now() < deadline,
            "idle session still open after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.run(&host, None, RemoteCommand::TRUE).await.unwrap();
    assert_eq!(pool.handshakes(), 2);
}

/// A `netstat` that hangs the first time (then runs the real one): `sleep <tag>` is its marker.
fn hanging_netstat(sshd: &Sshd, tag: &str) {
    sshd.shim(
        "netstat",
        &format!(
            "#!/bin/sh\nif [ ! -e {flag} ]; then : > {flag}; exec sleep {tag}; fi\nexec /usr/bin/netstat \"$@\"\n",
            flag = sshd.state.join("hung-once").display()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_command_is_killed_at_timeout() {
    let sshd = Sshd::start(UserPath::System);
    hanging_netstat(&sshd, "4711");
    let config = sshd.config("command_timeout_secs = 2", &password());
    let (pool, host) = pool_and_host(&config);
    // The remote command sleeps "forever" (4711 s): only the command timeout can end the call.
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        pool.run(&host, None, listing(Listing::NetstatWide)),
    )
    .await
    .expect("the command timeout ended the call")
    .unwrap_err();
    assert!(
        matches!(err, SshError::CommandTimeout { secs: 2, .. }),
        "{err}"
    );
    assert!(
        eventually(5, || pids_with_cmdline(&["sleep", "4711"]).is_empty()).await,
        "the hung remote command was not killed"
    );
    let out = pool
        .run(&host, None, listing(Listing::NetstatWide))
        .await
        .unwrap();
    assert_sees_listener(&out, sshd.port);
    assert_eq!(
        pool.handshakes(),
        1,
        "the session survives a command timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_call_kills_the_remote_command() {
    let sshd = Sshd::start(UserPath::System);
    hanging_netstat(&sshd, "4712");
    let config = sshd.config("command_timeout_secs = 60", &password());
    let (pool, host) = pool_and_host(&config);
    let call = pool.run(&host, None, listing(Listing::NetstatWide));
    // Drop the call (as an MCP cancellation does) once the remote command is running.
    let cancelled = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            _ = call => panic!("the hanging command finished"),
            _ = async {
                while pids_with_cmdline(&["sleep", "4712"]).is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } => {}
        }
    })
    .await;
    assert!(cancelled.is_ok(), "the remote command never started");
    assert!(
        eventually(5, || pids_with_cmdline(&["sleep", "4712"]).is_empty()).await,
        "the cancelled remote command was not killed"
    );
    let out = pool
        .run(&host, None, listing(Listing::NetstatWide))
        .await
        .unwrap();
    assert_sees_listener(&out, sshd.port);
}

// ---------------------------------------------------------------------------------------------
// The remote source and the service/CLI over SSH

mod remote {
    use std::collections::HashSet;
    use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
    use std::process::{Command, Output};
    use std::sync::Arc;

    use netstat_mcp::error::Error;
    use netstat_mcp::model::{Protocol, Socket, TcpState};
    use netstat_mcp::query::{ConnectionsArgs, PortArgs, Service};
    use netstat_mcp::source::SshRemotes;
    use netstat_mcp::source::remote::commands::Listing;
    use netstat_mcp::source::{Backend, LocalSource, RemoteSources, Snapshot, Source, Want};
    use serde_json::Value;

    use super::password;
    use crate::support::sshd::{Sshd, UserPath};

    type Key = (Protocol, IpAddr, u16, IpAddr, Option<u16>, Option<TcpState>);

    fn key(s: &Socket) -> Key {
        (
            s.protocol,
            s.local_ip,
            s.local_port,
            s.foreign.ip,
            s.foreign.port,
            s.state,
        )
    }

    /// Sockets this test holds open: TCP and UDP, IPv4 and IPv6, listening and connected. The
    /// listeners' ports are below the ephemeral range (never a client socket's port), and
    /// every socket is known by its full key, so no other process's socket (nor an old
    /// TIME_WAIT on a reused port) is ever mistaken for one of ours.
    struct Mine {
        _tcp4: TcpListener,
        _tcp6: TcpListener,
        _udp4: UdpSocket,
        _udp6: UdpSocket,
        _client: TcpStream,
        _server: TcpStream,
        /// The listening TCP port (IPv4), for port checks.
        listen_port: u16,
        keys: Vec<Key>,
    }

    fn open_mine() -> Mine {
        use crate::support::net::{tcp_listener, udp_socket_on};
        let tcp4 = tcp_listener("127.0.0.1");
        let tcp6 = tcp_listener("::1");
        let (udp4, _) = udp_socket_on("127.0.0.1");
        let (udp6, _) = udp_socket_on("::1");
        let client = TcpStream::connect(tcp4.local_addr().unwrap()).unwrap();
        let (server, _) = tcp4.accept().unwrap();
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        let listen = |l: &TcpListener, proto, any| {
            let a = l.local_addr().unwrap();
            (proto, a.ip(), a.port(), any, None, Some(TcpState::Listen))
        };
        let bound = |u: &UdpSocket, proto, any| {
            let a = u.local_addr().unwrap();
            (proto, a.ip(), a.port(), any, None, None)
        };
        let connected = |s: &TcpStream| {
            let (l, p) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
            (
                Protocol::Tcp,
                l.ip(),
                l.port(),
                p.ip(),
                Some(p.port()),
                Some(TcpState::Established),
            )
        };
        let keys = vec![
            listen(&tcp4, Protocol::Tcp, any4),
            listen(&tcp6, Protocol::Tcp6, any6),
            bound(&udp4, Protocol::Udp, any4),
            bound(&udp6, Protocol::Udp6, any6),
            connected(&client),
            connected(&server),
        ];
        Mine {
            listen_port: tcp4.local_addr().unwrap().port(),
            _tcp4: tcp4,
            _tcp6: tcp6,
            _udp4: udp4,
            _udp6: udp6,
            _client: client,
            _server: server,
            keys,
        }
    }

    fn service(remotes: &SshRemotes) -> Service {
        Service::new(
            Arc::new(LocalSource::new(Backend::Auto)),
            Arc::new(remotes.clone()),
        )
    }

    async fn remote_snapshot(remotes: &SshRemotes) -> Snapshot {
        let target = remotes.lookup("test-sshd", None).unwrap();
        assert_eq!(target.label, "remote host test-sshd (127.0.0.1)");
        assert!(!target.local);
        target.source.collect(Want::all()).await.unwrap()
    }

    /// What the remote listing shows equals what the local engine shows: our own sockets with
    /// identical fields (owners aside: the SSH user may not see root's processes), and every
    /// listening/UDP socket that existed both before and after the remote call.
    fn assert_same_as_local(before: &Snapshot, remote: &Snapshot, after: &Snapshot, mine: &Mine) {
        let stable = |s: &&Socket| {
            s.state == Some(TcpState::Listen)
                || s.protocol.transport() == netstat_mcp::model::Transport::Udp
        };
        let b: HashSet<Key> = before.sockets.iter().filter(stable).map(key).collect();
        let a: HashSet<Key> = after.sockets.iter().filter(stable).map(key).collect();
        let r: HashSet<Key> = remote.sockets.iter().map(key).collect();
        let missing: Vec<&Key> = b.intersection(&a).filter(|k| !r.contains(*k)).collect();
        assert!(missing.is_empty(), "remote listing lacks {missing:?}");
        // Each of our sockets, with the same fields in both listings (queues aside: they move).
        for k in &mine.keys {
            let find = |snap: &Snapshot| -> Vec<Socket> {
                snap.sockets
                    .iter()
                    .filter(|s| key(s) == *k)
                    .cloned()
                    .collect()
            };
            let (local, theirs) = (find(before), find(remote));
            assert_eq!(local.len(), 1, "local engine: {k:?} in {local:?}");
            assert_eq!(theirs.len(), 1, "remote listing: {k:?} in {theirs:?}");
        }
        // Root holds our sockets; the unprivileged SSH user sees no owner for them, and is told.
        let ours = remote
            .sockets
            .iter()
            .find(|s| key(s) == mine.keys[0])
            .unwrap();
        assert!(ours.owners.is_empty(), "{ours:?}");
        assert!(
            remote
                .notes
                .iter()
                .any(|n| n.contains("SSH user netstat-mcp-test may not inspect")),
            "{:?}",
            remote.notes
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_listing_matches_local_engine() {
        let sshd = Sshd::start(UserPath::System);
        let mine = open_mine();
        let remotes = SshRemotes::new(sshd.config("", &password()));
        let local = LocalSource::new(Backend::Auto);
        let before = local.collect(Want::all()).await.unwrap();
        let remote = remote_snapshot(&remotes).await;
        let after = local.collect(Want::all()).await.unwrap();
        assert_same_as_local(&before, &remote, &after, &mine);
        assert_eq!(
            remotes
                .profile("test-sshd", None)
                .and_then(|p| p.unfiltered),
            Some(Listing::NetstatWide)
        );

        // Through the service (the core of the CLI and MCP faces): filters, messages, port check.
        let service = service(&remotes);
        let map = |v: Value| v.as_object().cloned().unwrap();
        let query = ConnectionsArgs::from_json(&map(serde_json::json!({
            "host": "test-sshd", "proto": "tcp", "state": "LISTEN", "local_port": mine.listen_port
        })))
        .unwrap()
        .validate(Some(500))
        .unwrap();
        let env = service.connections(&query).await.unwrap();
        let data = env.data.as_ref().unwrap();
        assert_eq!(data.host, "test-sshd");
        assert_eq!(data.connection_count, 1, "{}", env.message);
        assert!(
            env.message.starts_with(
                "Successfully obtained TCP connections on remote host test-sshd (127.0.0.1), total 1"
            ),
            "{}",
            env.message
        );
        assert!(
            env.message.contains("use an SSH user with root rights"),
            "{}",
            env.message
        );
        assert_eq!(data.connections[0].pid, None);

        let port = PortArgs::from_json(&map(serde_json::json!({
            "host": "test-sshd", "port": mine.listen_port
        })))
        .unwrap()
        .validate(None)
        .unwrap();
        let env = service.port(&port).await.unwrap();
        assert!(env.data.as_ref().unwrap().is_occupied, "{}", env.message);
        assert!(
            env.message.starts_with(&format!(
                "Port {}/TCP on remote host test-sshd (127.0.0.1) is occupied",
                mine.listen_port
            )),
            "{}",
            env.message
        );
        // One handshake for everything above.
        assert_eq!(remotes.pool().handshakes(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn falls_back_to_ss_then_proc_net() {
        // No netstat, but ss.
        let sshd = Sshd::start(UserPath::Bare);
        std::os::unix::fs::symlink("/usr/bin/ss", sshd.bin.join("ss")).unwrap();
        let mine = open_mine();
        let remotes = SshRemotes::new(sshd.config("", &password()));
        let local = LocalSource::new(Backend::Auto);
        let before = local.collect(Want::all()).await.unwrap();
        let remote = remote_snapshot(&remotes).await;
        let after = local.collect(Want::all()).await.unwrap();
        assert_eq!(
            remotes
                .profile("test-sshd", None)
                .and_then(|p| p.unfiltered),
            Some(Listing::Ss)
        );
        assert_same_as_local(&before, &remote, &after, &mine);

        // Neither netstat nor ss: /proc/net.
        std::fs::remove_file(sshd.bin.join("ss")).unwrap();
        let remotes = SshRemotes::new(sshd.config("", &password()));
        let remote = remote_snapshot(&remotes).await;
        assert_eq!(
            remotes
                .profile("test-sshd", None)
                .and_then(|p| p.unfiltered),
            Some(Listing::ProcNet)
        );
        let keys: HashSet<Key> = remote.sockets.iter().map(key).collect();
        for k in &mine.keys {
            assert!(keys.contains(k), "/proc/net listing lacks {k:?}");
        }
        assert!(
            remote
                .notes
                .iter()
                .any(|n| n.contains("neither netstat, ss nor awk")),
            "{:?}",
            remote.notes
        );

        // Nothing usable at all: a clear error naming what was tried.
        std::fs::remove_file(sshd.bin.join("cat")).unwrap();
        let remotes = SshRemotes::new(sshd.config("", &password()));
        let target = remotes.lookup("test-sshd", None).unwrap();
        let err = target.source.collect(Want::all()).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("no usable command on test-sshd (127.0.0.1)"),
            "{msg}"
        );
        assert!(
            msg.contains("netstat -tunapW") && msg.contains("ss -tunap"),
            "{msg}"
        );
        assert!(msg.contains("Install net-tools"), "{msg}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_and_hostile_hosts_run_nothing() {
        let sshd = Sshd::start(UserPath::System);
        let remotes = SshRemotes::new(sshd.config("", &password()));
        let service = service(&remotes);
        for host in [
            "web-9",
            "a;id",
            "$(id)",
            "`id`",
            "x' || id '",
            "\"quoted\"",
            "test-sshd\nid",
            "test-sshd;id",
            "127.0.0.1:22",
        ] {
            let map = serde_json::json!({"host": host})
                .as_object()
                .cloned()
                .unwrap();
            let result = match ConnectionsArgs::from_json(&map).and_then(|a| a.validate(Some(500)))
            {
                Ok(q) => service.connections(&q).await.map(|_| ()),
                Err(e) => Err(Error::Input(e)),
            };
            let err = result.expect_err(host);
            // The host is quoted back with control characters escaped (never a raw newline
            // in a message or log), then the configured names.
            let shown = host.replace('\n', "\\n");
            assert_eq!(
                err.to_string(),
                format!(
                    "Authentication config for remote host not found: {shown}; configured hosts: test-sshd"
                ),
                "{host:?}"
            );
        }
        assert_eq!(remotes.pool().handshakes(), 0, "nothing was contacted");
        // sshd saw no connection at all.
        assert_eq!(
            sshd.log().matches("Connection from").count(),
            0,
            "{}",
            sshd.log()
        );
    }

    fn netstat_mcp(config: &std::path::Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("NETSTAT_MCP_CONFIG")
            .output()
            .expect("run netstat-mcp")
    }

    fn json(out: &Output) -> Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    #[test]
    fn cli_over_ssh_hosts_connections_port() {
        use std::os::unix::fs::PermissionsExt;
        let sshd = Sshd::start(UserPath::System);
        let mine = open_mine();
        let config = sshd.root().join("netstat-mcp.toml");
        std::fs::write(&config, sshd.config_text("", &password())).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();

        // hosts: name, address, port, user, auth; never the password.
        let out = netstat_mcp(&config, &["hosts"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("test-sshd"))
            .expect("host row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cells[..4],
            [
                "test-sshd",
                "127.0.0.1",
                &sshd.port.to_string(),
                "netstat-mcp-test"
            ]
        );
        assert!(row.contains("password (in config)"), "{row}");
        assert!(!text.contains(super::PASSWORD), "{text}");
        // --json is the list_hosts tool's envelope.
        let answer = json(&netstat_mcp(&config, &["hosts", "--json"]));
        assert_eq!(answer["success"], true, "{answer}");
        let hosts = &answer["data"]["hosts"];
        assert_eq!(hosts[0]["name"], "test-sshd");
        assert_eq!(hosts[0]["auth"], "password (in config)");

        // connections --host: our sockets, the same as the local listing.
        let remote = json(&netstat_mcp(
            &config,
            &["connections", "--host", "test-sshd", "--json"],
        ));
        let local = json(&netstat_mcp(&config, &["connections", "--json"]));
        assert_eq!(remote["success"], true, "{remote}");
        assert_eq!(remote["data"]["host"], "test-sshd");
        // Rows as `protocol local foreign state` text; our sockets are found by their full key.
        let rows = |v: &Value| -> HashSet<String> {
            v["data"]["connections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    format!(
                        "{} {}:{} {}:{} {}",
                        c["protocol"].as_str().unwrap_or("?"),
                        c["local_ip"].as_str().unwrap_or("?"),
                        c["local_port"],
                        c["foreign_ip"].as_str().unwrap_or("?"),
                        c["foreign_port"],
                        c["state"].as_str().unwrap_or("null")
                    )
                })
                .collect()
        };
        let (local_rows, remote_rows) = (rows(&local), rows(&remote));
        for (protocol, lip, lport, fip, fport, state) in &mine.keys {
            let text = format!(
                "{protocol} {lip}:{lport} {fip}:{} {}",
                fport.map_or("null".to_string(), |p| p.to_string()),
                state.map_or("null", |s| s.netstat_name())
            );
            assert!(local_rows.contains(&text), "local lacks {text}");
            assert!(remote_rows.contains(&text), "remote lacks {text}");
        }

        // port --host: occupied (exit 0) and free (exit 1).
        let p = mine.listen_port.to_string();
        let out = netstat_mcp(&config, &["port", &p, "--host", "test-sshd"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(&format!(
                "Port {p}/TCP on remote host test-sshd (127.0.0.1) is occupied"
            )),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );

        // An unknown or hostile host: the documented message, exit 2.
        for host in ["nope", "a;id"] {
            let out = netstat_mcp(&config, &["connections", "--host", host]);
            assert_eq!(out.status.code(), Some(2));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(&format!(
                    "Authentication config for remote host not found: {host}"
                )),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // A remote failure is its own clear error: the sshd's key is unknown.
        std::fs::write(&sshd.known_hosts, "").unwrap();
        let out = netstat_mcp(&config, &["connections", "--host", "test-sshd", "--json"]);
        assert_eq!(out.status.code(), Some(2));
        let v = json(&out);
        assert_eq!(v["success"], false);
        assert!(
            v["message"].as_str().unwrap().contains("is not known"),
            "{v}"
        );
    }

    /// Both tools through the real MCP server (a child process on stdio) to the real sshd.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mcp_over_ssh_both_tools() {
        use std::os::unix::fs::PermissionsExt;

        use crate::support::mcp_client::Server;

        let sshd = Sshd::start(UserPath::System);
        let mine = open_mine();
        let config = sshd.root().join("netstat-mcp.toml");
        std::fs::write(&config, sshd.config_text("", &password())).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = config.to_string_lossy().into_owned();
        let server = Server::start_with(&["--config", &config], &[]).await;

        let listener = mine.listen_port;
        let out = server
            .call(
                "query_network_connections",
                serde_json::json!({"host": "test-sshd", "proto": "tcp", "local_port": listener}),
            )
            .await;
        assert_eq!(out["success"], true, "{out}");
        assert_eq!(out["data"]["host"], "test-sshd");
        let rows = out["data"]["connections"].as_array().unwrap();
        assert!(
            rows.iter()
                .any(|r| r["state"] == "LISTEN" && r["local_ip"] == "127.0.0.1"),
            "{out}"
        );
        assert!(
            out["message"].as_str().unwrap().starts_with(
                "Successfully obtained TCP connections on remote host test-sshd (127.0.0.1), total"
            ),
            "{out}"
        );

        // check_port_occupation with ssh_port given explicitly (the sshd's own port).
        let out = server
            .call(
                "check_port_occupation",
                serde_json::json!({"host": "127.0.0.1", "port": listener, "ssh_port": sshd.port}),
            )
            .await;
        // `127.0.0.1` means the local machine (docs/tools.md), so this is answered locally, with owners.
        assert_eq!(out["data"]["host"], "localhost", "{out}");
        let out = server
            .call(
                "check_port_occupation",
                serde_json::json!({"host": "test-sshd", "port": listener, "ssh_port": sshd.port}),
            )
            .await;
        assert_eq!(out["data"]["is_occupied"], true, "{out}");
        assert!(
            out["message"].as_str().unwrap().starts_with(&format!(
                "Port {listener}/TCP on remote host test-sshd (127.0.0.1) is occupied"
            )),
            "{out}"
        );

        // Unknown host over MCP: a tool error with the documented message, and the server goes on.
        let result = server
            .call_raw(
                "check_port_occupation",
                serde_json::json!({"host": "web-9", "port": 80}),
            )
            .await
            .unwrap();
        let v = server.check("check_port_occupation", &result);
        assert_eq!(
            v["message"],
            "Authentication config for remote host not found: web-9; configured hosts: test-sshd"
        );
        // A refused SSH port: its own clear error.
        let (_held, closed) = crate::support::net::refusing_tcp_port();
        let result = server
            .call_raw(
                "query_network_connections",
                serde_json::json!({"host": "test-sshd", "port": closed}),
            )
            .await
            .unwrap();
        let v = server.check("query_network_connections", &result);
        assert_eq!(v["success"], false);
        assert!(v["message"].as_str().unwrap().contains("refused"), "{v}");
        server.stop().await;
    }
}

/// One unusable entry (its `password_env` is not set) beside a working one, through the real
/// MCP server: the local machine and the working host answer; the unusable host's calls are
/// tool errors naming file, entry and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entry_leaves_local_and_other_hosts_answering() {
    use std::os::unix::fs::PermissionsExt;

    use crate::support::mcp_client::Server;

    let sshd = Sshd::start(UserPath::System);
    let config = sshd.root().join("netstat-mcp.toml");
    let text = format!(
        "{}\n[[remote_hosts]]\nname = \"broken\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\npassword_env = \"NETSTAT_MCP_TEST_UNSET_VAR\"\n",
        sshd.config_text("", &password()),
        sshd.port,
        sshd::USER
    );
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let server = Server::start_with(&["--config", &config_arg], &[]).await;
    let (_held, port) = {
        let l = crate::support::net::tcp_listener("127.0.0.1");
        let p = l.local_addr().unwrap().port();
        (l, p)
    };

    let local = server
        .call("check_port_occupation", serde_json::json!({"port": port}))
        .await;
    assert_eq!(local["data"]["is_occupied"], true, "{local}");
    let remote = server
        .call(
            "check_port_occupation",
            serde_json::json!({"host": "test-sshd", "port": port}),
        )
        .await;
    assert_eq!(remote["data"]["is_occupied"], true, "{remote}");
    let result = server
        .call_raw(
            "query_network_connections",
            serde_json::json!({"host": "broken"}),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let v = server.check("query_network_connections", &result);
    let message = v["message"].as_str().unwrap();
    for part in [
        config_arg.as_str(),
        "remote_hosts[1] (broken)",
        "`password_env`",
        "NETSTAT_MCP_TEST_UNSET_VAR is not set",
    ] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
    // Still serving.
    let again = server
        .call("check_port_occupation", serde_json::json!({"port": port}))
        .await;
    assert_eq!(again["data"]["is_occupied"], true);
    server.stop().await;
    // Nothing was sent to sshd for the broken entry: one login, the working one.
    assert_eq!(sshd.log().matches("Accepted password").count(), 1);
}
