//! Socket inode → owning processes (pid, program), from `/proc/<pid>/fd`.
//!
//! Every process's descriptor directory is listed with `getdents64` into one reused buffer
//! and each descriptor is resolved with one `readlinkat` into a stack buffer; a socket's link
//! reads `socket:[<inode>]`. The wanted inodes sit in a hash map sized up front (`ss` and
//! `netstat` use fixed 256/211-bucket tables, which turns this step quadratic on busy hosts).
//!
//! Once every wanted inode has an owner (a port check wants one or two), the rest of the scan
//! looks only for processes sharing those sockets: small processes (at most [`SMALL_PROCESS`]
//! descriptors) are still resolved in full, while large ones are resolved only where a shared
//! socket sits in practice — at the descriptor numbers it has in the owners already found (a
//! socket inherited across `fork` keeps its number: an nginx master and its workers) and at
//! 0-9 (inetd and systemd socket activation). A socket passed under another number to a process
//! holding hundreds of descriptors is the one case this can miss; a full listing resolves all.
//!
//! Processes whose descriptors we may not read (another user's, without root or
//! `CAP_SYS_PTRACE`+`CAP_DAC_READ_SEARCH`) are counted, never fatal.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::model::{Owner, Socket};

/// Above this many descriptors, a process scanned after every wanted socket was found has only
/// its likely sharing points resolved (see [`attach`]).
pub(crate) const SMALL_PROCESS: usize = 256;

/// What an owner scan could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanStats {
    /// Processes whose descriptors were listed.
    pub(crate) processes_scanned: usize,
    /// Processes whose descriptors could not be read (permission).
    pub(crate) unreadable: usize,
    /// Descriptors resolved with `readlinkat`.
    pub(crate) descriptors: usize,
    /// True when every wanted inode was found before the last process, so later large
    /// processes were only checked at their likely sharing points.
    pub(crate) stopped_early: bool,
}

/// Fills in `owners` of every socket with an inode, scanning `<proc_root>/<pid>/fd`.
pub fn attach(proc_root: &Path, sockets: &mut [Socket]) -> ScanStats {
    // inode -> position of its socket; 12 bytes an entry. (A socket listed twice by a source
    // gets its owners on the first copy.)
    let mut index: HashMap<u64, u32> = HashMap::with_capacity(sockets.len());
    for (i, s) in sockets.iter().enumerate() {
        if let (Some(inode), Ok(i)) = (s.inode, u32::try_from(i)) {
            index.entry(inode).or_insert(i);
        }
    }
    let mut stats = ScanStats::default();
    if index.is_empty() {
        return stats;
    }
    let Ok(proc_dir) = rustix::fs::open(
        proc_root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return stats;
    };
    let pids = list_pids(&proc_dir);
    let mut scan = Scan {
        remaining: index.len(),
        index,
        found_fds: HashSet::new(),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    if scan.index.len() >= PARALLEL_MIN_SOCKETS && threads > 1 {
        scan.parallel(&proc_dir, &pids, threads, sockets, &mut stats);
        return stats;
    }
    let mut scratch = Scratch::default();
    let mut hits = Vec::new();
    for &pid in &pids {
        // Once every wanted socket has an owner, the rest only need checking for sharers.
        let selective = scan.remaining == 0;
        stats.stopped_early |= selective;
        hits.clear();
        let result = scan.resolve(&proc_dir, pid, selective, &mut scratch, &mut hits);
        scan.merge(&proc_dir, pid, result, &hits, sockets, &mut stats);
    }
    stats
}

/// A full listing wanting at least this many sockets resolves descriptors on several threads.
const PARALLEL_MIN_SOCKETS: usize = 4096;
/// At most this many scanning threads.
const MAX_THREADS: usize = 4;

/// Per-thread buffers, reused across processes.
struct Scratch {
    fd_nums: Vec<u32>,
    dir_buf: Vec<MaybeUninit<u8>>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            fd_nums: Vec::new(),
            dir_buf: vec![MaybeUninit::uninit(); 32 * 1024],
        }
    }
}

