//! Plain data: sockets, endpoints, protocols, TCP states and owners.
//!
//! Everything here is a value type with no I/O. Collectors (`source`) and parsers (`parse`)
//! produce [`Socket`]s; `query` filters them and renders the result envelopes. States are named
//! the way net-tools `netstat` names them; [`TcpState::parse`] also accepts the `ss` and Windows
//! spellings. [`ProcessInfo`] is what `process` reads about an owning process (user, command
//! line, systemd unit, container); [`Place`] is where a socket lives when that is not simply
//! "the namespace we run in, no device" (another network namespace, a bound interface).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

pub mod health;
pub use health::{Bytes, Counters, Health, SkMem, TcpField, TcpInfo, fin_received};

/// Socket protocol as netstat prints it in its first column: the family is part of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::Tcp, Protocol::Tcp6, Protocol::Udp, Protocol::Udp6];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Tcp6 => "tcp6",
            Protocol::Udp => "udp",
            Protocol::Udp6 => "udp6",
        }
    }

    /// The transport without the family.
    pub fn transport(self) -> Transport {
        match self {
            Protocol::Tcp | Protocol::Tcp6 => Transport::Tcp,
            Protocol::Udp | Protocol::Udp6 => Transport::Udp,
        }
    }

    pub fn is_ipv6(self) -> bool {
        matches!(self, Protocol::Tcp6 | Protocol::Udp6)
    }

    /// The protocol for a transport and an address family.
    pub fn new(transport: Transport, ipv6: bool) -> Protocol {
        match (transport, ipv6) {
            (Transport::Tcp, false) => Protocol::Tcp,
            (Transport::Tcp, true) => Protocol::Tcp6,
            (Transport::Udp, false) => Protocol::Udp,
            (Transport::Udp, true) => Protocol::Udp6,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TCP or UDP, regardless of address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    /// Upper-case name used in messages (`80/TCP`).
    pub(crate) fn upper(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }
}

/// TCP socket states, numbered as the Linux kernel numbers them (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
}

impl TcpState {
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The kernel's state number to a state. 12 (`TCP_NEW_SYN_RECV`, a request socket) is
    /// reported as `SYN_RECV`, as `ss` and `netstat` do.
    pub(crate) fn from_kernel(n: u8) -> Option<TcpState> {
        Some(match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 | 12 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            _ => return None,
        })
    }

    /// The kernel's state number.
    pub(crate) fn kernel(self) -> u8 {
        self as u8
    }

    /// The net-tools `netstat` spelling, used in all output.
    pub fn netstat_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// Parses a state in any spelling we accept: netstat (`FIN_WAIT1`), ss (`FIN-WAIT-1`,
    /// `ESTAB`, `UNCONN`), Windows/BSD (`LISTENING`, `CLOSED`, `FIN_WAIT_1`), case-insensitive.
    /// Dashes, underscores and spaces are interchangeable.
    pub fn parse(text: &str) -> Option<TcpState> {
        let mut key = String::with_capacity(text.len());
        for c in text.trim().chars() {
            match c {
                '-' | '_' | ' ' => {}
                c => key.push(c.to_ascii_uppercase()),
            }
        }
        Some(match key.as_str() {
            "ESTABLISHED" | "ESTAB" => TcpState::Established,
            "SYNSENT" => TcpState::SynSent,
            "SYNRECV" | "SYNRECEIVED" | "SYNRCVD" => TcpState::SynRecv,
            "FINWAIT1" => TcpState::FinWait1,
            "FINWAIT2" => TcpState::FinWait2,
            "TIMEWAIT" => TcpState::TimeWait,
            "CLOSE" | "CLOSED" | "UNCONN" => TcpState::Close,
            "CLOSEWAIT" => TcpState::CloseWait,
            "LASTACK" => TcpState::LastAck,
            "LISTEN" | "LISTENING" => TcpState::Listen,
            "CLOSING" => TcpState::Closing,
            _ => return None,
        })
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.netstat_name())
    }
}

/// A set of TCP states, as the kernel's bit mask (`1 << state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateSet(u32);

impl StateSet {
    /// Every state, including `TCP_NEW_SYN_RECV` (12).
    pub const ALL: StateSet = StateSet(0x1ffe);
    /// No state.
    pub const EMPTY: StateSet = StateSet(0);

    /// This set with `state` added.
    pub fn with(self, state: TcpState) -> StateSet {
        StateSet(self.0 | StateSet::only(state).0)
    }

    pub fn only(state: TcpState) -> StateSet {
        let mut bits = 1 << state.kernel();
        if state == TcpState::SynRecv {
            bits |= 1 << 12;
        }
        StateSet(bits)
    }

    pub(crate) fn bits(self) -> u32 {
        self.0
    }

    pub(crate) fn contains(self, state: TcpState) -> bool {
        self.0 & (1 << state.kernel()) != 0
    }
}

/// The foreign end of a socket. `port` is `None` where netstat prints `*` (unconnected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

/// A process holding a socket open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub pid: u32,
    /// The process name as netstat shows it (`/proc/<pid>/comm`).
    pub program: Arc<str>,
}

