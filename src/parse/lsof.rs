//! `lsof -nP -iTCP -iUDP` listings (Linux, macOS, BSD): the source of owners where `netstat`
//! prints none.
//!
//! `COMMAND PID [TID TASKCMD] USER FD TYPE DEVICE SIZE/OFF NODE NAME`, one line per process and
//! file descriptor, so a socket shared by several processes appears once per holder: lines with
//! the same socket (same `DEVICE`, addresses and state) are merged into one socket with several
//! owners. `NAME` is `local`, `local->foreign`, then `(STATE)` for TCP; `*` is a wildcard host
//! or port and IPv6 hosts are bracketed. lsof prints no queue sizes (they read as 0). On Linux
//! `DEVICE` is the socket inode and is kept. The command name is printed by lsof with unsafe
//! bytes escaped (`my\x20srv`); the escapes are decoded. A connected UDP socket (one with a
//! foreign end) is `ESTABLISHED`, as netstat prints it.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Parsed, clip, content_lines, host, line_socket, owner, port_or_star};
use crate::model::{Endpoint, Protocol, Socket, TcpState, Transport};

/// Parses `lsof -nP -iTCP -iUDP` output.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    // (DEVICE, protocol, local, foreign, state) -> index in out.sockets
    type Key = (String, Protocol, IpAddr, u16, Endpoint, Option<TcpState>);
    let mut seen: HashMap<Key, usize> = HashMap::new();
    for (no, line, trimmed) in content_lines(text) {
        if trimmed.starts_with("COMMAND ") || trimmed == "COMMAND" {
            continue;
        }
        match parse_line(trimmed) {
            Ok((device, socket)) => {
                let key = (
                    device,
                    socket.protocol,
                    socket.local_ip,
                    socket.local_port,
                    socket.foreign,
                    socket.state,
                );
                match seen.get(&key).and_then(|&i| out.sockets.get_mut(i)) {
                    Some(existing) => {
                        for o in socket.owners {
                            if !existing.owners.iter().any(|e| e.pid == o.pid) {
                                existing.owners.push(o);
                            }
                        }
                    }
                    None => {
                        seen.insert(key, out.sockets.len());
                        out.sockets.push(socket);
                    }
                }
            }
            Err(reason) => out.skip(no, line, reason),
        }
    }
    out
}

fn parse_line(line: &str) -> Result<(String, Socket), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let t = words
        .iter()
        .position(|w| *w == "IPv4" || *w == "IPv6")
        .ok_or("no IPv4/IPv6 TYPE column: not an Internet socket")?;
    let ipv6 = words.get(t) == Some(&"IPv6");
    let command = decode_escapes(words.first().copied().unwrap_or(""));
    let pid = words
        .get(1)
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(|| {
            format!(
                "PID `{}` is not a number",
                clip(words.get(1).copied().unwrap_or(""), 20)
            )
        })?;
    let n = (t + 1..words.len())
        .find(|&i| matches!(words.get(i).copied(), Some("TCP" | "UDP")))
        .ok_or("no TCP/UDP NODE column after TYPE")?;
    let transport = if words.get(n) == Some(&"TCP") {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let device = words.get(t + 1).copied().unwrap_or("").to_owned();
    let name = words.get(n + 1).copied().ok_or("no NAME column")?;
    let state_word = words.get(n + 2).copied();

    let (local, foreign) = match name.split_once("->") {
        Some((l, f)) => (l, Some(f)),
        None => (name, None),
    };
    let (local_ip, local_port) = address(local, "local")?;
    let (foreign_ip, foreign_port) = match foreign {
        Some(f) => address(f, "foreign")?,
        None => (None, None),
    };
    let state = match (transport, state_word) {
        (Transport::Tcp, Some(w)) => {
            let inner = w
                .strip_prefix('(')
                .and_then(|w| w.strip_suffix(')'))
                .ok_or_else(|| format!("state `{}` is not `(STATE)`", clip(w, 30)))?;
            match TcpState::parse(inner) {
                Some(s) => Some(s),
                None if inner == "IDLE" || inner == "BOUND" => Some(TcpState::Close),
                None => return Err(format!("`{}` is not a TCP state", clip(inner, 30))),
            }
        }
        (Transport::Tcp, None) => return Err("TCP line has no (STATE)".into()),
        (Transport::Udp, _) => foreign.map(|_| TcpState::Established),
    };
    let local = (local_ip, local_port.unwrap_or(0));
    let mut socket = line_socket(transport, ipv6, local, (foreign_ip, foreign_port));
    socket.state = state;
    // On Linux DEVICE is the socket's inode number; elsewhere a kernel address (0x…).
    socket.inode = device.parse::<u64>().ok().filter(|&i| i != 0);
    socket.owners.push(owner(pid, &command));
    Ok((device, socket))
}

fn address(word: &str, which: &str) -> Result<(Option<IpAddr>, Option<u16>), String> {
    let (h, p) = word
        .rsplit_once(':')
        .ok_or_else(|| format!("{which} address `{}` has no `:port`", clip(word, 60)))?;
    let port = port_or_star(p).map_err(|e| format!("{which} address: {e} (run lsof with -P)"))?;
    let ip = host(h).map_err(|e| format!("{which} address: {e} (run lsof with -n)"))?;
    Ok((ip, port))
}

/// Decodes lsof's `\xHH` escapes; other backslashes are kept.
fn decode_escapes(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'\\')
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(v) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        if let Some(&b) = bytes.get(i) {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_shared_sockets_and_decodes_names() {
        let p = parse(
            "COMMAND    PID USER   FD   TYPE DEVICE SIZE/OFF NODE NAME\npython3.1 9054 root    3u  IPv4  17001      0t0  TCP 127.0.0.1:18080 (LISTEN)\nmy\\x20srv 9056 root    3u  IPv4  17001      0t0  TCP 127.0.0.1:18080 (LISTEN)\npython3.1 9054 root   17u  IPv6  17016      0t0  UDP [::1]:46151->[::1]:15354 \n",
        ).clean();
        assert_eq!(p.sockets.len(), 2);
        assert_eq!(p.sockets[0].owners.len(), 2);
        assert_eq!(&*p.sockets[0].owners[1].program, "my srv");
        assert_eq!(p.sockets[0].inode, Some(17001));
        assert_eq!(p.sockets[1].state, Some(TcpState::Established));
        assert_eq!(p.sockets[1].protocol, Protocol::Udp6);
    }

    #[test]
    fn non_inet_lines_are_reported() {
        let p = parse(
            "systemd 1 root cwd DIR 8,2 4096 2 /\nx 1 root 3u IPv4 1 0t0 TCP 1.2.3.4:http (LISTEN)\n",
        );
        assert_eq!(p.skipped.len(), 2);
    }
}
