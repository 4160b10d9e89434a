//! `traffic`: who moved how many bytes over a window, from the kernel's TCP byte counters —
//! no packet capture, no eBPF, no root.
//!
//! Locally the watch engine does the listing, in counted mode: its first listing carries
//! `tcp_info` (the baseline), its close events carry each closed connection's final counters
//! (the destroy notification's `tcp_info`, with the socket's cookie), and at the end of the
//! window it takes a closing listing with counters in place of its last periodic one, handed
//! socket by socket to a [`CountedSink`] that adds it up in the engine's thread (the listing is
//! never kept whole). Starts, closes and the closing listing are matched by cookie. A
//! connection's bytes in the window are then
//! - alive at both ends: end counters less start counters;
//! - opened during the window: its counters at the end (it started from 0);
//! - closed during the window: its final counters less its start counters (or all of them,
//!   when it also opened during the window).
//!
//! Owners come from the engine's table: looked up once at its first listing, then for the
//! sockets each later listing shows for the first time (the closing one too), so the window
//! costs one owner scan, as `watch` does. One that opened and closed between two listings
//! goes to its listener's owner when its local port is a listener's, else to `unknown`.
//!
//! Remote Linux hosts: two `ss -tin` listings, `duration` apart; connections that close in
//! between are not seen (the message says so).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::engine::CountedSink;
use super::window::{ChannelSink, WatchQuery, WatchService, Watcher, channel};
use super::{Event, FastHash, Sink, Tuple, is_connection_of, tuple, unix_ms};
use crate::error::{Error, InputError};
use crate::model::{Bytes, Counters, Owner, Owners, Socket, StateSet, TcpState};
use crate::process::ProcessTable;
use crate::query::answer::{shrink_step, thousands};
use crate::query::health::endpoint;
use crate::query::input::{Choices, ConnectionsArgs, limit_arg, quoted};
use crate::query::{ConnectionsQuery, Envelope, HostSpec, Progress, ProgressEvent};
use crate::source::{ProcessLookup, Scope, Snapshot, Target, Want};

/// Default and largest window, seconds (a call must end inside the 60 s request timeout
/// client SDKs default to).
pub(crate) const DEFAULT_TRAFFIC_SECS: u64 = 5;
pub(crate) const MAX_TRAFFIC_SECS: u64 = 50;
/// Default number of groups.
pub(crate) const DEFAULT_GROUPS: usize = 20;

/// Inputs of `traffic` (and the CLI's `top`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, clap::Args)]
// No serde `deny_unknown_fields` (it cannot combine with `flatten`): the schema decoder
// refuses unknown names.
#[schemars(deny_unknown_fields)]
pub struct TrafficArgs {
    /// How long to measure, in seconds: 1-50 (default 5).
    #[schemars(range(min = 1, max = 50), extend("default" = 5))]
    #[arg(
        long = "duration",
        value_name = "SECS",
        help = "Measure for SECS seconds, 1-50 (default 5), and print one answer"
    )]
    pub duration_secs: Option<i64>,

    /// What to add up the bytes by: program (default), unit (systemd unit), container,
    /// remote_host (the foreign address), local_port, or connection (each one).
    #[schemars(extend("enum" = ["program", "unit", "container", "remote_host", "local_port", "connection"], "default" = "program"))]
    #[arg(
        long,
        value_name = "KEY",
        help = "Group by: program (default), unit, container, remote_host, local_port, connection"
    )]
    pub by: Option<String>,

    /// Protocol: tcp (default), udp or all. UDP has no byte counters in sock_diag, so only TCP
    /// is measured (udp_note says so).
    #[schemars(extend("enum" = ["tcp", "udp", "all"], "default" = "tcp"))]
    #[arg(
        long,
        help = "Protocol: tcp (default), udp or all (only TCP has byte counters)"
    )]
    pub proto: Option<String>,

    /// TCP state filter (netstat or ss spelling); a closed connection matches by the last
    /// state a listing saw.
    #[arg(
        long,
        help = "Only connections in this TCP state (closed ones: the last state seen)"
    )]
    pub state: Option<String>,

    #[serde(flatten)]
    #[command(flatten)]
    pub remote: crate::query::Remote,

    #[serde(flatten)]
    #[command(flatten)]
    pub filters: crate::query::Filters,

    /// Maximum groups, the busiest first (default 20; 0 means no limit). totals always cover
    /// everything measured.
    #[schemars(range(min = 0), extend("default" = 20))]
    #[arg(
        long,
        value_name = "N",
        help = "Show the N busiest groups (default 20; 0: all)"
    )]
    pub limit: Option<i64>,

    /// Only "host" is accepted: traffic watches the network namespace the server runs in (as
    /// watch_connections does); "all" is refused.
    #[schemars(extend("enum" = ["host"], "default" = "host"))]
    #[arg(skip)]
    pub scope: Option<String>,
}

