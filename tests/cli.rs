//! The `netstat-mcp` binary as a person runs it: tables, `--json`, exit codes.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::mcp_client::bin;
use crate::support::net::{command_in_empty_netns, our_program, tcp_listener, udp_socket};

fn netstat_mcp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(args)
        .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
        .output()
        .expect("run netstat-mcp")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn port_exit_codes_and_json() {
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port().to_string();

    let out = netstat_mcp(&["port", &port, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "occupied → 0; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["is_occupied"], true);
    assert_eq!(
        v["data"]["check_port"].as_u64(),
        Some(port.parse().unwrap())
    );
    // The listener belongs to this test process, not to the child netstat-mcp.
    let occ = &v["data"]["occupations"][0];
    assert_eq!(occ["pid"].as_u64(), Some(u64::from(std::process::id())));
    assert_eq!(occ["program"].as_str(), Some(our_program().as_str()));
    assert_eq!(occ["state"], "LISTEN");

    // The same port is free in a network namespace of our own (on the host, no port is
    // reliably free while other processes run).
    if let Some(mut cmd) = command_in_empty_netns("the free-port check", &bin()) {
        let out = cmd
            .args(["port", &port])
            .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
            .output()
            .expect("run unshare");
        assert_eq!(
            out.status.code(),
            Some(1),
            "free → 1: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("Port {port}/TCP on local host is not occupied")
        );
    }

    for bad in ["0", "65536", "abc", "80.5", "-1"] {
        let out = netstat_mcp(&["port", bad, "--json"]);
        assert_eq!(out.status.code(), Some(2), "port {bad} → 2");
        let v = json(&out);
        assert_eq!(v["success"], false);
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("'port'") && msg.contains("between 1 and 65535"),
            "{msg}"
        );
    }
    let out = netstat_mcp(&["port", "80", "--proto", "icmp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be one of: tcp, udp"));
}

#[test]
fn connections_table_and_json_show_our_listener() {
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port();
    let out = netstat_mcp(&[
        "connections",
        "--proto",
        "tcp",
        "--state",
        "LISTEN",
        "--local-port",
        &port.to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("Proto")
            && header.contains("Local Address")
            && header.contains("PID/Program")
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(&format!("127.0.0.1:{port}")) && row.contains("LISTEN"),
        "{row}"
    );
    assert!(
        row.contains(&format!("{}/{}", std::process::id(), our_program())),
        "{row}"
    );
    assert_eq!(
        lines.next(),
        Some("Successfully obtained local TCP connections, total 1 (state LISTEN)")
    );

    let out = netstat_mcp(&[
        "connections",
        "--json",
        "--local-port",
        &port.to_string(),
        "--no-owners",
    ]);
    let v = json(&out);
    assert_eq!(v["data"]["connection_count"], 1);
    assert_eq!(
        v["data"]["connections"][0]["pid"],
        Value::Null,
        "--no-owners skips owners"
    );
    assert_eq!(v["data"]["filter"]["proto"], "all");

    // LISTEN with UDP lists bound, unconnected UDP sockets, as `netstat -l` does.
    let (_udp, udp_port) = udp_socket();
    let out = netstat_mcp(&[
        "connections",
        "--proto",
        "udp",
        "--state",
        "LISTEN",
        "--local-port",
        &udp_port.to_string(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["data"]["connection_count"], 1, "{v}");
    assert_eq!(v["data"]["connections"][0]["protocol"], "udp");
    assert_eq!(v["data"]["connections"][0]["state"], Value::Null);
    // Other states are TCP only.
    let out = netstat_mcp(&[
        "connections",
        "--proto",
        "udp",
        "--state",
        "ESTABLISHED",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        json(&out)["message"]
            .as_str()
            .unwrap()
            .contains("applies to TCP only")
    );
    // --ssh-port without --host: the SSH port is not a socket port.
    let out = netstat_mcp(&["connections", "--ssh-port", "22"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use local_port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_lists_every_command_and_option() {
    let out = netstat_mcp(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["connections", "port", "serve", "--config", "--backend"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
    let out = netstat_mcp(&["connections", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--proto",
        "--state",
        "--local-port",
        "--remote-port",
        "--pid",
        "--program",
        "--limit",
        "--json",
        "--no-owners",
    ] {
        assert!(text.contains(word), "connections --help lacks {word}");
    }
}

#[test]
fn unprivileged_user_gets_rows_without_owners_and_a_hint() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!(
            "SKIPPED unprivileged_user_gets_rows_without_owners_and_a_hint: needs root to switch to nobody"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; this test must not skip there"
        );
        return;
    }
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port().to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["port", &port, "--json"])
        .env("NETSTAT_MCP_CONFIG", "/nonexistent/netstat-mcp-test.toml")
        .output()
        .expect("run setpriv");
    assert_eq!(
        out.status.code(),
        Some(0),
        "still occupied: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["data"]["is_occupied"], true);
    assert_eq!(
        v["data"]["occupations"][0]["pid"],
        Value::Null,
        "nobody may not read root's fds"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("CAP_SYS_PTRACE") && msg.contains("sudo"),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!(
            "Port {port}/TCP on local host is occupied by: an unknown process"
        )),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Config files: no secret in any error; a bad entry or an unreadable default file disables
// nothing else.

const SECRET: &str = "Inl1ne-P4ss-0042";

/// `netstat-mcp --config <file> <args>` with trace logging (so every log line is produced).
fn with_config(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("NETSTAT_MCP_CONFIG")
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run netstat-mcp")
}

/// The nine TOML syntax-error shapes, each with an inline password on the offending line: the
/// error names the file, line and column; neither stderr nor stdout carries the password, for
/// a CLI command and for the MCP server alike.
#[test]
fn config_syntax_errors_never_print_the_secret() {
    let head = "[[remote_hosts]]\nname = \"web-1\"\nhost = \"10.0.0.1\"\nusername = \"ops\"\n";
    // (shape, line 5 of the file and what follows, where the error is)
    let cases: [(&str, String, &str); 9] = [
        (
            "unclosed string",
            format!("password = \"{SECRET}\nport = 22\n"),
            "line 5, column 29",
        ),
        (
            "duplicate key",
            format!("password = \"{SECRET}\"\npassword = \"{SECRET}\"\n"),
            "line 6, column 1",
        ),
        (
            "trailing text",
            format!("password = \"{SECRET}\" trailing\n"),
            "line 5, column 31",
        ),
        (
            "bad escape",
            "password = \"Inl1ne\\q-P4ss-0042\"\n".to_string(),
            "line 5, column 20",
        ),
        (
            "control character",
            format!("password = \"{SECRET}\u{7f}\"\n"),
            "line 5, column 29",
        ),
        (
            "bare value",
            format!("password = {SECRET}\n"),
            "line 5, column 12",
        ),
        (
            "unclosed triple quote",
            format!("password = \"\"\"{SECRET}\nport = 22\n"),
            "line 7, column 1",
        ),
        (
            "inline table with an error elsewhere on the line",
            format!("auth = {{ password = \"{SECRET}\" }} x\n"),
            "line 5, column 42",
        ),
        (
            "unclosed literal string",
            format!("password = '{SECRET}\nport = 22\n"),
            "line 5, column 29",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    for (shape, tail, position) in &cases {
        std::fs::write(&file, format!("{head}{tail}")).unwrap();
        for args in [&["hosts"][..], &["connections", "--json"], &[]] {
            let out = with_config(&file, args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{shape} {args:?}: {stderr}");
            for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
                assert!(
                    !text.contains("Inl1ne") && !text.contains("P4ss"),
                    "{shape} {args:?}: the secret is in {name}:\n{text}"
                );
            }
            assert!(
                stderr.contains(&file.display().to_string()) && stderr.contains(position),
                "{shape} {args:?}: file and {position} not named:\n{stderr}"
            );
        }
    }
}

/// A config with one unusable entry (its `password_env` is not set): the local machine still
/// answers, and a call naming that host gets an error naming file, entry and field.
#[test]
fn bad_config_entry_leaves_the_local_machine_working() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        "[[remote_hosts]]\nname = \"broken\"\nhost = \"10.0.0.1\"\nusername = \"ops\"\n\
         password_env = \"NETSTAT_MCP_TEST_UNSET_VAR\"\n\n\
         [[remote_hosts]]\nname = \"fine\"\nhost = \"10.0.0.2\"\nusername = \"ops\"\nuse_agent = true\n",
    )
    .unwrap();
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port().to_string();
    let named = |text: &str| {
        text.contains(&file.display().to_string())
            && text.contains("remote_hosts[0] (broken)")
            && text.contains("`password_env`")
            && text.contains("NETSTAT_MCP_TEST_UNSET_VAR is not set")
    };

    let out = with_config(&file, &["port", &port, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "local still works: {stderr}");
    assert_eq!(json(&out)["data"]["is_occupied"], true);
    assert!(
        named(&stderr),
        "the bad entry is reported at start: {stderr}"
    );

    let out = with_config(&file, &["hosts"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("fine ")), "{text}");

    let out = with_config(&file, &["connections", "--host", "broken", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["success"], false);
    let message = v["message"].as_str().unwrap();
    assert!(named(message), "{message}");
    assert!(
        message.starts_with("remote host broken cannot be used"),
        "{message}"
    );
}

/// An unreadable config file at the default place (another user's HOME; here a directory in
/// its stead) is a warning and the local machine answers; the same path given with --config is
/// an error.
#[test]
fn unreadable_default_config_is_a_warning() {
    let home = tempfile::tempdir().unwrap();
    let default = home.path().join(".config/netstat-mcp/config.toml");
    std::fs::create_dir_all(&default).unwrap();
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .args(["port", &port])
        .env("HOME", home.path())
        .env_remove("NETSTAT_MCP_CONFIG")
        .output()
        .expect("run netstat-mcp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains(&default.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("only the local machine"), "{stderr}");

    let out = with_config(&default, &["port", &port]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A reader that went away (`| head -1`) is not an error: every command exits with its usual
/// status, without a panic or an error line. The pipe's read end is closed before the command
/// starts, so every write fails with EPIPE, however small the output.
#[test]
fn closed_stdout_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port().to_string();
    let cases: [(&[&str], i32); 8] = [
        (&["connections"], 0),
        (&["connections", "--json"], 0),
        (&["port", &port], 0),
        (&["port", &port, "--json"], 0),
        (&["port", "0", "--json"], 2),
        (&["hosts"], 0),
        (&["hosts", "--json"], 0),
        (&["--help"], 0),
    ];
    for (args, code) in cases {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("NETSTAT_MCP_CONFIG")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run netstat-mcp");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: stderr: {stderr}");
    }
}

/// The stdio server whose client closed its reading end before the initialize response: a
/// quiet end (exit 0, nothing on stderr), as when the client closes the connection.
#[test]
fn stdio_server_with_a_closed_stdout_exits_quietly() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("NETSTAT_MCP_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run netstat-mcp serve");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        )
        .unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

/// The same through a shell pipeline, as people type it (`pipefail` keeps our exit status).
#[test]
fn piped_into_head_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    // Enough rows that the output outgrows the pipe buffer (64 KiB) before `head` exits.
    let held: Vec<std::net::UdpSocket> = (0..400)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp"))
        .collect();
    let bin = env!("CARGO_BIN_EXE_netstat-mcp");
    for pipeline in [
        format!(
            "'{bin}' --config '{}' connections | head -1",
            config.display()
        ),
        format!(
            "'{bin}' --config '{}' connections --json | head -c 10",
            config.display()
        ),
    ] {
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &pipeline])
            .env_remove("NETSTAT_MCP_CONFIG")
            .output()
            .expect("run bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{pipeline}: {stderr}");
        assert!(stderr.is_empty(), "{pipeline}: stderr: {stderr}");
        assert!(!out.stdout.is_empty(), "{pipeline}");
    }
    drop(held);
}

/// `hosts` with 5,000 configured hosts: the table lists every one (a person asked), and
/// `--json` prints exactly what `list_hosts` returns — its envelope, within the answer budget,
/// saying it was cut.
#[test]
fn hosts_lists_every_host_and_json_is_the_list_hosts_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.toml");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!(
            "[[remote_hosts]]\nname = \"web-{i}\"\nhost = \"192.0.2.{}\"\nusername = \"ops\"\nuse_agent = true\n\n",
            i % 250 + 1
        ));
    }
    std::fs::write(&file, text).expect("write config");
    let out = with_config(&file, &["hosts"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("web-")).count(),
        5000
    );
    assert!(
        table.contains("5000 remote host(s)"),
        "{}",
        table.lines().last().unwrap_or("")
    );
    let out = with_config(&file, &["hosts", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.len() <= 24 * 1024, "{} bytes", out.stdout.len());
    let v = json(&out);
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["host_count"], 5000);
    assert_eq!(v["data"]["truncated"], true);
    assert!(
        v["message"].as_str().unwrap().contains("Listing"),
        "{}",
        v["message"]
    );
}

/// A config (or an ssh_config, or an `Include`) that is a device or a FIFO ends with a clear
/// error at once, instead of reading until memory runs out or hanging.
#[test]
fn config_files_that_are_devices_or_fifos_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let ssh_config = dir.path().join("config.toml");
    std::fs::write(
        &ssh_config,
        format!("[ssh]\nssh_config = \"{}\"\n", fifo.display()),
    )
    .unwrap();
    let include = dir.path().join("ssh_config");
    std::fs::write(
        &include,
        "Include /dev/zero\nHost web-1\n  HostName 192.0.2.1\n",
    )
    .unwrap();
    let include_config = dir.path().join("include.toml");
    std::fs::write(
        &include_config,
        format!("[ssh]\nssh_config = \"{}\"\n", include.display()),
    )
    .unwrap();
    for (config, what) in [
        (std::path::PathBuf::from("/dev/zero"), "a device"),
        (fifo.clone(), "a FIFO"),
        (ssh_config, "a FIFO"),
        (include_config, "a device"),
    ] {
        let started = std::time::Instant::now();
        let out = with_config(&config, &["hosts"]);
        let elapsed = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            elapsed < std::time::Duration::from_secs(5),
            "{config:?}: {elapsed:?}"
        );
        assert!(
            text.contains(&format!("it is {what}, not a regular file")),
            "{config:?}: {text}"
        );
        eprintln!(
            "{}: refused in {} ms",
            config.display(),
            elapsed.as_millis()
        );
    }
}

/// `netstat-mcp --config <config> hosts`: its exit code, stderr and its own peak RSS in KiB,
/// as GNU time reports it. (`wait4`'s `ru_maxrss` on our own child is not the child's: a
/// child spawned with `vfork`/`posix_spawn` starts on this test binary's memory, and the
/// kernel records that memory's high-water mark at exec, so it reported this binary's size
/// whenever that was larger. `time` forks from its own small process.)
fn hosts_with_peak_rss(config: &std::path::Path) -> (Option<i32>, String, u64) {
    let peak_file = tempfile::NamedTempFile::new().expect("temp file");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(peak_file.path())
        .arg(env!("CARGO_BIN_EXE_netstat-mcp"))
        .arg("--config")
        .arg(config)
        .arg("hosts")
        .env_remove("NETSTAT_MCP_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run /usr/bin/time (Debian's time; scripts/test.sh installs it)");
    let peak = std::fs::read_to_string(peak_file.path()).expect("time's report");
    let peak_kib = peak
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("time's report: {peak:?}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err, peak_kib)
}

/// ssh_config bombs end with errors naming file and line, in bounded memory: a Host pattern
/// of 400 KB (the glob compiler panicked on it), and `%` tokens that multiply (an 8 KB file
/// expanding to gigabytes).
#[test]
fn ssh_config_bombs_are_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh = dir.path().join("ssh_config");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[ssh]\nssh_config = \"{}\"\n", ssh.display()),
    )
    .unwrap();

    std::fs::write(
        &ssh,
        format!("Host {}\n  HostName 192.0.2.1\n", "a".repeat(400_000)),
    )
    .unwrap();
    let (code, err, _) = hosts_with_peak_rss(&config);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("line 1") && err.contains("longer than 8192 bytes"),
        "{err}"
    );

    let host = "h".repeat(250);
    let mut text = format!("Host {host}\n  HostName {}\n", "%n".repeat(1000));
    for _ in 0..2000 {
        text.push_str(&format!("  IdentityFile /tmp/{}\n", "%h".repeat(1000)));
    }
    std::fs::write(&ssh, &text).unwrap();
    let (code, err, peak_kib) = hosts_with_peak_rss(&config);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("is not a DNS name"),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(err.len() < 64 * 1024, "stderr of {} bytes", err.len());
    eprintln!("token bomb: peak RSS {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
}

/// Loading stays fast whatever the ssh_config's shape: 1,000 aliases (each lookup used to
/// re-read every block: 52 s), and an Include DAG of 45 small files, 3 per level over 15
/// levels (14 million reads before it was counted).
#[test]
fn large_ssh_configs_load_quickly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh = dir.path().join("ssh_config");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[ssh]\nssh_config = \"{}\"\n", ssh.display()),
    )
    .unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, "not a real key, but a readable file").unwrap();
    let mut text = String::from("Host *\n  User ops\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "Host web-{i}\n  HostName 192.0.2.{}\n  IdentityFile {}\n",
            i % 250 + 1,
            key.display()
        ));
    }
    std::fs::write(&ssh, &text).unwrap();
    let started = std::time::Instant::now();
    let out = with_config(&config, &["hosts"]);
    let elapsed = started.elapsed();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        table.lines().filter(|l| l.starts_with("web-")).count(),
        1000,
        "{table}"
    );
    eprintln!("1,000 aliases: loaded in {} ms", elapsed.as_millis());
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");

    // The DAG: level k's three files each include all three of level k+1.
    for level in 0..15 {
        for n in 0..3 {
            let mut body = format!("Host dag-{level}-{n}\n  HostName 192.0.2.1\n");
            if level < 14 {
                body.push_str(&format!(
                    "Include {}/dag-{}-*\n",
                    dir.path().display(),
                    level + 1
                ));
            }
            std::fs::write(dir.path().join(format!("dag-{level}-{n}")), body).unwrap();
        }
    }
    std::fs::write(&ssh, format!("Include {}/dag-0-*\n", dir.path().display())).unwrap();
    let started = std::time::Instant::now();
    let out = with_config(&config, &["hosts"]);
    let elapsed = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("include DAG: refused in {} ms", elapsed.as_millis());
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    assert!(
        err.contains("more than 1024 files read through Include"),
        "{err}"
    );
}

/// `summary --host` takes several hosts as its help says (a list here, none configured):
/// each is answered, and the merged summary says how many failed.
#[test]
fn summary_takes_several_hosts() {
    let out = netstat_mcp(&["summary", "--host", "nope-1,nope-2", "--json"]);
    let v = json(&out);
    let message = v["message"].as_str().unwrap_or_default();
    assert!(!message.contains("names one host"), "{v}");
    assert!(
        message.contains("nope-1") && message.contains("nope-2"),
        "{v}"
    );
    assert_eq!(out.status.code(), Some(2), "every host failed: {v}");
    assert_eq!(v["data"]["hosts"][1]["host"], "nope-2", "{v}");
    assert_eq!(v["data"]["summary"]["connection_count"], 0, "{v}");
    let text = netstat_mcp(&["summary", "--host", "nope-1,nope-2"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("== nope-1") && text.contains("== nope-2"),
        "{text}"
    );
}
