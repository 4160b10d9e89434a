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

pub mod ssh_config;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "NETSTAT_MCP_CONFIG";

/// Channels one SSH session may have open at once (sshd's `MaxSessions` defaults to 10).
pub const MAX_CHANNELS_PER_HOST: usize = 8;

/// A secret string (password, passphrase): zeroed on drop, redacted in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The secret itself; hand it only to the SSH library.
    pub fn expose(&self) -> &str {
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
pub enum HostKeyPolicy {
    /// Unknown or changed keys are refused (the default).
    #[default]
    Strict,
    /// An unknown host's key is learnt (appended to known_hosts) once; a changed key is refused.
    AcceptNew,
}

impl HostKeyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
        }
    }
}

/// The `[ssh]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// Covers TCP connect, key exchange and authentication.
    pub connect_timeout: Duration,
    /// Covers one remote command; at expiry the command is killed and its channel closed.
    pub command_timeout: Duration,
    /// A pooled session unused this long is closed.
    pub idle_timeout: Duration,
}

impl SshSettings {
    /// Defaults, with `~` standing for `home`.
    pub fn with_home(home: Option<&Path>) -> SshSettings {
        SshSettings {
            known_hosts: expand_tilde("~/.ssh/known_hosts", home),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// One way to authenticate, in the order they are tried: key file, agent, password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
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
pub enum PasswordSource {
    Inline,
    Env(String),
    File(PathBuf),
}

impl AuthMethod {
    /// A short description without any secret: `password (env WEB1_PASSWORD)`,
    /// `publickey (/root/.ssh/id_ed25519)`, `agent`.
    pub fn describe(&self) -> String {
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

    /// The SSH method name (`publickey`, `password`).
    pub fn ssh_name(&self) -> &'static str {
        match self {
            AuthMethod::KeyFile { .. } | AuthMethod::Agent { .. } => "publickey",
            AuthMethod::Password { .. } => "password",
        }
    }
}

/// One `[[remote_hosts]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    /// The name callers use (`web-1`); defaults to `host`.
    pub name: String,
    /// Address or DNS name to connect to.
    pub host: String,
    /// SSH port (default 22).
    pub port: u16,
    pub username: String,
    /// Tried in order until one succeeds; never empty.
    pub auth: Vec<AuthMethod>,
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

    /// `web-1 (192.168.1.100)`, or just the host when the name is the host.
    pub fn label(&self) -> String {
        if self.name == self.host {
            self.host.clone()
        } else {
            format!("{} ({})", self.name, self.host)
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct NetstatConfig {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub ssh: SshSettings,
    pub remote_hosts: Vec<RemoteHost>,
    /// `[[remote_hosts]]` entries that cannot be used (an unset `password_env`, a bad port):
    /// calls naming them get their error; every other host and the local machine still work.
    pub broken_hosts: Vec<BrokenHost>,
    /// Why the `[ssh]` table cannot be used, when it cannot: then every remote host answers with
    /// this error (the local machine still works).
    pub ssh_error: Option<Arc<ConfigError>>,
    /// Things that are allowed but unwise (a password in a file others can read), unusable
    /// entries, an unreadable default config file; also logged.
    pub warnings: Vec<String>,
}

/// A `[[remote_hosts]]` entry that failed validation, kept so that a call naming it gets the
/// reason (file, entry, field) rather than "not configured".
#[derive(Debug, Clone)]
pub struct BrokenHost {
    /// `remote_hosts[2] (web-1)`.
    pub entry: String,
    /// The entry's `name` (else `host`), when it has one as a string.
    pub name: Option<String>,
    /// The entry's `host`, when it has one as a string.
    pub host: Option<String>,
    pub error: Arc<ConfigError>,
}

/// A configured host as a caller's `host` argument finds it: usable, or not with the reason.
#[derive(Debug, Clone, Copy)]
pub enum HostLookup<'a> {
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
pub fn is_local_host(host: Option<&str>) -> bool {
    match host.map(str::trim) {
        None | Some("") => true,
        Some(h) => h.eq_ignore_ascii_case("localhost") || h == "127.0.0.1" || h == "::1",
    }
}

impl NetstatConfig {
    /// A configuration with no remote hosts and default SSH settings.
    pub fn local_only() -> NetstatConfig {
        NetstatConfig {
            path: None,
            ssh: SshSettings::with_home(home_dir().as_deref()),
            remote_hosts: Vec::new(),
            broken_hosts: Vec::new(),
            ssh_error: None,
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
    pub fn load_with(
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
        let text = match std::fs::read_to_string(&path) {
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
            check_private(&path, "an inline password", &mut config.warnings);
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
        // Into a plain table first: the parser's messages hold no text from the file, while a
        // typed deserialisation's would ("invalid type: string \"...\"").
        let top: toml::Table = toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        let invalid = |entry: &str, field: &str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            entry: entry.to_string(),
            field: field.to_string(),
            problem,
        };
        let mut ssh_table = None;
        let mut host_values = Vec::new();
        for (key, value) in top {
            match (key.as_str(), value) {
                ("ssh", toml::Value::Table(t)) => ssh_table = Some(t),
                ("remote_hosts", toml::Value::Array(items)) => host_values = items,
                (field @ ("ssh" | "remote_hosts"), other) => {
                    let want = if field == "ssh" {
                        "a table ([ssh])"
                    } else {
                        "an array of tables ([[remote_hosts]])"
                    };
                    return Err(invalid(
                        "top level",
                        field,
                        format!("invalid type: must be {want}, got {}", other.type_str()),
                    ));
                }
                (other, _) => {
                    return Err(invalid(
                        "top level",
                        &other.escape_debug().to_string(),
                        "unknown field, expected `ssh` or `remote_hosts`".into(),
                    ));
                }
            }
        }

        let mut warnings = Vec::new();
        let (ssh, ssh_error) = match ssh_table.map(|t| parse_ssh(t, home, &invalid)) {
            None => (SshSettings::with_home(home), None),
            Some(Ok(ssh)) => (ssh, None),
            Some(Err(e)) => {
                warnings.push(format!(
                    "{e}; no remote host can be used until this is fixed (the local machine still works)"
                ));
                (SshSettings::with_home(home), Some(Arc::new(e)))
            }
        };

        let mut remote_hosts = Vec::new();
        let mut broken_hosts = Vec::new();
        let mut names = HashSet::new();
        for (i, value) in host_values.into_iter().enumerate() {
            let (name, host) = match &value {
                toml::Value::Table(t) => {
                    let text = |k: &str| t.get(k).and_then(|v| v.as_str()).map(|s| s.trim());
                    (text("name").or(text("host")), text("host"))
                }
                _ => (None, None),
            };
            let hint = name
                .map(|s| format!(" ({})", s.escape_debug()))
                .unwrap_or_default();
            let entry = format!("remote_hosts[{i}]{hint}");
            let (name, host) = (name.map(str::to_string), host.map(str::to_string));
            // A name used twice is ambiguous: the later entry is unusable, and calls by that
            // name get its error.
            let duplicate = name.as_ref().is_some_and(|n| !names.insert(n.clone()));
            let result = match value {
                _ if duplicate => Err(invalid(
                    &entry,
                    "name",
                    format!(
                        "duplicate name `{}`: each remote host needs its own name",
                        name.as_deref().unwrap_or_default().escape_debug()
                    ),
                )),
                toml::Value::Table(t) => parse_host(t, &entry, home, env, &invalid, &mut warnings),
                other => Err(invalid(
                    &entry,
                    "remote_hosts",
                    format!("invalid type: must be a table, got {}", other.type_str()),
                )),
            };
            match result {
                Ok(h) => remote_hosts.push(h),
                Err(e) => {
                    warnings.push(format!(
                        "{e}; calls to this host fail with this error (other hosts and the local machine still work)"
                    ));
                    broken_hosts.push(BrokenHost {
                        entry,
                        name,
                        host,
                        error: Arc::new(e),
                    });
                }
            }
        }
        Ok(NetstatConfig {
            path: Some(path.to_path_buf()),
            ssh,
            remote_hosts,
            broken_hosts,
            ssh_error,
            warnings,
        })
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
    pub fn lookup_host(&self, name_or_host: &str) -> HostLookup<'_> {
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

/// A TOML syntax error as a [`ConfigError::Syntax`]: position from the span, the parser's
/// description of what it expected, and nothing quoted from the file.
fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let before = e.span().and_then(|s| text.get(..s.start));
    let line = before.map(|b| b.matches('\n').count() + 1);
    let column = before.map(|b| b.rsplit('\n').next().unwrap_or("").chars().count() + 1);
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        problem: scrub_parser_message(e.message()),
    }
}

/// The TOML parser's message with anything that could be file text removed: its messages are
/// fixed descriptions plus expected tokens (`"`, `=`, `inf`); a quoted run longer than a token,
/// in backticks or double quotes, is replaced by `…` should a parser version ever quote input.
fn scrub_parser_message(message: &str) -> String {
    let flat = message.trim().replace('\n', "; ");
    let mut out = String::new();
    for (i, part) in flat.split('`').enumerate() {
        if i % 2 == 1 {
            if part.chars().count() <= 5 {
                out.push('`');
                out.push_str(part);
                out.push('`');
            } else {
                out.push_str("`…`");
            }
            continue;
        }
        for (j, piece) in part.split('"').enumerate() {
            if j % 2 == 1 {
                out.push_str("\"…\"");
            } else {
                out.push_str(piece);
            }
        }
    }
    out
}

/// The `[ssh]` table, validated.
fn parse_ssh(
    table: toml::Table,
    home: Option<&Path>,
    invalid: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<SshSettings, ConfigError> {
    let mut ssh = SshSettings::with_home(home);
    check_types(&table, SSH_FIELDS, "[ssh]", invalid)?;
    let s: RawSsh = table
        .try_into()
        .map_err(|e: toml::de::Error| serde_problem(&e, "[ssh]", invalid))?;
    if let Some(k) = s.known_hosts {
        if k.trim().is_empty() {
            return Err(invalid("[ssh]", "known_hosts", "must not be empty".into()));
        }
        ssh.known_hosts = expand_tilde(&k, home);
    }
    if let Some(p) = s.host_key_policy {
        ssh.host_key_policy = match p.as_str() {
            "strict" => HostKeyPolicy::Strict,
            "accept-new" => HostKeyPolicy::AcceptNew,
            other => {
                return Err(invalid(
                    "[ssh]",
                    "host_key_policy",
                    format!(
                        "`{}` is not one of \"strict\", \"accept-new\"",
                        other.escape_debug()
                    ),
                ));
            }
        };
    }
    let secs = |v: Option<i64>, field: &str, default: Duration| match v {
        None => Ok(default),
        Some(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n.unsigned_abs())),
        Some(n) => Err(invalid(
            "[ssh]",
            field,
            format!("must be 1..=86400 seconds, got {n}"),
        )),
    };
    ssh.connect_timeout = secs(
        s.connect_timeout_secs,
        "connect_timeout_secs",
        ssh.connect_timeout,
    )?;
    ssh.command_timeout = secs(
        s.command_timeout_secs,
        "command_timeout_secs",
        ssh.command_timeout,
    )?;
    ssh.idle_timeout = secs(s.idle_timeout_secs, "idle_timeout_secs", ssh.idle_timeout)?;
    Ok(ssh)
}

/// The environment variable `var` (named in `field`), or an error that names the variable only
/// when it looks like a variable name: a value that does not is likely the secret itself, put
/// in the wrong field, and is never echoed.
fn secret_from_env(
    var: &str,
    field: &str,
    entry: &str,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<Secret, ConfigError> {
    let looks_like_name = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !looks_like_name {
        return Err(invalid(
            entry,
            field,
            "is not an environment variable name (letters, digits and `_`); it is not shown, in case it is the secret itself: put the variable's name here".into(),
        ));
    }
    env(var).map(Secret::new).ok_or_else(|| {
        invalid(
            entry,
            field,
            format!("environment variable {var} is not set"),
        )
    })
}

/// One `[[remote_hosts]]` entry, validated.
fn parse_host(
    table: toml::Table,
    entry: &str,
    home: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(&str, &str, String) -> ConfigError,
    warnings: &mut Vec<String>,
) -> Result<RemoteHost, ConfigError> {
    check_types(&table, HOST_FIELDS, entry, invalid)?;
    let h: RawHost = table
        .try_into()
        .map_err(|e: toml::de::Error| serde_problem(&e, entry, invalid))?;
    let host = h.host.trim().to_string();
    if let Err(problem) = check_host(&host) {
        return Err(invalid(entry, "host", problem));
    }
    let name = match h.name {
        Some(n) => {
            let n = n.trim().to_string();
            if let Err(problem) = check_name(&n) {
                return Err(invalid(entry, "name", problem));
            }
            n
        }
        None => host.clone(),
    };
    if is_local_host(Some(&name)) {
        return Err(invalid(
            entry,
            "name",
            format!("`{name}` means the local machine to callers; give the entry another name"),
        ));
    }
    let port = match h.port {
        None => 22,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(entry, "port", format!("must be 1..=65535, got {p}")))?,
    };
    let username = h.username.trim().to_string();
    if let Err(problem) = check_username(&username) {
        return Err(invalid(entry, "username", problem));
    }

    let mut auth = Vec::new();
    if let Some(k) = h.key_file {
        let key_path = expand_tilde(&k, home);
        if let Err(e) = std::fs::File::open(&key_path) {
            return Err(invalid(
                entry,
                "key_file",
                format!("cannot read {}: {e}", key_path.display()),
            ));
        }
        let passphrase = match h.key_passphrase_env {
            None => None,
            Some(var) => Some(secret_from_env(
                &var,
                "key_passphrase_env",
                entry,
                env,
                invalid,
            )?),
        };
        auth.push(AuthMethod::KeyFile {
            path: key_path,
            passphrase,
        });
    } else if h.key_passphrase_env.is_some() {
        return Err(invalid(
            entry,
            "key_passphrase_env",
            "only makes sense with key_file".into(),
        ));
    }
    if h.use_agent == Some(true) || h.agent_socket.is_some() {
        auth.push(AuthMethod::Agent {
            socket: h.agent_socket.map(|s| expand_tilde(&s, home)),
        });
    }
    let password_fields = [
        h.password.is_some(),
        h.password_env.is_some(),
        h.password_file.is_some(),
    ];
    if password_fields.iter().filter(|b| **b).count() > 1 {
        return Err(invalid(
            entry,
            "password",
            "give only one of password, password_env, password_file".into(),
        ));
    }
    if let Some(p) = h.password {
        auth.push(AuthMethod::Password {
            secret: Secret::new(p),
            source: PasswordSource::Inline,
        });
    } else if let Some(var) = h.password_env {
        let secret = secret_from_env(&var, "password_env", entry, env, invalid)?;
        auth.push(AuthMethod::Password {
            secret,
            source: PasswordSource::Env(var),
        });
    } else if let Some(f) = h.password_file {
        let file = expand_tilde(&f, home);
        let value = std::fs::read_to_string(&file).map_err(|e| {
            invalid(
                entry,
                "password_file",
                format!("cannot read {}: {e}", file.display()),
            )
        })?;
        let value = Zeroizing::new(value);
        let trimmed = value.trim_end_matches(['\n', '\r']).to_string();
        check_private(&file, "a password", warnings);
        auth.push(AuthMethod::Password {
            secret: Secret::new(trimmed),
            source: PasswordSource::File(file),
        });
    }
    if auth.is_empty() {
        return Err(invalid(
            entry,
            "password",
            "no authentication given: set one of password, password_env, password_file, key_file, use_agent".into(),
        ));
    }
    Ok(RemoteHost {
        name,
        host,
        port,
        username,
        auth,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    known_hosts: Option<String>,
    host_key_policy: Option<String>,
    connect_timeout_secs: Option<i64>,
    command_timeout_secs: Option<i64>,
    idle_timeout_secs: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<String>,
    host: String,
    port: Option<i64>,
    username: String,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    key_file: Option<String>,
    key_passphrase_env: Option<String>,
    use_agent: Option<bool>,
    agent_socket: Option<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
}

const SSH_FIELDS: &[(&str, Kind)] = &[
    ("known_hosts", Kind::Str),
    ("host_key_policy", Kind::Str),
    ("connect_timeout_secs", Kind::Int),
    ("command_timeout_secs", Kind::Int),
    ("idle_timeout_secs", Kind::Int),
];

const HOST_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("host", Kind::Str),
    ("port", Kind::Int),
    ("username", Kind::Str),
    ("password", Kind::Str),
    ("password_env", Kind::Str),
    ("password_file", Kind::Str),
    ("key_file", Kind::Str),
    ("key_passphrase_env", Kind::Str),
    ("use_agent", Kind::Bool),
    ("agent_socket", Kind::Str),
];

/// Type-checks known fields so that a wrong type names its field (serde's message does not).
fn check_types(
    table: &toml::Table,
    fields: &[(&str, Kind)],
    entry: &str,
    invalid: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (field, kind) in fields {
        let Some(value) = table.get(*field) else {
            continue;
        };
        let (ok, want) = match kind {
            Kind::Str => (value.is_str(), "a string"),
            Kind::Int => (value.is_integer(), "an integer"),
            Kind::Bool => (value.is_bool(), "true or false"),
        };
        if !ok {
            return Err(invalid(
                entry,
                field,
                format!("invalid type: must be {want}, got {}", value.type_str()),
            ));
        }
    }
    Ok(())
}

/// A serde error inside one table, as an `Invalid` naming the field when serde names one.
fn serde_problem(
    e: &toml::de::Error,
    entry: &str,
    invalid: &dyn Fn(&str, &str, String) -> ConfigError,
) -> ConfigError {
    let msg = e.message().trim().to_string();
    // serde's messages quote the field in backticks: "missing field `host`",
    // "unknown field `pasword`, expected one of ...".
    let field = msg
        .split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "?".to_string());
    invalid(entry, &field, msg)
}

/// Hosts are DNS names or IP addresses; anything else (spaces, quotes, `;`, `$`) is refused so
/// that no config value can look like shell text anywhere.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !host.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a DNS name or IP address",
            host.escape_debug()
        ))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}`: use letters, digits, `-`, `.`, `_`, `:` only",
            name.escape_debug()
        ))
    }
}

fn check_username(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@' | '$'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid user name",
            user.escape_debug()
        ))
    }
}

/// Warns when `path` (holding `what`) is readable by group or others.
fn check_private(path: &Path, what: &str, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "{} holds {what} but is readable by group or others (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
}

/// `~` or `~/x` to the home directory; other paths unchanged.
pub fn expand_tilde(path: &str, home: Option<&Path>) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "WEB1_PASSWORD" => Some("s3cret-env".into()),
            "KEY_PASS" => Some("kp".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<NetstatConfig, ConfigError> {
        NetstatConfig::parse(
            text,
            Path::new("/etc/test.toml"),
            Some(Path::new("/home/u")),
            &env,
        )
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            r#"
[ssh]
known_hosts = "~/.ssh/known_hosts"
host_key_policy = "accept-new"
connect_timeout_secs = 5
command_timeout_secs = 7

[[remote_hosts]]
name = "web-1"
host = "192.168.1.100"
port = 2222
username = "ops"
password = "hunter2"

[[remote_hosts]]
host = "db.example.com"
username = "ops"
password_env = "WEB1_PASSWORD"
use_agent = true
"#,
        )
        .unwrap();
        assert_eq!(c.ssh.known_hosts, PathBuf::from("/home/u/.ssh/known_hosts"));
        assert_eq!(c.ssh.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(c.ssh.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.ssh.command_timeout, Duration::from_secs(7));
        assert_eq!(c.remote_hosts.len(), 2);
        let web = c.find_host("web-1").unwrap();
        assert_eq!(web.port, 2222);
        assert_eq!(web.label(), "web-1 (192.168.1.100)");
        assert_eq!(c.find_host("192.168.1.100").unwrap().name, "web-1");
        let db = c.find_host("db.example.com").unwrap();
        assert_eq!(db.name, "db.example.com");
        assert_eq!(db.port, 22);
        assert_eq!(db.auth_method(), "agent, password (env WEB1_PASSWORD)");
        assert!(c.find_host("nope").is_none());
        assert!(c.find_host("a;id").is_none());
    }

    #[test]
    fn no_remote_hosts_is_fine() {
        let c = parse("").unwrap();
        assert!(c.remote_hosts.is_empty());
        assert_eq!(c.ssh.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(c.ssh.command_timeout, Duration::from_secs(20));
    }

    /// Each bad config names the file, the entry and the field.
    #[test]
    fn bad_configs_name_file_entry_field() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "[[remote_hosts]]\nname='a'\nusername='u'\npassword='p'",
                "remote_hosts[0] (a)",
                "host",
                "missing field",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\npassword='p'\nport=0",
                "remote_hosts[0] (h)",
                "port",
                "1..=65535",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\npassword='p'\nport=70000",
                "remote_hosts[0] (h)",
                "port",
                "70000",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\npassword='p'\nport='22'",
                "remote_hosts[0] (h)",
                "port",
                "invalid type",
            ),
            (
                "[[remote_hosts]]\nname='x'\nhost='h1'\nusername='u'\npassword='p'\n[[remote_hosts]]\nname='x'\nhost='h2'\nusername='u'\npassword='p'",
                "remote_hosts[1] (x)",
                "name",
                "duplicate",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\nkey_file='/nonexistent/key'",
                "remote_hosts[0] (h)",
                "key_file",
                "cannot read /nonexistent/key",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\npassword_env='NOT_SET_VAR'",
                "remote_hosts[0] (h)",
                "password_env",
                "NOT_SET_VAR is not set",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'",
                "remote_hosts[0] (h)",
                "password",
                "no authentication",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\npasword='p'",
                "remote_hosts[0] (h)",
                "pasword",
                "unknown field",
            ),
            (
                "[[remote_hosts]]\nhost='a;id'\nusername='u'\npassword='p'",
                "remote_hosts[0] (a;id)",
                "host",
                "not a DNS name",
            ),
            (
                "[[remote_hosts]]\nhost='$(id)'\nusername='u'\npassword='p'",
                "remote_hosts[0] ($(id))",
                "host",
                "not a DNS name",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u u'\npassword='p'",
                "remote_hosts[0] (h)",
                "username",
                "not a valid user name",
            ),
            (
                "[[remote_hosts]]\nname='localhost'\nhost='h'\nusername='u'\npassword='p'",
                "remote_hosts[0] (localhost)",
                "name",
                "local machine",
            ),
            (
                "[[remote_hosts]]\nhost='h'\nusername='u'\npassword='p'\npassword_env='WEB1_PASSWORD'",
                "remote_hosts[0] (h)",
                "password",
                "only one of",
            ),
            (
                "[ssh]\nhost_key_policy='yolo'",
                "[ssh]",
                "host_key_policy",
                "yolo",
            ),
            (
                "[ssh]\nconnect_timeout_secs=0",
                "[ssh]",
                "connect_timeout_secs",
                "1..=86400",
            ),
            (
                "[ssh]\nknown_host='x'",
                "[ssh]",
                "known_host",
                "unknown field",
            ),
        ];
        for (text, entry, field, problem) in cases {
            let err = problem_of(text);
            let err = &*err;
            let msg = err.to_string();
            assert!(msg.contains("/etc/test.toml"), "{text}: {msg}");
            match &err {
                ConfigError::Invalid {
                    entry: e,
                    field: f,
                    problem: p,
                    ..
                } => {
                    assert_eq!(e, entry, "{text}: {msg}");
                    assert_eq!(f, field, "{text}: {msg}");
                    assert!(p.contains(problem), "{text}: {msg}");
                }
                other => panic!("{text}: expected Invalid, got {other:?}"),
            }
        }
    }

    /// The problem a config text has: a whole-file error, else the `[ssh]` error, else the
    /// last unusable entry's.
    fn problem_of(text: &str) -> Arc<ConfigError> {
        match parse(text) {
            Err(e) => Arc::new(e),
            Ok(c) => c
                .ssh_error
                .clone()
                .or_else(|| c.broken_hosts.last().map(|b| Arc::clone(&b.error)))
                .unwrap_or_else(|| panic!("{text}: expected a problem, got {c:?}")),
        }
    }

    #[test]
    fn syntax_error_names_file() {
        let err = parse("[[remote_hosts]\nhost=").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        assert!(err.to_string().contains("/etc/test.toml"));
        let err = parse("unknown_table = 1").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { entry, field, .. } if entry == "top level" && field == "unknown_table"),
            "{err}"
        );
    }

    const SECRET: &str = "Inl1ne-P4ss-0042";

    /// Every TOML syntax error near an inline password names file, line and column and never
    /// quotes the password.
    #[test]
    fn syntax_errors_never_quote_the_secret() {
        let head = "[ssh]\nconnect_timeout_secs = 5\n\n[[remote_hosts]]\nname = \"web-1\"\nhost = \"10.0.0.1\"\nusername = \"ops\"\n";
        // (what, the secret's line (line 8 of the file), what follows it, where the error is)
        let cases: &[(&str, String, &str, (usize, usize))] = &[
            (
                "unclosed string",
                format!("password = \"{SECRET}"),
                "\nport = 22\n",
                (8, 29),
            ),
            (
                "duplicate key",
                format!("password = \"{SECRET}\"\npassword = \"{SECRET}\""),
                "\n",
                (9, 1),
            ),
            (
                "trailing text",
                format!("password = \"{SECRET}\" and more"),
                "\n",
                (8, 31),
            ),
            (
                "bad escape",
                format!("password = \"Inl1ne\\q{SECRET}\""),
                "\n",
                (8, 20),
            ),
            (
                "control character",
                format!("password = \"{SECRET}\u{1}x\""),
                "\n",
                (8, 29),
            ),
            ("bare value", format!("password = {SECRET}"), "\n", (8, 12)),
            // Reported at the end of the file, where the closing quotes were due.
            (
                "unclosed triple quote",
                format!("password = \"\"\"{SECRET}"),
                "\nport = 22\n",
                (10, 1),
            ),
            (
                "inline table, error later on the line",
                format!("creds = {{ password = \"{SECRET}\" }} = 1"),
                "\n",
                (8, 43),
            ),
            (
                "unclosed literal string",
                format!("password = '{SECRET}"),
                "\nport = 22\n",
                (8, 29),
            ),
            ("secret as a bare key", SECRET.to_string(), "\n", (8, 17)),
        ];
        for (what, line, tail, (want_line, want_column)) in cases {
            let text = format!("{head}{line}{tail}");
            let err = parse(&text).expect_err(what);
            let msg = err.to_string();
            assert!(!msg.contains("Inl1ne"), "{what}: secret in {msg}");
            assert!(!format!("{err:?}").contains("Inl1ne"), "{what}: {err:?}");
            let ConfigError::Syntax { line, column, .. } = &err else {
                panic!("{what}: expected a syntax error, got {msg}");
            };
            assert_eq!(
                (*line, *column),
                (Some(*want_line), Some(*want_column)),
                "{what}: {msg}"
            );
            assert!(msg.contains("/etc/test.toml"), "{what}: {msg}");
            assert!(
                msg.contains(&format!("line {want_line}, column {want_column}: ")),
                "{what}: {msg}"
            );
        }
    }

    #[test]
    fn parser_messages_are_scrubbed_of_quoted_text() {
        assert_eq!(
            scrub_parser_message("invalid basic string, expected `\"`"),
            "invalid basic string, expected `\"`"
        );
        assert_eq!(
            scrub_parser_message("invalid type: string \"hunter2\", expected `long-token`"),
            "invalid type: string \"…\", expected `…`"
        );
    }

