//! Sockets of a configured remote host, over SSH: find out what the host is and has, run the
//! narrowest listing it can do, read it with [`crate::parse`], filter locally again.
//!
//! - **Operating system** ([`commands::RemoteOs`]): `uname -s`, else `cmd /c ver`; detected
//!   once per host and remembered.
//! - **Command order** ([`commands::plan`]): per OS, with the query's port and state filters
//!   applied on the remote side where the tool can (`ss` filter expressions, an awk program over
//!   `/proc/net`), so a host with 100,000 sockets sends only the matching rows.
//! - **Falling through** ([`read::interpret`]): a command that fails, prints another tool's
//!   format, or prints no readable row is not an answer; the next one is tried. A listing that
//!   cannot name owners at all (busybox without `-p`) is kept while later commands are tried for
//!   one that can, and used only if none can.
//! - **Owners** come from the listing, or from `lsof` (BSD/macOS) and `tasklist` (Windows).
//! - What worked is remembered per host (filtered and unfiltered separately), so later calls
//!   run it directly; if it stops working, the whole order is tried again.
//!
//! [`SshRemotes`] is the [`RemoteSources`] lookup the service uses: only hosts in the
//! configuration are reachable, and the caller's `host` text is only ever compared with
//! configured names, never sent anywhere. A configured entry that failed validation answers
//! with its config error (file, entry, field); the other hosts are unaffected.

// `pub` for the SSH tests and the remote benchmark, which check the exact commands sent and
// read captured outputs; not the library's API.
#[doc(hidden)]
pub mod commands;
#[doc(hidden)]
pub mod read;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use commands::{Filter, Listing, RemoteOs};
use read::{OwnerColumn, Reading};

use super::{BoxFuture, OwnerCoverage, RemoteSources, Snapshot, Source, Target, Want};
use crate::config::{HostLookup, NetstatConfig, RemoteHost};
use crate::error::Error;
use crate::model::{Socket, TcpState};
use crate::ssh::{SshError, SshPool};

/// What we learnt about a host: its OS and the commands that worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostProfile {
    pub os: RemoteOs,
    /// The listing used for unfiltered queries.
    pub unfiltered: Option<Listing>,
    /// The listing used for queries filtered on the remote side.
    pub filtered: Option<Listing>,
}

impl HostProfile {
    fn listing(&self, filtered: bool) -> Option<Listing> {
        if filtered {
            self.filtered
        } else {
            self.unfiltered
        }
    }
}

/// Host profiles, by (entry name, SSH port).
#[derive(Default)]
struct Profiles(StdMutex<HashMap<(String, u16), HostProfile>>);

impl Profiles {
    fn get(&self, key: &(String, u16)) -> Option<HostProfile> {
        self.0.lock().ok().and_then(|m| m.get(key).copied())
    }

    fn update(&self, key: (String, u16), f: impl FnOnce(&mut Option<HostProfile>)) {
        if let Ok(mut m) = self.0.lock() {
            let mut entry = m.get(&key).copied();
            f(&mut entry);
            match entry {
                Some(p) => m.insert(key, p),
                None => m.remove(&key),
            };
        }
    }
}

/// Configured remote hosts, reached through one shared SSH pool.
#[derive(Clone)]
pub struct SshRemotes {
    config: Arc<NetstatConfig>,
    pool: SshPool,
    profiles: Arc<Profiles>,
}

impl SshRemotes {
    pub fn new(config: NetstatConfig) -> SshRemotes {
        let pool = SshPool::new(config.ssh.clone());
        SshRemotes {
            config: Arc::new(config),
            pool,
            profiles: Arc::new(Profiles::default()),
        }
    }

    /// The pool (for tests: handshake counts).
    pub fn pool(&self) -> &SshPool {
        &self.pool
    }

    /// What was learnt about the host called `name` at `ssh_port` (else its configured port).
    pub fn profile(&self, name: &str, ssh_port: Option<u16>) -> Option<HostProfile> {
        let host = self.config.find_host(name)?;
        self.profiles
            .get(&(host.name.clone(), ssh_port.unwrap_or(host.port)))
    }
}

impl RemoteSources for SshRemotes {
    fn lookup(&self, host: &str, ssh_port: Option<u16>) -> Result<Target, Error> {
        let found = match self.config.lookup_host(host) {
            HostLookup::Usable(found) => found,
            HostLookup::Unusable(problem) => {
                return Err(Error::HostConfig {
                    host: host.trim().to_string(),
                    source: Arc::clone(problem),
                });
            }
            HostLookup::NotConfigured => {
                return Err(Error::UnknownHost {
                    host: host.to_string(),
                    configured: Vec::new(),
                });
            }
        };
        Ok(Target {
            host: found.name.clone(),
            label: format!("remote host {}", found.label()),
            local: false,
            source: Arc::new(RemoteSource {
                pool: self.pool.clone(),
                host: found.clone(),
                ssh_port,
                profiles: Arc::clone(&self.profiles),
            }),
        })
    }
    fn max_parallel(&self) -> usize {
        self.config.ssh.max_parallel
    }

