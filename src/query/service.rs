//! [`Service`]: runs validated queries against the local machine or a configured remote host
//! and always answers with an [`Envelope`]. The CLI and the MCP server are two faces of it.

use std::sync::Arc;

use super::bind::{PortSysctls, Wanted};
use super::health::{HealthData, HealthQuery};
use super::input::{ConnectionsQuery, HostSpec, PortQuery};
use super::output::{ConnectionsData, Envelope, HostsData, PortData};
use crate::error::{Error, InputError};
use crate::model::Transport;
use crate::source::{RemoteSources, Scope, Snapshot, Source, Target, Want};

/// How many ports `suggested_ports` lists, and how many it probes at most.
const SUGGESTED_PORTS: usize = 5;
const MAX_PROBES: usize = 64;
const MAX_REMOTE_PROBES: usize = 8;
/// Ports covered by one range dump.
const WINDOW: u32 = 64;

/// What a port check on a remote host that is not Linux says instead of `bind`.
const NOT_LINUX_BIND: &str = "bind is null: this host's bind rules (it is not Linux) and port \
settings are not known from here. What the listing does say: a server binding the same address \
and port as a listening socket above fails on any system, and one binding a port no socket \
holds succeeds unless the system reserves it";

/// How many configured names the unknown-host error lists.
const NAMES_IN_ERROR: usize = 20;

/// Runs validated queries against the local machine or a configured remote host.
#[derive(Clone)]
pub struct Service {
    local: Arc<dyn Source>,
    remotes: Arc<dyn RemoteSources>,
}

impl Service {
    pub fn new(local: Arc<dyn Source>, remotes: Arc<dyn RemoteSources>) -> Service {
        Service { local, remotes }
    }

    pub(super) fn remotes(&self) -> &dyn RemoteSources {
        self.remotes.as_ref()
    }

    /// Hosts queried at once by one multi-host call.
    pub(crate) fn max_parallel(&self) -> usize {
        self.remotes.max_parallel()
    }

    /// The target a host argument names. An unknown host's error lists the configured ones.
    pub(crate) fn target(&self, host: &HostSpec, ssh_port: Option<u16>) -> Result<Target, Error> {
        match host {
            HostSpec::Local => Ok(Target {
                host: "localhost".into(),
                label: "local host".into(),
                local: true,
                source: self.local.clone(),
            }),
            HostSpec::Remote(name) => match self.remotes.lookup(name, ssh_port) {
                Err(Error::UnknownHost { host, .. }) => Err(Error::UnknownHost {
                    host,
                    configured: self
                        .remotes
                        .hosts()
                        .hosts
                        .into_iter()
                        .take(NAMES_IN_ERROR)
                        .map(|h| h.name)
                        .collect(),
                }),
                other => other,
            },
            HostSpec::Many(_) => Err(Error::Input(InputError::new(
                "host",
                "a list, glob or group",
                "names one host here (this operation does not take several)",
            ))),
        }
    }

    /// `query_network_connections`.
    pub async fn connections(
        &self,
        query: &ConnectionsQuery,
    ) -> Result<Envelope<ConnectionsData>, Error> {
        let target = self.target(&query.host, query.ssh_port)?;
        let snapshot = target.source.collect(query.want()).await?;
        Ok(query.answer(&target, snapshot))
    }

    /// `check_port_occupation`, with `bind` and `suggested_ports` where the host's rules are
    /// known: this machine (its own namespace) and remote Linux hosts.
    pub async fn port(&self, query: &PortQuery) -> Result<Envelope<PortData>, Error> {
        let target = self.target(&query.host, query.ssh_port)?;
        if target.local
            && let Some(ip) = query.address
            && !crate::source::local::is_host_address(ip)
        {
            return Err(InputError::new(
                "address",
                format!("'{ip}' (not an address of this host)"),
                super::input::ADDRESS_ALLOWED,
            )
            .into());
        }
        let mut snapshot = target.source.collect(query.want()).await?;
        let sysctls = match query.scope {
            Scope::Host => target.source.port_sysctls().await,
            Scope::All => None,
        };
        let Some([range, start, reserved]) = sysctls else {
            if !target.local {
                snapshot.notes.push(NOT_LINUX_BIND.to_string());
            }
            return Ok(query.answer(&target, snapshot));
        };
        let sysctls = PortSysctls::parse(range.as_deref(), start.as_deref(), reserved.as_deref());
        let wanted = Wanted {
            transport: query.transport,
            address: query.address,
            port: query.port,
        };
        // Whose SO_REUSEPORT group one may join: this process's user here; remotely unknown.
        let uid = target.local.then(|| rustix::process::geteuid().as_raw());
        let bind = super::bind::check(wanted, &snapshot.sockets, uid, &sysctls);
        // The port itself was just listed: the suggestions' dumps start past it (a loaded
        // port's own sockets are not dumped twice).
        let occupied = snapshot
            .sockets
            .iter()
            .any(|s| s.local_port == query.port && s.protocol.transport() == query.transport);
        let suggested = self
            .suggested_ports(&target, query, &sysctls, occupied)
            .await;
        Ok(query.answer_with(&target, snapshot, Some(bind), suggested))
    }