/// What bytes are added up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupBy {
    Program,
    Unit,
    Container,
    RemoteHost,
    LocalPort,
    Connection,
}

impl GroupBy {
    const CHOICES: Choices<GroupBy> = Choices::new(
        "by",
        &[
            ("program", GroupBy::Program),
            ("unit", GroupBy::Unit),
            ("container", GroupBy::Container),
            ("remote_host", GroupBy::RemoteHost),
            ("local_port", GroupBy::LocalPort),
            ("connection", GroupBy::Connection),
        ],
    );

    pub(crate) fn as_str(self) -> &'static str {
        Self::CHOICES.name(self)
    }
}

/// A validated `traffic`.
#[derive(Debug, Clone)]
pub struct TrafficQuery {
    pub(crate) filter: ConnectionsQuery,
    pub(crate) window: Duration,
    pub(crate) by: GroupBy,
    /// Groups in the answer at most (`None`: all).
    pub(crate) limit: Option<usize>,
    pub(crate) default_limit: bool,
}

impl TrafficArgs {
    /// Validates the arguments.
    pub fn validate(&self) -> Result<TrafficQuery, InputError> {
        let secs = match self.duration_secs {
            None => DEFAULT_TRAFFIC_SECS,
            Some(s) => u64::try_from(s)
                .ok()
                .filter(|s| (1..=MAX_TRAFFIC_SECS).contains(s))
                .ok_or_else(|| {
                    InputError::new(
                        "duration_secs",
                        s.to_string(),
                        "must be an integer number of seconds between 1 and 50",
                    )
                })?,
        };
        if let Some(scope) = &self.scope
            && !scope.trim().eq_ignore_ascii_case("host")
            && !scope.trim().is_empty()
        {
            return Err(InputError::new(
                "scope",
                quoted(scope),
                "must be host: traffic measures the network namespace the server runs in (the destroy notifications it needs are per namespace); run a server inside a container's namespace to measure it",
            ));
        }
        let filters = ConnectionsArgs {
            proto: Some(self.proto.clone().unwrap_or_else(|| "tcp".into())),
            state: self.state.clone(),
            remote: self.remote.clone(),
            filters: self.filters.clone(),
            ..ConnectionsArgs::default()
        };
        let filter = filters.validate(None)?;
        if matches!(filter.host, HostSpec::Many(_)) {
            return Err(InputError::new(
                "host",
                "a list, glob or group",
                "names one host here (traffic measures one host at a time)",
            ));
        }
        let (limit, default_limit) = limit_arg(self.limit, Some(DEFAULT_GROUPS))?;
        Ok(TrafficQuery {
            filter,
            window: Duration::from_secs(secs),
            by: match self.by.as_deref() {
                None => GroupBy::Program,
                Some(b) if b.trim().is_empty() => GroupBy::Program,
                Some(b) => GroupBy::CHOICES.parse(b)?,
            },
            limit,
            default_limit,
        })
    }

    pub fn from_json(
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<TrafficArgs, InputError> {
        crate::query::schema::decode(&crate::query::schema::input_schema::<TrafficArgs>(), args)
    }
}

/// One group's traffic over the window.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct TrafficGroup {
    /// The program name, the unit, `runtime:shortid`, the remote IP, the local port, or
    /// `proto local -> foreign`; `unknown` when no owner could be named.
    pub(crate) key: String,
    /// For `by: program`: the processes whose connections were counted (at most 10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) pids: Vec<u32>,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) sent_per_sec: f64,
    pub(crate) received_per_sec: f64,
    /// Connections counted in this group.
    pub(crate) connections: u64,
}

/// `data` of `traffic`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct TrafficData {
    pub(crate) host: String,
    /// Seconds between the two listings the deltas are taken between.
    pub(crate) window_secs: f64,
    /// What the groups are by.
    pub(crate) by: &'static str,
    /// Everything measured (all groups, not only those returned).
    pub(crate) totals: Bytes,
    /// Connections counted: alive across the window, opened in it, closed in it.
    pub(crate) connection_count: u64,
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    pub(crate) group_count: usize,
    pub(crate) truncated: bool,
    /// Busiest first (sent + received).
    pub(crate) groups: Vec<TrafficGroup>,
    /// UDP is not measured: sock_diag has no byte counters for it.
    pub(crate) udp_note: &'static str,
}

