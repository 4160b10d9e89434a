//! The two operations of SPEC §1.1 and §1.2 as pure functions over a snapshot, plus their
//! input validation, result envelopes and messages.
//!
//! Inputs arrive loosely typed ([`ConnectionsArgs`], [`PortArgs`], or raw JSON through
//! `from_json`) and become validated queries ([`ConnectionsQuery`], [`PortQuery`]) before the
//! core sees them; every rejection is an [`InputError`] naming the parameter and the allowed
//! values. [`Service`] runs a query against the right [`Target`] and always answers with an
//! [`Envelope`]; the CLI and the MCP server are two faces of it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, InputError};
use crate::model::{Socket, StateSet, TcpState, Transport};
use crate::source::{OwnerCoverage, RemoteSources, Snapshot, Source, Target, Want};

/// The MCP default for `limit`; the CLI lists everything unless told.
pub const DEFAULT_MCP_LIMIT: usize = 500;

/// How to fix missing owners, appended to messages.
pub const OWNER_HINT: &str = "run as root (sudo) or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH \
(e.g. setcap cap_sys_ptrace,cap_dac_read_search+ep on the binary); for a remote host, use an SSH \
user with those rights";

const PORT_RANGE: &str = "must be an integer between 1 and 65535";
const STATE_ALLOWED: &str = "must be a TCP state: ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, \
FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING (case-insensitive; ss spellings \
such as ESTAB, SYN-SENT, FIN-WAIT-1, UNCONN and the Windows LISTENING are accepted too)";

// ---------------------------------------------------------------------------------------------
// Inputs

/// Which transports a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoFilter {
    Tcp,
    Udp,
    All,
}

impl ProtoFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtoFilter::Tcp => "tcp",
            ProtoFilter::Udp => "udp",
            ProtoFilter::All => "all",
        }
    }

    fn parse(text: &str) -> Result<ProtoFilter, InputError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(ProtoFilter::Tcp),
            "udp" => Ok(ProtoFilter::Udp),
            "all" => Ok(ProtoFilter::All),
            _ => Err(input(
                "proto",
                quoted(text),
                "must be one of: tcp, udp, all",
            )),
        }
    }
}

/// Which host to ask: the local machine, or a configured remote host by name or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    Local,
    Remote(String),
}

impl HostSpec {
    /// Omitted, empty, `localhost`, `127.0.0.1` and `::1` mean the local machine.
    pub fn parse(host: Option<&str>) -> HostSpec {
        match host.map(str::trim) {
            None | Some("") => HostSpec::Local,
            Some(h) if h.eq_ignore_ascii_case("localhost") || h == "127.0.0.1" || h == "::1" => {
                HostSpec::Local
            }
            Some(_) => HostSpec::Remote(host.unwrap_or_default().to_string()),
        }
    }
}

/// Inputs of `query_network_connections` as a caller gave them, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionsArgs {
    pub proto: Option<String>,
    pub state: Option<String>,
    pub host: Option<String>,
    /// SSH port for a remote host.
    pub port: Option<i64>,
    pub local_port: Option<i64>,
    pub remote_port: Option<i64>,
    pub pid: Option<i64>,
    pub program: Option<String>,
    pub limit: Option<i64>,
}

/// A validated `query_network_connections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsQuery {
    pub proto: ProtoFilter,
    pub state: Option<TcpState>,
    /// The state as the caller spelled it, for the filter echo.
    pub state_text: Option<String>,
    pub host: HostSpec,
    pub ssh_port: Option<u16>,
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    pub pid: Option<u32>,
    /// Lower-cased substring of the program name.
    pub program: Option<String>,
    /// `None` lists everything.
    pub limit: Option<usize>,
    /// Whether to look up owners at all (the CLI's `--no-owners` turns it off).
    pub owners: bool,
}

