//! Answers over several hosts: `host` named a list, a glob or a group.
//!
//! Each host is asked concurrently ([`crate::fleet::fan_out`], at most `max_parallel` at a
//! time) and answered exactly as a one-host call would answer it, with its share of the
//! answer budget; a host that fails gets its own error and never fails the others. The merged
//! summary is counted over every answering host's matching sockets. If the whole answer is
//! still over the budget, the per-host details shrink in this order: rows (already sized per
//! host), per-host listener lists, the merged listener list, per-host top lists, then whole
//! per-host details from the last host backwards (the host's own message stays). `success` is
//! true when at least one host answered. Each finished host is reported to `progress` (MCP
//! progress notifications).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::answer::json_len;
use super::input::{ConnectionsQuery, HostSpec, PortQuery};
use super::output::{
    ConnectionsAnswer, ConnectionsData, Envelope, FleetData, FleetListener, FleetPortOwner,
    FleetProgramCount, FleetSummary, HostAnswer, PortAnswer, PortData, PortFleetSummary,
};
use super::service::Service;
use super::summary::{MAX_LISTENERS, RemoteHostCount, TOP, is_listener};
use crate::error::{Error, InputError};
use crate::fleet::{Candidate, HostPattern, fan_out, select};
use crate::source::Snapshot;

/// One step of a call's progress: a finished host of a multi-host call, or a second of a
/// measuring window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Steps done so far (hosts finished, this one included; seconds elapsed).
    pub(crate) done: usize,
    pub(crate) total: usize,
    /// The host that finished (empty for a step of a window).
    pub(crate) host: String,
    pub(crate) ok: bool,
    /// The notification's message, when not the finished host's.
    pub(crate) text: Option<String>,
}

impl ProgressEvent {
    /// A step of a window (`done` of `total` seconds), with its message.
    pub(crate) fn step(done: usize, total: usize, text: String) -> ProgressEvent {
        ProgressEvent {
            done,
            total,
            host: String::new(),
            ok: true,
            text: Some(text),
        }
    }

    /// The notification's message.
    pub(crate) fn message(&self) -> String {
        match &self.text {
            Some(text) => text.clone(),
            None => format!(
                "{} {} ({}/{})",
                self.host,
                if self.ok { "answered" } else { "failed" },
                self.done,
                self.total
            ),
        }
    }
}

/// Receives progress events; called once per finished host.
pub(crate) type Progress<'a> = &'a (dyn Fn(ProgressEvent) + Send + Sync);

/// A progress sink that drops every event.
pub fn no_progress(_: ProgressEvent) {}

/// The per-host share of the answer budget (three quarters of it split over the hosts; the
/// rest is for the merged summary).
fn share(budget: usize, hosts: usize) -> usize {
    (budget * 3 / 4) / hosts.max(1)
}

fn failed<T>(host: &str, e: &Error) -> HostAnswer<T> {
    HostAnswer {
        host: host.to_string(),
        success: false,
        message: e.to_string(),
        data: None,
    }
}

/// The first line of a message, cut to `max` characters.
fn brief(text: &str, max: usize) -> String {
    let t: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        format!("{t}…")
    } else {
        t
    }
}

impl Service {
    /// The configured hosts a selection may name.
    fn candidates(&self) -> Vec<(String, Vec<String>)> {
        self.remotes()
            .hosts()
            .hosts
            .into_iter()
            .map(|h| (h.name, h.groups))
            .collect()
    }

    fn selection(&self, patterns: &[HostPattern]) -> Result<Vec<String>, Error> {
        let owned = self.candidates();
        let candidates: Vec<Candidate<'_>> = owned
            .iter()
            .map(|(name, groups)| Candidate { name, groups })
            .collect();
        Ok(select(patterns, &candidates)?)
    }

