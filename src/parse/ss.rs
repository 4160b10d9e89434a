//! iproute2 `ss` listings: `ss -tunap`, `ss -tunapH`, `ss -tanp`, `ss -uanp`, with extra
//! `-e` fields (`uid:`, `ino:`) when present.
//!
//! Columns: `[Netid] State Recv-Q Send-Q Local:Port Peer:Port [Process]`. The `Netid` column is
//! printed only when several protocols are listed; without it the transport is told from the
//! states in the whole text (`UNCONN` → UDP, `LISTEN`/`TIME-WAIT`/… → TCP; a text with only
//! `ESTAB` lines is taken as TCP and a note says so), or given with [`parse_as`].
//!
//! Addresses: `127.0.0.1:80`, `[::1]:80`, `[::ffff:127.0.0.1]:80`, `0.0.0.0%lo:53`,
//! `[fe80::1]%eth0:123`, and the old unbracketed `:::22`. A host `*` is the IPv6 wildcard of a
//! dual-stack socket in modern `ss` (which prints `0.0.0.0` for an IPv4 wildcard and `[::]` for
//! a v6-only one), but the IPv4 wildcard in old `ss` (iproute2 before 4.17, e.g. CentOS 7), which
//! never prints `0.0.0.0`: so `*` is read as IPv4 when the text contains no `0.0.0.0` at all.
//! Ports must be numeric (`ss -n`). Owners: `users:(("nginx",pid=812,fd=6),("nginx",pid=813,fd=6))`, and the old
//! `users:(("sshd",812,3))`.

use super::{Parsed, clip, content_lines, host, line_socket, owner, port_or_star};
use crate::model::{Owners, Socket, TcpState, Transport};

/// Parses `ss` output; the transport of lines without a `Netid` column is told from the text.
pub(crate) fn parse(text: &str) -> Parsed {
    parse_as(text, None)
}

/// Parses `ss` output; `transport` is used for lines without a `Netid` column (as printed by
/// `ss -t…` or `ss -u…` alone). `None` tells it from the states in the text.
pub fn parse_as(text: &str, transport: Option<Transport>) -> Parsed {
    let mut out = Parsed::default();
    let mut guessed = None;
    let star_v4 = !text.contains("0.0.0.0");
    for (no, line, trimmed) in content_lines(text) {
        if is_header(trimmed) {
            continue;
        }
        if line.starts_with(char::is_whitespace) && !starts_with_known_word(trimmed) {
            out.skip(
                no,
                line,
                "detail line of the socket above (ss -i/-m/-o); not a socket of its own",
            );
            continue;
        }
        let default = match transport {
            Some(t) => t,
            None => *guessed.get_or_insert_with(|| guess_transport(text, &mut out)),
        };
        match parse_line(trimmed, default, star_v4) {
            Ok(socket) => out.sockets.push(socket),
            Err(reason) => out.skip(no, line, reason),
        }
    }
    out
}

/// `true` for a word `ss` prints as a state.
pub(crate) fn is_ss_state(word: &str) -> bool {
    matches!(
        word,
        "ESTAB"
            | "UNCONN"
            | "LISTEN"
            | "SYN-SENT"
            | "SYN-RECV"
            | "FIN-WAIT-1"
            | "FIN-WAIT-2"
            | "TIME-WAIT"
            | "CLOSE-WAIT"
            | "LAST-ACK"
            | "CLOSING"
            | "CLOSED"
            | "UNKNOWN"
    )
}

fn is_header(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    first == "Netid" || (first == "State" && line.contains("Recv-Q"))
}

fn starts_with_known_word(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    is_ss_state(first) || is_netid(first)
}

fn is_netid(word: &str) -> bool {
    matches!(
        word,
        "tcp"
            | "udp"
            | "raw"
            | "u_str"
            | "u_dgr"
            | "u_seq"
            | "p_raw"
            | "p_dgr"
            | "nl"
            | "sctp"
            | "mptcp"
            | "dccp"
            | "v_str"
            | "v_dgr"
            | "tipc"
            | "xdp"
            | "udplite"
            | "unknown"
            | "???"
    )
}

/// The transport of a text printed without `Netid`, from its states.
fn guess_transport(text: &str, out: &mut Parsed) -> Transport {
    let mut udp = false;
    let mut tcp = false;
    for line in text.lines() {
        match line.split_whitespace().next().unwrap_or("") {
            "UNCONN" => udp = true,
            "ESTAB" | "Netid" | "State" | "" => {}
            word if is_ss_state(word) => tcp = true,
            _ => {}
        }
    }
    match (tcp, udp) {
        (false, true) => Transport::Udp,
        (true, _) => Transport::Tcp,
        (false, false) => {
            if text
                .lines()
                .any(|l| l.split_whitespace().next() == Some("ESTAB"))
            {
                out.note("ss output has no Netid column and only ESTAB lines; read them as TCP");
            }
            Transport::Tcp
        }
    }
}

