//! Parsers over real captured listings (`tests/fixtures/`, see its README), the format
//! detector, netstat/proc rendering round trips, never-panic properties, and the local fallback
//! run against a listener this test opens itself.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netstat_mcp::model::{Endpoint, Owner, Protocol, Socket, TcpState, Transport};
use netstat_mcp::parse::external::{self, FallbackCommand};
use netstat_mcp::parse::render::Shown;
use netstat_mcp::parse::{
    self, ByteOrder, Format, Parsed, RenderOptions, proc_net, render_netstat, render_proc_net,
    render_proc_net_all,
};
use proptest::prelude::*;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(rel: &str) -> String {
    let path = fixtures_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every fixture file: (folder, file name, path).
fn all_fixtures() -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("fixture folder readable")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            out.push((
                dir.file_name().to_string_lossy().into_owned(),
                f.file_name().to_string_lossy().into_owned(),
                f.path(),
            ));
        }
    }
    out
}

fn format_of_folder(folder: &str) -> Format {
    Format::ALL
        .into_iter()
        .find(|f| f.as_str() == folder)
        .unwrap_or_else(|| panic!("fixture folder `{folder}` is not a format name"))
}

/// A compact, stable text form of a parse result for snapshots.
fn describe(parsed: &Parsed) -> String {
    let mut out = String::new();
    for s in &parsed.sockets {
        let foreign_port = s.foreign.port.map_or("*".to_owned(), |p| p.to_string());
        let _ = write!(
            out,
            "{:<4} {}:{} -> {}:{} {} q={}/{}",
            s.protocol,
            s.local_ip,
            s.local_port,
            s.foreign.ip,
            foreign_port,
            s.state.map_or("-", |st| st.netstat_name()),
            s.recv_queue,
            s.send_queue
        );
        if let Some(uid) = s.uid {
            let _ = write!(out, " uid={uid}");
        }
        if let Some(inode) = s.inode {
            let _ = write!(out, " inode={inode}");
        }
        for o in &s.owners {
            let _ = write!(out, " [{} {:?}]", o.pid, &*o.program);
        }
        out.push('\n');
    }
    for k in &parsed.skipped {
        let _ = writeln!(
            out,
            "SKIPPED line {}: {} | {}",
            k.line_no,
            k.reason,
            k.line.trim_end()
        );
    }
    for n in &parsed.notes {
        let _ = writeln!(out, "NOTE: {n}");
    }
    out
}

#[test]
fn every_fixture_is_detected_parsed_and_snapshotted() {
    let fixtures = all_fixtures();
    assert!(
        fixtures.len() >= 28,
        "only {} fixtures found",
        fixtures.len()
    );
    for (folder, file, path) in fixtures {
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let expected = format_of_folder(&folder);
        let detected = parse::detect(&text);
        assert_eq!(detected, Some(expected), "detect() on {folder}/{file}");
        let parsed = parse::parse(expected, &text);
        assert!(
            !parsed.sockets.is_empty(),
            "{folder}/{file}: no sockets read"
        );
        // Nothing silently dropped: every non-blank line is a socket, a skipped line, or a
        // header/banner/detail line; sockets + skipped never exceed the lines.
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(
            parsed.sockets.len() + parsed.skipped.len() <= lines,
            "{folder}/{file}"
        );
        let name = format!("{folder}__{}", file.trim_end_matches(".txt"));
        insta::assert_snapshot!(name, describe(&parsed));
    }
}

