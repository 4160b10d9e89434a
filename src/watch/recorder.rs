//! The recorder behind `serve --record`: a local watcher that runs as long as the server and
//! keeps its events in a bounded ring.
//!
//! The ring holds at most `capacity` events (136 bytes, `size_of::<Event>()`, each: the default
//! 100,000 take 13 MiB) in one allocation made at start (pages are touched as it fills). When it is full the oldest event is dropped
//! and counted, so a storm never grows memory and the tool can say how much it lost. The ring
//! is behind a mutex held only to push one event or to scan for one answer; the engine never
//! waits for a tool and a tool never waits for the kernel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::engine::{DestroyStatus, LocalOptions, LocalWatch};
use super::{Event, Tally, no_filter, unix_ms};
use crate::error::Error;
use crate::model::Socket;

/// Default number of events kept.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;
/// Largest capacity accepted (about 1 GiB of events).
pub(crate) const MAX_CAPACITY: usize = 10_000_000;

/// A bounded ring of events, oldest first.
#[derive(Debug)]
pub(crate) struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
    dropped: u64,
}

impl Ring {
    pub(crate) fn new(capacity: usize) -> Ring {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        Ring {
            events: VecDeque::with_capacity(capacity),
            capacity,
            dropped: 0,
        }
    }

    /// Adds an event, dropping the oldest when full.
    pub(crate) fn push(&mut self, e: Event) {
        if self.events.len() >= self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events dropped (oldest first) because the ring was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Time of the oldest event kept.
    pub(crate) fn oldest_ms(&self) -> Option<i64> {
        self.events.front().map(|e| e.time_ms)
    }

    /// The events at or after `since_ms` that pass `filter`: their tally, and the newest
    /// `limit` of them, oldest first.
    pub(crate) fn query(
        &self,
        since_ms: i64,
        filter: &dyn Fn(&Socket) -> bool,
        limit: usize,
    ) -> (Tally, Vec<Event>) {
        let mut tally = Tally::default();
        let mut newest = Vec::new();
        // Newest first, stopping at the window's start (events are in time order).
        for e in self.events.iter().rev() {
            if e.time_ms < since_ms {
                break;
            }
            if !filter(&e.socket()) {
                continue;
            }
            tally.add(e);
            if newest.len() < limit {
                newest.push(e.clone());
            }
        }
        newest.reverse();
        (tally, newest)
    }
}

/// Something else that is handed every event the recorder records, as it is recorded (the
/// metrics' counters): called on the engine's thread, so it must be quick.
#[derive(Clone)]
pub struct EventTap(pub(crate) Arc<dyn Fn(&Event) + Send + Sync>);

impl std::fmt::Debug for EventTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventTap")
    }
}

/// The running recorder: a local watcher feeding a ring.
pub struct Recorder {
    ring: Arc<Mutex<Ring>>,
    started_ms: i64,
    watch: LocalWatch,
}

/// What the recorder can tell about itself.
#[derive(Debug, Clone)]
pub struct RecorderState {
    pub(crate) started_ms: i64,
    pub(crate) capacity: usize,
    pub(crate) stored: usize,
    pub(crate) dropped: u64,
    pub(crate) oldest_ms: Option<i64>,
    pub destroy: DestroyStatus,
    pub interval: std::time::Duration,
    pub(crate) lost_notifications: u64,
}

impl Recorder {
    /// Starts recording every TCP and UDP event of this machine (its network namespace).
    /// With a `tap`, every event also goes to it.
    pub fn start(
        options: LocalOptions,
        capacity: usize,
        tap: Option<EventTap>,
    ) -> Result<Recorder, Error> {
        let ring = Arc::new(Mutex::new(Ring::new(capacity)));
        let sink_ring = ring.clone();
        let sink = move |e: Event| {
            if let Some(tap) = &tap {
                (tap.0)(&e);
            }
            if let Ok(mut r) = sink_ring.lock() {
                r.push(e);
            }
        };
        let watch = super::engine::start(options, no_filter(), Box::new(sink))?;
        Ok(Recorder {
            ring,
            started_ms: unix_ms(SystemTime::now()),
            watch,
        })
    }

    /// Runs `f` on the ring (briefly: the engine waits meanwhile).
    pub(crate) fn with_ring<T>(&self, f: impl FnOnce(&Ring) -> T) -> T {
        match self.ring.lock() {
            Ok(r) => f(&r),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn state(&self) -> RecorderState {
        let (capacity, stored, dropped, oldest_ms) =
            self.with_ring(|r| (r.capacity(), r.len(), r.dropped(), r.oldest_ms()));
        RecorderState {
            started_ms: self.started_ms,
            capacity,
            stored,
            dropped,
            oldest_ms,
            destroy: self.watch.destroy.clone(),
            interval: self.watch.interval,
            lost_notifications: self
                .watch
                .stats
                .lost_notifications
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use crate::watch::{EventKind, Origin};
    use std::time::{Duration, UNIX_EPOCH};

    fn ev(ms: u64, port: u16) -> Event {
        let s = Socket::between(Protocol::Tcp, ("127.0.0.1", port), ("127.0.0.1", Some(1)));
        Event::new(
            EventKind::Open,
            Origin::Dump,
            &s,
            UNIX_EPOCH + Duration::from_millis(ms),
        )
    }

    #[test]
    fn full_ring_drops_the_oldest_and_counts_them() {
        let mut r = Ring::new(3);
        for i in 0..10 {
            r.push(ev(i, 100 + i as u16));
        }
        assert_eq!((r.len(), r.dropped()), (3, 7));
        assert_eq!(r.oldest_ms(), Some(7));
        let (t, events) = r.query(0, &|_| true, 2);
        assert_eq!(t.opened, 3);
        let ports: Vec<u16> = events.iter().map(|e| e.local_port).collect();
        assert_eq!(ports, vec![108, 109], "the newest, oldest first");
    }

    #[test]
    fn query_stops_at_the_window_and_filters() {
        let mut r = Ring::new(100);
        for i in 0..50 {
            r.push(ev(i * 10, if i % 2 == 0 { 80 } else { 443 }));
        }
        let (t, events) = r.query(400, &|s| s.local_port == 80, 100);
        assert_eq!(t.opened, 5, "times 400, 420, 440, 460, 480");
        assert_eq!(events.len(), 5);
        assert_eq!(events[0].time_ms, 400);
    }

    #[test]
    fn the_ring_allocates_its_capacity_once() {
        let mut r = Ring::new(1000);
        let before = r.events.capacity();
        for i in 0..5000 {
            r.push(ev(i, 1));
        }
        assert_eq!(r.events.capacity(), before);
        assert!(before >= 1000);
    }
}
