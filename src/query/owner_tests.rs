//! Unit tests of owner details, shared sockets, interfaces and namespaces in the answers, over
//! fixture snapshots with a fake process table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::answer::json_len;
use super::input::PortQuery;
use super::schema::output_schema;
use super::*;
use crate::model::{Container, Netns, Place, ProcessInfo, Protocol, Runtime, Socket, TcpState};
use crate::source::{OwnerCoverage, ProcessLookup, Snapshot, Target};

/// A process table that knows a few pids and counts what it is asked.
#[derive(Debug, Default)]
struct FakeTable {
    infos: HashMap<u32, Arc<ProcessInfo>>,
    asked: Mutex<Vec<u32>>,
    calls: AtomicUsize,
}

impl ProcessLookup for FakeTable {
    fn process(&self, pid: u32) -> Option<Arc<ProcessInfo>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(pid);
        }
        self.infos.get(&pid).cloned()
    }
}

fn info(user: &str, uid: u32, command: &str) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        uid: Some(uid),
        user: Some(Arc::from(user)),
        command: Some(Arc::from(command)),
        unit: None,
        container: None,
    })
}

fn table(entries: &[(u32, Arc<ProcessInfo>)]) -> Arc<FakeTable> {
    Arc::new(FakeTable {
        infos: entries.iter().cloned().collect(),
        ..FakeTable::default()
    })
}

/// A TCP socket on 127.0.0.1 (the query tests' `sock`), its inode unique for every port pair.
fn sock(lport: u16, fport: Option<u16>, state: TcpState, owners: &[(u32, &str)]) -> Socket {
    let mut s = super::tests::sock(Protocol::Tcp, lport, fport, Some(state), owners);
    s.inode = Some(u64::from(lport) * 100_000 + u64::from(fport.unwrap_or(0)));
    s
}

fn local() -> Target {
    Target {
        host: "localhost".into(),
        label: "local host".into(),
        local: true,
        source: Arc::new(crate::source::LocalSource::default()),
    }
}

fn snapshot(sockets: Vec<Socket>, processes: Arc<FakeTable>) -> Snapshot {
    Snapshot {
        sockets,
        owners: OwnerCoverage::Complete,
        notes: vec![],
        processes: Some(processes),
    }
}

fn conn(args: Value) -> ConnectionsQuery {
    let map = args.as_object().cloned().unwrap_or_default();
    ConnectionsArgs::from_json(&map)
        .unwrap()
        .validate(Some(DEFAULT_ROWS))
        .unwrap()
}

fn port(args: Value) -> PortQuery {
    let map = args.as_object().cloned().unwrap_or_default();
    PortArgs::from_json(&map)
        .unwrap()
        .validate(Some(DEFAULT_OCCUPATIONS))
        .unwrap()
}

/// Validates a serialized answer against the tool's output schema.
fn assert_valid<T: schemars::JsonSchema>(value: &Value) {
    let schema = Value::Object(output_schema::<T>());
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{value}");
}

