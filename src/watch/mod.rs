//! Monitoring over time: connection events (`open`, `close`) from the local kernel or a remote
//! host, the engines that produce them, and the recorder that remembers them.
//!
//! - [`engine`]: this machine. Closes come from the kernel's sock_diag destroy notifications
//!   (so a connection that lives 1 ms is still seen); opens from dumps diffed every interval,
//!   and from the close of a connection no dump saw. Owners are looked up for new sockets only
//!   and remembered for their close.
//! - [`polling`]: a configured host, by diffing listings over the pooled SSH session. It cannot
//!   see a connection that opens and closes between two listings.
//! - [`diff`]: the bookkeeping both share: live sockets by key, opens, closes, durations.
//! - [`recorder`]: a bounded ring of events kept by `serve --record`, dropping the oldest.
//!
//! Engines hand events to a [`Sink`]; they never wait for a consumer.

pub(crate) mod diff;
pub(crate) mod engine;
pub(crate) mod polling;
pub mod recorder;
pub mod traffic;
pub mod window;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Serialize;

use crate::model::{Endpoint, Owner, Owners, Protocol, Socket, TcpState, Transport};

/// The hasher of the per-socket maps (the differ's live sockets, a traffic window's
/// connections): keys are kernel socket cookies and tuples, 100,000 of them hashed on every
/// listing, none chosen by a remote party in a way that could matter (seeded per map).
pub(crate) type FastHash = foldhash::fast::RandomState;

/// What happened to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventKind {
    Open,
    Close,
}

/// How an event was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Origin {
    /// A listing (dump) showed the socket for the first time, or no longer showed it.
    Dump,
    /// The kernel's destroy notification. An `open` with this origin was never seen by a
    /// listing: the connection opened and closed between two of them.
    Destroy,
}

/// One `open` or `close` of a TCP connection or UDP socket.
///
/// Compact on purpose: the recorder holds up to 100,000 of these. No field owns a heap
/// allocation except the shared program name (`size_of::<Event>()` is the whole cost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) origin: Origin,
    pub(crate) protocol: Protocol,
    /// For `close`: the last state a listing showed (the kernel reports every destroyed
    /// socket as `CLOSE`, which is what a close never seen open carries).
    pub(crate) state: Option<TcpState>,
    pub(crate) local_port: u16,
    pub(crate) foreign_port: Option<u16>,
    /// Milliseconds since the Unix epoch.
    pub(crate) time_ms: i64,
    pub(crate) local_ip: IpAddr,
    pub(crate) foreign_ip: IpAddr,
    pub(crate) recv_queue: u32,
    pub(crate) send_queue: u32,
    pub(crate) uid: Option<u32>,
    pub(crate) pid: Option<u32>,
    /// For `close`: how long since the open was seen, when it was.
    pub(crate) duration_ms: Option<u32>,
    pub(crate) program: Option<Arc<str>>,
    /// For a TCP `close` the kernel's destroy notification described: the connection's
    /// final counters.
    pub(crate) totals: Option<Totals>,
}

/// A closed TCP connection's final counters, from the `tcp_info` of its destroy notification
/// (what bcc's `tcplife` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Bytes sent and acknowledged (`bytes_acked` less SYN and FIN).
    pub(crate) sent: u64,
    /// Bytes received.
    pub(crate) received: u64,
    pub(crate) total_retrans: u32,
    /// Smoothed RTT, µs.
    pub(crate) rtt_us: u32,
}

impl Totals {
    /// The totals of a destroyed socket, when its notification carried `tcp_info`.
    pub(crate) fn of(socket: &Socket) -> Option<Totals> {
        let tcp = socket.health.as_deref()?.tcp.as_ref()?;
        // Destroyed: the peer's FIN (normally) came in, as in CLOSE.
        let bytes = tcp.bytes(Some(TcpState::Close))?;
        Some(Totals {
            sent: bytes.sent,
            received: bytes.received,
            total_retrans: u32::try_from(tcp.or_zero(crate::model::TcpField::TotalRetrans))
                .unwrap_or(u32::MAX),
            rtt_us: u32::try_from(tcp.or_zero(crate::model::TcpField::Rtt)).unwrap_or(u32::MAX),
        })
    }
}

