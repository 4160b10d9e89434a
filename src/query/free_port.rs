//! `free_port`: stop what holds a port — when an operator allowed it, after the user confirmed,
//! and never blindly.
//!
//! The targets are the processes holding a LISTEN (TCP) or bound (UDP) socket on the port,
//! never ones whose outgoing connection merely uses it as its local port. Of a prefork family
//! (a master and workers that inherited the listener) only the topmost holder is signalled, so
//! the workers are not just respawned. Nothing is signalled that is pid 1, a kernel thread,
//! the server itself or its parent, or (without root) another user's process: any of these
//! among the targets refuses the whole call. A dry run (the default) says exactly what a real
//! run would do. A real run asks through [`Confirm`] first, logs every signal on stderr with
//! who asked, sends SIGTERM (through a pidfd locally: a reused pid is never hit), waits up to
//! `timeout_secs` for the port to be free, and with `force` then sends SIGKILL to whatever
//! still holds it. The answer says what was signalled and whether the port is free now.
//!
//! `connection` closes one TCP connection instead, with sock_diag `SOCK_DESTROY` (what `ss -K`
//! does), local machine only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::input::{HostSpec, port_and_proto, port_arg, quoted};
use super::output::Envelope;
use super::service::Service;
use crate::error::{Error, InputError};
use crate::model::{ProcessInfo, Socket, StateSet, TcpState, Transport};
use crate::source::{BoxFuture, Control, Facts, Identity, Sig, Snapshot, Target, Want};

/// Seconds to wait for the port after SIGTERM, by default and at most.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 5;
const MAX_TIMEOUT_SECS: i64 = 60;
/// How often the port is checked while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How long SIGKILL is given to take effect.
const AFTER_KILL: Duration = Duration::from_secs(3);
/// Worker pids listed per target (the count is always exact).
const MAX_WORKERS_LISTED: usize = 16;
/// Processes signalled by one call at most: more holders than this is not "the thing on port
/// N", and the call is refused.
const MAX_TARGETS: usize = 64;

/// Inputs of `free_port` (and the CLI's `free-port`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub struct FreePortArgs {
    /// The port to free: the local port of the listening (TCP) or bound (UDP) sockets to
    /// stop, 1-65535.
    #[schemars(range(min = 1, max = 65535), required)]
    pub port: Option<i64>,

    /// Protocol: tcp (default) or udp.
    #[schemars(extend("enum" = ["tcp", "udp"], "default" = "tcp"))]
    pub proto: Option<String>,

    /// A configured remote host whose entry says allow_kill = true (see list_hosts); omitted,
    /// localhost, 127.0.0.1 or ::1 mean this machine. One host only; a remote call is never
    /// retried.
    pub host: Option<String>,

    /// Only say what would be done (default true): which processes would get which signals,
    /// or which connection would be closed. Pass false to act.
    #[schemars(extend("default" = true))]
    pub dry_run: Option<bool>,

    /// Also send SIGKILL to whatever still holds the port timeout_secs after SIGTERM (default
    /// false: SIGTERM only).
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,

    /// Seconds to wait for the port to be free after SIGTERM (1-60, default 5).
    #[schemars(range(min = 1, max = 60), extend("default" = 5))]
    pub timeout_secs: Option<i64>,

    /// Close this one TCP connection of the port instead of signalling anyone: the peer's
    /// address and port (sock_diag SOCK_DESTROY, as `ss -K`; this machine only, needs
    /// CAP_NET_ADMIN).
    pub connection: Option<ConnectionArg>,
}

/// The connection `free_port` closes: its peer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub struct ConnectionArg {
    /// The peer's IP address (the connection's foreign address).
    #[schemars(required)]
    pub remote_ip: Option<String>,
    /// The peer's port, 1-65535.
    #[schemars(range(min = 1, max = 65535), required)]
    pub remote_port: Option<i64>,
}

/// A validated `free_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreePortQuery {
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    pub(crate) host: HostSpec,
    pub(crate) dry_run: bool,
    pub(crate) force: bool,
    pub(crate) timeout: Duration,
    /// The peer of the one connection to close instead.
    pub(crate) connection: Option<(IpAddr, u16)>,
}

