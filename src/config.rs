//! `NetstatConfig`: the TOML configuration file turned into a validated configuration.
//!
//! Where the file comes from: `--config PATH`, else `$NETSTAT_MCP_CONFIG`, else
//! `~/.config/netstat-mcp/config.toml`. No file (or an unreadable one) at the default place, or
//! at the environment's, means a local-only configuration with a warning; an explicit
//! `--config` must be readable. Everything is checked here, at start, and every problem names
//! the file, the entry and the field:
//! - a TOML syntax error (or a top level that is not `[ssh]` / `[[remote_hosts]]`) is an error
//!   naming the line and column, never quoting the line: it may hold a password;
//! - a bad `[[remote_hosts]]` entry (an unset `password_env`, a bad port) disables that entry
//!   only ([`NetstatConfig::broken_hosts`]): calls naming it get the error, every other host and
//!   the local machine keep working; a bad `[ssh]` table disables the remote hosts only.
//!
//! Secrets (`password`, `password_env`, `password_file`, `key_passphrase_env`) are resolved
//! here into [`Secret`]s, which wipe their memory on drop and never print; no error quotes a
//! secret value. Private keys are only checked for readability here; `ssh` decodes them when it
//! connects.
//!
//! This module does no network I/O.

mod jumps;
mod ssh_aliases;
pub(crate) mod ssh_config;
mod toml_file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

pub use crate::limits::Actions;

/// The environment variable naming the configuration file.
pub(crate) const CONFIG_ENV: &str = "NETSTAT_MCP_CONFIG";
/// The largest config file read: 4 MiB (a TOML of 5,000 hosts is about 600 KiB).
pub(crate) const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

pub(crate) use crate::limits::{DEFAULT_MAX_PARALLEL, MAX_HOSTS_PER_CALL};

/// Bastions one host may be reached through (a longer `ProxyJump` chain is refused).
pub(crate) const MAX_JUMP_HOPS: usize = 8;

/// Channels one SSH session may have open at once (sshd's `MaxSessions` defaults to 10).
pub(crate) const MAX_CHANNELS_PER_HOST: usize = 8;

/// A secret string (password, passphrase): zeroed on drop, redacted in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Zeroizing<String>);

impl Secret {
    pub(crate) fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The secret itself; hand it only to the SSH library.
    pub(crate) fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What to do with a host key that is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum HostKeyPolicy {
    /// Unknown or changed keys are refused (the default).
    #[default]
    Strict,
    /// An unknown host's key is learnt (appended to known_hosts) once; a changed key is refused.
    AcceptNew,
}

/// The `[ssh]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    pub(crate) known_hosts: PathBuf,
    pub(crate) host_key_policy: HostKeyPolicy,
    /// Covers TCP connect, key exchange and authentication.
    pub(crate) connect_timeout: Duration,
    /// Covers one remote command; at expiry the command is killed and its channel closed.
    pub(crate) command_timeout: Duration,
    /// A pooled session unused this long is closed.
    pub(crate) idle_timeout: Duration,
    /// At most this many hosts are queried at once by one call (`max_parallel`, default 16).
    pub(crate) max_parallel: usize,
    /// The OpenSSH client configuration whose `Host` aliases are hosts too (`use_ssh_config =
    /// true` means `~/.ssh/config`; `ssh_config = "PATH"` names one); `None`: not used.
    pub(crate) ssh_config: Option<PathBuf>,
}

impl SshSettings {
    /// Defaults, with `~` standing for `home`.
    pub(crate) fn with_home(home: Option<&Path>) -> SshSettings {
        SshSettings {
            known_hosts: expand_tilde("~/.ssh/known_hosts", home),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            max_parallel: DEFAULT_MAX_PARALLEL,
            ssh_config: None,
        }
    }
}

/// One way to authenticate, in the order they are tried: key file, agent, password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// A private key file (OpenSSH or PEM format); `passphrase` for an encrypted key.
    KeyFile {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    /// Every key the ssh-agent holds; `socket` overrides `$SSH_AUTH_SOCK`.
    Agent { socket: Option<PathBuf> },
    /// A password, with where it came from (for listings: never the value).
    Password {
        secret: Secret,
        source: PasswordSource,
    },
}

