//! Linux `netstat` listings: net-tools (`netstat -tunap`, `-tunapW`, `-tuln`) and busybox
//! (`netstat -tuna[p][W]`).
//!
//! Both print `Proto Recv-Q Send-Q Local Address Foreign Address State [PID/Program name]`.
//! Differences handled here:
//! - net-tools names IPv6 sockets `tcp6`/`udp6` and prints a v4-mapped address as plain IPv4;
//!   busybox says `tcp`/`udp` for both families and prints `::ffff:1.2.3.4`.
//! - Without `-W`, net-tools cuts an `address:port` longer than 23 characters by shortening the
//!   *address* (`fe80::fc:ff:fe00::18443`). Such an address is unreadable: the line is reported
//!   as skipped (run with `-W`). A 23-character IPv6 column that still parses may have lost
//!   trailing digits; it is kept and a note says so.
//! - With `-e`, `User` (a uid with `-n`) and `Inode` columns come before the program; both are
//!   kept.
//! - The program column is `pid/name`, where the name may hold spaces and colons
//!   (`1234/nginx: master`), `-` when unknown, and is cut by netstat to 19 characters.
//!
//! Run it as `LC_ALL=C netstat …`: localised headers are not recognised.

use std::net::IpAddr;

use super::{Parsed, clip, content_lines, host, line_socket, owner, port_or_star};
use crate::model::{Socket, TcpState, Transport};

/// Width of net-tools' address columns without `-W`.
const SHORT_COLUMN: usize = 23;

/// Parses net-tools or busybox `netstat` output.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (no, line, trimmed) in content_lines(text) {
        if is_banner(trimmed) {
            continue;
        }
        if trimmed.starts_with('(') {
            // "(Not all processes could be identified, …)" / "(No info could be read …)"
            out.note(format!(
                "netstat could not show every owner: {} Run it as root (or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH) to see them.",
                trimmed.trim_start_matches('(').trim_end_matches(')')
            ));
            continue;
        }
        match parse_line(trimmed) {
            Ok((socket, maybe_cut)) => {
                if maybe_cut {
                    out.note(
                        "some IPv6 addresses fill netstat's 23-character column and may have been cut; run netstat with -W for full addresses",
                    );
                }
                out.sockets.push(socket);
            }
            Err(reason) => out.skip(no, line, reason),
        }
    }
    out
}

/// Title and column header lines, and the headers of sections we do not read.
fn is_banner(line: &str) -> bool {
    line.starts_with("Active ") || line.starts_with("Proto ")
}

/// One data line; `true` alongside when an address may have been cut.
fn parse_line(line: &str) -> Result<(Socket, bool), String> {
    let mut rest = line;
    let proto = next_word(&mut rest);
    let (transport, proto_v6) = match proto {
        "tcp" => (Transport::Tcp, false),
        "tcp6" => (Transport::Tcp, true),
        "udp" => (Transport::Udp, false),
        "udp6" => (Transport::Udp, true),
        other => {
            return Err(format!(
                "protocol `{}` is not TCP or UDP (only tcp, tcp6, udp, udp6 lines are read)",
                clip(other, 20)
            ));
        }
    };
    let recv_q = next_word(&mut rest);
    let send_q = next_word(&mut rest);
    let local = next_word(&mut rest);
    let foreign = next_word(&mut rest);
    if foreign.is_empty() {
        return Err(
            "too few columns: expected Proto, Recv-Q, Send-Q, Local and Foreign Address".into(),
        );
    }
    let (recv_queue, send_queue) = super::queues(recv_q, send_q)?;

    let (local_ip, local_port, local_cut) = address(local, "local")?;
    let (foreign_ip, foreign_port, foreign_cut) = address(foreign, "foreign")?;
    let local_port =
        local_port.ok_or_else(|| format!("local port of `{}` is `*`", clip(local, 60)))?;

    // What is left: [State] [User Inode] [PID/Program name]; each may be absent.
    let mut tail = rest.trim();
    let mut state = None;
    let first = tail.split_whitespace().next().unwrap_or("");
    if let Some(s) = TcpState::parse(first) {
        state = Some(s);
        next_word(&mut tail);
        tail = tail.trim();
    }
    // `-e`: User (uid with -n, else a name) and Inode.
    let mut uid = None;
    let mut inode = None;
    {
        let mut probe = tail;
        let user = next_word(&mut probe);
        let ino = next_word(&mut probe);
        if !user.is_empty()
            && !looks_like_owner(user)
            && !ino.is_empty()
            && ino.bytes().all(|b| b.is_ascii_digit())
        {
            uid = user.parse::<u32>().ok();
            inode = ino.parse::<u64>().ok().filter(|&n| n != 0);
            tail = probe.trim();
        }
    }
    let first = tail.split_whitespace().next().unwrap_or("");
    if !first.is_empty() && !looks_like_owner(first) {
        return Err(format!(
            "`{}` is neither a TCP state nor a PID/Program column",
            clip(first, 30)
        ));
    }
    if transport == Transport::Tcp && state.is_none() {
        return Err("TCP line has no state".into());
    }
    if let Some(s) = state.filter(|&s| transport == Transport::Udp && s != TcpState::Established) {
        // netstat prints nothing for an unconnected UDP socket; keep other words honest.
        return Err(format!("UDP state `{s}` is not ESTABLISHED or empty"));
    }

    let local = (local_ip, local_port);
    let mut socket = line_socket(transport, proto_v6, local, (foreign_ip, foreign_port));
    socket.state = state;
    (socket.recv_queue, socket.send_queue) = (recv_queue, send_queue);
    socket.uid = uid;
    socket.inode = inode;
    if !tail.is_empty() && tail != "-" {
        let (pid, program) = tail
            .split_once('/')
            .ok_or_else(|| format!("PID/Program `{}` has no `/`", clip(tail, 60)))?;
        let pid = pid
            .parse::<u32>()
            .map_err(|_| format!("PID `{}` is not a number", clip(pid, 20)))?;
        socket.owners.push(owner(pid, program.trim_end()));
    }
    Ok((socket, local_cut || foreign_cut))
}

