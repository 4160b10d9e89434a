//! Can a server bind this port? The kernel's own bind rules applied to the sockets a listing
//! shows, without binding anything. Pure: the sockets, the sysctls and the binding user come
//! in.
//!
//! The rules (`inet_csk_bind_conflict` for TCP, `udp_lib_lport_inuse` for UDP): an existing
//! socket on the same port and transport blocks a new bind when their addresses overlap
//! (the same address, or either one a wildcard of the family; a dual-stack `[::]` — `v6only`
//! off — overlaps every IPv4 address too, a `v6only` one none; an IPv4-mapped IPv6 address is
//! its IPv4 address), unless
//! - TCP: both set `SO_REUSEADDR` and the existing one is not listening (TIME_WAIT, an
//!   accepted or outgoing connection); or both set `SO_REUSEPORT` and the existing one is in
//!   TIME_WAIT or belongs to the same user;
//! - UDP: both set `SO_REUSEADDR`; or both set `SO_REUSEPORT` and belong to the same user.
//!
//! The kernel does not report an existing socket's `SO_REUSEADDR`/`SO_REUSEPORT`, so this
//! assumes what servers and clients usually do: listeners set `SO_REUSEADDR` and so do the
//! connections they accept (and their TIME_WAIT); two or more listeners on one address and
//! port form an `SO_REUSEPORT` group; outgoing connections and UDP sockets set neither. The
//! answer's `assumes` says so whenever the verdict depends on it.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Serialize;

use crate::model::{Socket, TcpState, Transport};

/// What the host says about its ports (`/proc/sys/net/ipv4/…`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PortSysctls {
    /// `ip_local_port_range`: outgoing connections take their local port from here.
    pub(crate) ephemeral: Option<(u16, u16)>,
    /// `ip_unprivileged_port_start`: ports below need root or `CAP_NET_BIND_SERVICE`.
    pub(crate) unprivileged_start: Option<u16>,
    /// `ip_local_reserved_ports`: never handed out automatically.
    pub(crate) reserved: Vec<(u16, u16)>,
}

impl PortSysctls {
    /// Reads them from the text of the three files (any missing or unreadable: unknown).
    pub(crate) fn parse(range: Option<&str>, start: Option<&str>, reserved: Option<&str>) -> Self {
        let ephemeral = range.and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) => Some((lo, hi)),
                _ => None,
            }
        });
        let unprivileged_start = start.and_then(|t| t.trim().parse::<u32>().ok()).map(|n| {
            // The kernel accepts up to 65535; above means "no port is privileged".
            u16::try_from(n).unwrap_or(u16::MAX)
        });
        let reserved = reserved
            .map(|t| {
                t.trim()
                    .split(',')
                    .filter_map(|r| {
                        let r = r.trim();
                        match r.split_once('-') {
                            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                            None => r.parse().ok().map(|p| (p, p)),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        PortSysctls {
            ephemeral,
            unprivileged_start,
            reserved,
        }
    }

    pub(crate) fn is_ephemeral(&self, port: u16) -> bool {
        self.ephemeral
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&port))
    }

    /// The notes for `port` (never blocking).
    pub(crate) fn notes(&self, port: u16) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.is_ephemeral(port) {
            notes.push("ephemeral_range");
        }
        if self.unprivileged_start.is_some_and(|start| port < start) {
            notes.push("privileged");
        }
        if self.reserved.iter().any(|&(a, b)| (a..=b).contains(&port)) {
            notes.push("reserved");
        }
        notes
    }
}

/// `check_port_occupation`'s `bind`: whether a server can bind the port, and why not.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Bind {
    /// What a typical server (`SO_REUSEADDR` set, `SO_REUSEPORT` not) gets: equals
    /// `with_reuseaddr`.
    pub can_bind: bool,
    /// The address checked: the one asked for, or `[::]` (dual-stack: IPv4 and IPv6).
    pub address: String,
    /// `free`, or the blocking cause: `listener`, `in_use`, `time_wait`, `reuseport_group`.
    pub reason: &'static str,
    /// A bind with `SO_REUSEADDR` set would succeed.
    pub with_reuseaddr: bool,
    /// A bind without `SO_REUSEADDR` would succeed.
    pub without_reuseaddr: bool,
    /// Codes that never block: `ephemeral_range`, `privileged`, `reserved`.
    pub notes: Vec<&'static str>,
    /// What the answer assumes about other sockets' options, when it depends on them.
    pub assumes: Option<String>,
    /// One sentence for a person.
    pub detail: String,
}

