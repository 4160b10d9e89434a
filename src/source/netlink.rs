//! Socket listing through netlink `sock_diag` (`NETLINK_SOCK_DIAG`), as `ss` does it.
//!
//! One dump request per address family and protocol. The kernel filters by TCP state (the
//! request's state mask) and, for a port check, by local port through an
//! `INET_DIAG_REQ_BYTECODE` program ([`port_filter_bytecode`]); no published crate encodes that
//! bytecode, so this module does. Replies are read into one reusable 32 KiB buffer and parsed
//! in place: only the fixed `inet_diag_msg` header of each reply is decoded, its attributes are
//! skipped. Owners are not looked up here (see `owners`). A socket bound to a device (or to a
//! link-local IPv6 address, whose scope the kernel keeps as the bound device) is noted with its
//! interface index ([`Diag::take_devices`]); naming the interface is the caller's job, in the
//! namespace the dump ran in.
//!
//! A netlink socket belongs to the network namespace of the thread that created it, so a
//! [`Diag`] opened on a thread that entered another namespace (`source::netns`) dumps that one.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Parseable,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_sys::{Socket as NlSocket, SocketAddr as NlAddr, protocols::NETLINK_SOCK_DIAG};

use crate::error::Error;
use crate::model::{Counters, Endpoint, Protocol, Socket, StateSet, TcpField, TcpState, Transport};

/// Size of the receive buffer; the kernel fills at most 32 KiB per dump batch.
const RECV_BUF: usize = 32 * 1024;

/// `INET_DIAG_REQ_BYTECODE`, the request attribute carrying a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Bytecode operations (`include/uapi/linux/inet_diag.h`).
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
const INET_DIAG_BC_NOP: u8 = 0;

/// Encodes a filter program accepting exactly the sockets whose local port is in `lo..=hi`
/// (one port: `lo == hi`).
///
/// Each op is `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }`: on a true comparison
/// the interpreter moves `yes` bytes on, else `no` bytes; a socket is accepted when it lands
/// exactly on the end. Port comparisons take their operand from the `no` field of the op that
/// follows. "Reject" is a jump to 4 bytes past the end, the only out-of-range target the
/// kernel's validator (`inet_diag_bc_audit`) allows. `S_GE` and `S_LE` are used rather than
/// `S_EQ` so the program also runs on kernels older than 4.16.
pub(crate) fn port_filter_bytecode((lo, hi): (u16, u16)) -> [u8; 16] {
    let mut bc = [0u8; 16];
    let ops: [(u8, u8, u16); 4] = [
        // At offset 0, 16 bytes remain: true -> offset 8, false -> 20 (reject).
        (INET_DIAG_BC_S_GE, 8, 20),
        (INET_DIAG_BC_NOP, 0, lo),
        // At offset 8, 8 bytes remain: true -> end (accept), false -> 12 past here (reject).
        (INET_DIAG_BC_S_LE, 8, 12),
        (INET_DIAG_BC_NOP, 0, hi),
    ];
    for (i, (code, yes, no)) in ops.into_iter().enumerate() {
        bc[i * 4] = code;
        bc[i * 4 + 1] = yes;
        bc[i * 4 + 2..i * 4 + 4].copy_from_slice(&no.to_ne_bytes());
    }
    bc
}

/// Runs a bytecode program the way the kernel's `inet_diag_bc_run` does, for the ops we emit.
/// Used by tests to check the encoder against the interpreter's semantics.
#[cfg(test)]
fn run_bytecode(bc: &[u8], sport: u16) -> bool {
    let mut pos = 0usize;
    let mut len = bc.len() as isize;
    while len > 0 {
        let Some(op) = bc.get(pos..pos + 4) else {
            return false;
        };
        let operand = bc
            .get(pos + 4..pos + 8)
            .map(|next| u16::from_ne_bytes([next[2], next[3]]))
            .unwrap_or(0);
        let yes = match op[0] {
            INET_DIAG_BC_NOP => true,
            INET_DIAG_BC_S_GE => sport >= operand,
            INET_DIAG_BC_S_LE => sport <= operand,
            _ => return false,
        };
        let step = if yes {
            op[1] as usize
        } else {
            u16::from_ne_bytes([op[2], op[3]]) as usize
        };
        if step == 0 {
            return false;
        }
        pos += step;
        len -= step as isize;
    }
    len == 0
}