struct Scan {
    index: HashMap<u64, u32>,
    /// Wanted inodes without an owner yet.
    remaining: usize,
    /// Descriptor numbers at which wanted sockets were found. A set: with 100k sockets spread
    /// over a few processes it holds tens of thousands of numbers, and it is probed once per
    /// socket found (a `Vec::contains` here made the full listing quadratic).
    found_fds: HashSet<u32>,
}

impl Scan {
    /// Lists one process's descriptors and resolves them; returns how many were resolved.
    ///
    /// With `selective`, a process holding more than [`SMALL_PROCESS`] descriptors has only
    /// its likely sharing points resolved: the descriptor numbers where wanted sockets were
    /// found elsewhere (inherited across `fork`) and 0-9 (inetd, systemd socket activation).
    /// Only reads: the wanted sockets found are appended to `hits` as (socket position,
    /// descriptor).
    fn resolve(
        &self,
        proc_dir: &OwnedFd,
        pid: u32,
        selective: bool,
        scratch: &mut Scratch,
        hits: &mut Vec<(u32, u32)>,
    ) -> Result<usize, Errno> {
        let mut path = itoa_buf(pid);
        path.extend_from_slice(b"/fd\0");
        let path = CStr::from_bytes_with_nul(&path).map_err(|_| Errno::INVAL)?;
        let fd_dir = rustix::fs::openat(
            proc_dir,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let Scratch { fd_nums, dir_buf } = scratch;
        fd_nums.clear();
        // A large process scanned selectively needs only a few descriptor numbers: resolve
        // them directly rather than listing the directory, whose `getdents` builds a dentry
        // for every descriptor (most of the time of a port check on a host where a few
        // processes hold 100k sockets). The directory's size is its descriptor count on
        // Linux >= 6.2; older kernels report 0, and then the directory is listed as before.
        let direct = selective && {
            let count = rustix::fs::fstat(&fd_dir)
                .ok()
                .and_then(|st| usize::try_from(st.st_size).ok())
                .unwrap_or(0);
            count > SMALL_PROCESS && self.found_fds.len() + 10 < count
        };
        if direct {
            fd_nums.extend(0..10);
            fd_nums.extend(self.found_fds.iter().copied().filter(|&n| n >= 10));
        } else {
            let mut dir = RawDir::new(fd_dir.as_fd(), dir_buf);
            while let Some(entry) = dir.next() {
                let Ok(entry) = entry else { break };
                if let Some(n) = parse_u32(entry.file_name().to_bytes()) {
                    fd_nums.push(n);
                }
            }
        }
        let all = !selective || (!direct && fd_nums.len() <= SMALL_PROCESS);
        let mut resolved = 0;
        let mut name = [0u8; 12];
        for &fd_num in fd_nums.iter() {
            if !all && fd_num >= 10 && !self.found_fds.contains(&fd_num) {
                continue;
            }
            resolved += 1;
            let Some(name) = fd_name(fd_num, &mut name) else {
                continue;
            };
            if let Some(inode) = socket_inode(fd_dir.as_fd(), name)
                && let Some(&at) = self.index.get(&inode)
            {
                hits.push((at, fd_num));
            }
        }
        Ok(resolved)
    }

    /// Records what [`Scan::resolve`] found in one process.
    fn merge(
        &mut self,
        proc_dir: &OwnedFd,
        pid: u32,
        result: Result<usize, Errno>,
        hits: &[(u32, u32)],
        sockets: &mut [Socket],
        stats: &mut ScanStats,
    ) {
        match result {
            Ok(n) => {
                stats.processes_scanned += 1;
                stats.descriptors += n;
            }
            Err(Errno::ACCESS) | Err(Errno::PERM) => stats.unreadable += 1,
            Err(_) => {} // the process exited meanwhile
        }
        let mut program: Option<Arc<str>> = None;
        for &(at, fd_num) in hits {
            let program = program
                .get_or_insert_with(|| read_comm(proc_dir, pid))
                .clone();
            self.add_owner(at, fd_num, Owner { pid, program }, sockets);
        }
    }

    /// A full scan of every process on `threads` threads (processes dealt round-robin, so a
    /// few large ones spread out), then one merge in `/proc` order. No early stop: a listing
    /// this large wants every owner anyway.
    fn parallel(
        &mut self,
        proc_dir: &OwnedFd,
        pids: &[u32],
        threads: usize,
        sockets: &mut [Socket],
        stats: &mut ScanStats,
    ) {
        // (position in /proc order, pid, what resolve returned, the hits)
        type Found = (usize, u32, Result<usize, Errno>, Vec<(u32, u32)>);
        let this = &*self;
        let per_thread: Vec<Vec<Found>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut scratch = Scratch::default();
                        pids.iter()
                            .enumerate()
                            .skip(t)
                            .step_by(threads)
                            .map(|(i, &pid)| {
                                let mut hits = Vec::new();
                                let result =
                                    this.resolve(proc_dir, pid, false, &mut scratch, &mut hits);
                                (i, pid, result, hits)
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        let mut found: Vec<Found> = per_thread.into_iter().flatten().collect();
        found.sort_unstable_by_key(|f| f.0);
        for (_, pid, result, hits) in found {
            self.merge(proc_dir, pid, result, &hits, sockets, stats);
        }
    }

    fn add_owner(&mut self, at: u32, fd_num: u32, owner: Owner, sockets: &mut [Socket]) {
        let Some(socket) = sockets.get_mut(at as usize) else {
            return;
        };
        if socket.owners.iter().any(|o| o.pid == owner.pid) {
            return;
        }
        if socket.owners.is_empty() {
            self.remaining = self.remaining.saturating_sub(1);
        }
        socket.owners.push(owner);
        self.found_fds.insert(fd_num);
    }
}

/// Reads a descriptor link; returns the inode when it is `socket:[<inode>]`.
fn socket_inode<Fd: AsFd>(dir: Fd, name: &CStr) -> Option<u64> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 64];
    let (link, _) = rustix::fs::readlinkat_raw(dir, name, &mut buf).ok()?;
    let rest = link.strip_prefix(b"socket:[")?;
    let digits = rest.strip_suffix(b"]")?;
    parse_u64(digits)
}

/// The numeric entries of `/proc`, in the order the kernel lists them.
pub(crate) fn list_pids(proc_dir: &OwnedFd) -> Vec<u32> {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut pids = Vec::with_capacity(512);
    let mut dir = RawDir::new(proc_dir.as_fd(), &mut buf);
    while let Some(entry) = dir.next() {
        let Ok(entry) = entry else { break };
        if let Some(pid) = parse_u32(entry.file_name().to_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// `/proc/<pid>/comm` without the newline, as netstat shows the program.
fn read_comm(proc_dir: &OwnedFd, pid: u32) -> Arc<str> {
    let mut path = itoa_buf(pid);
    path.extend_from_slice(b"/comm\0");
    let text = CStr::from_bytes_with_nul(&path)
        .ok()
        .and_then(|p| {
            rustix::fs::openat(proc_dir, p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()
        })
        .and_then(|fd| {
            let mut buf = [0u8; 64];
            let n = rustix::io::read(&fd, &mut buf).ok()?;
            Some(
                String::from_utf8_lossy(&buf[..n])
                    .trim_end_matches('\n')
                    .to_string(),
            )
        })
        .unwrap_or_default();
    Arc::from(text)
}

/// Writes a descriptor number as a NUL-terminated name into `buf`.
fn fd_name(n: u32, buf: &mut [u8; 12]) -> Option<&CStr> {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    buf[..len].copy_from_slice(&digits[i..]);
    buf[len] = 0;
    CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

fn itoa_buf(n: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(n.to_string().as_bytes());
    v
}

fn parse_u32(digits: &[u8]) -> Option<u32> {
    parse_u64(digits).and_then(|n| u32::try_from(n).ok())
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_strictly() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
        assert_eq!(parse_u32(b"4294967296"), None);
    }
}
