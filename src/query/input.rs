//! Tool inputs: one struct per tool, the only place an input is declared.
//!
//! Each struct derives `Deserialize` (MCP arguments, through [`super::schema::decode`]), `JsonSchema`
//! (the tool's input schema, through [`super::schema::input_schema`]) and `clap::Args` (the CLI
//! options), so a new filter is one field here plus its use in `validate`. Fields stay loosely
//! typed (`i64`, `String`) so that every face gets the same validation and the same messages:
//! `validate` turns the arguments into a [`ConnectionsQuery`] or [`PortQuery`], or an
//! [`InputError`] naming the parameter and the allowed values.
//!
//! Doc comments are the descriptions a model reads in `tools/list` (and the CLI's help where
//! no `help = ...` overrides them); the first sentence of each also completes type errors
//! ("must be an integer between 1 and 65535 (only sockets whose local port is this one)").

use schemars::JsonSchema;
use serde::Deserialize;

use super::page::RowKey;
use crate::error::InputError;
use crate::fleet::HostPattern;
use crate::model::{TcpState, Transport};
use crate::source::Scope;

/// The MCP default for `limit` of `query_network_connections`; the CLI lists everything.
pub(crate) const DEFAULT_ROWS: usize = 50;
/// The MCP default for `limit` of `check_port_occupation`.
pub(crate) const DEFAULT_OCCUPATIONS: usize = 20;

pub(crate) const PORT_RANGE: &str = "must be an integer between 1 and 65535";
const STATE_ALLOWED: &str = "must be a TCP state: ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, \
FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING (case-insensitive; ss spellings \
such as ESTAB, SYN-SENT, FIN-WAIT-1, UNCONN and the Windows LISTENING are accepted too)";
const LIMIT_ALLOWED: &str = "must be an integer >= 0 (0 means no limit)";
const PID_ALLOWED: &str = "must be a positive integer process id";

/// Inputs of `query_network_connections` (and the CLI's `connections` and `summary`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
// No serde `deny_unknown_fields`: serde cannot combine it with `flatten`; the schema
// decoder refuses unknown names (its additionalProperties is false).
#[schemars(deny_unknown_fields)]
pub struct ConnectionsArgs {
    /// Protocol family: tcp, udp or all (default all). IPv4 and IPv6 are both included.
    #[schemars(extend("enum" = ["tcp", "udp", "all"], "default" = "all"))]
    #[arg(
        long,
        help = "Protocol: tcp, udp or all (default all; IPv4 and IPv6 both included)"
    )]
    pub proto: Option<String>,

    /// TCP state filter, case-insensitive: ESTABLISHED, LISTEN, TIME_WAIT, SYN_SENT, SYN_RECV,
    /// FIN_WAIT1, FIN_WAIT2, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING; ss spellings (ESTAB,
    /// SYN-SENT, FIN-WAIT-1, UNCONN, ...) and LISTENING are accepted too. LISTEN also matches
    /// bound, unconnected UDP sockets (as netstat -l does); other states apply to TCP only, so
    /// with proto all they leave UDP out and with proto udp they are refused.
    #[schemars(extend("examples" = ["LISTEN", "ESTABLISHED"]))]
    #[arg(
        long,
        help = "TCP state, e.g. LISTEN, ESTABLISHED, TIME_WAIT (netstat or ss spelling, any case); LISTEN includes bound UDP sockets"
    )]
    pub state: Option<String>,

    #[serde(flatten)]
    #[command(flatten)]
    pub remote: Remote,

    #[serde(flatten)]
    #[command(flatten)]
    pub filters: Filters,

    /// Maximum rows to return (default 50; 0 means no limit). connection_count and summary
    /// always cover every matching socket.
    #[schemars(range(min = 0), extend("default" = 50))]
    #[arg(
        long,
        value_name = "N",
        help = "Show at most N rows (default: all; 0: all); with --cursor, pages through the listing"
    )]
    pub limit: Option<i64>,

    /// The next_cursor of an earlier answer: returns the rows after the last one it gave.
    /// Rows come in a stable order (protocol, local port, local ip, foreign ip, foreign port).
    #[arg(
        long,
        value_name = "CURSOR",
        help = "Continue after an earlier page: the next_cursor value it printed (with --json)"
    )]
    pub cursor: Option<String>,

    /// Which network namespaces to list: host (default: the namespace the server runs in, as
    /// ss and netstat see it) or all (every network namespace on the machine, containers'
    /// included, each listed from inside it; rows then carry netns). Local machine only;
    /// entering other namespaces needs root.
    #[schemars(extend("enum" = ["host", "all"], "default" = "host"))]
    #[arg(skip)]
    pub scope: Option<String>,
}