/// A netlink `sock_diag` connection with its receive buffer, reused across dumps.
pub struct Diag {
    socket: NlSocket,
    buf: Vec<u8>,
    seq: u32,
    /// (position in the caller's vector, interface index) of every socket dumped so far that
    /// is bound to a device.
    devices: Vec<(usize, u32)>,
    /// What dumps ask for and read of each socket beyond its header.
    detail: Detail,
}

/// What a dump reads of each socket beyond its header ([`Diag::set_detail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// The header only: a plain listing.
    Plain,
    /// `tcp_info`, memory and the cgroup id, into [`Socket::health`]. Replies grow from about
    /// 100 to about 450 bytes per TCP socket.
    Health,
    /// `tcp_info` and the cgroup id, kept only as each TCP socket's [`Counters`] in its
    /// [`SocketIds`]: what a traffic count needs, with no [`Health`](crate::model::Health)
    /// allocated per socket.
    Counters,
}

/// What the kernel says about a dumped socket beyond the [`Socket`] itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketIds {
    /// The kernel socket cookie: a 64-bit id unique within the network namespace for the
    /// socket's lifetime.
    pub(crate) cookie: u64,
    /// The bound device's interface index (the scope of a link-local address); 0 for none.
    pub(crate) interface: u32,
    /// With [`Detail::Counters`]: a TCP socket's byte counters and cgroup, when its
    /// `tcp_info` came.
    pub(crate) counters: Option<Counters>,
}

/// Notes the next socket of `out` as bound to a device, when it is.
fn note_device(devices: &mut Vec<(usize, u32)>, out: &[Socket], ids: SocketIds) {
    if ids.interface != 0 {
        devices.push((out.len(), ids.interface));
    }
}

impl Diag {
    /// Opens the netlink socket. Fails where netlink is not available (non-Linux, or a
    /// sandbox that refuses `NETLINK_SOCK_DIAG`).
    pub fn open() -> Result<Diag, Error> {
        let socket = NlSocket::new(NETLINK_SOCK_DIAG).map_err(|source| Error::Netlink {
            stage: "socket",
            source,
        })?;
        // A larger kernel-side queue lets the kernel keep batches ready while we parse.
        let _ = socket.set_rx_buf_sz(1 << 20);
        Ok(Diag {
            socket,
            buf: vec![0; RECV_BUF],
            seq: 0,
            devices: Vec::new(),
            detail: Detail::Plain,
        })
    }

    /// Dumps from now on also ask for each socket's `tcp_info` and memory and read them (with
    /// its cgroup id) into [`Socket::health`] ([`Detail::Health`]); plain listings do not ask.
    pub(crate) fn with_health(mut self, health: bool) -> Diag {
        self.set_detail(if health {
            Detail::Health
        } else {
            Detail::Plain
        });
        self
    }

    /// What dumps from now on read of each socket, on a connection kept across dumps (a
    /// watcher asks for counters in some listings only).
    pub(crate) fn set_detail(&mut self, detail: Detail) {
        self.detail = detail;
    }

    /// The sockets dumped so far that are bound to a device: (position in the vector the dumps
    /// appended to, interface index). Clears the list.
    pub fn take_devices(&mut self) -> Vec<(usize, u32)> {
        std::mem::take(&mut self.devices)
    }

    /// Forgets the devices noted at positions `from` and beyond (the caller truncated its
    /// vector there, e.g. to retry a dump another way).
    pub(crate) fn forget_devices_from(&mut self, from: usize) {
        self.devices.retain(|&(at, _)| at < from);
    }

    /// Dumps the sockets of one transport and address family into `out` (only those whose
    /// local port is in `ports`, `lo..=hi`, when given).
    pub(crate) fn dump(
        &mut self,
        transport: Transport,
        ipv6: bool,
        states: StateSet,
        ports: Option<(u16, u16)>,
        out: &mut Vec<Socket>,
    ) -> Result<(), Error> {
        let mut devices = std::mem::take(&mut self.devices);
        let result = self.dump_with(transport, ipv6, states, ports, &mut |s, ids| {
            note_device(&mut devices, out, ids);
            out.push(s)
        });
        self.devices = devices;
        result
    }

