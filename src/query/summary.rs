//! The summary of a listing, counted in one pass over every matching socket: what a host is
//! doing, small enough for a model to read whatever the host's size.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;

use super::details::{ContainerRef, NetnsRef, OwnerDetails};
use super::page::RowKey;
use crate::model::{Socket, TcpState, Transport};
use crate::source::ProcessLookup;

/// At most this many listeners are listed.
pub(crate) const MAX_LISTENERS: usize = 100;
/// At most this many entries in `top_programs` and `top_remote_hosts`.
pub(crate) const TOP: usize = 10;
/// At most this many namespaces in `by_netns`.
pub(crate) const MAX_NETNS: usize = 50;

/// Counts over every matching socket.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub struct Summary {
    /// Sockets per state, netstat spelling; UDP sockets count as UNCONN (not connected) or
    /// ESTABLISHED (connected).
    pub(crate) by_state: BTreeMap<&'static str, usize>,
    /// Sockets per protocol: tcp, tcp6, udp, udp6.
    pub(crate) by_protocol: BTreeMap<&'static str, usize>,
    /// Listening TCP sockets and bound, unconnected UDP sockets, in row order; at most 100.
    pub listeners: Vec<Listener>,
    /// How many listeners there are in all.
    pub(crate) listener_count: usize,
    /// True when listeners was cut at 100.
    pub(crate) listeners_truncated: bool,
    /// The processes holding the most matching sockets, most first; at most 10. Empty when
    /// owners are unknown.
    pub(crate) top_programs: Vec<ProgramCount>,
    /// The foreign addresses of the most connected sockets, most first; at most 10.
    pub(crate) top_remote_hosts: Vec<RemoteHostCount>,
    /// Sockets per network namespace, most first; at most 50. Only when every namespace was
    /// listed (scope all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) by_netns: Option<Vec<NetnsCount>>,
}

/// A network namespace and how many matching sockets it has.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct NetnsCount {
    pub(crate) inode: u64,
    /// Its name under /run/netns, else `runtime:id` of the container holding it, else null.
    pub(crate) name: Option<Arc<str>>,
    pub(crate) count: usize,
}

/// A listening or bound socket.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Listener {
    pub(crate) protocol: &'static str,
    pub local_ip: IpAddr,
    pub local_port: u16,
    /// The owning process (lowest pid when shared); null when unknown.
    pub(crate) pid: Option<u32>,
    pub(crate) program: Option<Arc<str>>,
    /// The container the owner runs in; left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<ContainerRef>,
    /// The interface the socket is bound to; left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interface: Option<Arc<str>>,
    /// Its network namespace; only when every namespace was listed (scope all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) netns: Option<NetnsRef>,
}

/// A process and how many of the matching sockets it holds.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct ProgramCount {
    pub(crate) program: Arc<str>,
    pub(crate) pid: u32,
    pub(crate) count: usize,
}

/// A foreign address and how many matching sockets are connected to it.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct RemoteHostCount {
    pub(crate) foreign_ip: IpAddr,
    pub(crate) count: usize,
}

/// A state's name in summaries: netstat spelling for TCP, UNCONN/ESTABLISHED for UDP.
pub(crate) fn state_name(s: &Socket) -> &'static str {
    match (s.protocol.transport(), s.state) {
        (Transport::Udp, None | Some(TcpState::Close)) => "UNCONN",
        (_, Some(state)) => state.netstat_name(),
        (Transport::Tcp, None) => "UNKNOWN",
    }
}

/// Whether a socket is a listener: a listening TCP socket or a bound, unconnected UDP one.
pub(crate) fn is_listener(s: &Socket) -> bool {
    match s.protocol.transport() {
        Transport::Tcp => s.state == Some(TcpState::Listen),
        Transport::Udp => matches!(s.state, None | Some(TcpState::Close)),
    }
}

