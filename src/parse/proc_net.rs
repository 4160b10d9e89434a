//! `/proc/net/{tcp,tcp6,udp,udp6}` tables.
//!
//! A table does not say which protocol it lists. Three ways to tell:
//! - [`parse_table`] is told the protocol;
//! - a *marker line* `== tcp` (see [`PROC_NET_MARKER`]) before each table, as printed by
//!   [`PROC_NET_COMMAND`], which the remote side runs as one command;
//! - the table's own header: `tcp6`/`udp6` headers say `remote_address`, `tcp`/`udp` say
//!   `rem_address`, and only the UDP ones end in `ref pointer drops`.
//!
//! Addresses are printed by the kernel as 32-bit words in the *host's* byte order, so a table from
//! a big-endian host reads differently from ours. [`detect_byte_order`] tells which (see there);
//! [`parse`] uses it unless told. Ports are always printed most significant digit first.
//!
//! Kept: queues (`tx_queue` → send, `rx_queue` → recv), uid, inode (0 → `None`, a socket no
//! process holds, e.g. TIME_WAIT). UDP state `07` (close) → `None`, `01` → `ESTABLISHED`.
//! A foreign port 0 is `None` (netstat prints `*`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Parsed, clip, content_lines};
use crate::model::{Endpoint, Protocol, Socket, TcpState, Transport};

/// Prefix of a marker line that names the table after it: `== tcp`, `== tcp6`, `== udp`,
/// `== udp6` (the file's name under `/proc/net/`).
pub(crate) const PROC_NET_MARKER: &str = "== ";

/// A POSIX `sh` command that prints all four tables, each after its marker line. A missing file
/// (no IPv6 on the host) prints only its marker. Run it with `LC_ALL=C`.
pub(crate) const PROC_NET_COMMAND: &str =
    "for f in tcp tcp6 udp udp6; do echo \"== $f\"; cat /proc/net/$f 2>/dev/null; done";

/// Byte order of the host that printed a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// x86, most ARM, RISC-V: `127.0.0.1` prints as `0100007F`.
    Little,
    /// s390x, some MIPS/PowerPC: `127.0.0.1` prints as `7F000001`.
    Big,
}

impl ByteOrder {
    /// The byte order of the machine this code runs on.
    pub(crate) fn native() -> ByteOrder {
        if cfg!(target_endian = "big") {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        }
    }
}

/// Parses one or several tables. Tables are named by marker lines or their headers;
/// `order` `None` detects the byte order from the text ([`detect_byte_order`]).
pub fn parse(text: &str, order: Option<ByteOrder>) -> Parsed {
    let order = order.unwrap_or_else(|| detect_byte_order(text));
    let mut out = Parsed::default();
    let mut protocol: Option<Protocol> = None;
    // A marker names the table; the header right after it must not override it.
    let mut marker_pending = false;
    for (no, line, trimmed) in content_lines(text) {
        if let Some(name) = trimmed.strip_prefix(PROC_NET_MARKER) {
            marker_pending = true;
            match protocol_of_name(name.trim()) {
                Some(p) => protocol = Some(p),
                None => {
                    protocol = None;
                    out.skip(
                        no,
                        line,
                        format!(
                            "marker names `{}`, not tcp, tcp6, udp or udp6",
                            clip(name.trim(), 30)
                        ),
                    );
                }
            }
            continue;
        }
        if let Some(p) = header_protocol(trimmed) {
            if !marker_pending {
                protocol = Some(p);
            }
            marker_pending = false;
            continue;
        }
        marker_pending = false;
        let Some(p) = protocol else {
            out.skip(
                no,
                line,
                "table row before any `== tcp`-style marker or header line: protocol unknown",
            );
            continue;
        };
        match parse_row(trimmed, p, order) {
            Ok(socket) => out.sockets.push(socket),
            Err(reason) => out.skip(no, line, reason),
        }
    }
    out
}

/// Parses one table of a known protocol (header optional).
pub fn parse_table(text: &str, protocol: Protocol, order: ByteOrder) -> Parsed {
    let mut out = Parsed::default();
    for (no, line, trimmed) in content_lines(text) {
        if header_protocol(trimmed).is_some() {
            continue;
        }
        match parse_row(trimmed, protocol, order) {
            Ok(socket) => out.sockets.push(socket),
            Err(reason) => out.skip(no, line, reason),
        }
    }
    out
}