impl Event {
    /// An event for a socket at a time; the owner is the socket's first (lowest pid).
    pub(crate) fn new(kind: EventKind, origin: Origin, socket: &Socket, at: SystemTime) -> Event {
        let owner = socket.owners.iter().min_by_key(|o| o.pid);
        Event {
            kind,
            origin,
            protocol: socket.protocol,
            state: socket.state,
            local_port: socket.local_port,
            foreign_port: socket.foreign.port,
            time_ms: unix_ms(at),
            local_ip: socket.local_ip,
            foreign_ip: socket.foreign.ip,
            recv_queue: socket.recv_queue,
            send_queue: socket.send_queue,
            uid: socket.uid,
            pid: owner.map(|o| o.pid),
            duration_ms: None,
            program: owner.map(|o| o.program.clone()),
            totals: None,
        }
    }

    /// The event's socket, for the connection filters (which work on sockets).
    pub(crate) fn socket(&self) -> Socket {
        let mut s = Socket::new(
            self.protocol,
            self.local_ip,
            self.local_port,
            Endpoint {
                ip: self.foreign_ip,
                port: self.foreign_port,
            },
        );
        s.state = self.state;
        s.recv_queue = self.recv_queue;
        s.send_queue = self.send_queue;
        s.uid = self.uid;
        if let (Some(pid), Some(program)) = (self.pid, &self.program) {
            s.owners = Owners::from_iter([Owner {
                pid,
                program: program.clone(),
            }]);
        }
        s
    }

    /// The JSON form (`--json` lines, tool results).
    pub(crate) fn json(&self) -> EventJson {
        EventJson {
            event: self.kind,
            time: rfc3339_ms(self.time_ms),
            protocol: self.protocol.as_str(),
            local_ip: self.local_ip,
            local_port: self.local_port,
            foreign_ip: self.foreign_ip,
            foreign_port: self.foreign_port,
            state: self.state.map(TcpState::netstat_name),
            recv_queue: self.recv_queue,
            send_queue: self.send_queue,
            pid: self.pid,
            program: self.program.clone(),
            uid: self.uid,
            duration_ms: self.duration_ms,
            origin: self.origin,
            sent: self.totals.map(|t| t.sent),
            received: self.totals.map(|t| t.received),
            total_retrans: self.totals.map(|t| t.total_retrans),
            rtt_ms: self.totals.map(|t| f64::from(t.rtt_us) / 1000.0),
        }
    }
}

/// An event as JSON: `event` and `time` first, then the socket fields of a connection row.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct EventJson {
    /// `open` or `close`.
    pub(crate) event: EventKind,
    /// When it was seen: RFC 3339, UTC, milliseconds.
    pub(crate) time: String,
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub(crate) protocol: &'static str,
    pub(crate) local_ip: IpAddr,
    pub(crate) local_port: u16,
    pub(crate) foreign_ip: IpAddr,
    /// Null where netstat prints `*`.
    pub(crate) foreign_port: Option<u16>,
    /// netstat spelling. For a close: the last state seen (`CLOSE` when never seen open).
    pub(crate) state: Option<&'static str>,
    pub(crate) recv_queue: u32,
    pub(crate) send_queue: u32,
    /// Owning process, when known (for a close: the owner seen at its open).
    pub(crate) pid: Option<u32>,
    pub(crate) program: Option<Arc<str>>,
    /// The socket's user id, where the source tells it.
    pub(crate) uid: Option<u32>,
    /// For a close whose open was seen: milliseconds between the two (at least the
    /// connection's age when first seen less one interval).
    pub(crate) duration_ms: Option<u32>,
    /// `dump` (a listing showed the change) or `destroy` (the kernel's destroy notification;
    /// an open with this origin opened and closed between two listings).
    pub(crate) origin: Origin,
    /// For a TCP close seen by the kernel's destroy notification: bytes the application sent
    /// that the peer acknowledged (`bytes_acked` less SYN and FIN); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sent: Option<u64>,
    /// Likewise: bytes received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) received: Option<u64>,
    /// Likewise: segments retransmitted over the connection's life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) total_retrans: Option<u32>,
    /// Likewise: the last smoothed RTT, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rtt_ms: Option<f64>,
}

/// Where an engine puts its events. Called on the engine's thread; must not block.
pub(crate) trait Sink: Send {
    fn event(&mut self, event: Event);

