//! The local event source: two threads.
//!
//! - `nm-watch-destroy` blocks on a netlink socket subscribed to the four sock_diag destroy
//!   groups ([`netlink::DestroyMonitor`]) and queues each destroyed socket, stamped with the
//!   time it arrived, for the engine (a bounded queue: when full, notifications are counted as
//!   lost, never waited for).
//! - `nm-watch` lists the sockets every interval (netlink dump with cookies; `/proc/net` if
//!   netlink dumps are refused), looks up owners for sockets it sees for the first time only,
//!   and applies listings and destroy notifications to a [`Differ`], whose events go to the
//!   sink.
//!
//! The interval stretches on a host where a listing is expensive, so the engine spends at
//! most about 5% of a core listing: the next listing waits at least 19 times as long as the
//! last took (the first periodic one, as long as the baseline's dump took).
//!
//! If subscribing is refused (a sandbox without sock_diag multicast, an old kernel), or
//! turned off with [`NO_DESTROY_ENV`](super::NO_DESTROY_ENV), the engine still runs on
//! listings alone and [`DestroyStatus`] says so; connections shorter than the interval are
//! then missed.

// The engine is Linux's (netlink sock_diag, /proc); elsewhere `start` says so.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::model::{Bytes, Counters, Owner, Socket, StateSet, Transport};
#[cfg(target_os = "linux")]
use crate::owners;
#[cfg(target_os = "linux")]
use crate::source::netlink::{Detail, SocketIds};
use crate::source::{Backend, Want};
#[cfg(target_os = "linux")]
use crate::source::{netlink, procfs};

use super::diff::{Differ, tracked_state, tuple_key};
use super::{EngineStats, FastHash, Matcher, Sink, is_connection_of};

/// Destroy notifications queued for the engine at most; past it they are counted as lost.
const QUEUE: usize = 16_384;
/// How often blocked threads look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Whether closes come from the kernel's destroy notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyStatus {
    /// Subscribed: every close is seen.
    On,
    /// Turned off by the caller (diagnostics): closes come from listings only.
    Disabled,
    /// The kernel or a sandbox refused the subscription; closes come from listings only.
    Unavailable { reason: String },
    /// A remote host: closes come from listings only.
    Remote,
}

/// What subscribing to destroy notifications needs, for messages.
pub(crate) const DESTROY_HINT: &str = "subscribing to the sock_diag destroy groups needs Linux 4.9 or \
later with inet_diag (CONFIG_INET_DIAG) and a sandbox that allows NETLINK_SOCK_DIAG sockets; no \
privilege is needed on a stock kernel (where one refuses it, CAP_NET_ADMIN)";

impl DestroyStatus {
    /// One sentence for messages and the CLI summary.
    pub fn describe(&self, interval: Duration) -> String {
        let ms = interval.as_millis();
        match self {
            DestroyStatus::On => {
                "Closes come from the kernel's destroy notifications, so even very short connections are seen".into()
            }
            DestroyStatus::Disabled => format!(
                "Destroy notifications are turned off: closes come from listings every {ms} ms only, so connections shorter than that are missed"
            ),
            DestroyStatus::Unavailable { reason } => format!(
                "Destroy notifications are unavailable ({reason}): closes come from listings every {ms} ms only, so connections shorter than that are missed; {DESTROY_HINT}"
            ),
            DestroyStatus::Remote => format!(
                "A remote host is watched by comparing listings every {ms} ms, so connections that open and close between two listings are not seen"
            ),
        }
    }

    pub fn is_on(&self) -> bool {
        *self == DestroyStatus::On
    }
}

/// How the local engine runs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub(crate) interval: Duration,
    /// Subscribe to destroy notifications (false: listings only).
    pub(crate) destroy: bool,
    pub(crate) backend: Backend,
    /// Transports and local port to list (states and owners are the engine's business).
    pub(crate) want: Want,
    pub(crate) proc_root: PathBuf,
    /// For `traffic`, its window: the first listing carries each socket's counters
    /// (`tcp_info`, kept in [`LocalWatch::baseline`]), and [`LocalWatch::counted_listing`]
    /// takes the closing one, due this long after it. A periodic listing that would fall
    /// within one step of the closing one is left out: the closing listing takes its place.
    pub(crate) counted: Option<Duration>,
}

