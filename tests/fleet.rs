//! Remote hosts at fleet scale, against real OpenSSH servers in network namespaces this test
//! makes (`support::fleet`): ssh_config aliases, ProxyJump through bastions, many hosts per
//! call, other operating systems' listings, filters applied on the remote side.

use netstat_mcp::config::NetstatConfig;
use netstat_mcp::source::remote::commands::{self, Filter, Listing};
use netstat_mcp::ssh::SshPool;

use crate::support::fleet::{Fleet, HostSpec};
use crate::support::sshd::{PASSWORD, USER};

fn toml_for(fleet: &Fleet, names: &[&str], extra: &str) -> String {
    let mut text = format!(
        "[ssh]\nknown_hosts = \"{}\"\n\n",
        fleet.known_hosts.display()
    );
    for n in names {
        let h = fleet.host(n);
        text.push_str(&format!(
            "[[remote_hosts]]\nname = \"{n}\"\nhost = \"{}\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n{extra}\n\n",
            h.addr
        ));
    }
    text
}

fn config(text: &str, fleet: &Fleet) -> NetstatConfig {
    NetstatConfig::parse(text, &fleet.root().join("config.toml"), None, &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_hosts_answer_in_their_own_namespaces() {
    let fleet = Fleet::start(&[HostSpec::reachable("a"), HostSpec::reachable("b")]);
    let cfg = config(&toml_for(&fleet, &["a", "b"], ""), &fleet);
    let pool = SshPool::new(cfg.ssh.clone());
    for name in ["a", "b"] {
        let host = cfg.find_host(name).unwrap().clone();
        let out = pool
            .run(
                &host,
                None,
                commands::command(Listing::Ss, &Filter::none(), true),
            )
            .await
            .unwrap();
        let addr = format!("{}:22", fleet.host(name).addr);
        assert!(out.stdout.contains(&addr), "{name}: {}", out.stdout);
    }
}