/// The filters on what a socket is (its ports) and who holds it, shared by every listing-like
/// input (`query_network_connections`, `watch_connections`, `recent_connection_events`,
/// `connection_health`, `traffic`): declared, validated and matched once.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
pub struct Filters {
    /// Only sockets whose local port is this one.
    #[schemars(range(min = 1, max = 65535))]
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<i64>,

    /// Only sockets whose remote (foreign) port is this one.
    #[schemars(range(min = 1, max = 65535))]
    #[arg(long, value_name = "PORT")]
    pub remote_port: Option<i64>,

    /// Only sockets held by this process id.
    #[schemars(range(min = 1))]
    #[arg(long)]
    pub pid: Option<i64>,

    /// Only sockets held by a program whose name contains this text (case-insensitive).
    #[arg(long, value_name = "NAME")]
    pub program: Option<String>,
}

/// Which machine a listing asks and over which SSH port, shared by `query_network_connections`,
/// `connection_health` and `traffic`: declared and validated once.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
pub struct Remote {
    /// A configured remote host, by its name or address (see list_hosts).
    /// query_network_connections also takes several at once: a comma-separated list of names,
    /// globs over names (web-*) and groups (@prod), queried concurrently with one result per
    /// host. connection_health and traffic need a Linux host (they read ss -ti there).
    /// Omitted, localhost, 127.0.0.1 or ::1 mean this machine.
    #[arg(
        long,
        help = "A configured remote host (name or address, see `hosts`); `connections` and `summary` take several: 'web-1,web-2', 'web-*', '@prod'; default the local machine"
    )]
    pub host: Option<String>,

    /// SSH port of the remote host, overriding the configured one (kept under this name for
    /// compatibility; ssh_port means the same). NOT a socket port: refused for the local
    /// machine; filter sockets with local_port or remote_port.
    #[schemars(range(min = 1, max = 65535))]
    #[arg(skip)]
    pub port: Option<i64>,

    /// SSH port of the remote host, overriding the configured one. Only for a remote host.
    #[schemars(range(min = 1, max = 65535))]
    #[arg(
        long,
        value_name = "PORT",
        help = "SSH port for --host, overriding the configured one"
    )]
    pub ssh_port: Option<i64>,
}

impl Remote {
    /// The host(s) named and the SSH port override (`port` and `ssh_port` are one setting, and
    /// only for a remote host).
    pub(crate) fn validate(&self) -> Result<(HostSpec, Option<u16>), InputError> {
        let host = HostSpec::from_arg(self.host.as_deref())?;
        let ssh_port = ssh_port(&host, self.port, self.ssh_port)?;
        Ok((host, ssh_port))
    }
}

/// [`Filters`], validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Matching {
    pub(crate) local_port: Option<u16>,
    pub(crate) remote_port: Option<u16>,
    pub(crate) pid: Option<u32>,
    /// Lower-cased; `None` for none or blank.
    pub(crate) program: Option<String>,
}

impl Filters {
    pub(crate) fn validate(&self) -> Result<Matching, InputError> {
        Ok(Matching {
            local_port: port_arg("local_port", self.local_port)?,
            remote_port: port_arg("remote_port", self.remote_port)?,
            pid: pid_arg(self.pid)?,
            program: match &self.program {
                Some(p) if !p.trim().is_empty() => Some(p.trim().to_lowercase()),
                _ => None,
            },
        })
    }
}