/// `1234/...` or `-`: the start of the PID/Program column.
fn looks_like_owner(word: &str) -> bool {
    word == "-"
        || word
            .split_once('/')
            .is_some_and(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// `addr:port` as netstat prints it; the bool says the address may have been cut.
fn address(word: &str, which: &str) -> Result<(Option<IpAddr>, Option<u16>, bool), String> {
    let (addr, port) = word
        .rsplit_once(':')
        .ok_or_else(|| format!("{which} address `{}` has no `:port`", clip(word, 60)))?;
    let port = port_or_star(port).map_err(|e| format!("{which} address: {e}"))?;
    let at_width = word.len() == SHORT_COLUMN && addr.contains(':');
    match host(addr) {
        Ok(ip) => Ok((ip, port, at_width)),
        Err(_) if at_width || word.len() == SHORT_COLUMN => Err(format!(
            "{which} address `{}` was cut by netstat to fit its 23-character column; run netstat with -W",
            clip(word, 60)
        )),
        Err(e) => Err(format!("{which} address: {e}")),
    }
}

/// Takes the next whitespace-separated word off the front of `rest`.
fn next_word<'a>(rest: &mut &'a str) -> &'a str {
    let s = rest.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let (word, tail) = s.split_at(end);
    *rest = tail;
    word
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn one(line: &str) -> Socket {
        let p = parse(line).clean();
        assert_eq!(p.sockets.len(), 1);
        p.sockets.into_iter().next().unwrap()
    }

    #[test]
    fn program_with_spaces_and_colons() {
        let s = one(
            "tcp        0      0 0.0.0.0:80              0.0.0.0:*               LISTEN      1234/nginx: master  ",
        );
        assert_eq!(s.owners.len(), 1);
        assert_eq!(s.owners[0].pid, 1234);
        assert_eq!(&*s.owners[0].program, "nginx: master");
        assert_eq!(s.foreign.port, None);
        assert_eq!(s.state, Some(TcpState::Listen));
    }

    #[test]
    fn ipv6_wildcards_and_mapped() {
        let s = one(
            "tcp6       0      0 :::80                   :::*                    LISTEN      -",
        );
        assert_eq!(s.protocol, Protocol::Tcp6);
        assert_eq!(s.local_ip, "::".parse::<IpAddr>().unwrap());
        assert!(s.owners.is_empty());
        let s = one(
            "tcp6       0      0 127.0.0.1:18081         127.0.0.1:37260         ESTABLISHED 9/x",
        );
        assert_eq!(s.local_ip, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        let s =
            one("tcp        0      0 ::ffff:127.0.0.1:18081  ::ffff:127.0.0.1:37260  ESTABLISHED");
        assert_eq!(s.protocol, Protocol::Tcp6);
    }

    #[test]
    fn udp_without_state() {
        let s = one(
            "udp        0      0 127.0.0.1:15353         0.0.0.0:*                           9054/pysrv: master  ",
        );
        assert_eq!(s.protocol, Protocol::Udp);
        assert_eq!(s.state, None);
        assert_eq!(&*s.owners[0].program, "pysrv: master");
        let s = one("udp        0      0 127.0.0.1:15353         0.0.0.0:*");
        assert!(s.owners.is_empty());
    }

    #[test]
    fn extended_columns() {
        let s = one(
            "udp6       0      0 :::15354                :::*                                0          17015      9054/pysrv: master  ",
        );
        assert_eq!(s.uid, Some(0));
        assert_eq!(s.inode, Some(17015));
        assert_eq!(&*s.owners[0].program, "pysrv: master");
        let s = one(
            "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      root       21767      1215/sshd           ",
        );
        assert_eq!(s.uid, None);
        assert_eq!(s.inode, Some(21767));
        let s = one(
            "tcp        0      0 1.2.3.4:5              6.7.8.9:10               TIME_WAIT   0          0          -",
        );
        assert_eq!(s.inode, None);
        assert!(s.owners.is_empty());
    }

    #[test]
    fn cut_address_is_reported() {
        let p = parse(
            "tcp6       0      0 fe80::fc:ff:fe00::18443 :::*                    LISTEN      9096/python3.11     ",
        );
        assert!(p.sockets.is_empty());
        assert_eq!(p.skipped.len(), 1);
        assert!(
            p.skipped[0].reason.contains("-W"),
            "{}",
            p.skipped[0].reason
        );
    }

    #[test]
    fn bad_lines_are_reported() {
        let p = parse(
            "raw6       0      0 :::58                   :::*                    7           867/systemd-network\ntcp 0 0 1.2.3.4:5 6.7.8.9:1 BOGUS\ntcp x 0 1.2.3.4:5 6.7.8.9:1 LISTEN\n",
        );
        assert_eq!(p.skipped.len(), 3);
        assert_eq!(p.skipped[1].line_no, 2);
    }
}
