//! FreeBSD and macOS `netstat -an [-p tcp|udp]` listings.
//!
//! `Proto Recv-Q Send-Q Local Address Foreign Address (state)` with `tcp4`, `tcp6`, `tcp46`
//! (a dual-stack IPv6 socket), `udp4`, `udp6`, `udp46` (and plain `tcp`/`udp` on old systems).
//! Addresses end in a *dotted* port: `127.0.0.1.8080`, `*.22`, `*.*`, `fe80::1%lo0.123`.
//! `-A` output (leading `Socket`/`Flowhash` or `Tcpcb` columns) is read too, but macOS cuts its
//! address columns to 18 characters there, so prefer plain `-an`. Lines of other sections
//! (UNIX domain sockets, kernel control modules, …) are reported as skipped.
//! BSD `netstat` prints no owners; use `lsof` where owners are wanted.

use super::{Parsed, clip, content_lines, host, line_socket};
use crate::model::{Socket, TcpState, Transport};

/// Parses BSD/macOS `netstat -an` output.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    // Name of the section a line is in, when it is not the Internet one.
    let mut other_section: Option<String> = None;
    for (no, line, trimmed) in content_lines(text) {
        if trimmed.starts_with("Active ") || trimmed.starts_with("Registered ") {
            other_section =
                (!trimmed.starts_with("Active Internet")).then(|| clip(trimmed, 60).to_owned());
            continue;
        }
        let first = trimmed.split_whitespace().next().unwrap_or("");
        if first == "Proto" || first == "Socket" || first == "Tcpcb" || first == "PCB" {
            continue;
        }
        if let Some(section) = &other_section {
            out.skip(
                no,
                line,
                format!("line of section `{section}`, which is not TCP/UDP"),
            );
            continue;
        }
        match parse_line(trimmed) {
            Ok(socket) => out.sockets.push(socket),
            Err(reason) => out.skip(no, line, reason),
        }
    }
    out
}

/// `true` for `a.b.c.d.port`, `*.port`, `*.*`, `v6.port` (dotted port).
pub(crate) fn is_bsd_address(word: &str) -> bool {
    match word.rsplit_once('.') {
        Some((h, p)) => {
            (p == "*" || p.bytes().all(|b| b.is_ascii_digit())) && !p.is_empty() && !h.is_empty()
        }
        None => false,
    }
}

fn proto(word: &str) -> Option<(Transport, Option<bool>)> {
    Some(match word {
        "tcp4" => (Transport::Tcp, Some(false)),
        "tcp6" | "tcp46" => (Transport::Tcp, Some(true)),
        "tcp" => (Transport::Tcp, None),
        "udp4" => (Transport::Udp, Some(false)),
        "udp6" | "udp46" => (Transport::Udp, Some(true)),
        "udp" => (Transport::Udp, None),
        _ => return None,
    })
}

fn parse_line(line: &str) -> Result<Socket, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    // Plain output starts with the protocol; -A output has one or two address columns first.
    let start = (0..3)
        .find(|&i| words.get(i).is_some_and(|w| proto(w).is_some()))
        .ok_or_else(|| {
            format!(
                "no TCP/UDP protocol column (tcp4, tcp6, tcp46, udp4, …) in `{}`",
                clip(words.first().copied().unwrap_or(""), 20)
            )
        })?;
    let word = |i: usize| words.get(start + i).copied().unwrap_or("");
    let (transport, family) = proto(word(0)).ok_or("no protocol column")?;
    if word(4).is_empty() {
        return Err(
            "too few columns: expected Proto, Recv-Q, Send-Q, Local and Foreign Address".into(),
        );
    }
    let (recv_queue, send_queue) = super::queues(word(1), word(2))?;
    let (local_ip, local_port) = address(word(3), "local")?;
    let foreign = address(word(4), "foreign")?;
    let state = match (word(5), transport) {
        ("", Transport::Tcp) => return Err("TCP line has no state".into()),
        ("", Transport::Udp) => None,
        (w, Transport::Tcp) => Some(
            TcpState::parse(w).ok_or_else(|| format!("`{}` is not a TCP state", clip(w, 30)))?,
        ),
        (w, Transport::Udp) => match TcpState::parse(w) {
            Some(TcpState::Established) => Some(TcpState::Established),
            _ => {
                return Err(format!(
                    "UDP state `{}` is not empty or ESTABLISHED",
                    clip(w, 30)
                ));
            }
        },
    };
    if let Some(extra) = words.get(start + 6) {
        return Err(format!(
            "unexpected column `{}` after the state",
            clip(extra, 30)
        ));
    }
    let local = (local_ip, local_port.unwrap_or(0));
    let mut socket = line_socket(transport, family.unwrap_or(false), local, foreign);
    socket.state = state;
    (socket.recv_queue, socket.send_queue) = (recv_queue, send_queue);
    Ok(socket)
}

/// `host.port` with `*` wildcards; an unbound local port (`*.*`) reads as port 0.
fn address(word: &str, which: &str) -> Result<(Option<std::net::IpAddr>, Option<u16>), String> {
    let (h, p) = word
        .rsplit_once('.')
        .ok_or_else(|| format!("{which} address `{}` has no `.port`", clip(word, 60)))?;
    let port = match p {
        "*" => None,
        p => Some(p.parse::<u16>().map_err(|_| {
            format!(
                "{which} port `{}` is not a number from 0 to 65535",
                clip(p, 20)
            )
        })?),
    };
    let ip = host(h).map_err(|e| {
        format!("{which} address: {e}; macOS `netstat -A` cuts long addresses, use `netstat -an`")
    })?;
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use std::net::IpAddr;

    #[test]
    fn dotted_ports_and_wildcards() {
        let p = parse(
            "Active Internet connections (including servers)\nProto Recv-Q Send-Q  Local Address          Foreign Address        (state)\ntcp4       0      0  127.0.0.1.8080         *.*                    LISTEN\ntcp46      0      0  *.80                   *.*                    LISTEN\nudp4       0      0  *.*                    *.*\ntcp6       0      0  fe80::1%lo0.631        *.*                    LISTEN\n",
        ).clean();
        assert_eq!(p.sockets.len(), 4);
        assert_eq!(p.sockets[0].local_port, 8080);
        assert_eq!(p.sockets[0].foreign.port, None);
        assert_eq!(p.sockets[1].protocol, Protocol::Tcp6);
        assert_eq!(p.sockets[1].local_ip, "::".parse::<IpAddr>().unwrap());
        assert_eq!(p.sockets[2].local_port, 0);
        assert_eq!(p.sockets[3].local_ip, "fe80::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn other_sections_are_reported() {
        let p = parse(
            "Active UNIX domain sockets\nAddress  Type   Recv-Q Send-Q    Inode     Conn     Refs  Nextref Addr\nfffff80003ab6100 stream      0      0        0 fffff80003ab6200        0        0\n",
        );
        assert_eq!(p.skipped.len(), 2);
        assert!(p.sockets.is_empty());
    }
}
