//! The local machine's sockets: netlink `sock_diag` first, `/proc/net` when netlink is refused,
//! and the parsers over `ss`/`netstat`/`lsof` output where neither exists; with `scope=all`
//! every other network namespace too (`netns`); then owners from `/proc/<pid>/fd`, one scan for
//! all namespaces, and a [`ProcessTable`] for owner details on demand.
//!
//! netlink, `/proc`, namespaces and the owner scan are Linux's (`cfg(target_os = "linux")`).
//! Elsewhere (macOS, the BSDs) the local source is the external one: `netstat`/`lsof` output
//! parsed, owners as those tools print them. [`Backend::External`] chooses that path on Linux
//! too, so it stays tested here.

#[cfg(target_os = "linux")]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Error;
use crate::model::Socket;
#[cfg(target_os = "linux")]
use crate::model::Transport;
#[cfg(target_os = "linux")]
use crate::owners;
#[cfg(target_os = "linux")]
use crate::process::ProcessTable;
#[cfg(target_os = "linux")]
use crate::source::netns::{self, Listed};
use crate::source::{BoxFuture, OwnerCoverage, Scope, Snapshot, Source, Want};
#[cfg(target_os = "linux")]
use crate::source::{netlink, procfs};

/// How the local source lists sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// netlink, falling back to `/proc/net`, then to external commands (off Linux: external
    /// commands only).
    #[default]
    Auto,
    /// netlink `sock_diag` only (Linux).
    Netlink,
    /// `/proc/net` only (Linux).
    Procfs,
    /// `ss`, `netstat` or `lsof` output, parsed: the only way off Linux.
    External,
}

/// Sockets of the machine we run on.
#[derive(Debug, Clone)]
pub struct LocalSource {
    backend: Backend,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    proc_root: PathBuf,
}

impl Default for LocalSource {
    fn default() -> Self {
        LocalSource::new(Backend::Auto)
    }
}

