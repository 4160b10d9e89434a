//! The SSH session pool and command runner (russh; no `ssh` binary, so password auth works
//! without `sshpass`).
//!
//! [`SshPool::run`] runs one of our fixed [`RemoteCommand`]s on a configured [`RemoteHost`]:
//! - **Only fixed commands.** `RemoteCommand` is a closed enum of `&'static str` command lines;
//!   no caller text ever reaches the remote shell.
//! - **Host keys** are checked against known_hosts ([`known_hosts`]) under the configured
//!   [`HostKeyPolicy`]; algorithms already known for the host are offered first. The key is
//!   checked during the key exchange, before any credential is offered.
//! - **Credentials stay put.** An SSH port given by the caller that is not the configured one
//!   is used only when known_hosts already holds the key for that `[host]:port`: accept-new
//!   never learns a key there, so no credential is ever sent to a server nobody configured.
//! - **Pool.** One session per configured entry (its name) and port, reused across calls, so
//!   two entries for the same user@host:port each authenticate with their own credentials;
//!   one handshake at a time per entry; at most [`MAX_CHANNELS_PER_HOST`] channels at once; a session idle for
//!   `idle_timeout` is closed (russh's inactivity timeout); a dead session is dropped and the
//!   call retried once on a fresh one (our commands are read-only, so a retry is harmless).
//! - **Timeouts.** The connect timeout covers TCP, key exchange and authentication. At the
//!   command timeout, and when the caller drops the future (MCP cancellation), the remote
//!   process gets `KILL` and the channel is closed (closing alone would leave the process
//!   running and, with it, the channel slot on the server).
//!
//! It does not parse command output or choose among commands: that is `source::remote`.

pub mod known_hosts;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use russh::client;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{Algorithm, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelWriteHalf, Sig};
use tokio::sync::{Mutex, Semaphore};

use crate::config::{AuthMethod, HostKeyPolicy, MAX_CHANNELS_PER_HOST, RemoteHost, SshSettings};

/// Output larger than this is refused rather than held in memory (100k sockets is ~15 MB).
const MAX_OUTPUT_BYTES: usize = 256 * 1024 * 1024;

/// The only commands we ever run remotely. Each is a fixed string; none takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteCommand {
    /// `netstat -tunapW` (wide: addresses never truncated).
    NetstatWide,
    /// `netstat -tunap`, for a netstat without `-W`.
    Netstat,
    /// `ss -tunap` (iproute2).
    Ss,
    /// The four `/proc/net/{tcp,tcp6,udp,udp6}` tables, each after a `== name` marker
    /// ([`crate::parse::PROC_NET_COMMAND`]).
    ProcNet,
    /// `true`: a no-op used by tests and health checks.
    True,
}

impl RemoteCommand {
    /// The command line sent to the remote shell. `env` sets the C locale in any login shell.
    pub fn command_line(self) -> &'static str {
        match self {
            RemoteCommand::NetstatWide => "env LC_ALL=C netstat -tunapW",
            RemoteCommand::Netstat => "env LC_ALL=C netstat -tunap",
            RemoteCommand::Ss => "env LC_ALL=C ss -tunap",
            RemoteCommand::ProcNet => crate::parse::PROC_NET_COMMAND,
            RemoteCommand::True => "true",
        }
    }
}

/// What a remote command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Standard output, as text (invalid UTF-8 replaced).
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
    /// Exit status, when the server sent one.
    pub exit_status: Option<u32>,
    /// The signal that ended the command, when one did (`KILL`, `TERM`, …).
    pub exit_signal: Option<String>,
}

impl CommandOutput {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }
}

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
    #[error("SSH error with {host} during {stage}: {detail}")]
    Protocol {
        host: String,
        stage: &'static str,
        detail: String,
    },
}

/// The SSH session pool. Cheap to clone (an `Arc` inside); clones share sessions.
#[derive(Clone)]
pub struct SshPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    settings: SshSettings,
    slots: StdMutex<HashMap<SlotKey, Arc<Slot>>>,
    handshakes: AtomicU64,
}

/// A pooled session belongs to one configuration entry (its unique name) at one port: a
/// session is never shared between entries, whose credentials may differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    entry: String,
    host: String,
    port: u16,
    user: String,
}

/// Per-host state: the pooled session, the handshake lock around it, the channel limit, and
/// the command that worked last time.
struct Slot {
    session: Mutex<Option<Arc<Session>>>,
    channels: Arc<Semaphore>,
    remembered: StdMutex<Option<RemoteCommand>>,
}

struct Session {
    handle: client::Handle<Client>,
}

impl std::fmt::Debug for SshPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPool")
            .field("handshakes", &self.handshakes())
            .finish_non_exhaustive()
    }
}

