//! The local machine's sockets: netlink `sock_diag` first, `/proc/net` when netlink is refused,
//! and the parsers over `ss`/`netstat`/`lsof` output where neither exists; then owners from
//! `/proc/<pid>/fd`.
//!
//! netlink, `/proc` and the owner scan are Linux's (`cfg(target_os = "linux")`). Elsewhere
//! (macOS, the BSDs) the local source is the external one: `netstat`/`lsof` output parsed,
//! owners as those tools print them. [`Backend::External`] chooses that path on Linux too, so
//! it stays tested here.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Error;
use crate::model::Socket;
#[cfg(target_os = "linux")]
use crate::model::Transport;
#[cfg(target_os = "linux")]
use crate::owners;
use crate::source::{BoxFuture, OwnerCoverage, Snapshot, Source, Want};
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
            Backend::External => external_snapshot(&want, Vec::new()),
            #[cfg(target_os = "linux")]
            _ => self.collect_linux(want),
            #[cfg(not(target_os = "linux"))]
            Backend::Auto => external_snapshot(&want, Vec::new()),
            #[cfg(not(target_os = "linux"))]
            Backend::Netlink | Backend::Procfs => Err(Error::NoLocalSource {
                detail: "netlink and /proc/net exist on Linux only; use the external backend (ss, netstat or lsof)".into(),
            }),
        }
    }

    /// netlink (or `/proc/net`) and the owner scan.
    #[cfg(target_os = "linux")]
    fn collect_linux(&self, want: Want) -> Result<Snapshot, Error> {
        let mut notes = Vec::new();
        let mut sockets = match self.backend {
            Backend::External => return external_snapshot(&want, notes),
            Backend::Netlink => netlink_sockets(&want)?,
            Backend::Procfs => {
                let (sockets, remarks) = procfs::sockets(&self.proc_root, &want)?;
                notes.extend(remarks);
                sockets
            }
            Backend::Auto => {
                match netlink_sockets(&want) {
                    Ok(s) => s,
                    Err(netlink_err) => {
                        tracing::warn!(cause = %netlink_err, "netlink sock_diag unavailable; reading /proc/net");
                        match procfs::sockets(&self.proc_root, &want) {
                            Ok((s, remarks)) => {
                                notes.push("netlink sock_diag was unavailable, so /proc/net was read instead".to_string());
                                notes.extend(remarks);
                                s
                            }
                            Err(proc_err) => {
                                tracing::warn!(cause = %proc_err, "/proc/net unreadable; trying ss, netstat, lsof");
                                return external_snapshot(&want, notes).map_err(|ext| {
                                    Error::NoLocalSource {
                                        detail: format!("{netlink_err}; {proc_err}; {ext}"),
                                    }
                                });
                            }
                        }
                    }
                }
            }
        };
        // What the kernel could not filter (a foreign port, a text fallback's rows) goes before
        // the owner scan, which then looks only for the sockets that remain.
        if want.remote_port.is_some() {
            sockets.retain(|s| want.admits(s));
        }
        let owners = if want.owners {
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
        })
    }
}

impl Source for LocalSource {
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
fn netlink_sockets(want: &Want) -> Result<Vec<Socket>, Error> {
    let mut diag = netlink::Diag::open()?;
    let mut out = Vec::new();
    if want.local_port.is_none() {
        out.reserve(socket_count_estimate(want));
    }
    if want.tcp {
        let before = out.len();
        if let Err(e) = diag.dump_tcp_any_family(want.states, want.local_port, &mut out) {
            tracing::debug!(cause = %e, "TCPDIAG_GETSOCK refused; one sock_diag request per family");
            out.truncate(before);
            for ipv6 in [false, true] {
                diag.dump(Transport::Tcp, ipv6, want.states, want.local_port, &mut out)?;
            }
        }
    }
    if want.udp {
        for ipv6 in [false, true] {
            diag.dump(
                Transport::Udp,
                ipv6,
                want.udp_states,
                want.local_port,
                &mut out,
            )?;
        }
    }
    Ok(out)
}

/// How many sockets a full dump will return, from `/proc/net/sockstat{,6}`, so the vector is
/// allocated once (growing it by doubling would hold two copies at the peak). 0 if unknown.
#[cfg(target_os = "linux")]
fn socket_count_estimate(want: &Want) -> usize {
    let mut total = 0usize;
    for file in ["/proc/net/sockstat", "/proc/net/sockstat6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let Some((proto, fields)) = line.split_once(':') else {
                continue;
            };
            let wanted = match proto {
                "TCP" | "TCP6" => want.tcp,
                "UDP" | "UDP6" => want.udp,
                _ => false,
            };
            if !wanted {
                continue;
            }
            let words: Vec<&str> = fields.split_whitespace().collect();
            for pair in words.chunks(2) {
                if let ["inuse" | "tw", n] = pair {
                    total += n.parse::<usize>().unwrap_or(0);
                }
            }
        }
    }
    // Sockets come and go between the estimate and the dump.
    total + total / 16 + 16
}

/// The external path as a snapshot: the tools already named the owners they could see.
fn external_snapshot(want: &Want, mut notes: Vec<String>) -> Result<Snapshot, Error> {
    let (sockets, note) =
        external_sockets(want).map_err(|detail| Error::NoLocalSource { detail })?;
    notes.push(note);
    Ok(Snapshot {
        sockets,
        owners: if want.owners {
            OwnerCoverage::Complete
        } else {
            OwnerCoverage::NotRequested
        },
        notes,
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