    fn hosts(&self) -> super::ConfiguredHosts {
        let hosts: Vec<super::HostInfo> = self
            .config
            .remote_hosts
            .iter()
            .map(|h| super::HostInfo {
                name: h.name.clone(),
                host: h.host.clone(),
                port: h.port,
                username: h.username.clone(),
                auth: h.auth_method(),
                groups: h.groups.clone(),
                via: h.proxy_jump.iter().map(|j| j.name.clone()).collect(),
                source: h.origin.as_str().to_string(),
            })
            .collect();
        let mut unusable: Vec<super::UnusableHost> = self
            .config
            .broken_hosts
            .iter()
            .map(|b| super::UnusableHost {
                name: b.name.clone(),
                entry: b.entry.clone(),
                problem: b.error.to_string(),
            })
            .collect();
        // A bad `[ssh]` table makes every host answer with its error.
        let hosts = match &self.config.ssh_error {
            None => hosts,
            Some(e) => {
                unusable.extend(hosts.into_iter().map(|h| super::UnusableHost {
                    name: Some(h.name.clone()),
                    entry: h.name,
                    problem: e.to_string(),
                }));
                Vec::new()
            }
        };
        super::ConfiguredHosts {
            config: self.config.path.as_ref().map(|p| p.display().to_string()),
            hosts,
            unusable,
        }
    }
}

/// One remote host as a [`Source`].
#[derive(Clone)]
pub(crate) struct RemoteSource {
    pool: SshPool,
    host: RemoteHost,
    ssh_port: Option<u16>,
    profiles: Arc<Profiles>,
}

impl RemoteSource {
    fn key(&self) -> (String, u16) {
        (
            self.host.name.clone(),
            self.ssh_port.unwrap_or(self.host.port),
        )
    }

    async fn run(
        &self,
        listing: Listing,
        filter: &Filter,
        owners: bool,
    ) -> Result<crate::ssh::CommandOutput, SshError> {
        self.pool
            .run(
                &self.host,
                self.ssh_port,
                commands::command(listing, filter, owners),
            )
            .await
    }

    /// The host's OS, detected on first use.
    async fn os(&self) -> Result<RemoteOs, SshError> {
        if let Some(p) = self.profiles.get(&self.key()) {
            return Ok(p.os);
        }
        let none = Filter::none();
        let uname = self.run(Listing::Uname, &none, false).await?;
        let os = match uname
            .success()
            .then(|| RemoteOs::from_uname(&uname.stdout))
            .flatten()
        {
            Some(os) => os,
            None => {
                let ver = self.run(Listing::WindowsVer, &none, false).await?;
                RemoteOs::from_ver(&ver.stdout).unwrap_or(RemoteOs::Unknown)
            }
        };
        tracing::debug!(host = %self.host.name, os = os.as_str(), "remote OS detected");
        self.profiles.update(self.key(), |p| {
            *p = Some(HostProfile {
                os,
                unfiltered: None,
                filtered: None,
            })
        });
        Ok(os)
    }

    fn remember(&self, filtered: bool, listing: Option<Listing>) {
        self.profiles.update(self.key(), |p| {
            if let Some(p) = p {
                if filtered {
                    p.filtered = listing;
                } else {
                    p.unfiltered = listing;
                }
            }
        });
    }

