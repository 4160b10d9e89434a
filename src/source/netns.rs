//! Every network namespace on the machine, each listed from inside it.
//!
//! A `sock_diag` dump (and `/proc/net`) shows only the network namespace of the thread that
//! asks, so a container's sockets are invisible from the host's. [`enumerate`] finds the
//! namespaces — every one some process holds (`/proc/<pid>/ns/net`, deduplicated by nsfs
//! inode) and every one named in `/run/netns` (what `ip netns add` creates) — and opens each
//! once, which also keeps it alive while we list it. [`dump`] lists them on a few short-lived
//! worker threads: each enters a namespace with `setns(2)` (rustix's
//! `move_into_link_name_space`), opens its netlink socket there (a socket belongs to the
//! namespace it was created in), dumps, names the bound interfaces with an `ioctl` on a socket
//! of that namespace, and moves on to the next. The threads are our own and exit at the end, so
//! no thread of the caller's pool ever changes namespace.
//!
//! Why threads and not a forked helper: `setns(CLONE_NEWNET)` is per thread and allowed in a
//! multi-threaded process, costs microseconds, and keeps the results in our memory; a helper
//! process would cost a fork/exec and a serialisation per namespace, and `fork` in a process
//! running tokio is only safe when followed at once by `exec`.
//!
//! Entering a namespace needs `CAP_SYS_ADMIN`; reading another user's `/proc/<pid>/ns/net`
//! needs ptrace access. What could not be entered or read is counted and reported, never fatal.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::model::{Netns, Place, Socket};

/// At most this many namespaces are listed in one call (each is held open while listed).
pub(crate) const MAX_NAMESPACES: usize = 1024;
/// At most this many worker threads enter namespaces.
const MAX_WORKERS: usize = 4;

/// A namespace found, held open.
#[derive(Debug)]
pub struct Namespace {
    pub(crate) netns: Netns,
    fd: OwnedFd,
}

/// The namespaces of the machine, as far as we may see them.
#[derive(Debug)]
pub struct Namespaces {
    /// The namespace we run in (listed by the caller, not by [`dump`]).
    pub(crate) own: Netns,
    /// Every other namespace found.
    pub others: Vec<Namespace>,
    /// Processes whose namespace link we may not read (another user's, without root).
    pub(crate) unreadable_processes: usize,
    /// Namespaces left out because there were more than [`MAX_NAMESPACES`].
    pub(crate) left_out: usize,
}

