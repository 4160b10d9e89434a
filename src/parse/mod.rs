//! Pure text parsers for every socket listing a host may print, and a detector that tells
//! which listing a text is.
//!
//! Remote hosts give us text, not netlink: whatever of `netstat` (net-tools or busybox), `ss`,
//! `/proc/net/{tcp,tcp6,udp,udp6}`, BSD/macOS `netstat -an`, `lsof -nP -iTCP -iUDP` or Windows
//! `netstat -ano` they have. Each parser takes the whole text and returns a [`Parsed`]: the
//! sockets it read **and** every line it could not read, with the reason. Parsers never panic and
//! never drop a line silently: header, banner and blank lines are recognised and ignored; any
//! other line either becomes a socket or a [`Skipped`] entry.
//!
//! No I/O happens here except in [`external`], the thin runner for the local fallback (running
//! `ss`/`netstat`/`lsof` when neither netlink nor `/proc` is available). [`render`] is the
//! reverse direction: it prints sockets the way net-tools `netstat` and `/proc/net` do.
//!
//! Conventions shared by all parsers:
//! - States are the netstat names ([`TcpState`](crate::model::TcpState)); UDP sockets carry `None`, or
//!   `ESTABLISHED` when connected, as net-tools prints them.
//! - A foreign port printed as `*` (or `0` for an unconnected socket in `/proc/net`, Windows and
//!   lsof listings) is `None`; a wildcard host (`*`) is the unspecified address of the family.
//! - The protocol carries the family of the *socket*: an IPv6 socket is `tcp6`/`udp6` even when
//!   the tool prints an IPv4 (v4-mapped) address, which is then stored as `::ffff:a.b.c.d`.
//!   Interface suffixes (`%lo`, `%eth0`) are dropped.
//! - Owners: every owner the tool prints (`ss` may list several); a program name is kept exactly
//!   as printed, even when the tool truncated it. Where a tool prints only a pid (Windows
//!   `netstat -ano`), the owner's `program` is empty.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{Endpoint, Owner, Protocol, Socket, Transport};

pub(crate) mod bsd;
pub mod external;
pub(crate) mod fd_scan;
pub(crate) mod lsof;
pub(crate) mod netstat;
pub mod proc_net;
pub mod render;
pub mod ss;
pub mod ss_info;
pub(crate) mod tasklist;
pub(crate) mod windows;

pub use proc_net::ByteOrder;
pub(crate) use proc_net::{PROC_NET_COMMAND, PROC_NET_MARKER};
pub use render::{RenderOptions, render_netstat, render_proc_net, render_proc_net_all};

/// What a parser read from a text: the sockets, and the lines it could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub sockets: Vec<Socket>,
    /// Lines that were neither a socket nor a recognised header/banner/blank line.
    pub skipped: Vec<Skipped>,
    /// Remarks about the text as a whole that a reader should know, e.g. netstat's
    /// "Not all processes could be identified" (so owners are missing) or a guessed byte order.
    pub notes: Vec<String>,
}

/// A queue length as a parser read it, in the 32 bits the kernel counts it in.
pub(crate) fn queue(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Parsed {
    /// For tests: the listing, every line of which must have read (a skipped line fails the
    /// test, with its reason).
    #[cfg(test)]
    pub(crate) fn clean(self) -> Parsed {
        assert!(self.skipped.is_empty(), "{:?}", self.skipped);
        self
    }

    pub(crate) fn skip(&mut self, line_no: usize, line: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            line_no,
            line: clip(line, MAX_KEPT_LINE).to_owned(),
            reason: reason.into(),
        });
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// A line a parser could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number in the text given to the parser.
    pub line_no: usize,
    /// The line, without its line ending (clipped to 512 bytes).
    pub line: String,
    /// Why it could not be read, as a short sentence.
    pub reason: String,
}

/// Longest line text kept in a [`Skipped`] entry.
const MAX_KEPT_LINE: usize = 512;