/// Which transports a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtoFilter {
    Tcp,
    Udp,
    All,
}

impl ProtoFilter {
    const CHOICES: Choices<ProtoFilter> = Choices::new(
        "proto",
        &[
            ("tcp", ProtoFilter::Tcp),
            ("udp", ProtoFilter::Udp),
            ("all", ProtoFilter::All),
        ],
    );

    pub(crate) fn as_str(self) -> &'static str {
        Self::CHOICES.name(self)
    }
}

/// Which host(s) to ask: the local machine, one configured remote host by name or address,
/// or several (a comma-separated list of names, globs such as `web-*`, groups such as `@prod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostSpec {
    Local,
    Remote(String),
    Many(Vec<HostPattern>),
}

impl HostSpec {
    /// Omitted, empty, `localhost`, `127.0.0.1` and `::1` mean the local machine; a list, a
    /// glob or a group means several hosts (read with [`HostSpec::from_arg`]).
    pub(crate) fn parse(host: Option<&str>) -> HostSpec {
        match host.map(str::trim) {
            None | Some("") => HostSpec::Local,
            Some(h) if h.eq_ignore_ascii_case("localhost") || h == "127.0.0.1" || h == "::1" => {
                HostSpec::Local
            }
            Some(h) => HostSpec::Remote(h.to_string()),
        }
    }

    /// A `host` argument: one host as [`HostSpec::parse`] reads it, or several.
    pub(crate) fn from_arg(host: Option<&str>) -> Result<HostSpec, InputError> {
        match host {
            Some(h) if crate::fleet::is_multi(h) => {
                Ok(HostSpec::Many(crate::fleet::parse_patterns([h])?))
            }
            other => Ok(HostSpec::parse(other)),
        }
    }
}

/// A validated `query_network_connections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsQuery {
    pub(crate) proto: ProtoFilter,
    pub(crate) state: Option<TcpState>,
    pub(crate) host: HostSpec,
    pub(crate) ssh_port: Option<u16>,
    pub(crate) local_port: Option<u16>,
    pub(crate) remote_port: Option<u16>,
    pub(crate) pid: Option<u32>,
    /// Lower-cased substring of the program name.
    pub(crate) program: Option<String>,
    /// `None` lists everything.
    pub(crate) limit: Option<usize>,
    /// Whether `limit` was the default (the answer may then shrink to fit its byte budget).
    pub(crate) default_limit: bool,
    /// Rows strictly after this key are returned.
    pub(crate) cursor: Option<RowKey>,
    /// Whether to look up owners at all (the CLI's `--no-owners` turns it off).
    pub(crate) owners: bool,
    /// Which network namespaces to list.
    pub(crate) scope: Scope,
    /// Bytes the answer may take with a default limit (less per host in a multi-host call).
    pub(crate) budget: usize,
}

/// Decodes MCP arguments into an input struct, checked against its derived schema.
macro_rules! from_json {
    ($t:ty) => {
        impl $t {
            /// Reads the arguments of an MCP call, checked against this input's schema.
            /// (The server keeps the schema; this builds it per call.)
            pub fn from_json(
                args: &serde_json::Map<String, serde_json::Value>,
            ) -> Result<$t, InputError> {
                super::schema::decode(&super::schema::input_schema::<$t>(), args)
            }
        }
    };
}
from_json!(ConnectionsArgs);
from_json!(PortArgs);