    /// A close, with the key of the socket that closed (on this machine the kernel's socket
    /// cookie, unique for the namespace's lifetime; a four-tuple can be reused). `traffic`
    /// matches closes to its listings by it; every other sink takes the event alone.
    fn closed(&mut self, _key: u64, event: Event) {
        self.event(event)
    }
}

impl<F: FnMut(Event) + Send> Sink for F {
    fn event(&mut self, event: Event) {
        self(event)
    }
}

/// Which sockets an engine reports: the connection filters over the event's socket.
pub(crate) type Matcher = Arc<dyn Fn(&Socket) -> bool + Send + Sync>;

/// A filter that keeps everything.
pub(crate) fn no_filter() -> Matcher {
    Arc::new(|_| true)
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `2024-05-01T12:34:56.789Z` for milliseconds since the epoch.
///
/// Written here rather than taken from a date crate: UTC with milliseconds is all we print,
/// and the civil-from-days conversion is ten lines (Howard Hinnant's algorithm).
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Interns program names so events share one allocation per name. Bounded: past
/// [`Interner::MAX`] names it starts over (old events keep their own copies).
#[derive(Default)]
pub(crate) struct Interner {
    names: HashMap<Arc<str>, ()>,
}

impl Interner {
    pub(crate) const MAX: usize = 4096;

    pub(crate) fn intern(&mut self, name: &Arc<str>) -> Arc<str> {
        if let Some((k, _)) = self.names.get_key_value(name) {
            return k.clone();
        }
        if self.names.len() >= Self::MAX {
            self.names.clear();
        }
        self.names.insert(name.clone(), ());
        name.clone()
    }

    /// Replaces the program names of a socket's owners with interned ones.
    pub(crate) fn intern_owners(&mut self, socket: &mut Socket) {
        for o in socket.owners.iter_mut() {
            o.program = self.intern(&o.program);
        }
    }
}

/// Counts over a set of events: opened, closed, and the same by program and by remote host.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    programs: HashMap<Option<Arc<str>>, (u64, u64)>,
    hosts: HashMap<IpAddr, (u64, u64)>,
}

/// How many of the tops are kept.
pub(crate) const TOP: usize = 10;

/// Opens and closes by program.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct ProgramEvents {
    /// Null for sockets whose owner was not known.
    pub(crate) program: Option<Arc<str>>,
    pub(crate) opened: u64,
    pub(crate) closed: u64,
}

/// Opens and closes by remote (foreign) address; unconnected sockets are not counted here.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct HostCount {
    pub(crate) foreign_ip: IpAddr,
    pub(crate) opened: u64,
    pub(crate) closed: u64,
}

impl Tally {
    /// Most distinct programs/hosts remembered; past it, new ones are counted only in the
    /// totals (the tops stay right unless a storm brings more than this many hosts).
    const MAX_KEYS: usize = 65_536;

    pub(crate) fn add(&mut self, e: &Event) {
        let open = e.kind == EventKind::Open;
        let bump = |c: &mut (u64, u64)| {
            if open {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        };
        if open {
            self.opened += 1;
        } else {
            self.closed += 1;
        }
        if self.programs.len() < Self::MAX_KEYS || self.programs.contains_key(&e.program) {
            bump(self.programs.entry(e.program.clone()).or_default());
        }
        if !e.foreign_ip.is_unspecified()
            && (self.hosts.len() < Self::MAX_KEYS || self.hosts.contains_key(&e.foreign_ip))
        {
            bump(self.hosts.entry(e.foreign_ip).or_default());
        }
    }

    /// The top programs by events (opened + closed), ties by name.
    pub(crate) fn top_programs(&self) -> Vec<ProgramEvents> {
        top(&self.programs, |program, opened, closed| ProgramEvents {
            program: program.clone(),
            opened,
            closed,
        })
    }

    /// The top remote hosts by events, ties by address.
    pub(crate) fn top_hosts(&self) -> Vec<HostCount> {
        top(&self.hosts, |ip, opened, closed| HostCount {
            foreign_ip: *ip,
            opened,
            closed,
        })
    }
}

/// The [`TOP`] keys of `counts` by events (opened + closed), ties by key.
fn top<K: Ord, T>(counts: &HashMap<K, (u64, u64)>, make: impl Fn(&K, u64, u64) -> T) -> Vec<T> {
    let mut v: Vec<(&K, u64, u64)> = counts.iter().map(|(k, &(o, c))| (k, o, c)).collect();
    v.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(b.0)));
    v.truncate(TOP);
    v.into_iter().map(|(k, o, c)| make(k, o, c)).collect()
}