impl LocalOptions {
    pub(crate) fn new(want: Want) -> LocalOptions {
        LocalOptions {
            interval: super::LOCAL_INTERVAL,
            destroy: std::env::var_os(super::NO_DESTROY_ENV).is_none_or(|v| v.is_empty()),
            backend: Backend::Auto,
            want,
            proc_root: PathBuf::from("/proc"),
            counted: None,
        }
    }
}

/// A running local engine. Dropping it stops both threads (within about 100 ms; they are
/// not waited for, so they run detached).
// Only the Linux `start` builds one; elsewhere `start` says why there is none.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct LocalWatch {
    stop: Arc<AtomicBool>,
    pub(crate) stats: Arc<EngineStats>,
    pub(crate) destroy: DestroyStatus,
    /// The listing interval asked for.
    pub(crate) interval: Duration,
    last_error: Arc<Mutex<Option<String>>>,
    /// With [`LocalOptions::counted`]: the byte counters of the first listing's connections,
    /// by socket cookie, for the caller to take (their owners are in the engine's table).
    pub(crate) baseline: HashMap<u64, Bytes, FastHash>,
    /// Whether listings carry counters at all (netlink; `/proc/net` has none).
    pub(crate) counts: bool,
    /// Where the engine's processes are read (`/proc`).
    pub(crate) proc_root: PathBuf,
    /// The engine's queue: requests go in beside the destroy notifications, so one wakes it.
    #[cfg(target_os = "linux")]
    queue: SyncSender<Queued>,
}

/// What a counted watch's closing listing is handed to, in the engine's thread: every TCP
/// socket that came with counters, with the owners the engine's table has for it (looked up
/// for one it never saw). The listing is never kept whole: 100,000 sockets are 14 MB.
pub(crate) trait CountedSink: std::any::Any + Send {
    fn socket(&mut self, key: u64, socket: &Socket, owners: &[Owner], counters: Counters);
}

/// One listing: every socket keyed by its cookie, and the counters of the TCP sockets whose
/// `tcp_info` came (counted listings only), by their place in `rows`, in order.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) rows: Vec<(u64, Socket)>,
    pub(crate) counters: Vec<(usize, Counters)>,
}

impl Listing {
    fn clear(&mut self) {
        self.rows.clear();
        self.counters.clear();
    }

    #[cfg(target_os = "linux")]
    fn push(&mut self, socket: Socket, ids: SocketIds) {
        if let Some(c) = ids.counters {
            self.counters.push((self.rows.len(), c));
        }
        self.rows.push((ids.cookie, socket));
    }
}

/// The reply to a [`LocalWatch::counted_listing`]: its sink handed back.
type CountedReply = Result<Box<dyn CountedSink>, Error>;

impl LocalWatch {
    /// The closing listing of a counted watch, taken by the engine now and handed to `sink`
    /// socket by socket, with the owners the engine remembers; only sockets it has not seen
    /// are looked up (no owner scan of every process).
    ///
    /// With `then`, the watch goes on (views of `top --interval` follow one another): the
    /// listing is applied as a periodic one is (opens, closes, owners of new sockets), and
    /// the next closing listing is due `then` after it. Without, the engine lists no more.
    pub(crate) async fn counted_listing<T: CountedSink>(
        &self,
        sink: T,
        then: Option<Duration>,
    ) -> Result<T, Error> {
        #[cfg(target_os = "linux")]
        {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let queue = self.queue.clone();
            let stopped = || Error::NoLocalSource {
                detail: "the watch engine stopped before its closing listing".into(),
            };
            let request = Queued::Counted(CountedRequest {
                sink: Box::new(sink),
                reply: tx,
                then,
            });
            // The queue is bounded: a full one (a close storm) is waited out off the runtime.
            let sent = tokio::task::spawn_blocking(move || queue.send(request).is_ok())
                .await
                .unwrap_or(false);
            if !sent {
                return Err(stopped());
            }
            let sink: Box<dyn std::any::Any> = rx.await.map_err(|_| stopped())??;
            sink.downcast::<T>().map(|t| *t).map_err(|_| stopped())
        }
        #[cfg(not(target_os = "linux"))]
        Err(Error::NoLocalSource {
            detail: "watching this machine needs Linux".into(),
        })
    }

