//! Our TOML file (`[ssh]`, `[[remote_hosts]]`) into a [`NetstatConfig`]: syntax errors with a
//! position and no quoted text, per-entry validation (a bad entry disables only itself), secrets
//! resolved into [`Secret`]s. ssh_config aliases and ProxyJump chains are added afterwards by
//! the parent module.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{
    AuthMethod, BrokenHost, ConfigError, HostKeyPolicy, HostOrigin, NetstatConfig, PasswordSource,
    RemoteHost, Secret, SshSettings, expand_tilde, is_local_host,
};

/// Parses and validates config text (see [`NetstatConfig::parse`]).
pub(super) fn parse(
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
    let mut actions_table = None;
    let mut host_values = Vec::new();
    for (key, value) in top {
        match (key.as_str(), value) {
            ("ssh", toml::Value::Table(t)) => ssh_table = Some(t),
            ("actions", toml::Value::Table(t)) => actions_table = Some(t),
            ("remote_hosts", toml::Value::Array(items)) => host_values = items,
            (field @ ("ssh" | "actions" | "remote_hosts"), other) => {
                let want = match field {
                    "ssh" => "a table ([ssh])",
                    "actions" => "a table ([actions])",
                    _ => "an array of tables ([[remote_hosts]])",
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
                    "unknown field, expected `ssh`, `actions` or `remote_hosts`".into(),
                ));
            }
        }
    }

    // A bad [actions] table is an error of the whole file: guessing what an operator meant
    // about signalling processes is not ours to do.
    let actions = match actions_table {
        None => super::Actions::default(),
        Some(t) => parse_actions(t, &invalid)?,
    };
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
        ssh_config: None,
        actions,
        warnings,
    })
}

/// `[actions]`: `allow_kill`, `require_elicitation` (both true or false).
fn parse_actions(
    table: toml::Table,
    invalid: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<super::Actions, ConfigError> {
    let mut actions = super::Actions::default();
    for (key, value) in table {
        let Some(flag) = value.as_bool() else {
            return Err(invalid(
                "[actions]",
                &key.escape_debug().to_string(),
                format!(
                    "invalid type: must be true or false, got {}",
                    value.type_str()
                ),
            ));
        };
        match key.as_str() {
            "allow_kill" => actions.allow_kill = flag,
            "require_elicitation" => actions.require_elicitation = flag,
            other => {
                return Err(invalid(
                    "[actions]",
                    &other.escape_debug().to_string(),
                    "unknown field, expected `allow_kill` or `require_elicitation`".into(),
                ));
            }
        }
    }
    Ok(actions)
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
    if let Some(n) = s.max_parallel {
        ssh.max_parallel = usize::try_from(n)
            .ok()
            .filter(|n| (1..=crate::config::MAX_HOSTS_PER_CALL).contains(n))
            .ok_or_else(|| {
                invalid(
                    "[ssh]",
                    "max_parallel",
                    format!(
                        "must be 1..={} hosts at once, got {n}",
                        crate::config::MAX_HOSTS_PER_CALL
                    ),
                )
            })?;
    }
    ssh.ssh_config = match (s.ssh_config, s.use_ssh_config) {
        (Some(p), Some(false)) => {
            return Err(invalid(
                "[ssh]",
                "use_ssh_config",
                format!(
                    "is false while ssh_config names {}; remove one of them",
                    p.escape_debug()
                ),
            ));
        }
        (Some(p), _) if p.trim().is_empty() => {
            return Err(invalid("[ssh]", "ssh_config", "must not be empty".into()));
        }
        (Some(p), _) => Some(expand_tilde(p.trim(), home)),
        (None, Some(true)) => Some(expand_tilde("~/.ssh/config", home)),
        (None, _) => None,
    };
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
    let cx = HostEntry {
        entry,
        home,
        env,
        invalid,
    };
    let RawHost {
        name,
        host,
        port,
        username,
        password,
        password_env,
        password_file,
        key_file,
        key_passphrase_env,
        use_agent,
        agent_socket,
        proxy_jump,
        groups,
        allow_kill,
    } = h;
    let (name, host, port, username) = cx.identity(name, host, port, username)?;
    let mut auth = Vec::new();
    auth.extend(cx.key(key_file, key_passphrase_env)?);
    if use_agent == Some(true) || agent_socket.is_some() {
        auth.push(AuthMethod::Agent {
            socket: agent_socket.map(|s| expand_tilde(&s, home)),
        });
    }
    auth.extend(cx.password(password, password_env, password_file, warnings)?);
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
        groups: cx.groups(groups.unwrap_or_default())?,
        proxy_jump: Vec::new(),
        proxy_jump_spec: match proxy_jump.map(|j| j.trim().to_string()) {
            Some(j) if j.is_empty() || j.eq_ignore_ascii_case("none") => None,
            other => other,
        },
        known_hosts: None,
        origin: HostOrigin::ConfigFile,
        allow_kill: allow_kill.unwrap_or(false),
    })
}

/// One `[[hosts]]` entry being read: where it is, how its errors are worded, the environment.
struct HostEntry<'a> {
    entry: &'a str,
    home: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
    invalid: &'a dyn Fn(&str, &str, String) -> ConfigError,
}