impl ConnectionsArgs {
    /// Validates the arguments. `default_limit` applies when `limit` is absent.
    pub fn validate(&self, default_limit: Option<usize>) -> Result<ConnectionsQuery, InputError> {
        let proto = match &self.proto {
            None => ProtoFilter::All,
            Some(p) => ProtoFilter::CHOICES.parse(p)?,
        };
        let state = match self.state.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(
                TcpState::parse(s)
                    .ok_or_else(|| InputError::new("state", quoted(s), STATE_ALLOWED))?,
            ),
        };
        if let (Some(s), ProtoFilter::Udp) = (state, proto)
            && s != TcpState::Listen
        {
            return Err(InputError::new(
                "state",
                format!(
                    "{} with proto 'udp'",
                    quoted(self.state.as_deref().unwrap_or(""))
                ),
                "applies to TCP only (except LISTEN, which lists bound UDP sockets): use it with proto 'tcp' or 'all', or leave it out for UDP",
            ));
        }
        let (limit, default_limit) = limit_arg(self.limit, default_limit)?;
        let Matching {
            local_port,
            remote_port,
            pid,
            program,
        } = self.filters.validate()?;
        let (host, ssh_port) = self.remote.validate()?;
        let scope = scope_arg(self.scope.as_deref(), &host)?;
        Ok(ConnectionsQuery {
            proto,
            state,
            host,
            ssh_port,
            local_port,
            remote_port,
            pid,
            program,
            limit,
            default_limit,
            cursor: match self.cursor.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(c) => Some(RowKey::decode(c)?),
            },
            owners: true,
            scope,
            budget: super::ANSWER_BUDGET,
        })
    }
}

/// `port` and `ssh_port` of a listing: the same thing, and only for a remote host.
fn ssh_port(
    host: &HostSpec,
    port: Option<i64>,
    ssh_port: Option<i64>,
) -> Result<Option<u16>, InputError> {
    let port_given = port_arg("port", port)?;
    let ssh_given = port_arg("ssh_port", ssh_port)?;
    if let (Some(a), Some(b)) = (port_given, ssh_given)
        && a != b
    {
        return Err(InputError::new(
            "ssh_port",
            format!("{b} with port {a}"),
            "is the same setting as 'port' (the SSH port of a remote host): give one of them",
        ));
    }
    let given = ssh_given.or(port_given);
    if *host == HostSpec::Local
        && let Some(p) = given
    {
        let param = if ssh_given.is_some() {
            "ssh_port"
        } else {
            "port"
        };
        return Err(InputError::new(
            param,
            format!("{p} for the local machine"),
            "is the SSH port of a remote host (with 'host'), not a socket port: to filter sockets by port use local_port (or remote_port)",
        ));
    }
    Ok(given)
}

/// Inputs of `check_port_occupation` (and the CLI's `port`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub struct PortArgs {
    /// The port to check: a socket's local port, 1-65535.
    #[schemars(range(min = 1, max = 65535), required)]
    #[arg(skip)]
    pub port: Option<i64>,

    /// Protocol: tcp (default) or udp.
    #[schemars(extend("enum" = ["tcp", "udp"], "default" = "tcp"))]
    #[arg(long, help = "Protocol: tcp (default) or udp")]
    pub proto: Option<String>,

    /// A configured remote host, by its name or address (see list_hosts); or several at once: a
    /// comma-separated list of names, globs over names (web-*) and groups (@prod), queried
    /// concurrently with one result per host. Omitted, localhost, 127.0.0.1 or ::1 mean this
    /// machine.
    #[arg(
        long,
        help = "A configured remote host (name or address, see `hosts`), or several: 'web-1,web-2', 'web-*', '@prod'; default the local machine"
    )]
    pub host: Option<String>,

    /// SSH port of the remote host, overriding the configured one.
    #[schemars(range(min = 1, max = 65535))]
    #[arg(
        long,
        value_name = "PORT",
        help = "SSH port for --host, overriding the configured one"
    )]
    pub ssh_port: Option<i64>,

    /// Maximum socket rows in occupations (default 20; 0 means no limit); LISTEN and bound
    /// sockets come first. occupation_count and owners always cover every socket on the port.
    #[schemars(range(min = 0), extend("default" = 20))]
    #[arg(
        long,
        value_name = "N",
        help = "Show at most N sockets (default: all; 0: all); listening/bound ones first"
    )]
    pub limit: Option<i64>,

    /// Which network namespaces to list: host (default: the namespace the server runs in, as
    /// ss and netstat see it) or all (every network namespace on the machine, containers'
    /// included, each listed from inside it; rows then carry netns). Local machine only;
    /// entering other namespaces needs root.
    #[schemars(extend("enum" = ["host", "all"], "default" = "host"))]
    #[arg(skip)]
    pub scope: Option<String>,

    /// The address a server would bind, for `bind`: an IP address of this host (127.0.0.1,
    /// ::1, 0.0.0.0, an interface's address). Default [::] with v6only off, the dual-stack
    /// wildcard that covers IPv4 and IPv6.
    #[arg(
        long,
        value_name = "IP",
        help = "For the bind check: the address a server would bind (an IP of this host); default [::], IPv4 and IPv6"
    )]
    pub address: Option<String>,
}