const UDP_NOTE: &str =
    "UDP traffic is not measured: sock_diag has no byte counters for UDP sockets";

/// Counters of a TCP socket listed with its health (a remote `ss -ti`): FIN taken out by its
/// state.
fn counters(s: &Socket) -> Option<Bytes> {
    s.health.as_deref()?.tcp.as_ref()?.bytes(s.state)
}

/// Whether a listed socket is a connection whose counters mean traffic.
fn is_connection(s: &Socket) -> bool {
    is_connection_of(s.protocol, s.state)
}

/// One group's bytes, connections and (by program) processes.
#[derive(Debug, Default)]
struct Group {
    bytes: Bytes,
    connections: u64,
    pids: BTreeSet<u32>,
}

impl Group {
    fn merge(&mut self, other: Group) {
        self.bytes = self.bytes + other.bytes;
        self.connections += other.connections;
        self.pids.extend(other.pids);
    }
}

/// Measured connections added up into groups one at a time (the closing listing is never
/// kept whole).
struct Groups {
    by: GroupBy,
    groups: HashMap<String, Group, FastHash>,
    /// By unit or container: connections whose owner names neither, by the cgroup they were
    /// created in, named in one batch at the end.
    by_cgroup: HashMap<u64, Group, FastHash>,
    totals: Bytes,
    connections: u64,
    opened: u64,
}

impl Groups {
    fn new(by: GroupBy) -> Groups {
        Groups {
            by,
            groups: HashMap::default(),
            by_cgroup: HashMap::default(),
            totals: Bytes::default(),
            connections: 0,
            opened: 0,
        }
    }

    /// A connection held by `owners` (created in `cgroup_id`, where known) whose counters
    /// were `before` (none: it opened in the window) and are `now`.
    fn add(
        &mut self,
        s: &Socket,
        owners: &[Owner],
        (before, now): (Option<Bytes>, Bytes),
        cgroup_id: Option<u64>,
        processes: Option<&dyn ProcessLookup>,
    ) {
        let bytes = now.since(before.unwrap_or_default());
        self.totals = self.totals + bytes;
        self.connections += 1;
        self.opened += u64::from(before.is_none());
        let by = self.by;
        let owner = owners.iter().min_by_key(|o| o.pid);
        // Process details only where the key is one of them.
        let info = owner
            .filter(|_| matches!(by, GroupBy::Unit | GroupBy::Container))
            .and_then(|o| processes.and_then(|p| p.process(o.pid)));
        let key: Option<Cow<'_, str>> = match by {
            GroupBy::Program => owner.map(|o| Cow::Borrowed(&*o.program)),
            GroupBy::Unit => info
                .as_ref()
                .and_then(|i| i.unit.as_deref())
                .map(|u| Cow::Owned(u.to_string())),
            GroupBy::Container => info
                .as_ref()
                .and_then(|i| i.container.as_ref())
                .map(|c| Cow::Owned(container_key(c))),
            GroupBy::RemoteHost => Some(Cow::Owned(s.foreign.ip.to_string())),
            GroupBy::LocalPort => Some(Cow::Owned(s.local_port.to_string())),
            GroupBy::Connection => Some(Cow::Owned(format!(
                "{} {} -> {}",
                s.protocol,
                endpoint(s.local_ip, Some(s.local_port)),
                endpoint(s.foreign.ip, s.foreign.port)
            ))),
        };
        let group = match (key, cgroup_id) {
            (None, Some(id)) if matches!(by, GroupBy::Unit | GroupBy::Container) => {
                self.by_cgroup.entry(id).or_default()
            }
            // Most connections add to a group that exists: one lookup, no key allocated.
            (key, _) => {
                let key = key.unwrap_or(Cow::Borrowed(UNKNOWN));
                match self.groups.get_mut(key.as_ref()) {
                    Some(group) => group,
                    None => self.groups.entry(key.into_owned()).or_default(),
                }
            }
        };
        group.bytes = group.bytes + bytes;
        group.connections += 1;
        if by == GroupBy::Program
            && let Some(o) = owner
        {
            group.pids.insert(o.pid);
        }
    }

    /// The groups, busiest first, with rates over a window of `window` seconds.
    fn finish(mut self, processes: Option<&dyn ProcessLookup>, window: f64) -> Vec<TrafficGroup> {
        let by_cgroup = std::mem::take(&mut self.by_cgroup);
        let names = match processes {
            Some(p) if !by_cgroup.is_empty() => p.cgroups(&by_cgroup.keys().copied().collect()),
            _ => HashMap::new(),
        };
        for (id, group) in by_cgroup {
            let key = names.get(&id).and_then(|n| match self.by {
                GroupBy::Unit => n.unit.as_deref().map(str::to_string),
                _ => n.container.as_ref().map(container_key),
            });
            let key = key.unwrap_or_else(|| UNKNOWN.to_string());
            self.groups.entry(key).or_default().merge(group);
        }
        let per_sec = |b: u64| {
            if window > 0.0 {
                (b as f64 / window).round()
            } else {
                0.0
            }
        };
        let mut out: Vec<TrafficGroup> = self
            .groups
            .into_iter()
            .map(|(key, g)| TrafficGroup {
                key,
                pids: g.pids.into_iter().take(10).collect(),
                sent: g.bytes.sent,
                received: g.bytes.received,
                sent_per_sec: per_sec(g.bytes.sent),
                received_per_sec: per_sec(g.bytes.received),
                connections: g.connections,
            })
            .collect();
        out.sort_by(|a, b| {
            (b.sent + b.received)
                .cmp(&(a.sent + a.received))
                .then_with(|| a.key.cmp(&b.key))
        });
        out
    }
}