impl ConnectionsArgs {
    /// Reads the arguments of an MCP call. Unknown parameters and wrong JSON types are errors.
    pub fn from_json(args: &Map<String, Value>) -> Result<ConnectionsArgs, InputError> {
        const KNOWN: &[&str] = &[
            "proto",
            "state",
            "host",
            "port",
            "local_port",
            "remote_port",
            "pid",
            "program",
            "limit",
        ];
        reject_unknown(args, KNOWN)?;
        Ok(ConnectionsArgs {
            proto: json_string(args, "proto", "must be one of: tcp, udp, all")?,
            state: json_string(args, "state", STATE_ALLOWED)?,
            host: json_string(
                args,
                "host",
                "must be a configured remote host name or address",
            )?,
            port: json_int(args, "port", PORT_RANGE)?,
            local_port: json_int(args, "local_port", PORT_RANGE)?,
            remote_port: json_int(args, "remote_port", PORT_RANGE)?,
            pid: json_int(args, "pid", "must be a positive integer process id")?,
            program: json_string(args, "program", "must be a program name or part of one")?,
            limit: json_int(args, "limit", "must be an integer >= 0 (0 means no limit)")?,
        })
    }

    /// Validates the arguments. `default_limit` applies when `limit` is absent.
    pub fn validate(&self, default_limit: Option<usize>) -> Result<ConnectionsQuery, InputError> {
        let proto = match &self.proto {
            None => ProtoFilter::All,
            Some(p) => ProtoFilter::parse(p)?,
        };
        let state = match &self.state {
            None => None,
            Some(s) if s.trim().is_empty() => None,
            Some(s) => {
                Some(TcpState::parse(s).ok_or_else(|| input("state", quoted(s), STATE_ALLOWED))?)
            }
        };
        if let (Some(_), ProtoFilter::Udp) = (state, proto) {
            return Err(input(
                "state",
                format!(
                    "{} with proto 'udp'",
                    quoted(self.state.as_deref().unwrap_or(""))
                ),
                "applies to TCP only: use it with proto 'tcp' or 'all', or leave it out for UDP",
            ));
        }
        let limit = match self.limit {
            None => default_limit,
            Some(0) => None,
            Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(n) => {
                return Err(input(
                    "limit",
                    n.to_string(),
                    "must be an integer >= 0 (0 means no limit)",
                ));
            }
        };
        let program = match &self.program {
            Some(p) if !p.trim().is_empty() => Some(p.trim().to_lowercase()),
            _ => None,
        };
        Ok(ConnectionsQuery {
            proto,
            state,
            state_text: state.map(|_| self.state.clone().unwrap_or_default()),
            host: HostSpec::parse(self.host.as_deref()),
            ssh_port: port_arg("port", self.port)?,
            local_port: port_arg("local_port", self.local_port)?,
            remote_port: port_arg("remote_port", self.remote_port)?,
            pid: match self.pid {
                None => None,
                Some(p) => Some(u32::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                    input(
                        "pid",
                        p.to_string(),
                        "must be a positive integer process id",
                    )
                })?),
            },
            program,
            limit,
            owners: true,
        })
    }
}

/// Inputs of `check_port_occupation` as a caller gave them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortArgs {
    pub port: Option<i64>,
    pub proto: Option<String>,
    pub host: Option<String>,
    pub ssh_port: Option<i64>,
}

/// A validated `check_port_occupation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortQuery {
    pub port: u16,
    pub transport: Transport,
    pub host: HostSpec,
    pub ssh_port: Option<u16>,
}

impl PortArgs {
    pub fn from_json(args: &Map<String, Value>) -> Result<PortArgs, InputError> {
        reject_unknown(args, &["port", "proto", "host", "ssh_port"])?;
        Ok(PortArgs {
            port: json_int(args, "port", PORT_RANGE)?,
            proto: json_string(args, "proto", "must be one of: tcp, udp")?,
            host: json_string(
                args,
                "host",
                "must be a configured remote host name or address",
            )?,
            ssh_port: json_int(args, "ssh_port", PORT_RANGE)?,
        })
    }