/// Tells the byte order of the host that printed `text`.
///
/// Heuristic: each address is read both ways and scored where exactly one reading is an address
/// every host has in use: IPv4 `127.x.x.x` (loopback) and `0.0.0.0` excluded as
/// order-free; IPv6 `::1`, `::ffff:a.b.c.d` (v4-mapped) and `fe80::/10` (link-local).
/// `127.0.0.1` reads as `0100007F` on little-endian and `7F000001` on big-endian hosts; a
/// big-endian `0100007F` would be `1.0.0.127`, which nobody binds. The order with more hits wins;
/// with no evidence (or a tie) the answer is little-endian, the order of nearly every host today.
pub fn detect_byte_order(text: &str) -> ByteOrder {
    let (mut little, mut big) = (0usize, 0usize);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(sl) = words.next() else { continue };
        if !sl.ends_with(':') {
            continue;
        }
        for word in words.take(2) {
            let Some((addr, _)) = word.split_once(':') else {
                continue;
            };
            let l = decode_addr(addr, ByteOrder::Little).map(|ip| well_known(&ip));
            let b = decode_addr(addr, ByteOrder::Big).map(|ip| well_known(&ip));
            match (l, b) {
                (Some(true), Some(false)) => little += 1,
                (Some(false), Some(true)) => big += 1,
                _ => {}
            }
        }
    }
    if big > little {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    }
}

fn well_known(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            *v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some() || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

fn protocol_of_name(name: &str) -> Option<Protocol> {
    match name {
        "tcp" => Some(Protocol::Tcp),
        "tcp6" => Some(Protocol::Tcp6),
        "udp" => Some(Protocol::Udp),
        "udp6" => Some(Protocol::Udp6),
        _ => None,
    }
}

/// The protocol a header line implies, or `None` if the line is not a header.
fn header_protocol(line: &str) -> Option<Protocol> {
    if !line.starts_with("sl ") {
        return None;
    }
    let v6 = line.contains("remote_address");
    let udp = line.contains("drops");
    Some(Protocol::new(
        if udp { Transport::Udp } else { Transport::Tcp },
        v6,
    ))
}

fn parse_row(line: &str, protocol: Protocol, order: ByteOrder) -> Result<Socket, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 10 {
        return Err(format!(
            "{} columns where a /proc/net row has at least 10",
            words.len()
        ));
    }
    let word = |i: usize| words.get(i).copied().unwrap_or("");
    if !word(0).ends_with(':') {
        return Err(format!(
            "first column `{}` is not a slot number like `0:`",
            clip(word(0), 20)
        ));
    }
    let (local_ip, local_port) = endpoint(word(1), protocol, order, "local")?;
    let (rem_ip, rem_port) = endpoint(word(2), protocol, order, "remote")?;
    let st = u8::from_str_radix(word(3), 16)
        .map_err(|_| format!("state `{}` is not hex", clip(word(3), 10)))?;
    let state = match protocol.transport() {
        Transport::Tcp => Some(
            TcpState::from_kernel(st).ok_or_else(|| format!("TCP state {st:#04x} is unknown"))?,
        ),
        Transport::Udp => match st {
            7 => None,
            other => Some(
                TcpState::from_kernel(other)
                    .ok_or_else(|| format!("UDP state {other:#04x} is unknown"))?,
            ),
        },
    };
    let (tx, rx) = word(4)
        .split_once(':')
        .ok_or_else(|| format!("queues `{}` are not `tx:rx`", clip(word(4), 30)))?;
    let send_queue = u64::from_str_radix(tx, 16)
        .map_err(|_| format!("tx_queue `{}` is not hex", clip(tx, 20)))?;
    let recv_queue = u64::from_str_radix(rx, 16)
        .map_err(|_| format!("rx_queue `{}` is not hex", clip(rx, 20)))?;
    let uid = word(7)
        .parse::<u32>()
        .map_err(|_| format!("uid `{}` is not a number", clip(word(7), 20)))?;
    let inode = word(9)
        .parse::<u64>()
        .map_err(|_| format!("inode `{}` is not a number", clip(word(9), 30)))?;
    let mut socket = Socket::new(
        protocol,
        local_ip,
        local_port,
        Endpoint {
            ip: rem_ip,
            port: (rem_port != 0).then_some(rem_port),
        },
    );
    socket.state = state;
    socket.send_queue = super::queue(send_queue);
    socket.recv_queue = super::queue(recv_queue);
    socket.uid = Some(uid);
    socket.inode = (inode != 0).then_some(inode);
    Ok(socket)
}