/// The key of a connection no owner or cgroup names.
const UNKNOWN: &str = "unknown";

/// A container's group key: `docker:3f2a…`.
fn container_key(c: &crate::model::Container) -> String {
    format!("{}:{}", c.runtime, c.id)
}

/// What a window measured: its groups and how many connections closed in it, its length (s).
struct Window {
    groups: Groups,
    closed: u64,
    secs: f64,
}

/// The closing listing's side of a local window, run in the engine's thread as the dump goes.
struct Closing {
    want: Want,
    filter: ConnectionsQuery,
    /// Start counters by cookie.
    base: HashMap<u64, Bytes, FastHash>,
    /// With windows one after another: the counters this listing shows, the next window's
    /// start.
    next_base: Option<HashMap<u64, Bytes, FastHash>>,
    /// The cookies the closing listing showed (a close of one came after the listing).
    listed: Vec<u64>,
    /// Listeners' owners by port, for connections no listing saw.
    listeners: HashMap<u16, Owners>,
    groups: Groups,
    processes: ProcessTable,
}

impl CountedSink for Closing {
    fn socket(&mut self, key: u64, s: &Socket, owners: &[Owner], counters: Counters) {
        self.listed.push(key);
        if let Some(next) = &mut self.next_base
            && is_connection(s)
        {
            next.insert(key, counters.bytes);
        }
        if s.state == Some(TcpState::Listen) && !owners.is_empty() {
            self.listeners
                .insert(s.local_port, owners.iter().cloned().collect());
        }
        if !is_connection(s) || !self.want.admits(s) || !self.filter.matches_owners(owners) {
            return;
        }
        let before = self.base.get(&key).copied();
        self.groups.add(
            s,
            owners,
            (before, counters.bytes),
            counters.cgroup_id,
            Some(&self.processes),
        );
    }
}

impl Closing {
    /// Adds a window's closes, stamped between `start_ms` (the first window: closes before it
    /// are not its own) and `end_ms`. A close of a socket the closing listing showed came
    /// after the listing read it, which counted it up to then: the rest of its bytes, like
    /// those of a close stamped after the window, are the next window's (`carried`, when
    /// windows follow one another). Returns the closes counted, and those without final
    /// counters.
    fn add_closes(
        &mut self,
        closes: Vec<(u64, Event)>,
        (start_ms, end_ms): (Option<i64>, i64),
        mut carried: Option<&mut Vec<(u64, Event)>>,
    ) -> (u64, u64) {
        // One pass over the listed cookies finds the (few) closes among them.
        let closed_keys: HashSet<u64, FastHash> = closes.iter().map(|(key, _)| *key).collect();
        let counted_live: HashSet<u64, FastHash> = if closed_keys.is_empty() {
            HashSet::default()
        } else {
            self.listed
                .iter()
                .copied()
                .filter(|key| closed_keys.contains(key))
                .collect()
        };
        let (mut closed, mut unmeasured) = (0u64, 0u64);
        for (key, e) in closes {
            if counted_live.contains(&key) || e.time_ms > end_ms {
                if let Some(carried) = carried.as_mut() {
                    carried.push((key, e));
                }
                continue;
            }
            if start_ms.is_some_and(|start| e.time_ms < start) {
                continue;
            }
            let Some(totals) = e.totals else {
                unmeasured += 1;
                continue;
            };
            closed += 1;
            let mut socket = e.socket();
            if socket.owners.is_empty()
                && let Some(owners) = self.listeners.get(&socket.local_port)
            {
                socket.owners = owners.clone();
            }
            let now = Bytes {
                sent: totals.sent,
                received: totals.received,
            };
            let before = self.base.get(&key).copied();
            self.groups.add(
                &socket,
                &socket.owners,
                (before, now),
                None,
                Some(&self.processes),
            );
        }
        (closed, unmeasured)
    }
}