impl FreePortArgs {
    pub fn validate(&self) -> Result<FreePortQuery, InputError> {
        let (port, transport) = port_and_proto(self.port, self.proto.as_deref())?;
        let host = match HostSpec::from_arg(self.host.as_deref())? {
            HostSpec::Many(_) => {
                return Err(InputError::new(
                    "host",
                    quoted(self.host.as_deref().unwrap_or("")),
                    "must name one host: free_port never acts on several hosts at once",
                ));
            }
            one => one,
        };
        let timeout = match self.timeout_secs {
            None => Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            Some(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Duration::from_secs(n as u64),
            Some(n) => {
                return Err(InputError::new(
                    "timeout_secs",
                    n.to_string(),
                    "must be an integer between 1 and 60 (seconds to wait after SIGTERM)",
                ));
            }
        };
        let connection = match &self.connection {
            None => None,
            Some(c) => {
                if transport != Transport::Tcp {
                    return Err(InputError::new(
                        "connection",
                        "given with proto udp",
                        "closes one TCP connection: leave proto out or set it to tcp",
                    ));
                }
                let text = c.remote_ip.as_deref().unwrap_or("").trim();
                let ip = text
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| {
                        InputError::new(
                            "connection.remote_ip",
                            quoted(text),
                            "must be the peer's IP address, e.g. 10.0.0.7 or 2001:db8::7",
                        )
                    })?;
                let remote_port =
                    port_arg("connection.remote_port", c.remote_port)?.ok_or_else(|| {
                        InputError::new(
                            "connection.remote_port",
                            "missing",
                            "is required and must be an integer between 1 and 65535",
                        )
                    })?;
                Some((ip, remote_port))
            }
        };
        Ok(FreePortQuery {
            port,
            transport,
            host,
            dry_run: self.dry_run.unwrap_or(true),
            force: self.force.unwrap_or(false),
            timeout,
            connection,
        })
    }
}

/// How the user answered a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Yes, and how it was given (`elicitation`, `terminal`, `yes_flag`).
    Confirmed(&'static str),
    /// No (declined, cancelled, or no answer in time): why, for the message.
    Declined(String),
    /// There is no way to ask (an MCP client without elicitation, no terminal): why.
    Unavailable(String),
}

/// Asks the user before anything is signalled or closed.
pub trait Confirm: Send + Sync {
    fn ask<'a>(&'a self, question: &'a str) -> BoxFuture<'a, Confirmation>;
}

/// Who asked for an action and what the operator allows, for the confirmation and the log.
#[derive(Debug, Clone)]
pub struct Requester {
    /// How the log names the caller: `stdio client`, `HTTP peer 127.0.0.1:5123`, `CLI user root`.
    pub who: String,
    /// Whether a confirmation is required when there is no way to ask (`[actions]
    /// require_elicitation`, default true). When false, the client's own approval of the call
    /// (which `destructiveHint` asks for) is the confirmation.
    pub require_confirmation: bool,
}

/// `data` of `free_port`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct FreePortData {
    /// `localhost` or the configured host's name.
    pub host: String,
    pub port: u16,
    /// tcp or udp.
    pub protocol: String,
    /// True when nothing was done (only said).
    pub dry_run: bool,
    /// What the call does: signal (processes), close_connection (one TCP connection), or
    /// nothing (no process holds a LISTEN/bound socket on the port).
    pub action: String,
    /// The processes signalled (or that a dry run would signal), parents of prefork families
    /// only.
    pub processes: Vec<SignalledProcess>,
    /// The connection closed (or that a dry run would close), with `connection`.
    pub connection: Option<ClosedConnection>,
    /// How the action was confirmed: elicitation (the user, through the MCP client),
    /// client_approval (no elicitation; the operator set require_elicitation = false),
    /// terminal, yes_flag; null for a dry run or nothing to do.
    pub confirmed_by: Option<String>,
    /// Whether no LISTEN (TCP) or bound (UDP) socket is left on the port now (TIME_WAIT may
    /// remain: check_port_occupation's bind says whether that matters).
    pub free: bool,
    /// Processes that still hold a LISTEN/bound socket on the port.
    pub remaining: Vec<RemainingHolder>,
    /// TIME_WAIT sockets on the port (no process holds them; a server with SO_REUSEADDR binds
    /// anyway).
    pub time_wait: usize,
}

/// A process `free_port` signals.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct SignalledProcess {
    pub pid: u32,
    pub program: String,
    pub user: Option<String>,
    pub uid: u32,
    pub command: Option<String>,
    /// LISTEN/bound sockets it holds on the port.
    pub sockets: usize,
    /// Its children that hold the same sockets (prefork workers), which it is expected to
    /// stop; at most 16 listed, worker_count is exact.
    pub workers: Vec<u32>,
    pub worker_count: usize,
    /// The signals sent, in order (in a dry run: the ones that would be, SIGKILL only if it
    /// is still there after timeout_secs).
    pub signals: Vec<String>,
    /// Whether it has exited; null in a dry run.
    pub exited: Option<bool>,
}

