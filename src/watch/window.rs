//! The watch operations both faces call: start a watcher on a target, watch for a bounded
//! window (the `watch_connections` tool), and ask the recorder (`recent_connection_events`);
//! their inputs, validation and result envelopes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{Error, InputError};
use crate::query::answer::shrink_step;
use crate::query::output::Rows;
use crate::query::{
    ANSWER_BUDGET, ConnectionsQuery, Envelope, HostSpec, RecentArgs, Service, WatchArgs,
};
use crate::source::{Backend, Target, Want};

use super::engine::{DestroyStatus, LocalOptions, LocalWatch};
use super::polling::RemoteWatch;
use super::recorder::Recorder;
use super::{
    Event, EventJson, HostCount, LOCAL_INTERVAL, MIN_INTERVAL, MIN_REMOTE_INTERVAL, Matcher,
    ProgramEvents, REMOTE_INTERVAL, Sink, Tally, rfc3339_ms, unix_ms,
};

/// Default and bounds of `watch_connections`' window.
pub(crate) const DEFAULT_WINDOW_SECS: u64 = 10;
pub(crate) const MAX_WINDOW_SECS: u64 = 50;
/// Default number of events in an answer.
pub(crate) const DEFAULT_EVENT_LIMIT: usize = 50;
/// Default and largest look-back of `recent_connection_events`.
pub(crate) const DEFAULT_SINCE_SECS: u64 = 600;
pub(crate) const MAX_SINCE_SECS: u64 = 7 * 24 * 3600;
/// Events queued between an engine and a consumer at most; past it they are dropped and
/// counted (the engine never waits).
const CHANNEL: usize = 8192;

/// A validated watch.
#[derive(Debug, Clone)]
pub(crate) struct WatchQuery {
    pub(crate) filter: ConnectionsQuery,
    /// `None`: until stopped (CLI).
    pub(crate) duration: Option<Duration>,
    pub(crate) interval: Option<Duration>,
    /// Events in the answer at most.
    pub(crate) limit: usize,
    /// Whether `limit` was the default (the answer may then shrink to fit its byte budget).
    pub(crate) default_limit: bool,
    /// `traffic`'s engine: its first listing carries counters, and it takes a closing one
    /// with counters on request (local engine only).
    pub(crate) counters: bool,
}

/// A validated `recent_connection_events`.
#[derive(Debug, Clone)]
pub(crate) struct RecentQuery {
    pub(crate) filter: ConnectionsQuery,
    pub(crate) since: Duration,
    pub(crate) limit: usize,
    pub(crate) default_limit: bool,
}

const WINDOW_ALLOWED: &str = "must be an integer number of seconds between 1 and 50 (a call must end inside the 60 s request timeout MCP client SDKs default to)";
const INTERVAL_ALLOWED: &str = "must be an integer number of milliseconds between 20 and 60000 (500 or more for a remote host)";
const SINCE_ALLOWED: &str = "must be an integer number of seconds between 1 and 604800 (7 days)";

fn interval_arg(ms: Option<i64>, remote: bool) -> Result<Option<Duration>, InputError> {
    let Some(ms) = ms else { return Ok(None) };
    let min = if remote {
        MIN_REMOTE_INTERVAL
    } else {
        MIN_INTERVAL
    };
    match u64::try_from(ms) {
        Ok(v) if u128::from(v) >= min.as_millis() && v <= 60_000 => {
            Ok(Some(Duration::from_millis(v)))
        }
        _ => Err(InputError::new(
            "interval_ms",
            ms.to_string(),
            INTERVAL_ALLOWED,
        )),
    }
}

/// `limit` of an answer with events: (limit, whether it was the default). No limit (0) is
/// still the answer's own: never more rows than an answer can carry.
fn event_limit(limit: Option<i64>) -> Result<(usize, bool), InputError> {
    let (limit, default) = crate::query::input::limit_arg(limit, Some(DEFAULT_EVENT_LIMIT))?;
    Ok((
        limit.unwrap_or(crate::query::output::MAX_ANSWER_ROWS),
        default,
    ))
}