    /// The last listing error, if the most recent listing failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for LocalWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(target_os = "linux")]
/// What the engine's queue carries.
enum Queued {
    Destroyed(Destroyed),
    /// A request for the closing listing ([`LocalWatch::counted_listing`]).
    Counted(CountedRequest),
}

#[cfg(target_os = "linux")]
/// A closing listing asked for: where its sockets go, where the sink goes back, and with
/// `then` when the next one is due (the watch goes on).
struct CountedRequest {
    sink: Box<dyn CountedSink>,
    reply: tokio::sync::oneshot::Sender<CountedReply>,
    then: Option<Duration>,
}

#[cfg(target_os = "linux")]
/// A destroyed socket on its way to the engine.
struct Destroyed {
    key: u64,
    socket: Socket,
    at: SystemTime,
    now: Instant,
}

#[cfg(target_os = "linux")]
/// Where listings come from.
enum Lister {
    /// Dumps, with the `/proc` whose `net/sockstat` sizes a counted listing's vector.
    Netlink(netlink::Diag, PathBuf),
    Procfs(PathBuf),
}

#[cfg(target_os = "linux")]
impl Lister {
    fn open(backend: Backend, proc_root: &std::path::Path) -> Result<Lister, Error> {
        let root = proc_root.to_path_buf();
        match backend {
            Backend::Procfs => Ok(Lister::Procfs(root)),
            Backend::Netlink => Ok(Lister::Netlink(netlink::Diag::open()?, root)),
            // The external tools cannot be watched; a watch lists with netlink or /proc/net.
            Backend::Auto | Backend::External => match netlink::Diag::open() {
                Ok(d) => Ok(Lister::Netlink(d, root)),
                Err(e) => {
                    tracing::warn!(cause = %e, "netlink sock_diag unavailable; watching /proc/net");
                    Ok(Lister::Procfs(proc_root.to_path_buf()))
                }
            },
        }
    }

    /// Every socket the want covers, in every state, keyed. With `want.health`, each TCP
    /// socket's counters come too: the engine's health is the byte counters of `tcp_info`,
    /// never socket memory, and no [`Health`](crate::model::Health) is kept per socket.
    fn list(&mut self, want: &Want, out: &mut Listing) -> Result<(), Error> {
        out.clear();
        // A counted first listing is handed out whole: sized once from sockstat, as a
        // one-off listing is. Periodic listings are not: measured at 100,000 sockets, sizing
        // them made a watch touch 13 MB more (3,300 page faults).
        if let Lister::Netlink(_, root) = self
            && want.health
            && want.local_port.is_none()
        {
            let sockets = procfs::socket_count_estimate(root, want);
            out.rows.reserve(sockets);
            out.counters.reserve(sockets);
        }
        match self.list_with(want, true, &mut |s, ids| out.push(s, ids)) {
            // The one-request dump failed part way (see `list_with`): a listing kept whole
            // can start over, family by family.
            Err(_) if want.tcp && !out.rows.is_empty() => {
                out.clear();
                self.list_with(want, false, &mut |s, ids| out.push(s, ids))
            }
            listed => listed,
        }
    }