    /// [`Diag::dump`], handing each socket to `sink` with its [`SocketIds`] (its cookie is the
    /// key watchers match destroy notifications with). Devices are not noted.
    pub(crate) fn dump_with(
        &mut self,
        transport: Transport,
        ipv6: bool,
        states: StateSet,
        ports: Option<(u16, u16)>,
        sink: &mut dyn FnMut(Socket, SocketIds),
    ) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let request = encode_request(transport, ipv6, states, ports, self.extensions(), self.seq);
        self.send(&request)?;
        self.receive(transport, ports, sink)
    }

    /// The local ports of `transport` in `lo..=hi` that some socket of this namespace has
    /// (any state, either family): one dump filtered by the range in the kernel.
    pub(crate) fn ports_in_use(
        &mut self,
        transport: Transport,
        lo: u16,
        hi: u16,
    ) -> Result<std::collections::BTreeSet<u16>, Error> {
        let mut used = std::collections::BTreeSet::new();
        let mut note = |s: Socket, _: SocketIds| {
            used.insert(s.local_port);
        };
        let range = Some((lo, hi));
        let compat = transport == Transport::Tcp
            && self
                .dump_tcp_ports_with(StateSet::ALL, range, &mut note)
                .is_ok();
        if !compat {
            for ipv6 in [false, true] {
                self.dump_with(transport, ipv6, StateSet::ALL, range, &mut note)?;
            }
        }
        Ok(used)
    }

    /// Dumps TCP sockets of both address families in one pass over the kernel's tables, with
    /// the older `TCPDIAG_GETSOCK` request (whose family is "any"). Two `sock_diag` requests
    /// (IPv4, then IPv6) each walk every TCP socket of the host; this walks them once, which
    /// halves the kernel's share of a port check on a host with 100k connections. On error
    /// `out` may hold a partial dump: the caller truncates it and falls back to [`Diag::dump`].
    pub fn dump_tcp_any_family(
        &mut self,
        states: StateSet,
        local_port: Option<u16>,
        out: &mut Vec<Socket>,
    ) -> Result<(), Error> {
        self.dump_tcp_ports(states, local_port.map(|p| (p, p)), out)
    }

    /// [`Diag::dump_tcp_any_family`] for the local ports `lo..=hi`.
    pub(crate) fn dump_tcp_ports(
        &mut self,
        states: StateSet,
        ports: Option<(u16, u16)>,
        out: &mut Vec<Socket>,
    ) -> Result<(), Error> {
        let mut devices = std::mem::take(&mut self.devices);
        let result = self.dump_tcp_ports_with(states, ports, &mut |s, ids| {
            note_device(&mut devices, out, ids);
            out.push(s)
        });
        self.devices = devices;
        result
    }

    /// The one `TCPDIAG_GETSOCK` dump, for the local ports in `ports` (`lo..=hi`) when given,
    /// handing each socket to `sink` with its [`SocketIds`].
    pub(crate) fn dump_tcp_ports_with(
        &mut self,
        states: StateSet,
        ports: Option<(u16, u16)>,
        sink: &mut dyn FnMut(Socket, SocketIds),
    ) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let request = encode_compat_tcp_request(states, ports, self.extensions().bits(), self.seq);
        self.send(&request)?;
        self.receive(Transport::Tcp, ports, sink)
    }

    /// The TCP sockets (both families) whose local port is `local_port` and whose peer is
    /// `remote`, with their ids (the address forms compared canonically, so an IPv4 peer of a
    /// dual-stack socket matches).
    pub(crate) fn find_connections(
        &mut self,
        local_port: u16,
        remote: (std::net::IpAddr, u16),
    ) -> Result<Vec<(Socket, SocketIds)>, Error> {
        let mut found = Vec::new();
        let mut sink = |s: Socket, ids: SocketIds| {
            if s.foreign.port == Some(remote.1)
                && s.foreign.ip.to_canonical() == remote.0.to_canonical()
            {
                found.push((s, ids));
            }
        };
        for ipv6 in [false, true] {
            self.dump_with(
                Transport::Tcp,
                ipv6,
                StateSet::ALL,
                Some((local_port, local_port)),
                &mut sink,
            )?;
        }
        Ok(found)
    }

    /// Closes one TCP socket as `ss -K` does: a `SOCK_DESTROY` request naming it exactly (its
    /// addresses, ports, interface and cookie), so no other socket can be hit. The kernel
    /// resets the connection and wakes its owner with `ECONNABORTED`. Needs `CAP_NET_ADMIN`
    /// in the socket's network namespace (`PermissionDenied` without it); a kernel built
    /// without `CONFIG_INET_DIAG_DESTROY` answers `Unsupported`.
    pub(crate) fn destroy(&mut self, socket: &Socket, ids: SocketIds) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let request = encode_destroy(socket, ids, self.seq);
        self.socket.send_to(&request, &NlAddr::new(0, 0), 0)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let msg = NetlinkBuffer::new_checked(&self.buf[..n]).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad netlink reply: {e}"),
                )
            })?;
            if msg.message_type() != NLMSG_ERROR || msg.sequence_number() != self.seq {
                continue;
            }
            let code = msg
                .payload()
                .get(..4)
                .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            return match code {
                0 => Ok(()),
                c => Err(io::Error::from_raw_os_error(-c)),
            };
        }
    }

    /// The attributes to ask the kernel for.
    fn extensions(&self) -> ExtensionFlags {
        match self.detail {
            Detail::Plain => ExtensionFlags::empty(),
            Detail::Health => ExtensionFlags::INFO | ExtensionFlags::SKMEMINFO,
            Detail::Counters => ExtensionFlags::INFO,
        }
    }

    fn send(&mut self, request: &[u8]) -> Result<(), Error> {
        let kernel = NlAddr::new(0, 0);
        self.socket
            .send_to(request, &kernel, 0)
            .map_err(|source| Error::Netlink {
                stage: "request",
                source,
            })?;
        Ok(())
    }

    fn receive(
        &mut self,
        transport: Transport,
        ports: Option<(u16, u16)>,
        sink: &mut dyn FnMut(Socket, SocketIds),
    ) -> Result<(), Error> {
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|source| Error::Netlink {
                    stage: "receive",
                    source,
                })?;
            if n == 0 {
                return Err(Error::Netlink {
                    stage: "receive",
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the kernel closed the dump",
                    ),
                });
            }
            if parse_batch(&self.buf[..n], transport, ports, self.detail, sink)? {
                return Ok(());
            }
        }
    }
}