impl LocalSource {
    pub fn new(backend: Backend) -> LocalSource {
        LocalSource {
            backend,
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Collects synchronously (the async [`Source`] runs this on a blocking thread).
    pub fn collect_blocking(&self, want: Want) -> Result<Snapshot, Error> {
        match self.backend {
            Backend::External => self.external_snapshot(&want, Vec::new()),
            #[cfg(target_os = "linux")]
            _ => self.collect_linux(want),
            #[cfg(not(target_os = "linux"))]
            Backend::Auto => self.external_snapshot(&want, Vec::new()),
            #[cfg(not(target_os = "linux"))]
            Backend::Netlink | Backend::Procfs => Err(Error::NoLocalSource {
                detail: "netlink and /proc/net exist on Linux only; use the external backend (ss, netstat or lsof)".into(),
            }),
        }
    }

    /// netlink (or `/proc/net`), other namespaces on request, and the owner scan.
    #[cfg(target_os = "linux")]
    fn collect_linux(&self, want: Want) -> Result<Snapshot, Error> {
        let mut notes = Vec::new();
        let Listed {
            mut sockets,
            devices,
            notes: remarks,
        } = match list(self.backend, &self.proc_root, &want) {
            Ok(listed) => listed,
            Err(err) if self.backend == Backend::Auto => {
                tracing::warn!(cause = %err, "/proc/net unreadable; trying ss, netstat, lsof");
                return self
                    .external_snapshot(&want, notes)
                    .map_err(|ext| match ext {
                        Error::NoLocalSource { detail } => Error::NoLocalSource {
                            detail: format!("{err}; {detail}"),
                        },
                        other => other,
                    });
            }
            Err(err) => return Err(err),
        };
        notes.extend(remarks);
        if want.scope == Scope::All {
            self.list_other_namespaces(&want, &mut sockets, &devices, &mut notes);
        } else {
            netns::label(&mut sockets, &devices, None);
        }
        // What the kernel could not filter (a foreign port, a text fallback's rows) goes before
        // the owner scan, which then looks only for the sockets that remain. (After labelling:
        // the device positions are positions in the unfiltered vector.)
        if want.remote_port.is_some() {
            sockets.retain(|s| want.admits(s));
        }
        let owners = if want.owners {
            // One scan for every namespace: socket inodes are unique on the machine.
            let stats = owners::attach(&self.proc_root, &mut sockets);
            tracing::debug!(?stats, "owner scan");
            if stats.unreadable > 0 {
                OwnerCoverage::Partial {
                    unreadable_processes: stats.unreadable,
                }
            } else {
                OwnerCoverage::Complete
            }
        } else {
            OwnerCoverage::NotRequested
        };
        Ok(Snapshot {
            sockets,
            owners,
            notes,
            processes: Some(Arc::new(ProcessTable::new(&self.proc_root))),
        })
    }

    #[cfg(target_os = "linux")]
    /// `scope=all`: labels our own sockets with our namespace, then lists every other
    /// namespace from inside it and appends its sockets. Namespaces that cannot be listed
    /// are reported in `notes`.
    fn list_other_namespaces(
        &self,
        want: &Want,
        sockets: &mut Vec<Socket>,
        devices: &[(usize, u32)],
        notes: &mut Vec<String>,
    ) {
        let found = match netns::enumerate(&self.proc_root, Path::new(RUN_NETNS)) {
            Ok(found) => found,
            Err(e) => {
                notes.push(format!(
                    "other network namespaces could not be found ({e}); only this one is listed"
                ));
                netns::label(sockets, devices, None);
                return;
            }
        };
        netns::label(sockets, devices, Some(&found.own));
        // Inside a namespace, `/proc/thread-self/net` is that namespace's (`/proc/net` follows
        // the process, not the thread).
        let thread_proc = self.proc_root.join("thread-self");
        let backend = self.backend;
        let results = netns::dump(&found.others, || {
            list(backend, &thread_proc, want).map_err(|e| e.to_string())
        });
        let mut failed: Vec<String> = Vec::new();
        for (ns, result) in found.others.iter().zip(results) {
            match result {
                Ok((more, remarks)) => {
                    sockets.extend(more);
                    // The same remark from many namespaces (a fallback) is said once.
                    for remark in remarks {
                        if !notes.contains(&remark) {
                            notes.push(remark);
                        }
                    }
                }
                Err(why) => failed.push(match &ns.netns.name {
                    Some(name) => format!("{name} (inode {}): {why}", ns.netns.inode),
                    None => format!("inode {}: {why}", ns.netns.inode),
                }),
            }
        }
        if !failed.is_empty() {
            let shown: Vec<&str> = failed.iter().take(5).map(String::as_str).collect();
            notes.push(format!(
                "{} of {} other network namespace(s) could not be listed: {}{}",
                failed.len(),
                found.others.len(),
                shown.join("; "),
                if failed.len() > shown.len() {
                    "; ..."
                } else {
                    ""
                }
            ));
        }
        if found.unreadable_processes > 0 {
            notes.push(if rustix::process::geteuid().is_root() {
                format!(
                    "the network namespace of {} process(es) could not be read even as root (processes of another user namespace or a sandbox), so a namespace only they hold may be missing",
                    found.unreadable_processes
                )
            } else {
                format!(
                    "the network namespace of {} process(es) could not be read; to list every namespace, run as root (sudo): entering a namespace needs CAP_SYS_ADMIN",
                    found.unreadable_processes
                )
            });
        }
        if found.left_out > 0 {
            notes.push(format!(
                "{} network namespace(s) were left out (at most {} are listed per call)",
                found.left_out,
                netns::MAX_NAMESPACES
            ));
        }
    }
}

#[cfg(target_os = "linux")]
/// Where `ip netns` keeps named namespaces.
const RUN_NETNS: &str = "/run/netns";

#[cfg(target_os = "linux")]
/// Lists the sockets of the calling thread's network namespace with `backend`; `net_root` is
/// the directory whose `net/` holds the `/proc/net` tables of that namespace.
fn list(backend: Backend, net_root: &Path, want: &Want) -> Result<Listed, Error> {
    match backend {
        // Handled before (`external_snapshot`): the tools list only the namespace they run in.
        Backend::External => Err(Error::NoLocalSource {
            detail: "the external backend (ss, netstat, lsof) lists only this network namespace"
                .into(),
        }),
        Backend::Netlink => netlink_sockets(net_root, want),
        Backend::Procfs => procfs_sockets(net_root, want),
        Backend::Auto => netlink_sockets(net_root, want).or_else(|netlink_err| {
            tracing::warn!(cause = %netlink_err, "netlink sock_diag unavailable; reading /proc/net");
            let mut listed = procfs_sockets(net_root, want).map_err(|proc_err| {
                Error::NoLocalSource {
                    detail: format!("{netlink_err}; {proc_err}"),
                }
            })?;
            listed.notes.insert(
                0,
                "netlink sock_diag was unavailable, so /proc/net was read instead".to_string(),
            );
            Ok(listed)
        }),
    }
}

/// Said when health was asked of a listing that cannot carry it.
const NO_HEALTH: &str = "connection health (tcp_info, socket memory) comes from netlink sock_diag, which this listing could not use: no health fields are shown";

#[cfg(target_os = "linux")]
fn procfs_sockets(net_root: &Path, want: &Want) -> Result<Listed, Error> {
    let (sockets, mut notes) = procfs::sockets(net_root, want)?;
    if want.health {
        notes.push(NO_HEALTH.to_string());
    }
    Ok(Listed {
        sockets,
        // /proc/net does not say which device a socket is bound to.
        devices: Vec::new(),
        notes,
    })
}

impl LocalSource {
    /// The external path as a snapshot: the tools already named the owners they could see. Scope
    /// `all` lists only this namespace here (the tools see no other).
    fn external_snapshot(&self, want: &Want, mut notes: Vec<String>) -> Result<Snapshot, Error> {
        let (sockets, note) =
            external_sockets(want).map_err(|detail| Error::NoLocalSource { detail })?;
        notes.push(note);
        if want.health {
            notes.push(NO_HEALTH.to_string());
        }
        if want.scope == Scope::All {
            notes.push(
                "other network namespaces were not listed (no netlink or /proc/net)".to_string(),
            );
        }
        #[cfg(target_os = "linux")]
        let processes: Option<Arc<dyn crate::process::ProcessLookup>> =
            Some(Arc::new(ProcessTable::new(&self.proc_root)));
        #[cfg(not(target_os = "linux"))]
        let processes = None;
        Ok(Snapshot {
            sockets,
            owners: if want.owners {
                OwnerCoverage::Complete
            } else {
                OwnerCoverage::NotRequested
            },
            notes,
            processes,
        })
    }
}

impl Source for LocalSource {
    fn port_sysctls(&self) -> BoxFuture<'_, Option<[Option<String>; 3]>> {
        Box::pin(async { Some(port_sysctl_texts()) })
    }

    #[cfg(target_os = "linux")]
    fn ports_in_use(
        &self,
        transport: crate::model::Transport,
        lo: u16,
        hi: u16,
    ) -> BoxFuture<'_, Option<std::collections::BTreeSet<u16>>> {
        if matches!(self.backend, Backend::Procfs | Backend::External) {
            return Box::pin(async { None });
        }
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                netlink::Diag::open()
                    .and_then(|mut d| d.ports_in_use(transport, lo, hi))
                    .map_err(|e| tracing::debug!(cause = %e, "range dump refused"))
                    .ok()
            })
            .await
            .ok()
            .flatten()
        })
    }

    #[cfg(target_os = "linux")]
    fn control(&self) -> Result<Arc<dyn super::Control>, String> {
        Ok(Arc::new(LocalControl))
    }

    fn collect(&self, want: Want) -> BoxFuture<'_, Result<Snapshot, Error>> {
        let this = Arc::new(self.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.collect_blocking(want))
                .await
                .map_err(|e| Error::NoLocalSource {
                    detail: format!("collector task failed: {e}"),
                })?
        })
    }
}

