//! The counters of `serve --metrics --record`: connections opened and closed, retransmits and
//! bytes, since the server started, never going backwards.
//!
//! - Opens and closes come from the recorder's events as they happen (a TCP connection's
//!   open and close, each end on its own; listeners are not connections). `role` is `in` when
//!   the local port is a listening port (then `port` is it) and `out` otherwise (`port` is the
//!   remote port); `program` is the owner a listing saw, empty when none did.
//! - Bytes and retransmits are each connection's `tcp_info` counters: at every scrape the live
//!   connections add what they moved since the last scrape, and a closed one adds its final
//!   totals (from the destroy notification) less what was already added. Connections alive
//!   when counting started add only what they move after it.
//!
//! Pure bookkeeping: the exporter feeds it events and snapshots.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::admission::{Admission, Placed};
use super::exposition::{Family, Kind};
use crate::model::{Socket, TcpState, Transport, fin_received};
use crate::watch::{
    Event, EventKind, Tuple, event_tuple, is_connection_of as is_connection, tuple,
};

/// What a live connection had moved when last seen.
#[derive(Debug, Clone)]
struct Seen {
    program: Arc<str>,
    sent: u64,
    received: u64,
    retrans: u64,
    /// Snapshots in a row that did not show it (its close may still be on its way).
    missed: u8,
}

/// A connection no snapshot shows for this many in a row, and no close named, is forgotten.
const MISSED_MAX: u8 = 2;

const OPEN_LABELS: &[&str] = &["program", "role", "port"];
const BYTES_LABELS: &[&str] = &["direction", "program"];
const RETRANS_LABELS: &[&str] = &["program"];

/// One counter family: admitted label sets and their totals.
#[derive(Debug)]
struct Counter {
    admission: Admission,
    totals: HashMap<Vec<String>, u64>,
}

impl Counter {
    fn new(labels: &[&str], max: usize) -> Counter {
        Counter {
            admission: Admission::new(Kind::Counter, labels, max),
            totals: HashMap::new(),
        }
    }

    fn add(&mut self, labels: Vec<String>, n: u64) {
        if n == 0 && self.totals.contains_key(&labels) {
            return;
        }
        if let Placed::Series(labels) = self.admission.place(labels) {
            *self.totals.entry(labels).or_default() += n;
        }
    }

    fn family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Family {
        let mut f = Family::new(name, help, Kind::Counter, labels);
        f.samples = self
            .totals
            .iter()
            .map(|(l, v)| (l.clone(), *v as f64))
            .collect();
        f.samples.sort_by(|a, b| a.0.cmp(&b.0));
        f
    }
}

/// The counters and what they need to stay right between scrapes.
#[derive(Debug)]
pub(crate) struct Counters {
    opened: Counter,
    closed: Counter,
    bytes: Counter,
    retrans: Counter,
    /// Live connections and their counters when last seen.
    live: HashMap<Tuple, Seen>,
    /// Connections closed since the last scrape began (a snapshot taken before a close must
    /// not bring the connection back as new).
    closed_since: HashMap<Tuple, Instant>,
    /// Listening ports by transport (for `role`).
    listening: HashSet<(Transport, u16)>,
    /// Whether a first snapshot set the starting point.
    started: bool,
}

fn program_of(s: &Socket) -> Arc<str> {
    s.owners
        .iter()
        .min_by_key(|o| o.pid)
        .map_or_else(|| Arc::from(""), |o| o.program.clone())
}

impl Counters {
    pub(crate) fn new(max_series: usize) -> Counters {
        Counters {
            opened: Counter::new(OPEN_LABELS, max_series),
            closed: Counter::new(OPEN_LABELS, max_series),
            bytes: Counter::new(BYTES_LABELS, max_series),
            retrans: Counter::new(RETRANS_LABELS, max_series),
            live: HashMap::new(),
            closed_since: HashMap::new(),
            listening: HashSet::new(),
            started: false,
        }
    }

    /// An event of the recorder.
    pub(crate) fn event(&mut self, e: &Event) {
        if e.protocol.transport() != Transport::Tcp {
            return;
        }
        if e.state == Some(TcpState::Listen) {
            let key = (Transport::Tcp, e.local_port);
            match e.kind {
                EventKind::Open => self.listening.insert(key),
                EventKind::Close => self.listening.remove(&key),
            };
            return;
        }
        let (role, port) = if self.listening.contains(&(Transport::Tcp, e.local_port)) {
            ("in", Some(e.local_port))
        } else {
            ("out", e.foreign_port)
        };
        let program = e.program.as_deref().unwrap_or("").to_string();
        let labels = vec![
            program.clone(),
            role.to_string(),
            port.map_or_else(String::new, |p| p.to_string()),
        ];
        match e.kind {
            EventKind::Open => self.opened.add(labels, 1),
            EventKind::Close => {
                self.closed.add(labels, 1);
                let key = event_tuple(e);
                let seen = self.live.remove(&key);
                self.closed_since.insert(key, Instant::now());
                if let Some(t) = e.totals {
                    let (sent, received, retrans) = match &seen {
                        Some(s) => (s.sent, s.received, s.retrans),
                        None => (0, 0, 0),
                    };
                    let program = seen.map_or(program, |s| s.program.to_string());
                    self.add_traffic(
                        &program,
                        t.sent.saturating_sub(sent),
                        t.received.saturating_sub(received),
                        u64::from(t.total_retrans).saturating_sub(retrans),
                    );
                }
            }
        }
    }

