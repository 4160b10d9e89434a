//! A real OpenSSH `sshd` on 127.0.0.1 for the SSH tests, one per test, started and stopped
//! by the test (by pid, on drop).
//!
//! Each instance has its own directory: host keys (ed25519 + ecdsa, made with `ssh-keygen`),
//! `authorized_keys`, a `bin/` directory first on the test user's PATH (via `SetEnv`, so tests
//! can shadow or hide `netstat`/`ss`), a `known_hosts` already holding the host keys, and the
//! sshd log. Ports: sshd itself binds a port below the kernel's ephemeral range (never
//! handed to a client socket) and says so in its log; a port someone else holds makes it exit,
//! and the next port is tried: no port is ever bound, released and handed over. The test user `netstat-mcp-test` (password [`PASSWORD`]) is created once per run
//! with `useradd`/`chpasswd`: the tests must run as root (they do in CI). Nothing here skips.

#![allow(dead_code)] // each test uses part of this

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use netstat_mcp::config::NetstatConfig;

pub const USER: &str = "netstat-mcp-test";
pub const PASSWORD: &str = "nm-Test-pw-4711";
const SSHD: &str = "/usr/sbin/sshd";

/// What the test user's PATH holds besides the instance's `bin/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserPath {
    /// `bin/:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`: netstat and ss as installed.
    System,
    /// `bin/` only, holding just `env` and `cat` (plus what the test puts there).
    Bare,
}

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub bin: PathBuf,
    /// A directory the test user can write to.
    pub state: PathBuf,
    pub known_hosts: PathBuf,
    /// `ssh-ed25519 AAAA…` lines of this server's host keys.
    pub host_keys: Vec<String>,
    child: Child,
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

/// Creates the test user once per process and (re)sets its password.
pub fn ensure_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "the SSH tests start a real sshd and create the user {USER}: run them as root (CI does)"
        );
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} missing: install openssh-server (apt-get install -y openssh-server)"
        );
        let exists = Command::new("id")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !exists {
            run(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]));
        }
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
            .expect("write chpasswd");
        assert!(child.wait().expect("chpasswd").success(), "chpasswd failed");
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
    });
}

/// Generates a key pair at `path` (`path.pub` too); returns the public key line.
pub fn keygen(path: &Path, kind: &str, passphrase: &str) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "", "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("read .pub");
    public.trim().to_string()
}

impl Sshd {
    pub fn start(path: UserPath) -> Sshd {
        ensure_user();
        let dir = tempfile::Builder::new()
            .prefix("netstat-mcp-sshd")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        set_mode(&root, 0o755);
        let bin = root.join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        set_mode(&bin, 0o755);
        let state = root.join("state");
        std::fs::create_dir(&state).expect("mkdir state");
        run(Command::new("chown").arg(USER).arg(&state));
        if path == UserPath::Bare {
            for tool in ["env", "cat"] {
                std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool))
                    .expect("symlink tool");
            }
        }
        let mut host_keys = Vec::new();
        for kind in ["ed25519", "ecdsa"] {
            host_keys.push(keygen(&root.join(format!("host_{kind}")), kind, ""));
        }
        let authorized = root.join("authorized_keys");
        std::fs::write(&authorized, "").expect("write authorized_keys");
        set_mode(&authorized, 0o644);
        let user_path = match path {
            UserPath::System => format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                bin.display()
            ),
            UserPath::Bare => bin.display().to_string(),
        };

        let mut last_log = String::new();
        for port in super::net::candidate_ports().take(50) {
            let config = root.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\n\
                     HostKey {root}/host_ed25519\n\
                     HostKey {root}/host_ecdsa\n\
                     PidFile none\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PasswordAuthentication yes\n\
                     KbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\n\
                     AuthorizedKeysFile {root}/authorized_keys\n\
                     AllowUsers {USER}\n\
                     PermitRootLogin no\n\
                     MaxStartups 100\n\
                     LogLevel VERBOSE\n\
                     SetEnv PATH={user_path}\n",
                    root = root.display()
                ),
            )
            .expect("write sshd_config");
            let log = std::fs::File::create(root.join("sshd.log")).expect("create log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn sshd");
            if wait_ready(port, &mut child, &root.join("sshd.log")) {
                let known_hosts = root.join("known_hosts");
                let lines: String = host_keys
                    .iter()
                    .map(|k| format!("[127.0.0.1]:{port} {k}\n"))
                    .collect();
                std::fs::write(&known_hosts, lines).expect("write known_hosts");
                return Sshd {
                    dir,
                    port,
                    bin,
                    state,
                    known_hosts,
                    host_keys,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(root.join("sshd.log")).unwrap_or_default();
            // Only a port someone else holds is worth another try.
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Lets `public_key_line` log in as the test user.
    pub fn authorize(&self, public_key_line: &str) {
        let path = self.root().join("authorized_keys");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open authorized_keys");
        writeln!(f, "{public_key_line}").expect("append authorized_keys");
    }

    /// Puts an executable script `name` first on the test user's PATH.
    pub fn shim(&self, name: &str, script: &str) {
        let path = self.bin.join(name);
        std::fs::write(&path, script).expect("write shim");
        set_mode(&path, 0o755);
    }

    /// A config (TOML `[ssh]` extras and host extras appended) naming this server `test-sshd`,
    /// with its known_hosts file.
    pub fn config(&self, ssh_extra: &str, host_extra: &str) -> NetstatConfig {
        let text = self.config_text(ssh_extra, host_extra);
        NetstatConfig::parse(&text, &self.root().join("config.toml"), None, &|_| None)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
    }

    pub fn config_text(&self, ssh_extra: &str, host_extra: &str) -> String {
        format!(
            "[ssh]\nknown_hosts = \"{kh}\"\n{ssh_extra}\n\n\
             [[remote_hosts]]\nname = \"test-sshd\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"{USER}\"\n{host_extra}\n",
            kh = self.known_hosts.display(),
            port = self.port
        )
    }

    /// Kills (SIGKILL) the per-connection sshd processes of this server, keeping the listener:
    /// every open session dies. Returns how many were killed.
    pub fn kill_sessions(&self) -> usize {
        // The per-connection monitor and its unprivileged child both hold the connection:
        // kill every descendant of the listener, not only its children, or the session can
        // live on in the grandchild.
        let mut children = Vec::new();
        let mut queue = child_pids(self.child.id());
        while let Some(pid) = queue.pop() {
            queue.extend(child_pids(pid));
            children.push(pid);
        }
        for pid in &children {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        children.len()
    }

    /// The sshd log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_sessions();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ready once sshd logs that it listens on `port` (it logs that after `listen`, so connections
/// are accepted from then on); false once it exited (the port was taken). Bounded by 30 s.
fn wait_ready(port: u16, child: &mut Child, log: &Path) -> bool {
    let listening = format!("Server listening on 127.0.0.1 port {port}.");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|l| l.contains(&listening)) {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Direct children of `parent`, from `/proc/*/stat`.
pub fn child_pids(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Pids whose command line is exactly `argv`.
pub fn pids_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want) {
            out.push(pid);
        }
    }
    out
}

/// An `ssh-agent` on its own socket, holding the keys given to [`Agent::add`]; killed on drop.
pub struct Agent {
    pub socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent {
            socket,
            child,
            _dir: dir,
        }
    }

    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null()));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