/// The sock_diag multicast groups of destroy notifications (`SKNLGRP_*` in
/// `include/uapi/linux/sock_diag.h`), with what each carries.
pub(crate) const DESTROY_GROUPS: [(u32, Transport, bool); 4] = [
    (1, Transport::Tcp, false), // SKNLGRP_INET_TCP_DESTROY
    (2, Transport::Udp, false), // SKNLGRP_INET_UDP_DESTROY
    (3, Transport::Tcp, true),  // SKNLGRP_INET6_TCP_DESTROY
    (4, Transport::Udp, true),  // SKNLGRP_INET6_UDP_DESTROY
];

/// What one [`DestroyMonitor::recv`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many destroyed sockets were handed to the sink.
    Sockets(usize),
    /// Nothing arrived before the receive timeout.
    Timeout,
    /// The kernel dropped notifications because our receive queue was full (`ENOBUFS`);
    /// how many is not known.
    Overrun,
}

/// A netlink `sock_diag` socket subscribed to the four destroy groups: the kernel sends one
/// `inet_diag_msg` (the same layout as a dump reply, parsed by the same code) for every TCP or
/// UDP socket of this network namespace at the moment it is freed, as `ss -E` shows them.
///
/// The message carries the 4-tuple, uid and cookie; its state is `CLOSE` and its inode 0 (the
/// socket has left its file by then), so owners must be remembered from an earlier dump.
/// TIME_WAIT and request (SYN_RECV) mini-sockets are not full sockets and send none.
pub(crate) struct DestroyMonitor {
    socket: NlSocket,
    buf: Vec<u8>,
}