/// Local fixtures list no line as unreadable except the ones we expect.
#[test]
fn debian12_captures_skip_only_what_they_must() {
    for (folder, file, path) in all_fixtures() {
        if !file.starts_with("debian12") && !file.starts_with("byteswapped") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let parsed = parse::parse(format_of_folder(&folder), &text);
        if file == "debian12-tunap.txt" || file == "debian12-tuln.txt" {
            // The two link-local addresses netstat cut without -W.
            assert_eq!(parsed.skipped.len(), 2, "{:?}", parsed.skipped);
            for k in &parsed.skipped {
                assert!(k.line.contains("fe80::fc:ff:fe00::"), "{k:?}");
                assert!(k.reason.contains("-W"), "{k:?}");
            }
        } else {
            assert!(
                parsed.skipped.is_empty(),
                "{folder}/{file}: {:?}",
                parsed.skipped
            );
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn find(parsed: &Parsed, protocol: Protocol, port: u16, state: Option<TcpState>) -> &Socket {
    parsed
        .sockets
        .iter()
        .find(|s| s.protocol == protocol && s.local_port == port && s.state == state)
        .unwrap_or_else(|| panic!("no {protocol} socket on port {port} in state {state:?}"))
}

#[test]
fn net_tools_wide_reads_owners_mapped_and_link_local() {
    let p = parse::parse(Format::NetTools, &fixture("net-tools/debian12-tunapW.txt"));
    let l = find(&p, Protocol::Tcp, 18080, Some(TcpState::Listen));
    assert_eq!(l.local_ip, ip("127.0.0.1"));
    assert_eq!(
        l.owners.as_slice(),
        [Owner {
            pid: 9054,
            program: "pysrv: master".into()
        }]
    );
    let est = p
        .sockets
        .iter()
        .find(|s| {
            s.protocol == Protocol::Tcp6
                && s.local_port == 18081
                && s.state == Some(TcpState::Established)
        })
        .expect("accepted v4-mapped connection");
    assert_eq!(est.local_ip, ip("::ffff:127.0.0.1"));
    let ll = find(&p, Protocol::Tcp6, 18443, Some(TcpState::Listen));
    assert_eq!(ll.local_ip, ip("fe80::fc:ff:fe00:1"));
    let tw = find(&p, Protocol::Tcp, 18080, Some(TcpState::TimeWait));
    assert!(tw.owners.is_empty());
    let q = find(&p, Protocol::Tcp6, 18082, Some(TcpState::Established));
    assert_eq!(q.recv_queue, 1000);
    let udp = find(&p, Protocol::Udp6, 46151, Some(TcpState::Established));
    assert_eq!(
        udp.foreign,
        Endpoint {
            ip: ip("::1"),
            port: Some(15354)
        }
    );
}

#[test]
fn net_tools_nonroot_notes_missing_owners() {
    let p = parse::parse(
        Format::NetTools,
        &fixture("net-tools/debian12-nonroot-tunapW.txt"),
    );
    assert!(p.sockets.iter().all(|s| s.owners.is_empty()));
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert!(p.notes[0].contains("root"));
}

#[test]
fn net_tools_public_names_with_spaces() {
    let p = parse::parse(
        Format::NetTools,
        &fixture("net-tools/ubuntu18.04-lnp-space.txt"),
    );
    let ssh = find(&p, Protocol::Tcp, 22, Some(TcpState::Listen));
    assert_eq!(ssh.owners[0].pid, 600);
    assert_eq!(&*ssh.owners[0].program, "sshd: /usr/sbin");
    // raw6 and the UNIX section are reported, not dropped.
    assert!(p.skipped.iter().any(|k| k.line.starts_with("raw6")));
    assert!(p.skipped.iter().any(|k| k.line.starts_with("unix")));
}

#[test]
fn busybox_prints_ipv6_under_tcp_and_never_cuts() {
    let p = parse::parse(Format::Busybox, &fixture("busybox/debian12-1.35-tuna.txt"));
    let ll = find(&p, Protocol::Tcp6, 18443, Some(TcpState::Listen));
    assert_eq!(ll.local_ip, ip("fe80::fc:ff:fe00:1"));
    let mapped = find(&p, Protocol::Tcp6, 18081, Some(TcpState::Established));
    assert_eq!(mapped.local_ip, ip("::ffff:127.0.0.1"));
    assert_eq!(find(&p, Protocol::Udp6, 15354, None).recv_queue, 832);
}

#[test]
fn ss_reads_several_owners_scopes_and_wildcards() {
    let p = parse::parse(Format::Ss, &fixture("ss/debian12-6.1-tunap.txt"));
    let shared = find(&p, Protocol::Tcp, 18090, Some(TcpState::Listen));
    let names: Vec<(&str, u32)> = shared.owners.iter().map(|o| (&*o.program, o.pid)).collect();
    assert_eq!(names, vec![("my srv: worker", 9056), ("python3.11", 9054)]);
    let dual = find(&p, Protocol::Tcp6, 18081, Some(TcpState::Listen));
    assert_eq!(dual.local_ip, ip("::"));
    assert_eq!(
        dual.foreign,
        Endpoint {
            ip: ip("::"),
            port: None
        }
    );
    let lo = find(&p, Protocol::Udp, 15355, None);
    assert_eq!(lo.local_ip, ip("0.0.0.0"));
    let ll = find(&p, Protocol::Udp6, 15356, None);
    assert_eq!(ll.local_ip, ip("fe80::fc:ff:fe00:1"));

    let h = parse::parse(Format::Ss, &fixture("ss/debian12-6.1-tunapH.txt"));
    assert_eq!(h.sockets.len(), p.sockets.len());

    let t = parse::parse(Format::Ss, &fixture("ss/debian12-6.1-tanp-no-netid.txt"));
    assert!(
        t.sockets
            .iter()
            .all(|s| s.protocol.transport() == Transport::Tcp)
    );
    let u = parse::parse(Format::Ss, &fixture("ss/debian12-6.1-uanp-no-netid.txt"));
    assert!(
        u.sockets
            .iter()
            .all(|s| s.protocol.transport() == Transport::Udp)
    );
    assert_eq!(
        find(&u, Protocol::Udp6, 46151, Some(TcpState::Established))
            .foreign
            .port,
        Some(15354)
    );
}

#[test]
fn ss_public_captures() {
    let p = parse::parse(Format::Ss, &fixture("ss/ubuntu18.04-tulpen.txt"));
    let apache = find(&p, Protocol::Tcp, 80, Some(TcpState::Listen));
    assert_eq!(apache.owners.len(), 7);
    assert_eq!(apache.inode, Some(40480));
    let resolved = find(&p, Protocol::Udp, 53, None);
    assert!(resolved.local_ip == ip("127.0.0.53") || resolved.local_ip == ip("192.168.122.1"));

    // Old ss: `*` is the IPv4 wildcard, service names cannot be read.
    let old = parse::parse(Format::Ss, &fixture("ss/centos7.7-a.txt"));
    assert!(old.skipped.iter().any(|k| k.reason.contains("-n")));
    assert!(old.skipped.iter().any(|k| k.line.starts_with("nl")));
    let v4 = find(&old, Protocol::Udp, 323, None);
    assert_eq!(v4.local_ip, ip("127.0.0.1"));
}

#[test]
fn proc_net_both_byte_orders_give_the_same_sockets() {
    let le = fixture("proc-net/debian12-all.txt");
    let be = fixture("proc-net/byteswapped-bigendian-all.txt");
    assert_eq!(proc_net::detect_byte_order(&le), ByteOrder::Little);
    assert_eq!(proc_net::detect_byte_order(&be), ByteOrder::Big);
    let a = parse::parse(Format::ProcNet, &le);
    let b = parse::parse(Format::ProcNet, &be);
    assert!(a.skipped.is_empty() && b.skipped.is_empty());
    assert_eq!(a.sockets, b.sockets);
    // Reading with the wrong order gives other addresses: the order matters.
    let wrong = proc_net::parse(&le, Some(ByteOrder::Big));
    assert_ne!(wrong.sockets, a.sockets);

    let l = find(&a, Protocol::Tcp, 18080, Some(TcpState::Listen));
    assert_eq!(l.local_ip, ip("127.0.0.1"));
    assert_eq!(l.uid, Some(0));
    assert!(l.inode.is_some());
    let mapped = find(&a, Protocol::Tcp6, 18081, Some(TcpState::Established));
    assert_eq!(mapped.local_ip, ip("::ffff:127.0.0.1"));
    assert_eq!(find(&a, Protocol::Udp6, 15354, None).recv_queue, 832);
    assert_eq!(
        find(&a, Protocol::Udp6, 46151, Some(TcpState::Established))
            .foreign
            .port,
        Some(15354)
    );
}

#[test]
fn proc_net_single_tables_take_protocol_from_header_or_caller() {
    let t6 = fixture("proc-net/debian12-tcp6.txt");
    let by_header = parse::parse(Format::ProcNet, &t6);
    assert!(
        by_header
            .sockets
            .iter()
            .all(|s| s.protocol == Protocol::Tcp6)
    );
    let body: String = t6.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let told = proc_net::parse_table(&body, Protocol::Tcp6, ByteOrder::Little);
    assert_eq!(told.sockets, by_header.sockets);
    // Without marker or header the protocol is unknown: every row is reported.
    let unknown = proc_net::parse(&body, None);
    assert!(unknown.sockets.is_empty());
    assert_eq!(unknown.skipped.len(), body.lines().count());
}

/// The same sockets, seen by four tools within a second: they must agree.
#[test]
fn debian12_captures_agree_across_tools() {
    let ours: BTreeSet<u16> = [
        18080, 18081, 18082, 18090, 18443, 18444, 15353, 15354, 15355, 15356,
    ]
    .into();
    type Key = (Protocol, IpAddr, u16, IpAddr, Option<u16>, Option<TcpState>);
    let keys = |p: &Parsed, with_time_wait: bool| -> BTreeSet<Key> {
        p.sockets
            .iter()
            .filter(|s| {
                ours.contains(&s.local_port) || s.foreign.port.is_some_and(|fp| ours.contains(&fp))
            })
            .filter(|s| with_time_wait || s.state != Some(TcpState::TimeWait))
            .map(|s| {
                (
                    s.protocol,
                    s.local_ip,
                    s.local_port,
                    s.foreign.ip,
                    s.foreign.port,
                    s.state,
                )
            })
            .collect()
    };
    let netstat = parse::parse(Format::NetTools, &fixture("net-tools/debian12-tunapW.txt"));
    let ss = parse::parse(Format::Ss, &fixture("ss/debian12-6.1-tunap.txt"));
    let mut proc_all = String::new();
    for f in ["tcp", "tcp6", "udp", "udp6"] {
        proc_all.push_str(&fixture(&format!("proc-net/debian12-{f}.txt")));
    }
    let procfs = parse::parse(Format::ProcNet, &proc_all);
    let lsof = parse::parse(
        Format::Lsof,
        &fixture("lsof/debian12-4.95-nP-iTCP-iUDP.txt"),
    );

    let reference = keys(&netstat, true);
    assert_eq!(reference.len(), 20, "{reference:#?}");
    assert_eq!(keys(&ss, true), reference, "ss vs netstat");
    assert_eq!(keys(&procfs, true), reference, "/proc/net vs netstat");
    assert_eq!(keys(&lsof, false), keys(&netstat, false), "lsof vs netstat");
    // Owners: every lsof socket of ours is held by both processes, as ss says.
    let second_process: BTreeSet<u16> = [18443, 18444, 15356].into();
    for s in lsof
        .sockets
        .iter()
        .filter(|s| ours.contains(&s.local_port) && !second_process.contains(&s.local_port))
    {
        let pids: BTreeSet<u32> = s.owners.iter().map(|o| o.pid).collect();
        assert_eq!(pids, [9054, 9056].into(), "{s:?}");
    }
}

/// `netstat -e`, `ss -e` and `/proc/net` name the same inode and uid for each of our sockets.
#[test]
fn debian12_extended_columns_agree_on_inodes() {
    let netstat = parse::parse(
        Format::NetTools,
        &fixture("net-tools/debian12-tunapeW-ours.txt"),
    );
    let ss = parse::parse(Format::Ss, &fixture("ss/debian12-6.1-tunapeH-ours.txt"));
    assert!(netstat.skipped.is_empty() && ss.skipped.is_empty());
    let mut proc_all = String::new();
    for f in ["tcp", "tcp6", "udp", "udp6"] {
        proc_all.push_str(&fixture(&format!("proc-net/debian12-{f}.txt")));
    }
    let procfs = parse::parse(Format::ProcNet, &proc_all);
    assert_eq!(netstat.sockets.len(), 19);
    let same = |a: &Socket, b: &Socket| {
        a.protocol == b.protocol
            && a.local_ip == b.local_ip
            && a.local_port == b.local_port
            && a.foreign == b.foreign
            && a.state == b.state
    };
    for n in &netstat.sockets {
        assert!(n.inode.is_some(), "{n:?}");
        assert_eq!(n.uid, Some(0));
        let s = ss
            .sockets
            .iter()
            .find(|s| same(s, n))
            .unwrap_or_else(|| panic!("ss lacks {n:?}"));
        assert_eq!(s.inode, n.inode, "{n:?}");
        let p = procfs
            .sockets
            .iter()
            .find(|p| same(p, n))
            .unwrap_or_else(|| panic!("/proc lacks {n:?}"));
        assert_eq!(p.inode, n.inode, "{n:?}");
        assert_eq!(p.uid, n.uid);
    }
}

#[test]
fn bsd_captures() {
    let f = parse::parse(Format::Bsd, &fixture("bsd/freebsd12-an.txt"));
    assert_eq!(f.sockets.len(), 6);
    let smtp = find(&f, Protocol::Tcp, 25, Some(TcpState::Listen));
    assert_eq!(smtp.local_ip, ip("127.0.0.1"));
    let est = find(&f, Protocol::Tcp, 22, Some(TcpState::Established));
    assert_eq!(
        est.foreign,
        Endpoint {
            ip: ip("192.168.71.1"),
            port: Some(56321)
        }
    );
    assert!(
        f.skipped.iter().all(|k| k.reason.contains("UNIX")),
        "{:?}",
        f.skipped
    );

    let doc = parse::parse(Format::Bsd, &fixture("bsd/macos-parse-netstat-doc-an.txt"));
    let dual = find(&doc, Protocol::Tcp6, 80, Some(TcpState::Listen));
    assert_eq!(dual.local_ip, ip("::"));
    assert_eq!(doc.sockets.len(), 6);

    let mac = parse::parse(Format::Bsd, &fixture("bsd/macos10.14-An.txt"));
    assert!(mac.sockets.len() > 50);
    assert!(
        mac.skipped.iter().any(|k| k.reason.contains("netstat -an")),
        "cut -A addresses are reported"
    );
}

#[test]
fn windows_captures() {
    let p = parse::parse(Format::Windows, &fixture("windows/windows10-aon.txt"));
    let rpc = find(&p, Protocol::Tcp, 135, Some(TcpState::Listen));
    assert_eq!(rpc.owners[0].pid, 1712);
    assert_eq!(rpc.foreign.port, None);
    let smb6 = find(&p, Protocol::Tcp6, 445, Some(TcpState::Listen));
    assert_eq!(smb6.local_ip, ip("::"));
    let mdns = find(&p, Protocol::Udp6, 5353, None);
    assert_eq!(mdns.foreign.port, None);
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);

    let b = parse::parse(Format::Windows, &fixture("windows/windows10-aonb.txt"));
    let rpc = find(&b, Protocol::Tcp, 135, Some(TcpState::Listen));
    assert_eq!(&*rpc.owners[0].program, "svchost.exe");
    let sys = find(&b, Protocol::Tcp, 445, Some(TcpState::Listen));
    assert_eq!(&*sys.owners[0].program, "", "no [exe] line under it");
}

// ---- rendering ----

#[test]
fn rendered_netstat_matches_real_capture_layout() {
    // Re-render what we parsed from `netstat -tunapW` and compare with the capture, line by line
    // (net-tools prints only one owner; our parse kept the one it printed).
    let text = fixture("net-tools/debian12-tunapW.txt");
    let parsed = parse::parse(Format::NetTools, &text);
    let opts = RenderOptions {
        wide: true,
        programs: true,
        listing: Shown::All,
    };
    assert_eq!(render_netstat(&parsed.sockets, &opts), text);
    let cut = fixture("net-tools/debian12-tunap.txt");
    let opts = RenderOptions {
        wide: false,
        ..opts
    };
    let rendered = render_netstat(&parsed.sockets, &opts);
    assert_eq!(
        rendered, cut,
        "non-wide rendering cuts addresses as net-tools does"
    );
    let tuln = fixture("net-tools/debian12-tuln.txt");
    // `-l`: listening TCP and unconnected UDP sockets, from the wide capture (the cut lines of
    // `-tuln` itself cannot be read back).
    let listeners: Vec<Socket> = parsed
        .sockets
        .iter()
        .filter(|s| {
            s.state == Some(TcpState::Listen)
                || (s.protocol.transport() == Transport::Udp && s.state.is_none())
        })
        .cloned()
        .collect();
    let opts = RenderOptions {
        wide: false,
        programs: false,
        listing: Shown::Listening,
    };
    assert_eq!(render_netstat(&listeners, &opts), tuln);
}

fn arb_v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn arb_v6() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
        Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
        any::<u16>().prop_map(|x| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, x))),
    ]
}