/// Where a password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PasswordSource {
    Inline,
    Env(String),
    File(PathBuf),
}

impl AuthMethod {
    /// A short description without any secret: `password (env WEB1_PASSWORD)`,
    /// `publickey (/root/.ssh/id_ed25519)`, `agent`.
    pub(crate) fn describe(&self) -> String {
        match self {
            AuthMethod::KeyFile { path, passphrase } => {
                let enc = if passphrase.is_some() {
                    ", with passphrase"
                } else {
                    ""
                };
                format!("publickey ({}{enc})", path.display())
            }
            AuthMethod::Agent { socket: None } => "agent".to_string(),
            AuthMethod::Agent { socket: Some(s) } => format!("agent ({})", s.display()),
            AuthMethod::Password { source, .. } => match source {
                PasswordSource::Inline => "password (in config)".to_string(),
                PasswordSource::Env(var) => format!("password (env {var})"),
                PasswordSource::File(path) => format!("password (file {})", path.display()),
            },
        }
    }
}

/// One `[[remote_hosts]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    /// The name callers use (`web-1`); defaults to `host`.
    pub name: String,
    /// Address or DNS name to connect to.
    pub(crate) host: String,
    /// SSH port (default 22).
    pub(crate) port: u16,
    pub(crate) username: String,
    /// Tried in order until one succeeds; never empty.
    pub(crate) auth: Vec<AuthMethod>,
    /// Groups this host belongs to (`@prod` in a `host` argument selects them).
    pub(crate) groups: Vec<String>,
    /// The bastions to go through, outermost first (each fully resolved, with an empty chain
    /// of its own); empty for a direct connection.
    pub(crate) proxy_jump: Vec<RemoteHost>,
    /// The `proxy_jump` / `ProxyJump` text as configured (for listings).
    pub(crate) proxy_jump_spec: Option<String>,
    /// A known_hosts file for this host only (ssh_config `UserKnownHostsFile`), instead of
    /// `[ssh] known_hosts`.
    pub(crate) known_hosts: Option<PathBuf>,
    /// Where the host was configured.
    pub(crate) origin: HostOrigin,
    /// Whether `free_port` may signal processes there (`allow_kill = true` in its entry, and
    /// the server's own `--allow-kill` / `[actions] allow_kill`). Off by default.
    pub(crate) allow_kill: bool,
}

/// Where a remote host was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostOrigin {
    /// A `[[remote_hosts]]` entry of our TOML file.
    ConfigFile,
    /// A `Host` alias of an ssh_config file, at this line.
    SshConfig { file: PathBuf, line: usize },
    /// A `ProxyJump` hop that is no configured host: `user@host:port` with the settings
    /// ssh_config gives that name.
    JumpHop,
}

impl HostOrigin {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            HostOrigin::ConfigFile => "config",
            HostOrigin::SshConfig { .. } => "ssh_config",
            HostOrigin::JumpHop => "proxy_jump",
        }
    }
}

