//! Unit tests of the query layer over fixture snapshots: decoding and validation, messages,
//! summaries, pages and the answer budget.

use std::sync::Arc;

use serde_json::{Value, json};

use super::input::PortQuery;
use super::output::ConnectionRow;
use super::schema::{decode, input_schema};
use super::*;
use crate::error::InputError;
use crate::model::{Endpoint, Owner, Protocol, Socket, TcpState, Transport};
use crate::source::{OwnerCoverage, Snapshot, Target};

fn conn(args: Value) -> Result<ConnectionsQuery, InputError> {
    let schema = input_schema::<ConnectionsArgs>();
    decode::<ConnectionsArgs>(&schema, args.as_object().unwrap())?.validate(Some(DEFAULT_ROWS))
}

fn port(args: Value) -> Result<PortQuery, InputError> {
    let schema = input_schema::<PortArgs>();
    decode::<PortArgs>(&schema, args.as_object().unwrap())?.validate(Some(DEFAULT_OCCUPATIONS))
}

/// Every bad input names the parameter and the allowed values.
#[test]
fn bad_inputs_name_the_parameter_and_allowed_values() {
    let cases: Vec<(Result<(), InputError>, &str, &str)> = vec![
        (
            port(json!({"port": 0})).map(|_| ()),
            "'port'",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": 65536})).map(|_| ()),
            "'port'",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": "abc"})).map(|_| ()),
            "'port'",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": "80"})).map(|_| ()),
            "\"80\" (a string)",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": 80.5})).map(|_| ()),
            "Invalid port: 80.5",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": -1})).map(|_| ()),
            "'port'",
            "between 1 and 65535",
        ),
        (
            port(json!({})).map(|_| ()),
            "'port' is required",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": true})).map(|_| ()),
            "'port'",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": 80, "proto": "icmp"})).map(|_| ()),
            "'proto'",
            "tcp, udp",
        ),
        (
            port(json!({"port": 80, "proto": "all"})).map(|_| ()),
            "'proto'",
            "tcp, udp",
        ),
        (
            port(json!({"port": 80, "ssh_port": 70000})).map(|_| ()),
            "'ssh_port'",
            "between 1 and 65535",
        ),
        (
            port(json!({"port": 80, "limit": -1})).map(|_| ()),
            "'limit'",
            "0 means no limit",
        ),
        (
            port(json!({"port": 80, "prot": "tcp"})).map(|_| ()),
            "unknown parameter 'prot'",
            "port, proto, host, ssh_port, limit",
        ),
        (
            conn(json!({"proto": "icmp"})).map(|_| ()),
            "'proto'",
            "tcp, udp, all",
        ),
        (
            conn(json!({"proto": 6})).map(|_| ()),
            "'proto'",
            "tcp, udp, all",
        ),
        (
            conn(json!({"state": "LISTENN"})).map(|_| ()),
            "'state'",
            "ESTABLISHED",
        ),
        (
            conn(json!({"state": "ESTAB", "proto": "udp"})).map(|_| ()),
            "'state'",
            "TCP only",
        ),
        (
            conn(json!({"port": 0})).map(|_| ()),
            "'port'",
            "between 1 and 65535",
        ),
        (
            conn(json!({"port": 22})).map(|_| ()),
            "'port'",
            "use local_port",
        ),
        (
            conn(json!({"ssh_port": 22})).map(|_| ()),
            "'ssh_port'",
            "use local_port",
        ),
        (
            conn(json!({"host": "web-1", "port": 22, "ssh_port": 2222})).map(|_| ()),
            "'ssh_port'",
            "give one of them",
        ),
        (
            conn(json!({"local_port": 65536})).map(|_| ()),
            "'local_port'",
            "between 1 and 65535",
        ),
        (
            conn(json!({"remote_port": "x"})).map(|_| ()),
            "'remote_port'",
            "between 1 and 65535",
        ),
        (
            conn(json!({"pid": 0})).map(|_| ()),
            "'pid'",
            "positive integer",
        ),
        (
            conn(json!({"limit": -5})).map(|_| ()),
            "'limit'",
            "0 means no limit",
        ),
        (
            conn(json!({"limit": 1.5})).map(|_| ()),
            "'limit'",
            "0 means no limit",
        ),
        (
            conn(json!({"host": 5})).map(|_| ()),
            "'host'",
            "configured remote host",
        ),
        (
            conn(json!({"cursor": "nonsense"})).map(|_| ()),
            "'cursor'",
            "next_cursor",
        ),
        (
            conn(json!({"cursor": 5})).map(|_| ()),
            "'cursor'",
            "a string",
        ),
    ];
    for (i, (result, needle1, needle2)) in cases.into_iter().enumerate() {
        let err = result.expect_err(&format!("case {i} must be rejected"));
        let msg = err.to_string();
        assert!(
            msg.contains(needle1) && msg.contains(needle2),
            "case {i}: {msg}"
        );
        assert!(msg.starts_with("Invalid "), "case {i}: {msg}");
    }
}