impl WatchArgs {
    /// Validates for the tool: a window of 1-50 s (default 10), at most `limit` events
    /// (default 50).
    pub(crate) fn validate_window(&self) -> Result<WatchQuery, InputError> {
        let secs = match self.duration_secs {
            None => DEFAULT_WINDOW_SECS,
            Some(s) => u64::try_from(s)
                .ok()
                .filter(|s| (1..=MAX_WINDOW_SECS).contains(s))
                .ok_or_else(|| InputError::new("duration_secs", s.to_string(), WINDOW_ALLOWED))?,
        };
        let mut q = self.validate(Some(Duration::from_secs(secs)))?;
        (q.limit, q.default_limit) = event_limit(self.limit)?;
        Ok(q)
    }

    /// Validates for the CLI: any duration of at least 1 s, or none (until Ctrl-C).
    pub(crate) fn validate_cli(&self) -> Result<WatchQuery, InputError> {
        let duration = match self.duration_secs {
            None => None,
            Some(s) => Some(Duration::from_secs(
                u64::try_from(s).ok().filter(|s| *s >= 1).ok_or_else(|| {
                    InputError::new(
                        "duration",
                        s.to_string(),
                        "must be a whole number of seconds, at least 1",
                    )
                })?,
            )),
        };
        self.validate(duration)
    }

    fn validate(&self, duration: Option<Duration>) -> Result<WatchQuery, InputError> {
        let filter = self.filters().validate(None)?;
        let remote = matches!(filter.host, HostSpec::Remote(_));
        Ok(WatchQuery {
            interval: interval_arg(self.interval_ms, remote)?,
            filter,
            duration,
            limit: usize::MAX,
            default_limit: false,
            counters: false,
        })
    }
}

impl RecentArgs {
    pub(crate) fn validate(&self) -> Result<RecentQuery, InputError> {
        let since = match self.since_secs {
            None => DEFAULT_SINCE_SECS,
            Some(s) => u64::try_from(s)
                .ok()
                .filter(|s| (1..=MAX_SINCE_SECS).contains(s))
                .ok_or_else(|| InputError::new("since_secs", s.to_string(), SINCE_ALLOWED))?,
        };
        let (limit, default_limit) = event_limit(self.limit)?;
        Ok(RecentQuery {
            filter: self.filters().validate(None)?,
            since: Duration::from_secs(since),
            limit,
            default_limit,
        })
    }
}

/// A count with thousands separators, as messages print counts.
fn n(count: u64) -> String {
    crate::query::answer::thousands(usize::try_from(count).unwrap_or(usize::MAX))
}

/// What the engines list: the query's transports and local port, every state.
fn engine_want(q: &ConnectionsQuery) -> Want {
    Want {
        states: crate::model::StateSet::ALL,
        udp_states: crate::model::StateSet::ALL,
        owners: true,
        ..q.want()
    }
}

fn engine_filter(q: &ConnectionsQuery) -> Matcher {
    let q = q.clone();
    Arc::new(move |s| q.matches(s))
}

/// A running watcher on some host; dropping it stops it.
pub(crate) enum Watcher {
    Local(LocalWatch),
    Remote(RemoteWatch),
}

