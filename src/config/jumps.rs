//! ProxyJump chains: every host's `proxy_jump` (TOML) or `ProxyJump` (ssh_config) resolved
//! into the bastions to go through, outermost first.
//!
//! A hop that names a configured host (a `[[remote_hosts]]` name or an ssh_config alias) is
//! that host, with its own credentials, known_hosts and, recursively, its own chain in front
//! of it. Any other hop (`user@host:port`) needs ssh_config: it gets the settings ssh_config
//! gives that host name. Loops and chains longer than [`MAX_JUMP_HOPS`] are refused. A host
//! whose chain cannot be resolved is moved to `broken_hosts` with the reason.

use std::path::Path;
use std::sync::Arc;

use super::ssh_aliases::hop_host;
use super::ssh_config::{SshConfigFile, parse_proxy_jump};
use super::{BrokenHost, ConfigError, HostOrigin, MAX_JUMP_HOPS, NetstatConfig, RemoteHost};

pub(super) fn resolve(
    config: &mut NetstatConfig,
    home: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) {
    if config
        .remote_hosts
        .iter()
        .all(|h| h.proxy_jump_spec.is_none())
    {
        return;
    }
    let all = config.remote_hosts.clone();
    let broken: Vec<String> = config
        .broken_hosts
        .iter()
        .filter_map(|b| b.name.clone())
        .collect();
    let file = config.ssh_config.clone();
    let mut kept = Vec::with_capacity(all.len());
    for mut host in std::mem::take(&mut config.remote_hosts) {
        let Some(spec) = host.proxy_jump_spec.clone() else {
            kept.push(host);
            continue;
        };
        let ctx = Ctx {
            all: &all,
            broken: &broken,
            file: file.as_deref(),
            home,
            env,
        };
        let mut path = vec![host.name.clone()];
        match ctx.chain(&spec, &mut path) {
            Ok(hops) => {
                host.proxy_jump = hops;
                kept.push(host);
            }
            Err(problem) => {
                let (file_path, entry, field) = match &host.origin {
                    HostOrigin::SshConfig { file, line } => (
                        file.clone(),
                        format!("Host {} (line {line})", host.name),
                        "ProxyJump",
                    ),
                    _ => (
                        config.path.clone().unwrap_or_default(),
                        format!("remote_hosts ({})", host.name),
                        "proxy_jump",
                    ),
                };
                let error = ConfigError::Invalid {
                    path: file_path,
                    entry,
                    field: field.into(),
                    problem,
                };
                config.warnings.push(format!(
                    "{error}; calls to this host fail with this error (other hosts still work)"
                ));
                config.broken_hosts.push(BrokenHost {
                    entry: host.name.clone(),
                    name: Some(host.name.clone()),
                    host: Some(host.host.clone()),
                    error: Arc::new(error),
                });
            }
        }
    }
    config.remote_hosts = kept;
}