    pub fn validate(&self) -> Result<PortQuery, InputError> {
        let port = port_arg("port", self.port)?.ok_or_else(|| {
            input(
                "port",
                "missing".into(),
                "is required and must be an integer between 1 and 65535",
            )
        })?;
        let transport = match self.proto.as_deref().map(|p| p.trim().to_ascii_lowercase()) {
            None => Transport::Tcp,
            Some(p) if p == "tcp" => Transport::Tcp,
            Some(p) if p == "udp" => Transport::Udp,
            Some(_) => {
                return Err(input(
                    "proto",
                    quoted(self.proto.as_deref().unwrap_or("")),
                    "must be one of: tcp, udp",
                ));
            }
        };
        Ok(PortQuery {
            port,
            transport,
            host: HostSpec::parse(self.host.as_deref()),
            ssh_port: port_arg("ssh_port", self.ssh_port)?,
        })
    }
}

fn input(param: &str, given: String, allowed: &str) -> InputError {
    InputError {
        param: param.to_string(),
        given,
        allowed: allowed.to_string(),
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.escape_default())
}

fn port_arg(param: &str, value: Option<i64>) -> Result<Option<u16>, InputError> {
    match value {
        None => Ok(None),
        Some(v) => u16::try_from(v)
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| input(param, v.to_string(), PORT_RANGE)),
    }
}

fn reject_unknown(args: &Map<String, Value>, known: &[&str]) -> Result<(), InputError> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(input(
            "arguments",
            format!("unknown parameter {}", quoted(k)),
            &format!("may only contain: {}", known.join(", ")),
        )),
    }
}

/// Describes a JSON value for an error message: strings quoted, others as JSON.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{}\" (a string)", s.escape_default()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        Value::Bool(b) => format!("{b} (a boolean)"),
        other => other.to_string(),
    }
}

fn json_string(
    args: &Map<String, Value>,
    name: &str,
    allowed: &str,
) -> Result<Option<String>, InputError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(input(
            name,
            describe(other),
            &format!("{allowed} (a string)"),
        )),
    }
}

fn json_int(
    args: &Map<String, Value>,
    name: &str,
    allowed: &str,
) -> Result<Option<i64>, InputError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            if n.as_u64().is_some() {
                // Above i64::MAX: out of every range we accept.
                return Ok(Some(i64::MAX));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(input(name, n.to_string(), allowed)),
            }
        }
        Some(other) => Err(input(name, describe(other), allowed)),
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// The SPEC result envelope. `data` is `null` when `success` is false.
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
    pub fn ok(message: String, data: T) -> Envelope<T> {
        Envelope {
            success: true,
            message,
            data: Some(data),
        }
    }

    pub fn error(err: &Error) -> Envelope<T> {
        Envelope {
            success: false,
            message: err.to_string(),
            data: None,
        }
    }
}

/// `data` of `query_network_connections`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct ConnectionsData {
    /// The host asked: `localhost`, or a configured remote host's name.
    pub host: String,
    /// How many connections matched, before `limit`.
    pub connection_count: usize,
    /// True when `connections` was cut short by `limit`.
    pub truncated: bool,
    pub connections: Vec<ConnectionRow>,
    /// The filters applied.
    pub filter: FilterEcho,
}

/// One socket, with the columns netstat prints.
///
/// No field owns a heap allocation (names are static, addresses are formatted while
/// serializing, the program name is shared), so a listing of 100k sockets is converted from
/// the snapshot in place and costs no more memory than the snapshot itself.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct ConnectionRow {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub protocol: &'static str,
    pub recv_queue: u64,
    pub send_queue: u64,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub foreign_ip: IpAddr,
    /// Null where netstat prints `*` (not connected).
    pub foreign_port: Option<u16>,
    /// netstat spelling (`LISTEN`, `ESTABLISHED`, ...); null for an unconnected UDP socket.
    pub state: Option<&'static str>,
    /// Owning process id; null when unknown (no permission) or held by no process.
    pub pid: Option<u32>,
    /// Owning process name (`/proc/<pid>/comm`); null when unknown.
    pub program: Option<Arc<str>>,
}

