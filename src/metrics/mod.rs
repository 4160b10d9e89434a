//! Metrics for Prometheus: this host's sockets, listeners and (with the recorder) connection
//! churn and traffic as series, for `GET /metrics` (`serve --http --metrics`) and for
//! node_exporter's textfile collector (`netstat-mcp metrics --output FILE`).
//!
//! Every scrape takes one snapshot of this machine (TCP and UDP, every state, with owners; with
//! counters also `tcp_info`); a scrape that arrives while another runs waits for it and shares
//! its result. Series (names fixed):
//! - `netstat_sockets{proto,state}`: sockets by protocol and state (UDP: `UNCONN` or
//!   `ESTABLISHED`);
//! - `netstat_listener_info{proto,address,port,program,unit,container}` = 1 per listener (a
//!   listening TCP socket or a bound, unconnected UDP one);
//! - `netstat_listener_connections{proto,address,port,program}`: established TCP connections
//!   accepted on each TCP listener (the most specific listener on the local port: the same
//!   address, else a wildcard of the family, else a dual-stack `::`);
//! - `netstat_scrape_duration_seconds`, `netstat_owner_lookup_denied` (sockets whose owner
//!   could not be read: processes of other users, without root);
//! - with the recorder: the counters of [`counters`];
//! - `netstat_series_dropped{family}`: label sets past `max_series` (see [`admission`]).
//!
//! Layers: below the faces (HTTP serves it, the CLI writes it), above the sources and the
//! watch engine (whose events feed the counters).

pub(crate) mod admission;
pub(crate) mod counters;
pub mod exposition;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use admission::{Admission, Placed};
use counters::Counters;
pub use exposition::Format;
use exposition::{Family, Kind};

use crate::error::Error;
use crate::model::{Socket, TcpState, Transport};
use crate::query::summary::{is_listener, state_name};
use crate::source::{OwnerCoverage, Source, Want};
use crate::watch::Event;
use crate::watch::recorder::EventTap;

/// Default cap of series per family (`--metrics-max-series`).
pub const DEFAULT_MAX_SERIES: usize = 2_000;
/// Largest cap accepted.
pub const MAX_MAX_SERIES: usize = 1_000_000;

/// How the exporter runs.
#[derive(Debug, Clone, Copy)]
pub struct MetricsOptions {
    /// At most this many series per family, `other` buckets included.
    pub max_series: usize,
    /// Export the counters fed by the recorder's events (and read `tcp_info` per scrape).
    pub counters: bool,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            max_series: DEFAULT_MAX_SERIES,
            counters: false,
        }
    }
}

/// A scrape's result, kept for the scrapes that waited for it.
struct Done {
    started: Instant,
    finished: Instant,
    families: Arc<Vec<Family>>,
}

/// The gauges' admissions, kept across scrapes.
struct Gauges {
    sockets: Admission,
    listener_info: Admission,
    listener_connections: Admission,
}

const SOCKETS_LABELS: &[&str] = &["proto", "state"];
const INFO_LABELS: &[&str] = &["proto", "address", "port", "program", "unit", "container"];
const CONNECTIONS_LABELS: &[&str] = &["proto", "address", "port", "program"];

struct Inner {
    source: Arc<dyn Source>,
    options: MetricsOptions,
    last: tokio::sync::Mutex<Option<Done>>,
    gauges: Mutex<Gauges>,
    counters: Option<Mutex<Counters>>,
}