fn arb_state(transport: Transport) -> BoxedStrategy<Option<TcpState>> {
    match transport {
        Transport::Tcp => proptest::sample::select(TcpState::ALL.to_vec())
            .prop_map(Some)
            .boxed(),
        Transport::Udp => prop_oneof![Just(None), Just(Some(TcpState::Established))].boxed(),
    }
}

/// A socket as netstat can show it: at most one owner whose `pid/name` fits 19 characters.
fn arb_socket(v6_only_short: bool) -> impl Strategy<Value = Socket> {
    let protocol = proptest::sample::select(Protocol::ALL.to_vec());
    protocol.prop_flat_map(move |protocol| {
        let addr = if protocol.is_ipv6() && !v6_only_short {
            arb_v6().boxed()
        } else {
            arb_v4().boxed()
        };
        let protocol = if v6_only_short && protocol.is_ipv6() {
            Protocol::new(protocol.transport(), false)
        } else {
            protocol
        };
        (
            Just(protocol),
            addr.clone(),
            any::<u16>(),
            addr,
            proptest::option::of(any::<u16>()),
            arb_state(protocol.transport()),
            0u32..5_000_000,
            0u32..5_000_000,
            proptest::option::of((1u32..4_000_000, "[a-zA-Z0-9_.:/ -]{0,12}[a-zA-Z0-9_.:/-]")),
        )
            .prop_map(
                |(protocol, local, lport, foreign, fport, state, rq, sq, owner)| {
                    let mut s = Socket::new(
                        protocol,
                        local,
                        lport,
                        Endpoint {
                            ip: foreign,
                            port: fport,
                        },
                    );
                    s.state = state;
                    s.recv_queue = rq;
                    s.send_queue = sq;
                    if let Some((pid, name)) = owner {
                        let full = format!("{pid}/{name}");
                        // netstat keeps 19 characters of `pid/name`, without trailing blanks.
                        let kept = full.get(..full.len().min(19)).unwrap_or("").trim_end();
                        let program = kept.split_once('/').map_or("", |(_, n)| n);
                        s.owners.push(Owner {
                            pid,
                            program: program.into(),
                        });
                    }
                    s
                },
            )
    })
}