/// The filters of a listing, echoed back.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct FilterEcho {
    pub proto: String,
    pub state: Option<String>,
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    pub pid: Option<u32>,
    pub program: Option<String>,
    /// Null when unlimited.
    pub limit: Option<usize>,
}

/// `data` of `check_port_occupation`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct PortData {
    pub host: String,
    pub check_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    pub is_occupied: bool,
    /// One entry per socket and owning process holding the port.
    pub occupations: Vec<Occupation>,
}

/// A socket holding the checked port, and one process that holds it.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Occupation {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub protocol: &'static str,
    pub local_ip: IpAddr,
    pub local_port: u16,
    /// netstat spelling; null for an unconnected UDP socket.
    pub state: Option<&'static str>,
    pub pid: Option<u32>,
    pub program: Option<Arc<str>>,
}

// ---------------------------------------------------------------------------------------------
// The operations

impl ConnectionsQuery {
    /// What to ask a source for.
    pub fn want(&self) -> Want {
        Want {
            tcp: self.proto != ProtoFilter::Udp,
            // `state` with `all` filters TCP and leaves UDP out.
            udp: self.proto != ProtoFilter::Tcp && self.state.is_none(),
            states: self.state.map_or(StateSet::ALL, StateSet::only),
            local_port: self.local_port,
            owners: self.owners,
            scope: crate::source::Scope::Host,
        }
    }

    /// Whether a socket passes every filter: what a source was asked for ([`Want::admits`]:
    /// transport, TCP state, local port), then the filters only we apply.
    pub fn matches(&self, s: &Socket) -> bool {
        self.want().admits(s)
            && (self.remote_port.is_none() || self.remote_port == s.foreign.port)
            && self
                .pid
                .is_none_or(|pid| s.owners.iter().any(|o| o.pid == pid))
            && self.program.as_deref().is_none_or(|program| {
                s.owners
                    .iter()
                    .any(|o| contains_case_insensitive(&o.program, program))
            })
    }

    fn filter_echo(&self) -> FilterEcho {
        FilterEcho {
            proto: self.proto.as_str().to_string(),
            state: self.state.map(|s| s.netstat_name().to_string()),
            local_port: self.local_port,
            remote_port: self.remote_port,
            pid: self.pid,
            program: self.program.clone(),
            limit: self.limit,
        }
    }

    /// Applies the query to a snapshot: the SPEC envelope with its message. The snapshot is
    /// consumed: its sockets become the rows in place.
    pub fn answer(&self, target: &Target, snapshot: Snapshot) -> Envelope<ConnectionsData> {
        let mut ownerless = 0usize;
        let mut rows: Vec<ConnectionRow> = snapshot
            .sockets
            .into_iter()
            .filter(|s| {
                let keep = self.matches(s);
                if keep && s.owners.is_empty() && s.inode.is_some() {
                    ownerless += 1;
                }
                keep
            })
            .map(connection_row)
            .collect();
        let count = rows.len();
        if let Some(limit) = self.limit {
            rows.truncate(limit);
        }
        let truncated = rows.len() < count;
        let what = match (self.proto, self.state) {
            (ProtoFilter::Tcp, _) | (ProtoFilter::All, Some(_)) => "TCP",
            (ProtoFilter::Udp, _) => "UDP",
            (ProtoFilter::All, None) => "TCP and UDP",
        };
        let mut message = if target.local {
            format!("Successfully obtained local {what} connections, total {count}")
        } else {
            format!(
                "Successfully obtained {what} connections on {}, total {count}",
                target.label
            )
        };
        if let Some(state) = self.state {
            message.push_str(&format!(" (state {state}"));
            if self.proto == ProtoFilter::All {
                message.push_str(
                    "; the state filter applies to TCP only, so UDP sockets are left out",
                );
            }
            message.push(')');
        }
        if truncated {
            message.push_str(&format!(
                ". Showing the first {} (limit); pass a larger limit, or 0 for all, or narrow the filters",
                rows.len()
            ));
        }
        owner_note(&mut message, snapshot.owners, ownerless);
        for note in &snapshot.notes {
            message.push_str(". ");
            message.push_str(note);
        }
        if target.local && self.ssh_port.is_some() {
            message.push_str(". Note: 'port' is the SSH port of a remote host and was ignored for the local machine; use local_port to filter by port");
        }
        Envelope::ok(
            message,
            ConnectionsData {
                host: target.host.clone(),
                connection_count: count,
                truncated,
                connections: rows,
                filter: self.filter_echo(),
            },
        )
    }
}

