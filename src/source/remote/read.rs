//! Reading what a remote command printed: is it a listing we can use, which sockets it holds,
//! and how complete its owner columns are. Pure functions over [`CommandOutput`].
//!
//! **A listing needs a readable row.** Over SSH the host always has at least our own
//! connection, so an unfiltered listing with no readable row is not an answer (the program is
//! something else, or a shim, or a different OS's tool): the next command is tried. A listing
//! filtered on the remote side may rightly be empty; it counts when its own column header is
//! there and nothing in it was unreadable.
//!
//! Owners come from the listing itself (net-tools' `PID/Program name`, ss's `users:`), or from
//! a helper joined in here: `lsof` for BSD/macOS `netstat`, `tasklist` for Windows `netstat
//! -ano` (pids only), the `/proc/<pid>/fd` scan of our `/proc/net` program.

use std::collections::HashMap;
use std::net::IpAddr;

use super::commands::{Filter, Listing};
use crate::model::{Owner, Socket, Transport};
use crate::parse::{self, Format, Parsed};
use crate::ssh::CommandOutput;

/// How much a listing can say about owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnerColumn {
    /// The listing names owners (where the SSH user may see them).
    Shown,
    /// The listing cannot name owners at all, for this reason (no permission would help).
    Absent(String),
}

/// A usable listing.
#[derive(Debug, Clone)]
pub struct Reading {
    pub parsed: Parsed,
    pub(crate) owners: OwnerColumn,
    /// The tool said it could not see every owner (net-tools' "Not all processes…").
    pub(crate) owners_restricted: bool,
}

/// Why a command's output is not a usable listing: a short phrase for the "tried" list.
pub(crate) type NotAListing = String;

fn status_text(out: &CommandOutput) -> String {
    match (out.exit_status, &out.exit_signal) {
        (_, Some(sig)) => format!("killed by {sig}"),
        (Some(code), None) => format!("exit {code}"),
        (None, None) => "no exit status".into(),
    }
}

/// `exit 127: sh: 1: ss: not found` — the status and the first line of stderr.
pub(crate) fn failure_text(out: &CommandOutput) -> String {
    let status = status_text(out);
    let first: String = out
        .stderr
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(160)
        .collect();
    if first.is_empty() {
        status
    } else {
        format!("{status}: {first}")
    }
}

/// Whether `text` holds the column header of `format`.
fn has_header(format: Format, text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        let first = l.split_whitespace().next().unwrap_or("");
        match format {
            Format::Ss => first == "Netid" || (first == "State" && l.contains("Recv-Q")),
            Format::ProcNet => first == "sl" && l.contains("local_address"),
            Format::Bsd => first == "Proto" && l.contains("(state)"),
            Format::Windows => first == "Proto" && l.contains("Local Address"),
            Format::NetTools | Format::Busybox => first == "Proto" && l.contains("Recv-Q"),
            Format::Lsof => first == "COMMAND" && l.contains("PID"),
        }
    })
}

/// Rejects an output with no row, unless it is a remote-filtered listing with its header.
fn require_rows(
    parsed: Parsed,
    filtered: bool,
    header: bool,
    out: &CommandOutput,
) -> Result<Parsed, NotAListing> {
    if !parsed.sockets.is_empty() || (filtered && header && parsed.skipped.is_empty()) {
        return Ok(parsed);
    }
    let status = status_text(out);
    Err(match parsed.skipped.first() {
        Some(first) => format!(
            "{status}, but no readable row ({} line(s) unreadable, first: line {}: {})",
            parsed.skipped.len(),
            first.line_no,
            first.reason
        ),
        None if out.stdout.trim().is_empty() => format!("{status}, no output"),
        None => format!("{status}, but no socket row in its output"),
    })
}