/// The listing formats we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// net-tools `netstat -tunap` / `-tunapW` / `-tuln` on Linux.
    NetTools,
    /// busybox `netstat -tuna[p]` (Alpine, Debian's `busybox`): protocol column never says
    /// `tcp6`, long addresses overflow the column instead of being cut.
    Busybox,
    /// iproute2 `ss -tunap`, `ss -tunapH`, with or without the `Netid` column, any version
    /// that prints `users:((…))`.
    Ss,
    /// `/proc/net/{tcp,tcp6,udp,udp6}` tables, one or several joined with
    /// [`PROC_NET_MARKER`] lines; the byte order is detected (see [`proc_net::detect_byte_order`]).
    ProcNet,
    /// FreeBSD / macOS `netstat -an [-p tcp|udp]`: `tcp4 0 0 127.0.0.1.8080 *.* LISTEN`.
    Bsd,
    /// `lsof -nP -iTCP -iUDP` (Linux, macOS, BSD): owners, no queues.
    Lsof,
    /// Windows `netstat -ano` (and `-anob`).
    Windows,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::NetTools,
        Format::Busybox,
        Format::Ss,
        Format::ProcNet,
        Format::Bsd,
        Format::Lsof,
        Format::Windows,
    ];

    /// Short stable name, used in fixture folders and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::NetTools => "net-tools",
            Format::Busybox => "busybox",
            Format::Ss => "ss",
            Format::ProcNet => "proc-net",
            Format::Bsd => "bsd",
            Format::Lsof => "lsof",
            Format::Windows => "windows",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `text` as `format`.
pub fn parse(format: Format, text: &str) -> Parsed {
    match format {
        Format::NetTools | Format::Busybox => netstat::parse(text),
        Format::Ss => ss::parse(text),
        Format::ProcNet => proc_net::parse(text, None),
        Format::Bsd => bsd::parse(text),
        Format::Lsof => lsof::parse(text),
        Format::Windows => windows::parse(text),
    }
}

/// Detects the format and parses; `None` when the format cannot be told (see [`detect`]).
pub fn parse_auto(text: &str) -> Option<(Format, Parsed)> {
    let format = detect(text)?;
    Some((format, parse(format, text)))
}

/// Tells which format `text` is in, from its header lines or, for headerless output
/// (`ss -H`, a bare `/proc/net` table body), from the shape of its first data lines.
/// `None` for empty text or text that looks like none of them.
///
/// The vote is taken over the first 50 non-blank lines: the first header line that names a
/// format decides; otherwise each data line votes for the format whose line shape it has, and
/// the most votes win (ties go to the earlier format in [`Format::ALL`]).
pub fn detect(text: &str) -> Option<Format> {
    let mut votes = [0usize; 7];
    let mut busybox_hint = false;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(50)
    {
        if let Some(format) = detect_header(line) {
            if format == Format::NetTools {
                // net-tools and busybox share their headers; look at the data.
                return Some(linux_netstat_flavour(text));
            }
            return Some(format);
        }
        if let Some(format) = detect_data_line(line) {
            if format == Format::Busybox {
                busybox_hint = true;
            }
            if let Some(i) = Format::ALL.iter().position(|f| *f == format) {
                votes[i] += 1;
            }
        }
    }
    if busybox_hint {
        // A busybox-only line shape outweighs lines both netstats share.
        votes[1] += votes[0];
        votes[0] = 0;
    }
    let (best, count) = votes
        .iter()
        .enumerate()
        .fold((0, 0), |acc, (i, &n)| if n > acc.1 { (i, n) } else { acc });
    if count == 0 {
        return None;
    }
    Format::ALL.get(best).copied()
}