/// Builds a [`Summary`] from sockets fed one at a time.
#[derive(Default)]
pub(crate) struct SummaryBuilder {
    by_state: BTreeMap<&'static str, usize>,
    by_protocol: BTreeMap<&'static str, usize>,
    /// The first listeners in row order: a max-heap holding the smallest keys.
    listeners: BinaryHeap<(RowKey, ListenerEntry)>,
    listener_count: usize,
    programs: HashMap<u32, (Arc<str>, usize)>,
    remotes: HashMap<IpAddr, usize>,
    /// Per namespace inode: its name and count (sockets of a listing of every namespace).
    netns: HashMap<u64, (Option<Arc<str>>, usize)>,
}

/// A listener in the heap (ordered by its key only).
struct ListenerEntry(Listener);

impl PartialEq for ListenerEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for ListenerEntry {}
impl PartialOrd for ListenerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ListenerEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl SummaryBuilder {
    pub(crate) fn add(&mut self, s: &Socket) {
        *self.by_state.entry(state_name(s)).or_default() += 1;
        *self.by_protocol.entry(s.protocol.as_str()).or_default() += 1;
        if let Some(ns) = s.netns() {
            self.netns
                .entry(ns.inode)
                .or_insert_with(|| (ns.name.clone(), 0))
                .1 += 1;
        }
        for owner in &s.owners {
            self.programs
                .entry(owner.pid)
                .or_insert_with(|| (owner.program.clone(), 0))
                .1 += 1;
        }
        if is_listener(s) {
            self.listener_count += 1;
            let key = RowKey::of(s);
            if self.listeners.len() < MAX_LISTENERS {
                self.listeners.push((key, ListenerEntry(listener(s))));
            } else if self.listeners.peek().is_some_and(|(top, _)| key < *top) {
                self.listeners.pop();
                self.listeners.push((key, ListenerEntry(listener(s))));
            }
        } else if s.foreign.port.is_some_and(|p| p != 0) && !s.foreign.ip.is_unspecified() {
            *self.remotes.entry(s.foreign.ip).or_default() += 1;
        }
    }

    /// Finishes the summary, naming the listeners' containers from `processes`.
    pub(crate) fn finish_with(self, processes: Option<&dyn ProcessLookup>) -> Summary {
        let by_netns = (!self.netns.is_empty()).then(|| {
            let mut all: Vec<NetnsCount> = self
                .netns
                .into_iter()
                .map(|(inode, (name, count))| NetnsCount { inode, name, count })
                .collect();
            all.sort_by_key(|n| (Reverse(n.count), n.inode));
            all.truncate(MAX_NETNS);
            all
        });
        let mut listeners = self.listeners.into_vec();
        listeners.sort_by_key(|(key, _)| *key);
        let mut programs: Vec<ProgramCount> = self
            .programs
            .into_iter()
            .map(|(pid, (program, count))| ProgramCount {
                program,
                pid,
                count,
            })
            .collect();
        programs.sort_by_key(|p| (Reverse(p.count), p.pid));
        programs.truncate(TOP);
        let mut remotes: Vec<RemoteHostCount> = self
            .remotes
            .into_iter()
            .map(|(foreign_ip, count)| RemoteHostCount { foreign_ip, count })
            .collect();
        remotes.sort_by_key(|r| (Reverse(r.count), r.foreign_ip));
        remotes.truncate(TOP);
        Summary {
            by_state: self.by_state,
            by_protocol: self.by_protocol,
            listeners_truncated: self.listener_count > listeners.len(),
            listener_count: self.listener_count,
            listeners: listeners
                .into_iter()
                .map(|(_, l)| {
                    let mut l = l.0;
                    if let (Some(lookup), Some(pid)) = (processes, l.pid) {
                        l.container = lookup
                            .process(pid)
                            .and_then(|info| OwnerDetails::of(&info).container);
                    }
                    l
                })
                .collect(),
            top_programs: programs,
            top_remote_hosts: remotes,
            by_netns,
        }
    }
}