pub(crate) fn parse_line(line: &str, default: Transport, star_v4: bool) -> Result<Socket, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (transport, start) = match words.first().copied().unwrap_or("") {
        "tcp" => (Transport::Tcp, 1),
        "udp" => (Transport::Udp, 1),
        w if is_ss_state(w) => (default, 0),
        w if is_netid(w) => {
            return Err(format!("socket type `{w}` is not TCP or UDP"));
        }
        w => {
            return Err(format!(
                "`{}` is neither an ss socket type nor a state",
                clip(w, 30)
            ));
        }
    };
    let field = |i: usize| words.get(start + i).copied().unwrap_or("");
    let state_word = field(0);
    let recv_q = field(1);
    let send_q = field(2);
    let local = field(3);
    let peer = field(4);
    if peer.is_empty() {
        return Err(
            "too few columns: expected State, Recv-Q, Send-Q, Local and Peer Address:Port".into(),
        );
    }
    let state = match state_word {
        "UNCONN" if transport == Transport::Udp => None,
        "UNKNOWN" => return Err("state UNKNOWN cannot be read".into()),
        w => match TcpState::parse(w) {
            Some(TcpState::Established) if transport == Transport::Udp => {
                Some(TcpState::Established)
            }
            Some(_) if transport == Transport::Udp => {
                return Err(format!("UDP state `{w}` is not UNCONN or ESTAB"));
            }
            Some(s) => Some(s),
            None => return Err(format!("`{}` is not an ss state", clip(w, 30))),
        },
    };
    let (recv_queue, send_queue) = super::queues(recv_q, send_q)?;
    let (local_ip, local_port) = address(local, "local")?;
    let local_port =
        local_port.ok_or_else(|| format!("local port of `{}` is `*`", clip(local, 60)))?;
    let peer_addr = address(peer, "peer")?;
    // A `*` local address is IPv6's wildcard unless ss printed it `0.0.0.0`-style (`star_v4`).
    let v6_wildcard = local_ip.is_none() && !star_v4;
    let mut socket = line_socket(transport, v6_wildcard, (local_ip, local_port), peer_addr);
    socket.state = state;
    (socket.recv_queue, socket.send_queue) = (recv_queue, send_queue);
    if let Some(iface) = interface_of(local) {
        socket.place = Some(std::sync::Arc::new(crate::model::Place {
            netns: None,
            interface: Some(iface.into()),
        }));
    }

    // The process column and `-e` extras: everything after the peer column.
    let tail = after_words(line, start + 5);
    if let Some(users) = tail.find("users:(") {
        let list = tail.get(users + "users:(".len()..).unwrap_or("");
        socket.owners = parse_users(list)?;
    }
    for word in tail.split_whitespace() {
        if let Some(v) = word.strip_prefix("ino:") {
            socket.inode = v.parse::<u64>().ok().filter(|&n| n != 0);
        } else if let Some(v) = word.strip_prefix("uid:") {
            socket.uid = v.parse::<u32>().ok();
        }
    }
    Ok(socket)
}

/// The text of `line` after its first `n` words.
fn after_words(line: &str, n: usize) -> &str {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest.get(end..).unwrap_or("");
    }
    rest.trim()
}

/// The `%iface` of an address (`0.0.0.0%lo:53`, `[fe80::1]%eth0:123`): the device the socket
/// is bound to, or the scope of a link-local address.
fn interface_of(word: &str) -> Option<&str> {
    let (_, rest) = word.split_once('%')?;
    let (iface, _) = rest.rsplit_once(':')?;
    (!iface.is_empty()).then_some(iface)
}

/// `host:port` with `*` wildcards, brackets and `%iface` suffixes.
fn address(word: &str, which: &str) -> Result<(Option<std::net::IpAddr>, Option<u16>), String> {
    let (h, p) = word
        .rsplit_once(':')
        .ok_or_else(|| format!("{which} address `{}` has no `:port`", clip(word, 60)))?;
    let port = port_or_star(p).map_err(|e| format!("{which} address: {e} (run ss with -n)"))?;
    let ip = host(h).map_err(|e| format!("{which} address: {e} (run ss with -n)"))?;
    Ok((ip, port))
}