    async fn collect_inner(&self, want: Want) -> Result<Snapshot, SshError> {
        let filter = Filter::from_want(&want);
        let os = self.os().await?;
        let filtered = filter.narrows();
        let remembered = self
            .profiles
            .get(&self.key())
            .and_then(|p| p.listing(filtered));
        let order: Vec<Listing> = remembered
            .into_iter()
            .chain(
                commands::plan(os, &filter)
                    .into_iter()
                    .filter(|l| Some(*l) != remembered),
            )
            .collect();
        let mut tried = Vec::new();
        let mut fallback: Option<(Listing, Reading)> = None;
        for listing in order {
            let out = self.run(listing, &filter, want.owners).await?;
            let mut reading = match read::interpret(listing, &filter, &out) {
                Ok(r) => r,
                Err(why) => {
                    tried.push(format!("`{}` ({why})", listing.name()));
                    continue;
                }
            };
            if want.owners
                && let Some(helper) = commands::owner_helper(listing)
            {
                self.add_owners(helper, &filter, &mut reading).await?;
            }
            let complete =
                !want.owners || reading.owners == OwnerColumn::Shown || remembered == Some(listing);
            if complete {
                if remembered != Some(listing) {
                    self.remember(filtered, Some(listing));
                    tracing::debug!(host = %self.host.name, command = listing.name(), "remote listing command chosen");
                }
                return Ok(self.snapshot(os, listing, reading, want));
            }
            tried.push(format!("`{}` (names no owners)", listing.name()));
            if fallback.is_none() {
                fallback = Some((listing, reading));
            }
        }
        if let Some((listing, reading)) = fallback {
            self.remember(filtered, Some(listing));
            return Ok(self.snapshot(os, listing, reading, want));
        }
        self.remember(filtered, None);
        Err(SshError::NoUsableCommand {
            host: self.host.label(),
            tried: tried.join("; "),
        })
    }

    /// Completes a listing's owners with `lsof` or `tasklist`.
    async fn add_owners(
        &self,
        helper: Listing,
        filter: &Filter,
        reading: &mut Reading,
    ) -> Result<(), SshError> {
        let out = self.run(helper, filter, true).await?;
        match helper {
            Listing::Lsof => match read::interpret_lsof(&out) {
                Ok(lsof) => {
                    read::join_lsof(&mut reading.parsed.sockets, &lsof);
                    reading.owners = OwnerColumn::Shown;
                }
                Err(why) => {
                    reading.owners = OwnerColumn::Absent(format!(
                        "BSD/macOS netstat names no processes and `lsof` gave none ({why}); install lsof there"
                    ));
                }
            },
            Listing::Tasklist => match read::interpret_tasklist(&out) {
                Ok(tasks) => {
                    read::join_tasklist(&mut reading.parsed.sockets, &tasks);
                }
                Err(why) => reading.parsed.notes.push(format!(
                    "program names are unknown: `tasklist` gave none ({why}); owners carry pids only"
                )),
            },
            _ => {}
        }
        Ok(())
    }

    fn snapshot(&self, os: RemoteOs, listing: Listing, reading: Reading, want: Want) -> Snapshot {
        let Reading {
            parsed,
            owners: column,
            owners_restricted,
        } = reading;
        let mut notes = Vec::new();
        if !matches!(os, RemoteOs::Linux) {
            notes.push(format!(
                "read with `{}` ({} host)",
                listing.name(),
                os.as_str()
            ));
        }
        for note in &parsed.notes {
            // Owner visibility gets its own note below, phrased for an SSH user.
            if !note.starts_with("netstat could not show every owner") {
                notes.push(note.clone());
            }
        }
        if !parsed.skipped.is_empty() {
            for s in parsed.skipped.iter().take(5) {
                tracing::warn!(host = %self.host.name, line_no = s.line_no, line = %s.line, reason = %s.reason, "unreadable line in remote listing");
            }
            notes.push(format!(
                "{} line(s) of the remote `{}` output could not be read and were left out (first: line {}: {})",
                parsed.skipped.len(),
                listing.name(),
                parsed.skipped[0].line_no,
                parsed.skipped[0].reason
            ));
        }
        let mut sockets: Vec<Socket> = parsed
            .sockets
            .into_iter()
            .filter(|s| want.admits(s))
            .collect();
        let owners = if !want.owners {
            for s in &mut sockets {
                s.owners.clear();
            }
            OwnerCoverage::NotRequested
        } else {
            let ownerless = sockets
                .iter()
                .filter(|s| s.owners.is_empty() && s.state != Some(TcpState::TimeWait))
                .count();
            match column {
                OwnerColumn::Absent(why) if ownerless > 0 => {
                    notes.push(format!(
                        "pid/program are unknown for {ownerless} socket(s): {why}"
                    ));
                    OwnerCoverage::Unavailable
                }
                OwnerColumn::Absent(_) => OwnerCoverage::Complete,
                OwnerColumn::Shown
                    if ownerless > 0 && (owners_restricted || self.host.username != "root") =>
                {
                    notes.push(format!(
                        "pid/program are unknown for {ownerless} socket(s) owned by processes the SSH user {} may not inspect; to see them, use an SSH user with root rights (or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH) on that host",
                        self.host.username
                    ));
                    OwnerCoverage::Partial {
                        unreadable_processes: 0,
                    }
                }
                OwnerColumn::Shown => OwnerCoverage::Complete,
            }
        };
        Snapshot {
            sockets,
            owners,
            notes,
            processes: None,
        }
    }
}