impl RemoteHost {
    /// How this host authenticates, for `netstat-mcp hosts`: never a secret.
    pub fn auth_method(&self) -> String {
        self.auth
            .iter()
            .map(AuthMethod::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `web-1 (192.168.1.100)`, or just the host when the name is the host; a host behind
    /// bastions adds `via bastion`.
    pub(crate) fn label(&self) -> String {
        let mut label = if self.name == self.host {
            self.host.clone()
        } else {
            format!("{} ({})", self.name, self.host)
        };
        if !self.proxy_jump.is_empty() {
            let hops: Vec<&str> = self.proxy_jump.iter().map(|h| h.name.as_str()).collect();
            label.push_str(" via ");
            label.push_str(&hops.join(", "));
        }
        label
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct NetstatConfig {
    /// The file it came from, if any.
    pub(crate) path: Option<PathBuf>,
    pub ssh: SshSettings,
    pub remote_hosts: Vec<RemoteHost>,
    /// `[[remote_hosts]]` entries that cannot be used (an unset `password_env`, a bad port):
    /// calls naming them get their error; every other host and the local machine still work.
    pub broken_hosts: Vec<BrokenHost>,
    /// Why the `[ssh]` table cannot be used, when it cannot: then every remote host answers with
    /// this error (the local machine still works).
    pub(crate) ssh_error: Option<Arc<ConfigError>>,
    /// The ssh_config file read for aliases (`[ssh] use_ssh_config` / `ssh_config`), if any.
    pub(crate) ssh_config: Option<Arc<ssh_config::SshConfigFile>>,
    /// What the server may do beyond reading (`[actions]`).
    pub actions: Actions,
    /// Things that are allowed but unwise (a password in a file others can read), unusable
    /// entries, an unreadable default config file; also logged.
    pub warnings: Vec<String>,
}

/// A `[[remote_hosts]]` entry that failed validation, kept so that a call naming it gets the
/// reason (file, entry, field) rather than "not configured".
#[derive(Debug, Clone)]
pub struct BrokenHost {
    /// `remote_hosts[2] (web-1)`.
    pub(crate) entry: String,
    /// The entry's `name` (else `host`), when it has one as a string.
    pub(crate) name: Option<String>,
    /// The entry's `host`, when it has one as a string.
    pub(crate) host: Option<String>,
    pub(crate) error: Arc<ConfigError>,
}

/// A configured host as a caller's `host` argument finds it: usable, or not with the reason.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HostLookup<'a> {
    Usable(&'a RemoteHost),
    /// The entry (or the `[ssh]` table) is invalid; the error names file, entry and field.
    Unusable(&'a Arc<ConfigError>),
    NotConfigured,
}

/// A configuration problem, reported at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; fix the --config path, or create the file")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A TOML syntax error. The offending text is never quoted: the line may hold a password.
    #[error(
        "config file {path} is not valid TOML: {position}: {problem} (the line is not shown, as it may hold a secret)",
        position = match (line, column) {
            (Some(l), Some(c)) => format!("line {l}, column {c}"),
            _ => "position unknown".to_string(),
        }
    )]
    Syntax {
        path: PathBuf,
        /// 1-based line of the error.
        line: Option<usize>,
        /// 1-based column (in characters) of the error.
        column: Option<usize>,
        /// What the parser expected; never text from the file.
        problem: String,
    },
    #[error("config file {path}: {entry}: field `{field}`: {problem}")]
    Invalid {
        path: PathBuf,
        /// `[ssh]`, `remote_hosts[2] (web-1)`, or `top level`.
        entry: String,
        field: String,
        problem: String,
    },
}

/// Is `host` (a tool's `host` argument) the local machine?
pub(crate) fn is_local_host(host: Option<&str>) -> bool {
    match host.map(str::trim) {
        None | Some("") => true,
        Some(h) => h.eq_ignore_ascii_case("localhost") || h == "127.0.0.1" || h == "::1",
    }
}

impl NetstatConfig {
    /// A configuration with no remote hosts and default SSH settings.
    pub(crate) fn local_only() -> NetstatConfig {
        NetstatConfig {
            path: None,
            ssh: SshSettings::with_home(home_dir().as_deref()),
            remote_hosts: Vec::new(),
            broken_hosts: Vec::new(),
            ssh_error: None,
            ssh_config: None,
            actions: Actions::default(),
            warnings: Vec::new(),
        }
    }

    /// Loads from `explicit` (`--config`), else `$NETSTAT_MCP_CONFIG`, else
    /// `~/.config/netstat-mcp/config.toml`, reading the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<NetstatConfig, ConfigError> {
        NetstatConfig::load_with(explicit, &|name: &str| std::env::var(name).ok())
    }

    /// As [`NetstatConfig::load`], with the environment passed in (`env(name)`).
    ///
    /// Only an explicit `--config` must be readable. A file from `$NETSTAT_MCP_CONFIG` or the
    /// default place that is missing or unreadable (another user's `HOME`) means local-only,
    /// with a warning unless the default file simply does not exist. A file that is read must be
    /// valid TOML of the right shape; a bad entry in it only disables that entry.
    pub(crate) fn load_with(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<NetstatConfig, ConfigError> {
        let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let from_env = env(CONFIG_ENV).filter(|p| !p.is_empty());
        let (path, required) = match (explicit, &from_env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (PathBuf::from(p), false),
            (None, None) => match &home {
                Some(h) => (h.join(".config/netstat-mcp/config.toml"), false),
                None => return Ok(NetstatConfig::local_only()),
            },
        };
        let text = match crate::text_file::read_text(&path, MAX_CONFIG_BYTES) {
            Ok(t) => t,
            Err(source) if required => return Err(ConfigError::Read { path, source }),
            Err(e) => {
                let mut config = NetstatConfig::local_only();
                config.ssh = SshSettings::with_home(home.as_deref());
                let quiet = from_env.is_none() && e.kind() == std::io::ErrorKind::NotFound;
                if !quiet {
                    let via = if from_env.is_some() {
                        format!("${CONFIG_ENV} names")
                    } else {
                        "the default config file is".to_string()
                    };
                    let w = format!(
                        "{via} {}, which cannot be read ({e}); only the local machine is available",
                        path.display()
                    );
                    tracing::warn!("{w}");
                    config.warnings.push(w);
                }
                return Ok(config);
            }
        };
        let mut config = NetstatConfig::parse(&text, &path, home.as_deref(), env)?;
        if config.holds_inline_password() {
            toml_file::check_private(&path, "an inline password", &mut config.warnings);
        }
        for w in &config.warnings {
            tracing::warn!(config = %path.display(), "{w}");
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` is only for messages, `home` expands `~`.
    ///
    /// A syntax error, or a file whose top level is not `[ssh]` and `[[remote_hosts]]`, is an
    /// error. A bad `[[remote_hosts]]` entry goes to [`NetstatConfig::broken_hosts`], a bad
    /// `[ssh]` table to [`NetstatConfig::ssh_error`], each with a warning.
    pub fn parse(
        text: &str,
        path: &Path,
        home: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<NetstatConfig, ConfigError> {
        let mut config = toml_file::parse(text, path, home, env)?;
        if let Some(file) = config.ssh.ssh_config.clone() {
            ssh_aliases::add_aliases(&mut config, &file, home, env);
        }
        jumps::resolve(&mut config, home, env);
        Ok(config)
    }

    /// The usable configured host called `name_or_host` (its `name` first, then its `host`).
    pub fn find_host(&self, name_or_host: &str) -> Option<&RemoteHost> {
        let wanted = name_or_host.trim();
        self.remote_hosts
            .iter()
            .find(|h| h.name == wanted)
            .or_else(|| self.remote_hosts.iter().find(|h| h.host == wanted))
    }

    /// What a caller's `host` names: a usable host, an entry that cannot be used (or any host
    /// while `[ssh]` is invalid), or nothing configured. Names come first, then addresses; an
    /// unusable entry with the name wins over a usable one (a duplicated name is ambiguous).
    pub(crate) fn lookup_host(&self, name_or_host: &str) -> HostLookup<'_> {
        let wanted = name_or_host.trim();
        let broken_named = self
            .broken_hosts
            .iter()
            .find(|b| b.name.as_deref() == Some(wanted));
        let found = match broken_named {
            Some(b) => return HostLookup::Unusable(&b.error),
            None => self.find_host(wanted),
        };
        match (found, &self.ssh_error) {
            (Some(_), Some(e)) => HostLookup::Unusable(e),
            (Some(h), None) => HostLookup::Usable(h),
            (None, _) => match self
                .broken_hosts
                .iter()
                .find(|b| b.host.as_deref() == Some(wanted))
            {
                Some(b) => HostLookup::Unusable(&b.error),
                None => HostLookup::NotConfigured,
            },
        }
    }

    fn holds_inline_password(&self) -> bool {
        self.remote_hosts.iter().any(|h| {
            h.auth.iter().any(|a| {
                matches!(
                    a,
                    AuthMethod::Password {
                        source: PasswordSource::Inline,
                        ..
                    }
                )
            })
        })
    }
}

/// `~` or `~/x` to the home directory; other paths unchanged.
pub(crate) fn expand_tilde(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}