/// The inside of `users:(…)`: `("name",pid=1,fd=2),("other",pid=3,fd=4))`.
fn parse_users(list: &str) -> Result<Owners, String> {
    let mut owners = Owners::new();
    let mut rest = list;
    // Bounded: each turn consumes at least one entry's opening `("`.
    while let Some(open) = rest.find("(\"") {
        let body = rest.get(open + 2..).unwrap_or("");
        // The name ends at the `",` that is followed by `pid=` or a digit (the old format).
        let mut search = 0;
        let mut name_end = None;
        while let Some(i) = body.get(search..).and_then(|s| s.find("\",")) {
            let at = search + i;
            let after = body.get(at + 2..).unwrap_or("");
            if after.starts_with("pid=") || after.starts_with(|c: char| c.is_ascii_digit()) {
                name_end = Some(at);
                break;
            }
            search = at + 2;
        }
        let Some(name_end) = name_end else {
            return Err(format!("owner entry `{}` has no pid", clip(body, 60)));
        };
        let name = body.get(..name_end).unwrap_or("");
        let after = body.get(name_end + 2..).unwrap_or("");
        let pid_text = after.strip_prefix("pid=").unwrap_or(after);
        let digits = pid_text.bytes().take_while(u8::is_ascii_digit).count();
        let pid = pid_text
            .get(..digits)
            .and_then(|d| d.parse::<u32>().ok())
            .ok_or_else(|| format!("owner `{}` has a bad pid", clip(name, 40)))?;
        owners.push(owner(pid, name));
        let close = after.find(')').map_or(after.len(), |c| c + 1);
        rest = after.get(close..).unwrap_or("");
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use std::net::IpAddr;

    #[test]
    fn bound_interfaces_are_kept() {
        let p = parse(
            "udp UNCONN 0 0 [fe80::fc:ff:fe00:1]%eth0:15356 [::]:*\nudp UNCONN 0 0 0.0.0.0%lo:15355 0.0.0.0:*\ntcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*",
        ).clean();
        let ifaces: Vec<Option<&str>> = p.sockets.iter().map(|s| s.interface()).collect();
        assert_eq!(ifaces, [Some("eth0"), Some("lo"), None]);
        assert_eq!(interface_of("x%:1"), None);
    }

    #[test]
    fn several_owners_with_spaces() {
        let p = parse(
            "tcp   LISTEN 0 128 0.0.0.0:18090 0.0.0.0:* users:((\"my srv: worker\",pid=9056,fd=19),(\"python3.11\",pid=9054,fd=19))",
        ).clean();
        let s = &p.sockets[0];
        assert_eq!(s.owners.len(), 2);
        assert_eq!(&*s.owners[0].program, "my srv: worker");
        assert_eq!(s.owners[1].pid, 9054);
        assert_eq!(s.protocol, Protocol::Tcp);
    }

    #[test]
    fn old_users_format_and_extras() {
        let p = parse(
            "tcp LISTEN 0 128 *:22 *:* users:((\"sshd\",812,3)) uid:0 ino:1234 sk:1 <->\nudp UNCONN 0 0 0.0.0.0:1 0.0.0.0:*",
        );
        let s = &p.sockets[0];
        assert_eq!(s.owners[0].pid, 812);
        assert_eq!(s.inode, Some(1234));
        assert_eq!(s.uid, Some(0));
        assert_eq!(s.protocol, Protocol::Tcp6);
        assert_eq!(s.local_ip, "::".parse::<IpAddr>().unwrap());
        // Old ss (no `0.0.0.0` anywhere): `*` is the IPv4 wildcard.
        let p = parse("tcp LISTEN 0 128 *:22 *:*\ntcp LISTEN 0 128 [::]:22 [::]:*");
        assert_eq!(p.sockets[0].protocol, Protocol::Tcp);
        assert_eq!(p.sockets[0].local_ip, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(p.sockets[1].protocol, Protocol::Tcp6);
    }

    #[test]
    fn scope_suffixes_and_mapped() {
        let p = parse(
            "udp UNCONN 0 0 [fe80::fc:ff:fe00:1]%eth0:15356 [::]:*\nudp UNCONN 0 0 0.0.0.0%lo:15355 0.0.0.0:*\ntcp ESTAB 0 0 [::ffff:127.0.0.1]:18081 [::ffff:127.0.0.1]:37260",
        ).clean();
        assert_eq!(p.sockets[0].protocol, Protocol::Udp6);
        assert_eq!(p.sockets[0].state, None);
        assert_eq!(p.sockets[1].protocol, Protocol::Udp);
        assert_eq!(p.sockets[2].protocol, Protocol::Tcp6);
        assert_eq!(p.sockets[2].foreign.port, Some(37260));
    }

    #[test]
    fn transport_without_netid() {
        let p = parse(
            "State Recv-Q Send-Q Local Address:Port Peer Address:Port\nUNCONN 0 0 127.0.0.1:53 0.0.0.0:*\nESTAB 0 0 [::1]:1 [::1]:2\n",
        );
        assert!(
            p.sockets
                .iter()
                .all(|s| s.protocol.transport() == Transport::Udp)
        );
        let p = parse("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2\n");
        assert_eq!(p.sockets[0].protocol, Protocol::Tcp);
        assert_eq!(p.notes.len(), 1);
        let p = parse_as("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2\n", Some(Transport::Udp));
        assert_eq!(p.sockets[0].protocol, Protocol::Udp);
    }

    #[test]
    fn non_inet_and_bad_lines_are_reported() {
        let p = parse(
            "u_str ESTAB 0 0 * 123 * 456\ntcp LISTEN 0 x 1.2.3.4:1 *:*\ntcp LISTEN 0 0 1.2.3.4:1 *:* users:((\"x\",pid=,fd=1))\n",
        );
        assert_eq!(p.skipped.len(), 3, "{:?}", p.skipped);
        assert!(p.sockets.is_empty());
    }
}