/// Header and banner lines that name their format.
fn detect_header(line: &str) -> Option<Format> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = words.first().copied().unwrap_or("");
    if line.starts_with(PROC_NET_MARKER) || (first == "sl" && line.contains("local_address")) {
        return Some(Format::ProcNet);
    }
    if first == "Netid" || (first == "State" && line.contains("Recv-Q")) {
        return Some(Format::Ss);
    }
    if first == "COMMAND" && words.contains(&"PID") && words.contains(&"NAME") {
        return Some(Format::Lsof);
    }
    if line == "Active Connections" {
        return Some(Format::Windows);
    }
    if first == "Proto" {
        if line.contains("(state)") {
            return Some(Format::Bsd);
        }
        if line.contains("Recv-Q") {
            return Some(Format::NetTools);
        }
        if line.contains("Local Address") {
            return Some(Format::Windows);
        }
    }
    if first == "Socket" && line.contains("(state)") {
        return Some(Format::Bsd);
    }
    None
}

/// The format a data line's shape suggests.
fn detect_data_line(line: &str) -> Option<Format> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let first = *words.first()?;
    let second = words.get(1).copied().unwrap_or("");
    let lower = first.to_ascii_lowercase();
    if first.ends_with(':') && first[..first.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return Some(Format::ProcNet);
    }
    if (first == "TCP" || first == "UDP") && words.len() >= 4 {
        return Some(Format::Windows);
    }
    if matches!(first, "tcp4" | "tcp6" | "tcp46" | "udp4" | "udp6" | "udp46")
        && words.get(3).is_some_and(|a| bsd::is_bsd_address(a))
    {
        return Some(Format::Bsd);
    }
    if matches!(lower.as_str(), "tcp" | "udp") && ss::is_ss_state(second) {
        return Some(Format::Ss);
    }
    if ss::is_ss_state(first) && words.len() >= 5 {
        return Some(Format::Ss);
    }
    if matches!(first, "tcp" | "tcp6" | "udp" | "udp6") && second.parse::<u64>().is_ok() {
        let local = words.get(3).copied().unwrap_or("");
        if bsd::is_bsd_address(local) && !local.contains(':') {
            return Some(Format::Bsd);
        }
        if matches!(first, "tcp" | "udp") && local.matches(':').count() > 1 {
            return Some(Format::Busybox);
        }
        return Some(Format::NetTools);
    }
    if words.len() >= 9 && words.iter().any(|w| *w == "IPv4" || *w == "IPv6") {
        return Some(Format::Lsof);
    }
    None
}

/// net-tools or busybox: busybox prints IPv6 sockets under `tcp`/`udp`.
fn linux_netstat_flavour(text: &str) -> Format {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let proto = words.next().unwrap_or("");
        if proto == "tcp6" || proto == "udp6" {
            return Format::NetTools;
        }
        if (proto == "tcp" || proto == "udp")
            && words.nth(2).is_some_and(|a| a.matches(':').count() > 1)
        {
            return Format::Busybox;
        }
    }
    Format::NetTools
}

// ---- helpers shared by the parsers ----

/// Numbered lines (1-based), without line endings.
pub(crate) fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
}

/// The lines of a listing that are not blank: the line number (from 1), the line as printed
/// (without its `\r`, for a skip report) and the line trimmed (to parse).
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    numbered(text)
        .map(|(no, line)| (no, line, line.trim()))
        .filter(|(_, _, trimmed)| !trimmed.is_empty())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// The Recv-Q and Send-Q columns of a listing line (netstat, ss, BSD netstat), as queue
/// lengths.
pub(crate) fn queues(recv_q: &str, send_q: &str) -> Result<(u32, u32), String> {
    let length = |column: &str, text: &str| {
        text.parse::<u64>()
            .map(queue)
            .map_err(|_| format!("{column} `{}` is not a number", clip(text, 30)))
    };
    Ok((length("Recv-Q", recv_q)?, length("Send-Q", send_q)?))
}