/// A socket as /proc/net shows it: uid known, inode optional, no owners, foreign port not 0.
fn arb_proc_socket() -> impl Strategy<Value = Socket> {
    (
        arb_socket(false),
        any::<u32>(),
        proptest::option::of(1u64..u64::from(u32::MAX)),
        0u32..=u32::MAX,
        0u32..=u32::MAX,
    )
        .prop_map(|(mut s, uid, inode, rq, sq)| {
            s.owners.clear();
            s.uid = Some(uid);
            s.inode = inode;
            s.recv_queue = rq;
            s.send_queue = sq;
            if s.foreign.port == Some(0) {
                s.foreign.port = None;
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The ss -tinm reader never panics and accounts for every line, whatever the text: lines
    /// built from its own vocabulary (markers, headers, socket lines, detail words) and noise.
    #[test]
    fn ss_info_never_panics(lines in proptest::collection::vec(prop_oneof![
        Just("== tcp".to_string()), Just("== udp".to_string()), Just("== uname".to_string()),
        Just("== version".to_string()), Just("6.1.0".to_string()),
        Just("ss utility, iproute2-ss170905".to_string()),
        Just("State Recv-Q Send-Q Local Address:Port Peer Address:Port".to_string()),
        Just("ESTAB 0 0 127.0.0.1:80 127.0.0.1:5000".to_string()),
        Just("UNCONN 0 0 0.0.0.0:53 0.0.0.0:*".to_string()),
        "\t[a-z_]{1,12}:[0-9./(,a-z%)]{0,20}( [a-z_]{1,8}:?[0-9./]{0,8}){0,6}",
        "\t(pacing_rate|delivery_rate|send) [0-9.]{0,8}[kMG]?(bps)?",
        "\tskmem:\\([a-z]{0,2}[0-9]{0,5}(,[a-z]{0,2}[0-9]{0,5}){0,9}\\)?",
        ".{0,40}",
    ], 0..40)) {
        let text = lines.join("\n");
        let parsed = parse::ss_info::parse(&text);
        let count = text.lines().count();
        prop_assert!(parsed.skipped.iter().all(|k| k.line_no >= 1 && k.line_no <= count));
        prop_assert!(parsed.sockets.len() + parsed.skipped.len() <= count);
    }

    #[test]
    fn netstat_wide_round_trip(sockets in proptest::collection::vec(arb_socket(false), 0..20)) {
        let opts = RenderOptions { wide: true, programs: true, listing: Shown::All };
        let text = render_netstat(&sockets, &opts);
        let parsed = parse::parse(Format::NetTools, &text);
        prop_assert!(parsed.skipped.is_empty(), "{:?}\n{}", parsed.skipped, text);
        prop_assert_eq!(parsed.sockets, sockets);
        prop_assert_eq!(parse::detect(&text), Some(Format::NetTools));
    }

    #[test]
    fn netstat_short_round_trip_ipv4(sockets in proptest::collection::vec(arb_socket(true), 1..20)) {
        let opts = RenderOptions { wide: false, programs: true, listing: Shown::Connected };
        let text = render_netstat(&sockets, &opts);
        prop_assert_eq!(parse::detect(&text), Some(Format::NetTools));
        let parsed = parse::parse(Format::NetTools, &text);
        prop_assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        prop_assert_eq!(parsed.sockets, sockets);
    }

    #[test]
    fn proc_net_round_trip_both_orders(sockets in proptest::collection::vec(arb_proc_socket(), 0..20), big in any::<bool>()) {
        let order = if big { ByteOrder::Big } else { ByteOrder::Little };
        let text = render_proc_net_all(&sockets, order);
        let parsed = proc_net::parse(&text, Some(order));
        prop_assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        // Rendering groups by protocol in Protocol::ALL order.
        let mut expected = Vec::new();
        for p in Protocol::ALL {
            expected.extend(sockets.iter().filter(|s| s.protocol == p).cloned());
        }
        prop_assert_eq!(parsed.sockets, expected);
    }

    #[test]
    fn proc_net_single_table_round_trip(sockets in proptest::collection::vec(arb_proc_socket(), 0..10)) {
        for p in Protocol::ALL {
            let text = render_proc_net(&sockets, p, ByteOrder::Little);
            let parsed = proc_net::parse_table(&text, p, ByteOrder::Little);
            let expected: Vec<Socket> = sockets.iter().filter(|s| s.protocol == p).cloned().collect();
            prop_assert_eq!(parsed.sockets, expected);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_all(&text);
    }

    #[test]
    fn listing_like_text_never_panics(lines in proptest::collection::vec(listing_line(), 0..12)) {
        check_all(&lines.join("\n"));
    }

    #[test]
    fn mutated_fixtures_never_panic(pick in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..8)) {
        let fixtures = all_fixtures();
        let (_, _, path) = pick.get(&fixtures);
        let mut chars: Vec<char> = std::fs::read_to_string(path).expect("fixture").chars().collect();
        for (at, c) in edits {
            if chars.is_empty() { break; }
            let i = at.index(chars.len());
            chars[i] = c;
        }
        check_all(&chars.into_iter().collect::<String>());
    }
}

/// Lines made of the words listings are made of, so the parsers' deeper paths run.
fn listing_line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("tcp".to_owned()),
        Just("tcp6".to_owned()),
        Just("udp46".to_owned()),
        Just("TCP".to_owned()),
        Just("UDP".to_owned()),
        Just("LISTEN".to_owned()),
        Just("ESTAB".to_owned()),
        Just("UNCONN".to_owned()),
        Just("LISTENING".to_owned()),
        Just("IPv6".to_owned()),
        Just("== tcp6".to_owned()),
        Just("sl local_address remote_address drops".to_owned()),
        Just("users:((\"a b\",pid=1,fd=2),(\"".to_owned()),
        Just("[::1]:80".to_owned()),
        Just("*:*".to_owned()),
        Just("*.*".to_owned()),
        Just("0100007F:0050".to_owned()),
        Just("[svchost.exe]".to_owned()),
        Just("12/a: b".to_owned()),
        Just("(LISTEN)".to_owned()),
        "[0-9]{1,6}".prop_map(|s| s),
        "[0-9a-fA-F:.%\\[\\]*]{1,40}".prop_map(|s| s),
        ".{0,8}".prop_map(|s| s),
    ];
    proptest::collection::vec(word, 0..10).prop_map(|w| w.join(" "))
}

fn check_all(text: &str) {
    let _ = parse::detect(text);
    let _ = parse::parse_auto(text);
    for f in Format::ALL {
        let parsed = parse::parse(f, text);
        let lines = text.lines().count();
        assert!(
            parsed
                .skipped
                .iter()
                .all(|k| k.line_no >= 1 && k.line_no <= lines)
        );
    }
    let _ = proc_net::parse(text, Some(ByteOrder::Big));
    let _ = parse::ss::parse_as(text, Some(Transport::Udp));
}

// ---- local fallback against a real listener ----

/// Generous: `ss -p`/`netstat -p` walk every process's fds, which takes seconds on a host with
/// 100k sockets (as when a benchmark runs next to the tests).
const LIVE_TIMEOUT: Duration = Duration::from_secs(120);

fn own_listener_found(cmd: &FallbackCommand) {
    let listener = crate::support::net::tcp_listener("127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let text = external::run_command(cmd.program, cmd.args, LIVE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{} must be installed for this test: {e}", cmd.program));
    let parsed = parse::parse(cmd.format, &text);
    let ours = parsed
        .sockets
        .iter()
        .find(|s| {
            s.local_port == port
                && s.state == Some(TcpState::Listen)
                && s.local_ip == ip("127.0.0.1")
        })
        .unwrap_or_else(|| {
            panic!(
                "`{} {}` did not show our listener on port {port}",
                cmd.program,
                cmd.args.join(" ")
            )
        });
    assert_eq!(ours.local_ip, ip("127.0.0.1"));
    assert!(
        ours.owners.iter().any(|o| o.pid == std::process::id()),
        "our pid {} not among owners {:?} in `{}`",
        std::process::id(),
        ours.owners,
        cmd.program
    );
    drop(listener);
}