    /// Runs `work` for each named host, at most `max_parallel` at once, telling `progress` as
    /// each one finishes (`ok` says whether it answered); results in `names`' order.
    async fn each_host<R, Fut>(
        &self,
        names: &[String],
        work: impl Fn(String) -> Fut,
        ok: impl Fn(&R) -> bool,
        progress: Progress<'_>,
    ) -> Vec<R>
    where
        Fut: std::future::Future<Output = R>,
    {
        let done = AtomicUsize::new(0);
        fan_out(
            names,
            self.max_parallel(),
            |_, name| work(name),
            |_, name, result: &R| {
                let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(ProgressEvent {
                    done,
                    total: names.len(),
                    host: name.to_string(),
                    ok: ok(result),
                    text: None,
                });
            },
        )
        .await
    }

    /// `query_network_connections` for one host or several.
    pub async fn connections_any(
        &self,
        query: &ConnectionsQuery,
        progress: Progress<'_>,
    ) -> Result<Envelope<ConnectionsAnswer>, Error> {
        let HostSpec::Many(patterns) = &query.host else {
            return Ok(self.connections(query).await?.map(ConnectionsAnswer::One));
        };
        if query.cursor.is_some() {
            return Err(Error::Input(InputError::new(
                "cursor",
                "with several hosts",
                "pages through one host at a time: pass that host alone as 'host' with its next_cursor",
            )));
        }
        let names = self.selection(patterns)?;
        let per_host = ConnectionsQuery {
            budget: share(query.budget, names.len()),
            ..query.clone()
        };
        let outcomes = self
            .each_host(
                &names,
                |name| {
                    let per_host = &per_host;
                    async move {
                        let target =
                            match self.target(&HostSpec::parse(Some(&name)), per_host.ssh_port) {
                                Ok(t) => t,
                                Err(e) => return (failed(&name, &e), HashMap::new()),
                            };
                        match target.source.collect(per_host.want()).await {
                            Err(e) => (failed(&name, &e), HashMap::new()),
                            Ok(snapshot) => {
                                let remotes = remote_counts(per_host, &snapshot);
                                (answered(name, per_host.answer(&target, snapshot)), remotes)
                            }
                        }
                    }
                },
                |(answer, _)| answer.success,
                progress,
            )
            .await;
        let mut remote_totals: HashMap<IpAddr, usize> = HashMap::new();
        let mut hosts = Vec::with_capacity(outcomes.len());
        for (answer, remotes) in outcomes {
            for (ip, n) in remotes {
                *remote_totals.entry(ip).or_default() += n;
            }
            hosts.push(answer);
        }
        let summary = merge_summaries(&hosts, remote_totals);
        Ok(fleet_answer(
            hosts,
            summary,
            connections_message,
            |data, message| {
                if query.default_limit {
                    fit_connections(data, message, query.budget);
                }
            },
            ConnectionsAnswer::Many,
        ))
    }

    /// `check_port_occupation` for one host or several.
    pub async fn port_any(
        &self,
        query: &PortQuery,
        progress: Progress<'_>,
    ) -> Result<Envelope<PortAnswer>, Error> {
        let HostSpec::Many(patterns) = &query.host else {
            return Ok(self.port(query).await?.map(PortAnswer::One));
        };
        let names = self.selection(patterns)?;
        let per_host = PortQuery {
            budget: share(query.budget, names.len()),
            ..query.clone()
        };
        let hosts = self
            .each_host(
                &names,
                |name| {
                    let per_host = &per_host;
                    async move {
                        // The one-host check, `bind` and `suggested_ports` included.
                        let one = PortQuery {
                            host: HostSpec::parse(Some(&name)),
                            ..per_host.clone()
                        };
                        match self.port(&one).await {
                            Err(e) => failed(&name, &e),
                            Ok(envelope) => answered(name, envelope),
                        }
                    }
                },
                |answer| answer.success,
                progress,
            )
            .await;
        let summary = port_summary(&hosts);
        Ok(fleet_answer(
            hosts,
            summary,
            |data| port_message(query, data),
            |data, message| {
                if query.default_limit {
                    fit_ports(data, message, query.budget);
                }
            },
            PortAnswer::Many,
        ))
    }
}

