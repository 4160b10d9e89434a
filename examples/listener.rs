//! A socket-holding process for the owner and namespace tests: opens the sockets it is told to,
//! says so on stdout, and holds them until its stdin closes.
//!
//! ```text
//! listener [--device IFACE] (--tcp ADDR | --udp ADDR)... [--share] [--workers N]
//!          [--on-term exit|forward|ignore] [--hold-secs T]
//! ```
//!
//! `ADDR` is `ip:port`, `[ipv6]:port` or `[fe80::1%iface]:port` (a link-local address scoped
//! to an interface); port 0 lets the kernel choose. `--device IFACE` binds the sockets that
//! follow it to that interface (`SO_BINDTODEVICE`, needs `CAP_NET_RAW`). `--share` starts a
//! child (`sleep`) that inherits the first socket as its stdin, so two processes hold it.
//! `--workers N` starts N such children, as a prefork server's workers. `--on-term` says what
//! SIGTERM does: `exit` (the default disposition: the process dies, children stay), `forward`
//! (a prefork master: stop the workers, then exit), `ignore` (caught and ignored: only SIGKILL
//! stops it).
//!
//! Prints one line when everything is open:
//! `READY pid=<pid> child=<pid or 0> ports=<port,port,…> workers=<pid,pid,…>` (the ports in
//! the order given), then
//! holds until stdin closes or `--hold-secs` (default 300) pass, so it never outlives a test
//! that forgot it. Exit status 1 with the reason on stderr on any failure.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("listener: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut device: Option<String> = None;
    let mut share = false;
    let mut workers = 0usize;
    let mut on_term = String::from("exit");
    let mut hold = Duration::from_secs(300);
    let mut sockets: Vec<Socket> = Vec::new();
    let mut ports = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--device" => device = Some(value()?),
            "--share" => share = true,
            "--workers" => {
                let v = value()?;
                workers = v.parse().map_err(|_| format!("bad --workers {v}"))?;
            }
            "--on-term" => {
                on_term = value()?;
                if !matches!(on_term.as_str(), "exit" | "forward" | "ignore") {
                    return Err(format!("bad --on-term {on_term}"));
                }
            }
            "--hold-secs" => {
                let v = value()?;
                hold = Duration::from_secs(v.parse().map_err(|_| format!("bad --hold-secs {v}"))?);
            }
            "--tcp" | "--udp" => {
                let addr = parse_addr(&value()?)?;
                let tcp = arg == "--tcp";
                let socket = open(addr, tcp, device.as_deref())?;
                let port = socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .map_or(0, |a| a.port());
                ports.push(port.to_string());
                sockets.push(socket);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let first = sockets.first();
    let child = if share {
        Some(sharer(first.ok_or("--share needs a socket")?, hold)?)
    } else {
        None
    };
    let mut worker_children = Vec::new();
    for _ in 0..workers {
        worker_children.push(sharer(first.ok_or("--workers needs a socket")?, hold)?);
    }
    let (tx, rx) = mpsc::channel();
    if on_term != "exit" {
        // The handler is installed before READY is printed.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let mut term = runtime
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            })
            .map_err(|e| format!("SIGTERM handler: {e}"))?;
        let forward = on_term == "forward";
        let tx = tx.clone();
        std::thread::spawn(move || {
            runtime.block_on(async {
                while term.recv().await.is_some() {
                    if forward {
                        let _ = tx.send(());
                    }
                }
            })
        });
    }
    let worker_pids: Vec<String> = worker_children.iter().map(|c| c.id().to_string()).collect();
    println!(
        "READY pid={} child={} ports={} workers={}",
        std::process::id(),
        child.as_ref().map_or(0, |c| c.id()),
        ports.join(","),
        worker_pids.join(",")
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // Hold until stdin closes, the hold time passes, or (`--on-term forward`) SIGTERM.
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(hold);
    for mut c in child.into_iter().chain(worker_children) {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(sockets);
    Ok(())
}

/// A `sleep` that holds `socket` as its stdin for `hold`.
fn sharer(socket: &Socket, hold: Duration) -> Result<std::process::Child, String> {
    let fd: OwnedFd = socket
        .try_clone()
        .map_err(|e| format!("dup socket: {e}"))?
        .into();
    Command::new("sleep")
        .arg(hold.as_secs().to_string())
        .stdin(Stdio::from(fd))
        // Never the test runner's output pipes: a leftover must not hold them open.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start sleep: {e}"))
}

/// `ip:port`, `[v6]:port`, `[fe80::1%iface]:port`.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((inside, port)) = rest.split_once("]:")
        && let Some((ip, iface)) = inside.split_once('%')
    {
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| format!("bad address {text}"))?;
        let port: u16 = port.parse().map_err(|_| format!("bad port in {text}"))?;
        let probe = rustix::net::socket(
            rustix::net::AddressFamily::INET6,
            rustix::net::SocketType::DGRAM,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        let index = rustix::net::netdevice::name_to_index(&probe, iface)
            .map_err(|e| format!("interface {iface}: {e}"))?;
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index)));
    }
    text.parse().map_err(|_| format!("bad address {text}"))
}

fn open(addr: SocketAddr, tcp: bool, device: Option<&str>) -> Result<Socket, String> {
    let domain = match addr.ip() {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    let kind = if tcp { Type::STREAM } else { Type::DGRAM };
    let socket = Socket::new(domain, kind, None).map_err(|e| format!("socket: {e}"))?;
    if let Some(device) = device {
        socket
            .bind_device(Some(device.as_bytes()))
            .map_err(|e| format!("SO_BINDTODEVICE {device}: {e}"))?;
    }
    socket
        .bind(&SockAddr::from(addr))
        .map_err(|e| format!("bind {addr}: {e}"))?;
    if tcp {
        socket
            .listen(16)
            .map_err(|e| format!("listen {addr}: {e}"))?;
    }
    Ok(socket)
}