/// Refuses output that reads as another listing format than the command's (`what` names the
/// expected one, "an ss listing"); output no format claims is left to the parser.
fn expect_format(format: Format, what: &str, out: &CommandOutput) -> Result<(), NotAListing> {
    match parse::detect(&out.stdout) {
        Some(f) if f != format => Err(format!(
            "{}, but the output is not {what}",
            status_text(out)
        )),
        _ => Ok(()),
    }
}

/// Reads the output of a listing command.
pub fn interpret(
    listing: Listing,
    filter: &Filter,
    out: &CommandOutput,
) -> Result<Reading, NotAListing> {
    if !out.success() {
        return Err(failure_text(out));
    }
    let text = out.stdout.as_str();
    let filtered = listing.filtered(filter);
    match listing {
        Listing::NetstatWide | Listing::Netstat => {
            let format = match parse::detect(text) {
                Some(f @ (Format::NetTools | Format::Busybox)) => f,
                Some(other) => {
                    return Err(format!(
                        "{}, but the output is a {other} listing, not Linux netstat",
                        status_text(out)
                    ));
                }
                None if text.trim().is_empty() => {
                    return Err(format!("{}, no output", status_text(out)));
                }
                None => {
                    return Err(format!(
                        "{}, but the output is not a netstat listing",
                        status_text(out)
                    ));
                }
            };
            let parsed = require_rows(parse::parse(format, text), false, false, out)?;
            let program_column = text
                .lines()
                .any(|l| l.trim_start().starts_with("Proto") && l.contains("PID/Program"));
            let owners = if program_column {
                OwnerColumn::Shown
            } else if format == Format::Busybox {
                OwnerColumn::Absent(
                    "this host's netstat is busybox built without -p, which prints no PID/Program column".into(),
                )
            } else {
                OwnerColumn::Absent("this host's netstat printed no PID/Program column".into())
            };
            Ok(reading(parsed, owners, &out.stderr))
        }
        Listing::Ss => {
            expect_format(Format::Ss, "an ss listing", out)?;
            let parsed = require_rows(parse::parse(Format::Ss, text), false, false, out)?;
            Ok(reading(parsed, OwnerColumn::Shown, &out.stderr))
        }
        Listing::SsFiltered => {
            let mut parsed = Parsed::default();
            let mut headers = true;
            let mut any_section = false;
            for (transport, section) in sections(text) {
                let Some(transport) = transport else { continue };
                any_section = true;
                headers &= has_header(Format::Ss, section);
                let part = parse::ss::parse_as(section, Some(transport));
                merge(&mut parsed, part);
            }
            let parsed = require_rows(parsed, true, headers && any_section, out)?;
            Ok(reading(parsed, OwnerColumn::Shown, &out.stderr))
        }
        Listing::SsInfo => {
            // A listing with no matching socket still has its headers.
            let header = text.contains("Recv-Q");
            let parsed = require_rows(parse::ss_info::parse(text), true, header, out)?;
            Ok(reading(parsed, OwnerColumn::Shown, &out.stderr))
        }
        Listing::ProcNetScan | Listing::ProcNet => {
            let (tables, owner_text) = match text.split_once("\n== owners\n") {
                Some((t, o)) => (t, Some(o)),
                None => (text.strip_suffix("== owners\n").unwrap_or(text), None),
            };
            let header = has_header(Format::ProcNet, tables);
            let mut parsed =
                require_rows(parse::parse(Format::ProcNet, tables), filtered, header, out)?;
            let owners = match owner_text {
                Some(o) => {
                    let lines = parse::fd_scan::parse(o);
                    join_inodes(&mut parsed.sockets, &lines.owners);
                    merge(&mut parsed, lines.report);
                    OwnerColumn::Shown
                }
                None if listing == Listing::ProcNet => OwnerColumn::Absent(
                    "this host has neither netstat, ss nor awk; /proc/net alone does not name processes".into(),
                ),
                None => OwnerColumn::Absent("owners were not looked up".into()),
            };
            Ok(Reading {
                parsed,
                owners,
                owners_restricted: false,
            })
        }
        Listing::BsdNetstat => {
            expect_format(Format::Bsd, "a BSD/macOS netstat listing", out)?;
            let header = has_header(Format::Bsd, text);
            let parsed = require_rows(parse::parse(Format::Bsd, text), filtered, header, out)?;
            Ok(reading(
                parsed,
                OwnerColumn::Absent(
                    "BSD/macOS netstat names no processes and lsof gave none".into(),
                ),
                "",
            ))
        }
        Listing::WindowsNetstat => {
            expect_format(Format::Windows, "a Windows netstat -ano listing", out)?;
            let parsed = require_rows(parse::parse(Format::Windows, text), false, false, out)?;
            Ok(reading(parsed, OwnerColumn::Shown, ""))
        }
        Listing::Lsof
        | Listing::Tasklist
        | Listing::Uname
        | Listing::WindowsVer
        | Listing::PortSysctls => Err(format!("`{}` is not a socket listing", listing.name())),
    }
}