impl Watcher {
    pub(crate) fn destroy(&self) -> DestroyStatus {
        match self {
            Watcher::Local(w) => w.destroy.clone(),
            Watcher::Remote(_) => DestroyStatus::Remote,
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        match self {
            Watcher::Local(w) => w.interval,
            Watcher::Remote(w) => w.interval,
        }
    }

    fn stats(&self) -> &super::EngineStats {
        match self {
            Watcher::Local(w) => &w.stats,
            Watcher::Remote(w) => &w.stats,
        }
    }

    /// Destroy notifications lost (kernel queue overruns, or our queue full).
    pub(crate) fn lost_notifications(&self) -> u64 {
        self.stats().lost_notifications.load(Ordering::Relaxed)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        match self {
            Watcher::Local(w) => w.last_error(),
            Watcher::Remote(w) => w.last_error(),
        }
    }
}

/// A sink into a bounded channel: a full channel drops the item and counts it. It carries
/// events (`watch`), or closes with their socket's key (`traffic`).
pub(crate) struct ChannelSink<T = Event> {
    tx: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> ChannelSink<T> {
    pub(crate) fn send(&self, item: T) {
        if self.tx.try_send(item).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Sink for ChannelSink {
    fn event(&mut self, event: Event) {
        self.send(event);
    }
}

/// A channel for a consumer of events: the sink to give an engine, the receiver, and the
/// count of items dropped because the consumer fell behind.
pub(crate) fn channel<T>() -> (ChannelSink<T>, mpsc::Receiver<T>, Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        ChannelSink {
            tx,
            dropped: dropped.clone(),
        },
        rx,
        dropped,
    )
}

/// `data` of `watch_connections`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct WatchData {
    /// The host watched: `localhost`, or a configured remote host's name.
    pub(crate) host: String,
    /// Seconds actually watched.
    pub(crate) duration_secs: f64,
    /// Milliseconds between two listings.
    pub(crate) interval_ms: u64,
    /// True when closes came from the kernel's destroy notifications (every close seen);
    /// false when only listings were compared (connections shorter than the interval missed).
    pub(crate) destroy_notifications: bool,
    #[serde(flatten)]
    pub(crate) activity: Activity,
    /// Events the watcher could not deliver (notifications lost by the kernel, or a full
    /// queue); non-zero means the counts are lower bounds.
    pub(crate) lost_events: u64,
}

/// `data` of `recent_connection_events`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct RecentData {
    pub(crate) host: String,
    /// The look-back asked for.
    pub(crate) since_secs: u64,
    /// When the recorder started (RFC 3339).
    pub(crate) recording_since: String,
    /// The oldest event the ring still holds (RFC 3339), null when empty.
    pub(crate) oldest_event: Option<String>,
    /// True when the recorder covers the whole look-back: it ran for all of it and dropped
    /// nothing from it.
    pub(crate) window_complete: bool,
    #[serde(flatten)]
    pub(crate) activity: Activity,
    /// Events the ring holds now, and at most.
    pub(crate) stored_events: usize,
    pub(crate) capacity: usize,
    /// Events dropped (oldest first) since the recorder started because the ring was full.
    pub(crate) dropped_events: u64,
    /// Whether closes come from the kernel's destroy notifications.
    pub(crate) destroy_notifications: bool,
}

/// What a watch window or the recorder's look-back saw: the counts, the busiest programs and
/// remote hosts, and the newest events (the rows an answer is cut to fit its budget).
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct Activity {
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    /// Opens and closes by program (top 10).
    pub(crate) by_program: Vec<ProgramEvents>,
    /// Opens and closes by remote address (top 10).
    pub(crate) by_remote_host: Vec<HostCount>,
    /// Events that matched (opened + closed).
    pub(crate) event_count: u64,
    /// True when `events` holds fewer than `event_count`.
    pub(crate) truncated: bool,
    /// The newest matching events (at most `limit`), oldest first.
    pub(crate) events: Vec<EventJson>,
}

impl Activity {
    /// The tally's counts and tops, with the events kept of `event_count`.
    fn new(tally: &Tally, event_count: u64, events: Vec<EventJson>) -> Activity {
        Activity {
            opened: tally.opened,
            closed: tally.closed,
            by_program: tally.top_programs(),
            by_remote_host: tally.top_hosts(),
            event_count,
            truncated: (events.len() as u64) < event_count,
            events,
        }
    }
}

/// Cuts an answer's events (the oldest first) until it fits the answer budget, unless the
/// caller gave a `limit` (only a larger explicit one may exceed the budget).
fn fit<T: Serialize + Rows>(envelope: &mut Envelope<T>, explicit_limit: bool) {
    if !explicit_limit {
        while shrink_step(envelope, ANSWER_BUDGET) {}
    }
}

/// The watch operations over a [`Service`] (which picks the host).
#[derive(Clone)]
pub struct WatchService {
    service: Service,
    backend: Backend,
    destroy: bool,
    recorder: Option<Arc<Recorder>>,
}

impl WatchService {
    pub fn new(service: Service, backend: Backend) -> WatchService {
        WatchService {
            service,
            backend,
            destroy: true,
            recorder: None,
        }
    }

    /// The service that picks hosts.
    pub(crate) fn service(&self) -> &Service {
        &self.service
    }

    /// Local watchers of this service compare listings only (diagnostics).
    pub(crate) fn without_destroy(mut self) -> WatchService {
        self.destroy = false;
        self
    }

