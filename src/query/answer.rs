//! The two operations as pure functions over a snapshot: filter, count and summarise in one
//! pass, keep one page of rows, fit the answer in its byte budget, and say it in a message.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use super::input::{ConnectionsQuery, PortQuery, ProtoFilter};
use super::output::{
    ConnectionRow, ConnectionsData, Envelope, FilterEcho, Holders, MAX_ANSWER_BYTES, NetnsRef,
    Occupation, OwnerDetails, PortData, PortOwner, RowOwners, RowPlace, Rows, SocketOwner,
};
use super::page::{RowKey, row_order, take_page};
use super::summary::{SummaryBuilder, is_listener, state_name};
use crate::model::{Owner, Owners, Socket, StateSet, TcpState, Transport};
use crate::source::{OwnerCoverage, ProcessLookup, Scope, Snapshot, Target, Want};

/// The largest text block a default answer may have: a client hands it to a model whose
/// context is finite (Claude Code refuses results over 25,000 tokens).
pub(crate) const ANSWER_BUDGET: usize = 24 * 1024;

/// How many of `rows` rows to keep for an answer of `size` bytes to fit `budget`: their
/// share of the budget less a tenth (the rest of the answer does not shrink with them), and
/// always at least one fewer, so that a loop of cuts ends.
pub(crate) fn keep_within(rows: usize, budget: usize, size: usize) -> usize {
    let share = (rows as u128 * budget as u128 / size.max(1) as u128) * 9 / 10;
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .min(rows.saturating_sub(1))
}

/// One cut of an answer's rows ([`Rows`]) towards `budget` bytes of JSON, measured by
/// serializing into a counter. False when it fits already or has no row left to cut: the
/// loops that fit answers (each redoing its message between cuts) end there.
pub(crate) fn shrink_step<T: Serialize + Rows>(envelope: &mut Envelope<T>, budget: usize) -> bool {
    let size = json_len(&*envelope);
    let Some(data) = envelope.data.as_mut() else {
        return false;
    };
    let rows = data.row_count();
    if size <= budget || rows == 0 {
        return false;
    }
    data.keep_rows(keep_within(rows, budget, size));
    true
}

/// Cuts an answer's rows until its JSON fits [`MAX_ANSWER_BYTES`], saying so in its message.
pub(crate) fn fit_ceiling<T: Serialize + Rows>(envelope: &mut Envelope<T>) {
    let from = envelope.data.as_ref().map_or(0, Rows::row_count);
    let mut cut = None;
    while shrink_step(envelope, MAX_ANSWER_BYTES) {
        cut = Some((from, envelope.data.as_ref().map_or(0, Rows::row_count)));
    }
    if let Some((from, kept)) = cut {
        envelope.message.push_str(&format!(
            " The answer was cut to {} of its {} rows: {} MiB is the most any answer carries; narrow the filters to see the rest (a listing also pages: a smaller limit, then next_cursor as cursor).",
            thousands(kept),
            thousands(from),
            MAX_ANSWER_BYTES >> 20
        ));
    }
}

/// `check_port_occupation` names at least this many owners before cutting the list.
pub(crate) const MAX_PORT_OWNERS: usize = 100;
/// The message names at most this many owners (data.owners has them all).
const OWNERS_IN_MESSAGE: usize = 10;

/// How to fix missing owners, appended to messages.
pub(crate) const OWNER_HINT: &str = "run as root (sudo) or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH \
(e.g. setcap cap_sys_ptrace,cap_dac_read_search+ep on the binary); for a remote host, use an SSH \
user with those rights";

impl ConnectionsQuery {
    /// What to ask a source for.
    pub(crate) fn want(&self) -> Want {
        let listen = self.state == Some(TcpState::Listen);
        Want {
            tcp: self.proto != ProtoFilter::Udp,
            // A state filter leaves UDP out, except LISTEN: bound, unconnected UDP sockets.
            udp: self.proto != ProtoFilter::Tcp && (self.state.is_none() || listen),
            states: self.state.map_or(StateSet::ALL, StateSet::only),
            udp_states: if listen {
                StateSet::only(TcpState::Close)
            } else {
                StateSet::ALL
            },
            local_port: self.local_port,
            remote_port: self.remote_port,
            owners: self.owners,
            scope: self.scope,
            health: false,
        }
    }

