//! The `netstat-mcp` binary as a person runs it: tables, `--json`, exit codes.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::net::{our_program, tcp_listener, udp_socket, unused_tcp_port};

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

    let free = unused_tcp_port().to_string();
    let out = netstat_mcp(&["port", &free]);
    assert_eq!(out.status.code(), Some(1), "free → 1");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Port {free}/TCP on local host is not occupied")
    );

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