#[test]
fn fallback_commands_find_our_own_listener() {
    let cmds = external::local_fallback_commands();
    assert!(!cmds.is_empty());
    for cmd in cmds.iter().filter(|c| c.format != Format::Busybox) {
        own_listener_found(cmd);
    }
}

#[test]
fn run_fallback_uses_the_first_working_command() {
    let listener = crate::support::net::tcp_listener("127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let (cmd, parsed) = external::run_fallback(LIVE_TIMEOUT).expect("some fallback works here");
    assert_eq!(cmd.program, "ss");
    assert!(parsed.sockets.iter().any(|s| s.local_port == port));
    // A missing first command falls through to the next.
    let cmds = [
        FallbackCommand {
            program: "netstat-mcp-missing",
            args: &[],
            format: Format::Ss,
        },
        FallbackCommand {
            program: "ss",
            args: &["-tanH"],
            format: Format::Ss,
        },
    ];
    let (used, parsed) = external::run_first(&cmds, LIVE_TIMEOUT).expect("ss works");
    assert_eq!(used.program, "ss");
    assert!(parsed.sockets.iter().any(|s| s.local_port == port));
    let err = external::run_first(&cmds[..1], LIVE_TIMEOUT).unwrap_err();
    assert!(err.to_string().contains("netstat-mcp-missing"), "{err}");
}

/// `ss -tinm` captures (`tests/fixtures/ss-info/`, one per iproute2 version): every socket
/// line becomes a socket with its counters, no line is skipped, and what a version cannot
/// print is unknown rather than 0.
#[test]
fn ss_info_captures_of_three_iproute2_versions() {
    use netstat_mcp::model::TcpField;
    let dir = fixtures_dir().join("ss-info");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/ss-info")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ssinfo"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let parsed = parse::ss_info::parse(&text);
        assert!(parsed.skipped.is_empty(), "{name}: {:?}", parsed.skipped);
        let socket_lines = text
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()) && !l.starts_with("State"))
            .count();
        assert_eq!(parsed.sockets.len(), socket_lines, "{name}");
        let mut out = describe(&parsed);
        for s in &parsed.sockets {
            let h = s.health.as_deref().expect("health");
            let mem = h.mem.expect("skmem");
            let _ = write!(
                out,
                "{}:{} mem r={} rb={} w={} tb={} d={}",
                s.local_ip,
                s.local_port,
                mem.rmem_alloc,
                mem.rcvbuf,
                mem.wmem_queued,
                mem.sndbuf,
                mem.drops
            );
            if let Some(t) = &h.tcp {
                for f in TcpField::ALL {
                    if let Some(v) = t.get(f) {
                        let _ = write!(out, " {f:?}={v}");
                    }
                }
            }
            out.push('\n');
        }
        insta::assert_snapshot!(format!("ss-info__{name}"), out);
        // The UDP socket flooded past its buffer shows its drops.
        let udp = parsed
            .sockets
            .iter()
            .find(|s| s.protocol == Protocol::Udp)
            .expect("udp socket");
        assert!(udp.health.as_deref().unwrap().mem.unwrap().drops > 0);
        let tcp = parsed
            .sockets
            .iter()
            .find(|s| s.protocol == Protocol::Tcp)
            .and_then(|s| s.health.as_deref()?.tcp.clone())
            .expect("tcp_info");
        assert!(tcp.get(TcpField::Rtt).is_some(), "{name}");
        if name.starts_with("iproute2-4.9") {
            // ss 4.9 prints neither bytes_sent nor snd_wnd: unknown, not 0.
            assert_eq!(tcp.get(TcpField::BytesSent), None);
            assert_eq!(tcp.get(TcpField::SndWnd), None);
            // ... but knows unacked and lost, so their absence is 0.
            assert_eq!(tcp.get(TcpField::Lost), Some(0));
        } else {
            assert!(tcp.get(TcpField::BytesSent).is_some(), "{name}");
        }
    }
}