fn reading(parsed: Parsed, owners: OwnerColumn, stderr: &str) -> Reading {
    let owners_restricted = parsed
        .notes
        .iter()
        .any(|n| n.starts_with("netstat could not show every owner"))
        || stderr.contains("processes could be identified")
        || stderr.contains("you should be root");
    Reading {
        parsed,
        owners,
        owners_restricted,
    }
}

/// Splits a text into `== tcp` / `== udp` sections (text before the first marker has no
/// transport).
fn sections(text: &str) -> Vec<(Option<Transport>, &str)> {
    let mut out = Vec::new();
    let mut current: Option<Transport> = None;
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let marker = match line.trim() {
            "== tcp" => Some(Transport::Tcp),
            "== udp" => Some(Transport::Udp),
            _ => None,
        };
        if let Some(t) = marker {
            out.push((current, &text[start..pos]));
            current = Some(t);
            start = pos + line.len();
        }
        pos += line.len();
    }
    out.push((current, &text[start..]));
    out
}

/// Appends `part` to `into`, keeping line numbers as the parts report them.
fn merge(into: &mut Parsed, part: Parsed) {
    into.sockets.extend(part.sockets);
    into.skipped.extend(part.skipped);
    for n in part.notes {
        if !into.notes.contains(&n) {
            into.notes.push(n);
        }
    }
}

/// Gives sockets the owners found for their inodes.
pub(crate) fn join_inodes(sockets: &mut [Socket], owners: &[(u64, Owner)]) {
    let mut by_inode: HashMap<u64, Vec<&Owner>> = HashMap::with_capacity(owners.len());
    for (inode, o) in owners {
        by_inode.entry(*inode).or_default().push(o);
    }
    for s in sockets.iter_mut() {
        let Some(list) = s.inode.and_then(|i| by_inode.get(&i)) else {
            continue;
        };
        for o in list {
            if !s.owners.iter().any(|e| e.pid == o.pid) {
                s.owners.push((*o).clone());
            }
        }
    }
}

/// The key a BSD netstat row and an lsof row share: transport, local port, foreign end, with
/// wildcard addresses of either family made equal and v4-mapped addresses unmapped.
type JoinKey = (Transport, u16, Option<IpAddr>, Option<u16>, Option<IpAddr>);

fn norm(ip: IpAddr) -> Option<IpAddr> {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    (!ip.is_unspecified()).then_some(ip)
}

fn join_key(s: &Socket) -> JoinKey {
    (
        s.protocol.transport(),
        s.local_port,
        norm(s.local_ip),
        s.foreign.port,
        norm(s.foreign.ip),
    )
}

