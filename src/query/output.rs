//! What the tools return: the result envelope and each tool's `data`.
//!
//! Field order is the order of the JSON (`success` and `message` first, summaries before rows),
//! so a model reading the text block meets the answer before the details. Every type here
//! derives `JsonSchema`: the tools' output schemas are generated from them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

pub(crate) use super::details::{ContainerRef, NetnsRef, OwnerDetails};
use super::summary::Summary;
use crate::error::Error;
use crate::model::{Netns, Place};
pub(crate) use crate::source::{ConfiguredHosts, HostInfo, UnusableHost};

/// The most any answer carries, whatever its `limit` (`0` included): its JSON, which goes out
/// twice (structured and as text), stays well under the 16 MiB line that rmcp clients read,
/// and the server's memory for one answer stays in the tens of MB. A longer answer keeps the
/// rows that fit (see each answer's [`Rows`]), says so, and is marked truncated.
pub(crate) const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

/// The most events gathered for one answer (`limit: 0` included): events are about 200 bytes
/// or more, so this many make more than [`MAX_ANSWER_BYTES`] and the byte ceiling is what
/// cuts; this bounds what is gathered before it does.
pub(crate) const MAX_ANSWER_ROWS: usize = 20_000;

/// An answer whose main list can be cut to fit [`MAX_ANSWER_BYTES`].
pub(crate) trait Rows {
    /// Rows in the list.
    fn row_count(&self) -> usize;
    /// Keeps the first `n` rows, marking the answer truncated.
    fn keep_rows(&mut self, n: usize);
}

/// The result envelope. `data` is `null` when `success` is false.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Envelope<T> {
    /// Whether the query succeeded.
    pub success: bool,
    /// A human-readable summary, or what went wrong and what to do.
    pub message: String,
    /// The result; null on failure.
    pub data: Option<T>,
}

impl<T> Envelope<T> {
    pub(crate) fn ok(message: String, data: T) -> Envelope<T> {
        Envelope {
            success: true,
            message,
            data: Some(data),
        }
    }

    pub(crate) fn error(err: &Error) -> Envelope<T> {
        Envelope {
            success: false,
            message: err.to_string(),
            data: None,
        }
    }

    /// The same answer with its data turned into another type.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Envelope<U> {
        Envelope {
            success: self.success,
            message: self.message,
            data: self.data.map(f),
        }
    }
}

/// `data` of `query_network_connections`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct ConnectionsData {
    /// The host asked: `localhost`, or a configured remote host's name.
    pub host: String,
    /// How many sockets matched the filters (all of them, not only the rows returned).
    pub connection_count: usize,
    /// True when matching rows follow the ones returned (see next_cursor).
    pub truncated: bool,
    /// Pass this back as `cursor` to get the rows after these; null at the end.
    pub(crate) next_cursor: Option<String>,
    /// Counts over every matching socket: what a host is doing, without reading the rows.
    pub summary: Summary,
    /// The rows of this page, in the stable order (protocol, local port, local ip, foreign ip,
    /// foreign port).
    pub connections: Vec<ConnectionRow>,
    /// The filters applied.
    pub(crate) filter: FilterEcho,
}

/// One socket, with the columns netstat prints, then who holds it and where it lives.
///
/// No field owns a heap allocation (names are static, addresses are formatted while
/// serializing, the program name, the owners' details and the namespace are shared), so a full
/// listing of 100k sockets is converted from the snapshot in place and costs no more memory
/// than the snapshot itself. Optional fields (owner details, `owners`, `interface`, `netns`)
/// are left out when they do not apply.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct ConnectionRow {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub(crate) protocol: &'static str,
    pub(crate) recv_queue: u64,
    pub(crate) send_queue: u64,
    pub(crate) local_ip: IpAddr,
    pub local_port: u16,
    pub(crate) foreign_ip: IpAddr,
    /// Null where netstat prints `*` (not connected).
    pub(crate) foreign_port: Option<u16>,
    /// netstat spelling (`LISTEN`, `ESTABLISHED`, ...); null for an unconnected UDP socket.
    pub state: Option<&'static str>,
    /// Owning process id; null when unknown (no permission) or held by no process.
    pub pid: Option<u32>,
    /// Owning process name (`/proc/<pid>/comm`); null when unknown.
    pub program: Option<Arc<str>>,
    /// The owner's details and, for a socket several processes hold, all of them.
    #[serde(flatten)]
    pub(crate) owners: RowOwners,
    /// The bound interface and, when every namespace was listed, the socket's namespace.
    #[serde(flatten)]
    pub(crate) place: RowPlace,
}

