//! The configured remote hosts as a source knows them — what `list_hosts` shows, never a
//! secret. The query layer turns them into its answer (`HostsData`).

use schemars::JsonSchema;
use serde::Serialize;

/// The configured remote hosts.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredHosts {
    /// Where the configuration came from; `None` when there is no config file.
    pub(crate) config: Option<String>,
    pub(crate) hosts: Vec<HostInfo>,
    pub(crate) unusable: Vec<UnusableHost>,
}

/// A configured entry that cannot be used: a `[[remote_hosts]]` entry that failed validation,
/// or an ssh_config alias we cannot log in to. Never a secret.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct UnusableHost {
    /// The name a caller would pass as `host`, when the entry has one.
    pub(crate) name: Option<String>,
    /// Where it is configured: `remote_hosts[2] (web-1)`, or the ssh_config alias.
    pub(crate) entry: String,
    /// Why it cannot be used (file, entry, field), as a call naming it reports it.
    pub(crate) problem: String,
}

/// A configured remote host, as `list_hosts` and the CLI's `hosts` show it: never a secret.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub(crate) struct HostInfo {
    /// The name to pass as `host`.
    pub(crate) name: String,
    /// Its address or DNS name.
    pub(crate) host: String,
    /// Its SSH port.
    pub(crate) port: u16,
    pub(crate) username: String,
    /// How we authenticate: password, key, agent (the method only).
    pub(crate) auth: String,
    /// Groups it belongs to (address a group as `@name`).
    pub(crate) groups: Vec<String>,
    /// The bastions it is reached through (ProxyJump), outermost first; empty when direct.
    pub(crate) via: Vec<String>,
    /// Where it is configured: `config` (a `[[remote_hosts]]` entry) or `ssh_config` (a
    /// `Host` alias).
    pub(crate) source: String,
}