impl HostEntry<'_> {
    fn invalid(&self, field: &str, problem: String) -> ConfigError {
        (self.invalid)(self.entry, field, problem)
    }

    /// Name (default: the host), address, SSH port (default 22) and user, checked.
    fn identity(
        &self,
        name: Option<String>,
        host: String,
        port: Option<i64>,
        username: String,
    ) -> Result<(String, String, u16, String), ConfigError> {
        let host = host.trim().to_string();
        check_host(&host).map_err(|problem| self.invalid("host", problem))?;
        let name = match name {
            Some(n) => {
                let n = n.trim().to_string();
                check_name(&n).map_err(|problem| self.invalid("name", problem))?;
                n
            }
            None => host.clone(),
        };
        if is_local_host(Some(&name)) {
            return Err(self.invalid(
                "name",
                format!("`{name}` means the local machine to callers; give the entry another name"),
            ));
        }
        let port = match port {
            None => 22,
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| self.invalid("port", format!("must be 1..=65535, got {p}")))?,
        };
        let username = username.trim().to_string();
        check_username(&username).map_err(|problem| self.invalid("username", problem))?;
        Ok((name, host, port, username))
    }

    /// `key_file` (readable now) with its passphrase from `key_passphrase_env`.
    fn key(
        &self,
        key_file: Option<String>,
        passphrase_env: Option<String>,
    ) -> Result<Option<AuthMethod>, ConfigError> {
        let Some(k) = key_file else {
            return match passphrase_env {
                Some(_) => Err(self.invalid(
                    "key_passphrase_env",
                    "only makes sense with key_file".into(),
                )),
                None => Ok(None),
            };
        };
        let path = expand_tilde(&k, self.home);
        if let Err(e) = std::fs::File::open(&path) {
            return Err(self.invalid("key_file", format!("cannot read {}: {e}", path.display())));
        }
        let passphrase = match passphrase_env {
            None => None,
            Some(var) => Some(secret_from_env(
                &var,
                "key_passphrase_env",
                self.entry,
                self.env,
                self.invalid,
            )?),
        };
        Ok(Some(AuthMethod::KeyFile { path, passphrase }))
    }

    /// At most one of `password`, `password_env`, `password_file`.
    fn password(
        &self,
        inline: Option<String>,
        from_env: Option<String>,
        from_file: Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<AuthMethod>, ConfigError> {
        let given = [inline.is_some(), from_env.is_some(), from_file.is_some()];
        if given.iter().filter(|b| **b).count() > 1 {
            return Err(self.invalid(
                "password",
                "give only one of password, password_env, password_file".into(),
            ));
        }
        Ok(if let Some(p) = inline {
            Some(AuthMethod::Password {
                secret: Secret::new(p),
                source: PasswordSource::Inline,
            })
        } else if let Some(var) = from_env {
            let secret = secret_from_env(&var, "password_env", self.entry, self.env, self.invalid)?;
            Some(AuthMethod::Password {
                secret,
                source: PasswordSource::Env(var),
            })
        } else if let Some(f) = from_file {
            let file = expand_tilde(&f, self.home);
            let value = crate::text_file::read_text(&file, 64 * 1024).map_err(|e| {
                self.invalid(
                    "password_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let value = Zeroizing::new(value);
            let trimmed = value.trim_end_matches(['\n', '\r']).to_string();
            check_private(&file, "a password", warnings);
            Some(AuthMethod::Password {
                secret: Secret::new(trimmed),
                source: PasswordSource::File(file),
            })
        } else {
            None
        })
    }

    /// Group names, `@` optional, each once.
    fn groups(&self, given: Vec<String>) -> Result<Vec<String>, ConfigError> {
        let mut groups = Vec::new();
        for g in given {
            let g = g.trim().trim_start_matches('@').to_string();
            check_name(&g).map_err(|problem| self.invalid("groups", problem))?;
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        Ok(groups)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    known_hosts: Option<String>,
    host_key_policy: Option<String>,
    connect_timeout_secs: Option<i64>,
    command_timeout_secs: Option<i64>,
    idle_timeout_secs: Option<i64>,
    use_ssh_config: Option<bool>,
    ssh_config: Option<String>,
    max_parallel: Option<i64>,
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
    proxy_jump: Option<String>,
    groups: Option<Vec<String>>,
    allow_kill: Option<bool>,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    StrList,
}

const SSH_FIELDS: &[(&str, Kind)] = &[
    ("known_hosts", Kind::Str),
    ("host_key_policy", Kind::Str),
    ("connect_timeout_secs", Kind::Int),
    ("command_timeout_secs", Kind::Int),
    ("idle_timeout_secs", Kind::Int),
    ("use_ssh_config", Kind::Bool),
    ("ssh_config", Kind::Str),
    ("max_parallel", Kind::Int),
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
    ("proxy_jump", Kind::Str),
    ("groups", Kind::StrList),
    ("allow_kill", Kind::Bool),
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
            Kind::StrList => (
                value
                    .as_array()
                    .is_some_and(|a| a.iter().all(toml::Value::is_str)),
                "an array of strings",
            ),
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
pub(super) fn check_host(host: &str) -> Result<(), String> {
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
        let shown: String = host.chars().take(80).collect();
        let quoted = if shown.len() < host.len() {
            format!(
                "`{}…` ({} characters)",
                shown.escape_debug(),
                host.chars().count()
            )
        } else {
            format!("`{}`", host.escape_debug())
        };
        Err(format!("{quoted} is not a DNS name or IP address"))
    }
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
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

pub(super) fn check_username(user: &str) -> Result<(), String> {
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
pub(super) fn check_private(path: &Path, what: &str, warnings: &mut Vec<String>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CONFIG_ENV, HostLookup};
    use std::path::PathBuf;

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
