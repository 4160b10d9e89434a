//! A fleet of SSH hosts on this machine: one network namespace per host, each with its own
//! OpenSSH `sshd` and host keys, made and removed by the test.
//!
//! - **Addresses of our own.** Each fleet claims a `10.X.Y.0/24` no other run holds (an
//!   atomic `mkdir` under the system temp dir, with the claimant's pid, stale claims of dead
//!   pids reclaimed). A host reachable from the test gets a veth pair to the test's namespace,
//!   `10.X.Y.(4i+1)` on our side and `10.X.Y.(4i+2)` in the host; a host *behind* another gets
//!   a veth pair to that host's namespace only (`10.X.Y.(128+4j+1)` / `+2`), so the bastion is
//!   its only route: the test's namespace has no address in that subnet and no route to it.
//! - **Nothing leaves the machine.** The claimed `/24` gets an `unreachable` route in the
//!   test's namespace, so an address of a host behind a bastion fails at once here instead of
//!   going out by the default route.
//! - **Unique names.** Namespaces are `nm-fleet-<pid>-<n>-<host>`; veth ends `nf<idx>r<i>` /
//!   `nf<idx>n<i>` (`idx` the claimed subnet's number), unique while the claim is held.
//! - **Cleanup on drop (also on panic).** sshd processes are killed by pid (with their
//!   per-connection children), every process left in our namespaces is killed (they can only be
//!   ours), the namespaces are deleted (which removes their veth ends), and the claim released.
//! - **sshd** listens on the host's address, port 22, with its own ed25519 host key; the test
//!   user's PATH starts with the host's own `bin/` (for shims). Readiness is polled from the
//!   sshd log ("Server listening on"), never slept for.
//!
//! Everything here needs root (as the SSH tests do).

#![allow(dead_code)] // each test uses part of this

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::sshd::{USER, child_pids, ensure_user, keygen};

const SSHD: &str = "/usr/sbin/sshd";

/// One host of a fleet to be made.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    /// The name of the host this one is reachable through only (its bastion).
    pub behind: Option<String>,
}

impl HostSpec {
    pub fn reachable(name: &str) -> HostSpec {
        HostSpec {
            name: name.into(),
            behind: None,
        }
    }

    pub fn behind(name: &str, bastion: &str) -> HostSpec {
        HostSpec {
            name: name.into(),
            behind: Some(bastion.into()),
        }
    }
}

pub struct FleetHost {
    pub name: String,
    pub netns: String,
    /// The address sshd listens on (port 22).
    pub addr: Ipv4Addr,
    /// This host's `bin/`, first on the test user's PATH.
    pub bin: PathBuf,
    /// A directory the test user can write to.
    pub state: PathBuf,
    /// `ssh-ed25519 AAAA…` of this host's key.
    pub host_key: String,
    root: PathBuf,
    sshd: Option<Child>,
}