/// What the two listings of a window ask for: TCP with counters, every state (listeners name
/// the owners of connections no listing saw), owners at the end only.
fn sample_want(q: &ConnectionsQuery, owners: bool) -> Want {
    Want {
        tcp: true,
        udp: false,
        states: StateSet::ALL,
        udp_states: StateSet::ALL,
        local_port: q.local_port,
        remote_port: q.remote_port,
        owners,
        scope: Scope::Host,
        health: true,
    }
}

/// A window's sink: the engine's closes, each with its socket's cookie. Opens are not needed:
/// a connection that opened in the window is one the closing listing or its close shows.
impl Sink for ChannelSink<(u64, Event)> {
    fn event(&mut self, _open: Event) {}

    fn closed(&mut self, key: u64, event: Event) {
        self.send((key, event));
    }
}

/// Said when the engine lists from `/proc/net`, which has no byte counters.
const NO_COUNTERS: &str = "byte counters (tcp_info) come from netlink sock_diag, which could not be used here (the engine reads /proc/net): no traffic is measured";

/// The start counters by connection.
fn baseline(sockets: &[Socket]) -> HashMap<Tuple, Bytes, FastHash> {
    sockets
        .iter()
        .filter(|s| is_connection(s))
        .filter_map(|s| Some((tuple(s), counters(s)?)))
        .collect()
}

/// What `top --interval` hands each view to; it returns false to stop.
pub(crate) type Views<'a> = dyn FnMut(&Envelope<TrafficData>) -> bool + Send + 'a;

impl WatchService {
    /// `traffic`: measures for the query's window, reporting progress about once a second.
    /// Dropping the future stops the engine (cancellation).
    pub(crate) async fn traffic(
        &self,
        q: &TrafficQuery,
        progress: Progress<'_>,
    ) -> Result<Envelope<TrafficData>, Error> {
        let target = self.service().target(&q.filter.host, q.filter.ssh_port)?;
        if target.local {
            self.traffic_local(q, &target, progress, None).await
        } else {
            self.traffic_remote(q, &target, progress).await
        }
    }

    /// `top --interval`: one window after another, each handed to `view` as it ends, until
    /// `view` returns false (that last one is returned). Locally the windows follow one
    /// another without a gap, from one engine: a window's closing listing is the next one's
    /// baseline, and one owner scan serves them all. A remote host: one two-sample window
    /// after another.
    pub(crate) async fn traffic_views(
        &self,
        q: &TrafficQuery,
        view: &mut Views<'_>,
    ) -> Result<Envelope<TrafficData>, Error> {
        let target = self.service().target(&q.filter.host, q.filter.ssh_port)?;
        if target.local {
            return self
                .traffic_local(q, &target, &crate::query::no_progress, Some(view))
                .await;
        }
        loop {
            let envelope = self
                .traffic_remote(q, &target, &crate::query::no_progress)
                .await?;
            if !view(&envelope) {
                return Ok(envelope);
            }
        }
    }

