//! The local engine against the real kernel: sockets this test opens are found with the right
//! protocol, addresses, state, and this process as owner; results agree with `ss`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;

use netstat_mcp::model::{Protocol, Socket, TcpState};
use netstat_mcp::query::{ConnectionsArgs, Filters, PortArgs, Service};
use netstat_mcp::source::{Backend, LocalSource, NoRemotes, Want};

use crate::support::net::{in_empty_netns, our_program, tcp_listener, udp_socket};

fn snapshot(backend: Backend) -> Vec<Socket> {
    LocalSource::new(backend)
        .collect_blocking(Want::all())
        .expect("collect")
        .sockets
}

fn find(sockets: &[Socket], protocol: Protocol, local: SocketAddr) -> Vec<&Socket> {
    sockets
        .iter()
        .filter(|s| {
            s.protocol == protocol && s.local_ip == local.ip() && s.local_port == local.port()
        })
        .collect()
}

fn owned_by_us(s: &Socket) -> bool {
    let pid = std::process::id();
    s.owners
        .iter()
        .any(|o| o.pid == pid && *o.program == *our_program())
}

fn service() -> Service {
    Service::new(Arc::new(LocalSource::default()), Arc::new(NoRemotes))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn check_listener_pair_and_udp(backend: Backend) {
    let v4 = tcp_listener("127.0.0.1");
    let v6 = tcp_listener("::1");
    let client = TcpStream::connect(v4.local_addr().unwrap()).expect("connect");
    let (server_side, _) = v4.accept().expect("accept");
    let (udp, udp_port) = udp_socket();
    let udp_connected = UdpSocket::bind("127.0.0.1:0").expect("bind udp2");
    udp_connected
        .connect(("127.0.0.1", udp_port))
        .expect("udp connect");

    // /proc/net/tcp is rendered a page at a time and each read resumes by position, so
    // sockets other tests open and close meanwhile can shift a row past a page boundary and out
    // of one snapshot (netlink has no such gap). Take a few snapshots until all of ours are in
    // one; the assertions below then check that snapshot in full.
    let ours = [
        (Protocol::Tcp, v4.local_addr().unwrap()),
        (Protocol::Tcp6, v6.local_addr().unwrap()),
        (Protocol::Tcp, client.local_addr().unwrap()),
        (Protocol::Udp, udp.local_addr().unwrap()),
        (Protocol::Udp, udp_connected.local_addr().unwrap()),
    ];
    let mut sockets = snapshot(backend);
    for _ in 0..5 {
        if ours.iter().all(|(p, a)| !find(&sockets, *p, *a).is_empty()) {
            break;
        }
        sockets = snapshot(backend);
    }

    let l4 = find(&sockets, Protocol::Tcp, v4.local_addr().unwrap());
    let listen4: Vec<_> = l4
        .iter()
        .filter(|s| s.state == Some(TcpState::Listen))
        .collect();
    assert_eq!(listen4.len(), 1, "v4 listener: {l4:?}");
    assert_eq!(listen4[0].foreign.port, None);
    assert_eq!(listen4[0].foreign.ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(
        owned_by_us(listen4[0]),
        "owner of v4 listener: {:?}",
        listen4[0].owners
    );

    let l6 = find(&sockets, Protocol::Tcp6, v6.local_addr().unwrap());
    assert_eq!(l6.len(), 1, "v6 listener: {l6:?}");
    assert_eq!(l6[0].state, Some(TcpState::Listen));
    assert_eq!(l6[0].local_ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(owned_by_us(l6[0]));

    // Both ends of the connected pair, ESTABLISHED, each pointing at the other. A connection is
    // its 4-tuple: the client's local port may also appear in an older TIME_WAIT socket to
    // another destination, so match the foreign end too.
    let listener_port = v4.local_addr().unwrap().port();
    let c: Vec<_> = find(&sockets, Protocol::Tcp, client.local_addr().unwrap())
        .into_iter()
        .filter(|s| s.foreign.port == Some(listener_port))
        .collect();
    assert_eq!(c.len(), 1, "client end: {c:?}");
    assert_eq!(c[0].state, Some(TcpState::Established));
    assert_eq!(c[0].foreign.ip, v4.local_addr().unwrap().ip());
    assert_eq!(c[0].foreign.port, Some(v4.local_addr().unwrap().port()));
    assert!(owned_by_us(c[0]));
    let s_end: Vec<_> = l4
        .iter()
        .filter(|s| {
            s.state == Some(TcpState::Established)
                && s.foreign.port == Some(client.local_addr().unwrap().port())
        })
        .collect();
    assert_eq!(s_end.len(), 1, "server end: {l4:?}");
    assert!(owned_by_us(s_end[0]));
    let _ = &server_side;

    let u = find(&sockets, Protocol::Udp, udp.local_addr().unwrap());
    assert_eq!(u.len(), 1, "udp: {u:?}");
    assert_eq!(u[0].state, None, "an unconnected UDP socket has no state");
    assert_eq!(u[0].foreign.port, None);
    assert!(owned_by_us(u[0]));
    let uc = find(&sockets, Protocol::Udp, udp_connected.local_addr().unwrap());
    assert_eq!(uc.len(), 1);
    assert_eq!(
        uc[0].state,
        Some(TcpState::Established),
        "a connected UDP socket is ESTABLISHED"
    );
    assert_eq!(uc[0].foreign.port, Some(udp_port));
}

/// The local source other systems use (parsed ss/netstat/lsof output), kept tested here.
#[test]
fn external_backend_finds_our_listeners_pair_and_udp_with_our_pid() {
    check_listener_pair_and_udp(Backend::External);
}

#[test]
fn netlink_finds_our_listeners_pair_and_udp_with_our_pid() {
    check_listener_pair_and_udp(Backend::Netlink);
}

#[test]
fn procfs_finds_our_listeners_pair_and_udp_with_our_pid() {
    check_listener_pair_and_udp(Backend::Procfs);
}

#[test]
fn kernel_filters_by_state_and_port() {
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port();
    let _c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _a = l.accept().expect("accept");
    let source = LocalSource::new(Backend::Netlink);
    let want = Want {
        states: netstat_mcp::model::StateSet::only(TcpState::Listen),
        udp: false,
        ..Want::all()
    };
    let listening = source.collect_blocking(want).expect("collect").sockets;
    assert!(listening.iter().all(|s| s.state == Some(TcpState::Listen)));
    assert!(listening.iter().any(|s| s.local_port == port));

    let by_port = Want {
        local_port: Some(port),
        ..Want::all()
    };
    let on_port = source.collect_blocking(by_port).expect("collect").sockets;
    // The listener and the accepted end; not the client end, whose foreign port is ours.
    assert_eq!(on_port.len(), 2, "{on_port:?}");
    assert!(on_port.iter().all(|s| s.local_port == port));
}

#[test]
fn port_check_names_our_process_and_free_port_is_free() {
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port();
    let rt = runtime();
    let service = service();
    let q = PortArgs {
        port: Some(i64::from(port)),
        ..Default::default()
    }
    .validate(None)
    .unwrap();
    let env = rt.block_on(service.port(&q)).expect("port check");
    let data = env.data.expect("data");
    assert!(data.is_occupied);
    assert_eq!(data.check_port, port);
    assert_eq!(data.proto, "tcp");
    assert!(
        data.occupations
            .iter()
            .any(|o| o.pid == Some(std::process::id()))
    );
    assert_eq!(
        env.message,
        format!(
            "Port {port}/TCP on local host is occupied by: {} (pid {}; LISTEN 1)",
            our_program(),
            std::process::id()
        )
    );

    // The same port in a network namespace of our own, where nothing holds it (on the host,
    // no port is reliably free while other processes run).
    let free = in_empty_netns("the free-port check", || {
        let rt = runtime();
        rt.block_on(service.port(&q)).expect("port check")
    });
    if let Some(env) = free {
        assert!(!env.data.unwrap().is_occupied);
        assert_eq!(
            env.message,
            format!("Port {port}/TCP on local host is not occupied")
        );
    }

    // A foreign port never counts: connect out to the listener; the client's foreign port is
    // `port`, yet a UDP check or a check of the client's foreign side finds only the listener.
    let q = PortArgs {
        port: Some(i64::from(port)),
        proto: Some("udp".into()),
        ..Default::default()
    }
    .validate(None)
    .unwrap();
    assert!(
        !rt.block_on(service.port(&q))
            .unwrap()
            .data
            .unwrap()
            .is_occupied
    );
}

#[test]
fn a_socket_shared_by_two_processes_lists_both() {
    // A child inherits the listening socket across fork+exec (fd 3 via the shell's `exec 3<&0`
    // is not possible for a socket, so pass it as the child's stdin).
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port();
    let fd = std::os::fd::OwnedFd::from(l.try_clone().expect("clone"));
    let mut child = Command::new("sleep")
        .arg("30")
        .stdin(std::process::Stdio::from(fd))
        .spawn()
        .expect("spawn sleep");
    let rt = runtime();
    let q = PortArgs {
        port: Some(i64::from(port)),
        ..Default::default()
    }
    .validate(None)
    .unwrap();
    let env = rt.block_on(service().port(&q)).expect("port");
    let _ = child.kill();
    let _ = child.wait();
    let data = env.data.unwrap();
    assert_eq!(data.occupation_count, 1, "one socket, two holders");
    let pids: BTreeSet<u32> = data.owners.iter().map(|o| o.pid).collect();
    assert!(pids.contains(&std::process::id()), "{pids:?}");
    assert!(
        pids.contains(&child.id()),
        "the child sharing the socket: {pids:?}; {}",
        env.message
    );
    assert!(env.message.contains("sleep (pid"), "{}", env.message);
}

#[test]
fn filters_and_limit() {
    let l = tcp_listener("127.0.0.1");
    let port = l.local_addr().unwrap().port();
    let _clients: Vec<_> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let _accepted: Vec<_> = (0..3).map(|_| l.accept().unwrap()).collect();
    let rt = runtime();
    let service = service();
    let run = |args: ConnectionsArgs| {
        let q = args.validate(None).expect("valid");
        rt.block_on(service.connections(&q)).expect("query")
    };
    let by_local = run(ConnectionsArgs {
        filters: Filters {
            local_port: Some(port.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    let data = by_local.data.unwrap();
    assert_eq!(
        data.connection_count, 4,
        "listener + 3 accepted: {:?}",
        data.connections
    );
    assert!(data.connections.iter().all(|c| c.local_port == port));

    let by_remote = run(ConnectionsArgs {
        filters: Filters {
            remote_port: Some(port.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(
        by_remote.data.unwrap().connection_count,
        3,
        "the 3 client ends"
    );

    let listen = run(ConnectionsArgs {
        filters: Filters {
            local_port: Some(port.into()),
            ..Default::default()
        },
        state: Some("listening".into()),
        ..Default::default()
    });
    let d = listen.data.unwrap();
    assert_eq!(d.connection_count, 1);
    assert_eq!(d.connections[0].state, Some("LISTEN"));
    assert!(
        listen
            .message
            .contains("bound, unconnected UDP sockets count as listening"),
        "{}",
        listen.message
    );
    let established = run(ConnectionsArgs {
        filters: Filters {
            local_port: Some(port.into()),
            ..Default::default()
        },
        state: Some("ESTAB".into()),
        ..Default::default()
    });
    assert_eq!(established.data.unwrap().connection_count, 3);
    assert!(
        established.message.contains("UDP sockets are left out"),
        "{}",
        established.message
    );

    let mine = run(ConnectionsArgs {
        filters: Filters {
            pid: Some(std::process::id().into()),
            program: Some(our_program().to_uppercase()),
            remote_port: Some(port.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(mine.data.unwrap().connection_count, 3);

    let limited = run(ConnectionsArgs {
        filters: Filters {
            local_port: Some(port.into()),
            ..Default::default()
        },
        limit: Some(2),
        ..Default::default()
    });
    let d = limited.data.unwrap();
    assert_eq!(
        (d.connection_count, d.connections.len(), d.truncated),
        (4, 2, true)
    );
    assert!(
        limited.message.contains("Showing the first 2"),
        "{}",
        limited.message
    );

    let nobody = run(ConnectionsArgs {
        filters: Filters {
            pid: Some(i64::from(u32::MAX)),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(nobody.data.unwrap().connection_count, 0);
}

/// One row as both tools see it: (protocol, local, foreign, state, pid).
type Row = (String, String, String, String, Option<u32>);

/// Reads `ss -tanpH` / `ss -uanpH` lines (independently of the project's own parsers).
fn ss_rows(args: &str, udp: bool) -> BTreeSet<Row> {
    let out = Command::new("ss")
        .arg(args)
        .env("LC_ALL", "C")
        .output()
        .expect("run ss");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let (local, peer) = (f[3], f[4]);
        let v6 = local.starts_with('[');
        let proto = match (udp, v6) {
            (false, false) => "tcp",
            (false, true) => "tcp6",
            (true, false) => "udp",
            (true, true) => "udp6",
        };
        let state = if udp {
            if f[0] == "ESTAB" {
                "ESTABLISHED".to_string()
            } else {
                "-".to_string()
            }
        } else {
            TcpState::parse(f[0]).map_or_else(|| f[0].to_string(), |s| s.netstat_name().to_string())
        };
        let pid = line
            .split("pid=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok());
        rows.insert((proto.to_string(), norm(local), norm(peer), state, pid));
    }
    rows
}

/// `[::1]:80` → `::1:80`, `0.0.0.0:*` stays, `*:*` → `*:*`.
fn norm(endpoint: &str) -> String {
    let e = endpoint.replace(['[', ']'], "");
    // ss prints `%lo`-style scope suffixes; we do not carry them.
    match e.split_once('%') {
        Some((ip, rest)) => format!("{ip}{}", &rest[rest.find(':').unwrap_or(rest.len())..]),
        None => e,
    }
}

fn our_rows(sockets: &[Socket], udp: bool) -> BTreeSet<Row> {
    sockets
        .iter()
        .filter(|s| (s.protocol.transport() == netstat_mcp::model::Transport::Udp) == udp)
        .map(|s| {
            let foreign = match s.foreign.port {
                Some(p) => format!("{}:{p}", s.foreign.ip),
                None => format!("{}:*", s.foreign.ip),
            };
            (
                s.protocol.as_str().to_string(),
                format!("{}:{}", s.local_ip, s.local_port),
                foreign,
                s.state
                    .map_or_else(|| "-".to_string(), |st| st.netstat_name().to_string()),
                s.owners.iter().map(|o| o.pid).min(),
            )
        })
        .collect()
}

#[test]
fn agrees_with_ss_on_hundreds_of_connections() {
    if Command::new("ss").arg("-V").output().is_err() {
        panic!("ss (iproute2) is required for this test; install iproute2");
    }
    let l4 = tcp_listener("127.0.0.1");
    let l6 = tcp_listener("::1");
    let mut held = Vec::new();
    for i in 0..150 {
        let l = if i % 3 == 0 { &l6 } else { &l4 };
        held.push(TcpStream::connect(l.local_addr().unwrap()).expect("connect"));
        held.push(l.accept().expect("accept").0);
    }
    let udps: Vec<_> = (0..50).map(|_| udp_socket().0).collect();
    let ports: BTreeSet<u16> = [
        l4.local_addr().unwrap().port(),
        l6.local_addr().unwrap().port(),
    ]
    .into_iter()
    .chain(udps.iter().map(|u| u.local_addr().unwrap().port()))
    .collect();
    // Compare only rows touching this test's ports: the rest of the machine keeps changing
    // between the two snapshots.
    let ours = |rows: BTreeSet<Row>| -> BTreeSet<Row> {
        rows.into_iter()
            .filter(|r| {
                let lp =
                    r.1.rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                let fp =
                    r.2.rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                ports.contains(&lp) || ports.contains(&fp)
            })
            .collect()
    };
    let sockets = snapshot(Backend::Netlink);
    let tcp_ss = ours(ss_rows("-tanpH", false));
    let udp_ss = ours(ss_rows("-uanpH", true));
    let tcp_us = ours(our_rows(&sockets, false));
    let udp_us = ours(our_rows(&sockets, true));
    // TIME_WAIT rows left by earlier connections to a reused port number are in both sets.
    let live = tcp_us.iter().filter(|r| r.3 != "TIME_WAIT").count();
    assert_eq!(live, 2 + 300, "listeners + 150 pairs");
    assert_eq!(udp_us.len(), 50);
    assert_eq!(tcp_us, tcp_ss, "TCP rows differ from ss -tanpH");
    assert_eq!(udp_us, udp_ss, "UDP rows differ from ss -uanpH");
}

#[test]
fn one_legacy_tcp_dump_returns_both_families_and_filters_by_port() {
    let v4 = tcp_listener("127.0.0.1");
    let v6 = tcp_listener("::1");
    let mut diag = netstat_mcp::source::netlink::Diag::open().expect("netlink");
    let mut all = Vec::new();
    diag.dump_tcp_any_family(netstat_mcp::model::StateSet::ALL, None, &mut all)
        .expect("TCPDIAG_GETSOCK dump");
    assert_eq!(find(&all, Protocol::Tcp, v4.local_addr().unwrap()).len(), 1);
    assert_eq!(
        find(&all, Protocol::Tcp6, v6.local_addr().unwrap()).len(),
        1
    );
    let mut one = Vec::new();
    let port = v6.local_addr().unwrap().port();
    diag.dump_tcp_any_family(netstat_mcp::model::StateSet::ALL, Some(port), &mut one)
        .expect("filtered dump");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!((one[0].protocol, one[0].local_port), (Protocol::Tcp6, port));
}