pub struct Fleet {
    pub hosts: Vec<FleetHost>,
    /// A known_hosts file holding every host's key under its address.
    pub known_hosts: PathBuf,
    /// A directory shared by all hosts, writable by the test user.
    pub shared: PathBuf,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    /// The unreachable route for our subnet in the test's namespace.
    route: Option<String>,
    claim: Option<SubnetClaim>,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    // A veth name of this subnet may still be held by the previous claimant's namespace,
    // which the kernel tears down after `ip netns delete` returns: wait for it (bounded).
    if args.first() == Some(&"link") && args.get(1) == Some(&"add") {
        for _ in 0..100 {
            let out = Command::new("ip").args(args).output().expect("run ip");
            if out.status.success() {
                return;
            }
            if !String::from_utf8_lossy(&out.stderr).contains("File exists") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    run(Command::new("ip").args(args));
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A `/24` under 10.0.0.0/8 held by this process until dropped.
struct SubnetClaim {
    idx: u32,
    dir: PathBuf,
}

impl SubnetClaim {
    fn base(&self) -> [u8; 3] {
        [10, 200 + (self.idx / 256) as u8, (self.idx % 256) as u8]
    }

    fn take() -> SubnetClaim {
        let root = std::env::temp_dir().join("netstat-mcp-fleet-subnets");
        std::fs::create_dir_all(&root).expect("mkdir claims");
        let start = std::process::id().wrapping_mul(7919) % 12800;
        for k in 0..12800u32 {
            let idx = (start + k) % 12800;
            let dir = root.join(idx.to_string());
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::write(dir.join("pid"), std::process::id().to_string())
                        .expect("write claim pid");
                    return SubnetClaim { idx, dir };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A claim whose process is gone is stale: take it over.
                    let owner = std::fs::read_to_string(dir.join("pid"))
                        .ok()
                        .and_then(|p| p.trim().parse::<u32>().ok());
                    if let Some(pid) = owner
                        && !Path::new(&format!("/proc/{pid}")).exists()
                        && std::fs::write(dir.join("pid"), std::process::id().to_string()).is_ok()
                    {
                        return SubnetClaim { idx, dir };
                    }
                }
                Err(e) => panic!("cannot claim a subnet in {}: {e}", root.display()),
            }
        }
        panic!("no free test subnet under 10.200.0.0/16..10.249.255.0/24");
    }
}

impl Drop for SubnetClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fleet {
    /// Makes the namespaces, links and sshds for `specs` (a host named in `behind` must come
    /// before the hosts behind it).
    pub fn start(specs: &[HostSpec]) -> Fleet {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        ensure_user();
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} missing: install openssh-server"
        );
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix("netstat-mcp-fleet")
            .tempdir()
            .expect("tempdir");
        set_mode(dir.path(), 0o755);
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir shared");
        run(Command::new("chown").arg(USER).arg(&shared));
        let mut fleet = Fleet {
            hosts: Vec::new(),
            known_hosts: dir.path().join("known_hosts"),
            shared,
            dir,
            namespaces: Vec::new(),
            route: None,
            claim: Some(SubnetClaim::take()),
        };
        let claim = fleet.claim.as_ref().expect("claim");
        let [a, b, c] = claim.base();
        let idx = claim.idx;
        // Nothing for our subnet ever leaves this machine: what no veth of ours covers (the
        // hosts behind bastions) is unreachable from here, not sent to the default route.
        let subnet = format!("{a}.{b}.{c}.0/24");
        ip(&["route", "add", "unreachable", &subnet]);
        fleet.route = Some(subnet);
        let (mut outer, mut inner) = (0u8, 0u8);
        for spec in specs {
            let netns = format!("nm-fleet-{}-{n}-{}", std::process::id(), spec.name);
            ip(&["netns", "add", &netns]);
            fleet.namespaces.push(netns.clone());
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            let addr = match &spec.behind {
                None => {
                    let i = outer;
                    outer += 1;
                    assert!(i < 32, "at most 32 reachable hosts");
                    let ours = Ipv4Addr::new(a, b, c, 4 * i + 1);
                    let theirs = Ipv4Addr::new(a, b, c, 4 * i + 2);
                    let (r, h) = (format!("nf{idx:x}r{i}"), format!("nf{idx:x}n{i}"));
                    ip(&["link", "add", &r, "type", "veth", "peer", "name", &h]);
                    ip(&["link", "set", &h, "netns", &netns]);
                    ip(&["addr", "add", &format!("{ours}/30"), "dev", &r]);
                    ip(&["link", "set", &r, "up"]);
                    ip(&[
                        "-n",
                        &netns,
                        "addr",
                        "add",
                        &format!("{theirs}/30"),
                        "dev",
                        &h,
                    ]);
                    ip(&["-n", &netns, "link", "set", &h, "up"]);
                    theirs
                }
                Some(bastion) => {
                    let j = inner;
                    inner += 1;
                    assert!(j < 32, "at most 32 hosts behind bastions");
                    let bastion_ns = fleet.host(bastion).netns.clone();
                    let near = Ipv4Addr::new(a, b, c, 128 + 4 * j + 1);
                    let far = Ipv4Addr::new(a, b, c, 128 + 4 * j + 2);
                    let (r, h) = (format!("nf{idx:x}b{j}"), format!("nf{idx:x}i{j}"));
                    ip(&["link", "add", &r, "type", "veth", "peer", "name", &h]);
                    ip(&["link", "set", &r, "netns", &bastion_ns]);
                    ip(&["link", "set", &h, "netns", &netns]);
                    ip(&[
                        "-n",
                        &bastion_ns,
                        "addr",
                        "add",
                        &format!("{near}/30"),
                        "dev",
                        &r,
                    ]);
                    ip(&["-n", &bastion_ns, "link", "set", &r, "up"]);
                    ip(&["-n", &netns, "addr", "add", &format!("{far}/30"), "dev", &h]);
                    ip(&["-n", &netns, "link", "set", &h, "up"]);
                    far
                }
            };
            let host = fleet.make_host(&spec.name, &netns, addr);
            fleet.hosts.push(host);
        }
        let lines: String = fleet
            .hosts
            .iter()
            .map(|h| format!("{} {}\n", h.addr, h.host_key))
            .collect();
        std::fs::write(&fleet.known_hosts, lines).expect("write known_hosts");
        for i in 0..fleet.hosts.len() {
            fleet.start_sshd(i);
        }
        fleet
    }

    pub fn host(&self, name: &str) -> &FleetHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no fleet host {name}"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut FleetHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no fleet host {name}"))
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn make_host(&self, name: &str, netns: &str, addr: Ipv4Addr) -> FleetHost {
        let root = self.dir.path().join(name);
        std::fs::create_dir(&root).expect("mkdir host");
        set_mode(&root, 0o755);
        let bin = root.join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        set_mode(&bin, 0o755);
        let state = root.join("state");
        std::fs::create_dir(&state).expect("mkdir state");
        run(Command::new("chown").arg(USER).arg(&state));
        let host_key = keygen(&root.join("host_ed25519"), "ed25519", "");
        let authorized = root.join("authorized_keys");
        std::fs::write(&authorized, "").expect("write authorized_keys");
        set_mode(&authorized, 0o644);
        FleetHost {
            name: name.into(),
            netns: netns.into(),
            addr,
            bin,
            state,
            host_key,
            root,
            sshd: None,
        }
    }

    fn start_sshd(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        let root = host.root.clone();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:22\n\
                 HostKey {root}/host_ed25519\n\
                 PidFile none\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 AuthorizedKeysFile {root}/authorized_keys\n\
                 AllowUsers {USER}\n\
                 PermitRootLogin no\n\
                 AllowTcpForwarding yes\n\
                 MaxStartups 100\n\
                 MaxSessions 20\n\
                 LogLevel VERBOSE\n\
                 SetEnv PATH={bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n",
                addr = host.addr,
                root = root.display(),
                bin = host.bin.display(),
            ),
        )
        .expect("write sshd_config");
        let log_path = root.join("sshd.log");
        let log = std::fs::File::create(&log_path).expect("create log");
        // `ip netns exec` enters the namespace and execs sshd: the child's pid is sshd's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host.netns, SSHD, "-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("Server listening on") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sshd of {} exited ({status}): {text}", host.name);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sshd of {} not ready within 15 s: {text}", host.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        host.sshd = Some(child);
    }

    /// Lets `public_key_line` log in on every host.
    pub fn authorize(&self, public_key_line: &str) {
        for h in &self.hosts {
            h.authorize(public_key_line);
        }
    }
}

