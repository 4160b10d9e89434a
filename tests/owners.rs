//! Who owns a socket, really: owner details (user, command, unit, container), sockets shared
//! by several processes, bound interfaces, and every network namespace — against the real
//! kernel, with namespaces, veth pairs, cgroups and processes the tests create themselves, and
//! compared with `ss -tanpH` run inside each namespace.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use netstat_mcp::model::{Runtime, Socket, TcpState};
use netstat_mcp::process::cgroup;
use netstat_mcp::source::{Backend, LocalSource, Scope, Snapshot, Want};

use serde_json::{Value, json};

use crate::support::mcp_client::Server;
use crate::support::world::{CgroupTree, Hierarchies, Holder, NetNs, unique};

/// The port check's owner with this pid.
fn owner_with_pid(out: &Value, pid: u32) -> &Value {
    out["data"]["owners"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["pid"] == pid))
        .unwrap_or_else(|| panic!("no owner {pid} in {out}"))
}

/// The rows of an MCP answer.
fn rows_of(out: &Value) -> &Vec<Value> {
    out["data"]["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {out}"))
}

fn snapshot(scope: Scope) -> Snapshot {
    LocalSource::new(Backend::Netlink)
        .collect_blocking(Want {
            scope,
            ..Want::all()
        })
        .expect("collect")
}

fn owned_by(sockets: &[Socket], pid: u32) -> Vec<&Socket> {
    sockets
        .iter()
        .filter(|s| s.owners.iter().any(|o| o.pid == pid))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Captured /proc/<pid>/cgroup texts

fn cgroup_fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/cgroup")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cgroup"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("fixture"))
        })
        .collect()
}