/// A remote host and port as messages name them.
struct Target<'a> {
    host: &'a RemoteHost,
    port: u16,
    label: String,
    addr: String,
}

impl<'a> Target<'a> {
    fn new(host: &'a RemoteHost, port: u16) -> Target<'a> {
        let addr = if host.host.contains(':') {
            format!("[{}]:{port}", host.host)
        } else {
            format!("{}:{port}", host.host)
        };
        Target {
            host,
            port,
            label: host.label(),
            addr,
        }
    }

    fn protocol(&self, stage: &'static str, detail: impl std::fmt::Display) -> SshError {
        SshError::Protocol {
            host: self.label.clone(),
            stage,
            detail: detail.to_string(),
        }
    }
}

/// Why running on a pooled session failed: the session died (retry on a fresh one) or the
/// command failed for good.
enum ExecFailure {
    SessionDead(String),
    Final(SshError),
}

impl SshPool {
    pub fn new(settings: SshSettings) -> SshPool {
        SshPool {
            inner: Arc::new(PoolInner {
                settings,
                slots: StdMutex::new(HashMap::new()),
                handshakes: AtomicU64::new(0),
            }),
        }
    }

    /// The settings this pool was made with.
    pub fn settings(&self) -> &SshSettings {
        &self.inner.settings
    }

    /// SSH handshakes started so far (TCP connect + key exchange + login): a repeat call on a
    /// pooled session adds none.
    pub fn handshakes(&self) -> u64 {
        self.inner.handshakes.load(Ordering::Relaxed)
    }

    /// Pooled sessions that are still open.
    pub async fn open_sessions(&self) -> usize {
        let slots: Vec<Arc<Slot>> = self.lock_slots().values().cloned().collect();
        let mut open = 0;
        for slot in slots {
            if let Some(s) = slot.session.lock().await.as_ref()
                && !s.handle.is_closed()
            {
                open += 1;
            }
        }
        open
    }

    /// The command that worked last on this host, if any.
    pub fn remembered_command(
        &self,
        host: &RemoteHost,
        ssh_port: Option<u16>,
    ) -> Option<RemoteCommand> {
        let slot = self.slot(host, ssh_port.unwrap_or(host.port));
        slot.remembered.lock().ok().and_then(|g| *g)
    }

    /// Remembers the command that worked on this host.
    pub fn remember_command(
        &self,
        host: &RemoteHost,
        ssh_port: Option<u16>,
        command: RemoteCommand,
    ) {
        let slot = self.slot(host, ssh_port.unwrap_or(host.port));
        if let Ok(mut g) = slot.remembered.lock() {
            *g = Some(command);
        }
    }

    /// Runs `command` on `host` (SSH port `ssh_port`, else the configured one), on the pooled
    /// session (made if needed), within the command timeout. Dropping the returned future kills
    /// the remote command.
    pub async fn run(
        &self,
        host: &RemoteHost,
        ssh_port: Option<u16>,
        command: RemoteCommand,
    ) -> Result<CommandOutput, SshError> {
        let port = ssh_port.unwrap_or(host.port);
        let target = Target::new(host, port);
        let slot = self.slot(host, port);
        let _permit = Arc::clone(&slot.channels)
            .acquire_owned()
            .await
            .map_err(|e| target.protocol("waiting for a channel slot", e))?;

        let mut last_dead = String::new();
        for attempt in 0..2 {
            let session = self.session(&slot, &target).await?;
            match self.exec(&session, &target, command).await {
                Ok(out) => return Ok(out),
                Err(ExecFailure::Final(e)) => return Err(e),
                Err(ExecFailure::SessionDead(detail)) => {
                    tracing::info!(host = %target.label, attempt, cause = %detail, "SSH session died; reconnecting");
                    self.discard(&slot, &session).await;
                    last_dead = detail;
                }
            }
        }
        Err(target.protocol("running a command (after reconnecting once)", last_dead))
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, Arc<Slot>>> {
        // A poisoned map is still a valid map: no invariant spans a panic here.
        self.inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slot(&self, host: &RemoteHost, port: u16) -> Arc<Slot> {
        let key = SlotKey {
            entry: host.name.clone(),
            host: host.host.clone(),
            port,
            user: host.username.clone(),
        };
        Arc::clone(self.lock_slots().entry(key).or_insert_with(|| {
            Arc::new(Slot {
                session: Mutex::new(None),
                channels: Arc::new(Semaphore::new(MAX_CHANNELS_PER_HOST)),
                remembered: StdMutex::new(None),
            })
        }))
    }

    /// The slot's open session, or a new one. The slot's lock makes handshakes one at a time.
    async fn session(&self, slot: &Slot, target: &Target<'_>) -> Result<Arc<Session>, SshError> {
        let mut guard = slot.session.lock().await;
        if let Some(s) = guard.as_ref()
            && !s.handle.is_closed()
        {
            return Ok(Arc::clone(s));
        }
        *guard = None;
        let fresh = Arc::new(self.connect(target).await?);
        *guard = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Forgets `dead` if it is still the slot's session.
    async fn discard(&self, slot: &Slot, dead: &Arc<Session>) {
        let mut guard = slot.session.lock().await;
        if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, dead)) {
            *guard = None;
        }
    }

    async fn connect(&self, target: &Target<'_>) -> Result<Session, SshError> {
        self.inner.handshakes.fetch_add(1, Ordering::Relaxed);
        let settings = &self.inner.settings;
        let secs = settings.connect_timeout.as_secs();
        match tokio::time::timeout(settings.connect_timeout, self.connect_inner(target)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::ConnectTimeout {
                host: target.label.clone(),
                addr: target.addr.clone(),
                secs,
            }),
        }
    }

