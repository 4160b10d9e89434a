//! Printing sockets the way net-tools `netstat` and the kernel's `/proc/net` tables do.
//!
//! [`render_netstat`] prints the columns of `netstat -tunap` / `-tunapW` / `-tuln` exactly as
//! net-tools 2.10 does (same header lines, widths and 23-column address cut without `-W`); the
//! MCP `netstat` tool uses it where no `netstat` binary exists. [`render_proc_net`] prints a
//! `/proc/net/{tcp,tcp6,udp,udp6}` table in either byte order. Both are the inverse of the
//! parsers in this module, which the round-trip property tests check.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::proc_net::{ByteOrder, PROC_NET_MARKER, encode_addr};
use crate::model::{Protocol, Socket, TcpState, Transport};

/// Which sockets a netstat listing claims to show (`-a`, `-l`, neither); only the title line
/// changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shown {
    /// `-a`: "(servers and established)".
    #[default]
    All,
    /// `-l`: "(only servers)".
    Listening,
    /// neither: "(w/o servers)".
    Connected,
}

/// Options of [`render_netstat`], mirroring netstat's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenderOptions {
    /// `-W`: never cut addresses.
    pub wide: bool,
    /// `-p`: add the `PID/Program name` column.
    pub programs: bool,
    /// Title line.
    pub listing: Shown,
}

/// net-tools' `PROGNAME_WIDTH`: the program column is this wide and holds `pid/name` cut to
/// one less.
const PROGNAME_WIDTH: usize = 20;
/// net-tools cuts `addr:port` to this many characters plus the colon without `-W`.
const SHORT_LEN: usize = 22;

/// Prints `sockets` as net-tools `netstat -tun[a|l][p][W]` would, in the order given. Filtering
/// (which sockets `-l`, `-t`, … select) is the caller's business.
pub fn render_netstat(sockets: &[Socket], options: &RenderOptions) -> String {
    let mut out = String::with_capacity(128 + sockets.len() * 110);
    out.push_str("Active Internet connections ");
    out.push_str(match options.listing {
        Shown::All => "(servers and established)",
        Shown::Listening => "(only servers)",
        Shown::Connected => "(w/o servers)",
    });
    out.push_str(
        "\nProto Recv-Q Send-Q Local Address           Foreign Address         State      ",
    );
    if options.programs {
        let _ = write!(out, " {:<PROGNAME_WIDTH$}", "PID/Program name");
    }
    out.push('\n');
    for s in sockets {
        let v6 = s.protocol.is_ipv6();
        let local = address(s.local_ip, Some(s.local_port), v6, options.wide);
        let foreign = address(s.foreign.ip, s.foreign.port, v6, options.wide);
        let state = match (s.protocol.transport(), s.state) {
            (_, Some(st)) => st.netstat_name(),
            (_, None) => "",
        };
        let _ = write!(
            out,
            "{:<4}  {:>6} {:>6} {:<23} {:<23} {:<11}",
            s.protocol.as_str(),
            s.recv_queue,
            s.send_queue,
            local,
            foreign,
            state
        );
        if options.programs {
            let prog = match s.owners.first() {
                Some(o) => cut(&format!("{}/{}", o.pid, o.program), PROGNAME_WIDTH - 1),
                None => "-".to_owned(),
            };
            let _ = write!(out, " {prog:<PROGNAME_WIDTH$}");
        }
        out.push('\n');
    }
    out
}

/// `addr:port` as net-tools prints it: a v4-mapped address on an IPv6 socket shows as IPv4; a
/// missing port is `*`; without `wide`, the address is cut so the whole fits 22 characters + `:`.
fn address(ip: IpAddr, port: Option<u16>, v6: bool, wide: bool) -> String {
    let addr = match ip {
        IpAddr::V6(a) if v6 => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a.to_string(),
        },
        other => other.to_string(),
    };
    let port = port.map_or_else(|| "*".to_owned(), |p| p.to_string());
    if !wide && addr.len() + port.len() > SHORT_LEN {
        let port_len = port.len().min(SHORT_LEN - 4);
        let addr_len = SHORT_LEN - port_len;
        format!("{}:{}", cut(&addr, addr_len), cut(&port, port_len))
    } else {
        format!("{addr}:{port}")
    }
}

/// At most `max` bytes of `s`, on a char boundary.
fn cut(s: &str, max: usize) -> String {
    super::clip(s, max).to_owned()
}

