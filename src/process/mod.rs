//! Owner details — user, command line, systemd unit, container — read from `/proc/<pid>`.
//!
//! [`ProcessTable`] reads a process the first time someone asks for it and remembers the
//! answer for the table's lifetime (one snapshot), so a process owning 50,000 sockets costs
//! three small file reads (`status`, `cmdline`, `cgroup`), not one per socket. Nothing is read
//! for processes nobody asks about: the answer layer asks only for the owners of the rows it
//! returns or summarises.
//!
//! User names come from the password file, read once per table. NSS (LDAP, sssd) is not
//! consulted on purpose: a directory lookup can stall for seconds, and a tool call must not;
//! a uid the file does not name is shown as its number, as `ps` does for unknown users.
//!
//! The parsing (`status`, `cmdline`, the password file, [`cgroup`]) is pure and tested on
//! fixtures; this module only adds the file reads.

pub mod cgroup;
#[cfg(unix)]
pub mod cgroup_id;
pub(crate) mod signal;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::model::{COMMAND_MAX_CHARS, ProcessInfo};

/// Looks up owner details by pid. Sources that can (the local machine) hand one out with
/// their snapshot; the answer layer calls it only for the pids it shows.
pub trait ProcessLookup: Send + Sync + std::fmt::Debug {
    /// Details of one process; `None` when it is gone or unreadable.
    fn process(&self, pid: u32) -> Option<Arc<ProcessInfo>>;

    /// The systemd unit and container of the cgroups with these cgroup v2 ids (what sockets
    /// carry as `INET_DIAG_CGROUP_ID`), where this host can tell; by default none.
    fn cgroups(&self, _ids: &std::collections::HashSet<u64>) -> HashMap<u64, cgroup::CgroupNames> {
        HashMap::new()
    }

    /// Details of several processes, in the order asked.
    fn for_pids(&self, pids: &[u32]) -> Vec<Option<Arc<ProcessInfo>>> {
        pids.iter().map(|&pid| self.process(pid)).collect()
    }
}

/// Reads `<proc_root>/<pid>/{status,cmdline,cgroup}` on first use of a pid, then remembers.
#[derive(Debug)]
pub(crate) struct ProcessTable {
    proc_root: PathBuf,
    passwd: PathBuf,
    cache: Mutex<HashMap<u32, Option<Arc<ProcessInfo>>>>,
    users: OnceLock<HashMap<u32, Arc<str>>>,
}

impl ProcessTable {
    /// A table over `proc_root` (normally `/proc`) naming users from `/etc/passwd`.
    pub(crate) fn new(proc_root: impl Into<PathBuf>) -> ProcessTable {
        ProcessTable::with_passwd(proc_root, "/etc/passwd")
    }

    /// A table naming users from another password file (tests).
    pub(crate) fn with_passwd(
        proc_root: impl Into<PathBuf>,
        passwd: impl Into<PathBuf>,
    ) -> ProcessTable {
        ProcessTable {
            proc_root: proc_root.into(),
            passwd: passwd.into(),
            cache: Mutex::new(HashMap::new()),
            users: OnceLock::new(),
        }
    }

    fn read(&self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.proc_root.join(pid.to_string());
        // `status` first: a process that is gone has none, and then nothing else is read.
        let status = read_limited(&dir.join("status"), 8 * 1024)?;
        let uid = status_uid(&status);
        let cmdline =
            read_limited(&dir.join("cmdline"), COMMAND_MAX_CHARS * 4 + 4).unwrap_or_default();
        let mut command = command_line(cmdline.as_bytes());
        if command.is_none() {
            // A kernel thread or a zombie: `[comm]`, as ps shows it.
            command = status_name(&status).map(|name| Arc::from(format!("[{name}]")));
        }
        let cgroup = read_limited(&dir.join("cgroup"), 64 * 1024)
            .map(|text| cgroup::parse(&text))
            .unwrap_or_default();
        let user = uid.map(|uid| match self.users().get(&uid) {
            Some(name) => name.clone(),
            None => Arc::from(uid.to_string()),
        });
        Some(ProcessInfo {
            uid,
            user,
            command,
            unit: cgroup.unit.map(Arc::from),
            container: cgroup.container,
        })
    }

    fn users(&self) -> &HashMap<u32, Arc<str>> {
        self.users.get_or_init(|| {
            std::fs::read_to_string(&self.passwd)
                .map(|text| parse_passwd(&text))
                .unwrap_or_default()
        })
    }
}