/// Gives BSD/macOS netstat rows the owners lsof printed for the same socket. Returns how many
/// rows got an owner.
pub(crate) fn join_lsof(sockets: &mut [Socket], lsof: &Parsed) -> usize {
    let mut by_key: HashMap<JoinKey, Vec<&Owner>> = HashMap::new();
    for s in &lsof.sockets {
        let entry = by_key.entry(join_key(s)).or_default();
        for o in &s.owners {
            if !entry.iter().any(|e| e.pid == o.pid) {
                entry.push(o);
            }
        }
    }
    let mut joined = 0;
    for s in sockets.iter_mut() {
        if let Some(list) = by_key.get(&join_key(s)) {
            for o in list {
                if !s.owners.iter().any(|e| e.pid == o.pid) {
                    s.owners.push((*o).clone());
                }
            }
            joined += 1;
        }
    }
    joined
}

/// Names the programs of Windows rows (which carry pids only) from `tasklist`.
pub(crate) fn join_tasklist(sockets: &mut [Socket], tasks: &parse::tasklist::Tasks) -> usize {
    let names: HashMap<u32, &str> = tasks.tasks.iter().map(|(p, n)| (*p, n.as_str())).collect();
    let mut named = 0;
    for s in sockets.iter_mut() {
        for o in s.owners.iter_mut() {
            if o.program.is_empty()
                && let Some(name) = names.get(&o.pid)
            {
                o.program = (*name).into();
                named += 1;
            }
        }
    }
    named
}

/// Reads `lsof` output; exit 1 with nothing printed means "no matching socket".
pub(crate) fn interpret_lsof(out: &CommandOutput) -> Result<Parsed, NotAListing> {
    if out.exit_status == Some(1) && out.stdout.trim().is_empty() && out.stderr.trim().is_empty() {
        return Ok(Parsed::default());
    }
    if !out.success() {
        return Err(failure_text(out));
    }
    if !out.stdout.trim().is_empty() && !has_header(Format::Lsof, &out.stdout) {
        return Err("the output is not an lsof listing".into());
    }
    Ok(parse::parse(Format::Lsof, &out.stdout))
}