    /// Shapes that parse as TOML but put a secret where a structure or a name belongs: the
    /// error names the field and never quotes the value.
    #[test]
    fn shape_and_value_errors_never_quote_the_secret() {
        let entry = |extra: &str| {
            format!("[[remote_hosts]]\nname = \"w\"\nhost = \"h\"\nusername = \"u\"\n{extra}\n")
        };
        let cases = [
            format!("remote_hosts = \"{SECRET}\""),
            format!("ssh = \"{SECRET}\""),
            format!("remote_hosts = [\"{SECRET}\"]"),
            format!("[ssh]\nknown_hosts = [\"{SECRET}\"]"),
            entry(&format!("password = [\"{SECRET}\"]")),
            entry(&format!("password = {{ value = \"{SECRET}\" }}")),
            entry(&format!("password_env = \"{SECRET}\"")),
            entry(&format!(
                "password_env = \"{SECRET}\"\npassword = \"{SECRET}\""
            )),
            entry(&format!(
                "key_file = \"/nonexistent\"\nkey_passphrase_env = \"{SECRET}\""
            )),
            entry(&format!("port = \"{SECRET}\"\npassword = \"{SECRET}\"")),
            entry(&format!("use_agent = \"{SECRET}\"")),
            entry(&format!("paswort = \"{SECRET}\"")),
        ];
        for text in &cases {
            let err = problem_of(text);
            let msg = err.to_string();
            assert!(!msg.contains("Inl1ne"), "{text}: {msg}");
            assert!(msg.contains("/etc/test.toml"), "{text}: {msg}");
            assert!(
                matches!(&*err, ConfigError::Invalid { .. }),
                "{text}: {msg}"
            );
            // And the warnings the whole config carries are clean too.
            if let Ok(c) = parse(text) {
                for w in &c.warnings {
                    assert!(!w.contains("Inl1ne"), "{text}: {w}");
                }
            }
        }
    }

