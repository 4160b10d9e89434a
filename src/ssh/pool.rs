//! The session pool: one SSH session per configured entry, port and bastion chain, reused
//! across calls; commands run on channels of it.
//!
//! A host behind bastions is connected through [`super::jump`]: the last bastion's pooled
//! session (made first if needed, itself through the bastions before it) opens a
//! `direct-tcpip` channel to the host, and the host's SSH session runs over that channel. The
//! host's session holds its bastion's session, so a bastion stays up while a host behind it is
//! in use; when a bastion dies, the sessions through it die too and are made again on the next
//! call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use russh::client;
use russh::keys::Algorithm;
use russh::{ChannelMsg, ChannelWriteHalf, Sig};
use tokio::sync::{Mutex, Semaphore};

use super::auth::authenticate;
use super::error::SshError;
use super::host_key::{Client, read_known_hosts};
use super::host_port::HostPort;
use super::{CommandOutput, MAX_OUTPUT_BYTES, RemoteCommand, jump, known_hosts};
use crate::config::{MAX_CHANNELS_PER_HOST, RemoteHost, SshSettings};

/// The SSH session pool. Cheap to clone (an `Arc` inside); clones share sessions.
#[derive(Clone)]
pub struct SshPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    settings: SshSettings,
    slots: StdMutex<HashMap<SlotKey, Arc<Slot>>>,
    handshakes: AtomicU64,
    /// Output bytes (stdout + stderr) received from remote commands.
    received: AtomicU64,
}

/// A pooled session belongs to one configuration entry (its unique name) at one port, reached
/// through one chain of bastions: a session is never shared between entries, whose
/// credentials may differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    entry: String,
    host: String,
    port: u16,
    user: String,
    /// The bastions' names, outermost first.
    via: Vec<String>,
}

/// Per-host state: the pooled session, the handshake lock around it, the channel limit.
struct Slot {
    session: Mutex<Option<Arc<Session>>>,
    channels: Arc<Semaphore>,
}

pub(super) struct Session {
    pub(super) handle: client::Handle<Client>,
    /// The bastion session this one runs through, kept alive with it.
    _via: Option<Arc<Session>>,
}