impl DestroyMonitor {
    /// Subscribes to the destroy groups; a receive waits at most `timeout` (so the caller can
    /// look at a stop flag). Any user may subscribe on a stock kernel; a sandbox or an older
    /// kernel may refuse (the error names the stage).
    pub(crate) fn open(timeout: std::time::Duration) -> Result<DestroyMonitor, Error> {
        let fail = |stage| move |source| Error::Netlink { stage, source };
        let mut socket = NlSocket::new(NETLINK_SOCK_DIAG).map_err(fail("socket"))?;
        socket.bind_auto().map_err(fail("bind"))?;
        // A deep queue rides out bursts while the watcher is busy elsewhere: forced past
        // net.core.rmem_max where we may (CAP_NET_ADMIN), else as deep as the limit allows.
        const QUEUE: usize = 8 << 20;
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, QUEUE).is_err() {
            let _ = socket.set_rx_buf_sz(QUEUE);
        }
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(timeout),
        )
        .map_err(|e| Error::Netlink {
            stage: "receive timeout",
            source: e.into(),
        })?;
        for (group, _, _) in DESTROY_GROUPS {
            socket
                .add_membership(group)
                .map_err(fail("subscribe to destroy notifications"))?;
        }
        Ok(DestroyMonitor {
            socket,
            buf: vec![0; 8192],
        })
    }

    /// Waits for the next notification and hands its socket(s) to `sink` with their cookies.
    pub(crate) fn recv(&mut self, sink: &mut dyn FnMut(Socket, u64)) -> Result<Received, Error> {
        let (n, from) = match self.socket.recv_from(&mut &mut self.buf[..], 0) {
            Ok(got) => got,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                return Ok(Received::Overrun);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Received::Timeout);
            }
            Err(source) => {
                return Err(Error::Netlink {
                    stage: "receive destroy notification",
                    source,
                });
            }
        };
        // The sender address names the group (as a bit mask): TCP is groups 1 and 3.
        let transport = match group_transport(from.multicast_groups()) {
            Some(t) => t,
            None => return Ok(Received::Sockets(0)),
        };
        let mut count = 0;
        // The kernel adds the closed socket's final tcp_info: a close's byte totals.
        parse_batch(
            &self.buf[..n],
            transport,
            None,
            Detail::Health,
            &mut |s, ids| {
                count += 1;
                sink(s, ids.cookie)
            },
        )?;
        Ok(Received::Sockets(count))
    }
}

/// The transport of a destroy group, from the sender's group bit mask (`1 << (group - 1)`).
fn group_transport(mask: u32) -> Option<Transport> {
    DESTROY_GROUPS
        .iter()
        .find(|(group, _, _)| mask == 1 << (group - 1))
        .map(|&(_, transport, _)| transport)
}

/// `TCPDIAG_GETSOCK`: the pre-`sock_diag` request type for TCP, still served by the kernel.
const TCPDIAG_GETSOCK: u16 = 18;

/// Builds the legacy TCP dump request: `nlmsghdr` + `inet_diag_req` (v1: family, address
/// lengths, extensions, the 48-byte socket id, states, tables) (+ the bytecode attribute).
fn encode_compat_tcp_request(
    states: StateSet,
    ports: Option<(u16, u16)>,
    extensions: u8,
    seq: u32,
) -> Vec<u8> {
    const REQ_LEN: usize = 4 + 48 + 4 + 4;
    let bc = ports.map(port_filter_bytecode);
    let total = 16 + REQ_LEN + bc.map_or(0, |b| 4 + b.len());
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&(total as u32).to_ne_bytes());
    buf.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // idiag_family (ignored: the kernel dumps both), src_len, dst_len, ext.
    buf.extend_from_slice(&[AF_INET, 0, 0, extensions]);
    // The socket id: ports, addresses, interface, cookie — unused by a dump.
    buf.extend_from_slice(&[0u8; 48]);
    buf.extend_from_slice(&states.bits().to_ne_bytes());
    // idiag_dbs: unused.
    buf.extend_from_slice(&0u32.to_ne_bytes());
    if let Some(bc) = bc {
        buf.extend_from_slice(&((4 + bc.len()) as u16).to_ne_bytes());
        buf.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        buf.extend_from_slice(&bc);
    }
    buf
}