/// Finds the network namespaces: ours, those named under `run_netns`, those processes hold.
pub fn enumerate(proc_root: &Path, run_netns: &Path) -> Result<Namespaces, Errno> {
    let proc_dir = rustix::fs::open(
        proc_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let own_stat = rustix::fs::statat(&proc_dir, c"self/ns/net", rustix::fs::AtFlags::empty())?;
    let own_inode = own_stat.st_ino;
    let mut found = Found {
        nsfs_dev: own_stat.st_dev,
        others: Vec::new(),
        names: HashMap::new(),
        seen: HashSet::from([own_inode]),
        left_out: 0,
        unreadable_processes: 0,
    };
    // Named namespaces first: their names label rows, and their files keep them alive even
    // when no process is inside.
    found.named(run_netns);
    found.held(&proc_dir, proc_root);
    Ok(Namespaces {
        own: Netns {
            inode: own_inode,
            name: found.names.get(&own_inode).cloned(),
        },
        others: found.others,
        unreadable_processes: found.unreadable_processes,
        left_out: found.left_out,
    })
}

/// What [`enumerate`] gathers.
struct Found {
    /// The device of nsfs: a namespace file on another device is not a namespace.
    nsfs_dev: u64,
    others: Vec<Namespace>,
    names: HashMap<u64, Arc<str>>,
    /// Namespace inodes met so far (ours included).
    seen: HashSet<u64>,
    left_out: usize,
    unreadable_processes: usize,
}

impl Found {
    /// The namespaces named under `run_netns` (`ip netns add`), in name order.
    fn named(&mut self, run_netns: &Path) {
        let Ok(entries) = std::fs::read_dir(run_netns) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(Arc::<str>::from) else {
                continue;
            };
            let Ok(fd) = rustix::fs::open(
                entry.path(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            // A file left behind by a failed `ip netns add` is an empty file, not a mount of
            // a namespace: it lives on another device.
            let Ok(st) = rustix::fs::fstat(&fd) else {
                continue;
            };
            if st.st_dev != self.nsfs_dev {
                continue;
            }
            self.names.entry(st.st_ino).or_insert_with(|| name.clone());
            if !self.seen.insert(st.st_ino) {
                continue;
            }
            if self.others.len() >= MAX_NAMESPACES {
                self.left_out += 1;
                continue;
            }
            self.others.push(Namespace {
                netns: Netns {
                    inode: st.st_ino,
                    name: Some(name),
                },
                fd,
            });
        }
    }

    /// The namespaces processes are in, named by their container where they have one.
    fn held(&mut self, proc_dir: &OwnedFd, proc_root: &Path) {
        for pid in crate::owners::list_pids(proc_dir) {
            let mut path = pid.to_string().into_bytes();
            path.extend_from_slice(b"/ns/net\0");
            let Ok(path) = CStr::from_bytes_with_nul(&path) else {
                continue;
            };
            let mut buf = [MaybeUninit::<u8>::uninit(); 64];
            let inode = match rustix::fs::readlinkat_raw(proc_dir, path, &mut buf) {
                Ok((link, _)) => match ns_inode(link) {
                    Some(inode) => inode,
                    None => continue,
                },
                Err(Errno::ACCESS | Errno::PERM) => {
                    self.unreadable_processes += 1;
                    continue;
                }
                Err(_) => continue, // gone, or a kernel thread without namespaces
            };
            if self.seen.contains(&inode) {
                continue;
            }
            if self.others.len() >= MAX_NAMESPACES {
                self.left_out += 1;
                self.seen.insert(inode);
                continue;
            }
            let Ok(fd) = rustix::fs::openat(
                proc_dir,
                path,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue; // exited between the two calls
            };
            // The link named the namespace the process was in when we read it; the
            // descriptor is what we will enter, so take its inode.
            let Ok(st) = rustix::fs::fstat(&fd) else {
                continue;
            };
            if !self.seen.insert(st.st_ino) {
                continue;
            }
            let name = container_name(proc_root, pid);
            self.others.push(Namespace {
                netns: Netns {
                    inode: st.st_ino,
                    name,
                },
                fd,
            });
        }
    }
}

/// `runtime:short-id` of the container a process is in, to name its namespace.
fn container_name(proc_root: &Path, pid: u32) -> Option<Arc<str>> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let container = crate::process::cgroup::parse(&text).container?;
    Some(Arc::from(format!("{}:{}", container.runtime, container.id)))
}

/// `net:[4026531840]` → 4026531840.
fn ns_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"net:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What one namespace's listing gave.
#[derive(Debug)]
pub struct Listed {
    pub sockets: Vec<Socket>,
    /// (position in `sockets`, interface index) of device-bound sockets.
    pub devices: Vec<(usize, u32)>,
    /// Remarks (a fallback used, lines that could not be read).
    pub notes: Vec<String>,
}

/// One namespace's labelled sockets and remarks, or why it could not be listed.
pub(crate) type NsResult = Result<(Vec<Socket>, Vec<String>), String>;

/// Lists each namespace from inside it with `list` (run on a worker thread that has entered
/// the namespace), names the bound interfaces there, and labels every socket with its
/// namespace. Returns, per namespace in the order given, the labelled sockets or why it could
/// not be listed.
pub fn dump<F>(namespaces: &[Namespace], list: F) -> Vec<NsResult>
where
    F: Fn() -> Result<Listed, String> + Sync,
{
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
        .min(namespaces.len());
    if workers == 0 {
        return Vec::new();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<NsResult>> = (0..namespaces.len()).map(|_| None).collect();
    let per_worker: Vec<Vec<(usize, NsResult)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(ns) = namespaces.get(i) else { break };
                        done.push((i, list_inside(ns, &list)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, result) in per_worker.into_iter().flatten() {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("the listing thread failed".to_string())))
        .collect()
}

/// On the current (worker) thread: enter `ns`, list, name devices, label.
fn list_inside<F>(ns: &Namespace, list: &F) -> NsResult
where
    F: Fn() -> Result<Listed, String>,
{
    rustix::thread::move_into_link_name_space(
        ns.fd.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| match e {
        Errno::PERM => "entering it needs root (CAP_SYS_ADMIN)".to_string(),
        e => format!("setns failed: {e}"),
    })?;
    let Listed {
        mut sockets,
        devices,
        notes,
    } = list()?;
    label(&mut sockets, &devices, Some(&ns.netns));
    Ok((sockets, notes))
}

/// Gives sockets their [`Place`]: with `netns`, every socket (one shared value per
/// namespace and interface); without, only the device-bound ones. Interface names are looked
/// up in the calling thread's namespace, once per index.
pub(crate) fn label(sockets: &mut [Socket], devices: &[(usize, u32)], netns: Option<&Netns>) {
    let mut by_index: HashMap<u32, Arc<Place>> = HashMap::new();
    if !devices.is_empty() {
        let names = InterfaceNames::open();
        for &(at, index) in devices {
            let Some(socket) = sockets.get_mut(at) else {
                continue;
            };
            let place = by_index
                .entry(index)
                .or_insert_with(|| {
                    Arc::new(Place {
                        netns: netns.cloned(),
                        interface: Some(names.name(index)),
                    })
                })
                .clone();
            socket.place = Some(place);
        }
    }
    if let Some(netns) = netns {
        let base = Arc::new(Place {
            netns: Some(netns.clone()),
            interface: None,
        });
        for socket in sockets.iter_mut().filter(|s| s.place.is_none()) {
            socket.place = Some(base.clone());
        }
    }
}

/// Interface index → name in the calling thread's namespace (`SIOCGIFNAME` on a socket).
struct InterfaceNames {
    socket: Option<OwnedFd>,
}

impl InterfaceNames {
    fn open() -> InterfaceNames {
        InterfaceNames {
            socket: rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::DGRAM,
                None,
            )
            .ok(),
        }
    }

    /// The name, or the index as text (`if7`) when it is gone already.
    fn name(&self, index: u32) -> Arc<str> {
        self.socket
            .as_ref()
            .and_then(|s| rustix::net::netdevice::index_to_name(s, index).ok())
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(format!("if{index}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_links() {
        assert_eq!(ns_inode(b"net:[4026531840]"), Some(4026531840));
        assert_eq!(ns_inode(b"mnt:[4026531840]"), None);
        assert_eq!(ns_inode(b"net:[x]"), None);
    }

    #[test]
    fn loopback_has_a_name() {
        assert_eq!(&*InterfaceNames::open().name(1), "lo");
        assert_eq!(&*InterfaceNames::open().name(u32::MAX), "if4294967295");
    }

    #[test]
    fn our_namespace_is_found() {
        let ns = enumerate(Path::new("/proc"), Path::new("/nonexistent")).expect("enumerate");
        let st = rustix::fs::stat("/proc/self/ns/net").unwrap();
        assert_eq!(ns.own.inode, st.st_ino);
        assert!(ns.others.iter().all(|n| n.netns.inode != ns.own.inode));
    }
}