/// The required `port` and the `proto` (tcp, the default, or udp) of a tool about one port.
pub(crate) fn port_and_proto(
    port: Option<i64>,
    proto: Option<&str>,
) -> Result<(u16, Transport), InputError> {
    let port = port_arg("port", port)?.ok_or_else(|| {
        InputError::new(
            "port",
            "missing",
            "is required and must be an integer between 1 and 65535",
        )
    })?;
    const TRANSPORTS: Choices<Transport> =
        Choices::new("proto", &[("tcp", Transport::Tcp), ("udp", Transport::Udp)]);
    let transport = match proto {
        None => Transport::Tcp,
        Some(p) => TRANSPORTS.parse(p)?,
    };
    Ok((port, transport))
}

/// What `address` accepts, for its error.
pub(crate) const ADDRESS_ALLOWED: &str = "must be an IP address of this host, e.g. 127.0.0.1, ::1, 0.0.0.0 or an interface's address (default: [::], IPv4 and IPv6)";

/// A validated `check_port_occupation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortQuery {
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    pub(crate) host: HostSpec,
    pub(crate) ssh_port: Option<u16>,
    /// At most this many rows in `occupations`; `None` for all.
    pub(crate) limit: Option<usize>,
    /// Whether `limit` was the default (the answer may then shrink to fit its byte budget).
    pub(crate) default_limit: bool,
    /// Which network namespaces to check.
    pub(crate) scope: Scope,
    /// Bytes the answer may take with a default limit (less per host in a multi-host call).
    pub(crate) budget: usize,
    /// The address `bind` checks; `None`: the dual-stack wildcard.
    pub(crate) address: Option<std::net::IpAddr>,
}

impl PortArgs {
    /// Validates the arguments. `default_limit` applies when `limit` is absent.
    pub fn validate(&self, default_limit: Option<usize>) -> Result<PortQuery, InputError> {
        let (port, transport) = port_and_proto(self.port, self.proto.as_deref())?;
        let (limit, default_limit) = limit_arg(self.limit, default_limit)?;
        let host = HostSpec::from_arg(self.host.as_deref())?;
        let scope = scope_arg(self.scope.as_deref(), &host)?;
        let address = match self.address.as_deref().map(str::trim) {
            None => None,
            Some(text) => Some(
                text.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| InputError::new("address", quoted(text), ADDRESS_ALLOWED))?,
            ),
        };
        Ok(PortQuery {
            port,
            transport,
            host,
            ssh_port: port_arg("ssh_port", self.ssh_port)?,
            limit,
            default_limit,
            scope,
            budget: super::ANSWER_BUDGET,
            address,
        })
    }
}

/// Inputs of a tool that takes none (`list_hosts`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub(crate) struct NoArgs {}

/// `limit`: absent, the tool's `default` (and whether that default applies: the answer may then
/// shrink to fit its byte budget); 0, no limit; a negative number is refused.
pub(crate) fn limit_arg(
    value: Option<i64>,
    default: Option<usize>,
) -> Result<(Option<usize>, bool), InputError> {
    match value {
        None => Ok((default, default.is_some())),
        Some(0) => Ok((None, false)),
        Some(n) if n > 0 => Ok((Some(usize::try_from(n).unwrap_or(usize::MAX)), false)),
        Some(n) => Err(InputError::new("limit", n.to_string(), LIMIT_ALLOWED)),
    }
}