#[test]
fn good_inputs_and_spellings() {
    for (spelling, state) in [
        ("ESTAB", TcpState::Established),
        ("established", TcpState::Established),
        ("SYN-SENT", TcpState::SynSent),
        ("syn_recv", TcpState::SynRecv),
        ("FIN-WAIT-1", TcpState::FinWait1),
        ("fin_wait2", TcpState::FinWait2),
        ("TIME-WAIT", TcpState::TimeWait),
        ("UNCONN", TcpState::Close),
        ("close-wait", TcpState::CloseWait),
        ("LAST_ACK", TcpState::LastAck),
        ("LISTENING", TcpState::Listen),
        ("Closing", TcpState::Closing),
    ] {
        let q = conn(json!({ "state": spelling })).unwrap();
        assert_eq!(q.state, Some(state), "{spelling}");
    }
    let q = conn(json!({"limit": 0, "host": "LOCALHOST", "program": " Nginx "})).unwrap();
    assert_eq!(q.limit, None, "0 means no limit");
    assert!(!q.default_limit);
    assert_eq!(q.host, HostSpec::Local);
    assert_eq!(q.program.as_deref(), Some("nginx"));
    let q = conn(json!({})).unwrap();
    assert_eq!((q.limit, q.default_limit), (Some(DEFAULT_ROWS), true));
    assert_eq!(conn(json!({"host": "::1"})).unwrap().host, HostSpec::Local);
    let q = conn(json!({"host": "web-1", "port": 2222.0})).unwrap();
    assert_eq!(
        (q.host, q.ssh_port),
        (HostSpec::Remote("web-1".into()), Some(2222))
    );
    let q = conn(json!({"host": "web-1", "ssh_port": 2222, "port": 2222})).unwrap();
    assert_eq!(q.ssh_port, Some(2222), "the synonyms may agree");
    // LISTEN is the one state UDP has: bound, unconnected sockets.
    let q = conn(json!({"state": "listen", "proto": "udp"})).unwrap();
    assert!(q.want().udp && !q.want().tcp);
    let p = port(json!({"port": 443, "proto": "UDP", "host": null})).unwrap();
    assert_eq!(
        (p.port, p.transport, p.host),
        (443, Transport::Udp, HostSpec::Local)
    );
    assert_eq!(
        (p.limit, p.default_limit),
        (Some(DEFAULT_OCCUPATIONS), true)
    );
}

fn ip(protocol: Protocol, v4: &str, v6: &str) -> std::net::IpAddr {
    if protocol.is_ipv6() {
        v6.parse().unwrap()
    } else {
        v4.parse().unwrap()
    }
}

pub(super) fn sock(
    proto: Protocol,
    lport: u16,
    fport: Option<u16>,
    state: Option<TcpState>,
    owners: &[(u32, &str)],
) -> Socket {
    let mut s = Socket::new(
        proto,
        ip(proto, "127.0.0.1", "::1"),
        lport,
        Endpoint {
            ip: ip(proto, "127.0.0.1", "::1"),
            port: fport,
        },
    );
    s.state = state;
    s.inode = Some(u64::from(lport) * 1000 + u64::from(fport.unwrap_or(0)));
    s.owners = owners
        .iter()
        .map(|(pid, p)| Owner {
            pid: *pid,
            program: Arc::from(*p),
        })
        .collect();
    s
}