    /// This machine's windows: one, or with `views` one after another (see
    /// [`WatchService::traffic_views`]).
    async fn traffic_local(
        &self,
        q: &TrafficQuery,
        target: &Target,
        progress: Progress<'_>,
        mut views: Option<&mut Views<'_>>,
    ) -> Result<Envelope<TrafficData>, Error> {
        let (sink, mut rx, dropped) = channel::<(u64, Event)>();
        let watch = WatchQuery {
            filter: q.filter.clone(),
            duration: Some(q.window),
            interval: None,
            limit: 0,
            default_limit: false,
            counters: true,
        };
        // The engine subscribes to destroy notifications before its first listing, which
        // carries the counters: that listing is the baseline.
        let (watcher, _) = self.start(&watch, Box::new(sink)).await?;
        // Closes stamped before the first window began are not its own.
        let mut start_ms = Some(unix_ms(SystemTime::now()));
        let mut started = Instant::now();
        let Watcher::Local(mut engine) = watcher else {
            return Err(Error::NoLocalSource {
                detail: "traffic on this machine needs the local watch engine".into(),
            });
        };
        let chained = views.is_some();
        // The start counters by socket cookie (closes name their cookie too).
        let mut base = std::mem::take(&mut engine.baseline);
        // Closes that belong to the next window (they came after this one's closing listing).
        let mut carried: Vec<(u64, Event)> = Vec::new();
        let mut lost_before = 0;
        let total = q.window.as_secs();
        loop {
            let mut closes = std::mem::take(&mut carried);
            let deadline = tokio::time::Instant::from_std(started) + q.window;
            let mut ticker = tokio::time::interval_at(
                tokio::time::Instant::from_std(started) + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ticker.tick() => {
                        let elapsed = started.elapsed().as_secs().min(total);
                        progress(ProgressEvent::step(elapsed as usize, total as usize, format!(
                            "{elapsed} of {total} s: {} connection(s) closed so far",
                            closes.len()
                        )));
                    }
                    e = rx.recv() => match e {
                        Some(e) => if closes.len() < MAX_CLOSES {
                            closes.push(e);
                        },
                        None => break,
                    },
                }
            }
            // The closing listing is the engine's, added up in its thread as the dump goes:
            // owners come from its table (only sockets new since its last listing are
            // looked up).
            let closing = Closing {
                want: q.filter.want(),
                filter: q.filter.clone(),
                base,
                next_base: chained.then(HashMap::default),
                listed: Vec::new(),
                listeners: HashMap::new(),
                groups: Groups::new(q.by),
                processes: ProcessTable::new(&engine.proc_root),
            };
            let mut closing = engine
                .counted_listing(closing, chained.then_some(q.window))
                .await?;
            let end_ms = unix_ms(SystemTime::now());
            let window = started.elapsed().as_secs_f64();
            let ended = Instant::now();
            let destroy = engine.destroy.clone();
            let lost_now = engine
                .stats
                .lost_notifications
                .load(std::sync::atomic::Ordering::Relaxed)
                + dropped.load(std::sync::atomic::Ordering::Relaxed);
            let lost = lost_now - lost_before;
            lost_before = lost_now;
            let counts = engine.counts;
            while let Ok(e) = rx.try_recv() {
                if closes.len() < MAX_CLOSES {
                    closes.push(e);
                }
            }
            let mut notes = Vec::new();
            if !counts {
                notes.push(NO_COUNTERS.to_string());
            }
            let (closed, unmeasured) =
                closing.add_closes(closes, (start_ms, end_ms), chained.then_some(&mut carried));
            let mut extra = notes;
            if !destroy.is_on() {
                extra.push(format!(
                    "{}; connections that closed during the window are not counted",
                    destroy.describe(super::LOCAL_INTERVAL)
                ));
            }
            if unmeasured > 0 {
                extra.push(format!(
                    "{unmeasured} connection(s) closed without final counters and are not counted"
                ));
            }
            if lost > 0 {
                extra.push(format!(
                    "{lost} close notification(s) were lost (queue overrun): totals are lower bounds"
                ));
            }
            let Closing {
                next_base,
                groups,
                processes,
                ..
            } = closing;
            let window = Window {
                groups,
                closed,
                secs: window,
            };
            let envelope = self.traffic_answer(q, target, window, Some(&processes), &extra);
            let more = views.as_mut().is_some_and(|view| view(&envelope));
            if !more {
                return Ok(envelope);
            }
            base = next_base.unwrap_or_default();
            start_ms = None;
            started = ended;
        }
    }

    /// A remote host: two listings `window` apart; connections closed in between are missed.
    async fn traffic_remote(
        &self,
        q: &TrafficQuery,
        target: &Target,
        progress: Progress<'_>,
    ) -> Result<Envelope<TrafficData>, Error> {
        let start = target.source.collect(sample_want(&q.filter, false)).await?;
        let started = Instant::now();
        let base = baseline(&start.sockets);
        drop(start);
        let total = q.window.as_secs();
        for elapsed in 1..=total {
            tokio::time::sleep_until(
                tokio::time::Instant::from_std(started) + Duration::from_secs(elapsed),
            )
            .await;
            progress(ProgressEvent::step(
                elapsed as usize,
                total as usize,
                format!("{elapsed} of {total} s"),
            ));
        }
        let end = target.source.collect(sample_want(&q.filter, true)).await?;
        let window = started.elapsed().as_secs_f64();
        let Snapshot {
            sockets,
            notes,
            processes,
            ..
        } = end;
        let mut groups = Groups::new(q.by);
        for s in &sockets {
            if !is_connection(s) || !q.filter.matches(s) {
                continue;
            }
            let Some(now) = counters(s) else { continue };
            let before = base.get(&tuple(s)).copied();
            let cgroup_id = s.health.as_deref().and_then(|h| h.cgroup_id);
            groups.add(s, &s.owners, (before, now), cgroup_id, processes.as_deref());
        }
        let mut extra = notes;
        extra.push(
            "a remote host is measured from two ss listings, so connections that closed between them are not counted"
                .to_string(),
        );
        let window = Window {
            groups,
            closed: 0,
            secs: window,
        };
        Ok(self.traffic_answer(q, target, window, processes.as_deref(), &extra))
    }

    /// The answer of a window: its connections added up into groups, fitted to the budget.
    fn traffic_answer(
        &self,
        q: &TrafficQuery,
        target: &Target,
        window: Window,
        processes: Option<&dyn ProcessLookup>,
        notes: &[String],
    ) -> Envelope<TrafficData> {
        let Window {
            groups,
            closed,
            secs,
        } = window;
        let (connection_count, totals, opened) = (groups.connections, groups.totals, groups.opened);
        let groups = groups.finish(processes, secs);
        let mut data = TrafficData {
            host: target.host.clone(),
            window_secs: (secs * 1000.0).round() / 1000.0,
            by: q.by.as_str(),
            totals,
            connection_count,
            opened,
            closed,
            group_count: groups.len(),
            truncated: false,
            groups,
            udp_note: UDP_NOTE,
        };
        if let Some(limit) = q.limit {
            data.groups.truncate(limit);
        }
        let mut envelope = Envelope::ok(String::new(), data);
        let mut cut = false;
        loop {
            let data = envelope.data.as_mut().expect("built above");
            data.truncated = data.groups.len() < data.group_count;
            envelope.message = traffic_message(q, target, data, notes, cut);
            if !q.default_limit || !shrink_step(&mut envelope, crate::query::ANSWER_BUDGET) {
                break;
            }
            cut = true;
        }
        envelope
    }
}

