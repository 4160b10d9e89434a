//! `Host` aliases of an ssh_config file (read by [`super::ssh_config`]) as remote hosts: the
//! usable ones with their identity files or agent, the unusable ones with the reason
//! (`ProxyCommand`, no credentials, a bad `HostName`), and the hops of a `ProxyJump` chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ssh_config::{JumpSpec, Resolved, SshConfigFile, clip};
use super::toml_file::{check_host, check_name, check_username};
use super::{AuthMethod, BrokenHost, ConfigError, HostOrigin, NetstatConfig, RemoteHost};

/// The identity files OpenSSH tries when a host names none (those that exist are used).
const DEFAULT_IDENTITIES: [&str; 3] = ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"];

fn local_user(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("USER")
        .or_else(|| env("LOGNAME"))
        .filter(|u| !u.is_empty())
        .unwrap_or_default()
}

/// Reads the ssh_config file and adds its aliases to `config`: usable ones to
/// `remote_hosts`, unusable ones (no credentials, `ProxyCommand`, a bad `HostName`) to
/// `broken_hosts` with the reason. A file that cannot be read is a warning (the TOML hosts
/// still work). A `[[remote_hosts]]` name wins over an alias of the same name.
pub(super) fn add_aliases(
    config: &mut NetstatConfig,
    path: &Path,
    home: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) {
    let user = local_user(env);
    let file = match SshConfigFile::load(path, home, &user) {
        Ok(f) => f,
        Err(e) => {
            config.warnings.push(format!(
                "{e}; its Host aliases are not available (the [[remote_hosts]] entries still work)"
            ));
            return;
        }
    };
    config.warnings.extend(file.warnings.iter().cloned());
    for (alias, origin) in &file.aliases {
        let taken = config.remote_hosts.iter().any(|h| &h.name == alias)
            || config
                .broken_hosts
                .iter()
                .any(|b| b.name.as_deref() == Some(alias.as_str()));
        if taken {
            config.warnings.push(format!(
                "{} line {}: Host {alias} is also the name of a [[remote_hosts]] entry, which is used instead",
                origin.file.display(),
                origin.line
            ));
            continue;
        }
        let resolved = file.resolve(alias);
        let host_origin = HostOrigin::SshConfig {
            file: origin.file.clone(),
            line: origin.line,
        };
        match host_from(&resolved, alias, None, None, host_origin, home, env) {
            Ok(h) => config.remote_hosts.push(h),
            Err((field, problem)) => {
                let error = ConfigError::Invalid {
                    path: origin.file.clone(),
                    entry: format!("Host {alias} (line {})", origin.line),
                    field: field.to_string(),
                    problem,
                };
                config.warnings.push(format!(
                    "{error}; calls to this host fail with this error (other hosts still work)"
                ));
                config.broken_hosts.push(BrokenHost {
                    entry: format!("Host {alias}"),
                    name: Some(alias.clone()),
                    host: Some(resolved.hostname.clone()),
                    error: Arc::new(error),
                });
            }
        }
    }
    config.ssh_config = Some(Arc::new(file));
}

/// A `ProxyJump` hop that names no configured host, with the settings ssh_config gives its
/// host name (wildcard blocks included), and the hop's own user and port.
pub(super) fn hop_host(
    file: &SshConfigFile,
    hop: &JumpSpec,
    home: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RemoteHost, String> {
    let resolved = file.resolve(&hop.host);
    let user = hop
        .user
        .clone()
        .or(resolved.user.clone())
        .unwrap_or_else(|| local_user(env));
    let port = hop.port.unwrap_or(resolved.port);
    let name = format!("{user}@{}:{port}", resolved.hostname);
    host_from(
        &resolved,
        &name,
        Some(user),
        Some(port),
        HostOrigin::JumpHop,
        home,
        env,
    )
    .map_err(|(field, problem)| format!("ProxyJump hop `{}`: {field}: {problem}", hop.host))
}

/// A remote host from what ssh_config says: `name` is how callers and messages name it.
fn host_from(
    r: &Resolved,
    name: &str,
    user: Option<String>,
    port: Option<u16>,
    origin: HostOrigin,
    home: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RemoteHost, (&'static str, String)> {
    if origin != HostOrigin::JumpHop {
        check_name(name).map_err(|p| ("Host", p))?;
    }
    check_host(&r.hostname).map_err(|p| ("HostName", p))?;
    if r.proxy_command {
        return Err((
            "ProxyCommand",
            "is not supported (netstat-mcp never runs a local command from a configuration); use ProxyJump".into(),
        ));
    }
    let username = user.or(r.user.clone()).unwrap_or_else(|| local_user(env));
    if username.is_empty() {
        return Err(("User", "is not set, and neither is $USER".into()));
    }
    check_username(&username).map_err(|p| ("User", p))?;
    let mut auth = Vec::new();
    let explicit = !r.identity_files.is_empty();
    let candidates: Vec<PathBuf> = if explicit {
        r.identity_files.clone()
    } else {
        DEFAULT_IDENTITIES
            .iter()
            .map(|p| crate::config::expand_tilde(p, home))
            .collect()
    };
    for path in candidates {
        if std::fs::File::open(&path).is_ok() {
            auth.push(AuthMethod::KeyFile {
                path,
                passphrase: None,
            });
        }
    }
    if env("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
        auth.push(AuthMethod::Agent { socket: None });
    }
    if auth.is_empty() {
        let named = if explicit {
            let shown: Vec<String> = r
                .identity_files
                .iter()
                .take(3)
                .map(|p| clip(&p.display().to_string()))
                .collect();
            format!(
                "none of its {} IdentityFile(s) can be read ({}{})",
                r.identity_files.len(),
                shown.join(", "),
                if r.identity_files.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )
        } else {
            "no IdentityFile is given and no default key (~/.ssh/id_ed25519, id_ecdsa, id_rsa) exists".into()
        };
        return Err((
            "IdentityFile",
            format!(
                "no usable authentication: {named}, and no ssh-agent is running (SSH_AUTH_SOCK)"
            ),
        ));
    }
    Ok(RemoteHost {
        name: name.to_string(),
        host: r.hostname.clone(),
        port: port.unwrap_or(r.port),
        username,
        auth,
        groups: Vec::new(),
        proxy_jump: Vec::new(),
        proxy_jump_spec: r.proxy_jump.clone(),
        known_hosts: r.user_known_hosts_file.clone(),
        origin,
        allow_kill: false,
    })
}