    /// Whether a socket passes every filter: what a source was asked for ([`Want::admits`]),
    /// then the owner filters only we apply.
    pub(crate) fn matches(&self, s: &Socket) -> bool {
        self.want().admits(s) && self.matches_owners(&s.owners)
    }

    pub(crate) fn filter_echo(&self) -> FilterEcho {
        FilterEcho {
            proto: self.proto.as_str().to_string(),
            state: self.state.map(|s| s.netstat_name().to_string()),
            local_port: self.local_port,
            remote_port: self.remote_port,
            pid: self.pid,
            program: self.program.clone(),
            limit: self.limit,
            scope: self.scope.as_str(),
        }
    }

    /// Applies the query to a snapshot: the envelope with its message. The snapshot is
    /// consumed: its sockets become the rows in place.
    pub(crate) fn answer(&self, target: &Target, snapshot: Snapshot) -> Envelope<ConnectionsData> {
        let Snapshot {
            mut sockets,
            owners: coverage,
            notes,
            processes,
        } = snapshot;
        let want = self.want();
        let mut summary = SummaryBuilder::default();
        let mut ownerless = 0usize;
        sockets.retain(|s| {
            let keep = want.admits(s) && self.matches_owners(&s.owners);
            if keep {
                summary.add(s);
                if s.owners.is_empty() && !kernel_held(s) {
                    ownerless += 1;
                }
            }
            keep
        });
        let count = sockets.len();
        let summary = summary.finish_with(processes.as_deref());
        let mut more = take_page(&mut sockets, self.cursor.as_ref(), self.limit);
        let mut keys: Vec<RowKey> = sockets.iter().map(RowKey::of).collect();
        // Owner details are looked up here, for the processes of the rows returned only.
        let mut holders = HolderCache::new(processes.as_deref());
        let mut envelope = Envelope::ok(
            String::new(),
            ConnectionsData {
                host: target.host.clone(),
                connection_count: count,
                truncated: more,
                next_cursor: None,
                summary,
                connections: sockets
                    .into_iter()
                    .map(|s| connection_row(s, &mut holders))
                    .collect(),
                filter: self.filter_echo(),
            },
        );
        let mut cut_to_fit = false;
        loop {
            let data = envelope.data.as_mut().expect("built above");
            data.truncated = more;
            data.next_cursor = if more {
                keys.last().map(RowKey::encode)
            } else {
                None
            };
            envelope.message = self.message(
                target,
                data,
                MessageParts {
                    coverage,
                    ownerless,
                    notes: &notes,
                    cut_to_fit,
                },
            );
            if !self.default_limit {
                break;
            }
            let size = json_len(&envelope);
            let rows = envelope.data.as_ref().map_or(0, |d| d.connections.len());
            if size <= self.budget || rows == 0 {
                break;
            }
            let keep = keep_within(rows, self.budget, size);
            // A socket shared by hundreds of processes can make one row larger than the
            // budget: its sharers keep pid and program only, before rows are dropped to 0.
            if keep == 0
                && let Some(d) = envelope.data.as_mut()
                && slim_shared(d.connections.iter_mut().map(|c| &mut c.owners))
            {
                continue;
            }
            if let Some(d) = envelope.data.as_mut() {
                d.connections.truncate(keep);
            }
            keys.truncate(keep);
            more = true;
            cut_to_fit = true;
        }
        envelope
    }

    /// Whether the owner filters (`pid`, `program`) pass a socket held by `owners`.
    pub(crate) fn matches_owners(&self, owners: &[Owner]) -> bool {
        self.pid
            .is_none_or(|pid| owners.iter().any(|o| o.pid == pid))
            && self.program.as_deref().is_none_or(|program| {
                owners
                    .iter()
                    .any(|o| contains_case_insensitive(&o.program, program))
            })
    }

