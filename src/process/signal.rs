//! What `free_port` needs to know about a process before it signals one, and the signalling
//! itself, through a pidfd so that a pid reused between the listing and the signal is never hit.
//!
//! [`Facts`] come from `/proc/<pid>/stat` (parent, kernel-thread flag, start time) and
//! `/proc/<pid>/status` (real uid); parsing is pure and tested on fixtures. A [`Handle`] is a
//! pidfd opened for a pid whose start time still matches the one the plan read: the pidfd then
//! refers to that process for as long as we hold it, whatever happens to the number.

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, OwnedFd};

#[cfg(target_os = "linux")]
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// What decides whether a process may be signalled, and which of a family to signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    /// Its real uid (whose process it is).
    pub(crate) uid: u32,
    /// Start time in clock ticks after boot: with the pid, what identifies the process.
    pub(crate) start: u64,
    pub(crate) kernel_thread: bool,
    /// Exited and not yet reaped by its parent (a zombie holds no sockets).
    pub(crate) exited: bool,
}

impl Facts {
    /// Facts from the texts of `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub(crate) fn parse(pid: u32, stat: &str, status: &str) -> Option<Facts> {
        let (state, ppid, flags, start) = parse_stat(stat)?;
        Some(Facts {
            pid,
            ppid,
            uid: parse_real_uid(status)?,
            start,
            kernel_thread: flags & PF_KTHREAD != 0 || pid == 2 || ppid == 2,
            exited: matches!(state, 'Z' | 'X' | 'x'),
        })
    }

    /// Reads a live process's facts; `None` when it is gone or unreadable.
    #[cfg(target_os = "linux")]
    pub(crate) fn read(pid: u32) -> Option<Facts> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Facts::parse(pid, &stat, &status)
    }
}

/// `(state, ppid, flags, starttime)` from the text of `/proc/<pid>/stat`. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<(char, u32, u64, u64)> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // After the name: state (3), ppid (4), … flags (9), … starttime (22).
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let flags = fields.get(6)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, flags, start))
}

/// The real uid from the text of `/proc/<pid>/status` (`Uid: real effective saved fs`).
pub(crate) fn parse_real_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The signals `free_port` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

impl Sig {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Kill => "SIGKILL",
        }
    }
}

/// A process held by a pidfd: signals reach this process or nobody.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct Handle {
    fd: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Handle {
    /// Opens a pidfd for `pid` and checks that it is still the process the plan saw (same
    /// start time). `NotFound` when it is gone or was replaced.
    pub(crate) fn open(pid: u32, start: u64) -> io::Result<Handle> {
        let gone = || io::Error::new(io::ErrorKind::NotFound, "the process is gone");
        let raw = Pid::from_raw(i32::try_from(pid).map_err(|_| gone())?).ok_or_else(gone)?;
        let fd = pidfd_open(raw, PidfdFlags::empty()).map_err(|e| {
            if e == rustix::io::Errno::SRCH {
                gone()
            } else {
                io::Error::from(e)
            }
        })?;
        // Read after the pidfd exists: if the start time matches now, the pidfd is that process.
        match Facts::read(pid) {
            Some(f) if f.start == start => Ok(Handle { fd }),
            _ => Err(gone()),
        }
    }

    pub(crate) fn signal(&self, sig: Sig) -> io::Result<()> {
        let signal = match sig {
            Sig::Term => Signal::TERM,
            Sig::Kill => Signal::KILL,
        };
        pidfd_send_signal(self.fd.as_fd(), signal).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = "812 (nginx: (master) x) S 1 812 812 0 -1 4194624 1 0 0 0 0 0 0 0 20 0 1 0 \
                    123456 1000 10 1844 0 0";
        assert_eq!(parse_stat(stat), Some(('S', 1, 4194624, 123456)));
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0";
        let (_, _, flags, start) = parse_stat(kthread).unwrap();
        assert_ne!(flags & PF_KTHREAD, 0);
        assert_eq!(start, 7);
        assert_eq!(parse_stat("12 (x) S"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn real_uid_is_the_first_uid() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_real_uid(status), Some(1000));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn zombies_have_exited() {
        let stat = "9 (x) Z 1 9 9 0 -1 4194308 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        let f = Facts::parse(9, stat, "Uid:\t0\t0\t0\t0\n").unwrap();
        assert!(f.exited && !f.kernel_thread);
        assert_eq!((f.ppid, f.uid, f.start), (1, 0, 55));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_facts_are_read() {
        let me = Facts::read(std::process::id()).unwrap();
        assert_eq!(me.uid, rustix::process::getuid().as_raw());
        assert!(!me.kernel_thread);
        assert_eq!(
            Some(me.ppid),
            rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
        );
        let handle = Handle::open(me.pid, me.start).unwrap();
        drop(handle);
        assert!(Handle::open(me.pid, me.start + 1).is_err());
    }
}