/// The socket a listing line names, from its addresses as printed (`None`: `*`). It is IPv6
/// when the line says so (`v6_line`) or either address is; then a wildcard is `::` and an
/// IPv4 address is v4-mapped, as the kernel shows a dual-stack socket.
pub(crate) fn line_socket(
    transport: Transport,
    v6_line: bool,
    (local_ip, local_port): (Option<IpAddr>, u16),
    (foreign_ip, foreign_port): (Option<IpAddr>, Option<u16>),
) -> Socket {
    let ipv6 = v6_line
        || local_ip.is_some_and(|ip| ip.is_ipv6())
        || foreign_ip.is_some_and(|ip| ip.is_ipv6());
    let in_socket = |ip: Option<IpAddr>| in_family(ip.unwrap_or(unspecified(ipv6)), ipv6);
    Socket::new(
        Protocol::new(transport, ipv6),
        in_socket(local_ip),
        local_port,
        Endpoint {
            ip: in_socket(foreign_ip),
            port: foreign_port,
        },
    )
}

/// The unspecified address of a family.
pub(crate) fn unspecified(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// A port as printed: `*` is `None`, otherwise a decimal 0–65535.
pub(crate) fn port_or_star(s: &str) -> Result<Option<u16>, String> {
    if s == "*" {
        return Ok(None);
    }
    s.parse::<u16>()
        .map(Some)
        .map_err(|_| format!("port `{}` is not a number from 0 to 65535", clip(s, 40)))
}

/// A host as printed: drops `[` `]` and a `%iface` suffix; `*` is `None` (wildcard).
pub(crate) fn host(s: &str) -> Result<Option<IpAddr>, String> {
    let s = if let Some(rest) = s.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => rest.get(..end).unwrap_or(""),
            None => return Err(format!("address `{}` has no closing `]`", clip(s, 60))),
        }
    } else {
        s
    };
    let s = s.split('%').next().unwrap_or(s);
    if s == "*" {
        return Ok(None);
    }
    s.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| format!("`{}` is not an IP address", clip(s, 60)))
}

/// Puts an address in the family of the socket: an IPv4 address on an IPv6 socket becomes
/// v4-mapped; an IPv6 address on an IPv4 socket is left alone (the caller decides).
pub(crate) fn in_family(ip: IpAddr, ipv6: bool) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if ipv6 => IpAddr::V6(v4.to_ipv6_mapped()),
        other => other,
    }
}

/// An owner from a pid and a program name as printed.
pub(crate) fn owner(pid: u32, program: &str) -> Owner {
    Owner {
        pid,
        program: program.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_strips_brackets_and_scope() {
        assert_eq!(
            host("[fe80::1]%eth0").unwrap(),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(
            host("0.0.0.0%lo").unwrap(),
            Some("0.0.0.0".parse().unwrap())
        );
        assert_eq!(host("*").unwrap(), None);
        assert!(host("[::1").is_err());
        assert!(host("fe80::fc:ff:fe00:").is_err());
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn detect_empty_and_garbage() {
        assert_eq!(detect(""), None);
        assert_eq!(detect("\n\n  \n"), None);
        assert_eq!(detect("hello world\nfoo"), None);
    }

    #[test]
    fn detect_headerless_lines() {
        assert_eq!(
            detect("tcp   LISTEN 0      128    127.0.0.1:80   0.0.0.0:*\n"),
            Some(Format::Ss)
        );
        assert_eq!(
            detect("tcp        0      0 127.0.0.1:80            0.0.0.0:*               LISTEN\n"),
            Some(Format::NetTools)
        );
        assert_eq!(
            detect("tcp        0      0 :::80            :::*               LISTEN\n"),
            Some(Format::Busybox)
        );
        assert_eq!(
            detect("tcp4       0      0  127.0.0.1.8080         *.*                    LISTEN\n"),
            Some(Format::Bsd)
        );
        assert_eq!(
            detect("  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1012\n"),
            Some(Format::Windows)
        );
        assert_eq!(
            detect(
                "   0: 0100007F:46A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 17001 1 0 100 0 0 10 0\n"
            ),
            Some(Format::ProcNet)
        );
    }
}