struct Ctx<'a> {
    all: &'a [RemoteHost],
    broken: &'a [String],
    file: Option<&'a SshConfigFile>,
    home: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    /// The hops `spec` stands for; `path` holds the hosts being resolved (loop detection).
    fn chain(&self, spec: &str, path: &mut Vec<String>) -> Result<Vec<RemoteHost>, String> {
        let mut out = Vec::new();
        for hop in parse_proxy_jump(spec)? {
            let configured = self.all.iter().find(|h| h.name == hop.host);
            let mut base = match configured {
                Some(c) => {
                    let mut c = c.clone();
                    if let Some(u) = &hop.user {
                        c.username = u.clone();
                    }
                    if let Some(p) = hop.port {
                        c.port = p;
                    }
                    c
                }
                None if self.broken.iter().any(|b| b == &hop.host) => {
                    return Err(format!(
                        "bastion `{}` is a configured host that cannot be used (see its own error)",
                        hop.host
                    ));
                }
                None => match self.file {
                    Some(file) => hop_host(file, &hop, self.home, self.env)?,
                    None => {
                        return Err(format!(
                            "bastion `{}` is not the name of a configured host; name a [[remote_hosts]] entry (or enable [ssh] use_ssh_config for user@host:port hops)",
                            hop.host
                        ));
                    }
                },
            };
            if path.contains(&base.name) {
                return Err(format!(
                    "ProxyJump loop: {} -> {}",
                    path.join(" -> "),
                    base.name
                ));
            }
            if path.len() > MAX_JUMP_HOPS {
                return Err(format!("more than {MAX_JUMP_HOPS} bastions in a chain"));
            }
            if let Some(inner) = base.proxy_jump_spec.clone() {
                path.push(base.name.clone());
                let before = self.chain(&inner, path);
                path.pop();
                out.extend(before?);
            }
            base.proxy_jump = Vec::new();
            out.push(base);
        }
        if out.len() > MAX_JUMP_HOPS {
            return Err(format!("more than {MAX_JUMP_HOPS} bastions in a chain"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{HostLookup, HostOrigin, NetstatConfig};
    use std::path::Path;

    fn parse(text: &str, home: &Path, agent: bool) -> NetstatConfig {
        let env = move |name: &str| match name {
            "USER" => Some("ops".to_string()),
            "SSH_AUTH_SOCK" if agent => Some("/run/agent.sock".to_string()),
            _ => None,
        };
        NetstatConfig::parse(text, &home.join("config.toml"), Some(home), &env).unwrap()
    }

    #[test]
    fn toml_chains_groups_and_parallelism() {
        let home = tempfile::tempdir().unwrap();
        let c = parse(
            "[ssh]\nmax_parallel = 4\n\n[[remote_hosts]]\nname = \"edge\"\nhost = \"10.9.0.1\"\nusername = \"ops\"\npassword = \"x\"\n\n[[remote_hosts]]\nname = \"bastion\"\nhost = \"10.9.0.2\"\nusername = \"ops\"\npassword = \"x\"\nproxy_jump = \"edge\"\n\n[[remote_hosts]]\nname = \"inner\"\nhost = \"10.9.1.1\"\nusername = \"ops\"\npassword = \"x\"\nproxy_jump = \"bastion\"\ngroups = [\"prod\", \"@db\"]\n\n[[remote_hosts]]\nname = \"lost\"\nhost = \"10.9.1.2\"\nusername = \"ops\"\npassword = \"x\"\nproxy_jump = \"nowhere\"\n\n[[remote_hosts]]\nname = \"a\"\nhost = \"10.9.1.3\"\nusername = \"ops\"\npassword = \"x\"\nproxy_jump = \"b\"\n\n[[remote_hosts]]\nname = \"b\"\nhost = \"10.9.1.4\"\nusername = \"ops\"\npassword = \"x\"\nproxy_jump = \"a\"\n",
            home.path(),
            false,
        );
        assert_eq!(c.ssh.max_parallel, 4);
        let inner = c.find_host("inner").unwrap();
        let hops: Vec<&str> = inner.proxy_jump.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hops, ["edge", "bastion"]);
        assert!(inner.proxy_jump.iter().all(|h| h.proxy_jump.is_empty()));
        assert_eq!(inner.groups, ["prod", "db"]);
        assert_eq!(inner.label(), "inner (10.9.1.1) via edge, bastion");
        match c.lookup_host("lost") {
            HostLookup::Unusable(e) => {
                assert!(
                    e.to_string().contains(
                        "field `proxy_jump`: bastion `nowhere` is not the name of a configured host"
                    ),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        match c.lookup_host("a") {
            HostLookup::Unusable(e) => assert!(e.to_string().contains("ProxyJump loop"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The good hosts are unaffected.
        assert!(matches!(c.lookup_host("edge"), HostLookup::Usable(_)));
    }

    #[test]
    fn ssh_config_aliases_become_hosts() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        std::fs::create_dir(h.join(".ssh")).unwrap();
        std::fs::write(h.join(".ssh/id_fleet"), "key").unwrap();
        std::fs::write(
            h.join(".ssh/config"),
            "Host bastion\n  HostName 10.8.0.1\n  User jump\n  IdentityFile ~/.ssh/id_fleet\n\
             Host inner\n  HostName 10.8.1.1\n  ProxyJump bastion\n  UserKnownHostsFile ~/.ssh/kh_inner\n\
             Host deep\n  HostName 10.8.2.1\n  ProxyJump root@10.8.0.9:2222,inner\n\
             Host piped\n  ProxyCommand nc %h %p\n\
             Host web-*\n  User web\n\
             Host *\n  IdentityFile ~/.ssh/id_fleet\n",
        )
        .unwrap();
        let c = parse(
            "[ssh]\nuse_ssh_config = true\n\n[[remote_hosts]]\nname = \"bastion\"\nhost = \"10.7.0.1\"\nusername = \"toml\"\npassword = \"x\"\n",
            h,
            false,
        );
        // The TOML entry wins over the alias of the same name, with a warning.
        assert_eq!(c.find_host("bastion").unwrap().host, "10.7.0.1");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("Host bastion is also the name")),
            "{:?}",
            c.warnings
        );
        let inner = c.find_host("inner").unwrap();
        assert_eq!(inner.username, "ops");
        assert_eq!(inner.proxy_jump[0].host, "10.7.0.1");
        assert_eq!(
            inner.known_hosts.as_deref(),
            Some(h.join(".ssh/kh_inner").as_path())
        );
        assert!(matches!(
            inner.origin,
            HostOrigin::SshConfig { line: 5, .. }
        ));
        let deep = c.find_host("deep").unwrap();
        let hops: Vec<&str> = deep.proxy_jump.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hops, ["root@10.8.0.9:2222", "bastion", "inner"]);
        assert_eq!(deep.proxy_jump[0].port, 2222);
        assert_eq!(deep.proxy_jump[0].origin, HostOrigin::JumpHop);
        match c.lookup_host("piped") {
            HostLookup::Unusable(e) => assert!(e.to_string().contains("ProxyCommand"), "{e}"),
            other => panic!("{other:?}"),
        }
        // A wildcard block is no host.
        assert!(c.find_host("web-*").is_none());

        // Without credentials an alias is listed as unusable, and says why.
        std::fs::remove_file(h.join(".ssh/id_fleet")).unwrap();
        let c = parse("[ssh]\nuse_ssh_config = true\n", h, false);
        match c.lookup_host("inner") {
            HostLookup::Unusable(e) => {
                assert!(e.to_string().contains("no usable authentication"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let c = parse("[ssh]\nuse_ssh_config = true\n", h, true);
        assert!(c.find_host("inner").is_some());
    }
}