/// The metrics of this machine; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter of the machine `source` lists (the local source).
    pub fn new(source: Arc<dyn Source>, options: MetricsOptions) -> Exporter {
        let max = options.max_series.clamp(1, MAX_MAX_SERIES);
        Exporter {
            inner: Arc::new(Inner {
                source,
                options: MetricsOptions {
                    max_series: max,
                    ..options
                },
                last: tokio::sync::Mutex::new(None),
                gauges: Mutex::new(Gauges {
                    sockets: Admission::new(Kind::Gauge, SOCKETS_LABELS, max),
                    listener_info: Admission::new(Kind::Info, INFO_LABELS, max),
                    listener_connections: Admission::new(Kind::Gauge, CONNECTIONS_LABELS, max),
                }),
                counters: options.counters.then(|| Mutex::new(Counters::new(max))),
            }),
        }
    }

    /// With counters: takes the starting snapshot (connections alive now count only what they
    /// move from now on) and returns the tap the recorder feeds its events to.
    pub async fn start_counters(&self) -> Result<Option<EventTap>, Error> {
        let Some(counters) = &self.inner.counters else {
            return Ok(None);
        };
        let taken = Instant::now();
        let snapshot = self.inner.source.collect(self.want()).await?;
        lock(counters).snapshot(&snapshot.sockets, taken);
        let inner = Arc::clone(&self.inner);
        Ok(Some(EventTap(Arc::new(move |e: &Event| {
            if let Some(c) = &inner.counters {
                lock(c).event(e);
            }
        }))))
    }

    fn want(&self) -> Want {
        Want {
            // Byte and retransmit counters need tcp_info; the gauges do not.
            health: self.inner.counters.is_some(),
            ..Want::all()
        }
    }

    /// One exposition in `format`: a fresh scrape, or the one running when this was asked.
    pub async fn scrape(&self, format: Format) -> Result<String, Error> {
        let families = self.families().await?;
        Ok(exposition::encode(&families, format))
    }

    async fn families(&self) -> Result<Arc<Vec<Family>>, Error> {
        let arrived = Instant::now();
        let mut last = self.inner.last.lock().await;
        if let Some(done) = &*last
            && done.started <= arrived
            && arrived <= done.finished
        {
            return Ok(Arc::clone(&done.families));
        }
        let started = Instant::now();
        let families = Arc::new(self.collect(started).await?);
        *last = Some(Done {
            started,
            finished: Instant::now(),
            families: Arc::clone(&families),
        });
        Ok(families)
    }

    async fn collect(&self, started: Instant) -> Result<Vec<Family>, Error> {
        let snapshot = self.inner.source.collect(self.want()).await?;
        let processes = snapshot.processes.clone();
        let denied = match snapshot.owners {
            OwnerCoverage::Partial { .. } => snapshot
                .sockets
                .iter()
                .filter(|s| s.inode.is_some() && s.owners.is_empty())
                .count(),
            _ => 0,
        };
        let mut families = Vec::new();
        let mut dropped: Vec<(&'static str, usize)> = Vec::new();
        {
            let mut gauges = lock(&self.inner.gauges);
            let g = &mut *gauges;
            let lookup = |pid: u32| processes.as_ref().and_then(|p| p.process(pid));
            let observed = observe(&snapshot.sockets, &lookup);
            families.push(admit(
                &mut g.sockets,
                Family::new(
                    "netstat_sockets",
                    "Sockets on this host by protocol and state (UDP: UNCONN or ESTABLISHED).",
                    Kind::Gauge,
                    SOCKETS_LABELS,
                ),
                observed.sockets,
            ));
            families.push(admit(
                &mut g.listener_info,
                Family::new(
                    "netstat_listener",
                    "A listening TCP socket or bound UDP socket, with its owner's program, systemd unit and container.",
                    Kind::Info,
                    INFO_LABELS,
                ),
                observed.listeners,
            ));
            families.push(admit(
                &mut g.listener_connections,
                Family::new(
                    "netstat_listener_connections",
                    "Established TCP connections accepted on each TCP listener.",
                    Kind::Gauge,
                    CONNECTIONS_LABELS,
                ),
                observed.accepted,
            ));
            dropped.push(("netstat_sockets", g.sockets.folded()));
            dropped.push(("netstat_listener_info", g.listener_info.folded()));
            dropped.push((
                "netstat_listener_connections",
                g.listener_connections.folded(),
            ));
        }
        let mut denied_family = Family::new(
            "netstat_owner_lookup_denied",
            "Sockets whose owning process could not be read (another user's process, without root).",
            Kind::Gauge,
            &[],
        );
        denied_family.samples.push((Vec::new(), denied as f64));
        families.push(denied_family);
        if let Some(counters) = &self.inner.counters {
            let mut c = lock(counters);
            c.snapshot(&snapshot.sockets, started);
            let (counter_families, folded) = c.families();
            families.extend(counter_families);
            dropped.extend(folded);
        }
        let mut series_dropped = Family::new(
            "netstat_series_dropped",
            "Label sets of a family past --metrics-max-series: summed into program=\"other\" (info series: left out). Gauges: this scrape; counters: since start.",
            Kind::Gauge,
            &["family"],
        );
        series_dropped.samples = dropped
            .into_iter()
            .map(|(family, n)| (vec![family.to_string()], n as f64))
            .collect();
        families.push(series_dropped);
        let mut duration = Family::new(
            "netstat_scrape_duration_seconds",
            "How long this scrape took (one snapshot of the host's sockets with owners).",
            Kind::Gauge,
            &[],
        );
        duration
            .samples
            .push((Vec::new(), started.elapsed().as_secs_f64()));
        families.push(duration);
        Ok(families)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Places a scrape's samples through a family's admission (sorted, so which label sets are
/// admitted first does not depend on hashing), summing what folds together.
fn admit(
    admission: &mut Admission,
    mut family: Family,
    samples: BTreeMap<Vec<String>, f64>,
) -> Family {
    admission.new_scrape();
    let mut placed: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for (labels, value) in samples {
        if let Placed::Series(labels) = admission.place(labels) {
            let v = placed.entry(labels).or_default();
            if family.kind == Kind::Info {
                *v = 1.0;
            } else {
                *v += value;
            }
        }
    }
    family.samples = placed.into_iter().collect();
    family
}

/// The gauges' samples of one snapshot.
#[derive(Debug, Default)]
struct Observed {
    sockets: BTreeMap<Vec<String>, f64>,
    listeners: BTreeMap<Vec<String>, f64>,
    accepted: BTreeMap<Vec<String>, f64>,
}

/// An address as a label: IPv6 in brackets, as `ss` and our answers print endpoints.
fn address_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn observe(
    sockets: &[Socket],
    lookup: &dyn Fn(u32) -> Option<Arc<crate::model::ProcessInfo>>,
) -> Observed {
    let mut o = Observed::default();
    let mut counts: HashMap<(&'static str, &'static str), u64> = HashMap::new();
    // TCP listeners by port: (address, labels of netstat_listener_connections).
    let mut by_port: HashMap<u16, Vec<(IpAddr, Vec<String>)>> = HashMap::new();
    for s in sockets {
        *counts
            .entry((s.protocol.as_str(), state_name(s)))
            .or_default() += 1;
        if !is_listener(s) {
            continue;
        }
        let owner = s.owners.iter().min_by_key(|o| o.pid);
        let program = owner.map_or_else(String::new, |o| o.program.to_string());
        let info = owner.and_then(|o| lookup(o.pid));
        let unit = info
            .as_ref()
            .and_then(|i| i.unit.as_deref())
            .unwrap_or("")
            .to_string();
        let container = info
            .as_ref()
            .and_then(|i| i.container.as_ref())
            .map_or_else(String::new, |c| format!("{}:{}", c.runtime, c.id));
        let address = address_label(s.local_ip);
        let port = s.local_port.to_string();
        let proto = s.protocol.as_str().to_string();
        o.listeners.insert(
            vec![
                proto.clone(),
                address.clone(),
                port.clone(),
                program.clone(),
                unit,
                container,
            ],
            1.0,
        );
        if s.protocol.transport() == Transport::Tcp {
            let labels = vec![proto, address, port, program];
            o.accepted.entry(labels.clone()).or_insert(0.0);
            by_port
                .entry(s.local_port)
                .or_default()
                .push((s.local_ip, labels));
        }
    }
    for ((proto, state), n) in counts {
        o.sockets
            .insert(vec![proto.to_string(), state.to_string()], n as f64);
    }
    for s in sockets {
        if s.protocol.transport() != Transport::Tcp || s.state != Some(TcpState::Established) {
            continue;
        }
        let Some(candidates) = by_port.get(&s.local_port) else {
            continue;
        };
        if let Some(labels) = listener_of(s.local_ip, candidates) {
            *o.accepted.entry(labels.clone()).or_default() += 1.0;
        }
    }
    o
}

/// The listener a connection with local address `ip` was accepted on: the same address, else
/// a wildcard of its family, else a dual-stack `::` (for an IPv4 connection).
fn listener_of(ip: IpAddr, candidates: &[(IpAddr, Vec<String>)]) -> Option<&Vec<String>> {
    let exact = candidates.iter().find(|(a, _)| *a == ip);
    let wildcard = || {
        candidates
            .iter()
            .find(|(a, _)| a.is_unspecified() && a.is_ipv4() == ip.is_ipv4())
    };
    let dual = || {
        candidates
            .iter()
            .find(|(a, _)| a.is_unspecified() && a.is_ipv6() && ip.is_ipv4())
    };
    exact.or_else(wildcard).or_else(dual).map(|(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Owner, Protocol};

    fn sock(proto: Protocol, local: &str, port: u16, state: TcpState, program: &str) -> Socket {
        let mut s = Socket::new(
            proto,
            local.parse().unwrap(),
            port,
            Endpoint {
                ip: if proto == Protocol::Tcp6 {
                    "::".parse().unwrap()
                } else {
                    "0.0.0.0".parse().unwrap()
                },
                port: None,
            },
        );
        s.state = Some(state);
        if !program.is_empty() {
            s.owners.push(Owner {
                pid: 10,
                program: program.into(),
            });
        }
        s
    }

    fn conn(local: &str, port: u16, remote: &str, remote_port: u16) -> Socket {
        let ip: IpAddr = local.parse().unwrap();
        let mut s = Socket::new(
            if ip.is_ipv4() {
                Protocol::Tcp
            } else {
                Protocol::Tcp6
            },
            ip,
            port,
            Endpoint {
                ip: remote.parse().unwrap(),
                port: Some(remote_port),
            },
        );
        s.state = Some(TcpState::Established);
        s
    }

    #[test]
    fn connections_count_on_the_most_specific_listener() {
        let sockets = vec![
            sock(Protocol::Tcp, "127.0.0.1", 80, TcpState::Listen, "nginx"),
            sock(Protocol::Tcp, "0.0.0.0", 80, TcpState::Listen, "nginx"),
            sock(Protocol::Tcp6, "::", 5432, TcpState::Listen, "postgres"),
            conn("127.0.0.1", 80, "127.0.0.1", 40000),
            conn("10.0.0.5", 80, "10.0.0.9", 40001),
            conn("10.0.0.5", 80, "10.0.0.9", 40002),
            conn("10.0.0.5", 5432, "10.0.0.9", 40003),
            conn("::1", 5432, "::1", 40004),
            // An outgoing connection to the listener: its local port is not 80.
            conn("127.0.0.1", 40000, "127.0.0.1", 80),
        ];
        let o = observe(&sockets, &|_| None);
        let get = |addr: &str, port: &str, proto: &str, program: &str| {
            o.accepted[&vec![proto.into(), addr.into(), port.into(), program.into()]]
        };
        assert_eq!(get("127.0.0.1", "80", "tcp", "nginx"), 1.0);
        assert_eq!(get("0.0.0.0", "80", "tcp", "nginx"), 2.0);
        assert_eq!(get("[::]", "5432", "tcp6", "postgres"), 2.0);
        assert_eq!(o.listeners.len(), 3);
        assert_eq!(
            o.sockets[&vec!["tcp".to_string(), "ESTABLISHED".to_string()]],
            5.0
        );
    }

    #[test]
    fn five_thousand_listeners_stay_within_the_cap() {
        let sockets: Vec<Socket> = (0..5000u16)
            .map(|i| {
                sock(
                    Protocol::Tcp,
                    "127.0.0.1",
                    10000 + i,
                    TcpState::Listen,
                    &format!("p{i}"),
                )
            })
            .collect();
        let o = observe(&sockets, &|_| None);
        let mut info = Admission::new(Kind::Info, INFO_LABELS, 100);
        let mut conns = Admission::new(Kind::Gauge, CONNECTIONS_LABELS, 100);
        let f = admit(
            &mut info,
            Family::new("i", "", Kind::Info, INFO_LABELS),
            o.listeners,
        );
        assert_eq!(f.samples.len(), 100);
        assert_eq!(info.folded(), 4900);
        let f = admit(
            &mut conns,
            Family::new("c", "", Kind::Gauge, CONNECTIONS_LABELS),
            o.accepted,
        );
        assert_eq!(f.samples.len(), 100, "90 own, 9 program=other, 1 catch-all");
        assert_eq!(conns.folded(), 4910);
    }
}
