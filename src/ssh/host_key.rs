//! Host key verification: the russh client handler checks the server's key against
//! known_hosts under the configured policy during the key exchange, before any credential is
//! offered, and records why it refused one (so the error says unknown, changed or revoked).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::PublicKey;

use super::error::SshError;
use super::host_port::HostPort;
use super::known_hosts;
use crate::config::HostKeyPolicy;

/// The largest known_hosts file read (about 100,000 host keys).
pub(crate) const MAX_KNOWN_HOSTS_BYTES: usize = 64 * 1024 * 1024;

// The error path is cold; boxing SshError everywhere would cost more clarity than it saves.
#[allow(clippy::result_large_err)]
pub(super) fn read_known_hosts(path: &Path, target: &HostPort<'_>) -> Result<String, SshError> {
    match crate::text_file::read_text(path, MAX_KNOWN_HOSTS_BYTES) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(SshError::KnownHostsFile {
            host: target.label.clone(),
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Appends a learnt host key (accept-new), creating the file 0600 and its directory 0700.
fn learn_host_key(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut text = String::new();
    if existing.last().is_some_and(|b| *b != b'\n') {
        text.push('\n');
    }
    let _ = writeln!(text, "{line}");
    file.write_all(text.as_bytes())
}

/// The russh handler: checks the server's host key, records why it refused one.
pub(super) struct Client {
    pub(super) host: String,
    pub(super) port: u16,
    /// The entry's configured SSH port: a key is learnt (accept-new) only there.
    pub(super) configured_port: u16,
    pub(super) label: String,
    pub(super) addr: String,
    pub(super) known_hosts: PathBuf,
    pub(super) policy: HostKeyPolicy,
    pub(super) outcome: Arc<StdMutex<Option<SshError>>>,
}

impl Client {
    #[allow(clippy::result_large_err)] // cold path, see read_known_hosts
    fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let text =
            crate::text_file::read_text(&self.known_hosts, MAX_KNOWN_HOSTS_BYTES).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(String::new())
                } else {
                    Err(SshError::KnownHostsFile {
                        host: self.label.clone(),
                        path: self.known_hosts.clone(),
                        detail: e.to_string(),
                    })
                }
            })?;
        let algorithm = key.algorithm().as_str().to_string();
        let fingerprint = known_hosts::fingerprint(key);
        let bare_algorithm = || {
            key.algorithm()
                .as_str()
                .trim_end_matches("-cert-v01@openssh.com")
                .to_string()
        };
        match known_hosts::check(&text, &self.host, self.port, key) {
            known_hosts::KeyCheck::Known => Ok(()),
            known_hosts::KeyCheck::Unknown if self.port != self.configured_port => {
                Err(SshError::CallerPortKeyUnknown {
                    host: self.label.clone(),
                    addr: self.addr.clone(),
                    address: self.host.clone(),
                    port: self.port,
                    configured_port: self.configured_port,
                    lookup: known_hosts::lookup_name(&self.host, self.port),
                    algorithm: bare_algorithm(),
                    fingerprint,
                    known_hosts: self.known_hosts.clone(),
                })
            }
            known_hosts::KeyCheck::Unknown => match self.policy {
                HostKeyPolicy::AcceptNew => {
                    let line =
                        known_hosts::entry_line(&self.host, self.port, key).ok_or_else(|| {
                            SshError::KnownHostsFile {
                                host: self.label.clone(),
                                path: self.known_hosts.clone(),
                                detail: "cannot encode the host key".into(),
                            }
                        })?;
                    learn_host_key(&self.known_hosts, &line).map_err(|e| {
                        SshError::KnownHostsFile {
                            host: self.label.clone(),
                            path: self.known_hosts.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                    tracing::warn!(host = %self.label, %algorithm, %fingerprint, known_hosts = %self.known_hosts.display(), "learnt new host key (accept-new)");
                    Ok(())
                }
                HostKeyPolicy::Strict => Err(SshError::HostKeyUnknown {
                    host: self.label.clone(),
                    addr: self.addr.clone(),
                    address: self.host.clone(),
                    port: self.port,
                    algorithm: bare_algorithm(),
                    fingerprint,
                    known_hosts: self.known_hosts.clone(),
                }),
            },
            known_hosts::KeyCheck::Changed {
                line,
                algorithm: recorded_algorithm,
            } => Err(SshError::HostKeyChanged {
                host: self.label.clone(),
                addr: self.addr.clone(),
                lookup: known_hosts::lookup_name(&self.host, self.port),
                algorithm,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
                recorded_algorithm,
            }),
            known_hosts::KeyCheck::Revoked { line } => Err(SshError::HostKeyRevoked {
                host: self.label.clone(),
                algorithm,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
        }
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            // We never advertise certificate algorithms, so this is a misbehaving server.
            return Ok(false);
        };
        match self.verify(key) {
            Ok(()) => Ok(true),
            Err(e) => {
                if let Ok(mut g) = self.outcome.lock() {
                    *g = Some(e);
                }
                Ok(false)
            }
        }
    }
}
