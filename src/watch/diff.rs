//! The bookkeeping of a watcher: which sockets are live (by key), what a new listing or a
//! destroy notification changes, and the events that follow. Pure: no I/O, no clock — the
//! caller passes the times in, so tests drive it step by step.
//!
//! Keys are the kernel's socket cookie where the source has one (netlink), else a hash of the
//! protocol, both endpoints and the inode ([`tuple_key`]).
//!
//! Rules:
//! - A socket a listing shows for the first time is an `open`; its owners are looked up then
//!   (only for new sockets) and remembered.
//! - TIME_WAIT and request (SYN_RECV) sockets are not tracked: they are the end and the start
//!   of a connection the kernel keeps without a full socket, and would otherwise open twice.
//! - A destroy notification closes the live socket with its key (owner, last state and
//!   duration from the open). One for a socket no listing showed is reported as an `open` and
//!   a `close` (origin `destroy`).
//! - A socket missing from more than `grace` consecutive listings is closed by the listing.
//!   With destroy notifications, `grace` is 1: the kernel sends them from a work queue, so a
//!   listing may miss a socket whose notification is still on its way.
//! - Keys closed recently are remembered for a while so that a listing taken just before a
//!   close cannot bring the socket back.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime};

use crate::model::{Owner, Socket, TcpState, Transport};

use super::{Event, EventKind, FastHash, Interner, Matcher, Origin, Sink};

/// How long a closed key is remembered.
const CLOSED_MEMORY: Duration = Duration::from_secs(30);
/// At most this many closed keys are remembered (a storm forgets the oldest first).
const CLOSED_MAX: usize = 1 << 18;

struct Tracked {
    socket: Socket,
    seen: Instant,
    generation: u64,
    missing: u32,
}

/// Live sockets and the events their changes make.
pub(crate) struct Differ {
    live: HashMap<u64, Tracked, FastHash>,
    closed: HashSet<u64, FastHash>,
    closed_order: VecDeque<(Instant, u64)>,
    grace: u32,
    generation: u64,
    filter: Matcher,
    interner: Interner,
}

/// Whether a socket is tracked at all (see the module rules).
pub(crate) fn tracked_state(s: &Socket) -> bool {
    s.protocol.transport() == Transport::Udp
        || !matches!(s.state, Some(TcpState::TimeWait | TcpState::SynRecv))
}

/// A key for sources without cookies: protocol, endpoints and inode (where the source tells
/// it). Not the owner: a listing may name it one time and not the next.
pub(crate) fn tuple_key(s: &Socket) -> u64 {
    let mut h = DefaultHasher::new();
    s.protocol.hash(&mut h);
    s.local_ip.hash(&mut h);
    s.local_port.hash(&mut h);
    s.foreign.hash(&mut h);
    s.inode.hash(&mut h);
    h.finish()
}

impl Differ {
    /// `grace`: listings a socket may be missing from before the listing closes it (0 when
    /// listings are the only source of closes).
    pub(crate) fn new(grace: u32, filter: Matcher) -> Differ {
        Differ {
            live: HashMap::default(),
            closed: HashSet::default(),
            closed_order: VecDeque::new(),
            grace,
            generation: 0,
            filter,
            interner: Interner::default(),
        }
    }