impl std::fmt::Debug for SshPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPool")
            .field("handshakes", &self.handshakes())
            .finish_non_exhaustive()
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
                received: AtomicU64::new(0),
            }),
        }
    }

    /// SSH handshakes started so far (TCP connect or tunnel + key exchange + login), bastions
    /// included: a repeat call on a pooled session adds none.
    pub fn handshakes(&self) -> u64 {
        self.inner.handshakes.load(Ordering::Relaxed)
    }

    /// Output bytes received from remote commands so far (what a listing cost on the wire,
    /// before SSH compression).
    pub fn bytes_received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Pooled sessions that are still open (bastions included).
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

    /// Runs `command` on `host` (SSH port `ssh_port`, else the configured one), on the pooled
    /// session (made if needed, through the host's bastions), within the command timeout.
    /// Dropping the returned future kills the remote command.
    pub async fn run(
        &self,
        host: &RemoteHost,
        ssh_port: Option<u16>,
        command: RemoteCommand,
    ) -> Result<CommandOutput, SshError> {
        let port = ssh_port.unwrap_or(host.port);
        let target = HostPort::new(host, port);
        let slot = self.slot(host, port);
        let _permit = Arc::clone(&slot.channels)
            .acquire_owned()
            .await
            .map_err(|e| target.protocol("waiting for a channel slot", e))?;

        let mut last_dead = String::new();
        let attempts = if command.may_retry() { 2 } else { 1 };
        for attempt in 0..attempts {
            let session = self.session(&slot, &target).await?;
            match self.exec(&session, &target, &command).await {
                Ok(out) => return Ok(out),
                Err(ExecFailure::Final(e)) => return Err(e),
                Err(ExecFailure::SessionDead(detail)) => {
                    tracing::info!(host = %target.label, attempt, cause = %detail, "SSH session died; reconnecting");
                    self.discard(&slot, &session).await;
                    last_dead = detail;
                }
            }
        }
        if attempts == 1 {
            return Err(target.protocol(
                "running a command (not retried: it may have run)",
                last_dead,
            ));
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
            via: host.proxy_jump.iter().map(|h| h.name.clone()).collect(),
        };
        Arc::clone(self.lock_slots().entry(key).or_insert_with(|| {
            Arc::new(Slot {
                session: Mutex::new(None),
                channels: Arc::new(Semaphore::new(MAX_CHANNELS_PER_HOST)),
            })
        }))
    }

    /// The slot's open session, or a new one. The slot's lock makes handshakes one at a time.
    async fn session(&self, slot: &Slot, target: &HostPort<'_>) -> Result<Arc<Session>, SshError> {
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

    /// The pooled session of a bastion (`host` with the chain in front of it), boxed: it may
    /// recurse through several bastions.
    fn bastion_session<'a>(
        &'a self,
        host: &'a RemoteHost,
    ) -> futures::future::BoxFuture<'a, Result<Arc<Session>, SshError>> {
        Box::pin(async move {
            let target = HostPort::new(host, host.port);
            let slot = self.slot(host, host.port);
            self.session(&slot, &target).await
        })
    }

    /// Forgets `dead` if it is still the slot's session.
    async fn discard(&self, slot: &Slot, dead: &Arc<Session>) {
        let mut guard = slot.session.lock().await;
        if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, dead)) {
            *guard = None;
        }
    }

    async fn connect(&self, target: &HostPort<'_>) -> Result<Session, SshError> {
        // The bastion first (it has its own timeout), then this host within ours.
        let via = match target.host.proxy_jump.split_last() {
            None => None,
            Some((last, before)) => {
                let bastion = RemoteHost {
                    proxy_jump: before.to_vec(),
                    ..last.clone()
                };
                let session =
                    self.bastion_session(&bastion)
                        .await
                        .map_err(|e| SshError::ViaBastion {
                            host: target.label.clone(),
                            bastion: bastion.label(),
                            source: Box::new(e),
                        })?;
                Some((bastion.label(), session))
            }
        };
        self.inner.handshakes.fetch_add(1, Ordering::Relaxed);
        let settings = &self.inner.settings;
        let secs = settings.connect_timeout.as_secs();
        match tokio::time::timeout(settings.connect_timeout, self.connect_inner(target, via)).await
        {
            Ok(result) => result,
            Err(_) => Err(SshError::ConnectTimeout {
                host: target.label.clone(),
                addr: target.addr.clone(),
                secs,
            }),
        }
    }

    async fn connect_inner(
        &self,
        target: &HostPort<'_>,
        via: Option<(String, Arc<Session>)>,
    ) -> Result<Session, SshError> {
        let settings = &self.inner.settings;
        let known_hosts_file = target
            .host
            .known_hosts
            .clone()
            .unwrap_or_else(|| settings.known_hosts.clone());
        let known_text = read_known_hosts(&known_hosts_file, target)?;
        let config = client_config(settings, &known_text, target);
        // The key check runs inside russh's key exchange; its verdict comes back here.
        let outcome = Arc::new(StdMutex::new(None));
        let handler = Client {
            host: target.host.host.clone(),
            port: target.port,
            configured_port: target.host.port,
            label: target.label.clone(),
            addr: target.addr.clone(),
            known_hosts: known_hosts_file,
            policy: settings.host_key_policy,
            outcome: Arc::clone(&outcome),
        };
        let connected = match &via {
            None => client::connect_stream(config, direct(target).await?, handler).await,
            Some((bastion, session)) => {
                let stream = tunnel(target, bastion, session).await?;
                client::connect_stream(config, stream, handler).await
            }
        };
        let mut handle = key_exchange_outcome(connected, &outcome, target)?;
        authenticate(&mut handle, target).await?;
        tracing::debug!(host = %target.label, addr = %target.addr, via = via.as_ref().map(|v| v.0.as_str()), "SSH session established");
        Ok(Session {
            handle,
            _via: via.map(|(_, s)| s),
        })
    }

    /// Opens a session channel. sshd frees a closed channel's session slot a little after the
    /// close, so a refused open on a live connection (`MaxSessions` reached) is retried a few
    /// times with backoff before giving up; a closed connection is a dead session.
    async fn open_channel(
        &self,
        session: &Session,
        target: &HostPort<'_>,
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
        target: &HostPort<'_>,
        command: &RemoteCommand,
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
                    command: command.name(),
                    secs: timeout.as_secs(),
                }))
            }
            Ok(false) => {
                guard.kill().await;
                Err(ExecFailure::Final(target.protocol(
                    "reading command output",
                    format!(
                        "`{}` printed more than {MAX_OUTPUT_BYTES} bytes",
                        command.name()
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
                self.inner
                    .received
                    .fetch_add((stdout.len() + stderr.len()) as u64, Ordering::Relaxed);
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

/// The client configuration for `target`: the host key algorithms known_hosts holds for it
/// first (so the server offers the key we can check), then russh's defaults.
fn client_config(
    settings: &SshSettings,
    known_text: &str,
    target: &HostPort<'_>,
) -> Arc<client::Config> {
    let mut preferred = russh::Preferred::default();
    let known_algs = known_hosts::known_algorithms(known_text, &target.host.host, target.port);
    if !known_algs.is_empty() {
        let mut order: Vec<Algorithm> = known_algs;
        for a in preferred.key.iter() {
            if !order.contains(a) {
                order.push(a.clone());
            }
        }
        preferred.key = order.into();
    }
    Arc::new(client::Config {
        preferred,
        inactivity_timeout: Some(settings.idle_timeout),
        nodelay: true,
        ..client::Config::default()
    })
}

/// A direct TCP connection to `target`'s SSH port.
async fn direct(target: &HostPort<'_>) -> Result<tokio::net::TcpStream, SshError> {
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
    Ok(tcp)
}

/// A `direct-tcpip` channel of the bastion's session to `target`'s SSH port.
async fn tunnel(
    target: &HostPort<'_>,
    bastion: &str,
    session: &Session,
) -> Result<russh::ChannelStream<client::Msg>, SshError> {
    jump::tunnel(&session.handle, &target.host.host, target.port)
        .await
        .map_err(|detail| SshError::Tunnel {
            host: target.label.clone(),
            addr: target.addr.clone(),
            bastion: bastion.to_string(),
            detail,
        })
}

/// The handle of a finished key exchange, or why it failed: the key check's own verdict
/// (an unknown or changed key) wins over russh's error for it.
#[allow(clippy::result_large_err)] // once per handshake, as read_known_hosts
fn key_exchange_outcome(
    connected: Result<client::Handle<Client>, russh::Error>,
    outcome: &StdMutex<Option<SshError>>,
    target: &HostPort<'_>,
) -> Result<client::Handle<Client>, SshError> {
    let recorded = outcome.lock().ok().and_then(|mut g| g.take());
    match (connected, recorded) {
        (_, Some(err)) => Err(err),
        (Ok(handle), None) => Ok(handle),
        (Err(e), None) => Err(target.protocol("key exchange", e)),
    }
}