/// Whether `haystack` contains `needle_lower` (already lower-cased), ignoring case; without
/// allocating for ASCII names, which is what `/proc/<pid>/comm` nearly always holds.
fn contains_case_insensitive(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        haystack.to_lowercase().contains(needle_lower)
    }
}

fn owner_note(message: &mut String, coverage: OwnerCoverage, ownerless: usize) {
    if let OwnerCoverage::Partial { .. } = coverage
        && ownerless > 0
    {
        message.push_str(&format!(
            ". pid/program are unknown for {ownerless} socket(s) owned by processes this user may not inspect; to see them, {OWNER_HINT}"
        ));
    }
}

fn connection_row(s: Socket) -> ConnectionRow {
    let owner = s.owners.into_iter().min_by_key(|o| o.pid);
    ConnectionRow {
        protocol: s.protocol.as_str(),
        recv_queue: s.recv_queue,
        send_queue: s.send_queue,
        local_ip: s.local_ip,
        local_port: s.local_port,
        foreign_ip: s.foreign.ip,
        foreign_port: s.foreign.port,
        state: s.state.map(TcpState::netstat_name),
        pid: owner.as_ref().map(|o| o.pid),
        program: owner.map(|o| o.program),
    }
}

impl PortQuery {
    pub fn want(&self) -> Want {
        Want {
            tcp: self.transport == Transport::Tcp,
            udp: self.transport == Transport::Udp,
            states: StateSet::ALL,
            local_port: Some(self.port),
            owners: true,
            scope: crate::source::Scope::Host,
        }
    }

