//! SSH against a real OpenSSH sshd on 127.0.0.1 (started per test by `support::sshd`):
//! authentication methods, host key policy, errors, session pool, timeouts and cancellation.

use std::time::{Duration, Instant};

use netstat_mcp::config::{NetstatConfig, RemoteHost};
use netstat_mcp::ssh::{CommandOutput, RemoteCommand, SshError, SshPool};

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
    let out = run(&config, RemoteCommand::NetstatWide).await.unwrap();
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
        let out = run(&config, RemoteCommand::Ss)
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
    let out = run(&good, RemoteCommand::True).await.unwrap();
    assert!(out.success());

    let bad = NetstatConfig::parse(&text, &cfg_path, None, &with("wrong")).unwrap();
    let err = run(&bad, RemoteCommand::True).await.unwrap_err();
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
    let out = run(&config, RemoteCommand::True).await.unwrap();
    assert!(out.success());

    // An agent without the key: authentication fails, naming what was tried.
    let empty = Agent::start();
    let config = sshd.config(
        "",
        &format!("agent_socket = \"{}\"", empty.socket.display()),
    );
    let err = run(&config, RemoteCommand::True).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_auth_failure_without_the_secret() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("", "password = \"not-the-password-93\"");
    let err = run(&config, RemoteCommand::True).await.unwrap_err();
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
    let err = run(&config, RemoteCommand::True).await.unwrap_err();
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
        let err = run(&config, RemoteCommand::True).await.unwrap_err();
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
    run(&config, RemoteCommand::True).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_learns_then_pins() {
    let first = Sshd::start(UserPath::System);
    std::fs::write(&first.known_hosts, "").unwrap();
    let config = first.config("host_key_policy = \"accept-new\"", &password());
    run(&config, RemoteCommand::True).await.unwrap();
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
    run(&config, RemoteCommand::True).await.unwrap();
    assert_eq!(std::fs::read_to_string(&first.known_hosts).unwrap(), learnt);

    // Pinned: another server (other keys) at the learnt address is refused, even under accept-new.
    let second = Sshd::start(UserPath::System);
    let pinned = learnt.replace(&prefix, &format!("[127.0.0.1]:{} ", second.port));
    std::fs::write(&second.known_hosts, &pinned).unwrap();
    let config = second.config("host_key_policy = \"accept-new\"", &password());
    let err = run(&config, RemoteCommand::True).await.unwrap_err();
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&second.known_hosts).unwrap(),
        pinned
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_is_refused() {
    let sshd = Sshd::start(UserPath::System);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = sshd.config("", &password());
    let (pool, host) = pool_and_host(&config);
    let err = pool
        .run(&host, Some(closed), RemoteCommand::True)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::Refused { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{closed}")), "{msg}");
    assert!(msg.contains("test-sshd (127.0.0.1)"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_call_reuses_the_session() {
    let sshd = Sshd::start(UserPath::System);
    let config = sshd.config("", &password());
    let (pool, host) = pool_and_host(&config);
    let t0 = Instant::now();
    assert_sees_listener(
        &pool
            .run(&host, None, RemoteCommand::NetstatWide)
            .await
            .unwrap(),
        sshd.port,
    );
    let first = t0.elapsed();
    let t1 = Instant::now();
    assert_sees_listener(
        &pool
            .run(&host, None, RemoteCommand::NetstatWide)
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
        tokio::spawn(async move { pool.run(&host, None, RemoteCommand::True).await })
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
    pool.run(&host, None, RemoteCommand::True).await.unwrap();
    assert!(sshd.kill_sessions() >= 1, "no session process to kill");
    let out = pool
        .run(&host, None, RemoteCommand::NetstatWide)
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
    pool.run(&host, None, RemoteCommand::True).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.open_sessions().await > 0 {
        assert!(
            Instant::now() < deadline,
            "idle session still open after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.run(&host, None, RemoteCommand::True).await.unwrap();
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
    let t0 = Instant::now();
    let err = pool
        .run(&host, None, RemoteCommand::NetstatWide)
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(err, SshError::CommandTimeout { secs: 2, .. }),
        "{err}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(
        eventually(5, || pids_with_cmdline(&["sleep", "4711"]).is_empty()).await,
        "the hung remote command was not killed"
    );
    let out = pool
        .run(&host, None, RemoteCommand::NetstatWide)
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
    let call = pool.run(&host, None, RemoteCommand::NetstatWide);
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
        .run(&host, None, RemoteCommand::NetstatWide)
        .await
        .unwrap();
    assert_sees_listener(&out, sshd.port);
}