/// The answer over several hosts: their answers and `summary` of them, its `message`, then
/// `fit` to the budget (given that message), as `wrap` of the data.
fn fleet_answer<S, T, A>(
    hosts: Vec<HostAnswer<T>>,
    summary: S,
    message: impl FnOnce(&FleetData<S, T>) -> String,
    fit: impl FnOnce(&mut FleetData<S, T>, &str),
    wrap: impl FnOnce(FleetData<S, T>) -> A,
) -> Envelope<A> {
    let failed_hosts = hosts.iter().filter(|h| !h.success).count();
    let mut data = FleetData {
        host_count: hosts.len(),
        failed_hosts,
        summary,
        hosts,
        hosts_truncated: false,
    };
    let message = message(&data);
    fit(&mut data, &message);
    Envelope {
        success: failed_hosts < data.host_count,
        message,
        data: Some(wrap(data)),
    }
}

/// A host's answer from its one-host envelope.
fn answered<T>(host: String, envelope: Envelope<T>) -> HostAnswer<T> {
    HostAnswer {
        host,
        success: envelope.success,
        message: envelope.message,
        data: envelope.data,
    }
}

/// Connected sockets per foreign address among a snapshot's matching sockets (what the
/// summary's `top_remote_hosts` counts), so the merged top list is exact.
fn remote_counts(query: &ConnectionsQuery, snapshot: &Snapshot) -> HashMap<IpAddr, usize> {
    let mut counts = HashMap::new();
    for s in snapshot.sockets.iter().filter(|s| query.matches(s)) {
        if !is_listener(s)
            && s.foreign.port.is_some_and(|p| p != 0)
            && !s.foreign.ip.is_unspecified()
        {
            *counts.entry(s.foreign.ip).or_default() += 1;
        }
    }
    counts
}

fn merge_summaries(
    hosts: &[HostAnswer<ConnectionsData>],
    remote_totals: HashMap<IpAddr, usize>,
) -> FleetSummary {
    let mut merged = FleetSummary::default();
    let mut programs = Vec::new();
    for h in hosts {
        let Some(d) = &h.data else { continue };
        merged.connection_count += d.connection_count;
        for (k, v) in &d.summary.by_state {
            *merged.by_state.entry(k).or_default() += v;
        }
        for (k, v) in &d.summary.by_protocol {
            *merged.by_protocol.entry(k).or_default() += v;
        }
        merged.listener_count += d.summary.listener_count;
        for l in &d.summary.listeners {
            if merged.listeners.len() < MAX_LISTENERS {
                merged.listeners.push(FleetListener {
                    host: h.host.clone(),
                    protocol: l.protocol,
                    local_ip: l.local_ip,
                    local_port: l.local_port,
                    pid: l.pid,
                    program: l.program.clone(),
                });
            }
        }
        // Each host's top ten holds every one of its processes that can be in the overall
        // top ten, so the merged list is exact.
        for p in &d.summary.top_programs {
            programs.push(FleetProgramCount {
                host: h.host.clone(),
                program: p.program.clone(),
                pid: p.pid,
                count: p.count,
            });
        }
    }
    merged.listeners_truncated = merged.listener_count > merged.listeners.len();
    programs.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.host.cmp(&b.host))
            .then(a.pid.cmp(&b.pid))
    });
    programs.truncate(TOP);
    merged.top_programs = programs;
    let mut remotes: Vec<RemoteHostCount> = remote_totals
        .into_iter()
        .map(|(foreign_ip, count)| RemoteHostCount { foreign_ip, count })
        .collect();
    remotes.sort_by_key(|r| (std::cmp::Reverse(r.count), r.foreign_ip));
    remotes.truncate(TOP);
    merged.top_remote_hosts = remotes;
    merged
}

/// `Successfully obtained connections on 4 of 5 hosts, total 1,234. Failed: web-5 (...)`.
fn connections_message(data: &FleetData<FleetSummary, ConnectionsData>) -> String {
    let ok = data.host_count - data.failed_hosts;
    let mut message = if ok == 0 {
        format!("No host answered (of {})", data.host_count)
    } else {
        format!(
            "Successfully obtained connections on {ok} of {} host(s), total {}",
            data.host_count,
            super::answer::thousands(data.summary.connection_count)
        )
    };
    let counts: Vec<String> = data
        .hosts
        .iter()
        .filter_map(|h| {
            h.data
                .as_ref()
                .map(|d| format!("{} {}", h.host, d.connection_count))
        })
        .take(20)
        .collect();
    if !counts.is_empty() {
        message.push_str(&format!(" ({})", counts.join(", ")));
    }
    failures(&mut message, &data.hosts);
    message.push_str(
        ". data.summary covers every answering host; data.hosts has each host's own answer",
    );
    message
}