    /// [`Lister::list`], each socket handed to `sink` as it is read. TCP comes from one
    /// request for both families when `combined` (a kernel that refuses it is then asked
    /// family by family, unless it failed after handing some sockets over: those cannot be
    /// taken back), else from one request per family.
    fn list_with(
        &mut self,
        want: &Want,
        combined: bool,
        sink: &mut dyn FnMut(Socket, SocketIds),
    ) -> Result<(), Error> {
        match self {
            Lister::Netlink(diag, _) => {
                diag.set_detail(if want.health {
                    Detail::Counters
                } else {
                    Detail::Plain
                });
                if want.tcp {
                    let mut handed = 0usize;
                    let whole = combined
                        && match diag.dump_tcp_ports_with(
                            StateSet::ALL,
                            want.ports(),
                            &mut |s, ids| {
                                handed += 1;
                                sink(s, ids)
                            },
                        ) {
                            Ok(()) => true,
                            Err(e) if handed > 0 => return Err(e),
                            Err(_) => false,
                        };
                    if !whole {
                        for ipv6 in [false, true] {
                            diag.dump_with(
                                Transport::Tcp,
                                ipv6,
                                StateSet::ALL,
                                want.ports(),
                                sink,
                            )?;
                        }
                    }
                }
                if want.udp {
                    for ipv6 in [false, true] {
                        diag.dump_with(Transport::Udp, ipv6, StateSet::ALL, want.ports(), sink)?;
                    }
                }
                Ok(())
            }
            Lister::Procfs(root) => {
                let want = Want {
                    states: StateSet::ALL,
                    owners: false,
                    ..*want
                };
                let (sockets, _remarks) = procfs::sockets(root, &want)?;
                for s in sockets {
                    let ids = SocketIds {
                        cookie: tuple_key(&s),
                        interface: 0,
                        counters: None,
                    };
                    sink(s, ids);
                }
                Ok(())
            }
        }
    }
}

/// Off Linux there is no local engine (no netlink sock_diag): a remote host can be watched.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start(
    _options: LocalOptions,
    _filter: Matcher,
    _sink: Box<dyn Sink>,
) -> Result<LocalWatch, Error> {
    Err(Error::NoLocalSource {
        detail: "watching this machine needs Linux (sock_diag destroy notifications and dumps); watch a configured remote host instead".into(),
    })
}