    pub fn with_recorder(mut self, recorder: Arc<Recorder>) -> WatchService {
        self.recorder = Some(recorder);
        self
    }

    /// Options for a local engine of this service.
    pub fn local_options(&self, want: Want) -> LocalOptions {
        let mut options = LocalOptions::new(want);
        options.backend = self.backend;
        options.destroy &= self.destroy;
        options
    }

    /// Starts a watcher for a query; returns once its baseline listing is in. Also the
    /// target's name and label (for messages).
    pub(crate) async fn start(
        &self,
        q: &WatchQuery,
        sink: Box<dyn Sink>,
    ) -> Result<(Watcher, Target), Error> {
        let target = self.service.target(&q.filter.host, q.filter.ssh_port)?;
        let want = engine_want(&q.filter);
        let filter = engine_filter(&q.filter);
        if target.local {
            let mut options = self.local_options(want);
            options.interval = q.interval.unwrap_or(LOCAL_INTERVAL);
            // A counted watch (traffic) always has its window.
            options.counted = q.counters.then(|| q.duration.unwrap_or(Duration::MAX));
            let w =
                tokio::task::spawn_blocking(move || super::engine::start(options, filter, sink))
                    .await
                    .map_err(|e| Error::NoLocalSource {
                        detail: format!("watch task failed: {e}"),
                    })??;
            Ok((Watcher::Local(w), target))
        } else {
            let interval = q.interval.unwrap_or(REMOTE_INTERVAL);
            let w =
                super::polling::start(target.source.clone(), want, interval, filter, sink).await?;
            Ok((Watcher::Remote(w), target))
        }
    }

    /// `watch_connections`: watches for the query's window, calling `progress` about once a
    /// second (elapsed seconds, total, the tally so far). Dropping the future stops the
    /// watcher (cancellation).
    pub(crate) async fn window(
        &self,
        q: &WatchQuery,
        progress: &mut (dyn FnMut(u64, u64, &Tally) + Send),
    ) -> Result<Envelope<WatchData>, Error> {
        let (sink, mut rx, dropped) = channel();
        let (watcher, target) = self.start(q, Box::new(sink)).await?;
        let window = q
            .duration
            .unwrap_or(Duration::from_secs(DEFAULT_WINDOW_SECS));
        let total = window.as_secs();
        let started = tokio::time::Instant::now();
        let deadline = started + window;
        let mut tally = Tally::default();
        let mut newest: VecDeque<Event> = VecDeque::new();
        let keep = |e: Event, tally: &mut Tally, newest: &mut VecDeque<Event>| {
            tally.add(&e);
            if q.limit > 0 {
                if newest.len() >= q.limit {
                    newest.pop_front();
                }
                newest.push_back(e);
            }
        };
        progress(0, total, &tally);
        let mut ticker =
            tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = ticker.tick() => {
                    let elapsed = started.elapsed().as_secs().min(total);
                    progress(elapsed, total, &tally);
                }
                e = rx.recv() => match e {
                    Some(e) => keep(e, &mut tally, &mut newest),
                    None => break,
                },
            }
        }
        let interval = watcher.interval();
        let destroy = watcher.destroy();
        let lost = watcher.lost_notifications() + dropped.load(Ordering::Relaxed);
        let last_error = watcher.last_error();
        drop(watcher);
        while let Ok(e) = rx.try_recv() {
            keep(e, &mut tally, &mut newest);
        }
        let seen = Seen {
            secs: started.elapsed().as_secs_f64().min(window.as_secs_f64()),
            window,
            interval,
            destroy,
            lost,
            last_error,
        };
        Ok(watch_answer(q, &target, &seen, tally, newest))
    }

    /// `recent_connection_events`: what the recorder saw in the look-back.
    pub(crate) fn recent(&self, q: &RecentQuery) -> Result<Envelope<RecentData>, Error> {
        let Some(recorder) = &self.recorder else {
            return Err(Error::RecorderOff);
        };
        let now_ms = unix_ms(SystemTime::now());
        let since_ms = now_ms - i64::try_from(q.since.as_millis()).unwrap_or(i64::MAX / 2);
        let filter = q.filter.clone();
        let (tally, events) =
            recorder.with_ring(|r| r.query(since_ms, &|s| filter.matches(s), q.limit));
        let st = recorder.state();
        let window_complete = st.started_ms <= since_ms
            && (st.dropped == 0 || st.oldest_ms.is_some_and(|o| o <= since_ms));
        let event_count = tally.opened + tally.closed;
        let mut message = format!(
            "In the last {} s on local host: {} opened, {} closed",
            q.since.as_secs(),
            n(tally.opened),
            n(tally.closed)
        );
        if (events.len() as u64) < event_count {
            message.push_str(&format!(
                " (showing the newest {} of {} events; pass a larger limit or narrow the filters)",
                n(events.len() as u64),
                n(event_count)
            ));
        }
        if !window_complete {
            if st.started_ms > since_ms {
                message.push_str(&format!(
                    ". The recorder started only {} s ago, at {}",
                    (now_ms - st.started_ms).max(0) / 1000,
                    rfc3339_ms(st.started_ms)
                ));
            }
            if st.dropped > 0 && st.oldest_ms.is_some_and(|o| o > since_ms) {
                message.push_str(&format!(
                    ". The ring (capacity {}) is full and has dropped {} older event(s): it holds events since {} only; start the server with a larger --record-capacity",
                    st.capacity,
                    n(st.dropped),
                    st.oldest_ms.map(rfc3339_ms).unwrap_or_default()
                ));
            }
        }
        message.push_str(". ");
        message.push_str(&st.destroy.describe(st.interval));
        if st.lost_notifications > 0 {
            message.push_str(&format!(
                ". Destroy notifications were lost {} time(s) since the recorder started (kernel queue overrun or a full queue), so counts are lower bounds",
                st.lost_notifications
            ));
        }
        let events: Vec<EventJson> = events.iter().map(Event::json).collect();
        let mut envelope = Envelope::ok(
            message,
            RecentData {
                host: "localhost".into(),
                since_secs: q.since.as_secs(),
                recording_since: rfc3339_ms(st.started_ms),
                oldest_event: st.oldest_ms.map(rfc3339_ms),
                window_complete,
                activity: Activity::new(&tally, event_count, events),
                stored_events: st.stored,
                capacity: st.capacity,
                dropped_events: st.dropped,
                destroy_notifications: st.destroy.is_on(),
            },
        );
        fit(&mut envelope, !q.default_limit);
        Ok(envelope)
    }
}

