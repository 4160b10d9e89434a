//! The host an SSH step is for, as messages name it: its config entry, the port, a label and
//! the address to connect to. Shared by the pool, authentication and host-key checks (which
//! the pool uses), so it lives beside them rather than in the pool.

use super::error::SshError;
use crate::config::RemoteHost;

/// A remote host and port as messages name them.
pub(super) struct HostPort<'a> {
    pub(super) host: &'a RemoteHost,
    pub(super) port: u16,
    pub(super) label: String,
    pub(super) addr: String,
}

impl<'a> HostPort<'a> {
    pub(super) fn new(host: &'a RemoteHost, port: u16) -> HostPort<'a> {
        let addr = if host.host.contains(':') {
            format!("[{}]:{port}", host.host)
        } else {
            format!("{}:{port}", host.host)
        };
        HostPort {
            host,
            port,
            label: host.label(),
            addr,
        }
    }

    pub(super) fn protocol(&self, stage: &'static str, detail: impl std::fmt::Display) -> SshError {
        SshError::Protocol {
            host: self.label.clone(),
            stage,
            detail: detail.to_string(),
        }
    }
}