impl RemoteSource {
    /// A listing with each socket's health: Linux hosts only, through `ss -tinm`.
    async fn collect_health(&self, want: Want) -> Result<Snapshot, Error> {
        let os = self.os().await?;
        if matches!(os, RemoteOs::Bsd | RemoteOs::Windows) {
            return Err(Error::Remote {
                host: self.host.label(),
                detail: format!(
                    "connection health and traffic need a Linux host with iproute2's ss (`ss -tinm` prints the kernel's tcp_info); this is a {} host, whose tools print no per-connection counters",
                    os.as_str()
                ),
            });
        }
        let filter = Filter::from_want(&want);
        let out = self.run(Listing::SsInfo, &filter, want.owners).await?;
        match read::interpret(Listing::SsInfo, &filter, &out) {
            Ok(reading) => Ok(self.snapshot(os, Listing::SsInfo, reading, want)),
            Err(why) => Err(Error::Remote {
                host: self.host.label(),
                detail: format!(
                    "`ss -tinm` gave no usable listing ({why}); connection health needs iproute2's ss on the host"
                ),
            }),
        }
    }
}

impl Source for RemoteSource {
    fn collect(&self, want: Want) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move {
            if want.health {
                return self.collect_health(want).await;
            }
            self.collect_inner(want).await.map_err(Error::from)
        })
    }

    fn control(&self) -> Result<Arc<dyn super::Control>, String> {
        if self.host.allow_kill {
            Ok(Arc::new(self.clone()))
        } else {
            Err(format!(
                "its [[remote_hosts]] entry does not say allow_kill = true (remote host {})",
                self.host.label()
            ))
        }
    }

    /// A Linux host's, read over the pooled session; none for other systems (or a failure).
    fn port_sysctls(&self) -> BoxFuture<'_, Option<[Option<String>; 3]>> {
        Box::pin(async move {
            if !matches!(self.os().await, Ok(RemoteOs::Linux)) {
                return None;
            }
            let out = self
                .run(Listing::PortSysctls, &Filter::none(), false)
                .await
                .ok()?;
            Some(commands::port_sysctls(&out.stdout))
        })
    }
}

impl RemoteSource {
    /// Runs a `free_port` command on a Linux host (others have no `/proc` to check a
    /// process's start time against, so nothing is signalled there).
    async fn run_control(
        &self,
        command: crate::ssh::RemoteCommand,
    ) -> Result<crate::ssh::CommandOutput, Error> {
        match self.os().await? {
            RemoteOs::Linux => Ok(self.pool.run(&self.host, self.ssh_port, command).await?),
            other => Err(Error::Refused(format!(
                "free_port on remote host {} needs Linux (it checks each process in /proc \
                 before signalling it); this host runs {}. Nothing was signalled",
                self.host.label(),
                other.as_str()
            ))),
        }
    }
}

/// `free_port` on a remote Linux host whose entry allows it: facts from `/proc` over the
/// pooled session, signals with `kill` after the process's start time is checked again in the
/// same command, which is never retried.
impl super::Control for RemoteSource {
    fn facts<'a>(
        &'a self,
        pids: &'a [u32],
    ) -> BoxFuture<'a, Result<HashMap<u32, super::Facts>, Error>> {
        Box::pin(async move {
            if pids.is_empty() {
                return Ok(HashMap::new());
            }
            let out = self.run_control(commands::process_facts(pids)).await?;
            Ok(commands::parse_process_facts(&out.stdout).0)
        })
    }

    fn signal<'a>(
        &'a self,
        process: &'a super::Facts,
        sig: super::Sig,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let name = match sig {
                super::Sig::Term => "TERM",
                super::Sig::Kill => "KILL",
            };
            let out = self
                .run_control(commands::signal(process.pid, process.start, name))
                .await?;
            match out.exit_status {
                Some(0) => Ok(true),
                Some(3) => Ok(false),
                _ => Err(Error::Signal {
                    pid: process.pid,
                    signal: sig.name(),
                    source: std::io::Error::other(format!(
                        "on remote host {}: {}",
                        self.host.label(),
                        crate::error::shorten(out.stderr.trim())
                    )),
                }),
            }
        })
    }

    fn identity(&self) -> BoxFuture<'_, Result<super::Identity, Error>> {
        Box::pin(async move {
            let out = self.run_control(commands::process_facts(&[])).await?;
            let euid = commands::parse_process_facts(&out.stdout)
                .1
                .ok_or_else(|| Error::Remote {
                    host: self.host.name.clone(),
                    detail: "`id -u` printed no user id".into(),
                })?;
            Ok(super::Identity {
                protected: Vec::new(),
                euid,
            })
        })
    }
}
