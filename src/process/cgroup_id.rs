//! cgroup v2 ids → cgroup paths, for sockets whose process cannot be read.
//!
//! The kernel tags every socket with the cgroup v2 cgroup it was created in
//! (`INET_DIAG_CGROUP_ID`, Linux 5.7+). That id is the inode number of the cgroup's directory
//! in the cgroup2 file system, so walking that tree (stat only: directories any user may list)
//! maps ids back to paths, from which [`unit_of`](super::cgroup::unit_of) and
//! [`container_of`](super::cgroup::container_of) name the systemd unit and the container —
//! without reading any process's `/proc/<pid>`, so without privilege.
//!
//! The walk stops as soon as every wanted id is found, and is bounded in depth and in
//! directories visited. Hosts whose containers live only in cgroup v1 hierarchies have their
//! sockets in the v2 root (or a systemd slice): the path then names no container.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::cgroup::CgroupNames;

/// Deepest directory level walked.
const MAX_DEPTH: usize = 32;
/// Most directories visited by one lookup.
const MAX_DIRS: usize = 200_000;

/// Where the cgroup2 file system is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// a hybrid host), from a `/proc/self/mounts` text.
pub(crate) fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir.replace("\\040", " ")))
    })
}

/// The names of the cgroups with these ids, as far as a walk of the cgroup2 tree under
/// `root` finds them. Ids not found (a cgroup removed since, a tree too large) are left out.
pub fn resolve(root: &Path, wanted: &HashSet<u64>) -> HashMap<u64, CgroupNames> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return found;
    }
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), "/".into(), 0)];
    let mut visited = 0usize;
    while let Some((dir, rel, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            break;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&dir)
            && wanted.contains(&meta.ino())
        {
            found.insert(meta.ino(), CgroupNames::of_path(&rel));
            if found.len() == wanted.len() {
                break;
            }
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let child_rel = if rel == "/" {
                format!("/{name}")
            } else {
                format!("{rel}/{name}")
            };
            stack.push((entry.path(), child_rel, depth + 1));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_on_hybrid_and_unified_hosts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_mount("proc /proc proc rw 0 0"), None);
    }

    #[test]
    fn ids_are_directory_inodes() {
        let dir = std::env::temp_dir().join(format!("nm-cgid-{}", std::process::id()));
        let leaf = dir
            .join("system.slice")
            .join("docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope");
        std::fs::create_dir_all(&leaf).unwrap();
        let ino = std::fs::metadata(&leaf).unwrap().ino();
        let got = resolve(&dir, &HashSet::from([ino, 1]));
        let _ = std::fs::remove_dir_all(&dir);
        let names = &got[&ino];
        assert!(names.path.starts_with("/system.slice/docker-0123"));
        assert_eq!(
            names.unit.as_deref(),
            Some("docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope")
        );
        assert_eq!(
            names.container.as_ref().unwrap().id.as_ref(),
            "0123456789ab"
        );
        assert!(!got.contains_key(&1));
    }
}