/// Close events kept per window at most (each is 128 bytes): a storm beyond it is counted as
/// unmeasured rather than grow memory.
const MAX_CLOSES: usize = 1 << 20;

/// `8.0 MiB`, `512 B`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn traffic_message(
    q: &TrafficQuery,
    target: &Target,
    data: &TrafficData,
    notes: &[String],
    cut: bool,
) -> String {
    let place = if target.local {
        "local host".to_string()
    } else {
        target.label.clone()
    };
    let mut m = format!(
        "TCP traffic on {place} over {:.1} s: sent {}, received {} in {} connection(s) ({} opened, {} closed during the window)",
        data.window_secs,
        human_bytes(data.totals.sent),
        human_bytes(data.totals.received),
        thousands(data.connection_count as usize),
        thousands(data.opened as usize),
        thousands(data.closed as usize)
    );
    if let Some(top) = data.groups.first()
        && top.sent + top.received > 0
    {
        m.push_str(&format!(
            ". Busiest {}: {} (sent {}, received {})",
            q.by.as_str(),
            top.key,
            human_bytes(top.sent),
            human_bytes(top.received)
        ));
    }
    if data.truncated {
        m.push_str(&format!(
            ". Showing {} of {} groups",
            data.groups.len(),
            data.group_count
        ));
        if cut {
            m.push_str(&format!(
                " (cut to keep the answer under {} KiB)",
                crate::query::ANSWER_BUDGET / 1024
            ));
        }
    }
    if q.filter.proto != crate::query::input::ProtoFilter::Tcp {
        m.push_str(". ");
        m.push_str(UDP_NOTE);
    }
    for note in notes {
        m.push_str(". ");
        m.push_str(note);
    }
    m
}