fn failures<T>(message: &mut String, hosts: &[HostAnswer<T>]) {
    let failed: Vec<String> = hosts
        .iter()
        .filter(|h| !h.success)
        .take(10)
        .map(|h| format!("{} ({})", h.host, brief(&h.message, 160)))
        .collect();
    if !failed.is_empty() {
        message.push_str(". Failed: ");
        message.push_str(&failed.join("; "));
        let more = hosts
            .iter()
            .filter(|h| !h.success)
            .count()
            .saturating_sub(10);
        if more > 0 {
            message.push_str(&format!("; and {more} more (see data.hosts)"));
        }
    }
}

fn port_summary(hosts: &[HostAnswer<PortData>]) -> PortFleetSummary {
    let mut s = PortFleetSummary::default();
    for h in hosts {
        match &h.data {
            None => s.failed.push(h.host.clone()),
            Some(d) => {
                if d.is_occupied {
                    s.occupied_on.push(h.host.clone());
                } else {
                    s.free_on.push(h.host.clone());
                }
                s.occupation_count += d.occupation_count;
                for o in &d.owners {
                    if s.owners.len() < 100 {
                        s.owners.push(FleetPortOwner {
                            host: h.host.clone(),
                            pid: o.pid,
                            program: o.program.clone(),
                            socket_count: o.socket_count,
                        });
                    } else {
                        s.owners_truncated = true;
                    }
                }
                s.owners_truncated |= d.owners_truncated;
            }
        }
    }
    s
}

/// `Port 8080/TCP is occupied on 2 of 5 hosts: web-1 (nginx pid 90), web-3 (...); not
/// occupied on web-2, web-4. Failed: web-5 (...)`.
fn port_message(query: &PortQuery, data: &FleetData<PortFleetSummary, PortData>) -> String {
    let port = format!("Port {}/{}", query.port, query.transport.upper());
    let s = &data.summary;
    let answered = data.host_count - data.failed_hosts;
    let mut message = if answered == 0 {
        format!("{port}: no host answered (of {})", data.host_count)
    } else if s.occupied_on.is_empty() {
        format!("{port} is not occupied on any of the {answered} answering host(s)")
    } else {
        let mut by_host: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for o in &s.owners {
            by_host
                .entry(o.host.as_str())
                .or_default()
                .push(format!("{} pid {}", o.program, o.pid));
        }
        let detail: Vec<String> = s
            .occupied_on
            .iter()
            .take(20)
            .map(|h| match by_host.get(h.as_str()) {
                Some(list) => format!(
                    "{h} ({})",
                    list.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                ),
                None => format!("{h} (no process named)"),
            })
            .collect();
        format!(
            "{port} is occupied on {} of {answered} answering host(s): {}",
            s.occupied_on.len(),
            detail.join(", ")
        )
    };
    if !s.free_on.is_empty() && !s.occupied_on.is_empty() {
        let free: Vec<&str> = s.free_on.iter().take(20).map(String::as_str).collect();
        message.push_str(&format!("; not occupied on {}", free.join(", ")));
    }
    failures(&mut message, &data.hosts);
    message
}

const LEFT_OUT: &str = " (details left out to fit the answer; ask this host alone for them)";