    /// How many sockets are live.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.live.len()
    }

    /// The owners remembered for a live socket (looked up when a listing first showed it).
    pub(crate) fn owners(&self, key: u64) -> Option<&[Owner]> {
        self.live.get(&key).map(|t| t.socket.owners.as_slice())
    }

    /// A live socket as the differ keeps it (with its owners).
    pub(crate) fn socket(&self, key: u64) -> Option<&Socket> {
        self.live.get(&key).map(|t| &t.socket)
    }

    /// Applies a listing taken at `at` (`now` on the monotonic clock). `attach` looks up the
    /// owners of the sockets seen for the first time (only those). With `quiet`, nothing is
    /// reported (the first listing: what exists when a watch starts did not just open).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn listing(
        &mut self,
        at: SystemTime,
        now: Instant,
        sockets: Vec<(u64, Socket)>,
        attach: &mut dyn FnMut(&mut [Socket]),
        quiet: bool,
        sink: &mut dyn Sink,
    ) {
        self.expire(now);
        self.generation += 1;
        let generation = self.generation;
        let mut fresh_keys = Vec::new();
        let mut fresh = Vec::new();
        // The first listing sizes the table once (grown from empty, 100,000 sockets went
        // through every power of two, each a fresh table and a rehash).
        if self.live.is_empty() {
            self.live.reserve(sockets.len());
        }
        for (key, s) in sockets {
            if !tracked_state(&s) || self.closed.contains(&key) {
                continue;
            }
            match self.live.get_mut(&key) {
                Some(t) => {
                    t.generation = generation;
                    t.missing = 0;
                    t.socket.state = s.state;
                    t.socket.recv_queue = s.recv_queue;
                    t.socket.send_queue = s.send_queue;
                }
                None => {
                    fresh_keys.push(key);
                    fresh.push(s);
                }
            }
        }
        if !fresh.is_empty() {
            attach(&mut fresh);
        }
        for (key, mut s) in fresh_keys.into_iter().zip(fresh) {
            self.interner.intern_owners(&mut s);
            if !quiet && (self.filter)(&s) {
                sink.event(Event::new(EventKind::Open, Origin::Dump, &s, at));
            }
            // A key listed twice in one listing (a source quirk) keeps its first entry.
            self.live.entry(key).or_insert(Tracked {
                socket: s,
                seen: now,
                generation,
                missing: 0,
            });
        }
        let mut gone = Vec::new();
        for (key, t) in self.live.iter_mut() {
            if t.generation != generation {
                t.missing += 1;
                if t.missing > self.grace {
                    gone.push(*key);
                }
            }
        }
        for key in gone {
            if let Some(t) = self.live.remove(&key) {
                self.remember_closed(key, now);
                self.close(key, t, at, now, None, sink);
            }
        }
    }

    /// Applies a destroy notification for `key` received at `at`.
    pub(crate) fn destroyed(
        &mut self,
        key: u64,
        socket: Socket,
        at: SystemTime,
        now: Instant,
        sink: &mut dyn Sink,
    ) {
        if self.closed.contains(&key) {
            return;
        }
        self.remember_closed(key, now);
        let totals = super::Totals::of(&socket);
        match self.live.remove(&key) {
            Some(t) => self.close(key, t, at, now, Some(totals), sink),
            None => {
                // Queues at destroy time are leftovers (UDP reports a wrapped-around count).
                let mut socket = socket;
                socket.recv_queue = 0;
                socket.send_queue = 0;
                socket.health = None;
                if (self.filter)(&socket) {
                    sink.event(Event::new(EventKind::Open, Origin::Destroy, &socket, at));
                    let mut close = Event::new(EventKind::Close, Origin::Destroy, &socket, at);
                    close.totals = totals;
                    sink.closed(key, close);
                }
            }
        }
    }

    /// Reports a tracked socket's close; `destroyed` is `Some` (with the final counters, when
    /// the notification had them) for a close the kernel notified.
    fn close(
        &mut self,
        key: u64,
        t: Tracked,
        at: SystemTime,
        now: Instant,
        destroyed: Option<Option<super::Totals>>,
        sink: &mut dyn Sink,
    ) {
        if !(self.filter)(&t.socket) {
            return;
        }
        let origin = if destroyed.is_some() {
            Origin::Destroy
        } else {
            Origin::Dump
        };
        // Queues are the last a listing showed: at destroy time the kernel's are leftovers.
        let mut e = Event::new(EventKind::Close, origin, &t.socket, at);
        e.duration_ms = Some(
            u32::try_from(now.saturating_duration_since(t.seen).as_millis()).unwrap_or(u32::MAX),
        );
        // A listener's counters are not a connection's traffic.
        if t.socket.state != Some(TcpState::Listen) {
            e.totals = destroyed.flatten();
        }
        sink.closed(key, e);
    }

    fn remember_closed(&mut self, key: u64, now: Instant) {
        if self.closed.insert(key) {
            self.closed_order.push_back((now, key));
            if self.closed_order.len() > CLOSED_MAX
                && let Some((_, old)) = self.closed_order.pop_front()
            {
                self.closed.remove(&old);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.closed_order.front() {
            if now.saturating_duration_since(at) < CLOSED_MEMORY {
                break;
            }
            self.closed_order.pop_front();
            self.closed.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Owner, Protocol};
    use crate::watch::no_filter;
    use std::sync::Arc;

    fn sock(lport: u16, state: TcpState) -> Socket {
        let mut s = Socket::between(Protocol::Tcp, ("127.0.0.1", lport), ("127.0.0.1", Some(80)));
        s.state = Some(state);
        s.inode = Some(u64::from(lport));
        s
    }

    fn owner(sockets: &mut [Socket]) {
        for s in sockets {
            s.owners.push(Owner {
                pid: 42,
                program: Arc::from("curl"),
            });
        }
    }

    struct Run {
        d: Differ,
        t0: Instant,
        events: Vec<Event>,
    }

    impl Run {
        fn new(grace: u32) -> Run {
            Run {
                d: Differ::new(grace, no_filter()),
                t0: Instant::now(),
                events: Vec::new(),
            }
        }
        fn list(&mut self, ms: u64, socks: &[(u64, Socket)], quiet: bool) {
            let mut sink = |e| self.events.push(e);
            self.d.listing(
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                self.t0 + Duration::from_millis(ms),
                socks.to_vec(),
                &mut owner,
                quiet,
                &mut sink,
            );
        }
        fn destroy(&mut self, ms: u64, key: u64, s: Socket) {
            let mut sink = |e| self.events.push(e);
            self.d.destroyed(
                key,
                s,
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                self.t0 + Duration::from_millis(ms),
                &mut sink,
            );
        }
        fn kinds(&self) -> Vec<(EventKind, Origin, u16)> {
            self.events
                .iter()
                .map(|e| (e.kind, e.origin, e.local_port))
                .collect()
        }
    }

    use EventKind::{Close, Open};
    use Origin::{Destroy, Dump};

    #[test]
    fn first_listing_is_quiet_then_new_sockets_open_with_owners() {
        let mut r = Run::new(1);
        r.list(0, &[(1, sock(1000, TcpState::Listen))], true);
        assert!(r.events.is_empty());
        r.list(
            100,
            &[
                (1, sock(1000, TcpState::Listen)),
                (2, sock(2000, TcpState::Established)),
            ],
            false,
        );
        assert_eq!(r.kinds(), vec![(Open, Dump, 2000)]);
        assert_eq!(r.events[0].program.as_deref(), Some("curl"));
        assert_eq!(r.events[0].time_ms, 100);
    }

    #[test]
    fn destroy_closes_with_owner_duration_and_last_state() {
        let mut r = Run::new(1);
        r.list(0, &[], true);
        r.list(100, &[(2, sock(2000, TcpState::Established))], false);
        r.list(200, &[(2, sock(2000, TcpState::CloseWait))], false);
        r.destroy(350, 2, sock(2000, TcpState::Close));
        let close = &r.events[1];
        assert_eq!((close.kind, close.origin), (Close, Destroy));
        assert_eq!(close.pid, Some(42));
        assert_eq!(close.state, Some(TcpState::CloseWait));
        assert_eq!(close.duration_ms, Some(250));
        // A later listing taken before the close cannot bring it back.
        r.list(400, &[(2, sock(2000, TcpState::CloseWait))], false);
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.d.live(), 0);
    }

    #[test]
    fn a_socket_no_listing_saw_opens_and_closes_at_its_destroy() {
        let mut r = Run::new(1);
        r.list(0, &[], true);
        r.destroy(10, 9, sock(3000, TcpState::Close));
        assert_eq!(
            r.kinds(),
            vec![(Open, Destroy, 3000), (Close, Destroy, 3000)]
        );
        assert_eq!(r.events[1].duration_ms, None);
        r.destroy(11, 9, sock(3000, TcpState::Close));
        assert_eq!(r.events.len(), 2, "a repeated notification is ignored");
    }

    /// What a sink was handed: closes with their key, opens without.
    #[derive(Default)]
    struct Keyed(Vec<(EventKind, Option<u64>)>);

    impl Sink for Keyed {
        fn event(&mut self, e: Event) {
            self.0.push((e.kind, None));
        }
        fn closed(&mut self, key: u64, e: Event) {
            self.0.push((e.kind, Some(key)));
        }
    }

    #[test]
    fn every_close_names_its_key() {
        let mut d = Differ::new(0, no_filter());
        let mut sink = Keyed::default();
        let (t, now) = (SystemTime::UNIX_EPOCH, Instant::now());
        let listed = vec![
            (2, sock(2000, TcpState::Established)),
            (5, sock(5000, TcpState::Established)),
        ];
        d.listing(t, now, listed, &mut owner, true, &mut sink);
        // Notified, tracked; notified, never listed; gone from a listing.
        d.destroyed(2, sock(2000, TcpState::Close), t, now, &mut sink);
        d.destroyed(9, sock(9000, TcpState::Close), t, now, &mut sink);
        d.listing(t, now, Vec::new(), &mut owner, false, &mut sink);
        assert_eq!(
            sink.0,
            vec![
                (Close, Some(2)),
                (Open, None),
                (Close, Some(9)),
                (Close, Some(5))
            ]
        );
    }

    #[test]
    fn missing_sockets_close_after_the_grace() {
        let mut r = Run::new(1);
        r.list(0, &[(2, sock(2000, TcpState::Established))], true);
        r.list(100, &[], false);
        assert!(
            r.events.is_empty(),
            "one missed listing is within the grace"
        );
        r.list(200, &[], false);
        assert_eq!(r.kinds(), vec![(Close, Dump, 2000)]);
        // Its destroy arriving late adds nothing.
        r.destroy(210, 2, sock(2000, TcpState::Close));
        assert_eq!(r.events.len(), 1);

        let mut poll = Run::new(0);
        poll.list(0, &[(2, sock(2000, TcpState::Established))], true);
        poll.list(100, &[(2, sock(2000, TcpState::TimeWait))], false);
        assert_eq!(
            poll.kinds(),
            vec![(Close, Dump, 2000)],
            "entering TIME_WAIT ends the connection for a poller"
        );
    }

    #[test]
    fn time_wait_and_request_sockets_never_open() {
        let mut r = Run::new(1);
        r.list(0, &[], true);
        r.list(
            100,
            &[
                (5, sock(5000, TcpState::TimeWait)),
                (6, sock(6000, TcpState::SynRecv)),
            ],
            false,
        );
        assert!(r.events.is_empty());
    }

    #[test]
    fn filters_apply_to_events_not_to_tracking() {
        let filter: Matcher = Arc::new(|s: &Socket| s.local_port == 2000);
        let mut d = Differ::new(0, filter);
        let mut events = Vec::new();
        let t0 = Instant::now();
        let mut sink = |e| events.push(e);
        let socks = vec![
            (1, sock(1000, TcpState::Established)),
            (2, sock(2000, TcpState::Established)),
        ];
        d.listing(
            SystemTime::UNIX_EPOCH,
            t0,
            socks,
            &mut owner,
            false,
            &mut sink,
        );
        assert_eq!(d.live(), 2);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn tuple_keys_tell_endpoints_apart() {
        let a = sock(1000, TcpState::Established);
        let mut b = a.clone();
        assert_eq!(tuple_key(&a), tuple_key(&b));
        b.foreign.port = Some(81);
        assert_ne!(tuple_key(&a), tuple_key(&b));
    }
}
