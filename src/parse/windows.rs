//! Windows `netstat -ano` (and `-anob`) listings, as printed over OpenSSH on a Windows host.
//!
//! `Proto Local Address Foreign Address State PID`: `TCP 0.0.0.0:135 0.0.0.0:0 LISTENING 1012`,
//! `TCP [::]:445 [::]:0 LISTENING 4`, `UDP 0.0.0.0:500 *:* 6856` (UDP has no state). The
//! protocol column does not name the family; it is told from the address. A listening socket's
//! foreign `0.0.0.0:0` / `[::]:0` and UDP's `*:*` read as port `None`. `BOUND` and `DELETE_TCB`
//! (a socket bound but neither listening nor connected, and one being torn down) read as `CLOSE`.
//! PID 0 (TIME_WAIT sockets, held by no process) gives no owner; otherwise the owner has the pid
//! and an empty program, or, with `-b`, the `[name.exe]` printed under the line. The other `-b`
//! detail lines (service names such as `RpcSs`, `Can not obtain ownership information`) are
//! recognised and not read. Windows localises state names: run `netstat` under an English UI
//! culture, or unknown states are reported as skipped.

use super::{Parsed, clip, content_lines, host, line_socket, owner};
use crate::model::{Socket, TcpState, Transport};

/// Parses Windows `netstat -ano` / `-anob` output.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    // Whether the previous line was a socket (so `-b` detail lines may follow).
    let mut after_socket = false;
    for (no, line, trimmed) in content_lines(text) {
        if trimmed == "Active Connections" || trimmed.starts_with("Proto ") {
            continue;
        }
        let first = trimmed.split_whitespace().next().unwrap_or("");
        if first == "TCP" || first == "UDP" {
            match parse_line(trimmed) {
                Ok(socket) => {
                    out.sockets.push(socket);
                    after_socket = true;
                }
                Err(reason) => {
                    out.skip(no, line, reason);
                    after_socket = false;
                }
            }
            continue;
        }
        if after_socket {
            if let Some(exe) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                if let Some(o) = out.sockets.last_mut().and_then(|s| s.owners.first_mut()) {
                    o.program = exe.into();
                }
                continue;
            }
            if trimmed == "Can not obtain ownership information"
                || !trimmed.contains(char::is_whitespace)
            {
                // -b detail: ownership unknown, or a service/component name.
                continue;
            }
        }
        out.skip(no, line, "not a TCP/UDP line of `netstat -ano`");
    }
    out
}

fn parse_line(line: &str) -> Result<Socket, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let word = |i: usize| words.get(i).copied().unwrap_or("");
    let transport = if word(0) == "TCP" {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let (local_ip, local_port) = address(word(1), "local")?;
    let (foreign_ip, foreign_port) = address(word(2), "foreign")?;
    let local_port =
        local_port.ok_or_else(|| format!("local port of `{}` is `*`", clip(word(1), 60)))?;
    let (state, pid_word) = match transport {
        Transport::Tcp => {
            let w = word(3);
            let state = match w {
                "BOUND" | "DELETE_TCB" => TcpState::Close,
                w => TcpState::parse(w).ok_or_else(|| {
                    format!("`{}` is not a TCP state (a localised Windows? run netstat with an English UI)", clip(w, 30))
                })?,
            };
            (Some(state), word(4))
        }
        Transport::Udp => (None, word(3)),
    };
    let extra = if transport == Transport::Tcp { 5 } else { 4 };
    if let Some(w) = words.get(extra) {
        return Err(format!("unexpected column `{}` after the PID", clip(w, 30)));
    }
    let mut socket = line_socket(
        transport,
        false,
        (local_ip, local_port),
        (foreign_ip, foreign_port),
    );
    // Windows prints port 0 for "no foreign end".
    let foreign = &mut socket.foreign;
    foreign.port = foreign
        .port
        .filter(|&p| !(p == 0 && foreign.ip.is_unspecified()));
    socket.state = state;
    if !pid_word.is_empty() {
        let pid = pid_word.parse::<u32>().map_err(|_| {
            format!(
                "PID `{}` is not a number (run netstat with -o)",
                clip(pid_word, 20)
            )
        })?;
        if pid != 0 {
            socket.owners.push(owner(pid, ""));
        }
    }
    Ok(socket)
}

fn address(word: &str, which: &str) -> Result<(Option<std::net::IpAddr>, Option<u16>), String> {
    let (h, p) = word
        .rsplit_once(':')
        .ok_or_else(|| format!("{which} address `{}` has no `:port`", clip(word, 60)))?;
    let port = super::port_or_star(p)
        .map_err(|e| format!("{which} address: {e} (run netstat with -n)"))?;
    let ip = host(h).map_err(|e| format!("{which} address: {e} (run netstat with -n)"))?;
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use std::net::IpAddr;

    #[test]
    fn listening_udp_and_b_lines() {
        let p = parse(
            "\nActive Connections\n\n  Proto  Local Address          Foreign Address        State           PID\n  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1712\n  RpcSs\n [svchost.exe]\n  TCP    [::]:445               [::]:0                 LISTENING       4\n Can not obtain ownership information\n  UDP    [fe80::1%12]:1900      *:*                                    27696\n  TCP    10.0.0.2:50000         93.184.216.34:443      TIME_WAIT       0\n",
        ).clean();
        assert_eq!(p.sockets.len(), 4);
        assert_eq!(&*p.sockets[0].owners[0].program, "svchost.exe");
        assert_eq!(p.sockets[0].foreign.port, None);
        assert_eq!(p.sockets[0].state, Some(TcpState::Listen));
        assert_eq!(p.sockets[1].protocol, Protocol::Tcp6);
        assert_eq!(&*p.sockets[1].owners[0].program, "");
        assert_eq!(p.sockets[2].protocol, Protocol::Udp6);
        assert_eq!(p.sockets[2].local_ip, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(p.sockets[2].foreign.port, None);
        assert!(p.sockets[3].owners.is_empty());
        assert_eq!(p.sockets[3].foreign.port, Some(443));
    }

    #[test]
    fn localised_state_is_reported() {
        let p = parse(
            "  TCP    0.0.0.0:135            0.0.0.0:0              ABH\u{d6}REN       1712\n",
        );
        assert_eq!(p.skipped.len(), 1);
    }
}