/// Shrinks a connections answer until it fits `budget` (see the module doc for the order).
fn fit_connections(
    data: &mut FleetData<FleetSummary, ConnectionsData>,
    message: &str,
    budget: usize,
) {
    let size = |d: &FleetData<FleetSummary, ConnectionsData>| json_len(message) + json_len(d) + 64;
    if size(data) <= budget {
        return;
    }
    for h in data.hosts.iter_mut().filter_map(|h| h.data.as_mut()) {
        h.summary.listeners_truncated |= !h.summary.listeners.is_empty();
        h.summary.listeners.clear();
    }
    if size(data) <= budget {
        return;
    }
    data.summary.listeners.truncate(20);
    data.summary.listeners_truncated = data.summary.listener_count > data.summary.listeners.len();
    for h in data.hosts.iter_mut().filter_map(|h| h.data.as_mut()) {
        h.summary.top_programs.clear();
        h.summary.top_remote_hosts.clear();
    }
    leave_out_details(data, &size, budget);
    if size(data) > budget {
        data.summary.listeners.clear();
        data.summary.listeners_truncated = data.summary.listener_count > 0;
    }
    shorten_entries(data, &size, budget);
}

/// Shrinks a port answer until it fits `budget`.
fn fit_ports(data: &mut FleetData<PortFleetSummary, PortData>, message: &str, budget: usize) {
    let size = |d: &FleetData<PortFleetSummary, PortData>| json_len(message) + json_len(d) + 64;
    if size(data) <= budget {
        return;
    }
    for d in data.hosts.iter_mut().filter_map(|h| h.data.as_mut()) {
        if d.owners.len() > 10 {
            d.owners.truncate(10);
            d.owners_truncated = true;
        }
    }
    leave_out_details(data, &size, budget);
    if size(data) > budget && data.summary.owners.len() > 20 {
        data.summary.owners.truncate(20);
        data.summary.owners_truncated = true;
    }
    // The summary's host lists name every host: cut the names, then the lists (the counts
    // stay in host_count and failed_hosts).
    if size(data) > budget {
        let s = &mut data.summary;
        for list in [&mut s.occupied_on, &mut s.free_on, &mut s.failed] {
            for name in list.iter_mut() {
                *name = brief(name, 64);
            }
        }
    }
    if size(data) > budget {
        let s = &mut data.summary;
        for list in [&mut s.free_on, &mut s.failed, &mut s.occupied_on] {
            if list.len() > 20 {
                list.truncate(20);
                s.host_lists_truncated = true;
            }
        }
    }
    shorten_entries(data, &size, budget);
}

/// Leaves out the hosts' data, from the last host back, until the answer fits (each says so).
fn leave_out_details<S, T>(
    data: &mut FleetData<S, T>,
    size: &dyn Fn(&FleetData<S, T>) -> usize,
    budget: usize,
) {
    let mut i = data.hosts.len();
    while size(data) > budget && i > 0 {
        i -= 1;
        let h = &mut data.hosts[i];
        if h.data.take().is_some() {
            h.message.push_str(LEFT_OUT);
        }
    }
}

/// The last resort for answers over many hosts, in this order until the answer fits: each
/// host's message cut to its first sentence, then to 120 characters, names cut to 64
/// characters, messages to 40, and finally entries left out from the end (`hosts_truncated`;
/// `host_count` and `failed_hosts` still count them). Every step works from the last host
/// back, so the first hosts keep the most.
fn shorten_entries<S, T>(
    data: &mut FleetData<S, T>,
    size: &dyn Fn(&FleetData<S, T>) -> usize,
    budget: usize,
) {
    let step = |data: &mut FleetData<S, T>, f: &dyn Fn(&mut HostAnswer<T>)| {
        let mut i = data.hosts.len();
        while size(data) > budget && i > 0 {
            i -= 1;
            f(&mut data.hosts[i]);
        }
    };
    for max in [None, Some(120)] {
        step(data, &|h| {
            let left_out = h.message.ends_with(LEFT_OUT);
            h.message = first_sentence(&h.message, max);
            if left_out {
                h.message.push_str(LEFT_OUT);
            }
        });
    }
    step(data, &|h| h.host = brief(&h.host, 64));
    step(data, &|h| h.message = brief(&h.message, 40));
    while size(data) > budget && data.hosts.len() > 1 {
        data.hosts.pop();
        data.hosts_truncated = true;
    }
}

