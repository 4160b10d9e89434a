//! Sockets of a configured remote host, over SSH: run the first listing command the host has,
//! parse its text with [`crate::parse`], filter locally.
//!
//! Command choice (fixed commands only, see [`RemoteCommand`]): `netstat -tunapW`, then
//! `netstat -tunap` (a netstat without `-W`), then `ss -tunap`, then the `/proc/net` tables.
//! What worked is remembered per host (in the [`SshPool`]), so later calls run it directly; if
//! it stops working (the host changed), the whole order is tried again.
//!
//! [`SshRemotes`] is the [`RemoteSources`] lookup the service uses: only hosts in the
//! configuration are reachable, and the caller's `host` text is only ever compared with
//! configured names, never sent anywhere. A configured entry that failed validation answers
//! with its config error (file, entry, field); the other hosts are unaffected.

use std::sync::Arc;

use super::{BoxFuture, OwnerCoverage, RemoteSources, Snapshot, Source, Target, Want};
use crate::config::{HostLookup, NetstatConfig, RemoteHost};
use crate::error::Error;
use crate::model::{Socket, TcpState};
use crate::parse::{self, Format, Parsed};
use crate::ssh::{CommandOutput, RemoteCommand, SshError, SshPool};

/// The order in which listing commands are tried on a host.
pub const COMMAND_ORDER: [RemoteCommand; 4] = [
    RemoteCommand::NetstatWide,
    RemoteCommand::Netstat,
    RemoteCommand::Ss,
    RemoteCommand::ProcNet,
];

/// Configured remote hosts, reached through one shared SSH pool.
#[derive(Clone)]
pub struct SshRemotes {
    config: Arc<NetstatConfig>,
    pool: SshPool,
}

impl SshRemotes {
    pub fn new(config: NetstatConfig) -> SshRemotes {
        let pool = SshPool::new(config.ssh.clone());
        SshRemotes {
            config: Arc::new(config),
            pool,
        }
    }

    /// The pool (for tests: handshake counts).
    pub fn pool(&self) -> &SshPool {
        &self.pool
    }

    pub fn config(&self) -> &NetstatConfig {
        &self.config
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
            }),
        })
    }

    fn hosts(&self) -> crate::query::HostsData {
        let hosts: Vec<crate::query::HostInfo> = self
            .config
            .remote_hosts
            .iter()
            .map(|h| crate::query::HostInfo {
                name: h.name.clone(),
                host: h.host.clone(),
                port: h.port,
                username: h.username.clone(),
                auth: h.auth_method(),
                groups: Vec::new(),
            })
            .collect();
        crate::query::HostsData {
            host_count: hosts.len(),
            config: self.config.path.as_ref().map(|p| p.display().to_string()),
            hosts,
        }
    }
}

/// One remote host as a [`Source`].
pub struct RemoteSource {
    pool: SshPool,
    host: RemoteHost,
    ssh_port: Option<u16>,
}

impl RemoteSource {
    pub fn new(pool: SshPool, host: RemoteHost, ssh_port: Option<u16>) -> RemoteSource {
        RemoteSource {
            pool,
            host,
            ssh_port,
        }
    }

    async fn collect_inner(&self, want: Want) -> Result<Snapshot, SshError> {
        let remembered = self.pool.remembered_command(&self.host, self.ssh_port);
        let order = remembered
            .into_iter()
            .chain(COMMAND_ORDER.into_iter().filter(|c| Some(*c) != remembered));
        let mut tried = Vec::new();
        for command in order {
            let out = self.pool.run(&self.host, self.ssh_port, command).await?;
            match interpret(command, &out) {
                Ok(parsed) => {
                    if remembered != Some(command) {
                        self.pool
                            .remember_command(&self.host, self.ssh_port, command);
                        tracing::debug!(host = %self.host.name, command = command.command_line(), "remote listing command chosen");
                    }
                    return Ok(self.snapshot(command, &out, parsed, want));
                }
                Err(why) => tried.push(format!("`{}` ({why})", command.command_line())),
            }
        }
        Err(SshError::NoUsableCommand {
            host: self.host.label(),
            tried: tried.join("; "),
        })
    }