    async fn connect_inner(&self, target: &Target<'_>) -> Result<Session, SshError> {
        let settings = &self.inner.settings;
        let known_text = read_known_hosts(&settings.known_hosts, target)?;
        let mut preferred = russh::Preferred::default();
        let known_algs = known_hosts::known_algorithms(&known_text, &target.host.host, target.port);
        if !known_algs.is_empty() {
            let mut order: Vec<Algorithm> = known_algs;
            for a in preferred.key.iter() {
                if !order.contains(a) {
                    order.push(a.clone());
                }
            }
            preferred.key = order.into();
        }
        let config = Arc::new(client::Config {
            preferred,
            inactivity_timeout: Some(settings.idle_timeout),
            nodelay: true,
            ..client::Config::default()
        });
        let outcome = Arc::new(StdMutex::new(None));
        let handler = Client {
            host: target.host.host.clone(),
            port: target.port,
            configured_port: target.host.port,
            label: target.label.clone(),
            addr: target.addr.clone(),
            known_hosts: settings.known_hosts.clone(),
            policy: settings.host_key_policy,
            outcome: Arc::clone(&outcome),
        };

        let tcp = tokio::net::TcpStream::connect((target.host.host.as_str(), target.port))
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => SshError::Refused {
                    host: target.label.clone(),
                    addr: target.addr.clone(),
                },
                _ => SshError::Unreachable {
                    host: target.label.clone(),
                    addr: target.addr.clone(),
                    detail: e.to_string(),
                },
            })?;
        let _ = tcp.set_nodelay(true);
        let mut handle = match client::connect_stream(config, tcp, handler).await {
            Ok(h) => h,
            Err(e) => {
                let recorded = outcome.lock().ok().and_then(|mut g| g.take());
                return Err(match recorded {
                    Some(err) => err,
                    None => target.protocol("key exchange", e),
                });
            }
        };
        if let Some(err) = outcome.lock().ok().and_then(|mut g| g.take()) {
            return Err(err);
        }
        authenticate(&mut handle, target).await?;
        tracing::debug!(host = %target.label, addr = %target.addr, "SSH session established");
        Ok(Session { handle })
    }

    /// Opens a session channel. sshd frees a closed channel's session slot a little after the
    /// close, so a refused open on a live connection (`MaxSessions` reached) is retried a few
    /// times with backoff before giving up; a closed connection is a dead session.
    async fn open_channel(
        &self,
        session: &Session,
        target: &Target<'_>,
    ) -> Result<russh::Channel<client::Msg>, ExecFailure> {
        let mut delay = Duration::from_millis(10);
        let mut last = String::new();
        for _ in 0..8 {
            match session.handle.channel_open_session().await {
                Ok(c) => return Ok(c),
                Err(e) if session.handle.is_closed() => {
                    return Err(ExecFailure::SessionDead(e.to_string()));
                }
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    last = format!("{reason:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(ExecFailure::SessionDead(e.to_string())),
            }
        }
        Err(ExecFailure::Final(target.protocol(
            "opening a channel",
            format!("the server keeps refusing new channels ({last}); its MaxSessions may be lower than {MAX_CHANNELS_PER_HOST}, or other clients share this login"),
        )))
    }

    async fn exec(
        &self,
        session: &Session,
        target: &Target<'_>,
        command: RemoteCommand,
    ) -> Result<CommandOutput, ExecFailure> {
        let channel = self.open_channel(session, target).await?;
        let (mut read, write) = channel.split();
        let mut guard = KillOnDrop { write: Some(write) };
        if let Some(w) = guard.write.as_ref()
            && let Err(e) = w.exec(true, command.command_line()).await
        {
            return Err(ExecFailure::SessionDead(e.to_string()));
        }

        let mut out = CommandOutput::default();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut exec_refused = false;
        let collect = async {
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.exit_signal = Some(signal_name_text(&signal_name));
                    }
                    ChannelMsg::Failure => exec_refused = true,
                    ChannelMsg::Close => break,
                    _ => {}
                }
                if stdout.len() + stderr.len() > MAX_OUTPUT_BYTES {
                    return false;
                }
            }
            true
        };
        let timeout = self.inner.settings.command_timeout;
        match tokio::time::timeout(timeout, collect).await {
            Err(_) => {
                guard.kill().await;
                Err(ExecFailure::Final(SshError::CommandTimeout {
                    host: target.label.clone(),
                    command: command.command_line(),
                    secs: timeout.as_secs(),
                }))
            }
            Ok(false) => {
                guard.kill().await;
                Err(ExecFailure::Final(target.protocol(
                    "reading command output",
                    format!(
                        "`{}` printed more than {MAX_OUTPUT_BYTES} bytes",
                        command.command_line()
                    ),
                )))
            }
            Ok(true) => {
                guard.disarm();
                if exec_refused {
                    return Err(ExecFailure::Final(target.protocol(
                        "starting a command",
                        "the server refused to run a command (is this account limited to a forced command, or sftp only?)",
                    )));
                }
                if out.exit_status.is_none()
                    && out.exit_signal.is_none()
                    && session.handle.is_closed()
                {
                    return Err(ExecFailure::SessionDead(
                        "the session closed before the command finished".into(),
                    ));
                }
                out.stdout = String::from_utf8_lossy(&stdout).into_owned();
                out.stderr = String::from_utf8_lossy(&stderr).into_owned();
                Ok(out)
            }
        }
    }
}