    fn add_traffic(&mut self, program: &str, sent: u64, received: u64, retrans: u64) {
        self.bytes
            .add(vec!["sent".to_string(), program.to_string()], sent);
        self.bytes
            .add(vec!["received".to_string(), program.to_string()], received);
        self.retrans.add(vec![program.to_string()], retrans);
    }

    /// A snapshot (with owners and `tcp_info`) taken at `taken`: listening ports, and what
    /// the live connections moved since the last one. The first one is the starting point.
    pub(crate) fn snapshot(&mut self, sockets: &[Socket], taken: Instant) {
        self.listening = sockets
            .iter()
            .filter(|s| {
                s.protocol.transport() == Transport::Tcp && s.state == Some(TcpState::Listen)
            })
            .map(|s| (Transport::Tcp, s.local_port))
            .collect();
        let first = !self.started;
        self.started = true;
        let mut live = HashMap::with_capacity(self.live.len());
        let mut moved: HashMap<Arc<str>, (u64, u64, u64)> = HashMap::new();
        for s in sockets {
            if !is_connection(s.protocol, s.state) {
                continue;
            }
            let Some(tcp) = s.health.as_deref().and_then(|h| h.tcp.as_ref()) else {
                continue;
            };
            let Some(sent) = tcp.sent() else { continue };
            let received = tcp.received(fin_received(s.state)).unwrap_or(0);
            let retrans = tcp.or_zero(crate::model::TcpField::TotalRetrans);
            let key = tuple(s);
            let before = match self.live.remove(&key) {
                Some(seen) => Some(seen),
                // Closed after the snapshot was taken: its close counted it all.
                None if self.closed_since.get(&key).is_some_and(|&at| at >= taken) => continue,
                // Alive at the start: only what it moves from now on counts.
                None if first => None,
                // Opened since: all it moved is new.
                None => Some(Seen {
                    program: program_of(s),
                    sent: 0,
                    received: 0,
                    retrans: 0,
                    missed: 0,
                }),
            };
            let program = program_of(s);
            if let Some(b) = before {
                let m = moved.entry(program.clone()).or_default();
                m.0 += sent.saturating_sub(b.sent);
                m.1 += received.saturating_sub(b.received);
                m.2 += retrans.saturating_sub(b.retrans);
            }
            live.insert(
                key,
                Seen {
                    program,
                    sent,
                    received,
                    retrans,
                    missed: 0,
                },
            );
        }
        for (program, (sent, received, retrans)) in moved {
            self.add_traffic(&program, sent, received, retrans);
        }
        // A connection this snapshot does not show and no close named keeps its counters
        // for a while (its close may be on its way), then is forgotten.
        for (key, mut seen) in self.live.drain() {
            seen.missed += 1;
            if seen.missed < MISSED_MAX {
                live.entry(key).or_insert(seen);
            }
        }
        self.live = live;
        self.closed_since.retain(|_, at| *at >= taken);
    }

    /// The counter families, and their folded counts for `netstat_series_dropped`.
    pub(crate) fn families(&self) -> (Vec<Family>, Vec<(&'static str, usize)>) {
        let families = vec![
            self.opened.family(
                "netstat_connections_opened",
                "TCP connections opened since the server started (each end on its own); role in: accepted on the listening port `port`, out: outgoing to the remote port `port`.",
                OPEN_LABELS,
            ),
            self.closed.family(
                "netstat_connections_closed",
                "TCP connections closed since the server started, labelled as netstat_connections_opened_total.",
                OPEN_LABELS,
            ),
            self.retrans.family(
                "netstat_tcp_retransmits",
                "TCP segments retransmitted since the server started, by program (tcp_info total_retrans of live and closed connections).",
                RETRANS_LABELS,
            ),
            self.bytes.family(
                "netstat_traffic_bytes",
                "TCP payload bytes sent (acknowledged) and received since the server started, by program (tcp_info of live and closed connections).",
                BYTES_LABELS,
            ),
        ];
        let folded = vec![
            (
                "netstat_connections_opened_total",
                self.opened.admission.folded(),
            ),
            (
                "netstat_connections_closed_total",
                self.closed.admission.folded(),
            ),
            (
                "netstat_tcp_retransmits_total",
                self.retrans.admission.folded(),
            ),
            ("netstat_traffic_bytes_total", self.bytes.admission.folded()),
        ];
        (families, folded)
    }
}