fn endpoint(
    word: &str,
    protocol: Protocol,
    order: ByteOrder,
    which: &str,
) -> Result<(IpAddr, u16), String> {
    let (addr, port) = word
        .split_once(':')
        .ok_or_else(|| format!("{which} address `{}` is not `HEX:PORT`", clip(word, 60)))?;
    let want = if protocol.is_ipv6() { 32 } else { 8 };
    if addr.len() != want {
        return Err(format!(
            "{which} address `{}` has {} hex digits where {} has {want}",
            clip(addr, 40),
            addr.len(),
            protocol
        ));
    }
    let ip = decode_addr(addr, order)
        .ok_or_else(|| format!("{which} address `{}` is not hex", clip(addr, 40)))?;
    let port = if port.len() == 4 {
        u16::from_str_radix(port, 16).ok()
    } else {
        None
    }
    .ok_or_else(|| format!("{which} port `{}` is not 4 hex digits", clip(port, 20)))?;
    Ok((ip, port))
}

/// Decodes an address printed as 32-bit words in `order`.
fn decode_addr(hex: &str, order: ByteOrder) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(match order {
            ByteOrder::Little => w.to_le_bytes(),
            ByteOrder::Big => w.to_be_bytes(),
        })
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Encodes an address as the kernel prints it on a host of `order` (used by the renderer).
pub(crate) fn encode_addr(ip: IpAddr, order: ByteOrder) -> String {
    let word = |b: [u8; 4]| -> u32 {
        match order {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        }
    };
    match ip {
        IpAddr::V4(v4) => format!("{:08X}", word(v4.octets())),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut s = String::with_capacity(32);
            for chunk in o.chunks_exact(4) {
                let b = [chunk[0], chunk[1], chunk[2], chunk[3]];
                s.push_str(&format!("{:08X}", word(b)));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP_LE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:46A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17001 1 000000007c8335b4 100 0 0 10 0\n";

    #[test]
    fn loopback_listener_little_endian() {
        let p = parse(TCP_LE, None).clean();
        let s = &p.sockets[0];
        assert_eq!(s.local_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.local_port, 18080);
        assert_eq!(s.state, Some(TcpState::Listen));
        assert_eq!(s.foreign.port, None);
        assert_eq!(s.inode, Some(17001));
        assert_eq!(s.uid, Some(0));
        assert_eq!(detect_byte_order(TCP_LE), ByteOrder::Little);
    }

    #[test]
    fn big_endian_detected() {
        let text = TCP_LE.replace("0100007F", "7F000001");
        assert_eq!(detect_byte_order(&text), ByteOrder::Big);
        let p = parse(&text, None);
        assert_eq!(
            p.sockets[0].local_ip,
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn encode_decode_both_orders() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            for ip in [
                "127.0.0.1",
                "10.1.2.3",
                "::1",
                "fe80::fc:ff:fe00:1",
                "::ffff:127.0.0.1",
            ] {
                let ip: IpAddr = ip.parse().unwrap();
                assert_eq!(decode_addr(&encode_addr(ip, order), order), Some(ip));
            }
        }
    }

    #[test]
    fn udp_states_and_markers() {
        let text = "== udp\n  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n 1739: 0100007F:3BF9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000099cb3c29 0\n 1740: 0100007F:3BF9 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 5 2 0000000099cb3c29 0\n== sctp\n 1: 0100007F:3BF9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0 0\n";
        let p = parse(text, None);
        assert_eq!(p.sockets.len(), 2);
        assert_eq!(p.sockets[0].state, None);
        assert_eq!(p.sockets[0].inode, None);
        assert_eq!(p.sockets[0].protocol, Protocol::Udp);
        assert_eq!(p.sockets[1].state, Some(TcpState::Established));
        assert_eq!(p.sockets[1].uid, Some(1000));
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
    }
}
