//! Real sockets and facts about this process, for tests against the live kernel.

use std::net::{TcpListener, UdpSocket};

/// This process's name as the kernel reports it (`/proc/self/comm`), which is what owners carry.
pub fn our_program() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("read /proc/self/comm")
        .trim_end()
        .to_string()
}

/// A TCP port on 127.0.0.1 that nothing holds at the moment of the call, found by binding a
/// UDP and TCP socket to port 0 and releasing them (the kernel does not hand the same ephemeral
/// port out again at once).
pub fn unused_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// A bound, unconnected UDP socket on 127.0.0.1.
pub fn udp_socket() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}