    /// Applies the port check to a snapshot. Only local ports count; foreign ports never do.
    pub fn answer(&self, target: &Target, snapshot: &Snapshot) -> Envelope<PortData> {
        let mut occupations = Vec::new();
        let mut ownerless = 0usize;
        for s in &snapshot.sockets {
            if s.protocol.transport() != self.transport || s.local_port != self.port {
                continue;
            }
            let base = Occupation {
                protocol: s.protocol.as_str(),
                local_ip: s.local_ip,
                local_port: s.local_port,
                state: s.state.map(TcpState::netstat_name),
                pid: None,
                program: None,
            };
            if s.owners.is_empty() {
                if s.inode.is_some() {
                    ownerless += 1;
                }
                occupations.push(base);
            } else {
                let mut owners: Vec<_> = s.owners.iter().collect();
                owners.sort_by_key(|o| o.pid);
                for o in owners {
                    occupations.push(Occupation {
                        pid: Some(o.pid),
                        program: Some(o.program.clone()),
                        ..base.clone()
                    });
                }
            }
        }
        let is_occupied = !occupations.is_empty();
        let where_ = if target.local {
            "local host".to_string()
        } else {
            target.label.clone()
        };
        let mut message = if is_occupied {
            let mut holders = BTreeSet::new();
            for o in &occupations {
                if let (Some(pid), Some(program)) = (o.pid, &o.program) {
                    holders.insert((pid, program.as_ref()));
                }
            }
            let mut names: Vec<String> = holders
                .iter()
                .map(|(pid, p)| format!("{p} (pid {pid})"))
                .collect();
            if names.is_empty() {
                names.push(match snapshot.owners {
                    OwnerCoverage::NotRequested => "unknown process (owners not looked up)".into(),
                    _ if ownerless == 0 => {
                        "no process (sockets in TIME_WAIT or similar, held by the kernel)".into()
                    }
                    _ => "an unknown process".into(),
                });
            }
            format!(
                "Port {}/{} on {where_} is occupied by: {}",
                self.port,
                self.transport.upper(),
                names.join(", ")
            )
        } else {
            format!(
                "Port {}/{} on {where_} is not occupied",
                self.port,
                self.transport.upper()
            )
        };
        owner_note(&mut message, snapshot.owners, ownerless);
        Envelope::ok(
            message,
            PortData {
                host: target.host.clone(),
                check_port: self.port,
                proto: self.transport.as_str().to_string(),
                is_occupied,
                occupations,
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The service: one core for the CLI and the MCP server

/// Runs validated queries against the local machine or a configured remote host.
#[derive(Clone)]
pub struct Service {
    local: Arc<dyn Source>,
    remotes: Arc<dyn RemoteSources>,
}

impl Service {
    pub fn new(local: Arc<dyn Source>, remotes: Arc<dyn RemoteSources>) -> Service {
        Service { local, remotes }
    }

    /// The target a host argument names.
    pub fn target(&self, host: &HostSpec, ssh_port: Option<u16>) -> Result<Target, Error> {
        match host {
            HostSpec::Local => Ok(Target {
                host: "localhost".into(),
                label: "local host".into(),
                local: true,
                source: self.local.clone(),
            }),
            HostSpec::Remote(name) => self.remotes.lookup(name, ssh_port),
        }
    }

    /// `query_network_connections`.
    pub async fn connections(
        &self,
        query: &ConnectionsQuery,
    ) -> Result<Envelope<ConnectionsData>, Error> {
        let target = self.target(&query.host, query.ssh_port)?;
        let snapshot = target.source.collect(query.want()).await?;
        Ok(query.answer(&target, snapshot))
    }

    /// `check_port_occupation`.
    pub async fn port(&self, query: &PortQuery) -> Result<Envelope<PortData>, Error> {
        let target = self.target(&query.host, query.ssh_port)?;
        let snapshot = target.source.collect(query.want()).await?;
        Ok(query.answer(&target, &snapshot))
    }

    /// A raw snapshot from a host (for the `netstat` rendering and the CLI).
    pub async fn snapshot(
        &self,
        host: &HostSpec,
        ssh_port: Option<u16>,
        want: Want,
    ) -> Result<(Target, Snapshot), Error> {
        let target = self.target(host, ssh_port)?;
        let snapshot = target.source.collect(want).await?;
        Ok((target, snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(args: Value) -> Result<ConnectionsQuery, InputError> {
        let map = args.as_object().cloned().unwrap_or_default();
        ConnectionsArgs::from_json(&map)?.validate(Some(DEFAULT_MCP_LIMIT))
    }

    fn port(args: Value) -> Result<PortQuery, InputError> {
        let map = args.as_object().cloned().unwrap_or_default();
        PortArgs::from_json(&map)?.validate()
    }

    /// SPEC §1.4: every bad input names the parameter and the allowed values.
    #[test]
    fn bad_inputs_name_the_parameter_and_allowed_values() {
        let cases: Vec<(Result<(), InputError>, &str, &str)> = vec![
            (
                port(json!({"port": 0})).map(|_| ()),
                "'port'",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": 65536})).map(|_| ()),
                "'port'",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": "abc"})).map(|_| ()),
                "'port'",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": "80"})).map(|_| ()),
                "\"80\" (a string)",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": 80.5})).map(|_| ()),
                "Invalid port: 80.5",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": -1})).map(|_| ()),
                "'port'",
                "between 1 and 65535",
            ),
            (
                port(json!({})).map(|_| ()),
                "'port' is required",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": true})).map(|_| ()),
                "'port'",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": 80, "proto": "icmp"})).map(|_| ()),
                "'proto'",
                "tcp, udp",
            ),
            (
                port(json!({"port": 80, "proto": "all"})).map(|_| ()),
                "'proto'",
                "tcp, udp",
            ),
            (
                port(json!({"port": 80, "ssh_port": 70000})).map(|_| ()),
                "'ssh_port'",
                "between 1 and 65535",
            ),
            (
                port(json!({"port": 80, "prot": "tcp"})).map(|_| ()),
                "unknown parameter 'prot'",
                "port, proto, host, ssh_port",
            ),
            (
                conn(json!({"proto": "icmp"})).map(|_| ()),
                "'proto'",
                "tcp, udp, all",
            ),
            (
                conn(json!({"proto": 6})).map(|_| ()),
                "'proto'",
                "tcp, udp, all",
            ),
            (
                conn(json!({"state": "LISTENN"})).map(|_| ()),
                "'state'",
                "ESTABLISHED",
            ),
            (
                conn(json!({"state": "LISTEN", "proto": "udp"})).map(|_| ()),
                "'state'",
                "TCP only",
            ),
            (
                conn(json!({"port": 0})).map(|_| ()),
                "'port'",
                "between 1 and 65535",
            ),
            (
                conn(json!({"local_port": 65536})).map(|_| ()),
                "'local_port'",
                "between 1 and 65535",
            ),
            (
                conn(json!({"remote_port": "x"})).map(|_| ()),
                "'remote_port'",
                "between 1 and 65535",
            ),
            (
                conn(json!({"pid": 0})).map(|_| ()),
                "'pid'",
                "positive integer",
            ),
            (
                conn(json!({"limit": -5})).map(|_| ()),
                "'limit'",
                "0 means no limit",
            ),
            (
                conn(json!({"limit": 1.5})).map(|_| ()),
                "'limit'",
                "0 means no limit",
            ),
            (
                conn(json!({"host": 5})).map(|_| ()),
                "'host'",
                "configured remote host",
            ),
        ];
        for (i, (result, needle1, needle2)) in cases.into_iter().enumerate() {
            let err = result.expect_err(&format!("case {i} must be rejected"));
            let msg = err.to_string();
            assert!(
                msg.contains(needle1) && msg.contains(needle2),
                "case {i}: {msg}"
            );
            assert!(msg.starts_with("Invalid "), "case {i}: {msg}");
        }
    }

    #[test]
    fn program_filter_ignores_case() {
        assert!(contains_case_insensitive("NGINX", "ngi"));
        assert!(contains_case_insensitive("python3.11", "python"));
        assert!(!contains_case_insensitive("sshd", "nginx"));
        assert!(contains_case_insensitive("Ärger-Dienst", "ärger"));
        assert!(!contains_case_insensitive("ab", "abc"));
    }

    #[test]
    fn good_inputs_and_spellings() {
        for (spelling, state) in [
            ("ESTAB", TcpState::Established),
            ("established", TcpState::Established),
            ("SYN-SENT", TcpState::SynSent),
            ("syn_recv", TcpState::SynRecv),
            ("FIN-WAIT-1", TcpState::FinWait1),
            ("fin_wait2", TcpState::FinWait2),
            ("TIME-WAIT", TcpState::TimeWait),
            ("UNCONN", TcpState::Close),
            ("close-wait", TcpState::CloseWait),
            ("LAST_ACK", TcpState::LastAck),
            ("LISTENING", TcpState::Listen),
            ("Closing", TcpState::Closing),
        ] {
            let q = conn(json!({ "state": spelling })).unwrap();
            assert_eq!(q.state, Some(state), "{spelling}");
        }
        let q = conn(json!({"port": 80.0, "limit": 0, "host": "LOCALHOST", "program": " Nginx "}))
            .unwrap();
        assert_eq!(q.ssh_port, Some(80));
        assert_eq!(q.limit, None, "0 means no limit");
        assert_eq!(q.host, HostSpec::Local);
        assert_eq!(q.program.as_deref(), Some("nginx"));
        assert_eq!(conn(json!({})).unwrap().limit, Some(DEFAULT_MCP_LIMIT));
        assert_eq!(conn(json!({"host": "::1"})).unwrap().host, HostSpec::Local);
        assert_eq!(
            conn(json!({"host": "web-1"})).unwrap().host,
            HostSpec::Remote("web-1".into())
        );
        let p = port(json!({"port": 443, "proto": "UDP", "host": null})).unwrap();
        assert_eq!(
            (p.port, p.transport, p.host),
            (443, Transport::Udp, HostSpec::Local)
        );
    }

    fn sock(
        proto: crate::model::Protocol,
        lport: u16,
        fport: Option<u16>,
        state: Option<TcpState>,
        owners: &[(u32, &str)],
    ) -> Socket {
        let mut s = Socket::new(
            proto,
            "127.0.0.1".parse().unwrap(),
            lport,
            crate::model::Endpoint {
                ip: "127.0.0.1".parse().unwrap(),
                port: fport,
            },
        );
        s.state = state;
        s.inode = Some(u64::from(lport));
        s.owners = owners
            .iter()
            .map(|(pid, p)| crate::model::Owner {
                pid: *pid,
                program: Arc::from(*p),
            })
            .collect();
        s
    }

    fn target(local: bool) -> Target {
        Target {
            host: if local {
                "localhost".into()
            } else {
                "web-1".into()
            },
            label: if local {
                "local host".into()
            } else {
                "remote host web-1 (192.168.1.100)".into()
            },
            local,
            source: Arc::new(crate::source::LocalSource::default()),
        }
    }

    /// Rows are built from the snapshot's sockets in place (`into_iter().map().collect()`
    /// reuses the allocation when the row is no larger and equally aligned), which keeps the
    /// peak memory of a 100k-socket listing at one copy.
    #[test]
    fn rows_fit_in_the_sockets_they_are_built_from() {
        use std::mem::{align_of, size_of};
        assert!(size_of::<ConnectionRow>() <= size_of::<Socket>());
        assert_eq!(align_of::<ConnectionRow>(), align_of::<Socket>());
    }

    #[test]
    fn messages_follow_the_spec() {
        use crate::model::Protocol::*;
        let snap = Snapshot {
            sockets: vec![
                sock(Tcp, 80, None, Some(TcpState::Listen), &[(812, "nginx")]),
                sock(
                    Tcp,
                    443,
                    None,
                    Some(TcpState::Listen),
                    &[(91, "nginx"), (90, "nginx")],
                ),
                sock(
                    Tcp,
                    5000,
                    Some(80),
                    Some(TcpState::Established),
                    &[(7, "curl")],
                ),
                sock(Udp, 53, None, None, &[]),
            ],
            owners: OwnerCoverage::Complete,
            notes: vec![],
            processes: None,
        };
        let q = conn(json!({"proto": "tcp"})).unwrap();
        let env = q.answer(&target(true), snap.clone());
        assert_eq!(
            env.message,
            "Successfully obtained local TCP connections, total 3"
        );
        let env = q.answer(&target(false), snap.clone());
        assert_eq!(
            env.message,
            "Successfully obtained TCP connections on remote host web-1 (192.168.1.100), total 3"
        );
        let p = |n: u16| {
            PortArgs {
                port: Some(n.into()),
                ..Default::default()
            }
            .validate()
            .unwrap()
        };
        assert_eq!(
            p(80).answer(&target(true), &snap).message,
            "Port 80/TCP on local host is occupied by: nginx (pid 812)"
        );
        let env = p(443).answer(&target(false), &snap);
        assert_eq!(
            env.message,
            "Port 443/TCP on remote host web-1 (192.168.1.100) is occupied by: nginx (pid 90), nginx (pid 91)"
        );
        assert_eq!(
            env.data.unwrap().occupations.len(),
            2,
            "one row per sharing process"
        );
        // Port 5000 is only a foreign port of nothing; port 80 as a foreign port never counts.
        assert_eq!(
            p(8080).answer(&target(true), &snap).message,
            "Port 8080/TCP on local host is not occupied"
        );
        let partial = Snapshot {
            owners: OwnerCoverage::Partial {
                unreadable_processes: 3,
            },
            ..snap.clone()
        };
        let env = conn(json!({"proto": "udp"}))
            .unwrap()
            .answer(&target(true), partial);
        assert!(env.message.contains("CAP_SYS_PTRACE"), "{}", env.message);
        assert!(env.message.contains("sudo"), "{}", env.message);
    }
}
