//! `check_port_occupation`'s `bind` against the kernel: for each case the test sets up real
//! sockets in a network namespace of its own, asks the answer, then really tries `bind()`
//! with and without `SO_REUSEADDR` — the two must agree wherever the existing sockets follow
//! the answer's assumptions, and the answer must say what it assumes where they do not.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netstat_mcp::query::{PortArgs, Service};
use netstat_mcp::source::{LocalSource, NoRemotes};
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};

use crate::support::net::in_empty_netns;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The whole `check_port_occupation` answer (or its error) for these arguments.
fn ask(rt: &tokio::runtime::Runtime, args: Value) -> Result<Value, String> {
    let map = args.as_object().expect("object").clone();
    let query = PortArgs::from_json(&map)
        .map_err(|e| e.to_string())?
        .validate(Some(20))
        .map_err(|e| e.to_string())?;
    let service = Service::new(Arc::new(LocalSource::default()), Arc::new(NoRemotes));
    let envelope = rt
        .block_on(service.port(&query))
        .map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(&envelope).expect("json"))
}

fn addr(address: Option<&str>, port: u16) -> SocketAddr {
    match address {
        None => format!("[::]:{port}").parse().unwrap(),
        Some(a) if a.contains(':') => format!("[{a}]:{port}").parse().unwrap(),
        Some(a) => format!("{a}:{port}").parse().unwrap(),
    }
}

/// A socket of `ty` bound to `at` with the options given; `v6only` for IPv6 ones.
fn socket(
    ty: Type,
    at: SocketAddr,
    reuseaddr: bool,
    reuseport: bool,
    v6only: Option<bool>,
) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(at), ty, None)?;
    if at.is_ipv6() {
        s.set_only_v6(v6only.unwrap_or(false))?;
    }
    s.set_reuse_address(reuseaddr)?;
    s.set_reuse_port(reuseport)?;
    s.bind(&at.into())?;
    Ok(s)
}

/// Whether the kernel lets a new socket bind (a server: dual-stack for `[::]`).
fn binds(udp: bool, address: Option<&str>, port: u16, reuseaddr: bool) -> bool {
    let ty = if udp { Type::DGRAM } else { Type::STREAM };
    socket(ty, addr(address, port), reuseaddr, false, None).is_ok()
}

fn listen(at: &str, port: u16, reuseport: bool, v6only: Option<bool>) -> Socket {
    let s = socket(Type::STREAM, addr(Some(at), port), true, reuseport, v6only).expect("listener");
    s.listen(128).expect("listen");
    s
}

/// An outgoing connection whose local end is `127.0.0.1:port` (bound without SO_REUSEADDR
/// unless `reuseaddr`), to a listener of its own on `127.0.0.1:target`.
fn outgoing(port: u16, target: u16, reuseaddr: bool) -> (Socket, TcpStream, TcpListener) {
    let listener = TcpListener::bind(("127.0.0.1", target)).expect("target");
    let s = socket(
        Type::STREAM,
        addr(Some("127.0.0.1"), port),
        reuseaddr,
        false,
        None,
    )
    .expect("client");
    s.connect(&addr(Some("127.0.0.1"), target).into())
        .expect("connect");
    let accepted = listener.accept().expect("accept").0;
    (s, accepted, listener)
}