    fn snapshot(
        &self,
        command: RemoteCommand,
        out: &CommandOutput,
        parsed: Parsed,
        want: Want,
    ) -> Snapshot {
        let mut notes = Vec::new();
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
                command.command_line(),
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
            let restricted = match command {
                RemoteCommand::ProcNet => true,
                RemoteCommand::NetstatWide | RemoteCommand::Netstat => {
                    out.stderr.contains("processes could be identified")
                        || out.stderr.contains("you should be root")
                        || (self.host.username != "root" && ownerless > 0)
                }
                _ => self.host.username != "root" && ownerless > 0,
            };
            if restricted && ownerless > 0 {
                notes.push(if command == RemoteCommand::ProcNet {
                    format!(
                        "pid/program are unknown for {ownerless} socket(s): the host has neither netstat nor ss, and /proc/net does not name processes; install net-tools or iproute2 there"
                    )
                } else {
                    format!(
                        "pid/program are unknown for {ownerless} socket(s) owned by processes the SSH user {} may not inspect; to see them, use an SSH user with root rights (or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH) on that host",
                        self.host.username
                    )
                });
                OwnerCoverage::Partial {
                    unreadable_processes: 0,
                }
            } else {
                OwnerCoverage::Complete
            }
        };
        Snapshot {
            sockets,
            owners,
            notes,
        }
    }
}

impl Source for RemoteSource {
    fn collect(&self, want: Want) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move { self.collect_inner(want).await.map_err(Error::from) })
    }
}

/// Whether `command`'s output is a listing we can use; `Err` says why not.
fn interpret(command: RemoteCommand, out: &CommandOutput) -> Result<Parsed, String> {
    let status = match (out.exit_status, &out.exit_signal) {
        (_, Some(sig)) => format!("killed by {sig}"),
        (Some(code), None) => format!("exit {code}"),
        (None, None) => "no exit status".into(),
    };
    let why = || {
        let err = out.stderr.trim();
        let first = err.lines().next().unwrap_or("").trim();
        let first: String = first.chars().take(160).collect();
        if first.is_empty() {
            status.clone()
        } else {
            format!("{status}: {first}")
        }
    };
    match command {
        RemoteCommand::NetstatWide | RemoteCommand::Netstat | RemoteCommand::Ss => {
            if !out.success() {
                return Err(why());
            }
            let format = if command == RemoteCommand::Ss {
                Some(Format::Ss)
            } else {
                parse::detect(&out.stdout)
                    .filter(|f| matches!(f, Format::NetTools | Format::Busybox))
            };
            match format {
                Some(f) => Ok(parse::parse(f, &out.stdout)),
                None if out.stdout.trim().is_empty() => Err(format!("{status}, no output")),
                None => Err(format!("{status}, but the output is not a netstat listing")),
            }
        }
        RemoteCommand::ProcNet => {
            if !out.stdout.contains("local_address") {
                return Err(why());
            }
            Ok(parse::parse(Format::ProcNet, &out.stdout))
        }
        RemoteCommand::True => Err("not a listing command".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: u32, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            stdout: stdout.into(),
            stderr: stderr.into(),
            exit_status: Some(code),
            exit_signal: None,
        }
    }

    #[test]
    fn missing_or_failing_commands_are_not_listings() {
        let e = interpret(
            RemoteCommand::NetstatWide,
            &out(127, "", "sh: 1: netstat: not found\n"),
        )
        .unwrap_err();
        assert_eq!(e, "exit 127: sh: 1: netstat: not found");
        let e = interpret(RemoteCommand::Netstat, &out(0, "hello\n", "")).unwrap_err();
        assert!(e.contains("not a netstat listing"), "{e}");
        let e = interpret(RemoteCommand::ProcNet, &out(1, "== tcp\n", "")).unwrap_err();
        assert_eq!(e, "exit 1");
        assert!(interpret(RemoteCommand::True, &out(0, "", "")).is_err());
    }

    #[test]
    fn netstat_listing_is_parsed() {
        let text = "Active Internet connections (servers and established)\n\
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name\n\
tcp        0      0 127.0.0.1:5432          0.0.0.0:*               LISTEN      812/postgres\n\
udp        0      0 0.0.0.0:68              0.0.0.0:*                           -\n";
        let parsed = interpret(RemoteCommand::NetstatWide, &out(0, text, "")).unwrap();
        assert_eq!(parsed.sockets.len(), 2);
        assert!(parsed.skipped.is_empty());
        let want = Want {
            udp: false,
            ..Want::all()
        };
        assert_eq!(parsed.sockets.iter().filter(|s| want.admits(s)).count(), 1);
    }
}