/// The socket a server would bind: an address, or the dual-stack wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) transport: Transport,
    /// `None`: `[::]` with `v6only` off (IPv4 and IPv6).
    pub(crate) address: Option<IpAddr>,
    pub(crate) port: u16,
}

/// An address with its family's view: IPv4-mapped IPv6 is IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a new socket on `new` (`None`: dual-stack `[::]`) and an existing one on `old`
/// (with its `v6only`) claim a common address.
fn overlap(new: Option<IpAddr>, old: IpAddr, old_v6only: Option<bool>) -> bool {
    let Some(new) = new else {
        // [::] dual-stack: every IPv6 address, and every IPv4 one.
        return true;
    };
    let (new, old_c) = (canonical(new), canonical(old));
    match (new, old_c) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            new == old_c || new.is_unspecified() || old_c.is_unspecified()
        }
        // An IPv4 bind against IPv6: only a dual-stack [::] claims IPv4 addresses.
        (IpAddr::V4(_), IpAddr::V6(o)) => o.is_unspecified() && old_v6only != Some(true),
        // A specific IPv6 bind against IPv4: no common address ([::] was handled above).
        (IpAddr::V6(n), IpAddr::V4(_)) => n.is_unspecified(),
        (IpAddr::V6(n), IpAddr::V6(o)) => n == o || n.is_unspecified() || o.is_unspecified(),
    }
}

/// What is assumed of an existing socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Listener {
        group: bool,
    },
    /// An accepted connection, or its TIME_WAIT: `SO_REUSEADDR` inherited from the listener.
    Accepted,
    TimeWait,
    /// An outgoing connection, a bound TCP socket, a UDP socket: neither option.
    Plain,
}