fn target(local: bool) -> Target {
    Target {
        host: if local {
            "localhost".into()
        } else {
            "web-1".into()
        },
        label: if local {
            "local host".into()
        } else {
            "remote host web-1 (192.168.1.100)".into()
        },
        local,
        source: Arc::new(crate::source::LocalSource::default()),
    }
}

fn snapshot(sockets: Vec<Socket>) -> Snapshot {
    Snapshot {
        sockets,
        owners: OwnerCoverage::Complete,
        notes: vec![],
        processes: None,
    }
}

/// Rows are built from the snapshot's sockets in place (`into_iter().map().collect()` reuses
/// the allocation when the row is no larger and equally aligned), which keeps the peak memory
/// of a 100k-socket listing at one copy.
#[test]
fn rows_fit_in_the_sockets_they_are_built_from() {
    use std::mem::{align_of, size_of};
    assert!(size_of::<ConnectionRow>() <= size_of::<Socket>());
    assert_eq!(align_of::<ConnectionRow>(), align_of::<Socket>());
}

fn fixture() -> Vec<Socket> {
    use Protocol::*;
    vec![
        sock(Tcp, 80, None, Some(TcpState::Listen), &[(812, "nginx")]),
        sock(
            Tcp,
            443,
            None,
            Some(TcpState::Listen),
            &[(91, "nginx"), (90, "nginx")],
        ),
        sock(
            Tcp,
            5000,
            Some(80),
            Some(TcpState::Established),
            &[(7, "curl")],
        ),
        sock(
            Tcp,
            80,
            Some(5000),
            Some(TcpState::Established),
            &[(812, "nginx")],
        ),
        sock(Udp, 53, None, None, &[]),
    ]
}

#[test]
fn messages() {
    let q = conn(json!({"proto": "tcp"})).unwrap();
    let env = q.answer(&target(true), snapshot(fixture()));
    assert_eq!(
        env.message,
        "Successfully obtained local TCP connections, total 4"
    );
    let env = q.answer(&target(false), snapshot(fixture()));
    assert_eq!(
        env.message,
        "Successfully obtained TCP connections on remote host web-1 (192.168.1.100), total 4"
    );
    let p = |n: u16| port(json!({ "port": n })).unwrap();
    assert_eq!(
        p(80).answer(&target(true), snapshot(fixture())).message,
        "Port 80/TCP on local host is occupied by: nginx (pid 812; LISTEN 1, ESTABLISHED 1)"
    );
    let env = p(443).answer(&target(false), snapshot(fixture()));
    assert_eq!(
        env.message,
        "Port 443/TCP on remote host web-1 (192.168.1.100) is occupied by: nginx (pid 90; LISTEN 1), nginx (pid 91; LISTEN 1)"
    );
    let data = env.data.unwrap();
    assert_eq!(data.occupation_count, 1, "one socket");
    assert_eq!(data.owner_count, 2, "shared by two processes");
    assert_eq!(data.occupations[0].pid, Some(90), "the lowest pid first");
    // Port 5000 is only a foreign port of nothing; port 80 as a foreign port never counts.
    assert_eq!(
        p(8080).answer(&target(true), snapshot(fixture())).message,
        "Port 8080/TCP on local host is not occupied"
    );
    let partial = Snapshot {
        owners: OwnerCoverage::Partial {
            unreadable_processes: 3,
        },
        ..snapshot(fixture())
    };
    let env = conn(json!({"proto": "udp"}))
        .unwrap()
        .answer(&target(true), partial);
    assert!(env.message.contains("CAP_SYS_PTRACE"), "{}", env.message);
    assert!(env.message.contains("sudo"), "{}", env.message);
}