/// Starts the engine. Returns once the first listing is in (the sockets that exist then are
/// the baseline, not opens), or the error that kept it from starting.
#[cfg(target_os = "linux")]
pub(crate) fn start(
    options: LocalOptions,
    filter: Matcher,
    sink: Box<dyn Sink>,
) -> Result<LocalWatch, Error> {
    let mut lister = Lister::open(options.backend, &options.proc_root)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(EngineStats::default());
    let (tx, rx) = mpsc::sync_channel::<Queued>(QUEUE);
    let queue = tx.clone();
    let destroy = if !options.destroy {
        DestroyStatus::Disabled
    } else if !matches!(lister, Lister::Netlink(..)) {
        DestroyStatus::Unavailable {
            reason:
                "netlink sock_diag dumps are refused, so notifications cannot be matched to sockets"
                    .into(),
        }
    } else {
        // Subscribed before the first listing, so no close falls between the two.
        match netlink::DestroyMonitor::open(STOP_POLL) {
            Ok(monitor) => {
                let (stop, stats) = (stop.clone(), stats.clone());
                // Detached: the stop flag ends it.
                std::thread::Builder::new()
                    .name("nm-watch-destroy".into())
                    .spawn(move || receive(monitor, tx, &stop, &stats))
                    .map_err(|e| Error::NoLocalSource {
                        detail: format!("cannot start the destroy-notification thread: {e}"),
                    })?;
                DestroyStatus::On
            }
            Err(e) => {
                tracing::warn!(cause = %e, "destroy notifications unavailable; closes from listings only");
                DestroyStatus::Unavailable {
                    reason: e.to_string(),
                }
            }
        }
    };
    let grace = u32::from(destroy.is_on());
    let mut differ = Differ::new(grace, filter);
    let mut buf = Listing::default();
    let proc_root = options.proc_root.clone();
    let mut attach = move |fresh: &mut [Socket]| {
        owners::attach(&proc_root, fresh);
    };
    // The baseline, with every owner (closes of these need them).
    let counted = Want {
        health: true,
        ..options.want
    };
    let counts = matches!(lister, Lister::Netlink(..));
    let mut baseline = HashMap::default();
    let dump_started = Instant::now();
    if options.counted.is_some() {
        lister.list(&counted, &mut buf)?;
        baseline = starts(&buf);
    } else {
        lister.list(&options.want, &mut buf)?;
    }
    // The first periodic listing keeps the 5% rule too (the owner scan of the baseline is a
    // start-up cost, not a listing's).
    let first_cost = dump_started.elapsed();
    let mut sink = sink;
    differ.listing(
        SystemTime::now(),
        Instant::now(),
        std::mem::take(&mut buf.rows),
        &mut attach,
        true,
        &mut *sink,
    );
    stats.dumps.fetch_add(1, Ordering::Relaxed);
    let last_error = Arc::new(Mutex::new(None));
    let engine = Engine {
        lister,
        differ,
        rx,
        sink,
        attach: Box::new(attach),
        want: options.want,
        counted,
        pending: None,
        closing: options
            .counted
            .and_then(|window| Instant::now().checked_add(window)),
        interval: options.interval,
        first_cost,
        stop: stop.clone(),
        stats: stats.clone(),
        last_error: last_error.clone(),
    };
    // Detached: the stop flag ends it.
    std::thread::Builder::new()
        .name("nm-watch".into())
        .spawn(move || engine.run())
        .map_err(|e| Error::NoLocalSource {
            detail: format!("cannot start the watch thread: {e}"),
        })?;
    Ok(LocalWatch {
        stop,
        stats,
        destroy,
        interval: options.interval,
        last_error,
        baseline,
        counts,
        proc_root: options.proc_root,
        queue,
    })
}

/// The counters of a counted listing's connections, by cookie (their owners are the
/// differ's business).
#[cfg(target_os = "linux")]
fn starts(listing: &Listing) -> HashMap<u64, Bytes, FastHash> {
    let mut out = HashMap::with_capacity_and_hasher(listing.counters.len(), FastHash::default());
    for &(i, c) in &listing.counters {
        let (key, s) = &listing.rows[i];
        if is_connection_of(s.protocol, s.state) {
            out.insert(*key, c.bytes);
        }
    }
    out
}

/// The destroy-notification thread: receive, stamp, queue; never wait for the engine.
#[cfg(target_os = "linux")]
fn receive(
    mut monitor: netlink::DestroyMonitor,
    tx: SyncSender<Queued>,
    stop: &AtomicBool,
    stats: &EngineStats,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut closed = false;
        let result = monitor.recv(&mut |socket, key| {
            let item = Queued::Destroyed(Destroyed {
                key,
                socket,
                at: SystemTime::now(),
                now: Instant::now(),
            });
            match tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    stats.lost_notifications.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => closed = true,
            }
        });
        match result {
            Ok(netlink::Received::Overrun) => {
                tracing::warn!("destroy notifications lost: the kernel's receive queue overflowed");
                stats.lost_notifications.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(cause = %e, "destroy notifications stopped");
                return;
            }
        }
        if closed {
            return;
        }
    }
}

/// Looks up the owners of sockets seen for the first time.
#[cfg(target_os = "linux")]
type Attach = dyn FnMut(&mut [Socket]) + Send;

#[cfg(target_os = "linux")]
struct Engine {
    lister: Lister,
    differ: Differ,
    rx: Receiver<Queued>,
    sink: Box<dyn Sink>,
    attach: Box<Attach>,
    want: Want,
    /// `want` with counters (`LocalWatch::counted_listing`).
    counted: Want,
    /// A counted listing asked for and not yet taken.
    pending: Option<CountedRequest>,
    /// When the closing counted listing is due ([`LocalOptions::counted`]).
    closing: Option<Instant>,
    interval: Duration,
    /// What the baseline's dump took: the first periodic listing waits by it.
    first_cost: Duration,
    stop: Arc<AtomicBool>,
    stats: Arc<EngineStats>,
    last_error: Arc<Mutex<Option<String>>>,
}