    fn message(&self, target: &Target, data: &ConnectionsData, parts: MessageParts<'_>) -> String {
        let count = data.connection_count;
        let what = match (self.proto, self.state) {
            (ProtoFilter::Tcp, _) => "TCP",
            (ProtoFilter::Udp, _) => "UDP",
            (ProtoFilter::All, Some(TcpState::Listen)) | (ProtoFilter::All, None) => "TCP and UDP",
            (ProtoFilter::All, Some(_)) => "TCP",
        };
        let mut message = if target.local && self.scope == Scope::All {
            let namespaces = data.summary.by_netns.as_ref().map_or(0, Vec::len);
            format!(
                "Successfully obtained local {what} connections in every network namespace ({namespaces} with matching sockets), total {count}"
            )
        } else if target.local {
            format!("Successfully obtained local {what} connections, total {count}")
        } else {
            format!(
                "Successfully obtained {what} connections on {}, total {count}",
                target.label
            )
        };
        if let Some(state) = self.state {
            let _ = write!(message, " (state {state}");
            match (state, self.proto) {
                (TcpState::Listen, ProtoFilter::Udp | ProtoFilter::All) => message.push_str(
                    "; bound, unconnected UDP sockets count as listening, as in netstat -l",
                ),
                (_, ProtoFilter::All) => message.push_str(
                    "; the state filter applies to TCP only, so UDP sockets are left out",
                ),
                _ => {}
            }
            message.push(')');
        }
        let shown = data.connections.len();
        if self.limit == Some(0) {
            message.push_str(". Summary only (no rows)");
        } else if self.cursor.is_some() {
            let _ = write!(message, ". Showing {shown} rows after the cursor");
            if data.truncated {
                message.push_str("; pass next_cursor as cursor for the next page");
            } else {
                message.push_str(" (the last page)");
            }
        } else if data.truncated {
            let _ = write!(message, ". Showing the first {shown}");
            match self.limit {
                Some(limit) if parts.cut_to_fit => {
                    let _ = write!(
                        message,
                        " (limit {limit}, cut to keep the answer under {} KiB)",
                        self.budget.max(1024) / 1024
                    );
                }
                Some(limit) => {
                    let _ = write!(message, " (limit {limit})");
                }
                None => {}
            }
            let _ = write!(
                message,
                "; data.summary covers all {count}. For more rows pass next_cursor as cursor, or narrow with filters (state, local_port, remote_port, pid, program)"
            );
        }
        if target.local {
            owner_note(&mut message, parts.coverage, parts.ownerless);
        }
        for note in parts.notes {
            message.push_str(". ");
            message.push_str(note);
        }
        message
    }
}

/// What a message needs besides the data.
struct MessageParts<'a> {
    coverage: OwnerCoverage,
    ownerless: usize,
    notes: &'a [String],
    cut_to_fit: bool,
}

/// The size of a value's compact JSON, without building the text.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Whether a socket without a process is held by the kernel alone (TIME_WAIT, a request
/// socket, an orphan closing down) rather than by a process we may not see. A source that
/// reports inodes says so exactly (an inode means a file, so a process); text rows without
/// one are judged by their state.
pub(crate) fn kernel_held(s: &Socket) -> bool {
    s.owners.is_empty()
        && s.inode.is_none()
        && matches!(
            s.state,
            Some(
                TcpState::TimeWait
                    | TcpState::SynRecv
                    | TcpState::FinWait1
                    | TcpState::FinWait2
                    | TcpState::LastAck
                    | TcpState::Closing
            )
        )
}

/// Whether `haystack` contains `needle_lower` (already lower-cased), ignoring case; without
/// allocating for ASCII names, which is what `/proc/<pid>/comm` nearly always holds.
pub(crate) fn contains_case_insensitive(haystack: &str, needle_lower: &str) -> bool {
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
        let _ = write!(
            message,
            ". pid/program are unknown for {ownerless} socket(s) owned by processes this user may not inspect; to see them, {OWNER_HINT}"
        );
    }
}

/// The holders of the rows of one answer, with their details, built once per distinct set of
/// processes: a process owning 50,000 returned sockets is looked up once, and its rows share
/// one value.
pub(crate) struct HolderCache<'a> {
    processes: Option<&'a dyn ProcessLookup>,
    single: HashMap<u32, Arc<Holders>>,
    shared: HashMap<Vec<u32>, Arc<Holders>>,
}