/// Builds the dump request: `nlmsghdr` + `inet_diag_req_v2` (+ the bytecode attribute).
fn encode_request(
    transport: Transport,
    ipv6: bool,
    states: StateSet,
    ports: Option<(u16, u16)>,
    extensions: ExtensionFlags,
    seq: u32,
) -> Vec<u8> {
    let (family, socket_id) = if ipv6 {
        (AF_INET6, SocketId::new_v6())
    } else {
        (AF_INET, SocketId::new_v4())
    };
    let request = InetRequest {
        family,
        protocol: match transport {
            Transport::Tcp => IPPROTO_TCP,
            Transport::Udp => IPPROTO_UDP,
        },
        extensions,
        states: match transport {
            Transport::Tcp => StateFlags::from_bits_truncate(states.bits()),
            // UDP sockets use TCP_ESTABLISHED/TCP_CLOSE internally: ask for all of them.
            Transport::Udp => StateFlags::all(),
        },
        socket_id,
    };
    let mut buf = serialize_request(request, NLM_F_REQUEST | NLM_F_DUMP, seq);
    if let Some(ports) = ports {
        let bc = port_filter_bytecode(ports);
        let attr_len = 4 + bc.len();
        buf.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        buf.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        buf.extend_from_slice(&bc);
        let total = buf.len() as u32;
        NetlinkBuffer::new(&mut buf[..]).set_length(total);
    }
    buf
}

/// `SOCK_DESTROY` in `include/uapi/linux/sock_diag.h`.
const SOCK_DESTROY: u16 = 21;

/// Builds a `SOCK_DESTROY` request for one socket: `nlmsghdr` (with an ack asked for) +
/// `inet_diag_req_v2` carrying its full id.
fn encode_destroy(socket: &Socket, ids: SocketIds, seq: u32) -> Vec<u8> {
    let ipv6 = socket.protocol.is_ipv6();
    let address = |ip: std::net::IpAddr| match (ipv6, ip) {
        (true, std::net::IpAddr::V4(v4)) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
        (false, std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        _ => ip,
    };
    let request = InetRequest {
        family: if ipv6 { AF_INET6 } else { AF_INET },
        protocol: match socket.protocol.transport() {
            Transport::Tcp => IPPROTO_TCP,
            Transport::Udp => IPPROTO_UDP,
        },
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id: SocketId {
            source_port: socket.local_port,
            destination_port: socket.foreign.port.unwrap_or(0),
            source_address: address(socket.local_ip),
            destination_address: address(socket.foreign.ip),
            interface_id: ids.interface,
            cookie: ids.cookie.to_ne_bytes(),
        },
    };
    let mut buf = serialize_request(request, NLM_F_REQUEST | NLM_F_ACK, seq);
    NetlinkBuffer::new(&mut buf[..]).set_message_type(SOCK_DESTROY);
    buf
}

/// `nlmsghdr` (with `flags` and `seq`) + an `inet_diag_req_v2`, as bytes.
fn serialize_request(request: InetRequest, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::from(SockDiagMessage::InetRequest(request)),
    );
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// Parses one received batch (of a dump, or one destroy notification): each socket goes to
/// `sink` with its cookie; its attributes are read as `detail` says.
/// Returns true when the dump is complete.
fn parse_batch(
    mut batch: &[u8],
    transport: Transport,
    ports: Option<(u16, u16)>,
    detail: Detail,
    sink: &mut dyn FnMut(Socket, SocketIds),
) -> Result<bool, Error> {
    while !batch.is_empty() {
        let msg = NetlinkBuffer::new_checked(batch)
            .map_err(|e| malformed(format!("bad netlink header: {e}")))?;
        let len = msg.length() as usize;
        match msg.message_type() {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let payload = msg.payload();
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if code == 0 {
                    return Ok(true);
                }
                return Err(Error::Netlink {
                    stage: "dump",
                    source: io::Error::from_raw_os_error(-code),
                });
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                let header = InetResponseHeader::parse(msg.payload())
                    .map_err(|e| malformed(format!("bad inet_diag_msg: {e}")))?;
                let protocol = Protocol::new(transport, header.family == AF_INET6);
                if let Some(mut socket) = to_socket(&header, protocol)
                    && ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&socket.local_port))
                {
                    let attrs = msg.payload().get(INET_DIAG_MSG_LEN..).unwrap_or(&[]);
                    let counters = match detail {
                        Detail::Plain => None,
                        Detail::Health => {
                            let health = read_health(attrs, transport, &TcpField::ALL);
                            socket.health = Some(Box::new(health));
                            None
                        }
                        Detail::Counters => {
                            read_health(attrs, transport, &TcpField::BYTES).counters(socket.state)
                        }
                    };
                    if header.family == AF_INET6 {
                        socket.v6only = read_v6only(attrs);
                    }
                    sink(
                        socket,
                        SocketIds {
                            cookie: u64::from_ne_bytes(header.socket_id.cookie),
                            interface: header.socket_id.interface_id,
                            counters,
                        },
                    );
                }
            }
            _ => {}
        }
        // Messages are 4-byte aligned.
        let advance = (len + 3) & !3;
        if advance == 0 || advance > batch.len() {
            break;
        }
        batch = &batch[advance..];
    }
    Ok(false)
}