/// Leaves only a TIME_WAIT socket on `127.0.0.1:port`: the server's side of a connection it
/// closed first, its listener (SO_REUSEADDR, as servers set it) gone.
fn time_wait(rt: &tokio::runtime::Runtime, port: u16) {
    let listener = listen("127.0.0.1", port, false, None);
    let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    drop(accepted);
    drop(listener);
    let mut buf = [0u8; 1];
    let _ = std::io::Read::read(&mut &client, &mut buf);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = ask(rt, json!({"port": port, "limit": 0})).expect("answer");
        let states: Vec<String> = a["data"]["occupations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["state"].as_str().unwrap_or("").to_string())
            .collect();
        if !states.is_empty() && states.iter().all(|s| s == "TIME_WAIT") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no lone TIME_WAIT on {port}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One case: the answer's bind for (proto, address), its reason, and the kernel's verdicts.
fn agree(
    rt: &tokio::runtime::Runtime,
    name: &str,
    udp: bool,
    address: Option<&str>,
    port: u16,
    reason: &str,
) -> Value {
    let mut args = json!({"port": port, "proto": if udp { "udp" } else { "tcp" }});
    if let Some(a) = address {
        args["address"] = json!(a);
    }
    let answer = ask(rt, args).unwrap_or_else(|e| panic!("{name}: {e}"));
    let bind = answer["data"]["bind"].clone();
    let with = binds(udp, address, port, true);
    let without = binds(udp, address, port, false);
    assert_eq!(
        (
            bind["with_reuseaddr"].as_bool(),
            bind["without_reuseaddr"].as_bool(),
            bind["reason"].as_str()
        ),
        (Some(with), Some(without), Some(reason)),
        "{name}: the answer {bind} against bind(): with SO_REUSEADDR {with}, without {without}"
    );
    assert_eq!(bind["can_bind"], bind["with_reuseaddr"], "{name}");
    assert!(!bind["detail"].as_str().unwrap_or("").is_empty(), "{name}");
    bind
}

/// A case: its name, UDP or TCP, the address checked (`None`: dual-stack), the reason.
type Case<'a> = (&'a str, bool, Option<&'a str>, &'a str);

/// Runs `cases` against `port` (set up by the caller); how many ran.
fn cases(rt: &tokio::runtime::Runtime, port: u16, cases: &[Case<'_>]) -> usize {
    for (name, udp, address, reason) in cases {
        agree(rt, name, *udp, *address, port, reason);
    }
    cases.len()
}

/// Runs `f` in a network namespace of its own with `lo` up.
fn in_fresh_netns(what: &str, f: impl FnOnce(&tokio::runtime::Runtime) + Send) {
    in_empty_netns(what, || {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(up.success());
        f(&runtime());
    });
}

fn udp_socket(at: &str, port: u16, v6only: Option<bool>) -> Socket {
    socket(Type::DGRAM, addr(Some(at), port), false, false, v6only).expect("udp socket")
}

#[test]
fn bind_agrees_with_the_kernel_case_by_case() {
    in_fresh_netns("bind cases", |rt| {
        let mut n = cases(
            rt,
            20001,
            &[
                ("free port, dual-stack", false, None, "free"),
                ("free port, UDP", true, None, "free"),
            ],
        );

        let _l = listen("127.0.0.1", 20002, false, None);
        n += cases(
            rt,
            20002,
            &[
                (
                    "LISTEN on the same address",
                    false,
                    Some("127.0.0.1"),
                    "listener",
                ),
                (
                    "LISTEN on 127.0.0.1 vs the dual-stack wildcard",
                    false,
                    None,
                    "listener",
                ),
                (
                    "LISTEN on 127.0.0.1 vs another local address",
                    false,
                    Some("127.0.0.2"),
                    "free",
                ),
                (
                    "LISTEN on 127.0.0.1 vs 0.0.0.0",
                    false,
                    Some("0.0.0.0"),
                    "listener",
                ),
                (
                    "a TCP listener does not block UDP",
                    true,
                    Some("127.0.0.1"),
                    "free",
                ),
            ],
        );

        let _w = listen("0.0.0.0", 20003, false, None);
        n += cases(
            rt,
            20003,
            &[(
                "LISTEN on 0.0.0.0 vs 127.0.0.2",
                false,
                Some("127.0.0.2"),
                "listener",
            )],
        );

        let _d = listen("::", 20004, false, Some(false));
        n += cases(
            rt,
            20004,
            &[
                (
                    "[::] v6only off vs IPv4",
                    false,
                    Some("127.0.0.1"),
                    "listener",
                ),
                ("[::] v6only off vs ::1", false, Some("::1"), "listener"),
            ],
        );

        let _o = listen("::", 20005, false, Some(true));
        n += cases(
            rt,
            20005,
            &[
                ("[::] v6only on vs IPv4", false, Some("127.0.0.1"), "free"),
                ("[::] v6only on vs 0.0.0.0", false, Some("0.0.0.0"), "free"),
                (
                    "[::] v6only on vs the dual-stack wildcard",
                    false,
                    None,
                    "listener",
                ),
            ],
        );

        let _six = listen("::1", 20006, false, None);
        n += cases(
            rt,
            20006,
            &[
                (
                    "LISTEN on ::1 vs 127.0.0.1",
                    false,
                    Some("127.0.0.1"),
                    "free",
                ),
                ("LISTEN on ::1 vs ::1", false, Some("::1"), "listener"),
            ],
        );

        time_wait(rt, 20007);
        let tw = agree(
            rt,
            "TIME_WAIT only",
            false,
            Some("127.0.0.1"),
            20007,
            "time_wait",
        );
        assert!(
            tw["assumes"].is_string(),
            "TIME_WAIT's SO_REUSEADDR is assumed: {tw}"
        );
        n += 1 + cases(
            rt,
            20007,
            &[
                ("TIME_WAIT only, dual-stack", false, None, "time_wait"),
                (
                    "TIME_WAIT vs another address",
                    false,
                    Some("127.0.0.2"),
                    "free",
                ),
            ],
        );

        let _out = outgoing(20008, 20108, false);
        let used = agree(
            rt,
            "the local end of an outgoing connection",
            false,
            Some("127.0.0.1"),
            20008,
            "in_use",
        );
        assert!(used["assumes"].is_string(), "{used}");
        n += 1 + cases(
            rt,
            20008,
            &[
                (
                    "an outgoing connection vs the dual-stack wildcard",
                    false,
                    None,
                    "in_use",
                ),
                (
                    "an outgoing connection vs another address",
                    false,
                    Some("127.0.0.2"),
                    "free",
                ),
            ],
        );

        let _u = udp_socket("127.0.0.1", 20009, None);
        n += cases(
            rt,
            20009,
            &[
                ("a bound UDP socket", true, Some("127.0.0.1"), "in_use"),
                (
                    "a bound UDP socket vs another address",
                    true,
                    Some("127.0.0.2"),
                    "free",
                ),
                (
                    "a UDP socket does not block TCP",
                    false,
                    Some("127.0.0.1"),
                    "free",
                ),
            ],
        );

        let uc = udp_socket("127.0.0.1", 20010, None);
        uc.connect(&addr(Some("127.0.0.1"), 20009).into())
            .expect("udp connect");
        n += cases(
            rt,
            20010,
            &[("a connected UDP socket", true, Some("127.0.0.1"), "in_use")],
        );

        let _ud = udp_socket("::", 20011, Some(false));
        n += cases(
            rt,
            20011,
            &[(
                "a dual-stack UDP socket vs IPv4",
                true,
                Some("127.0.0.1"),
                "in_use",
            )],
        );

        // A two-listener SO_REUSEPORT group: a plain server cannot bind, a third SO_REUSEPORT
        // listener of the same user joins, another user's cannot.
        let _g1 = listen("127.0.0.1", 20012, true, None);
        let _g2 = listen("127.0.0.1", 20012, true, None);
        let group = agree(
            rt,
            "a two-listener SO_REUSEPORT group",
            false,
            Some("127.0.0.1"),
            20012,
            "reuseport_group",
        );
        n += 1;
        assert!(
            group["detail"].as_str().unwrap().contains("uid 0"),
            "{group}"
        );
        let third = socket(
            Type::STREAM,
            addr(Some("127.0.0.1"), 20012),
            true,
            true,
            None,
        );
        assert!(
            third.is_ok(),
            "a third SO_REUSEPORT bind by the same user joins"
        );
        drop(third);
        let other = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["/usr/bin/python3", "-c"])
            .arg(
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEPORT,1)\ns.bind(('127.0.0.1',20012))",
            )
            .output()
            .expect("setpriv python3");
        assert!(
            !other.status.success(),
            "another user's SO_REUSEPORT bind fails"
        );
        let said = String::from_utf8_lossy(&other.stderr);
        assert!(said.contains("Address already in use"), "{said}");

        assert!(n >= 20, "{n} cases");

        // Broken on purpose: a client that did set SO_REUSEADDR. The answer assumed it did not
        // (so it says in_use), the kernel lets a SO_REUSEADDR server bind: `assumes` says why.
        let _broken = outgoing(20013, 20113, true);
        let a = ask(rt, json!({"port": 20013, "address": "127.0.0.1"})).unwrap();
        let bind = &a["data"]["bind"];
        assert_eq!(bind["reason"], "in_use");
        assert!(
            binds(false, Some("127.0.0.1"), 20013, true),
            "the kernel allows it"
        );
        assert!(
            bind["assumes"]
                .as_str()
                .unwrap()
                .contains("did not set SO_REUSEADDR"),
            "{bind}"
        );
    });
}

