//! The library's error type. Every variant carries the context a user needs to act on it.

use std::io;
use std::path::PathBuf;

/// A caller's bad input: which parameter, what was given, what is allowed.
///
/// Rendered as one sentence naming the parameter and the allowed values, e.g.
/// `Invalid port: 0. Parameter 'port' must be an integer between 1 and 65535.`
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {param}: {given}. Parameter '{param}' {allowed}.")]
pub struct InputError {
    /// The parameter's name as the caller spells it.
    pub(crate) param: String,
    /// What was given, rendered for the message (strings quoted).
    pub(crate) given: String,
    /// What is allowed, as the end of a sentence ("must be one of: tcp, udp, all").
    pub(crate) allowed: String,
}

impl InputError {
    /// `given` is rendered by the caller (strings quoted, see `query::quoted`); `allowed` ends
    /// the sentence.
    pub(crate) fn new(
        param: &str,
        given: impl Into<String>,
        allowed: impl Into<String>,
    ) -> InputError {
        InputError {
            param: param.to_string(),
            given: given.into(),
            allowed: allowed.into(),
        }
    }
}

/// Everything that can go wrong when answering a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Input(#[from] InputError),

    /// A remote host that is not in the configuration. The text up to the host is fixed (clients
    /// match it); then the configured names, so the caller can pick one.
    #[error(
        "Authentication config for remote host not found: {}{}",
        shorten(host),
        configured_names(configured)
    )]
    UnknownHost {
        host: String,
        /// Configured host names (the first 20).
        configured: Vec<String>,
    },

    /// The netlink `sock_diag` socket failed at some stage.
    #[error("netlink sock_diag {stage} failed: {source}")]
    Netlink {
        stage: &'static str,
        #[source]
        source: io::Error,
    },

    /// A kernel or procfs file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No way to list sockets on this machine worked.
    #[error("no way to list local sockets worked: {detail}")]
    NoLocalSource { detail: String },

    /// An external program failed (exit status and trimmed stderr).
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },

    /// An external program did not finish in time and was killed; `hint` says how to make it
    /// faster, where we know (empty otherwise).
    #[error("{program} did not finish within {secs} s and was stopped{hint}")]
    CommandTimeout {
        program: String,
        secs: u64,
        hint: &'static str,
    },

    /// SSH to a remote host failed (refused, timeout, authentication, host key, no usable
    /// command); the message names the host and says what to do.
    /// (Boxed: SSH errors carry much context and this type travels in every `Result`.)
    #[cfg(feature = "ssh")]
    #[error(transparent)]
    Ssh(Box<crate::ssh::SshError>),

    /// A configured remote host whose config entry (or the `[ssh]` table) is invalid; the
    /// error names the file, the entry and the field. Other hosts are unaffected.
    #[cfg(feature = "ssh")]
    #[error("remote host {} cannot be used: {source}", shorten(host))]
    HostConfig {
        host: String,
        #[source]
        source: std::sync::Arc<crate::config::ConfigError>,
    },

    /// `recent_connection_events` on a server started without the recorder.
    #[error(
        "The connection recorder is off, so there are no recent events to show. Start the server with `netstat-mcp serve --record` (stdio or --http; --record-capacity N sets how many events are kept, default 100000) to record every open and close on this machine; meanwhile watch_connections watches live for up to 50 s"
    )]
    RecorderOff,

    /// `free_port` would not act: what it refused and why (nothing was signalled or closed).
    #[error("{0}")]
    Refused(String),

    /// `free_port` asked the user, who did not confirm (nothing was signalled or closed).
    #[error("not confirmed: {0}; nothing was signalled or closed")]
    NotConfirmed(String),

    /// Sending a signal failed for a reason other than the process being gone.
    #[error("sending {signal} to pid {pid} failed: {source}")]
    Signal {
        pid: u32,
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A remote host failed; `detail` says what happened and what to do.
    #[error("remote host {host}: {detail}")]
    Remote { host: String, detail: String },
}

fn configured_names(names: &[String]) -> String {
    if names.is_empty() {
        "; no remote hosts are configured".to_string()
    } else {
        format!("; configured hosts: {}", names.join(", "))
    }
}

#[cfg(feature = "ssh")]
impl From<crate::ssh::SshError> for Error {
    fn from(e: crate::ssh::SshError) -> Error {
        Error::Ssh(Box::new(e))
    }
}

impl Error {
    /// Whether the error is the caller's fault (bad input or unknown host).
    pub(crate) fn is_input(&self) -> bool {
        matches!(
            self,
            Error::Input(_)
                | Error::UnknownHost { .. }
                | Error::RecorderOff
                | Error::Refused(_)
                | Error::NotConfirmed(_)
        )
    }
}

/// A caller's text for a message: control characters escaped (`\n`, `\u{1b}`), and cut to 64
/// characters so that a huge argument is never echoed back whole.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    let escape = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_control() || c == '\\' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let count = text.chars().count();
    if count <= MAX {
        return escape(text);
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{}… ({count} characters)", escape(&head))
}