#[cfg(target_os = "linux")]
fn netlink_sockets(net_root: &Path, want: &Want) -> Result<Listed, Error> {
    let mut diag = netlink::Diag::open()?.with_health(want.health);
    let mut out = Vec::new();
    if want.local_port.is_none() {
        out.reserve(procfs::socket_count_estimate(net_root, want));
    }
    if want.tcp {
        let before = out.len();
        if let Err(e) = diag.dump_tcp_ports(want.states, want.ports(), &mut out) {
            tracing::debug!(cause = %e, "TCPDIAG_GETSOCK refused; one sock_diag request per family");
            out.truncate(before);
            diag.forget_devices_from(before);
            for ipv6 in [false, true] {
                diag.dump(Transport::Tcp, ipv6, want.states, want.ports(), &mut out)?;
            }
        }
    }
    if want.udp {
        for ipv6 in [false, true] {
            diag.dump(
                Transport::Udp,
                ipv6,
                want.udp_states,
                want.ports(),
                &mut out,
            )?;
        }
    }
    Ok(Listed {
        sockets: out,
        devices: diag.take_devices(),
        notes: Vec::new(),
    })
}

/// Last resort: run `ss`, `netstat` or `lsof` and parse their output.
fn external_sockets(want: &Want) -> Result<(Vec<Socket>, String), String> {
    let (command, parsed) =
        crate::parse::external::run_fallback(std::time::Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
    let sockets = parsed
        .sockets
        .into_iter()
        .filter(|s| want.admits(s))
        .collect();
    let mut note = format!(
        "local sockets were read from `{} {}` output (netlink and /proc/net were not used)",
        command.program,
        command.args.join(" ")
    );
    if !parsed.skipped.is_empty() {
        note.push_str(&format!(
            " ({} line(s) could not be read)",
            parsed.skipped.len()
        ));
    }
    Ok((sockets, note))
}

/// Whether `ip` is an address a socket of this host can bind: a wildcard, a loopback address,
/// or one assigned to an interface (IPv4 from `/proc/net/fib_trie`'s local routes, IPv6 from
/// `/proc/net/if_inet6`). Where neither file can be read, every address is taken as ours.
pub(crate) fn is_host_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => match std::fs::read_to_string("/proc/net/fib_trie") {
            // `|-- 10.0.0.5` followed by `/32 host LOCAL`.
            Ok(text) => {
                let mut last = None;
                for line in text.lines() {
                    let line = line.trim_start();
                    if let Some(addr) = line.strip_prefix("|-- ") {
                        last = addr.trim().parse::<std::net::Ipv4Addr>().ok();
                    } else if line.contains("/32 host LOCAL") && last == Some(v4) {
                        return true;
                    }
                }
                false
            }
            Err(_) => true,
        },
        IpAddr::V6(v6) => match std::fs::read_to_string("/proc/net/if_inet6") {
            Ok(text) => {
                let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
                text.lines()
                    .any(|l| l.split_whitespace().next() == Some(hex.as_str()))
            }
            Err(_) => true,
        },
    }
}