    /// A bad entry disables that entry only: the others are usable, and a call naming it gets
    /// an error naming file, entry and field.
    #[test]
    fn bad_entry_disables_only_itself() {
        let c = parse(
            "[[remote_hosts]]\nname='good'\nhost='10.0.0.1'\nusername='u'\npassword='p'\n\
             [[remote_hosts]]\nname='bad'\nhost='10.0.0.2'\nusername='u'\npassword_env='NOT_SET_VAR'\n\
             [[remote_hosts]]\nname='good'\nhost='10.0.0.3'\nusername='u'\npassword='p'\n\
             [[remote_hosts]]\nhost='10.0.0.4'\nusername='u'\npassword='p'\n",
        )
        .unwrap();
        assert_eq!(c.remote_hosts.len(), 2, "{c:?}");
        assert_eq!(c.broken_hosts.len(), 2, "{c:?}");
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        match c.lookup_host("bad") {
            HostLookup::Unusable(e) => {
                let m = e.to_string();
                assert!(m.contains("/etc/test.toml"), "{m}");
                assert!(m.contains("remote_hosts[1] (bad)"), "{m}");
                assert!(m.contains("`password_env`"), "{m}");
                assert!(m.contains("NOT_SET_VAR is not set"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // By address too.
        assert!(matches!(c.lookup_host("10.0.0.2"), HostLookup::Unusable(_)));
        // The duplicated name is ambiguous: its error, not the first entry.
        match c.lookup_host("good") {
            HostLookup::Unusable(e) => assert!(e.to_string().contains("duplicate name"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.lookup_host("10.0.0.1"), HostLookup::Usable(h) if h.name == "good"));
        assert!(matches!(c.lookup_host("10.0.0.4"), HostLookup::Usable(_)));
        assert!(matches!(c.lookup_host("nope"), HostLookup::NotConfigured));
    }

    #[test]
    fn bad_ssh_table_disables_remote_hosts_only() {
        let c = parse(
            "[ssh]\nhost_key_policy='yolo'\n[[remote_hosts]]\nname='a'\nhost='h'\nusername='u'\npassword='p'",
        )
        .unwrap();
        assert_eq!(c.remote_hosts.len(), 1);
        match c.lookup_host("a") {
            HostLookup::Unusable(e) => assert!(e.to_string().contains("host_key_policy"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.lookup_host("b"), HostLookup::NotConfigured));
        assert!(
            c.warnings[0].contains("local machine still works"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = parse(
            "[[remote_hosts]]\nname='w'\nhost='h'\nusername='u'\npassword='hunter2'\n[[remote_hosts]]\nname='v'\nhost='h2'\nusername='u'\npassword_env='WEB1_PASSWORD'",
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("s3cret-env"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(!c.remote_hosts[0].auth_method().contains("hunter2"));
        assert_eq!(c.remote_hosts[0].auth_method(), "password (in config)");
        let AuthMethod::Password { secret, .. } = &c.remote_hosts[1].auth[0] else {
            panic!("expected password");
        };
        assert_eq!(secret.expose(), "s3cret-env");
    }

    #[test]
    fn password_file_and_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "filepass\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let key = dir.path().join("id");
        std::fs::write(&key, "not really a key").unwrap();
        let text = format!(
            "[[remote_hosts]]\nname='a'\nhost='h'\nusername='u'\npassword_file='{}'\n[[remote_hosts]]\nname='b'\nhost='h'\nusername='u'\nkey_file='{}'\nkey_passphrase_env='KEY_PASS'",
            pw.display(),
            key.display()
        );
        let c = parse(&text).unwrap();
        let AuthMethod::Password { secret, .. } = &c.remote_hosts[0].auth[0] else {
            panic!("expected password");
        };
        assert_eq!(secret.expose(), "filepass");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("chmod 600"));
        assert_eq!(
            c.remote_hosts[1].auth_method(),
            format!("publickey ({}, with passphrase)", key.display())
        );
    }

    #[test]
    fn lookup_order_explicit_env_default() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let default = home.join(".config/netstat-mcp/config.toml");
        std::fs::create_dir_all(default.parent().unwrap()).unwrap();
        std::fs::write(
            &default,
            "[[remote_hosts]]\nname='from-default'\nhost='h'\nusername='u'\nuse_agent=true",
        )
        .unwrap();
        let via_env = dir.path().join("env.toml");
        std::fs::write(
            &via_env,
            "[[remote_hosts]]\nname='from-env'\nhost='h'\nusername='u'\nuse_agent=true",
        )
        .unwrap();
        let explicit = dir.path().join("explicit.toml");
        std::fs::write(
            &explicit,
            "[[remote_hosts]]\nname='from-explicit'\nhost='h'\nusername='u'\nuse_agent=true",
        )
        .unwrap();
        let home_s = home.to_string_lossy().to_string();
        let env_s = via_env.to_string_lossy().to_string();
        let with_env = |n: &str| match n {
            "HOME" => Some(home_s.clone()),
            CONFIG_ENV => Some(env_s.clone()),
            _ => None,
        };
        let no_env = |n: &str| (n == "HOME").then(|| home_s.clone());
        let name = |c: NetstatConfig| c.remote_hosts[0].name.clone();
        assert_eq!(
            name(NetstatConfig::load_with(Some(&explicit), &with_env).unwrap()),
            "from-explicit"
        );
        assert_eq!(
            name(NetstatConfig::load_with(None, &with_env).unwrap()),
            "from-env"
        );
        assert_eq!(
            name(NetstatConfig::load_with(None, &no_env).unwrap()),
            "from-default"
        );
        // No file at the default place: local only. A missing explicit file is an error.
        std::fs::remove_file(&default).unwrap();
        assert!(
            NetstatConfig::load_with(None, &no_env)
                .unwrap()
                .remote_hosts
                .is_empty()
        );
        let missing = dir.path().join("missing.toml");
        let err = NetstatConfig::load_with(Some(&missing), &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.toml"));
        // $NETSTAT_MCP_CONFIG naming no file: local only (logged), not an error.
        let missing_s = missing.to_string_lossy().to_string();
        let env_missing = |n: &str| match n {
            "HOME" => Some(home_s.clone()),
            CONFIG_ENV => Some(missing_s.clone()),
            _ => None,
        };
        let c = NetstatConfig::load_with(None, &env_missing).unwrap();
        assert!(c.remote_hosts.is_empty());
        assert!(c.warnings[0].contains("missing.toml"), "{:?}", c.warnings);
        // No file at the default place is the normal local-only case: no warning.
        assert!(
            NetstatConfig::load_with(None, &no_env)
                .unwrap()
                .warnings
                .is_empty()
        );

        // An unreadable file at the default place (here a directory, which even root cannot
        // read as a file; in life another user's HOME): a warning, local only.
        std::fs::create_dir_all(&default).unwrap();
        let c = NetstatConfig::load_with(None, &no_env).unwrap();
        assert!(c.remote_hosts.is_empty());
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("default config file")
                && c.warnings[0].contains(&default.display().to_string())
                && c.warnings[0].contains("only the local machine"),
            "{:?}",
            c.warnings
        );
        // The same file given explicitly stays an error.
        let err = NetstatConfig::load_with(Some(&default), &no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn inline_password_in_open_file_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[[remote_hosts]]\nhost='h'\nusername='u'\npassword='p'").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = NetstatConfig::load_with(Some(&f), &|_| None).unwrap();
        assert_eq!(c.warnings.len(), 1);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = NetstatConfig::load_with(Some(&f), &|_| None).unwrap();
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn local_host_spellings() {
        for h in [
            None,
            Some(""),
            Some("localhost"),
            Some("127.0.0.1"),
            Some("::1"),
        ] {
            assert!(is_local_host(h), "{h:?}");
        }
        assert!(!is_local_host(Some("web-1")));
        assert!(!is_local_host(Some("127.0.0.2")));
    }
}