/// A process holding a socket, with its details.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct SocketOwner {
    pub(crate) pid: u32,
    /// The process name (`/proc/<pid>/comm`).
    pub(crate) program: Arc<str>,
    #[serde(flatten)]
    pub(crate) details: OwnerDetails,
}

/// The processes holding a socket, lowest pid first; one value shared by every row with the
/// same holders.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Holders {
    pub(crate) owners: Vec<SocketOwner>,
}

/// A row's owner details (of its `pid`) and, when several processes hold the socket, the
/// `owners` list; serialized flat into the row.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RowOwners(pub Option<Arc<Holders>>);

impl RowOwners {
    /// Every process holding the socket, lowest pid first.
    pub(crate) fn all(&self) -> &[SocketOwner] {
        self.0.as_deref().map_or(&[], |h| h.owners.as_slice())
    }

    /// The details of the first owner (the row's `pid`).
    pub(crate) fn details(&self) -> Option<&OwnerDetails> {
        self.all().first().map(|o| &o.details)
    }
}

impl Serialize for RowOwners {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("RowOwners", 6)?;
        let owners = self.all();
        if let Some(first) = owners.first() {
            first.details.write_fields(&mut st)?;
        }
        if owners.len() > 1 {
            st.serialize_field("owners", owners)?;
        }
        st.end()
    }
}

/// The schema of [`RowOwners`] as it serializes.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct RowOwnersSchema {
    #[serde(flatten)]
    details: OwnerDetails,
    /// Every process holding the socket, lowest pid first (the row's pid/program are the
    /// first); only on sockets that several processes hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    owners: Option<Vec<SocketOwner>>,
}

impl JsonSchema for RowOwners {
    fn schema_name() -> Cow<'static, str> {
        "RowOwners".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        RowOwnersSchema::json_schema(generator)
    }
}

/// A row's bound interface and namespace; serialized flat into the row.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RowPlace(pub Option<Arc<Place>>);

impl RowPlace {
    pub(crate) fn interface(&self) -> Option<&str> {
        self.0.as_ref()?.interface.as_deref()
    }

    pub(crate) fn netns(&self) -> Option<&Netns> {
        self.0.as_ref()?.netns.as_ref()
    }
}

impl Serialize for RowPlace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("RowPlace", 2)?;
        if let Some(interface) = self.interface() {
            st.serialize_field("interface", interface)?;
        }
        if let Some(netns) = self.netns() {
            st.serialize_field("netns", &NetnsRef::of(netns))?;
        }
        st.end()
    }
}

/// The schema of [`RowPlace`] as it serializes.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct RowPlaceSchema {
    /// The interface the socket is bound to (`SO_BINDTODEVICE`, or the scope of a link-local
    /// IPv6 address: what ss prints as `%eth0`); left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<String>,
    /// The socket's network namespace; only when every namespace was listed (scope all).
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<NetnsRef>,
}

impl JsonSchema for RowPlace {
    fn schema_name() -> Cow<'static, str> {
        "RowPlace".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        RowPlaceSchema::json_schema(generator)
    }
}

/// The filters of a listing, echoed back.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct FilterEcho {
    pub(crate) proto: String,
    pub(crate) state: Option<String>,
    pub(crate) local_port: Option<u16>,
    pub(crate) remote_port: Option<u16>,
    pub(crate) pid: Option<u32>,
    pub(crate) program: Option<String>,
    /// Null when unlimited.
    pub(crate) limit: Option<usize>,
    /// `host` or `all` (every network namespace).
    pub(crate) scope: &'static str,
}

/// `data` of `check_port_occupation`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct PortData {
    pub(crate) host: String,
    pub check_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    pub is_occupied: bool,
    /// Whether a server can bind the port, and why not (this machine; null for a remote host).
    pub bind: Option<super::bind::Bind>,
    /// The nearest ports at or above this one that nothing holds (either family) and that are
    /// outside the ephemeral range: at most 5 (this machine; empty for a remote host).
    pub suggested_ports: Vec<u16>,
    /// How many sockets have this local port (all of them, not only the rows returned).
    pub occupation_count: usize,
    /// Every distinct process holding a socket on the port, with its sockets counted per
    /// state; most sockets first.
    pub owners: Vec<PortOwner>,
    /// How many distinct processes hold the port.
    pub(crate) owner_count: usize,
    /// True when owners was cut (only past the first 100).
    pub(crate) owners_truncated: bool,
    /// Sockets on the port that no process holds (TIME_WAIT and other orphaned states, kept by
    /// the kernel).
    pub(crate) kernel_held: usize,
    /// True when occupations holds fewer rows than occupation_count.
    pub(crate) truncated: bool,
    /// The sockets on the port, listening (TCP) or bound (UDP) ones first, then in row order;
    /// at most `limit`.
    pub occupations: Vec<Occupation>,
}