    /// The nearest ports at or above the query's that no socket of its transport holds (in
    /// either family) and that are outside the ephemeral range: at most 5. Locally each window
    /// of 64 ports is one dump filtered by the range in the kernel; a source that cannot narrow
    /// by range (a remote host) is asked port by port (at most 8 probes).
    async fn suggested_ports(
        &self,
        target: &Target,
        query: &PortQuery,
        sysctls: &PortSysctls,
        occupied: bool,
    ) -> Vec<u16> {
        let mut found = Vec::new();
        let mut port = u32::from(query.port);
        if !sysctls.is_ephemeral(query.port) {
            if !occupied {
                found.push(query.port);
            }
            port += 1;
        }
        let mut probes = 0;
        let mut in_use: Option<std::collections::BTreeSet<u16>> = None;
        let mut window_end = 0u32;
        // Once the source says it cannot narrow by range, it is asked port by port.
        let mut ranges = true;
        let max_probes = if target.local {
            MAX_PROBES
        } else {
            MAX_REMOTE_PROBES
        };
        while found.len() < SUGGESTED_PORTS && probes < max_probes && port <= u32::from(u16::MAX) {
            let p = port as u16;
            if let Some((_, hi)) = sysctls.ephemeral.filter(|_| sysctls.is_ephemeral(p)) {
                port = u32::from(hi) + 1;
                continue;
            }
            probes += 1;
            // A new window of the range dump when the port is past the last one.
            if ranges && port > window_end {
                let hi = (port + WINDOW - 1).min(u32::from(u16::MAX)) as u16;
                in_use = target.source.ports_in_use(query.transport, p, hi).await;
                window_end = u32::from(hi);
                ranges = in_use.is_some();
            }
            let free = match &in_use {
                Some(used) => !used.contains(&p),
                None => match self.probe(target, query.transport, p).await {
                    Some(free) => free,
                    None => break,
                },
            };
            if free {
                found.push(p);
            }
            port += 1;
        }
        found
    }

    /// Whether no socket of `transport` has local port `p` (a dump filtered by the port);
    /// `None` when the listing failed.
    async fn probe(&self, target: &Target, transport: Transport, p: u16) -> Option<bool> {
        let want = Want {
            tcp: transport == Transport::Tcp,
            udp: transport == Transport::Udp,
            local_port: Some(p),
            owners: false,
            ..Want::all()
        };
        match target.source.collect(want).await {
            Ok(s) => Some(
                !s.sockets
                    .iter()
                    .any(|s| s.local_port == p && s.protocol.transport() == transport),
            ),
            Err(e) => {
                tracing::debug!(cause = %e, "suggested ports: a probe failed");
                None
            }
        }
    }

    /// `connection_health`.
    pub async fn health(&self, query: &HealthQuery) -> Result<Envelope<HealthData>, Error> {
        let target = self.target(&query.filter.host, query.filter.ssh_port)?;
        let snapshot = target
            .source
            .collect(query.want(query.filter.owners))
            .await?;
        Ok(query.answer(&target, query.select(snapshot)))
    }

    /// `list_hosts`: the configured remote hosts, never a secret.
    /// Fitted to the answer budget: with thousands of hosts configured, the first ones are
    /// listed and `truncated` says so.
    pub(crate) fn hosts(&self) -> Envelope<HostsData> {
        self.hosts_within(Some(super::ANSWER_BUDGET))
    }

    /// The configured hosts, fitted to `budget` bytes (`None`: every host, for a person at a
    /// terminal).
    pub(crate) fn hosts_within(&self, budget: Option<usize>) -> Envelope<HostsData> {
        let mut data = HostsData::from(self.remotes.hosts());
        for u in &mut data.unusable {
            u.problem = cut(&u.problem, MAX_PROBLEM_CHARS);
        }
        let mut envelope = Envelope::ok(hosts_message(&data), data);
        let Some(budget) = budget else {
            return envelope;
        };
        while super::answer::shrink_step(&mut envelope, budget) {
            if let Some(data) = &envelope.data {
                envelope.message = hosts_message(data);
            }
        }
        envelope
    }

    /// A raw snapshot from a host (for the `netstat` rendering).
    pub(crate) async fn snapshot(
        &self,
        host: &HostSpec,
        ssh_port: Option<u16>,
        want: Want,
    ) -> Result<(Target, Snapshot), Error> {
        let target = self.target(host, ssh_port)?;
        let snapshot = target.source.collect(want).await?;
        Ok((target, snapshot))
    }
}

/// An unusable entry's reason is cut here (a config error is a sentence or two).
const MAX_PROBLEM_CHARS: usize = 400;

/// `text`, cut at `max` characters with `…`.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// The message of `list_hosts`.
fn hosts_message(data: &HostsData) -> String {
    let mut message = match data.host_count {
        0 if data.unusable_count == 0 => {
            return "No remote hosts are configured; only the local machine can be queried"
                .to_string();
        }
        0 => "No usable remote hosts are configured; only the local machine can be queried"
            .to_string(),
        n => format!("{n} remote host(s) configured; pass a name as `host`"),
    };
    if data.unusable_count > 0 {
        let names: Vec<String> = data
            .unusable
            .iter()
            .take(5)
            .map(|u| super::shorten(u.name.as_deref().unwrap_or(&u.entry)))
            .collect();
        message.push_str(&format!(
            ". {} configured host(s) cannot be used: {}{} (see unusable: calls naming them get that error)",
            data.unusable_count,
            names.join(", "),
            if data.unusable_count > names.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    if data.truncated {
        message.push_str(&format!(
            ". Listing {} of {} usable and {} of {} unusable host(s) to stay under {} KiB; name the others by glob (`web-*`) or group (`@name`)",
            data.hosts.len(),
            data.host_count,
            data.unusable.len(),
            data.unusable_count,
            super::ANSWER_BUDGET / 1024
        ));
    }
    message
}