/// Reads `tasklist /fo csv /nh` output.
pub(crate) fn interpret_tasklist(
    out: &CommandOutput,
) -> Result<parse::tasklist::Tasks, NotAListing> {
    if !out.success() {
        return Err(failure_text(out));
    }
    let tasks = parse::tasklist::parse(&out.stdout);
    if tasks.tasks.is_empty() {
        return Err("no task in its output".into());
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StateSet, TcpState};

    fn out(code: u32, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            stdout: stdout.into(),
            stderr: stderr.into(),
            exit_status: Some(code),
            exit_signal: None,
        }
    }

    const SS_HEADER: &str = "State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess\n";

    #[test]
    fn failing_and_foreign_outputs_fall_through() {
        let f = Filter::none();
        let e = interpret(
            Listing::NetstatWide,
            &f,
            &out(127, "", "sh: 1: netstat: not found\n"),
        )
        .unwrap_err();
        assert_eq!(e, "exit 127: sh: 1: netstat: not found");
        let bsd = "Active Internet connections (including servers)\nProto Recv-Q Send-Q  Local Address          Foreign Address        (state)\ntcp4       0      0  127.0.0.1.8080         *.*                    LISTEN\n";
        let e = interpret(Listing::Ss, &f, &out(0, bsd, "")).unwrap_err();
        assert!(e.contains("not an ss listing"), "{e}");
        let e = interpret(Listing::NetstatWide, &f, &out(0, bsd, "")).unwrap_err();
        assert!(e.contains("bsd listing, not Linux netstat"), "{e}");
        // An ss text with no readable row is no answer, even with exit 0.
        let e = interpret(Listing::Ss, &f, &out(0, SS_HEADER, "")).unwrap_err();
        assert!(e.contains("no socket row"), "{e}");
        let e = interpret(Listing::Ss, &f, &out(0, "garbage line here\n", "")).unwrap_err();
        assert!(e.contains("no readable row"), "{e}");
    }

    #[test]
    fn remote_filtered_empty_listing_is_an_answer() {
        let f = Filter {
            tcp: true,
            udp: true,
            states: StateSet::ALL,
            local_port: Some(8080),
        };
        let text = format!("== tcp\n{SS_HEADER}== udp\n{SS_HEADER}");
        let r = interpret(Listing::SsFiltered, &f, &out(0, &text, "")).unwrap();
        assert!(r.parsed.sockets.is_empty());
        // No header: not an answer.
        assert!(interpret(Listing::SsFiltered, &f, &out(0, "== tcp\n== udp\n", "")).is_err());
        let rows = format!(
            "== tcp\n{SS_HEADER}LISTEN 0 128 127.0.0.1:8080 0.0.0.0:* users:((\"nginx\",pid=9,fd=3))\n== udp\n{SS_HEADER}UNCONN 0 0 0.0.0.0:8080 0.0.0.0:*\n"
        );
        let r = interpret(Listing::SsFiltered, &f, &out(0, &rows, "")).unwrap();
        assert_eq!(r.parsed.sockets.len(), 2);
        assert_eq!(r.parsed.sockets[0].state, Some(TcpState::Listen));
        assert_eq!(r.parsed.sockets[1].protocol.transport(), Transport::Udp);
    }

    #[test]
    fn proc_net_with_owner_scan() {
        let f = Filter {
            local_port: Some(8080),
            ..Filter::none()
        };
        let text = "== tcp\n  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 29794 1 0 100 0 0 10 0\n== tcp6\n== owners\n23993 29794 my srv\n";
        let r = interpret(Listing::ProcNetScan, &f, &out(0, text, "")).unwrap();
        assert_eq!(r.parsed.sockets.len(), 1);
        assert_eq!(&*r.parsed.sockets[0].owners[0].program, "my srv");
        assert_eq!(r.owners, OwnerColumn::Shown);
        let plain = interpret(
            Listing::ProcNet,
            &Filter::none(),
            &out(0, text.split("== owners").next().unwrap(), ""),
        )
        .unwrap();
        assert!(matches!(plain.owners, OwnerColumn::Absent(_)));
    }

    #[test]
    fn busybox_without_pid_column_is_no_permission_problem() {
        let text = "Active Internet connections (servers and established)\nProto Recv-Q Send-Q Local Address           Foreign Address         State\ntcp        0      0 :::22                   :::*                    LISTEN\n";
        let r = interpret(Listing::NetstatWide, &Filter::none(), &out(0, text, "")).unwrap();
        match r.owners {
            OwnerColumn::Absent(why) => assert!(why.contains("busybox"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!r.owners_restricted);
    }

    #[test]
    fn lsof_and_tasklist_joins() {
        let bsd = parse::parse(
            Format::Bsd,
            "tcp4       0      0  127.0.0.1.8080         *.*                    LISTEN\ntcp46      0      0  *.22                   *.*                    LISTEN\n",
        );
        let lsof = parse::parse(
            Format::Lsof,
            "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\nnginx 90 root 3u IPv4 0x1 0t0 TCP 127.0.0.1:8080 (LISTEN)\nsshd 77 root 3u IPv6 0x2 0t0 TCP *:22 (LISTEN)\n",
        );
        let mut sockets = bsd.sockets;
        assert_eq!(join_lsof(&mut sockets, &lsof), 2);
        assert_eq!(&*sockets[0].owners[0].program, "nginx");
        assert_eq!(sockets[1].owners[0].pid, 77);
        assert!(interpret_lsof(&out(1, "", "")).unwrap().sockets.is_empty());
        assert!(interpret_lsof(&out(0, "hello\n", "")).is_err());

        let win = parse::parse(
            Format::Windows,
            "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1712\n",
        );
        let mut sockets = win.sockets;
        let tasks = parse::tasklist::parse("\"svchost.exe\",\"1712\",\"Services\",\"0\",\"1 K\"\n");
        assert_eq!(join_tasklist(&mut sockets, &tasks), 1);
        assert_eq!(&*sockets[0].owners[0].program, "svchost.exe");
    }
}