#[test]
fn listen_includes_bound_udp_and_other_states_leave_udp_out() {
    let env = conn(json!({"state": "LISTEN"}))
        .unwrap()
        .answer(&target(true), snapshot(fixture()));
    let data = env.data.unwrap();
    let ports: Vec<(&str, u16)> = data
        .connections
        .iter()
        .map(|r| (r.protocol, r.local_port))
        .collect();
    assert_eq!(ports, [("tcp", 80), ("tcp", 443), ("udp", 53)]);
    assert!(
        env.message.contains("bound, unconnected UDP sockets"),
        "{}",
        env.message
    );
    let env = conn(json!({"state": "ESTABLISHED"}))
        .unwrap()
        .answer(&target(true), snapshot(fixture()));
    assert_eq!(env.data.unwrap().connection_count, 2);
    assert!(
        env.message.contains("UDP sockets are left out"),
        "{}",
        env.message
    );
}

#[test]
fn port_check_counts_owners_per_state_and_kernel_held_sockets() {
    use Protocol::*;
    let mut sockets = vec![sock(
        Tcp,
        5432,
        None,
        Some(TcpState::Listen),
        &[(812, "postgres")],
    )];
    for i in 0..4211u16 {
        sockets.push(sock(
            Tcp,
            5432,
            Some(10000 + i),
            Some(TcpState::Established),
            &[(812, "postgres")],
        ));
    }
    for i in 0..3u16 {
        let mut s = sock(Tcp, 5432, Some(20000 + i), Some(TcpState::TimeWait), &[]);
        s.inode = None;
        sockets.push(s);
    }
    let env = port(json!({"port": 5432}))
        .unwrap()
        .answer(&target(true), snapshot(sockets));
    assert_eq!(
        env.message,
        "Port 5432/TCP on local host is occupied by: postgres (pid 812; LISTEN 1, ESTABLISHED 4,211), no process for the rest (TIME_WAIT 3; held by the kernel). Showing 20 of its 4,215 sockets (listening first); owners lists every process"
    );
    let data = env.data.unwrap();
    assert_eq!(data.occupation_count, 4215);
    assert_eq!(data.kernel_held, 3);
    assert_eq!(data.occupations.len(), 20);
    assert!(data.truncated);
    assert_eq!(data.occupations[0].state, Some("LISTEN"), "listening first");
    assert_eq!(data.owners[0].states["ESTABLISHED"], 4211);
    assert!(super::answer::json_len(&data) < ANSWER_BUDGET);
}

#[test]
fn many_owners_are_all_named_within_the_budget() {
    let sockets: Vec<Socket> = (0..150u32)
        .map(|i| {
            let mut s = sock(
                Protocol::Tcp,
                8080,
                Some(1000 + i as u16),
                Some(TcpState::Established),
                &[],
            );
            s.owners.push(Owner {
                pid: 1000 + i,
                program: Arc::from("a-worker-process"),
            });
            s
        })
        .collect();
    let env = port(json!({"port": 8080}))
        .unwrap()
        .answer(&target(true), snapshot(sockets));
    let size = super::answer::json_len(&env);
    assert!(size <= ANSWER_BUDGET, "{size}");
    let data = env.data.unwrap();
    assert_eq!(data.owner_count, 150);
    assert!(data.owners.len() >= 100, "{}", data.owners.len());
    assert!(
        env.message.contains("and 140 more processes"),
        "{}",
        env.message
    );
}