/// Counters an engine keeps while it runs, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    /// Destroy notifications the kernel dropped at least once (receive queue overrun) or that
    /// our queue to the engine had no room for.
    pub(crate) lost_notifications: std::sync::atomic::AtomicU64,
    /// Listings taken.
    pub(crate) dumps: std::sync::atomic::AtomicU64,
    /// Listings that failed (the engine keeps trying).
    pub(crate) dump_errors: std::sync::atomic::AtomicU64,
}

/// Default interval between local listings.
pub(crate) const LOCAL_INTERVAL: Duration = Duration::from_millis(250);
/// Default interval between remote listings.
pub(crate) const REMOTE_INTERVAL: Duration = Duration::from_millis(2000);
/// Shortest interval accepted.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Shortest interval for a remote host (each listing is a command over SSH).
pub(crate) const MIN_REMOTE_INTERVAL: Duration = Duration::from_millis(500);

/// Environment variable that turns destroy notifications off (the watcher then only diffs
/// listings, as it does where the kernel refuses the subscription): for comparing the two.
pub(crate) const NO_DESTROY_ENV: &str = "NETSTAT_MCP_WATCH_NO_DESTROY";

/// A connection's identity across listings and events: protocol and both endpoints.
pub(crate) type Tuple = (Protocol, IpAddr, u16, IpAddr, Option<u16>);

pub(crate) fn tuple(s: &Socket) -> Tuple {
    (
        s.protocol,
        s.local_ip,
        s.local_port,
        s.foreign.ip,
        s.foreign.port,
    )
}

pub(crate) fn event_tuple(e: &Event) -> Tuple {
    (
        e.protocol,
        e.local_ip,
        e.local_port,
        e.foreign_ip,
        e.foreign_port,
    )
}

/// Whether a TCP socket in this state is a connection whose byte counters mean traffic (not a
/// listener, a TIME_WAIT or a request socket).
pub(crate) fn is_connection_of(protocol: Protocol, state: Option<TcpState>) -> bool {
    protocol.transport() == Transport::Tcp
        && !matches!(
            state,
            Some(TcpState::Listen | TcpState::TimeWait | TcpState::SynRecv) | None
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn events_stay_small() {
        // The recorder's per-event cost, as documented in README and docs/tools.md.
        const { assert!(std::mem::size_of::<Event>() <= 136) };
    }

    fn event(kind: EventKind, program: Option<&str>, foreign: &str) -> Event {
        let mut s = Socket::between(Protocol::Tcp, ("127.0.0.1", 80), (foreign, Some(5000)));
        if let Some(p) = program {
            s.owners.push(Owner {
                pid: 7,
                program: Arc::from(p),
            });
        }
        Event::new(kind, Origin::Dump, &s, UNIX_EPOCH)
    }

    #[test]
    fn tally_counts_by_program_and_host() {
        let mut t = Tally::default();
        for _ in 0..3 {
            t.add(&event(EventKind::Open, Some("curl"), "10.0.0.1"));
        }
        t.add(&event(EventKind::Close, Some("curl"), "10.0.0.1"));
        t.add(&event(EventKind::Close, None, "0.0.0.0"));
        assert_eq!((t.opened, t.closed), (3, 2));
        let p = t.top_programs();
        assert_eq!(p[0].program.as_deref(), Some("curl"));
        assert_eq!((p[0].opened, p[0].closed), (3, 1));
        assert_eq!(p[1].program, None);
        let h = t.top_hosts();
        assert_eq!(h.len(), 1, "unconnected sockets have no remote host");
        assert_eq!((h[0].opened, h[0].closed), (3, 1));
    }

    #[test]
    fn event_round_trips_through_its_socket() {
        let e = event(EventKind::Open, Some("nginx"), "192.0.2.1");
        let s = e.socket();
        assert_eq!(s.owners[0].pid, 7);
        assert_eq!(Event::new(EventKind::Open, Origin::Dump, &s, UNIX_EPOCH), e);
    }
}
