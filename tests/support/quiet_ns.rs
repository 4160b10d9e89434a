//! A network namespace of the test's own, where nothing but the test's fixture holds sockets:
//! counts taken there are exact however busy the machine is.
//!
//! [`QuietNs::new`] runs `ip netns add` with a name unique to this process and call, brings
//! its loopback up, and removes the namespace on drop (after the test has stopped what it
//! started inside). [`QuietNs::command`] builds `ip netns exec <name> <program>`.
//! The tests that use it run as root (CI does); nothing here skips.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct QuietNs {
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e} (install iproute2)"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {} (network namespaces need root)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl QuietNs {
    pub fn new(purpose: &str) -> QuietNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nm-{purpose}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = QuietNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec <name> <program>`: a command to run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// The same, as a tokio command (for an MCP server child).
    pub fn tokio_command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }
}

impl Drop for QuietNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