/// The processes holding a socket. Almost always zero or one, so one is stored inline: a
/// separate allocation per socket would cost more than the socket on a host with 100k of them.
pub(crate) type Owners = SmallVec<[Owner; 1]>;

/// A network namespace, identified by its nsfs inode (unique on the machine).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Netns {
    pub inode: u64,
    /// The name under `/run/netns` (what `ip netns` shows), else the container holding it
    /// (`docker:3f4e5d6c7b8a`), else none.
    pub name: Option<Arc<str>>,
}

/// Where a socket lives beyond its addresses: its network namespace (listings of every
/// namespace) and the interface it is bound to (`SO_BINDTODEVICE`, or the scope of a
/// link-local IPv6 address, what `ss` prints as `%eth0`).
///
/// Shared: one value per (namespace, interface) pair, so a socket pays one pointer for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Place {
    pub(crate) netns: Option<Netns>,
    pub(crate) interface: Option<Arc<str>>,
}

/// The container runtimes a cgroup path can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    Docker,
    Podman,
    Containerd,
    Kubernetes,
    Lxc,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Lxc => "lxc",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container, as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Container {
    pub runtime: Runtime,
    /// The short id: the first 12 hex digits of a hex id (as `docker ps` shows it), or the
    /// container's name where the runtime names containers (lxc).
    pub id: Arc<str>,
}

/// What the process table tells about an owning process, read once per process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessInfo {
    /// Effective user id (`/proc/<pid>/status`).
    pub uid: Option<u32>,
    /// The user's name from the password file, else the uid as text.
    pub user: Option<Arc<str>>,
    /// The command line, arguments joined by spaces, at most [`COMMAND_MAX_CHARS`]
    /// characters (a cut one ends with `…`); `[comm]` for a process without one (a kernel
    /// thread), as `ps` shows it.
    pub command: Option<Arc<str>>,
    /// The systemd unit the process runs in (`nginx.service`, `session-3.scope`).
    pub unit: Option<Arc<str>>,
    pub container: Option<Container>,
}

/// Longest `command` kept, in characters.
pub(crate) const COMMAND_MAX_CHARS: usize = 256;

/// One socket, from any source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub protocol: Protocol,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub foreign: Endpoint,
    /// TCP state; for UDP `None`, or `Established` for a connected socket (as netstat prints).
    pub state: Option<TcpState>,
    /// Queued bytes (the kernel counts them in 32 bits).
    pub recv_queue: u32,
    pub send_queue: u32,
    /// Owning user id, where the source tells it.
    pub uid: Option<u32>,
    /// Socket inode, where the source tells it; 0 is normalised to `None` (no process holds it).
    pub inode: Option<u64>,
    /// Processes holding the socket open; empty when unknown or held by none.
    pub owners: Owners,
    /// Its network namespace and bound interface, where known and worth saying; `None` for
    /// a socket of the namespace we run in with no device.
    pub(crate) place: Option<Arc<Place>>,
    /// `tcp_info`, memory and cgroup, where the listing asked for them (`Want::health`).
    pub health: Option<Box<Health>>,
    /// For an IPv6 socket that is listening or bound (not connected): whether it accepts
    /// IPv6 only (`IPV6_V6ONLY`), where the source tells it (netlink).
    pub v6only: Option<bool>,
}

impl Socket {
    /// A socket with empty owner, uid and inode fields, as parsers start one.
    pub fn new(protocol: Protocol, local_ip: IpAddr, local_port: u16, foreign: Endpoint) -> Socket {
        Socket {
            protocol,
            local_ip,
            local_port,
            foreign,
            state: None,
            recv_queue: 0,
            send_queue: 0,
            uid: None,
            inode: None,
            owners: Owners::new(),
            v6only: None,
            place: None,
            health: None,
        }
    }

    /// The interface the socket is bound to, if any.
    pub fn interface(&self) -> Option<&str> {
        self.place.as_ref()?.interface.as_deref()
    }

    /// The network namespace the socket was listed in, when the listing covered several.
    pub fn netns(&self) -> Option<&Netns> {
        self.place.as_ref()?.netns.as_ref()
    }
}

/// For unit tests: a socket from its addresses as text.
#[cfg(test)]
impl Socket {
    pub(crate) fn between(
        protocol: Protocol,
        (local_ip, local_port): (&str, u16),
        (foreign_ip, foreign_port): (&str, Option<u16>),
    ) -> Socket {
        let ip = |text: &str| text.parse().expect("a test address");
        Socket::new(
            protocol,
            ip(local_ip),
            local_port,
            Endpoint {
                ip: ip(foreign_ip),
                port: foreign_port,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of 100k sockets holds 100k of these: keep the struct at two cache lines
    /// (the owner inline, the namespace and interface behind one shared pointer).
    #[test]
    fn a_socket_stays_within_128_bytes() {
        assert!(
            std::mem::size_of::<Socket>() <= 128,
            "Socket is {} bytes",
            std::mem::size_of::<Socket>()
        );
    }
}