#[test]
fn rows_carry_details_and_shared_sockets_list_every_owner() {
    let mut web = (*info("www-data", 33, "nginx: worker process")).clone();
    web.unit = Some(Arc::from("nginx.service"));
    web.container = Some(Container {
        runtime: Runtime::Docker,
        id: Arc::from("3f4e5d6c7b8a"),
    });
    let processes = table(&[
        (90, info("root", 0, "nginx: master process /usr/sbin/nginx")),
        (91, Arc::new(web)),
    ]);
    let sockets = vec![
        sock(80, None, TcpState::Listen, &[(91, "nginx"), (90, "nginx")]),
        sock(80, Some(5000), TcpState::Established, &[(91, "nginx")]),
        sock(81, None, TcpState::TimeWait, &[]),
    ];
    let env = conn(json!({})).answer(&local(), snapshot(sockets, processes.clone()));
    let value = serde_json::to_value(&env).unwrap();
    assert_valid::<Envelope<ConnectionsData>>(&value);
    let rows = value["data"]["connections"].as_array().unwrap();

    let shared = &rows[0];
    assert_eq!(shared["state"], "LISTEN");
    assert_eq!(
        shared["pid"], 90,
        "pid/program stay the first (lowest) owner"
    );
    assert_eq!(shared["user"], "root");
    assert_eq!(shared["uid"], 0);
    assert_eq!(shared["command"], "nginx: master process /usr/sbin/nginx");
    assert!(shared.get("unit").is_none() && shared.get("container").is_none());
    let owners = shared["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[0]["pid"], 90);
    assert_eq!(owners[1]["pid"], 91);
    assert_eq!(owners[1]["user"], "www-data");
    assert_eq!(owners[1]["unit"], "nginx.service");
    assert_eq!(
        owners[1]["container"],
        json!({"runtime": "docker", "id": "3f4e5d6c7b8a"})
    );

    let single = &rows[1];
    assert_eq!(single["pid"], 91);
    assert!(single.get("owners").is_none(), "one owner: no list");
    assert_eq!(single["container"]["id"], "3f4e5d6c7b8a");

    let orphan = &rows[2];
    assert_eq!(orphan["pid"], Value::Null);
    for field in ["user", "uid", "command", "unit", "container", "owners"] {
        assert!(orphan.get(field).is_none(), "{field} on {orphan}");
    }
    // Each process was read once, however many rows it owns.
    let mut asked = processes.asked.lock().unwrap().clone();
    asked.sort();
    asked.dedup();
    assert_eq!(asked, [90, 91]);
}

#[test]
fn details_are_read_only_for_the_processes_of_the_rows_returned() {
    // 3,000 sockets of 300 processes; a page of 5 rows reads at most the 5 owners shown and
    // those of the summarised listeners, never all 300.
    let mut sockets = Vec::new();
    for i in 0..3000u32 {
        sockets.push(sock(
            40000 + (i % 20000) as u16,
            Some(443),
            TcpState::Established,
            &[(1000 + i % 300, "worker")],
        ));
    }
    sockets.push(sock(443, None, TcpState::Listen, &[(7, "server")]));
    let processes = table(&[(7, info("root", 0, "server --port 443"))]);
    let env = conn(json!({"limit": 5})).answer(&local(), snapshot(sockets, processes.clone()));
    assert_eq!(env.data.as_ref().unwrap().connections.len(), 5);
    let calls = processes.calls.load(Ordering::Relaxed);
    assert!(calls <= 6, "{calls} lookups for 5 rows and 1 listener");
    let listeners = &env.data.unwrap().summary.listeners;
    assert_eq!(listeners[0].pid, Some(7));
}

#[test]
fn port_owners_carry_details_and_many_long_commands_stay_within_the_budget() {
    let long = "x".repeat(255) + "…";
    let entries: Vec<(u32, Arc<ProcessInfo>)> = (0..100u32)
        .map(|i| (2000 + i, info("someone", 1000 + i, &long)))
        .collect();
    let processes = table(&entries);
    let sockets: Vec<Socket> = (0..100u32)
        .map(|i| {
            sock(
                5432,
                Some(30000 + i as u16),
                TcpState::Established,
                &[(2000 + i, "postgres")],
            )
        })
        .collect();
    let env = port(json!({"port": 5432})).answer(&local(), snapshot(sockets, processes));
    let size = json_len(&env);
    assert!(size <= ANSWER_BUDGET, "{size}");
    let value = serde_json::to_value(&env).unwrap();
    assert_valid::<Envelope<PortData>>(&value);
    let owners = value["data"]["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 100, "every owner is named");
    assert!(owners.iter().all(|o| o["user"] == "someone"));
    assert!(owners.iter().all(|o| o["uid"].is_u64()));
}

#[test]
fn a_socket_shared_by_hundreds_of_processes_still_leaves_rows_within_the_budget() {
    let long = "/usr/sbin/apache2 -k start -DFOREGROUND ".repeat(5);
    let workers: Vec<(u32, &str)> = (0..300u32).map(|i| (3000 + i, "apache2")).collect();
    let entries: Vec<(u32, Arc<ProcessInfo>)> = workers
        .iter()
        .map(|(pid, _)| (*pid, info("www-data", 33, &long)))
        .collect();
    let processes = table(&entries);
    let mut sockets = vec![sock(80, None, TcpState::Listen, &workers)];
    for i in 0..10u16 {
        sockets.push(sock(
            80,
            Some(50000 + i),
            TcpState::Established,
            &[(3000 + u32::from(i), "apache2")],
        ));
    }
    let env = conn(json!({})).answer(&local(), snapshot(sockets, processes));
    let size = json_len(&env);
    assert!(size <= ANSWER_BUDGET, "{size}");
    let data = env.data.as_ref().unwrap();
    assert!(
        !data.connections.is_empty(),
        "rows are kept, not dropped to none"
    );
    let listener = &data.connections[0];
    assert_eq!(
        listener.owners.all().len(),
        300,
        "every sharer is still listed"
    );
    assert!(
        listener
            .owners
            .details()
            .is_some_and(|d| d.command.is_some())
    );
    assert!(
        listener.owners.all()[1..]
            .iter()
            .all(|o| o.details == OwnerDetails::default()),
        "sharers past the first keep pid and program"
    );
}

#[test]
fn every_namespace_labels_rows_counts_them_and_pages_through_twins() {
    let ns = |inode: u64, name: Option<&str>| {
        Some(Arc::new(Place {
            netns: Some(Netns {
                inode,
                name: name.map(Arc::from),
            }),
            interface: None,
        }))
    };
    let mut sockets = Vec::new();
    // The same TIME_WAIT 4-tuple (no inode) in three namespaces: told apart by the namespace.
    for (inode, name) in [
        (11, Some("web")),
        (12, None),
        (13, Some("docker:3f4e5d6c7b8a")),
    ] {
        let mut s = sock(8080, Some(40000), TcpState::TimeWait, &[]);
        s.inode = None;
        s.place = ns(inode, name);
        sockets.push(s);
        let mut l = sock(8080, None, TcpState::Listen, &[(100 + inode as u32, "app")]);
        l.place = ns(inode, name);
        sockets.push(l);
    }
    let processes = table(&[]);
    let env = conn(json!({"scope": "all"})).answer(&local(), snapshot(sockets.clone(), processes));
    let value = serde_json::to_value(&env).unwrap();
    assert_valid::<Envelope<ConnectionsData>>(&value);
    let by_netns = value["data"]["summary"]["by_netns"].as_array().unwrap();
    assert_eq!(by_netns.len(), 3);
    assert!(by_netns.iter().all(|n| n["count"] == 2));
    assert_eq!(by_netns[0]["name"], "web");
    assert_eq!(by_netns[1]["name"], Value::Null);
    let rows = value["data"]["connections"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["netns"]["inode"].is_u64()));
    let listeners = value["data"]["summary"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 3);
    assert!(listeners.iter().all(|l| l["netns"]["inode"].is_u64()));
    assert!(
        env.message
            .contains("every network namespace (3 with matching sockets)"),
        "{}",
        env.message
    );

    // Pages of one row still yield all six, each once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let mut args = json!({"scope": "all", "limit": 1});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let env = conn(args).answer(&local(), snapshot(sockets.clone(), table(&[])));
        let data = env.data.unwrap();
        seen.extend(
            data.connections
                .iter()
                .map(|r| (r.state, r.place.netns().map(|n| n.inode))),
        );
        match data.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 6);

    // The port check names each holder with its namespace.
    let env =
        port(json!({"port": 8080, "scope": "all"})).answer(&local(), snapshot(sockets, table(&[])));
    assert!(
        env.message.contains("app (pid 111, netns web; LISTEN 1)")
            && env.message.contains("app (pid 112, netns 12; LISTEN 1)")
            && env
                .message
                .contains("app (pid 113, netns docker:3f4e5d6c7b8a; LISTEN 1)")
            && env.message.contains("(every network namespace)"),
        "{}",
        env.message
    );
}

#[test]
fn host_scope_answers_carry_no_namespace_fields() {
    let env = conn(json!({})).answer(
        &local(),
        snapshot(
            vec![sock(22, None, TcpState::Listen, &[(1, "sshd")])],
            table(&[]),
        ),
    );
    let value = serde_json::to_value(&env).unwrap();
    assert!(value["data"]["summary"].get("by_netns").is_none());
    let row = &value["data"]["connections"][0];
    assert!(row.get("netns").is_none() && row.get("interface").is_none());
    assert_eq!(value["data"]["filter"]["scope"], "host");
    assert!(
        env.message
            .starts_with("Successfully obtained local TCP and UDP connections, total 1"),
        "{}",
        env.message
    );
}