#[test]
fn notes_and_suggested_ports() {
    in_fresh_netns("bind notes", |rt| {
        let notes = |port: u16| {
            let a = ask(rt, json!({"port": port})).unwrap();
            a["data"]["bind"]["notes"].clone()
        };
        assert_eq!(
            notes(80),
            json!(["privileged"]),
            "below ip_unprivileged_port_start"
        );
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let lo: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(notes(lo + 1), json!(["ephemeral_range"]));
        // Reserved ports are never handed out, and still bindable. (A per-namespace sysctl on
        // current kernels; put back as it was in any case.)
        const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
        let was = std::fs::read_to_string(RESERVED).expect("read reserved");
        struct Restore(String);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = std::fs::write(RESERVED, self.0.trim());
            }
        }
        let _restore = Restore(was);
        std::fs::write(RESERVED, "24000").expect("reserve");
        let a = ask(rt, json!({"port": 24000})).unwrap();
        assert_eq!(a["data"]["bind"]["notes"], json!(["reserved"]));
        assert_eq!(a["data"]["bind"]["can_bind"], true);
        assert!(binds(false, None, 24000, true));

        // Suggestions: bindable, outside the ephemeral range, at or above the port asked.
        let _l = listen("127.0.0.1", 20002, false, None);
        let _next = listen("0.0.0.0", 20003, false, None);
        let a = ask(rt, json!({"port": 20002})).unwrap();
        let suggested: Vec<u16> = a["data"]["suggested_ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as u16)
            .collect();
        assert_eq!(suggested, vec![20004, 20005, 20006, 20007, 20008], "{a}");
        for p in &suggested {
            assert!(
                binds(false, None, *p, false) && binds(false, None, *p, true),
                "{p}"
            );
        }
        // UDP: its own range dumps (both families); a bound [::] neighbour is skipped.
        let _u = udp_socket("::", 20011, Some(false));
        let a = ask(rt, json!({"port": 20010, "proto": "udp"})).unwrap();
        assert_eq!(
            a["data"]["suggested_ports"],
            json!([20010, 20012, 20013, 20014, 20015]),
            "{a}"
        );
        let near_ephemeral = ask(rt, json!({"port": lo - 2})).unwrap();
        let hi: u16 = range.split_whitespace().nth(1).unwrap().parse().unwrap();
        let s: Vec<u64> = near_ephemeral["data"]["suggested_ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        assert_eq!(s[..2], [u64::from(lo) - 2, u64::from(lo) - 1]);
        assert!(
            s[2..].iter().all(|&p| p > u64::from(hi)),
            "{s:?} skip {lo}-{hi}"
        );
    });
}