/// A process holding sockets on the checked port.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct PortOwner {
    pub pid: u32,
    pub(crate) program: Arc<str>,
    /// How many of the port's sockets it holds.
    pub(crate) socket_count: usize,
    /// Its sockets per state (netstat spelling; UDP as UNCONN or ESTABLISHED).
    pub(crate) states: BTreeMap<&'static str, usize>,
    #[serde(flatten)]
    pub(crate) details: OwnerDetails,
    /// The network namespace of its sockets on the port; only when every namespace was
    /// checked (scope all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) netns: Option<NetnsRef>,
}

/// A socket holding the checked port.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Occupation {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub(crate) protocol: &'static str,
    pub(crate) local_ip: IpAddr,
    pub(crate) local_port: u16,
    pub(crate) foreign_ip: IpAddr,
    /// Null where netstat prints `*` (not connected).
    pub(crate) foreign_port: Option<u16>,
    /// netstat spelling; null for an unconnected UDP socket.
    pub(crate) state: Option<&'static str>,
    /// The owning process (the lowest pid when several share the socket); null when unknown
    /// or held by no process.
    pub pid: Option<u32>,
    pub(crate) program: Option<Arc<str>>,
    /// The owner's details and, for a socket several processes hold, all of them.
    #[serde(flatten)]
    pub(crate) owners: RowOwners,
    /// The bound interface and, when every namespace was checked, the socket's namespace.
    #[serde(flatten)]
    pub(crate) place: RowPlace,
}

/// `data` of `list_hosts`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct HostsData {
    /// How many usable remote hosts are configured.
    pub(crate) host_count: usize,
    /// Where the configuration came from; null when there is no config file.
    pub(crate) config: Option<String>,
    /// True when `hosts` or `unusable` were shortened to keep the answer within its byte
    /// budget (address the others by glob or `@group`).
    pub(crate) truncated: bool,
    pub(crate) hosts: Vec<HostInfo>,
    /// How many configured entries cannot be used.
    pub(crate) unusable_count: usize,
    /// Configured entries that cannot be used, with why (calls naming them get that error).
    pub(crate) unusable: Vec<UnusableHost>,
}

/// `data` of `query_network_connections`: one host's, or several hosts' when `host` named more
/// than one.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum ConnectionsAnswer {
    One(ConnectionsData),
    Many(FleetData<FleetSummary, ConnectionsData>),
}

/// `data` of `check_port_occupation`: one host's, or several hosts'.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum PortAnswer {
    One(PortData),
    Many(FleetData<PortFleetSummary, PortData>),
}

/// Several hosts' answers: the merged summary first, then one entry per host in the order
/// the hosts were named.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct FleetData<S, T> {
    /// How many hosts were asked.
    pub host_count: usize,
    /// How many of them failed (their entry says why).
    pub failed_hosts: usize,
    /// Counts over every answering host.
    pub summary: S,
    /// One entry per host: its own success, message and data (null when it failed).
    pub hosts: Vec<HostAnswer<T>>,
    /// True when the last entries of `hosts` were left out to fit the answer (hundreds of
    /// hosts with long names or messages); `host_count` and `failed_hosts` still count them.
    pub hosts_truncated: bool,
}

/// One host's part of a multi-host answer.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct HostAnswer<T> {
    /// The host's name.
    pub host: String,
    pub success: bool,
    /// What this host answered, or why it failed and what to do.
    pub message: String,
    /// This host's data, as a one-host call returns it (rows cut first to fit the answer);
    /// null when it failed or when its details were left out to fit.
    pub data: Option<T>,
}

/// The summary of a listing over several hosts.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub struct FleetSummary {
    /// Matching sockets on all answering hosts.
    pub connection_count: usize,
    /// Sockets per state over all hosts (netstat spelling; UDP as UNCONN or ESTABLISHED).
    pub(crate) by_state: BTreeMap<&'static str, usize>,
    /// Sockets per protocol over all hosts.
    pub(crate) by_protocol: BTreeMap<&'static str, usize>,
    /// Listening TCP and bound UDP sockets, host by host in the order named; at most 100.
    pub listeners: Vec<FleetListener>,
    pub(crate) listener_count: usize,
    pub(crate) listeners_truncated: bool,
    /// The processes holding the most matching sockets, over all hosts; at most 10.
    pub(crate) top_programs: Vec<FleetProgramCount>,
    /// The foreign addresses of the most connected sockets, over all hosts; at most 10.
    pub(crate) top_remote_hosts: Vec<super::summary::RemoteHostCount>,
}