/// `struct inet_diag_msg`: the fixed header before a reply's attributes.
const INET_DIAG_MSG_LEN: usize = 72;
/// Attribute types of a reply (`include/uapi/linux/inet_diag.h`).
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_SKMEMINFO: u16 = 7;
const INET_DIAG_CGROUP_ID: u16 = 21;
/// Sent for IPv6 sockets that listen or are bound (states LISTEN and CLOSE).
const INET_DIAG_SKV6ONLY: u16 = 11;

/// The `IPV6_V6ONLY` flag of a reply, when the kernel sent it.
fn read_v6only(mut attrs: &[u8]) -> Option<bool> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == INET_DIAG_SKV6ONLY {
            return attrs.get(4).map(|&b| b != 0);
        }
        let advance = (len + 3) & !3;
        if advance >= attrs.len() {
            return None;
        }
        attrs = &attrs[advance..];
    }
    None
}

/// Reads the attributes of one reply that health needs. Attributes it does not know, or that
/// are cut short, are skipped: a reply is never refused for them.
/// Of `tcp_info`, only `fields` are read.
fn read_health(
    mut attrs: &[u8],
    transport: Transport,
    fields: &[TcpField],
) -> crate::model::Health {
    let mut health = crate::model::Health::default();
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        // The top two bits are flags (nested, network byte order).
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            break;
        }
        let value = &attrs[4..len];
        match kind {
            INET_DIAG_INFO if transport == Transport::Tcp => {
                health.tcp = Some(crate::model::TcpInfo::from_kernel_fields(value, fields));
            }
            INET_DIAG_SKMEMINFO => health.mem = crate::model::SkMem::from_kernel(value),
            INET_DIAG_CGROUP_ID => {
                if let Some(b) = value.get(..8) {
                    health.cgroup_id = Some(u64::from_ne_bytes([
                        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                    ]));
                }
            }
            _ => {}
        }
        let advance = (len + 3) & !3;
        if advance >= attrs.len() {
            break;
        }
        attrs = &attrs[advance..];
    }
    health
}

fn malformed(detail: String) -> Error {
    Error::Netlink {
        stage: "parse",
        source: io::Error::new(io::ErrorKind::InvalidData, detail),
    }
}