impl<'a> HolderCache<'a> {
    pub(crate) fn new(processes: Option<&'a dyn ProcessLookup>) -> HolderCache<'a> {
        HolderCache {
            processes,
            single: HashMap::new(),
            shared: HashMap::new(),
        }
    }

    fn details(&self, pid: u32) -> OwnerDetails {
        self.processes
            .and_then(|p| p.process(pid))
            .map(|info| OwnerDetails::of(&info))
            .unwrap_or_default()
    }

    fn holders(&mut self, owners: &Owners) -> Option<Arc<Holders>> {
        match owners.as_slice() {
            [] => None,
            [one] => {
                if let Some(known) = self.single.get(&one.pid) {
                    return Some(known.clone());
                }
                let holders = Arc::new(Holders {
                    owners: vec![SocketOwner {
                        pid: one.pid,
                        program: one.program.clone(),
                        details: self.details(one.pid),
                    }],
                });
                self.single.insert(one.pid, holders.clone());
                Some(holders)
            }
            several => {
                let mut sorted: Vec<_> = several.iter().collect();
                sorted.sort_by_key(|o| o.pid);
                let pids: Vec<u32> = sorted.iter().map(|o| o.pid).collect();
                if let Some(known) = self.shared.get(&pids) {
                    return Some(known.clone());
                }
                let holders = Arc::new(Holders {
                    owners: sorted
                        .iter()
                        .map(|o| SocketOwner {
                            pid: o.pid,
                            program: o.program.clone(),
                            details: self.details(o.pid),
                        })
                        .collect(),
                });
                self.shared.insert(pids, holders.clone());
                Some(holders)
            }
        }
    }
}

pub(crate) fn connection_row(s: Socket, holders: &mut HolderCache<'_>) -> ConnectionRow {
    let holders = holders.holders(&s.owners);
    let first = holders.as_ref().and_then(|h| h.owners.first());
    ConnectionRow {
        protocol: s.protocol.as_str(),
        recv_queue: u64::from(s.recv_queue),
        send_queue: u64::from(s.send_queue),
        local_ip: s.local_ip,
        local_port: s.local_port,
        foreign_ip: s.foreign.ip,
        foreign_port: s.foreign.port,
        state: s.state.map(TcpState::netstat_name),
        pid: first.map(|o| o.pid),
        program: first.map(|o| o.program.clone()),
        owners: RowOwners(holders),
        place: RowPlace(s.place),
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `LISTEN 1, ESTABLISHED 4,211`: listening first, then by count.
fn state_counts(states: &BTreeMap<&'static str, usize>) -> String {
    let mut entries: Vec<(&&str, &usize)> = states.iter().collect();
    entries.sort_by_key(|(name, count)| {
        (
            !matches!(**name, "LISTEN" | "UNCONN"),
            std::cmp::Reverse(**count),
            **name,
        )
    });
    entries
        .iter()
        .map(|(name, count)| format!("{name} {}", thousands(**count)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PortQuery {
    pub(crate) fn want(&self) -> Want {
        Want {
            tcp: self.transport == Transport::Tcp,
            udp: self.transport == Transport::Udp,
            local_port: Some(self.port),
            scope: self.scope,
            ..Want::all()
        }
    }

    /// Applies the port check to a snapshot. Only local ports count; foreign ports never do.
    pub(crate) fn answer(&self, target: &Target, snapshot: Snapshot) -> Envelope<PortData> {
        self.answer_with(target, snapshot, None, Vec::new())
    }

    /// [`PortQuery::answer`] with the bind check and suggested ports (this machine's).
    pub(crate) fn answer_with(
        &self,
        target: &Target,
        snapshot: Snapshot,
        bind: Option<super::bind::Bind>,
        suggested_ports: Vec<u16>,
    ) -> Envelope<PortData> {
        let Snapshot {
            mut sockets,
            owners: coverage,
            notes,
            processes,
        } = snapshot;
        sockets.retain(|s| s.protocol.transport() == self.transport && s.local_port == self.port);
        let count = sockets.len();
        let mut by_pid: HashMap<u32, PortOwner> = HashMap::new();
        let mut held: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut ownerless = 0usize;
        for s in &sockets {
            for o in &s.owners {
                let owner = by_pid.entry(o.pid).or_insert_with(|| PortOwner {
                    pid: o.pid,
                    program: o.program.clone(),
                    socket_count: 0,
                    states: BTreeMap::new(),
                    details: OwnerDetails::default(),
                    netns: s.netns().map(NetnsRef::of),
                });
                owner.socket_count += 1;
                *owner.states.entry(state_name(s)).or_default() += 1;
            }
            if s.owners.is_empty() {
                if kernel_held(s) {
                    *held.entry(state_name(s)).or_default() += 1;
                } else {
                    ownerless += 1;
                }
            }
        }
        let mut owners: Vec<PortOwner> = by_pid.into_values().collect();
        owners.sort_by_key(|o| (std::cmp::Reverse(o.socket_count), o.pid));
        let owner_count = owners.len();
        // Details for every owner (the budget below may drop command lines again).
        let mut holders = HolderCache::new(processes.as_deref());
        for owner in owners.iter_mut() {
            owner.details = holders.details(owner.pid);
        }
        // Listening/bound sockets first, then row order.
        let limit = self.limit.unwrap_or(usize::MAX);
        let first = |a: &Socket, b: &Socket| {
            (!is_listener(a))
                .cmp(&!is_listener(b))
                .then_with(|| row_order(a, b))
        };
        if limit < sockets.len() {
            if limit > 0 {
                sockets.select_nth_unstable_by(limit - 1, first);
            }
            sockets.truncate(limit);
        }
        sockets.sort_unstable_by(first);
        let occupations: Vec<Occupation> = sockets
            .into_iter()
            .map(|s| occupation(s, &mut holders))
            .collect();
        let kernel_held: usize = held.values().sum();
        let mut envelope = Envelope::ok(
            String::new(),
            PortData {
                host: target.host.clone(),
                check_port: self.port,
                proto: self.transport.as_str().to_string(),
                is_occupied: count > 0,
                bind,
                suggested_ports,
                occupation_count: count,
                owners_truncated: false,
                owner_count,
                owners,
                kernel_held,
                truncated: false,
                occupations,
            },
        );
        loop {
            let data = envelope.data.as_mut().expect("built above");
            data.truncated = data.occupations.len() < count;
            envelope.message = self.message(target, data, &held, coverage, ownerless, &notes);
            if !self.default_limit {
                break;
            }
            let size = json_len(&envelope);
            if size <= self.budget {
                break;
            }
            let Some(data) = envelope.data.as_mut() else {
                break;
            };
            // Rows shrink first; owners only past the first hundred.
            let rows = data.occupations.len();
            if rows > 0 {
                data.occupations
                    .truncate(keep_within(rows, self.budget, size));
            } else if data.owners.len() > MAX_PORT_OWNERS {
                let keep = keep_within(data.owners.len(), self.budget, size).max(MAX_PORT_OWNERS);
                data.owners.truncate(keep);
                data.owners_truncated = true;
            } else if !slim_owners(&mut data.owners) {
                break;
            }
        }
        envelope
    }

    fn message(
        &self,
        target: &Target,
        data: &PortData,
        held: &BTreeMap<&'static str, usize>,
        coverage: OwnerCoverage,
        ownerless: usize,
        notes: &[String],
    ) -> String {
        let where_ = if target.local {
            "local host".to_string()
        } else {
            target.label.clone()
        };
        let mut port = format!("Port {}/{} on {where_}", self.port, self.transport.upper());
        if self.scope == Scope::All {
            port.push_str(" (every network namespace)");
        }
        if !data.is_occupied {
            let mut message = format!("{port} is not occupied");
            for note in notes {
                message.push_str(". ");
                message.push_str(note);
            }
            return message;
        }
        let mut holders: Vec<String> = data
            .owners
            .iter()
            .take(OWNERS_IN_MESSAGE)
            .map(|o| {
                let mut place = String::new();
                if let Some(c) = &o.details.container {
                    let _ = write!(place, ", {} container {}", c.runtime, c.id);
                }
                if let Some(ns) = &o.netns {
                    match &ns.name {
                        Some(name) => {
                            let _ = write!(place, ", netns {name}");
                        }
                        None => {
                            let _ = write!(place, ", netns {}", ns.inode);
                        }
                    }
                }
                format!(
                    "{} (pid {}{place}; {})",
                    o.program,
                    o.pid,
                    state_counts(&o.states)
                )
            })
            .collect();
        if data.owner_count > OWNERS_IN_MESSAGE {
            holders.push(format!(
                "and {} more processes (see data.owners)",
                thousands(data.owner_count - OWNERS_IN_MESSAGE)
            ));
        }
        if ownerless > 0 {
            holders.push(match coverage {
                OwnerCoverage::NotRequested => {
                    "unknown processes (owners not looked up)".to_string()
                }
                _ if data.owner_count == 0 => "an unknown process".to_string(),
                _ => format!("unknown processes ({} socket(s))", thousands(ownerless)),
            });
        }
        if data.kernel_held > 0 {
            let text = format!("{}; held by the kernel", state_counts(held));
            holders.push(if holders.is_empty() {
                format!("no process ({text})")
            } else {
                format!("no process for the rest ({text})")
            });
        }
        let mut message = format!("{port} is occupied by: {}", holders.join(", "));
        if data.truncated {
            let _ = write!(
                message,
                ". Showing {} of its {} sockets (listening first); owners lists every process",
                data.occupations.len(),
                thousands(data.occupation_count)
            );
        }
        // A remote source phrases its own hint for the SSH user (in its notes).
        if target.local {
            owner_note(&mut message, coverage, ownerless);
        }
        for note in notes {
            message.push_str(". ");
            message.push_str(note);
        }
        message
    }
}

/// Reduces every shared socket's list of sharers to pid and program (the first owner keeps its
/// details). Returns false when there was nothing to reduce.
fn slim_shared<'a>(rows: impl Iterator<Item = &'a mut RowOwners>) -> bool {
    let mut slimmed: HashMap<*const Holders, Arc<Holders>> = HashMap::new();
    let mut changed = false;
    for row in rows {
        let Some(holders) = &row.0 else { continue };
        if holders.owners[1..]
            .iter()
            .all(|o| o.details == OwnerDetails::default())
        {
            continue;
        }
        let slim = slimmed
            .entry(Arc::as_ptr(holders))
            .or_insert_with(|| {
                let mut owners = holders.owners.clone();
                owners[1..]
                    .iter_mut()
                    .for_each(|o| o.details = OwnerDetails::default());
                Arc::new(Holders { owners })
            })
            .clone();
        row.0 = Some(slim);
        changed = true;
    }
    changed
}

/// Makes a port check's owners smaller when even the first hundred do not fit the budget:
/// first the command lines past the tenth owner go, then all command lines, then every detail
/// past the tenth. Returns false when there is nothing left to drop.
fn slim_owners(owners: &mut [PortOwner]) -> bool {
    let head = OWNERS_IN_MESSAGE.min(owners.len());
    if owners[head..].iter().any(|o| o.details.command.is_some()) {
        owners[head..]
            .iter_mut()
            .for_each(|o| o.details.command = None);
        return true;
    }
    if owners.iter().any(|o| o.details.command.is_some()) {
        owners.iter_mut().for_each(|o| o.details.command = None);
        return true;
    }
    if owners[head..]
        .iter()
        .any(|o| o.details != OwnerDetails::default())
    {
        owners[head..]
            .iter_mut()
            .for_each(|o| o.details = OwnerDetails::default());
        return true;
    }
    false
}

fn occupation(s: Socket, holders: &mut HolderCache<'_>) -> Occupation {
    let holders = holders.holders(&s.owners);
    let first = holders.as_ref().and_then(|h| h.owners.first());
    Occupation {
        protocol: s.protocol.as_str(),
        local_ip: s.local_ip,
        local_port: s.local_port,
        foreign_ip: s.foreign.ip,
        foreign_port: s.foreign.port,
        state: s.state.map(TcpState::netstat_name),
        pid: first.map(|o| o.pid),
        program: first.map(|o| Arc::clone(&o.program)),
        owners: RowOwners(holders),
        place: RowPlace(s.place),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4211), "4,211");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn program_filter_ignores_case() {
        assert!(contains_case_insensitive("NGINX", "ngi"));
        assert!(contains_case_insensitive("python3.11", "python"));
        assert!(!contains_case_insensitive("sshd", "nginx"));
        assert!(contains_case_insensitive("Ärger-Dienst", "ärger"));
        assert!(!contains_case_insensitive("ab", "abc"));
    }
}