/// (fixture, unit, (runtime, short id)).
type Expected = (
    &'static str,
    Option<&'static str>,
    Option<(Runtime, &'static str)>,
);

#[test]
fn cgroup_captures_name_units_and_containers() {
    // (fixture, unit, (runtime, short id)) — the table in tests/fixtures/cgroup/README.md.
    let expected: &[Expected] = &[
        (
            "docker-cgroupfs-hybrid",
            None,
            Some((Runtime::Docker, "2403ccfe427f")),
        ),
        (
            "docker-cgroupfs-v1",
            None,
            Some((Runtime::Docker, "5dace3de0735")),
        ),
        (
            "docker-systemd-v1",
            Some("docker-b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd411b0ee7c26.scope"),
            Some((Runtime::Docker, "b33dda97580e")),
        ),
        (
            "docker-systemd-v2",
            Some("docker-2a55517bd2c9f85d2e1911cb4cd0840a4aa299513af411fb437c0661dd88d11b.scope"),
            Some((Runtime::Docker, "2a55517bd2c9")),
        ),
        ("host-dockerd-service-v1", Some("docker.service"), None),
        ("host-kubelet-system-slice-v1", None, None),
        (
            "host-session-short-hex-v1",
            Some("session-128207.scope"),
            None,
        ),
        (
            "kubernetes-cgroupfs-v1",
            None,
            Some((Runtime::Kubernetes, "d28e0087cf8f")),
        ),
        (
            "kubernetes-containerd-slice-form-v1",
            None,
            Some((Runtime::Kubernetes, "ee4b20e90ac7")),
        ),
        (
            "kubernetes-containerd-systemd-v1",
            Some(
                "cri-containerd-aaefb9d8feed2d453b543f6d928cede7a4dbefa6a0ae7c9b990dd234c56e93b9.scope",
            ),
            Some((Runtime::Kubernetes, "aaefb9d8feed")),
        ),
        (
            "kubernetes-crio-in-docker-node-v2",
            None,
            Some((Runtime::Kubernetes, "0ba8ac17e4e7")),
        ),
        (
            "kubernetes-crio-systemd-v1",
            None,
            Some((Runtime::Kubernetes, "5eed91756358")),
        ),
        (
            "kubernetes-kind-containerd-v2",
            Some(
                "cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
            ),
            Some((Runtime::Kubernetes, "a09bc17f5aa2")),
        ),
        ("lxc-3.1-hybrid", None, Some((Runtime::Lxc, "example"))),
        ("lxc-3.1-monitor-hybrid", None, None),
        ("lxc-4-v2", None, Some((Runtime::Lxc, "focal"))),
        (
            "podman-pod-systemd-v1",
            Some("libpod-3a5d6b2a4ffcb29587ddfb5f5edf7fc7a9ba51e0755d796b81b589ceab858d83.scope"),
            Some((Runtime::Podman, "3a5d6b2a4ffc")),
        ),
        (
            "podman-systemd-v1",
            Some("libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope"),
            Some((Runtime::Podman, "2521e906f0a0")),
        ),
        (
            "podman-user-service-v2",
            Some("user@0.service"),
            Some((Runtime::Podman, "cf21d19260ac")),
        ),
    ];
    let fixtures = cgroup_fixtures();
    let names: Vec<&str> = fixtures.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(
        names, listed,
        "every fixture has an expectation and vice versa"
    );
    for ((name, text), (_, unit, container)) in fixtures.iter().zip(expected) {
        let info = cgroup::parse(text);
        assert_eq!(info.unit.as_deref(), *unit, "{name}: unit");
        assert_eq!(
            info.container.as_ref().map(|c| (c.runtime, &*c.id)),
            *container,
            "{name}: container"
        );
    }
    // Every runtime of the contract is covered, on v1 and on v2.
    for runtime in [
        Runtime::Docker,
        Runtime::Podman,
        Runtime::Kubernetes,
        Runtime::Lxc,
    ] {
        for version in ["v1", "v2"] {
            assert!(
                expected.iter().any(|(n, _, c)| n.ends_with(version)
                    && c.is_some_and(|(r, _)| r == runtime)
                    || n.ends_with("hybrid") && c.is_some_and(|(r, _)| r == runtime)),
                "no {version} fixture for {runtime}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real cgroups with a real listening process moved in

/// A 64-hex container id unique to this run.
fn container_id() -> String {
    let seed = unique("");
    let digits: String = seed.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{digits:0<64}")
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_hexdigit() { c } else { 'a' })
        .collect()
}

/// Hierarchies, path below a slice of our own, expected (runtime, id), expected unit.
type Case = (
    Vec<PathBuf>,
    String,
    Option<(Runtime, String)>,
    Option<String>,
);

#[tokio::test]
async fn processes_in_runtime_named_cgroups_show_their_container_and_unit() {
    let h = Hierarchies::find();
    let Some(unified) = h.unified.clone() else {
        panic!("no cgroup v2 hierarchy is mounted; this test needs one (root)");
    };
    assert!(
        !h.v1.is_empty() || unified == Path::new("/sys/fs/cgroup"),
        "expected v1 name=systemd/pids hierarchies beside the unified one"
    );
    let top = format!("{}.slice", unique("nmt"));
    let docker = container_id();
    let pod = container_id();
    let k8s_v1 = container_id();
    let podman = container_id();
    let lxc_name = unique("web");
    let v2 = vec![unified.clone()];
    let v1 = if h.v1.is_empty() {
        v2.clone()
    } else {
        h.v1.clone()
    };
    let cases: Vec<Case> = vec![
        (
            v2.clone(),
            format!("system.slice/docker-{docker}.scope"),
            Some((Runtime::Docker, docker[..12].to_string())),
            Some(format!("docker-{docker}.scope")),
        ),
        (
            v2.clone(),
            format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_0000_4000_8000_000000000001.slice/cri-containerd-{pod}.scope"
            ),
            Some((Runtime::Kubernetes, pod[..12].to_string())),
            Some(format!("cri-containerd-{pod}.scope")),
        ),
        (
            v1.clone(),
            format!("kubepods/burstable/pod1a2b3c4d-0000-4000-8000-000000000002/{k8s_v1}"),
            Some((Runtime::Kubernetes, k8s_v1[..12].to_string())),
            None,
        ),
        (
            v1.clone(),
            format!("machine.slice/libpod-{podman}.scope"),
            Some((Runtime::Podman, podman[..12].to_string())),
            Some(format!("libpod-{podman}.scope")),
        ),
        (
            v1.clone(),
            format!("lxc.payload.{lxc_name}"),
            Some((Runtime::Lxc, lxc_name.clone())),
            None,
        ),
        (
            v2.clone(),
            "system.slice/foo.service".to_string(),
            None,
            Some("foo.service".to_string()),
        ),
    ];
    // The tree first, holders after: holders stop (on drop) before the groups are removed.
    let mut every = v2.clone();
    every.extend(v1.iter().filter(|h| !v2.contains(h)).cloned());
    let tree = CgroupTree::new(&every, &top);
    let groups: Vec<_> = cases
        .iter()
        .map(|(roots, path, _, _)| tree.group(roots, path))
        .collect();
    let holders: Vec<Holder> = cases
        .iter()
        .map(|_| Holder::start(&[], &["--tcp", "127.0.0.1:0"]))
        .collect();
    for (group, holder) in groups.iter().zip(&holders) {
        group.add(holder.pid);
    }
    let snap = snapshot(Scope::Host);
    let processes = snap
        .processes
        .clone()
        .expect("local snapshots look up processes");
    let pids: BTreeSet<u32> = holders.iter().map(|h| h.pid).collect();
    assert_eq!(
        our_rows_of_pids(&snap.sockets, &pids),
        ss_rows_of_pids(&pids),
        "the holders' rows agree with ss -tanpH"
    );
    for ((_, path, container, unit), holder) in cases.iter().zip(&holders) {
        let port = holder.ports[0];
        let rows = owned_by(&snap.sockets, holder.pid);
        assert!(
            rows.iter()
                .any(|s| s.local_port == port && s.state == Some(TcpState::Listen)),
            "{path}: the listener of pid {} is listed",
            holder.pid
        );
        let info = processes.process(holder.pid).expect("details");
        assert_eq!(
            info.container
                .as_ref()
                .map(|c| (c.runtime, c.id.to_string())),
            *container,
            "{path}: container"
        );
        assert_eq!(info.unit.as_deref(), unit.as_deref(), "{path}: unit");
    }

    // The same through the tools, as a client sees them.
    let server = Server::start().await;
    for ((_, path, container, unit), holder) in cases.iter().zip(&holders) {
        let out = server
            .call(
                "query_network_connections",
                json!({"pid": holder.pid, "proto": "tcp"}),
            )
            .await;
        let row = &rows_of(&out)[0];
        assert_eq!(row["pid"], holder.pid, "{out}");
        match container {
            Some((runtime, id)) => {
                assert_eq!(
                    row["container"],
                    json!({"runtime": runtime.as_str(), "id": id}),
                    "{path}: {row}"
                );
            }
            None => assert!(row.get("container").is_none(), "{path}: {row}"),
        }
        match unit {
            Some(unit) => assert_eq!(row["unit"], *unit, "{path}: {row}"),
            None => assert!(row.get("unit").is_none(), "{path}: {row}"),
        }
        // The summary's listener names the container too.
        let listener = &out["data"]["summary"]["listeners"][0];
        assert_eq!(listener["pid"], holder.pid);
        assert_eq!(listener.get("container"), row.get("container"), "{out}");
    }
    // "Which container holds this port?"
    let (docker_holder, (_, _, docker_container, _)) = (&holders[0], &cases[0]);
    let (_, short) = docker_container.clone().unwrap();
    let out = server
        .call(
            "check_port_occupation",
            json!({"port": docker_holder.ports[0]}),
        )
        .await;
    // (Found by pid: a client socket elsewhere may have the same local port number.)
    let owner = owner_with_pid(&out, docker_holder.pid);
    assert_eq!(owner["container"]["runtime"], "docker");
    assert_eq!(owner["container"]["id"], short);
    let message = out["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "listener (pid {}, docker container {short}; LISTEN 1)",
            docker_holder.pid
        )),
        "{message}"
    );
    server.stop().await;
    drop(holders);
    drop(tree);
}

// ---------------------------------------------------------------------------------------------
// User, uid, command

#[tokio::test]
async fn our_process_and_another_users_show_user_uid_and_command() {
    let mine = crate::support::net::tcp_listener("127.0.0.1");
    let port = mine.local_addr().unwrap().port();
    let other = Holder::start(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["--tcp", "127.0.0.1:0", "--hold-secs", "120"],
    );
    let snap = snapshot(Scope::Host);
    let processes = snap.processes.clone().expect("process lookup");
    let pids = BTreeSet::from([other.pid]);
    assert_eq!(
        our_rows_of_pids(&snap.sockets, &pids),
        ss_rows_of_pids(&pids),
        "the other user's rows agree with ss -tanpH"
    );

    let me = std::process::id();
    assert!(
        owned_by(&snap.sockets, me)
            .iter()
            .any(|s| s.local_port == port)
    );
    let info = processes.process(me).expect("our details");
    let euid = rustix::process::geteuid().as_raw();
    assert_eq!(info.uid, Some(euid));
    let name = passwd_name(euid);
    assert_eq!(info.user.as_deref(), Some(name.as_str()));
    let exe = std::env::args().next().unwrap();
    assert!(
        info.command.as_deref().is_some_and(|c| c.starts_with(&exe)),
        "command {:?} starts with {exe}",
        info.command
    );

    assert!(
        owned_by(&snap.sockets, other.pid)
            .iter()
            .any(|s| s.local_port == other.ports[0]),
        "the other user's listener is listed with its owner"
    );
    let info = processes
        .process(other.pid)
        .expect("details of the setpriv child");
    assert_eq!(info.uid, Some(65534));
    assert_eq!(info.user.as_deref(), Some(passwd_name(65534).as_str()));
    let command = info.command.as_deref().unwrap_or_default();
    assert!(
        command.contains("listener") && command.contains("--hold-secs 120"),
        "{command}"
    );

    // Through the tool: the row of the other user's listener carries its details.
    let server = Server::start().await;
    let out = server
        .call(
            "query_network_connections",
            json!({"pid": other.pid, "proto": "tcp"}),
        )
        .await;
    let row = &rows_of(&out)[0];
    assert_eq!(row["uid"], 65534, "{row}");
    assert_eq!(row["user"], passwd_name(65534));
    assert_eq!(row["command"], command);
    let out = server
        .call("check_port_occupation", json!({"port": port}))
        .await;
    let owner = owner_with_pid(&out, me);
    assert_eq!(owner["pid"], me);
    assert_eq!(owner["uid"], euid);
    assert_eq!(owner["user"], name);
    assert!(owner["command"].as_str().unwrap().starts_with(&exe));
    server.stop().await;
}

/// The name `getent passwd <uid>` gives, else the uid.
fn passwd_name(uid: u32) -> String {
    let out = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .filter(|n| !n.trim().is_empty())
        .map_or_else(|| uid.to_string(), str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Other network namespaces, interfaces, and agreement with ss inside each namespace

#[tokio::test]
async fn a_listener_in_another_namespace_is_listed_only_with_scope_all() {
    let ns = NetNs::new();
    let holder = Holder::start(
        &["ip", "netns", "exec", &ns.name],
        &["--tcp", "127.0.0.1:8080", "--udp", "0.0.0.0:5353"],
    );
    let host = snapshot(Scope::Host);
    assert!(
        owned_by(&host.sockets, holder.pid).is_empty(),
        "invisible in the host namespace"
    );
    assert!(host.sockets.iter().all(|s| s.netns().is_none()));

    let all = snapshot(Scope::All);
    let inode = ns.inode();
    let rows: Vec<&Socket> = all
        .sockets
        .iter()
        .filter(|s| s.netns().is_some_and(|n| n.inode == inode))
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "exactly the two sockets of our namespace: {rows:?}"
    );
    for s in &rows {
        assert_eq!(
            s.netns().and_then(|n| n.name.as_deref()),
            Some(ns.name.as_str())
        );
        assert_eq!(s.owners.len(), 1);
        assert_eq!(s.owners[0].pid, holder.pid);
        assert_eq!(&*s.owners[0].program, "listener");
    }
    assert!(
        rows.iter()
            .any(|s| s.local_port == 8080 && s.state == Some(TcpState::Listen))
    );
    assert!(
        rows.iter()
            .any(|s| s.local_port == 5353 && s.state.is_none())
    );
    let tcp_rows: BTreeSet<Row> = rows
        .iter()
        .filter(|s| s.protocol.transport() == netstat_mcp::model::Transport::Tcp)
        .map(|s| our_row(s))
        .collect();
    assert_eq!(
        tcp_rows,
        ss_rows(&ns.name),
        "agrees with ss inside the namespace"
    );
    // Our own namespace is labelled too, with its inode.
    let own = rustix::fs::stat("/proc/self/ns/net").unwrap().st_ino;
    assert!(all.sockets.iter().all(|s| s.netns().is_some()));
    assert!(
        all.sockets
            .iter()
            .any(|s| s.netns().is_some_and(|n| n.inode == own))
    );
    // A port check asks the kernel for one port in every namespace.
    let port = LocalSource::new(Backend::Netlink)
        .collect_blocking(Want {
            scope: Scope::All,
            local_port: Some(8080),
            udp: false,
            ..Want::all()
        })
        .expect("port");
    assert!(
        port.sockets
            .iter()
            .any(|s| s.owners.iter().any(|o| o.pid == holder.pid)
                && s.netns().is_some_and(|n| n.inode == inode)),
        "{:?}",
        port.sockets
    );
    assert!(port.sockets.iter().all(|s| s.local_port == 8080));

    // Both tools, as a client calls them.
    let server = Server::start().await;
    let host = server
        .call(
            "query_network_connections",
            json!({"local_port": 8080, "limit": 0}),
        )
        .await;
    assert!(
        rows_of(&host)
            .iter()
            .all(|r| r["pid"] != holder.pid && r.get("netns").is_none()),
        "invisible with scope host: {host}"
    );
    let all = server
        .call(
            "query_network_connections",
            json!({"local_port": 8080, "limit": 0, "scope": "all"}),
        )
        .await;
    let ours: Vec<&Value> = rows_of(&all)
        .iter()
        .filter(|r| r["netns"]["inode"] == inode)
        .collect();
    assert_eq!(ours.len(), 1, "{all}");
    assert_eq!(ours[0]["pid"], holder.pid);
    assert_eq!(ours[0]["program"], "listener");
    assert_eq!(ours[0]["state"], "LISTEN");
    assert_eq!(ours[0]["netns"]["name"], ns.name.as_str());
    assert_eq!(all["data"]["filter"]["scope"], "all");
    let by_netns = all["data"]["summary"]["by_netns"]
        .as_array()
        .expect("by_netns");
    assert!(
        by_netns
            .iter()
            .any(|n| n["inode"] == inode && n["name"] == ns.name.as_str() && n["count"] == 1),
        "{by_netns:?}"
    );
    assert!(
        all["message"]
            .as_str()
            .unwrap()
            .contains("in every network namespace"),
        "{all}"
    );
    assert!(
        host["data"]["summary"].get("by_netns").is_none(),
        "by_netns only with scope all"
    );

    let port_all = server
        .call(
            "check_port_occupation",
            json!({"port": 8080, "scope": "all"}),
        )
        .await;
    let owner = port_all["data"]["owners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["pid"] == holder.pid)
        .unwrap_or_else(|| panic!("the holder in {port_all}"));
    assert_eq!(owner["netns"]["name"], ns.name.as_str());
    let message = port_all["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "listener (pid {}, netns {}; LISTEN 1)",
            holder.pid, ns.name
        )),
        "{message}"
    );
    let port_host = server
        .call("check_port_occupation", json!({"port": 8080}))
        .await;
    assert!(
        port_host["data"]["owners"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["pid"] != holder.pid),
        "{port_host}"
    );
    server.stop().await;
}

#[tokio::test]
async fn scope_is_checked_like_every_input() {
    let server = Server::start().await;
    let out = server
        .call("query_network_connections", json!({"scope": "everything"}))
        .await;
    assert_eq!(out["success"], false);
    assert_eq!(
        out["message"],
        "Invalid scope: 'everything'. Parameter 'scope' must be one of: host, all."
    );
    let out = server
        .call("check_port_occupation", json!({"port": 80, "scope": 3}))
        .await;
    assert_eq!(out["success"], false);
    assert!(
        out["message"].as_str().unwrap().contains("'scope'"),
        "{out}"
    );
    let out = server
        .call(
            "check_port_occupation",
            json!({"port": 80, "scope": "all", "host": "web-1"}),
        )
        .await;
    assert_eq!(out["success"], false);
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid scope: 'all' with a remote host"),
        "{out}"
    );
    // Case-insensitive, as the other enums.
    let out = server
        .call(
            "query_network_connections",
            json!({"scope": "ALL", "limit": 1}),
        )
        .await;
    assert_eq!(out["success"], true, "{out}");
    assert_eq!(out["data"]["filter"]["scope"], "all");
    server.stop().await;
}