/// Keeps the newest `n` events (they are at the end: the oldest go first).
fn keep_newest(events: &mut Vec<EventJson>, truncated: &mut bool, n: usize) {
    let cut = events.len().saturating_sub(n);
    events.drain(..cut);
    *truncated = true;
}

impl Rows for Activity {
    fn row_count(&self) -> usize {
        self.events.len()
    }
    fn keep_rows(&mut self, n: usize) {
        keep_newest(&mut self.events, &mut self.truncated, n);
    }
}

impl Rows for WatchData {
    fn row_count(&self) -> usize {
        self.activity.row_count()
    }
    fn keep_rows(&mut self, n: usize) {
        self.activity.keep_rows(n);
    }
}

impl Rows for RecentData {
    fn row_count(&self) -> usize {
        self.activity.row_count()
    }
    fn keep_rows(&mut self, n: usize) {
        self.activity.keep_rows(n);
    }
}

/// How a watch window went, beside its events.
struct Seen {
    secs: f64,
    window: Duration,
    interval: Duration,
    destroy: DestroyStatus,
    lost: u64,
    last_error: Option<String>,
}

/// `watch_connections`' answer: the tally, the newest events, and a message saying what was
/// watched and how (fitted to the answer budget).
fn watch_answer(
    q: &WatchQuery,
    target: &crate::source::Target,
    seen: &Seen,
    tally: Tally,
    newest: VecDeque<Event>,
) -> Envelope<WatchData> {
    let event_count = tally.opened + tally.closed;
    let where_ = if target.local {
        "local host".to_string()
    } else {
        target.label.clone()
    };
    let mut message = format!(
        "Watched {where_} for {} s: {} opened, {} closed",
        seen.window.as_secs(),
        n(tally.opened),
        n(tally.closed)
    );
    if (newest.len() as u64) < event_count {
        message.push_str(&format!(
            " (showing the newest {} of {} events; pass a larger limit or narrow the filters)",
            n(newest.len() as u64),
            n(event_count)
        ));
    }
    message.push_str(". ");
    message.push_str(&seen.destroy.describe(seen.interval));
    if seen.lost > 0 {
        message.push_str(&format!(
            ". {} event(s) could not be delivered (queue overrun), so the counts are lower bounds",
            seen.lost
        ));
    }
    if let Some(e) = &seen.last_error {
        message.push_str(&format!(". The last listing failed: {e}"));
    }
    let events: Vec<EventJson> = newest.iter().map(Event::json).collect();
    let mut envelope = Envelope::ok(
        message,
        WatchData {
            host: target.host.clone(),
            duration_secs: (seen.secs * 1000.0).round() / 1000.0,
            interval_ms: seen.interval.as_millis() as u64,
            destroy_notifications: seen.destroy.is_on(),
            activity: Activity::new(&tally, event_count, events),
            lost_events: seen.lost,
        },
    );
    fit(&mut envelope, !q.default_limit);
    envelope
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Owner, Protocol, Socket, TcpState};
    use crate::watch::{EventKind, Origin};
    use std::time::UNIX_EPOCH;

    /// The largest event a source can produce in practice: IPv6 addresses of full length,
    /// a program name of 64 characters that all need escaping, every number at its maximum.
    fn worst_event(i: u16) -> Event {
        let ip: std::net::IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let mut s = Socket::new(
            Protocol::Tcp6,
            ip,
            65535 - i,
            Endpoint {
                ip,
                port: Some(65535),
            },
        );
        s.state = Some(TcpState::Established);
        s.recv_queue = u32::MAX;
        s.send_queue = u32::MAX;
        s.uid = Some(u32::MAX);
        s.owners.push(Owner {
            pid: u32::MAX,
            program: Arc::from("\u{1}".repeat(60) + &i.to_string()),
        });
        let mut e = Event::new(EventKind::Close, Origin::Destroy, &s, UNIX_EPOCH);
        e.time_ms = 4_102_444_799_999;
        e.duration_ms = Some(u32::MAX);
        e
    }

    fn worst_watch_answer(events: usize) -> Envelope<WatchData> {
        let mut tally = Tally::default();
        let mut list = Vec::new();
        for i in 0..events {
            let mut e = worst_event(i as u16);
            // Distinct remote hosts and programs fill both tops.
            e.foreign_ip = std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, i as u16,
            ));
            tally.add(&e);
            list.push(e.json());
        }
        Envelope::ok(
            "Watched remote host some-long-host-name-of-a-fleet (fd00:ffff:ffff:ffff::1) for 60 s: 4,294,967,295 opened, 4,294,967,295 closed (showing the newest 50 of 8,589,934,590 events; pass a larger limit or narrow the filters). A remote host is watched by comparing listings every 60000 ms, so connections that open and close between two listings are not seen. 18446744073709551615 event(s) could not be delivered (queue overrun), so the counts are lower bounds".into(),
            WatchData {
                host: "some-long-host-name-of-a-fleet".into(),
                duration_secs: 60.0,
                interval_ms: 60_000,
                destroy_notifications: false,
                activity: Activity {
                    opened: u64::MAX,
                    closed: u64::MAX,
                    by_program: tally.top_programs(),
                    by_remote_host: tally.top_hosts(),
                    event_count: u64::MAX,
                    truncated: true,
                    events: list,
                },
                lost_events: u64::MAX,
            },
        )
    }

    #[test]
    fn default_answers_fit_the_budget_even_with_the_largest_events() {
        let mut envelope = worst_watch_answer(DEFAULT_EVENT_LIMIT);
        let before = crate::query::answer::json_len(&envelope);
        fit(&mut envelope, false);
        let after = crate::query::answer::json_len(&envelope);
        assert!(after <= ANSWER_BUDGET, "{before} -> {after} bytes");
        let data = envelope.data.as_ref().unwrap();
        assert!(data.activity.truncated);
        assert!(
            !data.activity.events.is_empty(),
            "only as many events as needed are left out"
        );
        assert_eq!(data.activity.by_program.len(), crate::watch::TOP);
        // The newest events are the ones kept.
        assert_eq!(data.activity.events.last().unwrap().local_port, 65535 - 49);

        // An explicit limit is honoured even past the budget.
        let mut explicit = worst_watch_answer(DEFAULT_EVENT_LIMIT);
        fit(&mut explicit, true);
        assert_eq!(
            explicit.data.unwrap().activity.events.len(),
            DEFAULT_EVENT_LIMIT
        );
    }

    /// Typical events (IPv4, short program names): 50 of them fit without cutting.
    #[test]
    fn fifty_ordinary_events_fit_whole() {
        let mut envelope = worst_watch_answer(DEFAULT_EVENT_LIMIT);
        if let Some(d) = envelope.data.as_mut() {
            for e in &mut d.activity.events {
                e.local_ip = "10.0.0.1".parse().unwrap();
                e.foreign_ip = "192.168.100.200".parse().unwrap();
                e.program = Some(Arc::from("postgres"));
            }
        }
        fit(&mut envelope, false);
        assert_eq!(
            envelope.data.unwrap().activity.events.len(),
            DEFAULT_EVENT_LIMIT
        );
    }

    fn watch(args: serde_json::Value) -> Result<WatchQuery, String> {
        let map = args.as_object().cloned().unwrap_or_default();
        WatchArgs::from_json(&map)
            .and_then(|a| a.validate_window())
            .map_err(|e| e.to_string())
    }

    fn recent(args: serde_json::Value) -> Result<RecentQuery, String> {
        let map = args.as_object().cloned().unwrap_or_default();
        RecentArgs::from_json(&map)
            .and_then(|a| a.validate())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bad_inputs_name_the_parameter_and_the_allowed_values() {
        use serde_json::json;
        let w = |args| watch(args).err();
        let r = |args| recent(args).err();
        let cases = [
            (
                w(json!({"duration_secs": 0})),
                "'duration_secs'",
                "between 1 and 50",
            ),
            (
                w(json!({"duration_secs": 51})),
                "'duration_secs'",
                "between 1 and 50",
            ),
            (w(json!({"duration_secs": "5"})), "'duration_secs'", "1"),
            (
                w(json!({"interval_ms": 5})),
                "'interval_ms'",
                "between 20 and 60000",
            ),
            (
                w(json!({"interval_ms": 100, "host": "web-1"})),
                "'interval_ms'",
                "500 or more",
            ),
            (w(json!({"limit": -1})), "'limit'", "0 means no limit"),
            (w(json!({"proto": "icmp"})), "'proto'", "tcp, udp, all"),
            (
                w(json!({"state": "ESTAB", "proto": "udp"})),
                "'state'",
                "TCP only",
            ),
            (w(json!({"ssh_port": 22})), "'ssh_port'", "remote host"),
            (
                w(json!({"port": 22})),
                "unknown parameter 'port'",
                "duration_secs",
            ),
            (r(json!({"since_secs": 0})), "'since_secs'", "604800"),
            (
                r(json!({"host": "web-1"})),
                "unknown parameter 'host'",
                "since_secs",
            ),
            (r(json!({"local_port": 70000})), "'local_port'", "65535"),
        ];
        for (i, (err, needle1, needle2)) in cases.into_iter().enumerate() {
            let msg = err.unwrap_or_else(|| panic!("case {i} must be refused"));
            assert!(
                msg.contains(needle1) && msg.contains(needle2),
                "case {i}: {msg}"
            );
        }
    }

    #[test]
    fn defaults() {
        use serde_json::json;
        let q = watch(json!({})).unwrap();
        assert_eq!(q.duration, Some(Duration::from_secs(10)));
        assert_eq!((q.limit, q.default_limit), (50, true));
        assert_eq!(q.interval, None);
        let q = watch(json!({"limit": 0, "duration_secs": 50, "interval_ms": 20})).unwrap();
        assert_eq!(
            (q.limit, q.default_limit),
            (crate::query::output::MAX_ANSWER_ROWS, false)
        );
        assert_eq!(q.interval, Some(Duration::from_millis(20)));
        let r = recent(json!({"local_port": 5432})).unwrap();
        assert_eq!(r.since, Duration::from_secs(600));
        assert_eq!(r.filter.local_port, Some(5432));
    }
}
