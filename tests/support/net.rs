//! Real sockets and facts about this process, for tests against the live kernel.
//!
//! Listeners are bound *below* the kernel's ephemeral port range: a port there is never handed
//! to a client socket, so a busy machine (a benchmark's 100k loopback connections on 127.0.0.x)
//! cannot have a stray socket with the same local port on another address, and counts by port
//! stay exact.

use std::net::{IpAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// This process's name as the kernel reports it (`/proc/self/comm`), which is what owners carry.
pub fn our_program() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("read /proc/self/comm")
        .trim_end()
        .to_string()
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

/// Ports `[10000, ephemeral start)`, walked from a per-process offset so parallel tests and
/// test processes rarely try the same one.
pub fn candidate_ports() -> impl Iterator<Item = u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = 10000u32;
    let span = u32::from(ephemeral_start()).saturating_sub(low).max(1);
    let offset = std::process::id().wrapping_mul(7919);
    (0..span).map(move |_| {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        (low + (offset.wrapping_add(i) % span)) as u16
    })
}

/// A TCP listener on `ip` at a port below the ephemeral range that no other TCP socket has as
/// its local or remote port: not even a TIME_WAIT left by an earlier test's connection on a
/// reused port (a listener binds over those). Once bound, no new socket can take the port, so
/// counts by port stay exact.
pub fn tcp_listener(ip: &str) -> TcpListener {
    let ip: IpAddr = ip.parse().expect("ip");
    candidate_ports()
        .take(5000)
        .find_map(|p| {
            let l = TcpListener::bind((ip, p)).ok()?;
            (tcp_sockets_with_port(p) == 1).then_some(l)
        })
        .expect("a free TCP port below the ephemeral range")
}

/// How many TCP sockets (IPv4 and IPv6, any state) the kernel lists with `port` as their
/// local or remote port.
fn tcp_sockets_with_port(port: u16) -> usize {
    let suffix = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|l| {
                    let mut cols = l.split_whitespace().skip(1);
                    let (local, remote) = (cols.next(), cols.next());
                    [local, remote]
                        .iter()
                        .any(|a| a.is_some_and(|a| a.ends_with(&suffix)))
                })
                .count()
        })
        .sum()
}

/// A bound, unconnected UDP socket on 127.0.0.1 at a port below the ephemeral range.
pub fn udp_socket() -> (UdpSocket, u16) {
    udp_socket_on("127.0.0.1")
}

/// A bound, unconnected UDP socket on `ip` at a port below the ephemeral range.
pub fn udp_socket_on(ip: &str) -> (UdpSocket, u16) {
    let ip: IpAddr = ip.parse().expect("ip");
    let s = candidate_ports()
        .find_map(|p| UdpSocket::bind((ip, p)).ok())
        .expect("a free UDP port below the ephemeral range");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

/// A TCP port on 127.0.0.1 where a connection is refused, for as long as the returned socket
/// lives: the socket is bound there (without `SO_REUSEADDR`, so nobody else can bind or listen
/// on the port) but never listens.
pub fn refusing_tcp_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("TCP socket");
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    socket.bind(&addr.into()).expect("bind 127.0.0.1:0");
    let port = socket
        .local_addr()
        .expect("local addr")
        .as_socket()
        .expect("inet addr")
        .port();
    (socket, port)
}

/// Runs `f` on a thread of its own inside a new, empty network namespace: no socket exists
/// there, so every port is free, whatever other processes on the machine do. Threads `f`
/// starts (tokio's blocking pool) inherit the namespace. `None`, with a loud message, when not
/// root (CI runs as root, where this never skips).
pub fn in_empty_netns<T: Send>(what: &str, f: impl FnOnce() -> T + Send) -> Option<T> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {what}: needs root to create a network namespace");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; {what} must not skip there"
        );
        return None;
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(CLONE_NEWNET) changes only this thread's network namespace;
                // it touches no memory and no file descriptor.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "unshare(CLONE_NEWNET): {}",
                    std::io::Error::last_os_error()
                );
                let ns = |p: &str| std::fs::read_link(p).expect("read netns link");
                assert_ne!(
                    ns("/proc/thread-self/ns/net"),
                    ns("/proc/self/ns/net"),
                    "the thread did not get a network namespace of its own"
                );
                f()
            })
            .join()
            .expect("netns thread")
    })
    .into()
}

/// A command run in a new, empty network namespace (`unshare --net`), where every port is
/// free; `None`, loudly, when not root.
pub fn command_in_empty_netns(
    what: &str,
    program: &std::path::Path,
) -> Option<std::process::Command> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {what}: needs root to create a network namespace");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root; {what} must not skip there"
        );
        return None;
    }
    let mut cmd = std::process::Command::new("unshare");
    cmd.arg("--net").arg("--").arg(program);
    Some(cmd)
}