#[tokio::test]
async fn link_local_and_device_bound_sockets_keep_their_interface() {
    // In a namespace of our own: a veth pair, a link-local address on one end (no duplicate
    // address detection, so it is usable at once), a listener on that address, and a
    // listener bound to the other end with SO_BINDTODEVICE.
    let ns = NetNs::new();
    let (a, b) = (unique("va"), unique("vb"));
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    ns.ip(&["addr", "add", "fe80::a:1/64", "dev", &a, "nodad"]);
    ns.ip(&["link", "set", &a, "up"]);
    ns.ip(&["link", "set", &b, "up"]);
    let scoped = format!("[fe80::a:1%{a}]:7001");
    let holder = Holder::start(
        &["ip", "netns", "exec", &ns.name],
        &[
            "--tcp",
            &scoped,
            "--device",
            &b,
            "--tcp",
            "0.0.0.0:7002",
            "--udp",
            "0.0.0.0:7003",
        ],
    );
    let all = snapshot(Scope::All);
    let inode = ns.inode();
    let ours: Vec<&Socket> = all
        .sockets
        .iter()
        .filter(|s| s.netns().is_some_and(|n| n.inode == inode))
        .collect();
    let by_port = |p: u16| {
        ours.iter()
            .find(|s| s.local_port == p)
            .unwrap_or_else(|| panic!("port {p} in {ours:?}"))
    };
    assert_eq!(by_port(7001).interface(), Some(a.as_str()));
    assert_eq!(by_port(7001).local_ip.to_string(), "fe80::a:1");
    assert_eq!(by_port(7002).interface(), Some(b.as_str()));
    assert_eq!(by_port(7003).interface(), Some(b.as_str()));
    assert!(
        ours.iter()
            .all(|s| s.owners.iter().any(|o| o.pid == holder.pid))
    );
    let tcp_rows: BTreeSet<Row> = ours
        .iter()
        .filter(|s| s.protocol.transport() == netstat_mcp::model::Transport::Tcp)
        .map(|s| our_row(s))
        .collect();
    assert_eq!(
        tcp_rows,
        ss_rows(&ns.name),
        "addresses with %interface agree with ss inside the namespace"
    );

    // In our own namespace with scope=host: a socket bound to `lo`.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind_device(Some(b"lo")).expect("SO_BINDTODEVICE (root)");
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(1).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    let host = snapshot(Scope::Host);
    let row = host
        .sockets
        .iter()
        .find(|x| x.local_port == port && x.state == Some(TcpState::Listen))
        .expect("our lo-bound listener");
    assert_eq!(row.interface(), Some("lo"));
    assert!(row.netns().is_none(), "scope=host rows carry no namespace");

    let server = Server::start().await;
    let out = server
        .call(
            "query_network_connections",
            json!({"local_port": port, "proto": "tcp"}),
        )
        .await;
    let ours = rows_of(&out)
        .iter()
        .find(|r| r["state"] == "LISTEN" && r["pid"] == std::process::id())
        .unwrap_or_else(|| panic!("our lo-bound listener in {out}"));
    assert_eq!(ours["interface"], "lo", "{out}");
    let out = server
        .call(
            "query_network_connections",
            json!({"pid": holder.pid, "scope": "all", "limit": 0}),
        )
        .await;
    let by_port = |p: u16| {
        rows_of(&out)
            .iter()
            .find(|r| r["local_port"] == p)
            .unwrap_or_else(|| panic!("{p} in {out}"))
            .clone()
    };
    assert_eq!(by_port(7001)["interface"], a.as_str());
    assert_eq!(by_port(7001)["local_ip"], "fe80::a:1");
    assert_eq!(by_port(7002)["interface"], b.as_str());
    assert_eq!(by_port(7003)["interface"], b.as_str());
    let listeners = out["data"]["summary"]["listeners"].as_array().unwrap();
    assert!(
        listeners
            .iter()
            .any(|l| l["local_port"] == 7001 && l["interface"] == a.as_str()),
        "{listeners:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn each_namespace_agrees_with_ss_inside_it() {
    let ns = NetNs::new();
    let (a, b) = (unique("va"), unique("vb"));
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    ns.ip(&["addr", "add", "fe80::b:1/64", "dev", &a, "nodad"]);
    ns.ip(&["addr", "add", "10.200.0.1/24", "dev", &a]);
    ns.ip(&["link", "set", &a, "up"]);
    ns.ip(&["link", "set", &b, "up"]);
    let scoped = format!("[fe80::b:1%{a}]:9001");
    let holder = Holder::start(
        &["ip", "netns", "exec", &ns.name],
        &[
            "--tcp",
            "10.200.0.1:9000",
            "--tcp",
            &scoped,
            "--tcp",
            "[::]:9002",
            "--device",
            &b,
            "--tcp",
            "0.0.0.0:9003",
            "--share",
        ],
    );
    assert_ne!(holder.sharer, 0);
    let all = snapshot(Scope::All);
    let inode = ns.inode();
    let ours: BTreeSet<Row> = all
        .sockets
        .iter()
        .filter(|s| s.netns().is_some_and(|n| n.inode == inode))
        .filter(|s| s.protocol.transport() == netstat_mcp::model::Transport::Tcp)
        .map(our_row)
        .collect();
    let theirs = ss_rows(&ns.name);
    assert_eq!(ours.len(), 4, "{ours:?}");
    assert_eq!(
        ours, theirs,
        "rows differ from `ip netns exec {} ss -tanpH`",
        ns.name
    );
    // The shared socket lists both holders, the lowest pid first (as ss sorts them here too).
    let shared = all
        .sockets
        .iter()
        .find(|s| s.netns().is_some_and(|n| n.inode == inode) && s.local_port == 9000)
        .unwrap();
    let pids: BTreeSet<u32> = shared.owners.iter().map(|o| o.pid).collect();
    assert_eq!(pids, BTreeSet::from([holder.pid, holder.sharer]));

    // In the listing too (not only in port checks): `owners` names both, lowest pid first,
    // each with its details; pid/program stay the first.
    let server = Server::start().await;
    let out = server
        .call(
            "query_network_connections",
            json!({"local_port": 9000, "scope": "all", "limit": 0}),
        )
        .await;
    let row = rows_of(&out)
        .iter()
        .find(|r| r["netns"]["inode"] == inode)
        .unwrap_or_else(|| panic!("{out}"));
    let owners = row["owners"].as_array().expect("owners on a shared socket");
    let mut expected = [holder.pid, holder.sharer];
    expected.sort();
    let listed: Vec<u64> = owners.iter().map(|o| o["pid"].as_u64().unwrap()).collect();
    assert_eq!(listed, expected.map(u64::from));
    assert_eq!(row["pid"], expected[0]);
    let sleep = owners.iter().find(|o| o["pid"] == holder.sharer).unwrap();
    assert_eq!(sleep["program"], "sleep");
    assert!(sleep["command"].as_str().unwrap().starts_with("sleep "));
    // A socket held by one process has no owners list.
    let out = server
        .call(
            "query_network_connections",
            json!({"local_port": 9002, "scope": "all", "limit": 0}),
        )
        .await;
    let single = rows_of(&out)
        .iter()
        .find(|r| r["netns"]["inode"] == inode)
        .unwrap();
    assert!(single.get("owners").is_none(), "{single}");
    server.stop().await;
}

/// (protocol, local with `%iface`, foreign, state, owner pids).
type Row = (String, String, String, String, BTreeSet<u32>);

fn our_row(s: &Socket) -> Row {
    let local = match (s.local_ip, s.interface()) {
        (ip, Some(i)) => format!("{ip}%{i}:{}", s.local_port),
        (ip, None) => format!("{ip}:{}", s.local_port),
    };
    let foreign = match s.foreign.port {
        Some(p) => format!("{}:{p}", s.foreign.ip),
        None => format!("{}:*", s.foreign.ip),
    };
    (
        s.protocol.as_str().to_string(),
        local,
        foreign,
        s.state
            .map_or("-".into(), |st| st.netstat_name().to_string()),
        s.owners.iter().map(|o| o.pid).collect(),
    )
}

/// `ip netns exec <ns> ss -tanpH`, read independently of the project's parsers.
fn ss_rows(ns: &str) -> BTreeSet<Row> {
    ss_rows_with(Command::new("ip").args(["netns", "exec", ns, "ss", "-tanpH"]))
}

/// `ss -tanpH` in our own namespace, only the rows some of `pids` hold (the rest of the
/// machine keeps changing between two snapshots).
fn ss_rows_of_pids(pids: &BTreeSet<u32>) -> BTreeSet<Row> {
    ss_rows_with(Command::new("ss").arg("-tanpH"))
        .into_iter()
        .filter(|r| !r.4.is_disjoint(pids))
        .collect()
}

/// Our TCP rows that some of `pids` hold.
fn our_rows_of_pids(sockets: &[Socket], pids: &BTreeSet<u32>) -> BTreeSet<Row> {
    sockets
        .iter()
        .filter(|s| s.protocol.transport() == netstat_mcp::model::Transport::Tcp)
        .filter(|s| s.owners.iter().any(|o| pids.contains(&o.pid)))
        .map(our_row)
        .collect()
}

fn ss_rows_with(cmd: &mut Command) -> BTreeSet<Row> {
    let out = cmd.env("LC_ALL", "C").output().expect("run ss (iproute2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let v6 = f[3].starts_with('[') || f[3].starts_with("*:");
        let state = TcpState::parse(f[0]).map_or(f[0].to_string(), |s| s.netstat_name().into());
        let pids: BTreeSet<u32> = line
            .split("pid=")
            .skip(1)
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        rows.insert((
            if v6 { "tcp6" } else { "tcp" }.to_string(),
            ss_endpoint(f[3], v6),
            ss_endpoint(f[4], v6),
            state,
            pids,
        ));
    }
    rows
}

/// `[fe80::b:1]%va:9001` → `fe80::b:1%va:9001`; `0.0.0.0%vb:9003` stays; `*:9002` (the
/// dual-stack wildcard) → `:::9002`; `[::]:*` → `:::*`.
fn ss_endpoint(e: &str, v6: bool) -> String {
    let e = e.replace(['[', ']'], "");
    let (host, port) = e.rsplit_once(':').unwrap_or((&e, ""));
    let host = if host == "*" {
        if v6 { "::" } else { "0.0.0.0" }.to_string()
    } else {
        host.to_string()
    };
    format!("{host}:{port}")
}