fn to_socket(h: &InetResponseHeader, protocol: Protocol) -> Option<Socket> {
    let id = &h.socket_id;
    let state = match (protocol.transport(), TcpState::from_kernel(h.state)) {
        (Transport::Tcp, state) => state,
        // UDP: a connected socket is ESTABLISHED (as netstat prints it); the rest have no state.
        (Transport::Udp, Some(TcpState::Established)) => Some(TcpState::Established),
        (Transport::Udp, _) => None,
    };
    Some(Socket {
        protocol,
        local_ip: id.source_address,
        local_port: id.source_port,
        // Port 0 is where netstat prints `*`.
        foreign: Endpoint {
            ip: id.destination_address,
            port: (id.destination_port != 0).then_some(id.destination_port),
        },
        state,
        recv_queue: h.recv_queue,
        send_queue: h.send_queue,
        uid: Some(h.uid),
        inode: (h.inode != 0).then_some(u64::from(h.inode)),
        owners: crate::model::Owners::new(),
        place: None,
        health: None,
        v6only: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroy_groups_map_to_their_transport() {
        assert_eq!(group_transport(1), Some(Transport::Tcp));
        assert_eq!(group_transport(2), Some(Transport::Udp));
        assert_eq!(group_transport(4), Some(Transport::Tcp));
        assert_eq!(group_transport(8), Some(Transport::Udp));
        assert_eq!(group_transport(0), None);
        assert_eq!(group_transport(3), None);
    }

    /// A destroy notification as the kernel sent it (captured here from a loopback TCP client
    /// socket, `ss -E` style): parsed by the dump parser, with the 4-tuple and cookie.
    #[test]
    fn destroy_message_parses_like_a_dump_reply() {
        let mut msg = vec![0u8; 16 + 72];
        msg[0..4].copy_from_slice(&(88u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let body = &mut msg[16..];
        body[0] = AF_INET;
        body[1] = 7; // TCP_CLOSE
        body[4..6].copy_from_slice(&49860u16.to_be_bytes());
        body[6..8].copy_from_slice(&50091u16.to_be_bytes());
        body[8..12].copy_from_slice(&[127, 0, 0, 1]);
        body[24..28].copy_from_slice(&[127, 0, 0, 1]);
        body[44..52].copy_from_slice(&0x1d8u64.to_ne_bytes());
        let mut got = Vec::new();
        let done = parse_batch(&msg, Transport::Tcp, None, Detail::Plain, &mut |s, ids| {
            got.push((s, ids.cookie))
        })
        .unwrap();
        assert!(!done);
        let (s, cookie) = &got[0];
        assert_eq!(*cookie, 0x1d8);
        assert_eq!((s.local_port, s.foreign.port), (49860, Some(50091)));
        assert_eq!(s.state, Some(TcpState::Close));
        assert_eq!(s.inode, None);
    }

    #[test]
    fn bytecode_accepts_only_the_port() {
        let bc = port_filter_bytecode((8080, 8080));
        assert!(run_bytecode(&bc, 8080));
        for other in [0, 1, 8079, 8081, 65535] {
            assert!(!run_bytecode(&bc, other), "port {other} must be rejected");
        }
        let edge = port_filter_bytecode((65535, 65535));
        assert!(run_bytecode(&edge, 65535));
        assert!(!run_bytecode(&edge, 65534));
        // A range (suggested ports): both ends in, the neighbours out.
        let range = port_filter_bytecode((8080, 8143));
        for inside in [8080, 8100, 8143] {
            assert!(run_bytecode(&range, inside), "{inside}");
        }
        for outside in [8079, 8144, 1, 65535] {
            assert!(!run_bytecode(&range, outside), "{outside}");
        }
    }

    #[test]
    fn bytecode_jumps_stay_within_what_the_kernel_validator_allows() {
        // inet_diag_bc_audit: yes/no >= 8 for port ops, <= remaining + 4, 4-aligned.
        let bc = port_filter_bytecode((1, 1));
        for (offset, remaining) in [(0usize, 16usize), (8, 8)] {
            let yes = bc[offset + 1] as usize;
            let no = u16::from_ne_bytes([bc[offset + 2], bc[offset + 3]]) as usize;
            for jump in [yes, no] {
                assert!(
                    jump >= 8 && jump <= remaining + 4 && jump % 4 == 0,
                    "jump {jump} at {offset}"
                );
            }
        }
    }

    #[test]
    fn request_carries_the_bytecode_attribute_and_total_length() {
        let plain = encode_request(
            Transport::Tcp,
            false,
            StateSet::ALL,
            None,
            ExtensionFlags::empty(),
            1,
        );
        let filtered = encode_request(
            Transport::Tcp,
            false,
            StateSet::ALL,
            Some((443, 443)),
            ExtensionFlags::empty(),
            1,
        );
        assert_eq!(plain.len(), 16 + 56);
        assert_eq!(filtered.len(), plain.len() + 4 + 16);
        let len = u32::from_ne_bytes([filtered[0], filtered[1], filtered[2], filtered[3]]) as usize;
        assert_eq!(len, filtered.len());
        assert_eq!(
            u16::from_ne_bytes([filtered[74], filtered[75]]),
            INET_DIAG_REQ_BYTECODE
        );
        assert!(run_bytecode(&filtered[76..], 443));
    }

    #[test]
    fn state_mask_is_passed_to_the_kernel() {
        let req = encode_request(
            Transport::Tcp,
            true,
            StateSet::only(TcpState::Listen),
            None,
            ExtensionFlags::INFO,
            7,
        );
        assert_eq!(req[18], ExtensionFlags::INFO.bits());
        // inet_diag_req_v2: family, protocol, ext, pad, states (u32) right after the header.
        assert_eq!(req[16], AF_INET6);
        assert_eq!(req[17], IPPROTO_TCP);
        assert_eq!(
            u32::from_ne_bytes([req[20], req[21], req[22], req[23]]),
            1 << 10
        );
    }
}