/// The verdict for `wanted` given every socket of the host with that port (any transport:
/// those of the other one are ignored); `uid`: the binding user's, where known.
pub(crate) fn check(
    wanted: Wanted,
    sockets: &[Socket],
    uid: Option<u32>,
    sysctls: &PortSysctls,
) -> Bind {
    let same: Vec<&Socket> = sockets
        .iter()
        .filter(|s| s.protocol.transport() == wanted.transport && s.local_port == wanted.port)
        .collect();
    let listening =
        |s: &Socket| wanted.transport == Transport::Tcp && s.state == Some(TcpState::Listen);
    // A port with 50,000 accepted connections has a listener or two: each socket's kind
    // looks among those, never across every socket of the port.
    let listeners: Vec<&Socket> = same.iter().copied().filter(|s| listening(s)).collect();
    let kind = |s: &Socket| -> Kind {
        if wanted.transport == Transport::Udp {
            return Kind::Plain;
        }
        match s.state {
            Some(TcpState::Listen) => Kind::Listener {
                group: listeners
                    .iter()
                    .filter(|o| canonical(o.local_ip) == canonical(s.local_ip))
                    .count()
                    > 1,
            },
            Some(TcpState::TimeWait) => Kind::TimeWait,
            _ if listeners
                .iter()
                .any(|l| overlap(Some(s.local_ip), l.local_ip, l.v6only)) =>
            {
                Kind::Accepted
            }
            _ => Kind::Plain,
        }
    };
    // The blocking sockets for a new socket with (reuseaddr, reuseport = false).
    let blocks = |reuseaddr: bool, s: &Socket| -> bool {
        if !overlap(wanted.address, s.local_ip, s.v6only) {
            return false;
        }
        let old_reuse = matches!(kind(s), Kind::Accepted | Kind::TimeWait);
        match wanted.transport {
            Transport::Tcp => !(reuseaddr && old_reuse && !listening(s)),
            Transport::Udp => !(reuseaddr && old_reuse),
        }
    };
    let with: Vec<&Socket> = same.iter().copied().filter(|s| blocks(true, s)).collect();
    let without: Vec<&Socket> = same.iter().copied().filter(|s| blocks(false, s)).collect();
    let group = with
        .iter()
        .find(|s| matches!(kind(s), Kind::Listener { group: true }));
    let reason = if group.is_some() {
        "reuseport_group"
    } else if with.iter().any(|s| listening(s)) {
        "listener"
    } else if !with.is_empty() {
        "in_use"
    } else if !without.is_empty() {
        "time_wait"
    } else {
        "free"
    };
    let address = match wanted.address {
        Some(IpAddr::V6(v6)) => format!("[{v6}]"),
        Some(ip) => ip.to_string(),
        None => "[::]".to_string(),
    };
    let port = wanted.port;
    let proto = wanted.transport.as_str();
    let depends: Vec<Kind> = without.iter().map(|s| kind(s)).collect();
    let mut assumed = Vec::new();
    if depends
        .iter()
        .any(|k| matches!(k, Kind::Listener { group: true }))
    {
        assumed.push("two or more listeners on one address and port set SO_REUSEPORT");
    }
    if depends.contains(&Kind::TimeWait) || depends.contains(&Kind::Accepted) {
        assumed
            .push("TIME_WAIT and accepted connections inherited SO_REUSEADDR from their listener");
    }
    if depends.contains(&Kind::Plain) {
        assumed.push(match wanted.transport {
            Transport::Tcp => "outgoing connections and bound TCP sockets did not set SO_REUSEADDR",
            Transport::Udp => "the UDP sockets did not set SO_REUSEADDR or SO_REUSEPORT",
        });
    }
    if wanted.transport == Transport::Tcp
        && without.iter().any(|s| {
            s.local_ip.is_ipv6() && canonical(s.local_ip).is_unspecified() && s.v6only.is_none()
        })
    {
        assumed.push("a [::] socket whose v6only flag is not known has it off (Linux's default)");
    }
    let assumes = (!assumed.is_empty()).then(|| {
        format!(
            "The kernel does not report other sockets' options: assuming {}.",
            assumed.join("; ")
        )
    });
    let holder = |s: &Socket| {
        let owner = s
            .owners
            .iter()
            .min_by_key(|o| o.pid)
            .map(|o| format!(" ({} pid {})", o.program, o.pid))
            .unwrap_or_default();
        // Formatted here: `health` (with its endpoint formatter) builds on this module.
        let at = match canonical(s.local_ip) {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            v4 => format!("{v4}:{port}"),
        };
        format!("{at}{owner}")
    };
    let detail = match reason {
        "free" => format!("Nothing holds {proto} port {port} on {address}: a server can bind it."),
        "reuseport_group" => {
            let g = group.expect("reason reuseport_group");
            let owner_uid = g
                .uid
                .map_or_else(|| "its owner's uid".to_string(), |u| format!("uid {u}"));
            format!(
                "{} listeners share {} with SO_REUSEPORT: a server that also sets SO_REUSEPORT and runs as {owner_uid} may join the group{}; any other bind fails with EADDRINUSE.",
                with.iter().filter(|s| listening(s)).count(),
                holder(g),
                if uid.is_some() && g.uid == uid {
                    " (the user checking)"
                } else {
                    ""
                },
            )
        }
        "listener" => {
            let l = with.iter().find(|s| listening(s)).expect("a listener");
            let dual = if l.local_ip.is_ipv6()
                && canonical(l.local_ip).is_unspecified()
                && l.v6only != Some(true)
            {
                " (dual-stack: it holds the IPv4 port too)"
            } else {
                ""
            };
            format!(
                "A listener on {}{dual} holds {proto} port {port} for {address}: a bind fails with EADDRINUSE until it stops.",
                holder(l)
            )
        }
        "in_use" => format!(
            "{} socket(s) that are not listening hold {proto} port {port} for {address} (first: {}): a bind fails with EADDRINUSE until they close.",
            with.len(),
            holder(with[0]),
        ),
        _ => format!(
            "Only TIME_WAIT sockets ({}) hold {proto} port {port}: a server that sets SO_REUSEADDR (nginx, node, Go, Python's socketserver do) binds it; one that does not waits up to 60 s.",
            without.len()
        ),
    };
    Bind {
        can_bind: with.is_empty(),
        address,
        reason,
        with_reuseaddr: with.is_empty(),
        without_reuseaddr: without.is_empty(),
        notes: sysctls.notes(port),
        assumes,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol};

    fn sock(proto: Protocol, ip: &str, port: u16, state: Option<TcpState>) -> Socket {
        let mut s = Socket::new(
            proto,
            ip.parse().unwrap(),
            port,
            Endpoint {
                ip: "0.0.0.0".parse().unwrap(),
                port: None,
            },
        );
        s.state = state;
        s.uid = Some(0);
        s
    }

    fn tcp(address: Option<&str>) -> Wanted {
        Wanted {
            transport: Transport::Tcp,
            address: address.map(|a| a.parse().unwrap()),
            port: 8080,
        }
    }

    #[test]
    fn sysctls_read_and_note() {
        let s = PortSysctls::parse(
            Some("32768\t60999\n"),
            Some("1024\n"),
            Some("8080,9000-9010\n"),
        );
        assert_eq!(s.ephemeral, Some((32768, 60999)));
        assert_eq!(s.notes(80), vec!["privileged"]);
        assert_eq!(s.notes(9005), vec!["reserved"]);
        assert_eq!(s.notes(40000), vec!["ephemeral_range"]);
        assert!(
            PortSysctls::parse(None, Some("x"), Some(""))
                .notes(80)
                .is_empty()
        );
    }

    #[test]
    fn the_rules_by_case() {
        let none = PortSysctls::default();
        let listen = sock(Protocol::Tcp, "127.0.0.1", 8080, Some(TcpState::Listen));
        let b = check(
            tcp(Some("127.0.0.2")),
            std::slice::from_ref(&listen),
            Some(0),
            &none,
        );
        assert_eq!((b.reason, b.can_bind), ("free", true));
        let b = check(tcp(None), std::slice::from_ref(&listen), Some(0), &none);
        assert_eq!(
            (b.reason, b.with_reuseaddr, b.without_reuseaddr),
            ("listener", false, false)
        );
        assert_eq!(b.assumes, None, "a listener blocks whatever its options");
        // A [::] listener blocks an IPv4 address unless it is IPv6-only.
        let mut dual = sock(Protocol::Tcp6, "::", 8080, Some(TcpState::Listen));
        for (v6only, reason) in [(false, "listener"), (true, "free")] {
            dual.v6only = Some(v6only);
            let b = check(
                tcp(Some("10.0.0.5")),
                std::slice::from_ref(&dual),
                Some(0),
                &none,
            );
            assert_eq!(b.reason, reason, "v6only {v6only}");
        }
        let tw = sock(Protocol::Tcp, "127.0.0.1", 8080, Some(TcpState::TimeWait));
        let b = check(tcp(None), std::slice::from_ref(&tw), Some(0), &none);
        assert_eq!(
            (b.reason, b.with_reuseaddr, b.without_reuseaddr),
            ("time_wait", true, false)
        );
        assert!(b.assumes.is_some());
        let out = sock(
            Protocol::Tcp,
            "127.0.0.1",
            8080,
            Some(TcpState::Established),
        );
        let b = check(
            tcp(Some("127.0.0.1")),
            std::slice::from_ref(&out),
            Some(0),
            &none,
        );
        assert_eq!((b.reason, b.can_bind), ("in_use", false));
        assert!(b.assumes.unwrap().contains("outgoing"));
        let group = vec![listen.clone(), listen.clone()];
        let b = check(tcp(Some("127.0.0.1")), &group, Some(0), &none);
        assert_eq!(b.reason, "reuseport_group");
        assert!(b.detail.contains("uid 0"), "{}", b.detail);
        let udp = Wanted {
            transport: Transport::Udp,
            ..tcp(Some("127.0.0.1"))
        };
        assert_eq!(
            check(udp, &group, Some(0), &none).reason,
            "free",
            "TCP sockets do not block UDP"
        );
    }
}
