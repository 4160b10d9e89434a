//! What can go wrong with SSH. Every message says which host, what happened and what to do;
//! none carries a secret.

use std::path::PathBuf;

/// Why a remote call failed. Every message says which host, what happened and what to do;
/// none carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error(
        "SSH connection to {host} at {addr} was refused: nothing listens there. Check that sshd runs on the host and that the SSH port is right (config `port`, or the tool's SSH port argument)"
    )]
    Refused { host: String, addr: String },
    #[error(
        "cannot reach {host} at {addr}: {detail}. Check the address in the config and the network path"
    )]
    Unreachable {
        host: String,
        addr: String,
        detail: String,
    },
    #[error(
        "SSH connection to {host} at {addr} timed out after {secs} s (TCP connect, key exchange and login). Check that the host is up and reachable, or raise [ssh] connect_timeout_secs"
    )]
    ConnectTimeout {
        host: String,
        addr: String,
        secs: u64,
    },
    #[error(
        "SSH authentication failed for user {user} on {host}: tried {tried}; the server accepts: {server_accepts}. Check the username and the credentials configured for this host"
    )]
    AuthFailed {
        host: String,
        user: String,
        /// The methods tried, described without secrets.
        tried: String,
        server_accepts: String,
    },
    #[error(
        "cannot use private key {path} for {host}: {detail}. Check key_file, and key_passphrase_env for an encrypted key"
    )]
    KeyFile {
        host: String,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "cannot use the ssh-agent for {host}: {detail}. Start an agent, `ssh-add` the key, and set SSH_AUTH_SOCK or agent_socket"
    )]
    Agent { host: String, detail: String },
    #[error(
        "host key of {host} at {addr} is not known: {algorithm} {fingerprint}. Verify this fingerprint with the host's administrator, then add it with `ssh-keyscan -p {port} -t {algorithm} {address} >> {known_hosts}` (or set [ssh] host_key_policy = \"accept-new\" to learn it on first use)",
        known_hosts = known_hosts.display()
    )]
    HostKeyUnknown {
        host: String,
        addr: String,
        address: String,
        port: u16,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    /// The caller asked for an SSH port the configuration does not name, and known_hosts holds
    /// no key for it: refused before any credential is offered, under either policy.
    #[error(
        "host key of {host} at {addr} is not known, and {port} is not the configured SSH port ({configured_port}): an SSH port given by the caller is used only when {known_hosts} already holds the key for {lookup}, so that no credential goes to a server the configuration did not name (accept-new does not learn keys there). The server offered {algorithm} {fingerprint}; after verifying it with the host's administrator, add it with `ssh-keyscan -p {port} -t {algorithm} {address} >> {known_hosts}`, or configure `port = {port}` for this host",
        known_hosts = known_hosts.display()
    )]
    CallerPortKeyUnknown {
        host: String,
        addr: String,
        address: String,
        port: u16,
        configured_port: u16,
        lookup: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "HOST KEY CHANGED for {host} at {addr}: it offered {algorithm} {fingerprint}, but {known_hosts} line {line} holds a different {recorded_algorithm} key. This may be an attack (man in the middle) or a reinstalled host; refusing to connect. If the change is expected, remove the old key with `ssh-keygen -R '{lookup}' -f {known_hosts}` and add the new one",
        known_hosts = known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        addr: String,
        lookup: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
        recorded_algorithm: String,
    },
    #[error(
        "host key {algorithm} {fingerprint} of {host} is marked @revoked in {known_hosts} line {line}; refusing to connect",
        known_hosts = known_hosts.display()
    )]
    HostKeyRevoked {
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error(
        "cannot read or update known_hosts {path} for {host}: {detail}. Fix the [ssh] known_hosts path or its permissions",
        path = path.display()
    )]
    KnownHostsFile {
        host: String,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "remote command `{command}` on {host} did not finish within {secs} s and was killed. The host may be overloaded; raise [ssh] command_timeout_secs if it is just slow"
    )]
    CommandTimeout {
        host: String,
        command: &'static str,
        secs: u64,
    },
    #[error(
        "no usable command on {host} to list sockets: tried {tried}. Install net-tools (netstat) or iproute2 (ss) there, or make /proc/net readable for the SSH user"
    )]
    NoUsableCommand { host: String, tried: String },
    /// A bastion on the way to `host` failed (refused, host key, authentication, …).
    #[error("{host} is reached through bastion {bastion}, which failed: {source}")]
    ViaBastion {
        host: String,
        bastion: String,
        source: Box<SshError>,
    },
    /// The bastion's session is up, but it could not open the tunnel to the host.
    #[error(
        "bastion {bastion} could not open a connection to {host} at {addr}: {detail}. Check that the bastion can reach that address and port and that its sshd allows TCP forwarding (AllowTcpForwarding, PermitOpen)"
    )]
    Tunnel {
        host: String,
        addr: String,
        bastion: String,
        detail: String,
    },
    #[error("SSH error with {host} during {stage}: {detail}")]
    Protocol {
        host: String,
        stage: &'static str,
        detail: String,
    },
}