fn signal_name_text(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// Holds a running command's channel; unless disarmed, sends `KILL` and closes the channel, also
/// when dropped mid-call (the caller's future was cancelled).
struct KillOnDrop {
    write: Option<ChannelWriteHalf<client::Msg>>,
}

impl KillOnDrop {
    async fn kill(&mut self) {
        if let Some(w) = self.write.take() {
            let _ = w.signal(Sig::KILL).await;
            let _ = w.close().await;
        }
    }

    fn disarm(&mut self) {
        self.write = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.write.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = w.signal(Sig::KILL).await;
                let _ = w.close().await;
            });
        }
    }
}

// The error path is cold; boxing SshError everywhere would cost more clarity than it saves.
#[allow(clippy::result_large_err)]
fn read_known_hosts(path: &Path, target: &Target<'_>) -> Result<String, SshError> {
    match std::fs::read_to_string(path) {
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
struct Client {
    host: String,
    port: u16,
    /// The entry's configured SSH port: a key is learnt (accept-new) only there.
    configured_port: u16,
    label: String,
    addr: String,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    outcome: Arc<StdMutex<Option<SshError>>>,
}

impl Client {
    #[allow(clippy::result_large_err)] // cold path, see read_known_hosts
    fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let text = std::fs::read_to_string(&self.known_hosts).or_else(|e| {
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
            known_hosts::Verdict::Known => Ok(()),
            known_hosts::Verdict::Unknown if self.port != self.configured_port => {
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
            known_hosts::Verdict::Unknown => match self.policy {
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
            known_hosts::Verdict::Changed {
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
            known_hosts::Verdict::Revoked { line } => Err(SshError::HostKeyRevoked {
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

/// Tries the host's auth methods in order until one succeeds.
async fn authenticate(
    handle: &mut client::Handle<Client>,
    target: &Target<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_fixed_strings() {
        let all = [
            RemoteCommand::NetstatWide,
            RemoteCommand::Netstat,
            RemoteCommand::Ss,
            RemoteCommand::True,
        ];
        // The simple commands carry no shell syntax at all.
        for c in all {
            let line = c.command_line();
            assert!(
                line.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || " =/_-".contains(ch)),
                "{line}"
            );
        }
        assert_eq!(
            RemoteCommand::NetstatWide.command_line(),
            "env LC_ALL=C netstat -tunapW"
        );
        assert!(
            RemoteCommand::ProcNet
                .command_line()
                .contains("/proc/net/$f")
        );
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = SshError::HostKeyUnknown {
            host: "web-1 (10.0.0.1)".into(),
            addr: "10.0.0.1:2222".into(),
            address: "10.0.0.1".into(),
            port: 2222,
            algorithm: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            known_hosts: PathBuf::from("/root/.ssh/known_hosts"),
        };
        let m = e.to_string();
        assert!(m.contains("SHA256:abc"), "{m}");
        assert!(
            m.contains("ssh-keyscan -p 2222 -t ssh-ed25519 10.0.0.1 >> /root/.ssh/known_hosts"),
            "{m}"
        );
        let e = SshError::Refused {
            host: "web-1 (10.0.0.1)".into(),
            addr: "10.0.0.1:22".into(),
        };
        assert!(e.to_string().contains("refused"));
    }
}
