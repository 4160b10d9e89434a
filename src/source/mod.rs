//! Where sockets come from.
//!
//! A [`Source`] answers one [`Want`] with a [`Snapshot`]. The local machine has
//! [`LocalSource`] (netlink `sock_diag`, falling back to `/proc/net`, owners from
//! `/proc/<pid>/fd`, every network namespace on request via [`netns`]); remote hosts get theirs
//! through a [`RemoteSources`] lookup. The query layer never knows which one it talks to, so
//! tests can hand it fixture data. A snapshot may come with a [`ProcessLookup`] for owner
//! details, which the query layer calls only for the processes it shows.

pub(crate) mod hosts;
pub(crate) mod local;
// The sock_diag layer and the namespace walk are `pub` for the integration tests and the
// benchmarks that drive them directly; they are not the library's API (see the root facade).
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod netlink;
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod netns;
#[cfg(target_os = "linux")]
pub(crate) mod procfs;
#[cfg(feature = "ssh")]
pub mod remote;

use std::sync::Arc;

use crate::error::Error;
use crate::model::{Socket, StateSet, Transport};
pub(crate) use crate::process::ProcessLookup;

pub use hosts::ConfiguredHosts;
pub(crate) use hosts::{HostInfo, UnusableHost};
pub use local::{Backend, LocalSource};
#[cfg(feature = "ssh")]
pub use remote::SshRemotes;

/// A boxed, sendable future, as trait objects return them.
pub use futures::future::BoxFuture;

/// What a query needs from a source. Sources may return more than asked (the query layer filters
/// again); asking narrowly lets the kernel do the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub tcp: bool,
    pub udp: bool,
    /// TCP states wanted.
    pub states: StateSet,
    /// UDP "states" wanted: `Close` is a bound, unconnected socket, `Established` a connected
    /// one (the kernel's numbering for UDP sockets).
    pub udp_states: StateSet,
    /// Only sockets whose local port is this one.
    pub local_port: Option<u16>,
    /// Only sockets whose foreign port is this one.
    pub remote_port: Option<u16>,
    /// Whether to look up owning processes (pid, program).
    pub owners: bool,
    /// Which network namespaces to list.
    pub scope: Scope,
    /// Whether to read each socket's health (TCP `tcp_info`, socket memory, cgroup id) into
    /// [`Socket::health`]. Off for plain listings, which it would make larger and slower.
    pub health: bool,
}

/// Which network namespaces a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// The namespace the server runs in (what `ss` and `netstat` show).
    #[default]
    Host,
    /// Every network namespace some process holds or `/run/netns` names, each listed from
    /// inside it; rows carry their namespace. Local machine only.
    All,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Host => "host",
            Scope::All => "all",
        }
    }
}

impl Want {
    /// Everything, with owners.
    pub fn all() -> Want {
        Want {
            tcp: true,
            udp: true,
            states: StateSet::ALL,
            udp_states: StateSet::ALL,
            local_port: None,
            remote_port: None,
            owners: true,
            scope: Scope::Host,
            health: false,
        }
    }

    /// The local ports asked for, as the dumps' `lo..=hi` range.
    pub(crate) fn ports(&self) -> Option<(u16, u16)> {
        self.local_port.map(|p| (p, p))
    }

    pub(crate) fn wants(&self, transport: Transport) -> bool {
        match transport {
            Transport::Tcp => self.tcp,
            Transport::Udp => self.udp,
        }
    }

    /// Whether a socket is one this want asks for (for sources that cannot filter at the
    /// source, such as parsed text).
    pub(crate) fn admits(&self, s: &Socket) -> bool {
        let transport = s.protocol.transport();
        self.wants(transport)
            && self.local_port.is_none_or(|p| p == s.local_port)
            && self.remote_port.is_none_or(|p| Some(p) == s.foreign.port)
            && match transport {
                Transport::Udp => self
                    .udp_states
                    .contains(s.state.unwrap_or(crate::model::TcpState::Close)),
                // A TCP row whose state a parser could not name passes only an unfiltered want.
                Transport::Tcp => s
                    .state
                    .map_or(self.states == StateSet::ALL, |st| self.states.contains(st)),
            }
    }
}

/// How complete the owner columns of a snapshot are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerCoverage {
    /// Owners were not asked for.
    NotRequested,
    /// Every process's descriptors could be read.
    Complete,
    /// Some processes could not be inspected (no permission); their sockets show no owner.
    Partial { unreadable_processes: usize },
    /// The host's tools cannot name owners at all (e.g. busybox netstat without `-p`, only
    /// `/proc/net`): no permission would help; the snapshot's notes say why.
    Unavailable,
}

/// The sockets a source returned, and how much it could see.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub sockets: Vec<Socket>,
    pub owners: OwnerCoverage,
    /// Short remarks for the result message (e.g. a fallback that was used).
    pub notes: Vec<String>,
    /// Owner details (user, command, unit, container) by pid, where the source can tell them.
    pub processes: Option<Arc<dyn ProcessLookup>>,
}

/// Something that lists sockets.
pub trait Source: Send + Sync {
    fn collect(&self, want: Want) -> BoxFuture<'_, Result<Snapshot, Error>>;