/// A process still holding the port.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct RemainingHolder {
    pub pid: u32,
    pub program: String,
}

/// The connection `free_port` closes.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct ClosedConnection {
    pub local_ip: String,
    pub local_port: u16,
    pub remote_ip: String,
    pub remote_port: u16,
    pub state: Option<String>,
    pub pid: Option<u32>,
    pub program: Option<String>,
    /// Whether the kernel no longer has it; null in a dry run.
    pub closed: Option<bool>,
}

impl super::output::Rows for FreePortData {
    fn row_count(&self) -> usize {
        self.processes.len() + self.remaining.len()
    }
    fn keep_rows(&mut self, n: usize) {
        self.processes.truncate(n);
        self.remaining
            .truncate(n.saturating_sub(self.processes.len()));
    }
}

/// A process holding the port, as the plan sees it.
#[derive(Debug, Clone)]
struct Holder {
    facts: Facts,
    program: Arc<str>,
    sockets: usize,
}

/// What a real run would do.
#[derive(Debug)]
struct Plan {
    /// The topmost holder of each family, by pid, with its workers.
    targets: Vec<(Holder, Vec<u32>)>,
    /// Details of the targets (user, command).
    details: HashMap<u32, Arc<ProcessInfo>>,
    time_wait: usize,
}