/// The text of `ip_local_port_range`, `ip_unprivileged_port_start` and
/// `ip_local_reserved_ports` (`/proc/sys/net/ipv4/`), each `None` when unreadable.
pub(crate) fn port_sysctl_texts() -> [Option<String>; 3] {
    [
        "ip_local_port_range",
        "ip_unprivileged_port_start",
        "ip_local_reserved_ports",
    ]
    .map(|name| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok())
}

/// Processes of this machine, for `free_port`: facts from `/proc`, signals through a pidfd
/// opened only after the process's start time was checked again.
#[cfg(target_os = "linux")]
struct LocalControl;

#[cfg(target_os = "linux")]
impl super::Control for LocalControl {
    fn facts<'a>(
        &'a self,
        pids: &'a [u32],
    ) -> BoxFuture<'a, Result<std::collections::HashMap<u32, super::Facts>, Error>> {
        Box::pin(async move {
            Ok(pids
                .iter()
                .filter_map(|&pid| Some((pid, super::Facts::read(pid)?)))
                .collect())
        })
    }

    fn signal<'a>(
        &'a self,
        process: &'a super::Facts,
        sig: super::Sig,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            use crate::process::signal::Handle;
            let failed = |source| Error::Signal {
                pid: process.pid,
                signal: sig.name(),
                source,
            };
            let handle = match Handle::open(process.pid, process.start) {
                Ok(h) => h,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(failed(e)),
            };
            match handle.signal(sig) {
                Ok(()) => Ok(true),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {
                    Ok(false)
                }
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn connections(
        &self,
        port: u16,
        peer: (std::net::IpAddr, u16),
    ) -> BoxFuture<'_, Result<Vec<super::Connection>, Error>> {
        Box::pin(blocking(move || {
            Ok(netlink::Diag::open()?
                .find_connections(port, peer)?
                .into_iter()
                .map(|(socket, ids)| super::Connection {
                    socket,
                    cookie: ids.cookie,
                    interface: ids.interface,
                })
                .collect())
        }))
    }

    fn close<'a>(&'a self, connection: &'a super::Connection) -> BoxFuture<'a, Result<(), Error>> {
        let connection = connection.clone();
        Box::pin(blocking(move || {
            let ids = netlink::SocketIds {
                cookie: connection.cookie,
                interface: connection.interface,
                counters: None,
            };
            netlink::Diag::open()?
                .destroy(&connection.socket, ids)
                .map_err(destroy_error)
        }))
    }

    fn identity(&self) -> BoxFuture<'_, Result<super::Identity, Error>> {
        Box::pin(async {
            let mut protected = vec![std::process::id()];
            if let Some(parent) = rustix::process::getppid() {
                protected.push(parent.as_raw_nonzero().get() as u32);
            }
            Ok(super::Identity {
                protected,
                euid: rustix::process::geteuid().as_raw(),
            })
        })
    }
}

/// A refused `SOCK_DESTROY`, said as what the operator can do about it.
#[cfg(target_os = "linux")]
fn destroy_error(e: std::io::Error) -> Error {
    let errno = e.raw_os_error();
    if errno == Some(rustix::io::Errno::PERM.raw_os_error())
        || errno == Some(rustix::io::Errno::ACCESS.raw_os_error())
    {
        Error::Refused(
            "closing a connection needs CAP_NET_ADMIN (run the server as root, or grant it \
             with setcap cap_net_admin+ep); nothing was closed"
                .into(),
        )
    } else if errno == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) {
        Error::Refused(
            "this kernel cannot close sockets from outside (it lacks CONFIG_INET_DIAG_DESTROY); \
             nothing was closed"
                .into(),
        )
    } else if errno == Some(rustix::io::Errno::NOENT.raw_os_error()) {
        Error::Refused("the connection closed before it could be closed".into())
    } else {
        Error::Netlink {
            stage: "SOCK_DESTROY",
            source: e,
        }
    }
}

/// Runs a netlink call off the async runtime.
#[cfg(target_os = "linux")]
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::NoLocalSource {
            detail: format!("netlink task failed: {e}"),
        })?
}