impl ProcessLookup for ProcessTable {
    fn process(&self, pid: u32) -> Option<Arc<ProcessInfo>> {
        if let Ok(cache) = self.cache.lock()
            && let Some(known) = cache.get(&pid)
        {
            return known.clone();
        }
        // Read outside the lock: another thread asking for the same pid meanwhile reads it
        // too, which is harmless.
        let info = self.read(pid).map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(pid, info.clone());
        }
        info
    }

    #[cfg(unix)]
    fn cgroups(&self, ids: &std::collections::HashSet<u64>) -> HashMap<u64, cgroup::CgroupNames> {
        let mounts =
            std::fs::read_to_string(self.proc_root.join("self/mounts")).unwrap_or_default();
        match cgroup_id::cgroup2_mount(&mounts) {
            Some(root) => cgroup_id::resolve(&root, ids),
            None => HashMap::new(),
        }
    }
}

/// Reads at most `limit` bytes of a file as text (lossy). `None` if it cannot be opened.
fn read_limited(path: &Path, limit: usize) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::with_capacity(limit.min(4096));
    file.take(limit as u64).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The effective uid from a `/proc/<pid>/status` text (`Uid:` real, effective, saved, fs).
pub(crate) fn status_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The process name (`Name:`) from a `/proc/<pid>/status` text.
pub(crate) fn status_name(status: &str) -> Option<&str> {
    let name = status.lines().find_map(|l| l.strip_prefix("Name:"))?.trim();
    (!name.is_empty()).then_some(name)
}

/// A `/proc/<pid>/cmdline` (arguments separated by NUL) as one line: arguments joined by
/// spaces, control characters shown as spaces, at most [`COMMAND_MAX_CHARS`] characters (a cut
/// line ends with `…`). `None` when empty (kernel threads, zombies).
pub(crate) fn command_line(raw: &[u8]) -> Option<Arc<str>> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(raw);
    let total = text.chars().count();
    let cut = total > COMMAND_MAX_CHARS;
    let keep = if cut { COMMAND_MAX_CHARS - 1 } else { total };
    let mut out: String = text
        .chars()
        .take(keep)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cut {
        out.push('…');
    }
    let trimmed = out.trim_end();
    (!trimmed.is_empty()).then(|| Arc::from(trimmed))
}

/// uid → name from a password file (`name:x:uid:gid:...`); the first entry for a uid wins,
/// as `getpwuid` returns it.
pub(crate) fn parse_passwd(text: &str) -> HashMap<u32, Arc<str>> {
    let mut users = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let (false, Ok(uid)) = (name.is_empty(), uid.parse::<u32>()) {
            users.entry(uid).or_insert_with(|| Arc::from(name));
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let status = "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t33\t33\t33\nGid:\t0\t0\t0\t0\n";
        assert_eq!(status_uid(status), Some(33), "effective uid");
        assert_eq!(status_name(status), Some("nginx"));
        assert_eq!(status_uid("Name:\tx\n"), None);
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            command_line(b"nginx: master process /usr/sbin/nginx\0").as_deref(),
            Some("nginx: master process /usr/sbin/nginx")
        );
        assert_eq!(
            command_line(b"/usr/bin/python3\0-m\0http.server\08080\0").as_deref(),
            Some("/usr/bin/python3 -m http.server 8080")
        );
        assert_eq!(command_line(b"").as_deref(), None);
        assert_eq!(command_line(b"\0").as_deref(), None);
        assert_eq!(command_line(b"a\nb\0").as_deref(), Some("a b"));
        let exactly: Vec<u8> = std::iter::repeat_n(b'x', COMMAND_MAX_CHARS).collect();
        assert_eq!(
            command_line(&exactly).unwrap().chars().count(),
            COMMAND_MAX_CHARS,
            "256 characters fit"
        );
        let long: Vec<u8> = std::iter::repeat_n("é".as_bytes(), 300)
            .flatten()
            .copied()
            .collect();
        let cut = command_line(&long).unwrap();
        assert_eq!(cut.chars().count(), COMMAND_MAX_CHARS);
        assert!(cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn passwd_lines() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\ntoor:x:0:0::/:/bin/sh\n:x:5:5::/:\n",
        );
        assert_eq!(
            users.get(&0).map(|s| &**s),
            Some("root"),
            "first entry wins"
        );
        assert_eq!(users.get(&33).map(|s| &**s), Some("www-data"));
        assert_eq!(users.get(&5), None);
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn our_own_process() {
        let table = ProcessTable::new("/proc");
        let me = table.process(std::process::id()).expect("our process");
        assert_eq!(me.uid, Some(rustix::process::geteuid().as_raw()));
        assert!(me.user.is_some());
        assert!(me.command.as_deref().is_some_and(|c| !c.is_empty()));
        let again = table.process(std::process::id()).unwrap();
        assert!(Arc::ptr_eq(&me, &again), "read once, then remembered");
        assert_eq!(table.process(u32::MAX), None);
    }
}