impl Service {
    /// `free_port`: see the module documentation.
    pub async fn free_port(
        &self,
        query: &FreePortQuery,
        confirm: &dyn Confirm,
        requester: &Requester,
    ) -> Result<Envelope<FreePortData>, Error> {
        let target = self.target(&query.host, None)?;
        let control = target.source.control().map_err(|why| {
            Error::Refused(format!(
                "free_port cannot act on {}: {why}; nothing was signalled",
                target.label
            ))
        })?;
        if let Some(peer) = query.connection {
            if !target.local {
                return Err(Error::Input(InputError::new(
                    "connection",
                    format!("given for {}", target.label),
                    "closes a connection of this machine only: leave host out",
                )));
            }
            return close_connection(&target, control.as_ref(), query, peer, confirm, requester)
                .await;
        }
        let identity = control.identity().await?;
        let plan = plan(&target, control.as_ref(), query, &identity).await?;
        let mut data = FreePortData {
            host: target.host.clone(),
            port: query.port,
            protocol: query.transport.as_str().into(),
            dry_run: query.dry_run,
            action: if plan.targets.is_empty() {
                "nothing"
            } else {
                "signal"
            }
            .into(),
            processes: plan
                .targets
                .iter()
                .map(|t| planned(t, &plan, query))
                .collect(),
            connection: None,
            confirmed_by: None,
            free: plan.targets.is_empty(),
            remaining: Vec::new(),
            time_wait: plan.time_wait,
        };
        let what = format!(
            "port {}/{} on {}",
            query.port,
            query.transport.upper(),
            target.label
        );
        if plan.targets.is_empty() {
            return Ok(Envelope::ok(nothing_message(&what, plan.time_wait), data));
        }
        let names = targets_text(&data.processes);
        let then_kill = if query.force {
            format!(
                ", then SIGKILL to what still holds it after {} s",
                query.timeout.as_secs()
            )
        } else {
            String::new()
        };
        if query.dry_run {
            let message = format!(
                "Dry run: would send SIGTERM to {names} to free {what}{then_kill}. Nothing was \
                 signalled; call again with dry_run false to do it{}",
                if query.force {
                    ""
                } else {
                    " (force true also sends SIGKILL if it does not exit)"
                }
            );
            return Ok(Envelope::ok(message, data));
        }
        let question = format!("Send SIGTERM to {names} to free {what}{then_kill}?");
        data.confirmed_by = Some(confirmed(confirm, &question, requester).await?.into());

        // SIGTERM to each target, then wait for the port. `sent` keeps, per signalled pid,
        // the process (its start time tells "exited" from "pid reused") and its signals.
        let started = Instant::now();
        let mut sent: BTreeMap<u32, (Facts, Vec<&'static str>)> = BTreeMap::new();
        for (holder, _) in &plan.targets {
            if send(control.as_ref(), &holder.facts, Sig::Term, &what, requester).await? {
                sent.insert(holder.facts.pid, (holder.facts, vec!["SIGTERM"]));
            }
        }
        let mut state = wait_free(&target, query, started + query.timeout).await?;
        // Workers a killed parent left behind, named as the port's listing named them.
        let mut orphans: BTreeMap<u32, Arc<str>> = BTreeMap::new();
        if !state.free && query.force {
            // SIGKILL to the targets still there and to whatever else holds the port now,
            // each checked as the targets were.
            let mut pids: Vec<u32> = plan.targets.iter().map(|(h, _)| h.facts.pid).collect();
            pids.extend(state.holders.keys().copied());
            pids.sort_unstable();
            pids.dedup();
            let facts = control.facts(&pids).await?;
            for pid in pids {
                let Some(f) = facts.get(&pid) else { continue };
                // A target's pid now naming another process is not the target any more.
                let target = plan.targets.iter().find(|(h, _)| h.facts.pid == pid);
                if target.is_some_and(|(h, _)| h.facts.start != f.start)
                    || f.exited
                    || refusal(f, &identity, "").is_some()
                {
                    continue;
                }
                if send(control.as_ref(), f, Sig::Kill, &what, requester).await? {
                    sent.entry(pid)
                        .or_insert((*f, Vec::new()))
                        .1
                        .push("SIGKILL");
                    if target.is_none() {
                        orphans.insert(pid, state.holders[&pid].0.clone());
                    }
                }
            }
            state = wait_free(&target, query, Instant::now() + AFTER_KILL).await?;
        }
        let pids: Vec<u32> = sent.keys().copied().collect();
        let after = control.facts(&pids).await?;
        let exited = |f: &Facts| {
            after
                .get(&f.pid)
                .is_none_or(|now| now.exited || now.start != f.start)
        };
        for p in &mut data.processes {
            let Some((facts, signals)) = sent.get(&p.pid) else {
                // Gone before its SIGTERM: nothing was sent.
                p.signals.clear();
                p.exited = Some(true);
                continue;
            };
            p.signals = signals.iter().map(|s| s.to_string()).collect();
            p.exited = Some(exited(facts));
        }
        for (pid, program) in orphans {
            let (facts, signals) = &sent[&pid];
            data.processes.push(SignalledProcess {
                pid,
                program: program.to_string(),
                user: None,
                uid: facts.uid,
                command: None,
                sockets: 0,
                workers: Vec::new(),
                worker_count: 0,
                signals: signals.iter().map(|s| s.to_string()).collect(),
                exited: Some(exited(facts)),
            });
        }
        data.free = state.free;
        data.time_wait = state.time_wait;
        data.remaining = state
            .holders
            .iter()
            .map(|(&pid, (program, _))| RemainingHolder {
                pid,
                program: program.to_string(),
            })
            .collect();
        let message = done_message(&what, &data, query);
        Ok(Envelope::ok(message, data))
    }
}

/// The row of a planned target.
fn planned(t: &(Holder, Vec<u32>), plan: &Plan, query: &FreePortQuery) -> SignalledProcess {
    let (holder, workers) = t;
    let details = plan.details.get(&holder.facts.pid);
    let mut signals = vec!["SIGTERM".to_string()];
    if query.force {
        signals.push("SIGKILL".into());
    }
    SignalledProcess {
        pid: holder.facts.pid,
        program: holder.program.to_string(),
        user: details.and_then(|d| d.user.as_deref().map(str::to_string)),
        uid: holder.facts.uid,
        command: details.and_then(|d| d.command.as_deref().map(str::to_string)),
        sockets: holder.sockets,
        workers: workers.iter().copied().take(MAX_WORKERS_LISTED).collect(),
        worker_count: workers.len(),
        // A real run replaces these with what was sent.
        signals,
        exited: None,
    }
}

/// "nginx (pid 812, user www-data; 2 workers) and …" for messages and the question.
fn targets_text(processes: &[SignalledProcess]) -> String {
    let each: Vec<String> = processes
        .iter()
        .map(|p| {
            let user = p.user.clone().unwrap_or_else(|| format!("uid {}", p.uid));
            let workers = match p.worker_count {
                0 => String::new(),
                1 => "; 1 worker".into(),
                n => format!("; {n} workers"),
            };
            format!("{} (pid {}, user {user}{workers})", p.program, p.pid)
        })
        .collect();
    match each.as_slice() {
        [] => "nobody".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn nothing_message(what: &str, time_wait: usize) -> String {
    let mut message = format!(
        "Nothing to do: no process holds a listening or bound socket on {what}, so there is \
         nothing to stop; nothing was signalled. Connections that merely use it as their local \
         port are never targets (check_port_occupation says whether a server can bind it)"
    );
    if time_wait > 0 {
        message.push_str(&format!(
            ". {time_wait} TIME_WAIT socket(s) remain, which a server that sets SO_REUSEADDR \
             binds past"
        ));
    }
    message
}

fn done_message(what: &str, data: &FreePortData, query: &FreePortQuery) -> String {
    let sent: Vec<String> = data
        .processes
        .iter()
        .filter(|p| !p.signals.is_empty())
        .map(|p| {
            format!(
                "{} to {} (pid {}{})",
                p.signals.join(" then "),
                p.program,
                p.pid,
                if p.exited == Some(true) {
                    ", exited"
                } else {
                    ", still running"
                }
            )
        })
        .collect();
    let sent = if sent.is_empty() {
        "nothing was signalled (the processes had already exited)".to_string()
    } else {
        format!("sent {}", sent.join("; "))
    };
    // `what` starts a sentence here.
    let what = format!("P{}", what.strip_prefix('p').unwrap_or(what));
    if data.free {
        let mut m = format!("{what} is free now: {sent}");
        if data.time_wait > 0 {
            m.push_str(&format!(
                ". {} TIME_WAIT socket(s) remain (SO_REUSEADDR binds past them)",
                data.time_wait
            ));
        }
        m
    } else {
        let still: Vec<String> = data
            .remaining
            .iter()
            .map(|h| format!("{} (pid {})", h.program, h.pid))
            .collect();
        let advice = if query.force {
            "it may be ignoring SIGKILL's effects (uninterruptible sleep) or be another user's; \
             check_port_occupation shows who holds it"
                .to_string()
        } else {
            format!(
                "it did not let go within {} s of SIGTERM; call again with force true to send \
                 SIGKILL",
                query.timeout.as_secs()
            )
        };
        format!(
            "{what} is still held by {}: {sent}; {advice}",
            if still.is_empty() {
                "a process the server cannot see".to_string()
            } else {
                still.join(", ")
            }
        )
    }
}

/// Asks for confirmation under the requester's policy: the way it was confirmed, or why not.
async fn confirmed(
    confirm: &dyn Confirm,
    question: &str,
    requester: &Requester,
) -> Result<&'static str, Error> {
    match confirm.ask(question).await {
        Confirmation::Confirmed(how) => Ok(how),
        Confirmation::Declined(why) => Err(Error::NotConfirmed(why)),
        Confirmation::Unavailable(_) if !requester.require_confirmation => Ok("client_approval"),
        Confirmation::Unavailable(why) => Err(Error::Refused(format!(
            "free_port needs the user's confirmation, and {why}; nothing was signalled"
        ))),
    }
}

/// Sends one signal, logging it on stderr first with who asked. `Ok(false)`: it was gone.
async fn send(
    control: &dyn Control,
    process: &Facts,
    sig: Sig,
    what: &str,
    requester: &Requester,
) -> Result<bool, Error> {
    log_action(&format!(
        "sending {} to pid {} (uid {}) to free {what}; asked by {}",
        sig.name(),
        process.pid,
        process.uid,
        requester.who
    ));
    let sent = control.signal(process, sig).await;
    if let Ok(false) = sent {
        log_action(&format!(
            "pid {} had already exited; nothing sent",
            process.pid
        ));
    }
    sent
}

/// One line on stderr, written directly (not through `tracing`, whose filter could hide it,
/// and whose stderr output would then say it twice): every action is logged. A closed stderr
/// is ignored.
pub(crate) fn log_action(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "netstat-mcp: action: {line}");
}

/// Why a process must not be signalled, if it must not.
fn refusal(f: &Facts, identity: &Identity, program: &str) -> Option<String> {
    let name = if program.is_empty() {
        format!("pid {}", f.pid)
    } else {
        format!("{program} (pid {})", f.pid)
    };
    if f.pid <= 1 {
        Some(format!(
            "{name} is the init process; free_port never signals pid 1"
        ))
    } else if f.kernel_thread {
        Some(format!(
            "{name} is a kernel thread; free_port never signals the kernel"
        ))
    } else if identity.protected.first() == Some(&f.pid) {
        Some(format!(
            "{name} is this server itself; free_port never signals itself (stop it another way)"
        ))
    } else if identity.protected.contains(&f.pid) {
        Some(format!(
            "{name} is this server's parent (the client that started it); free_port never \
             signals it"
        ))
    } else if identity.euid != 0 && f.uid != identity.euid {
        Some(format!(
            "{name} belongs to uid {}, and the server runs as uid {} (not root): it signals \
             only its own user's processes. Run the server as that user or as root, or stop \
             the process yourself",
            f.uid, identity.euid
        ))
    } else {
        None
    }
}

/// The sockets that make a port held: LISTEN for TCP, any bound socket for UDP.
fn holds(s: &Socket, query: &FreePortQuery) -> bool {
    s.local_port == query.port
        && s.protocol.transport() == query.transport
        && match query.transport {
            Transport::Tcp => s.state == Some(TcpState::Listen),
            Transport::Udp => true,
        }
}

/// The listing of the port: LISTEN and TIME_WAIT for TCP (owners when asked), every socket
/// of the port for UDP.
fn port_want(query: &FreePortQuery, owners: bool) -> Want {
    Want {
        tcp: query.transport == Transport::Tcp,
        udp: query.transport == Transport::Udp,
        states: StateSet::only(TcpState::Listen).with(TcpState::TimeWait),
        local_port: Some(query.port),
        owners,
        ..Want::all()
    }
}

/// Processes holding LISTEN/bound sockets on a port: pid → program, sockets there.
type Holders = BTreeMap<u32, (Arc<str>, usize)>;

/// Who holds the port (pid → program and its LISTEN/bound sockets there), how many such
/// sockets no process owns, and how many TIME_WAIT sockets it has.
fn holders_of(snapshot: &Snapshot, query: &FreePortQuery) -> (Holders, usize, usize) {
    let mut holders = BTreeMap::new();
    let mut unowned = 0;
    let mut time_wait = 0;
    for s in &snapshot.sockets {
        if s.local_port != query.port || s.protocol.transport() != query.transport {
            continue;
        }
        if s.state == Some(TcpState::TimeWait) && query.transport == Transport::Tcp {
            time_wait += 1;
        } else if holds(s, query) {
            if s.owners.is_empty() {
                unowned += 1;
            }
            for o in &s.owners {
                holders.entry(o.pid).or_insert((o.program.clone(), 0)).1 += 1;
            }
        }
    }
    (holders, unowned, time_wait)
}

/// Plans the signals: holders, families, refusals.
async fn plan(
    target: &Target,
    control: &dyn Control,
    query: &FreePortQuery,
    identity: &Identity,
) -> Result<Plan, Error> {
    let snapshot = target.source.collect(port_want(query, true)).await?;
    let (programs, unowned, time_wait) = holders_of(&snapshot, query);
    if programs.is_empty() && unowned > 0 {
        return Err(Error::Refused(format!(
            "{unowned} listening/bound socket(s) hold port {}/{} on {}, but the server cannot \
             see which process owns them (needs root, or CAP_SYS_PTRACE and \
             CAP_DAC_READ_SEARCH); nothing was signalled",
            query.port,
            query.transport.upper(),
            target.label
        )));
    }
    let pids: Vec<u32> = programs.keys().copied().collect();
    let facts = control.facts(&pids).await?;
    let holders: HashMap<u32, Holder> = pids
        .iter()
        .filter_map(|pid| {
            let f = *facts.get(pid)?;
            (!f.exited).then(|| {
                (
                    *pid,
                    Holder {
                        facts: f,
                        program: programs[pid].0.clone(),
                        sockets: programs[pid].1,
                    },
                )
            })
        })
        .collect();
    // Each holder's topmost holding ancestor: a worker's parent that holds the same port is
    // the one to stop.
    let mut families: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&pid, h) in &holders {
        let mut top = pid;
        let mut seen = HashSet::from([pid]);
        while let Some(parent) = holders.get(&top).map(|h| h.facts.ppid)
            && holders.contains_key(&parent)
            && seen.insert(parent)
        {
            top = parent;
        }
        let workers = families.entry(top).or_default();
        if top != pid {
            workers.push(h.facts.pid);
        }
    }
    if families.len() > MAX_TARGETS {
        return Err(Error::Refused(format!(
            "{} separate processes hold port {}/{} on {}; free_port signals at most \
             {MAX_TARGETS} at once. Nothing was signalled; stop their service instead",
            families.len(),
            query.port,
            query.transport.upper(),
            target.label
        )));
    }
    let mut targets = Vec::new();
    for (top, mut workers) in families {
        let holder = holders[&top].clone();
        if let Some(why) = refusal(&holder.facts, identity, &holder.program) {
            return Err(Error::Refused(format!(
                "free_port refuses port {}/{} on {}: {why}. Nothing was signalled",
                query.port,
                query.transport.upper(),
                target.label
            )));
        }
        workers.sort_unstable();
        targets.push((holder, workers));
    }
    let mut details = HashMap::new();
    if let Some(lookup) = &snapshot.processes {
        for (h, _) in &targets {
            if let Some(info) = lookup.process(h.facts.pid) {
                details.insert(h.facts.pid, info);
            }
        }
    }
    Ok(Plan {
        targets,
        details,
        time_wait,
    })
}