/// A listener on one of several hosts.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct FleetListener {
    pub(crate) host: String,
    pub(crate) protocol: &'static str,
    pub(crate) local_ip: IpAddr,
    pub local_port: u16,
    pub(crate) pid: Option<u32>,
    pub(crate) program: Option<Arc<str>>,
}

/// A process on one of several hosts, and how many matching sockets it holds.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct FleetProgramCount {
    pub(crate) host: String,
    pub(crate) program: Arc<str>,
    pub(crate) pid: u32,
    pub(crate) count: usize,
}

/// The summary of a port check over several hosts.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Default)]
pub struct PortFleetSummary {
    /// Hosts where the port is occupied, in the order named.
    pub occupied_on: Vec<String>,
    /// Hosts where it is free.
    pub(crate) free_on: Vec<String>,
    /// Hosts that did not answer.
    pub failed: Vec<String>,
    /// True when the lists above were cut to their first 20 names to fit the answer.
    pub(crate) host_lists_truncated: bool,
    /// Sockets on the port over all hosts.
    pub(crate) occupation_count: usize,
    /// The processes holding it, host by host, most sockets first within a host; at most 100.
    pub(crate) owners: Vec<FleetPortOwner>,
    pub(crate) owners_truncated: bool,
}

/// A process holding the checked port on one of several hosts.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct FleetPortOwner {
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) program: Arc<str>,
    pub(crate) socket_count: usize,
}

impl Rows for ConnectionsData {
    fn row_count(&self) -> usize {
        self.connections.len()
    }
    fn keep_rows(&mut self, n: usize) {
        self.connections.truncate(n);
        self.truncated = true;
        // The cursor named the row after the last one of a whole page.
        self.next_cursor = None;
    }
}

impl Rows for PortData {
    fn row_count(&self) -> usize {
        self.occupations.len() + self.owners.len()
    }
    /// Socket rows go first: the owners (one per process) are what the check is for.
    fn keep_rows(&mut self, n: usize) {
        let owners = n.min(self.owners.len());
        if n - owners < self.occupations.len() {
            self.occupations.truncate(n - owners);
            self.truncated = true;
        }
        if owners < self.owners.len() {
            self.owners.truncate(owners);
            self.owners_truncated = true;
        }
    }
}

impl Rows for HostsData {
    fn row_count(&self) -> usize {
        self.hosts.len() + self.unusable.len()
    }
    /// Usable hosts first: they are what a caller can name.
    fn keep_rows(&mut self, n: usize) {
        let hosts = n.min(self.hosts.len());
        self.hosts.truncate(hosts);
        self.unusable.truncate(n - hosts);
        self.truncated = true;
    }
}

impl<S, T: Rows> Rows for FleetData<S, T> {
    fn row_count(&self) -> usize {
        self.hosts
            .iter()
            .filter_map(|h| h.data.as_ref())
            .map(Rows::row_count)
            .sum()
    }
    /// Every host keeps the same share of its rows.
    fn keep_rows(&mut self, n: usize) {
        let total = self.row_count().max(1);
        for data in self.hosts.iter_mut().filter_map(|h| h.data.as_mut()) {
            let rows = data.row_count();
            data.keep_rows((rows as u128 * n as u128 / total as u128) as usize);
        }
    }
}

impl Rows for ConnectionsAnswer {
    fn row_count(&self) -> usize {
        match self {
            ConnectionsAnswer::One(d) => d.row_count(),
            ConnectionsAnswer::Many(d) => d.row_count(),
        }
    }
    fn keep_rows(&mut self, n: usize) {
        match self {
            ConnectionsAnswer::One(d) => d.keep_rows(n),
            ConnectionsAnswer::Many(d) => d.keep_rows(n),
        }
    }
}

impl Rows for PortAnswer {
    fn row_count(&self) -> usize {
        match self {
            PortAnswer::One(d) => d.row_count(),
            PortAnswer::Many(d) => d.row_count(),
        }
    }
    fn keep_rows(&mut self, n: usize) {
        match self {
            PortAnswer::One(d) => d.keep_rows(n),
            PortAnswer::Many(d) => d.keep_rows(n),
        }
    }
}

impl From<ConfiguredHosts> for HostsData {
    fn from(c: ConfiguredHosts) -> HostsData {
        HostsData {
            host_count: c.hosts.len(),
            config: c.config,
            truncated: false,
            hosts: c.hosts,
            unusable_count: c.unusable.len(),
            unusable: c.unusable,
        }
    }
}