#[test]
fn bad_port_and_address_name_the_parameter() {
    let rt = runtime();
    for (args, param) in [
        (json!({"port": 0}), "port"),
        (json!({"port": 70000}), "port"),
        (json!({"port": "80"}), "port"),
        (json!({"port": 80, "address": "LISTEN"}), "address"),
        (json!({"port": 80, "address": "192.0.2.77"}), "address"),
    ] {
        let err = ask(&rt, args.clone()).expect_err("refused");
        assert!(err.contains(param), "{args}: {err}");
    }
    let err = ask(&rt, json!({"port": 80, "address": "192.0.2.77"})).unwrap_err();
    assert!(err.contains("not an address of this host"), "{err}");
}

/// A remote Linux host through a real sshd (on this machine, so it sees the same sockets and
/// sysctls): its `bind`, read over SSH, says what the local answer says.
#[test]
fn a_remote_linux_host_answers_bind_like_the_local_one() {
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
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let lo: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let run = |port: u16, host: Option<&str>| -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netstat-mcp"));
        cmd.arg("--config")
            .arg(&config)
            .args(["port", &port.to_string(), "--json"]);
        if let Some(h) = host {
            cmd.args(["--host", h]);
        }
        let out = cmd.output().expect("netstat-mcp port");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    for p in [port, lo + 7] {
        let local = run(p, None);
        let remote = run(p, Some("test-sshd"));
        assert_eq!(remote["data"]["host"], "test-sshd", "{remote}");
        let (l, r) = (&local["data"]["bind"], &remote["data"]["bind"]);
        for field in [
            "can_bind",
            "reason",
            "with_reuseaddr",
            "without_reuseaddr",
            "notes",
        ] {
            assert_eq!(
                r[field], l[field],
                "{field} for port {p}: remote {r}, local {l}"
            );
        }
        let suggested = remote["data"]["suggested_ports"]
            .as_array()
            .unwrap()
            .clone();
        assert!(!suggested.is_empty(), "{remote}");
    }
    assert_eq!(
        run(port, Some("test-sshd"))["data"]["bind"]["reason"],
        "listener"
    );
    assert_eq!(
        run(lo + 7, Some("test-sshd"))["data"]["bind"]["notes"],
        json!(["ephemeral_range"])
    );
    drop(listener);
}