/// Prints the sockets of `protocol` (others are left out) as the kernel prints
/// `/proc/net/<protocol>` on a host of byte order `order`. An address of the wrong family for the
/// protocol prints as all zeros, except a v4-mapped address in an IPv4 table, which prints as
/// its IPv4 address. Absent uid/inode print as 0; a UDP socket without state prints `07`.
pub fn render_proc_net(sockets: &[Socket], protocol: Protocol, order: ByteOrder) -> String {
    let mut out = String::new();
    let udp = protocol.transport() == Transport::Udp;
    let header = match (protocol.is_ipv6(), udp) {
        (false, false) => {
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
        }
        (false, true) => {
            "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops"
        }
        (true, false) => {
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
        }
        (true, true) => {
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops"
        }
    };
    out.push_str(header);
    out.push('\n');
    for (sl, s) in sockets
        .iter()
        .filter(|s| s.protocol == protocol)
        .enumerate()
    {
        let st = match (udp, s.state) {
            (_, Some(state)) => state.kernel(),
            (true, None) => TcpState::Close.kernel(),
            (false, None) => TcpState::Close.kernel(),
        };
        let local = encode_addr(family_addr(s.local_ip, protocol.is_ipv6()), order);
        let remote = encode_addr(family_addr(s.foreign.ip, protocol.is_ipv6()), order);
        let width = if udp { 5 } else { 4 };
        let _ = write!(
            out,
            "{sl:>width$}: {local}:{:04X} {remote}:{:04X} {st:02X} {:08X}:{:08X} 00:00000000 00000000 {:>5} {:>8} {} ",
            s.local_port,
            s.foreign.port.unwrap_or(0),
            s.send_queue,
            s.recv_queue,
            s.uid.unwrap_or(0),
            0,
            s.inode.unwrap_or(0),
        );
        out.push_str(if udp {
            "2 0000000000000000 0"
        } else {
            "1 0000000000000000 100 0 0 10 0"
        });
        out.push('\n');
    }
    out
}

/// All four tables, each after its [`PROC_NET_MARKER`] line, as [`super::PROC_NET_COMMAND`]
/// prints them.
pub fn render_proc_net_all(sockets: &[Socket], order: ByteOrder) -> String {
    let mut out = String::new();
    for p in Protocol::ALL {
        let _ = writeln!(out, "{PROC_NET_MARKER}{}", p.as_str());
        out.push_str(&render_proc_net(sockets, p, order));
    }
    out
}

fn family_addr(ip: IpAddr, v6: bool) -> IpAddr {
    match (ip, v6) {
        (IpAddr::V4(a), true) => IpAddr::V6(a.to_ipv6_mapped()),
        (IpAddr::V6(a), false) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        },
        (ip, _) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Owner;

    fn listener() -> Socket {
        let mut s = Socket::between(Protocol::Tcp, ("127.0.0.1", 18080), ("0.0.0.0", None));
        s.state = Some(TcpState::Listen);
        s.owners.push(Owner {
            pid: 9054,
            program: "pysrv: master process".into(),
        });
        s
    }

    #[test]
    fn matches_net_tools_bytes() {
        let text = render_netstat(
            &[listener()],
            &RenderOptions {
                wide: false,
                programs: true,
                listing: Shown::All,
            },
        );
        // Lines 1, 2 and 3 of tests/fixtures/net-tools/debian12-tunap.txt, byte for byte.
        assert_eq!(
            text,
            "Active Internet connections (servers and established)\nProto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name    \ntcp        0      0 127.0.0.1:18080         0.0.0.0:*               LISTEN      9054/pysrv: master  \n"
        );
    }

    #[test]
    fn cuts_long_addresses_like_net_tools() {
        assert_eq!(
            address(
                "fe80::fc:ff:fe00:1".parse().unwrap(),
                Some(18443),
                true,
                false
            ),
            "fe80::fc:ff:fe00::18443"
        );
        assert_eq!(
            address(
                "fe80::fc:ff:fe00:1".parse().unwrap(),
                Some(18443),
                true,
                true
            ),
            "fe80::fc:ff:fe00:1:18443"
        );
        assert_eq!(
            address("::ffff:127.0.0.1".parse().unwrap(), Some(1), true, false),
            "127.0.0.1:1"
        );
    }
}