/// A host's message cut to its first sentence (the answer, or what failed), then to `max`
/// characters: the last resort for answers over many hosts.
fn first_sentence(message: &str, max: Option<usize>) -> String {
    let first = match message.find(". ") {
        Some(i) => &message[..i],
        None => message,
    };
    match max {
        Some(max) => brief(first, max),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::{Endpoint, Owner, Protocol, Socket, TcpState};
    use crate::query::{ConnectionsArgs, PortArgs};
    use crate::source::{BoxFuture, OwnerCoverage, RemoteSources, Source, Target, Want};
    use crate::source::{ConfiguredHosts, HostInfo};

    /// A host with `n` established connections and a few listeners, owned by one program.
    struct Busy(usize);

    impl Source for Busy {
        fn collect(&self, want: Want) -> BoxFuture<'_, Result<Snapshot, Error>> {
            let n = self.0;
            Box::pin(async move {
                let mut sockets = Vec::with_capacity(n + 3);
                let owner = Owner {
                    pid: 4242,
                    program: "server".into(),
                };
                for port in [22, 80, 443] {
                    let mut s =
                        Socket::between(Protocol::Tcp, ("0.0.0.0", port), ("0.0.0.0", None));
                    s.state = Some(TcpState::Listen);
                    s.owners.push(owner.clone());
                    sockets.push(s);
                }
                for i in 0..n {
                    let mut s = Socket::new(
                        Protocol::Tcp,
                        Ipv4Addr::new(10, 0, 0, 1).into(),
                        443,
                        Endpoint {
                            ip: Ipv4Addr::new(192, 0, 2, (i % 250) as u8).into(),
                            port: Some(1024 + (i % 60000) as u16),
                        },
                    );
                    s.state = Some(TcpState::Established);
                    s.owners.push(owner.clone());
                    sockets.push(s);
                }
                sockets.retain(|s| want.admits(s));
                Ok(Snapshot {
                    sockets,
                    owners: OwnerCoverage::Complete,
                    notes: Vec::new(),
                    processes: None,
                })
            })
        }
    }

    struct Fleet {
        names: Vec<String>,
    }

    impl RemoteSources for Fleet {
        fn lookup(&self, host: &str, _: Option<u16>) -> Result<Target, Error> {
            if host == "down" || !self.names.iter().any(|n| n == host) {
                return Err(Error::UnknownHost {
                    host: host.into(),
                    configured: Vec::new(),
                });
            }
            Ok(Target {
                host: host.into(),
                label: format!("remote host {host}"),
                local: false,
                source: Arc::new(Busy(5_000)),
            })
        }

        fn hosts(&self) -> ConfiguredHosts {
            let hosts: Vec<HostInfo> = self
                .names
                .iter()
                .map(|n| HostInfo {
                    name: n.clone(),
                    host: n.clone(),
                    port: 22,
                    username: "ops".into(),
                    auth: "agent".into(),
                    groups: vec!["all".into()],
                    via: Vec::new(),
                    source: "config".into(),
                })
                .collect();
            ConfiguredHosts {
                config: None,
                hosts,
                unusable: Vec::new(),
            }
        }

        fn max_parallel(&self) -> usize {
            4
        }
    }

    fn service(hosts: usize) -> Service {
        let mut names: Vec<String> = (0..hosts).map(|i| format!("h{i:03}")).collect();
        names.push("down".into());
        Service::new(Arc::new(Busy(10)), Arc::new(Fleet { names }))
    }

    fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn thousands_of_hosts_are_listed_within_the_budget() {
        let small = service(3).hosts();
        // `service(n)` configures n hosts and one called "down".
        assert_eq!(small.data.as_ref().map(|d| d.hosts.len()), Some(4));
        assert!(!small.data.as_ref().unwrap().truncated);
        let big = service(5_000).hosts();
        let size = crate::query::answer::json_len(&big);
        assert!(size <= crate::query::ANSWER_BUDGET, "{size} bytes");
        let data = big.data.as_ref().unwrap();
        assert!(data.truncated);
        assert_eq!(data.host_count, 5_001);
        assert!(data.hosts.len() > 50, "{} hosts kept", data.hosts.len());
        // The first ones, in configuration order.
        assert_eq!(data.hosts[0].name, "h000");
        assert!(
            big.message
                .contains(&format!("Listing {} of 5001 usable", data.hosts.len())),
            "{}",
            big.message
        );
    }

    #[tokio::test]
    async fn many_busy_hosts_fit_the_budget_with_an_exact_merged_summary() {
        for hosts in [2, 12, 60] {
            let service = service(hosts);
            let q = ConnectionsArgs::from_json(&args(serde_json::json!({"host": "@all"})))
                .unwrap()
                .validate(Some(50))
                .unwrap();
            let events = Mutex::new(Vec::new());
            let report = |e: ProgressEvent| events.lock().unwrap().push(e);
            let env = service.connections_any(&q, &report).await.unwrap();
            let size = json_len(&env);
            assert!(
                size <= super::super::ANSWER_BUDGET,
                "{hosts} hosts: {size} bytes"
            );
            let Some(ConnectionsAnswer::Many(data)) = &env.data else {
                panic!("{env:?}")
            };
            // `down` is in the group and fails on its own.
            assert_eq!(data.host_count, hosts + 1);
            assert_eq!(data.failed_hosts, 1);
            assert!(env.success);
            assert_eq!(data.summary.connection_count, hosts * 5_003);
            assert_eq!(data.summary.by_state["ESTABLISHED"], hosts * 5_000);
            assert_eq!(data.summary.listener_count, hosts * 3);
            assert_eq!(data.summary.top_programs[0].count, 5_003);
            // 250 remote addresses, each connected from every host.
            assert_eq!(data.summary.top_remote_hosts.len(), TOP);
            assert_eq!(data.summary.top_remote_hosts[0].count, hosts * 20);
            let events = events.into_inner().unwrap();
            assert_eq!(events.len(), hosts + 1);
            assert_eq!(events.last().map(|e| e.done), Some(hosts + 1));
            assert_eq!(events.iter().filter(|e| !e.ok).count(), 1);
            // Rows shrank first: every answering host kept its summary or said it left it out.
            for h in &data.hosts {
                match &h.data {
                    Some(d) => assert!(d.connections.len() < 50 || hosts == 2),
                    None => assert!(!h.success || h.message.ends_with(LEFT_OUT), "{}", h.message),
                }
            }
        }
    }

    #[tokio::test]
    async fn port_check_over_hosts_and_refusals() {
        let service = service(3);
        let q = PortArgs::from_json(&args(
            serde_json::json!({"host": "h000,h001,nope", "port": 443}),
        ))
        .unwrap()
        .validate(Some(20))
        .unwrap();
        let env = service.port_any(&q, &no_progress).await.unwrap();
        let Some(PortAnswer::Many(data)) = &env.data else {
            panic!("{env:?}")
        };
        assert_eq!(data.summary.occupied_on, ["h000", "h001"]);
        assert_eq!(data.summary.failed, ["nope"]);
        assert_eq!(data.summary.occupation_count, 2 * 5_001);
        assert!(
            env.message.starts_with(
                "Port 443/TCP is occupied on 2 of 2 answering host(s): h000 (server pid 4242)"
            ),
            "{}",
            env.message
        );
        assert!(json_len(&env) <= super::super::ANSWER_BUDGET);

        // A cursor pages one host at a time.
        let q = ConnectionsArgs::from_json(&args(serde_json::json!({"host": "h*", "cursor": "MXx0Y3B8MjJ8MC4wLjAuMHwwLjAuMC4wfC18MTB8MA"})))
            .unwrap()
            .validate(Some(50))
            .unwrap();
        let e = service.connections_any(&q, &no_progress).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("Parameter 'cursor' pages through one host at a time"),
            "{e}"
        );
        // A glob that matches nothing is the caller's error.
        let q = ConnectionsArgs::from_json(&args(serde_json::json!({"host": "web-*"})))
            .unwrap()
            .validate(Some(50))
            .unwrap();
        let e = service.connections_any(&q, &no_progress).await.unwrap_err();
        assert!(e.is_input(), "{e}");
    }
}