impl FleetHost {
    /// Stops this host's sshd (and its sessions): the host then refuses connections.
    pub fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            kill_tree(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn authorize(&self, public_key_line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.root.join("authorized_keys"))
            .expect("open authorized_keys");
        writeln!(f, "{public_key_line}").expect("append authorized_keys");
    }

    /// Puts an executable script `name` first on the test user's PATH on this host.
    pub fn shim(&self, name: &str, script: &str) {
        let path = self.bin.join(name);
        std::fs::write(&path, script).expect("write shim");
        set_mode(&path, 0o755);
    }

    /// A command run inside this host's namespace (`ip netns exec`).
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("sshd.log")).unwrap_or_default()
    }
}

/// SIGKILLs every descendant of `pid` (not `pid` itself).
fn kill_tree(pid: u32) {
    let mut queue = child_pids(pid);
    while let Some(p) = queue.pop() {
        queue.extend(child_pids(p));
        let _ = Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.stop_sshd();
        }
        for ns in &self.namespaces {
            // Anything still running in our namespaces (a load generator, a session) is ours.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill")
                        .args(["-KILL", pid])
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(subnet) = self.route.take() {
            let _ = Command::new("ip")
                .args(["route", "del", "unreachable", &subnet])
                .stderr(Stdio::null())
                .status();
        }
        // The veth ends on our side went with their peers; the claim goes last.
        self.claim.take();
    }
}
