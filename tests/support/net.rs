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
fn candidate_ports() -> impl Iterator<Item = u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = 10000u32;
    let span = u32::from(ephemeral_start()).saturating_sub(low).max(1);
    let offset = std::process::id().wrapping_mul(7919);
    (0..span).map(move |_| {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        (low + (offset.wrapping_add(i) % span)) as u16
    })
}

/// A TCP listener on `ip` at a port below the ephemeral range.
pub fn tcp_listener(ip: &str) -> TcpListener {
    let ip: IpAddr = ip.parse().expect("ip");
    candidate_ports()
        .find_map(|p| TcpListener::bind((ip, p)).ok())
        .expect("a free TCP port below the ephemeral range")
}

/// A bound, unconnected UDP socket on 127.0.0.1 at a port below the ephemeral range.
pub fn udp_socket() -> (UdpSocket, u16) {
    let s = candidate_ports()
        .find_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
        .expect("a free UDP port below the ephemeral range");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

/// A TCP port below the ephemeral range that nothing holds on any address at the moment of
/// the call (bound on the wildcard address, then released).
pub fn unused_tcp_port() -> u16 {
    let l = candidate_ports()
        .find_map(|p| TcpListener::bind(("0.0.0.0", p)).ok())
        .expect("a free TCP port");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}