#[test]
fn default_listing_fits_the_budget_and_pages_cover_everything() {
    use Protocol::*;
    let mut sockets = Vec::new();
    for i in 0..3000u16 {
        sockets.push(sock(
            if i % 2 == 0 { Tcp } else { Tcp6 },
            30000 + i,
            Some(443),
            Some(TcpState::Established),
            &[(4000 + u32::from(i % 37), "a-rather-long-program-name")],
        ));
    }
    let env = conn(json!({}))
        .unwrap()
        .answer(&target(true), snapshot(sockets.clone()));
    assert!(super::answer::json_len(&env) <= ANSWER_BUDGET);
    let data = env.data.as_ref().unwrap();
    assert_eq!(data.connection_count, 3000);
    assert!(data.truncated && data.next_cursor.is_some());
    assert_eq!(data.summary.by_state["ESTABLISHED"], 3000);
    assert_eq!(data.summary.top_programs.len(), 10);
    // Page through everything with a small limit: every row exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..200 {
        let mut args = json!({"limit": 37});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let env = conn(args)
            .unwrap()
            .answer(&target(true), snapshot(sockets.clone()));
        let data = env.data.unwrap();
        assert!(data.connections.len() <= 37);
        seen.extend(data.connections.iter().map(|r| (r.protocol, r.local_port)));
        match data.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut expected: Vec<(&str, u16)> = sockets
        .iter()
        .map(|s| (s.protocol.as_str(), s.local_port))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn an_explicit_limit_is_honoured_past_the_budget() {
    let sockets: Vec<Socket> = (0..2000u16)
        .map(|i| {
            sock(
                Protocol::Tcp,
                20000 + i,
                Some(80),
                Some(TcpState::Established),
                &[(1, "x")],
            )
        })
        .collect();
    let env = conn(json!({"limit": 2000}))
        .unwrap()
        .answer(&target(true), snapshot(sockets));
    assert_eq!(env.data.unwrap().connections.len(), 2000);
}

#[test]
fn success_and_message_come_first_in_the_json() {
    let env = conn(json!({}))
        .unwrap()
        .answer(&target(true), snapshot(fixture()));
    let text = serde_json::to_value(&env).unwrap().to_string();
    assert!(text.starts_with("{\"success\":true,\"message\":"), "{text}");
    let data = text.find("\"summary\"").unwrap();
    assert!(
        data < text.find("\"connections\"").unwrap(),
        "summary before rows"
    );
}

/// The inputs that flatten [`Filters`] cannot use serde's `deny_unknown_fields` (serde does
/// not combine it with `flatten`): the schema decoder is what refuses an unknown name, so each
/// schema must still say `additionalProperties: false` and list the filters as its own.
#[test]
fn flattened_filters_stay_in_the_schema_and_unknown_names_are_still_refused() {
    let schemas = [
        ("connections", input_schema::<ConnectionsArgs>()),
        ("watch", input_schema::<crate::query::WatchArgs>()),
        ("recent", input_schema::<crate::query::RecentArgs>()),
        ("health", input_schema::<crate::query::HealthArgs>()),
        // traffic's input (in `watch`, a layer up) has the same check in its own tests.
    ];
    for (tool, schema) in &schemas {
        assert_eq!(schema["additionalProperties"], false, "{tool}");
        let props = schema["properties"].as_object().unwrap();
        for filter in ["local_port", "remote_port", "pid", "program"] {
            assert!(props[filter]["description"].is_string(), "{tool}.{filter}");
        }
        let unknown = json!({"local_port": 80, "prot": "tcp"});
        let e = decode::<serde_json::Value>(schema, unknown.as_object().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("unknown parameter 'prot'"),
            "{tool}: {e}"
        );
    }
    let args: ConnectionsArgs = decode(
        &schemas[0].1,
        json!({"local_port": 80, "program": "nginx"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args.filters.local_port, Some(80));
    assert_eq!(args.filters.program.as_deref(), Some("nginx"));
}

/// The named choices (`proto`, `scope`, the port tools' `proto`) read any case and say every
/// name, in the table's order, when refused: the sentences clients have always seen.
#[test]
fn choices_parse_any_case_and_list_every_name() {
    let full = |r: Result<(), InputError>| r.unwrap_err().to_string();
    assert_eq!(
        full(conn(json!({"proto": "icmp"})).map(|_| ())),
        "Invalid proto: 'icmp'. Parameter 'proto' must be one of: tcp, udp, all."
    );
    assert_eq!(
        full(port(json!({"port": 80, "proto": "all"})).map(|_| ())),
        "Invalid proto: 'all'. Parameter 'proto' must be one of: tcp, udp."
    );
    assert_eq!(
        full(conn(json!({"scope": " Every "})).map(|_| ())),
        "Invalid scope: ' Every '. Parameter 'scope' must be one of: host, all."
    );
    assert_eq!(
        conn(json!({"proto": " TCP "})).unwrap().proto.as_str(),
        "tcp"
    );
    assert!(
        conn(json!({"scope": "  "})).is_ok(),
        "blank scope is the host's"
    );
    assert_eq!(
        port(json!({"port": 53, "proto": "Udp"})).unwrap().transport,
        Transport::Udp
    );
}
