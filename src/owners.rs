//! Socket inode → owning processes (pid, program), from `/proc/<pid>/fd`.
//!
//! Every process's descriptor directory is listed with `getdents64` into one reused buffer
//! and each descriptor is resolved with one `readlinkat` into a stack buffer; a socket's link
//! reads `socket:[<inode>]`. The wanted inodes sit in a hash map sized up front (`ss` and
//! `netstat` use fixed 256/211-bucket tables, which turns this step quadratic on busy hosts).
//!
//! The scan stops early once every wanted inode has an owner. Sockets shared across `fork` keep
//! their descriptor number in every process that inherited them, so for the processes left
//! unscanned one `readlinkat` at each found descriptor number still finds those sharers (an
//! nginx master and its workers on one listening socket); a socket passed over a UNIX socket
//! under another number in a not-yet-scanned process is the case this can miss.
//!
//! Processes whose descriptors we may not read (another user's, without root or
//! `CAP_SYS_PTRACE`+`CAP_DAC_READ_SEARCH`) are counted, never fatal.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::model::{Owner, Socket};

/// What an owner scan could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanStats {
    /// Processes whose descriptors were listed.
    pub processes_scanned: usize,
    /// Processes whose descriptors could not be read (permission).
    pub unreadable: usize,
    /// Descriptors resolved with `readlinkat`.
    pub descriptors: usize,
    /// True when the scan stopped early because every wanted inode was found.
    pub stopped_early: bool,
}

/// Fills in `owners` of every socket with an inode, scanning `<proc_root>/<pid>/fd`.
pub fn attach(proc_root: &Path, sockets: &mut [Socket]) -> ScanStats {
    let mut index: HashMap<u64, Slot> = HashMap::with_capacity(sockets.len());
    for (i, s) in sockets.iter().enumerate() {
        if let Some(inode) = s.inode {
            index.entry(inode).or_insert(Slot {
                first: i,
                found: false,
            });
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
        index,
        remaining: 0,
        found_fds: Vec::new(),
        dir_buf: vec![MaybeUninit::uninit(); 32 * 1024],
    };
    scan.remaining = scan.index.len();
    let mut next = 0;
    while next < pids.len() {
        let pid = pids[next];
        next += 1;
        match scan.process(&proc_dir, pid, sockets) {
            Ok(n) => {
                stats.processes_scanned += 1;
                stats.descriptors += n;
            }
            Err(Errno::ACCESS) | Err(Errno::PERM) => stats.unreadable += 1,
            Err(_) => {} // the process exited meanwhile
        }
        if scan.remaining == 0 {
            stats.stopped_early = next < pids.len();
            break;
        }
    }
    if stats.stopped_early {
        scan.probe_sharers(&proc_dir, &pids[next..], sockets);
    }
    stats
}

/// Where a wanted inode's socket is, and whether an owner was found yet.
struct Slot {
    first: usize,
    found: bool,
}

struct Scan {
    index: HashMap<u64, Slot>,
    /// Wanted inodes without an owner yet.
    remaining: usize,
    /// Descriptor numbers at which wanted sockets were found.
    found_fds: Vec<u32>,
    dir_buf: Vec<MaybeUninit<u8>>,
}

impl Scan {
    /// Lists one process's descriptors; returns how many were resolved.
    fn process(
        &mut self,
        proc_dir: &OwnedFd,
        pid: u32,
        sockets: &mut [Socket],
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
        let mut program: Option<Arc<str>> = None;
        let mut resolved = 0;
        let mut dir = RawDir::new(fd_dir.as_fd(), &mut self.dir_buf);
        let mut hits: Vec<(u64, u32)> = Vec::new();
        while let Some(entry) = dir.next() {
            let Ok(entry) = entry else { break };
            let name = entry.file_name();
            let Some(fd_num) = parse_u32(name.to_bytes()) else {
                continue;
            };
            resolved += 1;
            if let Some(inode) = socket_inode(fd_dir.as_fd(), name)
                && self.index.contains_key(&inode)
            {
                hits.push((inode, fd_num));
            }
        }
        for (inode, fd_num) in hits {
            let program = program
                .get_or_insert_with(|| read_comm(proc_dir, pid))
                .clone();
            self.add_owner(inode, fd_num, Owner { pid, program }, sockets);
        }
        Ok(resolved)
    }

    fn add_owner(&mut self, inode: u64, fd_num: u32, owner: Owner, sockets: &mut [Socket]) {
        let Some(slot) = self.index.get_mut(&inode) else {
            return;
        };
        // The same inode may appear in several sockets only if a source returned duplicates;
        // owners go to the first.
        let socket = &mut sockets[slot.first];
        if socket.owners.iter().any(|o| o.pid == owner.pid) {
            return;
        }
        socket.owners.push(owner);
        if !slot.found {
            slot.found = true;
            self.remaining -= 1;
            if !self.found_fds.contains(&fd_num) {
                self.found_fds.push(fd_num);
            }
        }
    }

    /// After an early stop: looks at the found descriptor numbers in the processes not
    /// scanned, where a socket inherited across `fork` would sit.
    fn probe_sharers(&mut self, proc_dir: &OwnedFd, pids: &[u32], sockets: &mut [Socket]) {
        let fds = self.found_fds.clone();
        for &pid in pids {
            for &fd_num in &fds {
                let mut path = itoa_buf(pid);
                path.extend_from_slice(b"/fd/");
                path.extend_from_slice(&itoa_buf(fd_num));
                path.push(0);
                let Ok(path) = CStr::from_bytes_with_nul(&path) else {
                    continue;
                };
                if let Some(inode) = socket_inode(proc_dir.as_fd(), path)
                    && self.index.contains_key(&inode)
                {
                    let program = read_comm(proc_dir, pid);
                    self.add_owner(inode, fd_num, Owner { pid, program }, sockets);
                }
            }
        }
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
fn list_pids(proc_dir: &OwnedFd) -> Vec<u32> {
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
