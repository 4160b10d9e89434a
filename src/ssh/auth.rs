//! Authentication, in the order the host lists its methods: key files, the ssh-agent,
//! passwords. Errors name the methods tried (never a secret) and what the server accepts.

use std::path::PathBuf;
use std::sync::Arc;

use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;

use super::error::SshError;
use super::host_key::Client;
use super::host_port::HostPort;
use crate::config::AuthMethod;

/// Tries the host's auth methods in order until one succeeds.
pub(super) async fn authenticate(
    handle: &mut client::Handle<Client>,
    target: &HostPort<'_>,
) -> Result<(), SshError> {
    let host = target.host;
    let user = host.username.as_str();
    let mut tried = Vec::new();
    let mut server_accepts = String::from("(not told)");
    let note_failure = |result: client::AuthResult, server_accepts: &mut String| {
        if let client::AuthResult::Failure {
            remaining_methods, ..
        } = result
        {
            let names: Vec<&'static str> = remaining_methods.iter().map(<&str>::from).collect();
            *server_accepts = if names.is_empty() {
                "(none listed)".into()
            } else {
                names.join(", ")
            };
        }
    };
    for method in &host.auth {
        match method {
            AuthMethod::KeyFile { path, passphrase } => {
                tried.push(method.describe());
                let key =
                    russh::keys::load_secret_key(path, passphrase.as_ref().map(|p| p.expose()))
                        .map_err(|e| SshError::KeyFile {
                            host: target.label.clone(),
                            path: path.clone(),
                            detail: key_error_text(&e, passphrase.is_some()),
                        })?;
                let hash = rsa_hash(handle, key.algorithm().is_rsa()).await;
                let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
                let result = handle
                    .authenticate_publickey(user, key)
                    .await
                    .map_err(|e| target.protocol("public key authentication", e))?;
                if result.success() {
                    return Ok(());
                }
                note_failure(result, &mut server_accepts);
            }
            AuthMethod::Agent { socket } => {
                tried.push(method.describe());
                let path = match socket {
                    Some(p) => p.clone(),
                    None => match std::env::var_os("SSH_AUTH_SOCK") {
                        Some(p) if !p.is_empty() => PathBuf::from(p),
                        _ => {
                            return Err(SshError::Agent {
                                host: target.label.clone(),
                                detail: "SSH_AUTH_SOCK is not set".into(),
                            });
                        }
                    },
                };
                let mut agent =
                    AgentClient::connect_uds(&path)
                        .await
                        .map_err(|e| SshError::Agent {
                            host: target.label.clone(),
                            detail: format!("cannot connect to {}: {e}", path.display()),
                        })?;
                let identities = agent
                    .request_identities()
                    .await
                    .map_err(|e| SshError::Agent {
                        host: target.label.clone(),
                        detail: format!("cannot list keys: {e}"),
                    })?;
                for identity in identities {
                    let AgentIdentity::PublicKey { key, .. } = identity else {
                        continue;
                    };
                    let hash = rsa_hash(handle, key.algorithm().is_rsa()).await;
                    match handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(result) if result.success() => return Ok(()),
                        Ok(result) => note_failure(result, &mut server_accepts),
                        Err(e) => {
                            return Err(SshError::Agent {
                                host: target.label.clone(),
                                detail: format!("the agent did not sign: {e}"),
                            });
                        }
                    }
                }
            }
            AuthMethod::Password { secret, .. } => {
                tried.push(method.describe());
                let result = handle
                    .authenticate_password(user, secret.expose())
                    .await
                    .map_err(|e| target.protocol("password authentication", e))?;
                if result.success() {
                    return Ok(());
                }
                note_failure(result, &mut server_accepts);
            }
        }
    }
    Err(SshError::AuthFailed {
        host: target.label.clone(),
        user: user.to_string(),
        tried: tried.join(", "),
        server_accepts,
    })
}

/// For an RSA key, the best signature hash the server supports (SHA-512, SHA-256, else SHA-1).
async fn rsa_hash(handle: &client::Handle<Client>, is_rsa: bool) -> Option<russh::keys::HashAlg> {
    if !is_rsa {
        return None;
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(h)) => h,
        _ => Some(russh::keys::HashAlg::Sha256),
    }
}

fn key_error_text(e: &russh::keys::Error, had_passphrase: bool) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("encrypt")
        || lower.contains("decrypt")
        || lower.contains("passphrase")
        || lower.contains("crypto")
    {
        if had_passphrase {
            format!("cannot decrypt it ({text}); is the passphrase right?")
        } else {
            format!("it is encrypted ({text}); set key_passphrase_env")
        }
    } else {
        text
    }
}