/// A closed set of names an input takes (`proto`, `scope`, `sort`, `by`): one table gives the
/// parse (any case, `-` read as `_`), the name echoed back, and the error listing every name.
pub(crate) struct Choices<T: 'static> {
    param: &'static str,
    names: &'static [(&'static str, T)],
}

impl<T: Copy + PartialEq> Choices<T> {
    pub(crate) const fn new(param: &'static str, names: &'static [(&'static str, T)]) -> Self {
        Choices { param, names }
    }

    /// The value's name (every value the tool uses is in the table).
    pub(crate) fn name(&self, value: T) -> &'static str {
        self.names
            .iter()
            .find(|(_, v)| *v == value)
            .map_or("", |(n, _)| n)
    }

    pub(crate) fn parse(&self, text: &str) -> Result<T, InputError> {
        let key = text.trim().to_ascii_lowercase().replace('-', "_");
        self.names
            .iter()
            .find(|(n, _)| *n == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = self.names.iter().map(|(n, _)| *n).collect();
                InputError::new(
                    self.param,
                    quoted(text),
                    format!("must be one of: {}", names.join(", ")),
                )
            })
    }
}

/// A caller's text, quoted and shortened for a message.
pub(crate) fn quoted(text: &str) -> String {
    format!("'{}'", super::shorten(text))
}

pub(crate) fn port_arg(param: &str, value: Option<i64>) -> Result<Option<u16>, InputError> {
    match value {
        None => Ok(None),
        Some(v) => u16::try_from(v)
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| InputError::new(param, v.to_string(), PORT_RANGE)),
    }
}

/// `scope`: host or all, any case; all only for the local machine.
fn scope_arg(value: Option<&str>, host: &HostSpec) -> Result<Scope, InputError> {
    const SCOPES: Choices<Scope> =
        Choices::new("scope", &[("host", Scope::Host), ("all", Scope::All)]);
    let scope = match value {
        Some(v) if !v.trim().is_empty() => SCOPES.parse(v)?,
        _ => Scope::Host,
    };
    if scope == Scope::All && *host != HostSpec::Local {
        return Err(InputError::new(
            "scope",
            "'all' with a remote host".to_string(),
            "lists every network namespace of the machine the server runs on: leave it out (or 'host') for a remote host",
        ));
    }
    Ok(scope)
}

fn pid_arg(value: Option<i64>) -> Result<Option<u32>, InputError> {
    match value {
        None => Ok(None),
        Some(p) => u32::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| InputError::new("pid", p.to_string(), PID_ALLOWED)),
    }
}

