//! Things a test creates in the real kernel and removes again: network namespaces, veth
//! pairs, cgroups, and socket-holding processes (`examples/listener`). Every name includes this
//! process's pid and a counter; every guard cleans up on drop, also when the test panics.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// A name unique to this test run: `<prefix><pid>x<n>` (short: interface names have 15 bytes).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command that must succeed.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is required for this test ({e}); install iproute2"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace made with `ip netns add`, loopback up; deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new() -> NetNs {
        let name = unique("nmt");
        run("ip", &["netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// The namespace's nsfs inode, as `/run/netns/<name>` shows it.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(Path::new("/run/netns").join(&self.name))
            .expect("stat /run/netns entry")
            .ino()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// A process holding sockets (`examples/listener`), stopped (by its pid) on drop.
pub struct Holder {
    pub child: Child,
    /// The listener's pid (the same process when started through `ip netns exec` or
    /// `setpriv`, which exec).
    pub pid: u32,
    /// The `--share` child, 0 if none.
    pub sharer: u32,
    /// The `--workers` children.
    pub workers: Vec<u32>,
    pub ports: Vec<u16>,
}

/// `target/<profile>/examples/listener`, built by `cargo test`.
pub fn listener_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = profile.join("examples").join("listener");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (which builds examples)",
        path.display()
    );
    path
}

impl Holder {
    /// Starts `prefix... listener args...` and waits for its READY line.
    pub fn start(prefix: &[&str], args: &[&str]) -> Holder {
        let listener = listener_path();
        let mut argv: Vec<&str> = prefix.to_vec();
        let listener = listener.to_str().expect("utf-8 path");
        argv.push(listener);
        argv.extend_from_slice(args);
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", argv[0]));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("READY ") => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("listener {argv:?} did not get ready: {other:?}");
            }
        };
        let field = |key: &str| -> &str {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("READY line {line:?} lacks {key}="))
        };
        let pid = field("pid").parse().expect("pid");
        let sharer = field("child").parse().expect("child");
        let ports = field("ports")
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().expect("port"))
            .collect();
        let workers = field("workers")
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().expect("worker pid"))
            .collect();
        Holder {
            child,
            pid,
            sharer,
            workers,
            ports,
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin ends the hold: the listener then ends its `--share` child and exits.
        // Given up to 3 s for that; killed if stuck, then reaped.
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed listener leaves its children behind: end them too, by their pids, if those
        // pids are still the `sleep`s the listener started.
        for &child in self.workers.iter().chain([self.sharer].iter()) {
            if child != 0
                && std::fs::read_to_string(format!("/proc/{child}/comm"))
                    .is_ok_and(|comm| comm.trim() == "sleep")
                && let Some(pid) = rustix::process::Pid::from_raw(child as i32)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// The cgroup hierarchies of this machine that tests may create groups in.
pub struct Hierarchies {
    /// cgroup v2 (`/sys/fs/cgroup/unified` here, `/sys/fs/cgroup` on a v2-only machine).
    pub unified: Option<PathBuf>,
    /// v1 hierarchies: `name=systemd` and `pids` (never `memory`, which the machine's own
    /// accounting may use).
    pub v1: Vec<PathBuf>,
}

impl Hierarchies {
    pub fn find() -> Hierarchies {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut unified = None;
        let mut v1 = Vec::new();
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            match f[2] {
                "cgroup2" => unified = Some(PathBuf::from(f[1])),
                "cgroup" if f[3].split(',').any(|o| o == "name=systemd" || o == "pids") => {
                    v1.push(PathBuf::from(f[1]))
                }
                _ => {}
            }
        }
        Hierarchies { unified, v1 }
    }
}

/// A cgroup of our own at the top of some hierarchies (`<hierarchy>/<top>`), with groups
/// created below it; the whole tree is removed on drop, deepest first, once its processes are
/// gone. Create it before the [`Holder`]s moved into it, so they are stopped first.
pub struct CgroupTree {
    tops: Vec<PathBuf>,
}

/// A group inside a [`CgroupTree`], in one or more hierarchies.
pub struct Group {
    leaves: Vec<PathBuf>,
}

impl CgroupTree {
    pub fn new(hierarchies: &[PathBuf], top: &str) -> CgroupTree {
        let tops = hierarchies
            .iter()
            .map(|h| {
                let top = h.join(top);
                std::fs::create_dir(&top)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", top.display()));
                top
            })
            .collect();
        CgroupTree { tops }
    }

    /// Creates `relative` below the top in the hierarchies given (each must be one of the
    /// tree's), like `mkdir -p`.
    pub fn group(&self, hierarchies: &[PathBuf], relative: &str) -> Group {
        let leaves = hierarchies
            .iter()
            .map(|h| {
                let top = self
                    .tops
                    .iter()
                    .find(|t| t.parent() == Some(h.as_path()))
                    .unwrap_or_else(|| panic!("{} is not in the tree", h.display()));
                let leaf = top.join(relative);
                std::fs::create_dir_all(&leaf)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", leaf.display()));
                leaf
            })
            .collect();
        Group { leaves }
    }
}

impl Group {
    /// Moves a process into the group in each of its hierarchies.
    pub fn add(&self, pid: u32) {
        for leaf in &self.leaves {
            let procs = leaf.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .unwrap_or_else(|e| panic!("write {}: {e}", procs.display()));
        }
    }
}

/// Removes a cgroup directory and the groups below it, deepest first. A group whose last
/// process is exiting is busy for a moment: retried for up to 2 s.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("could not remove cgroup {}", dir.display());
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for top in &self.tops {
            remove_tree(top);
        }
    }
}