fn listener(s: &Socket) -> Listener {
    let owner = s.owners.iter().min_by_key(|o| o.pid);
    Listener {
        protocol: s.protocol.as_str(),
        local_ip: s.local_ip,
        local_port: s.local_port,
        pid: owner.map(|o| o.pid),
        program: owner.map(|o| o.program.clone()),
        container: None,
        interface: s.place.as_ref().and_then(|p| p.interface.clone()),
        netns: s.netns().map(NetnsRef::of),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Owner, Protocol};

    fn sock(
        protocol: Protocol,
        lport: u16,
        foreign: (&str, Option<u16>),
        state: Option<TcpState>,
        owner: Option<(u32, &str)>,
    ) -> Socket {
        let local: IpAddr = if protocol.is_ipv6() {
            "::".parse().unwrap()
        } else {
            "0.0.0.0".parse().unwrap()
        };
        let mut s = Socket::new(
            protocol,
            local,
            lport,
            Endpoint {
                ip: foreign.0.parse().unwrap(),
                port: foreign.1,
            },
        );
        s.state = state;
        if let Some((pid, program)) = owner {
            s.owners.push(Owner {
                pid,
                program: program.into(),
            });
        }
        s
    }

    #[test]
    fn counts_states_protocols_listeners_programs_and_remotes() {
        use Protocol::*;
        let listen = Some(TcpState::Listen);
        let estab = Some(TcpState::Established);
        let mut b = SummaryBuilder::default();
        let sockets = [
            sock(Tcp, 80, ("0.0.0.0", None), listen, Some((10, "nginx"))),
            sock(
                Tcp,
                80,
                ("10.0.0.7", Some(5000)),
                estab,
                Some((10, "nginx")),
            ),
            sock(
                Tcp,
                80,
                ("10.0.0.7", Some(5001)),
                estab,
                Some((10, "nginx")),
            ),
            sock(Tcp6, 22, ("::", None), listen, Some((2, "sshd"))),
            sock(
                Tcp,
                40000,
                ("10.0.0.9", Some(443)),
                Some(TcpState::TimeWait),
                None,
            ),
            sock(Udp, 53, ("0.0.0.0", None), None, Some((3, "dnsmasq"))),
            sock(Udp6, 5353, ("::1", Some(53)), estab, Some((4, "resolved"))),
        ];
        for s in &sockets {
            b.add(s);
        }
        let summary = b.finish_with(None);
        assert_eq!(
            summary.by_state,
            BTreeMap::from([
                ("ESTABLISHED", 3),
                ("LISTEN", 2),
                ("TIME_WAIT", 1),
                ("UNCONN", 1)
            ])
        );
        assert_eq!(
            summary.by_protocol,
            BTreeMap::from([("tcp", 4), ("tcp6", 1), ("udp", 1), ("udp6", 1)])
        );
        let ports: Vec<u16> = summary.listeners.iter().map(|l| l.local_port).collect();
        assert_eq!(ports, [80, 22, 53], "row order: tcp, tcp6, udp");
        assert_eq!(summary.listener_count, 3);
        assert!(!summary.listeners_truncated);
        assert_eq!(summary.top_programs[0].program.as_ref(), "nginx");
        assert_eq!(summary.top_programs[0].count, 3);
        assert_eq!(summary.top_programs.len(), 4);
        assert_eq!(
            summary.top_remote_hosts[0],
            RemoteHostCount {
                foreign_ip: "10.0.0.7".parse().unwrap(),
                count: 2
            }
        );
        assert_eq!(summary.top_remote_hosts.len(), 3);
    }

    #[test]
    fn listeners_keep_the_first_hundred_in_row_order() {
        let mut b = SummaryBuilder::default();
        for port in (1..=250u16).rev() {
            b.add(&sock(
                Protocol::Tcp,
                port,
                ("0.0.0.0", None),
                Some(TcpState::Listen),
                None,
            ));
        }
        let s = b.finish_with(None);
        assert_eq!(s.listener_count, 250);
        assert!(s.listeners_truncated);
        let ports: Vec<u16> = s.listeners.iter().map(|l| l.local_port).collect();
        assert_eq!(ports, (1..=100).collect::<Vec<u16>>());
    }
}