/// Inputs of `watch_connections` (and the CLI's `watch`): the connection filters of
/// [`ConnectionsArgs`] (validated by it, see [`WatchArgs::filters`]) plus the window.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
// No serde `deny_unknown_fields`: serde cannot combine it with `flatten`; the schema
// decoder refuses unknown names (its additionalProperties is false).
#[schemars(deny_unknown_fields)]
pub(crate) struct WatchArgs {
    /// How long to watch, in seconds: 1-50 (default 10; a call must end inside the 60 s request
    /// timeout MCP client SDKs default to).
    #[schemars(range(min = 1, max = 50), extend("default" = 10))]
    #[arg(
        long = "duration",
        value_name = "SECS",
        help = "Stop after SECS seconds (default: until Ctrl-C or SIGTERM)"
    )]
    pub(crate) duration_secs: Option<i64>,

    /// Protocol family: tcp, udp or all (default all). IPv4 and IPv6 are both included.
    #[schemars(extend("enum" = ["tcp", "udp", "all"], "default" = "all"))]
    #[arg(
        long,
        help = "Protocol: tcp, udp or all (default all; IPv4 and IPv6 both included)"
    )]
    pub(crate) proto: Option<String>,

    /// TCP state filter, any spelling query_network_connections accepts. An open carries the
    /// state it was first seen in; a close the last state seen (CLOSE when never seen open).
    #[arg(
        long,
        help = "Only sockets in this TCP state (for a close: the last state seen), e.g. LISTEN"
    )]
    pub(crate) state: Option<String>,

    /// A configured remote host, by its name or address (see list_hosts), watched by comparing
    /// its listings. Omitted, localhost, 127.0.0.1 or ::1 mean this machine.
    #[arg(
        long,
        help = "Watch a configured remote host (name or address) by comparing its listings"
    )]
    pub(crate) host: Option<String>,

    /// SSH port of the remote host, overriding the configured one. Only for a remote host.
    #[schemars(range(min = 1, max = 65535))]
    #[arg(
        long,
        value_name = "PORT",
        help = "SSH port for --host, overriding the configured one"
    )]
    pub(crate) ssh_port: Option<i64>,

    #[serde(flatten)]
    #[command(flatten)]
    pub(crate) filters: Filters,

    /// Milliseconds between two listings: 20-60000 (default 250 locally; for a remote host
    /// default 2000, at least 500).
    #[schemars(range(min = 20, max = 60000))]
    #[arg(
        long,
        value_name = "N",
        help = "Milliseconds between two listings (default 250; 2000 for --host)"
    )]
    pub(crate) interval_ms: Option<i64>,

    /// Maximum events to return, the newest (default 50; 0 means no limit). The counts always
    /// cover every event.
    #[schemars(range(min = 0), extend("default" = 50))]
    #[arg(skip)]
    pub(crate) limit: Option<i64>,
}

impl WatchArgs {
    /// The connection filters, for [`ConnectionsArgs::validate`] (the one validation of them).
    pub(crate) fn filters(&self) -> ConnectionsArgs {
        ConnectionsArgs {
            proto: self.proto.clone(),
            state: self.state.clone(),
            remote: Remote {
                host: self.host.clone(),
                port: None,
                ssh_port: self.ssh_port,
            },
            filters: self.filters.clone(),
            ..ConnectionsArgs::default()
        }
    }
}

/// Inputs of `recent_connection_events`: the look-back, the connection filters (validated by
/// [`ConnectionsArgs`]) and the number of events.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
// No serde `deny_unknown_fields`: serde cannot combine it with `flatten`; the schema
// decoder refuses unknown names (its additionalProperties is false).
#[schemars(deny_unknown_fields)]
pub(crate) struct RecentArgs {
    /// How far back to look, in seconds: 1-604800 (default 600, ten minutes).
    #[schemars(range(min = 1, max = 604800), extend("default" = 600))]
    pub(crate) since_secs: Option<i64>,

    /// Protocol family: tcp, udp or all (default all). IPv4 and IPv6 are both included.
    #[schemars(extend("enum" = ["tcp", "udp", "all"], "default" = "all"))]
    pub(crate) proto: Option<String>,

    /// TCP state filter, any spelling query_network_connections accepts (for a close: the
    /// last state seen).
    pub(crate) state: Option<String>,

    #[serde(flatten)]
    pub(crate) filters: Filters,

    /// Maximum events to return, the newest (default 50; 0 means no limit). The counts always
    /// cover every matching event.
    #[schemars(range(min = 0), extend("default" = 50))]
    pub(crate) limit: Option<i64>,
}

impl RecentArgs {
    /// The connection filters, for [`ConnectionsArgs::validate`].
    pub(crate) fn filters(&self) -> ConnectionsArgs {
        ConnectionsArgs {
            proto: self.proto.clone(),
            state: self.state.clone(),
            filters: self.filters.clone(),
            ..ConnectionsArgs::default()
        }
    }
}

// The MCP server decodes these with the schemas it keeps; the unit tests use `from_json`.
#[cfg(test)]
from_json!(WatchArgs);
#[cfg(test)]
from_json!(RecentArgs);