/// The port after signals: whether it is free, who holds it, its TIME_WAIT count.
struct PortState {
    free: bool,
    holders: Holders,
    time_wait: usize,
}

/// Checks the port every 100 ms until it is free or `deadline` passes.
async fn wait_free(
    target: &Target,
    query: &FreePortQuery,
    deadline: Instant,
) -> Result<PortState, Error> {
    loop {
        let snapshot = target.source.collect(port_want(query, false)).await?;
        let held = snapshot.sockets.iter().any(|s| holds(s, query));
        if !held || Instant::now() >= deadline {
            // Owners only when someone is left to name.
            let snapshot = if held {
                target.source.collect(port_want(query, true)).await?
            } else {
                snapshot
            };
            let (holders, unowned, time_wait) = holders_of(&snapshot, query);
            return Ok(PortState {
                free: holders.is_empty() && unowned == 0,
                holders,
                time_wait,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `connection`: closes one TCP connection of the port with `SOCK_DESTROY`.
async fn close_connection(
    target: &Target,
    control: &dyn Control,
    query: &FreePortQuery,
    peer: (IpAddr, u16),
    confirm: &dyn Confirm,
    requester: &Requester,
) -> Result<Envelope<FreePortData>, Error> {
    let what = format!(
        "the TCP connection from local port {} to {} on {}",
        query.port,
        endpoint(peer.0, peer.1),
        target.label
    );
    let found = control.connections(query.port, peer).await?;
    let Some(connection) = found.into_iter().next() else {
        return Err(Error::Input(InputError::new(
            "connection",
            format!(
                "{} (no TCP connection of local port {} has that peer)",
                endpoint(peer.0, peer.1),
                query.port
            ),
            "must name the peer (remote_ip, remote_port) of a connection on the port; \
             check_port_occupation lists them",
        )));
    };
    // Its owner, for the answer (a narrow listing of the port with owners).
    let owners = target
        .source
        .collect(Want {
            udp: false,
            local_port: Some(query.port),
            remote_port: Some(peer.1),
            ..Want::all()
        })
        .await
        .ok()
        .and_then(|s| {
            s.sockets
                .into_iter()
                .find(|s| s.foreign.ip.to_canonical() == peer.0.to_canonical())
                .and_then(|s| s.owners.first().cloned())
        });
    let mut row = ClosedConnection {
        local_ip: connection.socket.local_ip.to_canonical().to_string(),
        local_port: connection.socket.local_port,
        remote_ip: peer.0.to_canonical().to_string(),
        remote_port: peer.1,
        state: connection
            .socket
            .state
            .map(|s| s.netstat_name().to_string()),
        pid: owners.as_ref().map(|o| o.pid),
        program: owners.as_ref().map(|o| o.program.to_string()),
        closed: None,
    };
    let mut data = FreePortData {
        host: target.host.clone(),
        port: query.port,
        protocol: "tcp".into(),
        dry_run: query.dry_run,
        action: "close_connection".into(),
        processes: Vec::new(),
        connection: None,
        confirmed_by: None,
        free: false,
        remaining: Vec::new(),
        time_wait: 0,
    };
    let held_by = match (&row.program, row.pid) {
        (Some(p), Some(pid)) => format!(" (held by {p}, pid {pid})"),
        _ => String::new(),
    };
    if query.dry_run {
        data.connection = Some(row);
        return Ok(Envelope::ok(
            format!(
                "Dry run: would close {what}{held_by} with SOCK_DESTROY (the process is not \
                 signalled; it sees the connection aborted). Nothing was closed; call again \
                 with dry_run false to do it"
            ),
            data,
        ));
    }
    let question = format!("Close {what}{held_by}? The process keeps running.");
    data.confirmed_by = Some(confirmed(confirm, &question, requester).await?.into());
    log_action(&format!(
        "closing {what}{held_by} with SOCK_DESTROY; asked by {}",
        requester.who
    ));
    control.close(&connection).await?;
    let closed = control.connections(query.port, peer).await?.is_empty();
    row.closed = Some(closed);
    data.connection = Some(row);
    data.free = closed;
    let message = if closed {
        format!("Closed {what}{held_by}; the process and its other connections are untouched")
    } else {
        format!("The kernel accepted closing {what}{held_by}, but it is still listed")
    };
    Ok(Envelope::ok(message, data))
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    super::health::endpoint(ip.to_canonical(), Some(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pid: u32, uid: u32) -> Facts {
        Facts {
            pid,
            ppid: 1,
            uid,
            start: 1,
            kernel_thread: false,
            exited: false,
        }
    }

    #[test]
    fn refusals_name_the_process_and_the_reason() {
        let me = Identity {
            protected: vec![500, 400],
            euid: 1000,
        };
        assert!(
            refusal(&facts(1, 0), &me, "systemd")
                .unwrap()
                .contains("pid 1")
        );
        assert!(
            refusal(&facts(500, 1000), &me, "x")
                .unwrap()
                .contains("itself")
        );
        assert!(
            refusal(&facts(400, 1000), &me, "x")
                .unwrap()
                .contains("parent")
        );
        let other = refusal(&facts(600, 33), &me, "nginx").unwrap();
        assert!(
            other.contains("nginx (pid 600)") && other.contains("uid 33"),
            "{other}"
        );
        assert_eq!(refusal(&facts(600, 1000), &me, "x"), None);
        let root = Identity {
            protected: vec![],
            euid: 0,
        };
        assert_eq!(refusal(&facts(600, 33), &root, "x"), None);
        let kthread = Facts {
            kernel_thread: true,
            ..facts(7, 0)
        };
        assert!(refusal(&kthread, &root, "").unwrap().contains("kernel"));
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = |args: FreePortArgs, param: &str| {
            let e = args.validate().unwrap_err();
            assert_eq!(e.param, param, "{e}");
        };
        bad(FreePortArgs::default(), "port");
        bad(
            FreePortArgs {
                port: Some(0),
                ..Default::default()
            },
            "port",
        );
        bad(
            FreePortArgs {
                port: Some(70000),
                ..Default::default()
            },
            "port",
        );
        bad(
            FreePortArgs {
                port: Some(80),
                proto: Some("sctp".into()),
                ..Default::default()
            },
            "proto",
        );
        bad(
            FreePortArgs {
                port: Some(80),
                timeout_secs: Some(0),
                ..Default::default()
            },
            "timeout_secs",
        );
        bad(
            FreePortArgs {
                port: Some(80),
                host: Some("web-*".into()),
                ..Default::default()
            },
            "host",
        );
        bad(
            FreePortArgs {
                port: Some(80),
                connection: Some(ConnectionArg {
                    remote_ip: Some("LISTEN".into()),
                    remote_port: Some(5),
                }),
                ..Default::default()
            },
            "connection.remote_ip",
        );
        bad(
            FreePortArgs {
                port: Some(80),
                proto: Some("udp".into()),
                connection: Some(ConnectionArg {
                    remote_ip: Some("10.0.0.1".into()),
                    remote_port: Some(5),
                }),
                ..Default::default()
            },
            "connection",
        );
        let q = FreePortArgs {
            port: Some(8080),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert!(q.dry_run && !q.force);
        assert_eq!(q.timeout, Duration::from_secs(5));
    }

    #[test]
    fn targets_are_named_with_user_and_workers() {
        let p = |pid, workers| SignalledProcess {
            pid,
            program: "nginx".into(),
            user: Some("www-data".into()),
            uid: 33,
            command: None,
            sockets: 1,
            workers: Vec::new(),
            worker_count: workers,
            signals: Vec::new(),
            exited: None,
        };
        assert_eq!(
            targets_text(&[p(812, 2)]),
            "nginx (pid 812, user www-data; 2 workers)"
        );
        assert_eq!(
            targets_text(&[p(1, 0), p(2, 1), p(3, 0)]),
            "nginx (pid 1, user www-data), nginx (pid 2, user www-data; 1 worker) and nginx \
             (pid 3, user www-data)"
        );
    }
}