impl crate::query::output::Rows for TrafficData {
    fn row_count(&self) -> usize {
        self.groups.len()
    }
    fn keep_rows(&mut self, n: usize) {
        self.groups.truncate(n);
        self.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn window_and_by_are_validated() {
        let q = TrafficArgs::default().validate().unwrap();
        assert_eq!(q.window, Duration::from_secs(5));
        assert_eq!(q.by, GroupBy::Program);
        for bad in [0, 51, -1] {
            let e = TrafficArgs {
                duration_secs: Some(bad),
                ..TrafficArgs::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.param, "duration_secs");
        }
        let e = TrafficArgs {
            by: Some("pid".into()),
            ..TrafficArgs::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.param, "by");
        assert!(e.allowed.contains("remote_host"));
        let e = TrafficArgs {
            scope: Some("all".into()),
            ..TrafficArgs::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.param, "scope");
    }

    /// Knows one process (in `nginx.service`) and one cgroup id (`db.service`).
    #[derive(Debug)]
    struct Table;

    impl ProcessLookup for Table {
        fn process(&self, pid: u32) -> Option<Arc<crate::model::ProcessInfo>> {
            (pid == 10).then(|| {
                Arc::new(crate::model::ProcessInfo {
                    unit: Some(Arc::from("nginx.service")),
                    ..Default::default()
                })
            })
        }
        fn cgroups(
            &self,
            ids: &std::collections::HashSet<u64>,
        ) -> HashMap<u64, crate::process::cgroup::CgroupNames> {
            ids.iter()
                .filter(|&&id| id == 77)
                .map(|&id| {
                    let names =
                        crate::process::cgroup::CgroupNames::of_path("/system.slice/db.service");
                    (id, names)
                })
                .collect()
        }
    }

    #[test]
    fn groups_add_up_by_owner_unit_then_socket_cgroup() {
        let socket = Socket::between(
            crate::model::Protocol::Tcp,
            ("127.0.0.1", 40000),
            ("127.0.0.1", Some(80)),
        );
        let owner = |pid| {
            [Owner {
                pid,
                program: Arc::from("srv"),
            }]
        };
        let moved = |sent| (Some(Bytes::default()), Bytes { sent, received: 1 });
        let mut by_unit = Groups::new(GroupBy::Unit);
        // The owner's unit; a socket whose owner is unknown but whose cgroup is named (twice,
        // one group); one named by neither.
        by_unit.add(&socket, &owner(10), moved(100), Some(5), Some(&Table));
        by_unit.add(&socket, &[], moved(20), Some(77), Some(&Table));
        by_unit.add(&socket, &owner(11), moved(3), Some(77), Some(&Table));
        by_unit.add(
            &socket,
            &[],
            (
                None,
                Bytes {
                    sent: 4,
                    received: 0,
                },
            ),
            None,
            Some(&Table),
        );
        assert_eq!((by_unit.connections, by_unit.opened), (4, 1));
        assert_eq!(
            by_unit.totals,
            Bytes {
                sent: 127,
                received: 3
            }
        );
        let groups = by_unit.finish(Some(&Table), 2.0);
        let got: Vec<(&str, u64, u64)> = groups
            .iter()
            .map(|g| (g.key.as_str(), g.sent, g.connections))
            .collect();
        assert_eq!(
            got,
            vec![
                ("nginx.service", 100, 1),
                ("db.service", 23, 2),
                ("unknown", 4, 1)
            ]
        );
        assert_eq!(groups[0].sent_per_sec, 50.0);

        let mut by_program = Groups::new(GroupBy::Program);
        by_program.add(&socket, &owner(11), moved(1), None, None);
        by_program.add(&socket, &owner(10), moved(1), None, None);
        let groups = by_program.finish(None, 1.0);
        assert_eq!(
            (groups[0].key.as_str(), &groups[0].pids[..]),
            ("srv", &[10, 11][..])
        );
    }

    #[test]
    fn bytes_read_humanly() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(8 * 1024 * 1024), "8.0 MiB");
    }

    /// Its filters are flattened, so no serde `deny_unknown_fields`: the schema decoder refuses
    /// unknown names (as for the inputs of `query`).
    #[test]
    fn flattened_filters_are_in_the_schema_and_unknown_names_refused() {
        use crate::query::schema::{decode, input_schema};
        let schema = input_schema::<TrafficArgs>();
        assert_eq!(schema["additionalProperties"], false);
        for filter in ["local_port", "remote_port", "pid", "program"] {
            assert!(
                schema["properties"][filter]["description"].is_string(),
                "{filter}"
            );
        }
        let unknown = serde_json::json!({"pid": 1, "prot": "tcp"});
        let e = decode::<serde_json::Value>(&schema, unknown.as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("unknown parameter 'prot'"), "{e}");
    }
}