    /// The text of the host's `ip_local_port_range`, `ip_unprivileged_port_start` and
    /// `ip_local_reserved_ports` (each `None` when unreadable); `None` where the host is not
    /// Linux or they cannot be read at all. The port check's `bind` needs them.
    fn port_sysctls(&self) -> BoxFuture<'_, Option<[Option<String>; 3]>> {
        Box::pin(async { None })
    }

    /// The local ports of `transport` in `lo..=hi` some socket of this host's namespace has,
    /// from one listing narrowed to the range; `None` where the source cannot narrow by range
    /// (the caller then checks port by port).
    fn ports_in_use(
        &self,
        _transport: Transport,
        _lo: u16,
        _hi: u16,
    ) -> BoxFuture<'_, Option<std::collections::BTreeSet<u16>>> {
        Box::pin(async { None })
    }

    #[doc(hidden)]
    /// How `free_port` signals processes on this host, or why it may not (the sentence is
    /// the refusal's reason). By default it may not.
    fn control(&self) -> Result<Arc<dyn Control>, String> {
        Err("this host's source cannot signal processes".into())
    }
}

/// What `free_port` needs from a host beyond its listing: facts about processes and a way to
/// signal one. Only hosts an operator allowed it on hand one out ([`Source::control`]).
pub trait Control: Send + Sync {
    /// Facts of these processes; a pid that is gone is left out.
    fn facts<'a>(
        &'a self,
        pids: &'a [u32],
    ) -> BoxFuture<'a, Result<std::collections::HashMap<u32, Facts>, Error>>;

    /// Signals the process `process` describes if it is still that one (same pid and start
    /// time): `Ok(false)` when it is gone or was replaced.
    fn signal<'a>(&'a self, process: &'a Facts, sig: Sig) -> BoxFuture<'a, Result<bool, Error>>;

    /// Who is asking there: the pids never to signal (the server itself and its parent, on
    /// this machine) and the user signals are sent as.
    fn identity(&self) -> BoxFuture<'_, Result<Identity, Error>>;

    /// The TCP connections of local port `port` whose peer is `peer`, each as
    /// [`Control::close`] names it. By default a host's connections cannot be closed.
    fn connections(
        &self,
        _port: u16,
        _peer: (std::net::IpAddr, u16),
    ) -> BoxFuture<'_, Result<Vec<Connection>, Error>> {
        Box::pin(async { Err(Error::Refused(CANNOT_CLOSE.into())) })
    }

    /// Closes exactly that connection (its full id, cookie included), as `ss -K` does: the
    /// kernel resets it and its owner sees it aborted.
    fn close<'a>(&'a self, _connection: &'a Connection) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Err(Error::Refused(CANNOT_CLOSE.into())) })
    }
}

const CANNOT_CLOSE: &str =
    "closing a connection needs Linux's sock_diag SOCK_DESTROY on this machine; nothing was closed";

/// A TCP connection a [`Control`] can close: the socket as listed, and the kernel's id of it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub socket: Socket,
    /// The kernel's socket cookie: a close names it, so no later socket on the same tuple
    /// can be hit.
    pub(crate) cookie: u64,
    /// The bound device's interface index (0: none).
    pub(crate) interface: u32,
}

/// Who signals on a host (see [`Control::identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The server's own pid and its parent's, on this machine; none remotely.
    pub(crate) protected: Vec<u32>,
    /// The effective uid signals are sent with (0: any process).
    pub(crate) euid: u32,
}

pub use crate::process::signal::{Facts, Sig};

/// A host the query layer talks to, with how messages name it.
#[derive(Clone)]
pub struct Target {
    /// `data.host` in results: `localhost`, or the configured host's name.
    pub(crate) host: String,
    /// How messages name it: `local host` or `remote host web-1 (192.168.1.100)`.
    pub label: String,
    /// True for the local machine.
    pub local: bool,
    pub source: Arc<dyn Source>,
}

/// Looks up configured remote hosts. Only configured hosts are reachable.
pub trait RemoteSources: Send + Sync {
    /// The source for a configured host (by `name` or `host`), with the SSH port overridden
    /// when given. Anything not configured is [`Error::UnknownHost`].
    fn lookup(&self, host: &str, ssh_port: Option<u16>) -> Result<Target, Error>;

    /// The configured hosts, as `list_hosts` shows them (never a secret).
    fn hosts(&self) -> ConfiguredHosts;

    /// How many hosts one multi-host call queries at once (`[ssh] max_parallel`).
    fn max_parallel(&self) -> usize {
        crate::limits::DEFAULT_MAX_PARALLEL
    }
}

/// No remote hosts configured: every lookup is an unknown host.
pub struct NoRemotes;

impl RemoteSources for NoRemotes {
    fn lookup(&self, host: &str, _ssh_port: Option<u16>) -> Result<Target, Error> {
        Err(Error::UnknownHost {
            host: host.to_string(),
            configured: Vec::new(),
        })
    }

    fn hosts(&self) -> ConfiguredHosts {
        ConfiguredHosts::default()
    }
}