#[cfg(target_os = "linux")]
impl Engine {
    fn run(mut self) {
        let mut buf = Listing::default();
        let mut next = self.next_listing(self.first_cost);
        while !self.stop.load(Ordering::Relaxed) {
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(STOP_POLL);
            match self.rx.recv_timeout(wait) {
                Ok(queued) => {
                    self.queued(queued);
                    self.drain();
                }
                Err(RecvTimeoutError::Timeout) => {}
                // No notifications (off, or their thread ended): keep listing.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(wait);
                }
            }
            if let Some(CountedRequest {
                mut sink,
                reply,
                then,
            }) = self.pending.take()
            {
                match then {
                    None => {
                        let result = self.closing_listing(&mut *sink).map(|()| sink);
                        // The caller may have gone (cancelled): nobody to tell.
                        let _ = reply.send(result);
                        // The counted watch ends with its closing listing.
                        next = Instant::now() + Duration::from_secs(3600);
                    }
                    Some(window) => {
                        let started = Instant::now();
                        let result = self.listing(&mut buf, Some(&mut *sink)).map(|()| sink);
                        let _ = reply.send(result);
                        self.closing = Instant::now().checked_add(window);
                        next = self.next_listing(started.elapsed());
                    }
                }
                continue;
            }
            if Instant::now() < next {
                continue;
            }
            self.drain();
            let started = Instant::now();
            // A failure is counted and kept (`last_error`); the next listing tries again.
            let _ = self.listing(&mut buf, None);
            next = self.next_listing(started.elapsed());
        }
    }

    /// When the next periodic listing is due after one that took `cost`: at least 19 times
    /// `cost` later (about 5% of a core), and never within a step of a counted watch's
    /// closing listing, which comes on request instead.
    fn next_listing(&self, cost: Duration) -> Instant {
        let step = self.interval.max(cost * 19);
        let next = Instant::now() + step;
        match self.closing {
            Some(closing) if next + step > closing => closing.max(next) + Duration::from_secs(3600),
            _ => next,
        }
    }

    /// The closing listing of a counted watch, handed to `sink` as the dump goes (TCP
    /// sockets with counters, with the owners the differ remembers); only sockets it has not
    /// seen are kept for a lookup, then handed over. The differ is not updated: nothing is
    /// reported after this.
    fn closing_listing(&mut self, sink: &mut dyn CountedSink) -> Result<(), Error> {
        let started = Instant::now();
        let Engine {
            lister,
            differ,
            attach,
            counted,
            ..
        } = self;
        let (mut rows, mut fresh_ids, mut fresh) = (0usize, Vec::new(), Vec::new());
        lister.list_with(counted, true, &mut |socket, ids| {
            rows += 1;
            let Some(counters) = ids.counters else {
                return;
            };
            match differ.owners(ids.cookie) {
                Some(owners) => sink.socket(ids.cookie, &socket, owners, counters),
                // TIME_WAIT and request sockets have no owner to look up.
                None if !tracked_state(&socket) => sink.socket(ids.cookie, &socket, &[], counters),
                None => {
                    fresh_ids.push((ids.cookie, counters));
                    fresh.push(socket);
                }
            }
        })?;
        if !fresh.is_empty() {
            attach(&mut fresh);
        }
        for (&(key, counters), socket) in fresh_ids.iter().zip(&fresh) {
            sink.socket(key, socket, &socket.owners, counters);
        }
        self.stats.dumps.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            rows,
            looked_up = fresh.len(),
            ms = started.elapsed().as_millis() as u64,
            "closing listing"
        );
        Ok(())
    }

    /// One listing applied to the differ (a failed one is counted and kept as the last error).
    ///
    /// With `counted`, a closing listing after which the watch goes on: taken with counters,
    /// applied as a periodic one is, then each socket the differ keeps is handed to `counted`
    /// with its owners and counters. A socket destroyed while the listing ran is not handed
    /// over: its close (with its final counters) went to the engine's sink.
    fn listing(
        &mut self,
        buf: &mut Listing,
        counted: Option<&mut dyn CountedSink>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let at = SystemTime::now();
        let want = if counted.is_some() {
            &self.counted
        } else {
            &self.want
        };
        if let Err(e) = self.lister.list(want, buf) {
            tracing::warn!(cause = %e, "watch listing failed");
            self.stats.dump_errors.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut slot) = self.last_error.lock() {
                *slot = Some(e.to_string());
            }
            return Err(e);
        }
        // Notifications that arrived during the listing come first: a socket the listing
        // shows may since have been destroyed.
        self.drain();
        let counters: Vec<(u64, Counters)> = buf
            .counters
            .iter()
            .map(|&(i, c)| (buf.rows[i].0, c))
            .collect();
        let Engine {
            differ,
            attach,
            sink,
            ..
        } = self;
        differ.listing(
            at,
            started,
            std::mem::take(&mut buf.rows),
            &mut **attach,
            false,
            &mut **sink,
        );
        buf.clear();
        if let Some(counted) = counted {
            for (key, c) in counters {
                if let Some(socket) = differ.socket(key) {
                    counted.socket(key, socket, &socket.owners, c);
                }
            }
        }
        self.stats.dumps.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "watch listing");
        Ok(())
    }

    fn queued(&mut self, queued: Queued) {
        match queued {
            Queued::Destroyed(d) => self.destroyed(d),
            Queued::Counted(request) => self.pending = Some(request),
        }
    }

    fn drain(&mut self) {
        while let Ok(queued) = self.rx.try_recv() {
            self.queued(queued);
        }
    }

    fn destroyed(&mut self, d: Destroyed) {
        self.differ
            .destroyed(d.key, d.socket, d.at, d.now, &mut *self.sink);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The one-request TCP dump and the one-per-family fallback list the same sockets (the
    /// fallback is what a kernel refusing the first gets).
    #[test]
    fn both_ways_of_listing_tcp_see_both_families() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let v6 = std::net::TcpListener::bind("[::1]:0").expect("bind ::1");
        let ports = [
            v4.local_addr().unwrap().port(),
            v6.local_addr().unwrap().port(),
        ];
        let mut lister = Lister::open(Backend::Netlink, std::path::Path::new("/proc")).unwrap();
        let want = Want {
            udp: false,
            ..Want::all()
        };
        for combined in [true, false] {
            let mut seen = Vec::new();
            lister
                .list_with(&want, combined, &mut |s, ids| {
                    if ports.contains(&s.local_port) {
                        seen.push((s.local_port, s.local_ip.is_ipv6(), ids.cookie != 0));
                    }
                })
                .unwrap();
            seen.sort();
            let mut expected = vec![(ports[0], false, true), (ports[1], true, true)];
            expected.sort();
            assert_eq!(seen, expected, "combined: {combined}");
        }
    }

    #[test]
    fn a_refused_subscription_says_what_is_missed_and_what_is_needed() {
        let interval = Duration::from_millis(250);
        let text = DestroyStatus::Unavailable {
            reason: "netlink sock_diag subscribe to destroy notifications failed: Operation not permitted".into(),
        }
        .describe(interval);
        assert!(text.contains("Operation not permitted"), "{text}");
        assert!(text.contains("every 250 ms"), "{text}");
        assert!(text.contains("shorter than that are missed"), "{text}");
        assert!(
            text.contains("CAP_NET_ADMIN") && text.contains("4.9"),
            "{text}"
        );
        assert!(
            DestroyStatus::On
                .describe(interval)
                .contains("destroy notifications")
        );
        assert!(!DestroyStatus::Disabled.is_on());
    }
}
