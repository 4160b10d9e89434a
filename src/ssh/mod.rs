//! SSH to configured hosts with our own client (russh; no `ssh` binary, so password auth works
//! without `sshpass`), directly or through bastions.
//!
//! [`SshPool::run`] runs one of our [`RemoteCommand`]s on a configured [`RemoteHost`](crate::config::RemoteHost):
//! - **Only our own command lines.** A [`RemoteCommand`] is built only by
//!   `source::remote::commands` from fixed text and values of our own types (integers, state
//!   enums); no caller text ever reaches the remote shell.
//! - **Host keys** are checked against known_hosts ([`known_hosts`], [`host_key`]) under the
//!   configured [`HostKeyPolicy`](crate::config::HostKeyPolicy), during the key exchange and
//!   before any credential is offered; algorithms already known for the host are offered first.
//! - **Credentials stay put.** An SSH port given by the caller that is not the configured one
//!   is used only when known_hosts already holds the key for that `[host]:port`: accept-new
//!   never learns a key there, so no credential is ever sent to a server nobody configured.
//! - **Bastions** ([`jump`]): a host with a ProxyJump chain is reached through a
//!   `direct-tcpip` channel of the last bastion's session, and that session through the one
//!   before it. Every hop is a full SSH session of its own: its host key verified against its
//!   own known_hosts entry, its own credentials. Bastion sessions are pooled like any other,
//!   so all the hosts behind one bastion share its session.
//! - **Pool** ([`pool`]). One session per configured entry (its name), port and chain, reused
//!   across calls; one handshake at a time per entry; at most
//!   [`MAX_CHANNELS_PER_HOST`](crate::config::MAX_CHANNELS_PER_HOST) channels at once; a
//!   session idle for `idle_timeout` is closed; a dead session is dropped and the call retried
//!   once on a fresh one (our commands are read-only, so a retry is harmless).
//! - **Timeouts.** The connect timeout covers TCP (or the tunnel), key exchange and
//!   authentication. At the command timeout, and when the caller drops the future (MCP
//!   cancellation), the remote process gets `KILL` and the channel is closed.
//!
//! Layout: [`error`] (what can fail, with what to do), [`auth`] (password, key, agent),
//! [`host_key`] (the russh handler that verifies keys), [`known_hosts`] (the file format),
//! [`jump`] (tunnels through bastions), [`pool`] (sessions and commands), [`host_port`] (the host
//! a step is for, as messages name it).
//!
//! It does not parse command output or choose among commands: that is `source::remote`.

pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod host_key;
pub(crate) mod host_port;
pub(crate) mod jump;
pub(crate) mod known_hosts;
pub(crate) mod pool;

use std::borrow::Cow;

pub use error::SshError;
pub use pool::SshPool;

/// Output larger than this is refused rather than held in memory (100k sockets is ~15 MB).
const MAX_OUTPUT_BYTES: usize = 256 * 1024 * 1024;

/// A command line to run remotely. Only this crate builds one (`source::remote::commands`):
/// fixed program text with integers and names from our own enums filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteCommand {
    name: &'static str,
    line: Cow<'static, str>,
    /// Whether a session that died around it may run it again on a fresh one (not for a
    /// command that signals processes: it may have run already).
    retry: bool,
}

impl RemoteCommand {
    /// `true`: a no-op used by tests and health checks.
    pub const TRUE: RemoteCommand = RemoteCommand {
        name: "true",
        line: Cow::Borrowed("true"),
        retry: true,
    };

    /// For the command builders of this crate only.
    pub(crate) fn built(name: &'static str, line: String) -> RemoteCommand {
        RemoteCommand {
            name,
            line: Cow::Owned(line),
            retry: true,
        }
    }

    /// A command that is never run twice: a dead session fails it rather than retrying.
    pub(crate) fn once(self) -> RemoteCommand {
        RemoteCommand {
            retry: false,
            ..self
        }
    }

    pub(crate) fn may_retry(&self) -> bool {
        self.retry
    }

    /// The command line sent to the remote shell.
    pub(crate) fn command_line(&self) -> &str {
        &self.line
    }

    /// A short name for messages (`netstat -tunapW`, `ss with filter`).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
}

/// What a remote command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Standard output, as text (invalid UTF-8 replaced).
    pub stdout: String,
    /// Standard error, as text.
    pub(crate) stderr: String,
    /// Exit status, when the server sent one.
    pub(crate) exit_status: Option<u32>,
    /// The signal that ended the command, when one did (`KILL`, `TERM`, …).
    pub(crate) exit_signal: Option<String>,
}

impl CommandOutput {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    #[test]
    fn error_messages_say_what_to_do() {
        let e = SshError::HostKeyUnknown {
            host: "web-1 (10.0.0.1)".into(),
            addr: "10.0.0.1:2222".into(),
            address: "10.0.0.1".into(),
            port: 2222,
            algorithm: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            known_hosts: PathBuf::from("/root/.ssh/known_hosts"),
        };
        let m = e.to_string();
        assert!(m.contains("SHA256:abc"), "{m}");
        assert!(
            m.contains("ssh-keyscan -p 2222 -t ssh-ed25519 10.0.0.1 >> /root/.ssh/known_hosts"),
            "{m}"
        );
        let e = SshError::Refused {
            host: "web-1 (10.0.0.1)".into(),
            addr: "10.0.0.1:22".into(),
        };
        assert!(e.to_string().contains("refused"));
    }
}
