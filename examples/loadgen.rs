//! Load generator for the benchmarks: holds N loopback TCP connections and M UDP sockets.
//!
//! ```text
//! loadgen --connections N [--udp M] [--port P] [--idle-port Q] [--hold-secs T]
//!         [--setup-secs S] [--per-worker K] [--no-stdin]
//! ```
//!
//! Opens a listener on `127.0.0.1:P` (the *loaded port*) and an idle listener on
//! `127.0.0.1:Q` (port 0, the default = a free port below the ephemeral range, so no client
//! socket can share the number), then N client connections to the loaded port.
//! Both ends are held, so the host has about 2N ESTABLISHED sockets plus the listeners. The
//! process open-files limit is 20000 here, so the work is spread over child processes (this same
//! executable re-run with a hidden `--worker` flag), each holding at most K (default 15000)
//! sockets:
//! - *acceptors* inherit the listening socket (one socket, several processes) and each accepts
//!   its share of the N connections;
//! - *connectors* each bind to their own source address `127.0.0.2`, `127.0.0.3`, … before
//!   connecting, so ephemeral ports never run out.
//!
//! When every connection is established on both sides, one line goes to stdout:
//! `READY pid=<pid> port=<P> idle_port=<Q> connections=<N> udp=<M> workers=<pid,pid,…>`.
//! The generator then holds until its stdin closes (unless `--no-stdin`), it gets SIGTERM, or
//! `--hold-secs` elapse, whichever comes first. Children watch a pipe from the parent and exit
//! as soon as it closes, so they never outlive it. Every socket has `SO_LINGER` 0, so closing
//! resets it and leaves no TIME_WAIT behind for the next run.
//!
//! Exit status: 0 after a normal hold, 1 on any setup failure (with the reason on stderr).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Environment variable that tells an acceptor which inherited fd is the listening socket.
const LISTEN_FD_ENV: &str = "LOADGEN_LISTEN_FD";
/// Listen backlog asked for; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 65535;
/// How long one client connect may take before the setup is declared failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the parent waits for children to exit after closing their pipes.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the hold loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Source addresses are 127.0.0.2 ..= 127.0.0.254.
const MAX_WORKERS: usize = 253;

#[derive(Debug, thiserror::Error)]
enum LoadgenError {
    #[error("bad argument {arg}: {reason} (see the usage at the top of examples/loadgen.rs)")]
    Usage { arg: String, reason: String },
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{connections} connections need {workers} workers of at most {per_worker} sockets, more \
         than the {MAX_WORKERS} loopback source addresses; raise --per-worker"
    )]
    TooManyWorkers {
        connections: usize,
        workers: usize,
        per_worker: usize,
    },
    #[error(
        "setup not finished after {secs} s ({done} of {expected} workers ready); check \
         `ss -s`, net.core.somaxconn and the open-files limit, or raise --setup-secs"
    )]
    SetupTimeout {
        secs: u64,
        done: usize,
        expected: usize,
    },
    #[error("stopped by a signal during setup ({done} of {expected} workers ready)")]
    Stopped { done: usize, expected: usize },
    #[error("worker pid {pid} failed: {detail}")]
    Worker { pid: u32, detail: String },
}

fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadgenError {
    let action = action.into();
    move |source| LoadgenError::Io { action, source }
}

/// Options of the parent process.
#[derive(Debug)]
struct Options {
    connections: usize,
    udp: usize,
    port: u16,
    idle_port: u16,
    hold: Duration,
    setup: Duration,
    per_worker: usize,
    watch_stdin: bool,
}

/// What a child process does.
#[derive(Debug)]
enum WorkerRole {
    /// Accept `count` connections on the inherited listening socket.
    Accept { count: usize },
    /// Open `count` connections from `source` to `target`.
    Connect {
        count: usize,
        source: Ipv4Addr,
        target: SocketAddrV4,
    },
}

#[derive(Debug)]
struct WorkerOptions {
    role: WorkerRole,
    /// Upper bound on the worker's life, whatever happens to the parent.
    lifetime: Duration,
}

enum Invocation {
    Parent(Options),
    Worker(WorkerOptions),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(Invocation::Parent(opts)) => run_parent(&opts),
        Ok(Invocation::Worker(opts)) => run_worker(&opts),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_value<T: std::str::FromStr>(arg: &str, value: Option<&String>) -> Result<T, LoadgenError>
where
    T::Err: std::fmt::Display,
{
    let value = value.ok_or_else(|| LoadgenError::Usage {
        arg: arg.to_string(),
        reason: "a value is required".to_string(),
    })?;
    value.parse::<T>().map_err(|e| LoadgenError::Usage {
        arg: arg.to_string(),
        reason: format!("{value:?}: {e}"),
    })
}

fn parse_args(args: &[String]) -> Result<Invocation, LoadgenError> {
    let mut opts = Options {
        connections: 1000,
        udp: 0,
        port: 0,
        idle_port: 0,
        hold: Duration::from_secs(600),
        setup: Duration::from_secs(120),
        per_worker: 15000,
        watch_stdin: true,
    };
    let mut worker: Option<String> = None;
    let mut count = 0usize;
    let mut source = Ipv4Addr::LOCALHOST;
    let mut target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let mut lifetime = Duration::from_secs(720);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--connections" => opts.connections = parse_value(arg, iter.next())?,
            "--udp" => opts.udp = parse_value(arg, iter.next())?,
            "--port" => opts.port = parse_value(arg, iter.next())?,
            "--idle-port" => opts.idle_port = parse_value(arg, iter.next())?,
            "--hold-secs" => opts.hold = Duration::from_secs(parse_value(arg, iter.next())?),
            "--setup-secs" => opts.setup = Duration::from_secs(parse_value(arg, iter.next())?),
            "--per-worker" => opts.per_worker = parse_value(arg, iter.next())?,
            "--no-stdin" => opts.watch_stdin = false,
            "--worker" => worker = Some(parse_value(arg, iter.next())?),
            "--count" => count = parse_value(arg, iter.next())?,
            "--source" => source = parse_value(arg, iter.next())?,
            "--target" => target = parse_value(arg, iter.next())?,
            "--lifetime-secs" => lifetime = Duration::from_secs(parse_value(arg, iter.next())?),
            other => {
                return Err(LoadgenError::Usage {
                    arg: other.to_string(),
                    reason: "unknown argument".to_string(),
                });
            }
        }
    }
    if opts.per_worker == 0 {
        return Err(LoadgenError::Usage {
            arg: "--per-worker".to_string(),
            reason: "must be at least 1".to_string(),
        });
    }
    let role = match worker.as_deref() {
        None => return Ok(Invocation::Parent(opts)),
        Some("accept") => WorkerRole::Accept { count },
        Some("connect") => WorkerRole::Connect {
            count,
            source,
            target,
        },
        Some(other) => {
            return Err(LoadgenError::Usage {
                arg: "--worker".to_string(),
                reason: format!("{other:?} is neither accept nor connect"),
            });
        }
    };
    Ok(Invocation::Worker(WorkerOptions { role, lifetime }))
}

/// Raise the soft open-files limit to the hard one.
fn raise_nofile_limit() -> Result<(), LoadgenError> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit)
        .map_err(|e| io_err("raise the open-files limit (RLIMIT_NOFILE)")(e.into()))
}

/// Split `total` into `parts` shares that differ by at most one.
fn shares(total: usize, parts: usize) -> Vec<usize> {
    if parts == 0 {
        return Vec::new();
    }
    let base = total / parts;
    let extra = total % parts;
    (0..parts).map(|i| base + usize::from(i < extra)).collect()
}

fn bind_listener(port: u16) -> Result<Socket, LoadgenError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let what = format!("listen on {addr}");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(io_err(what.clone()))?;
    socket
        .set_reuse_address(true)
        .map_err(io_err(what.clone()))?;
    socket.bind(&addr.into()).map_err(io_err(what.clone()))?;
    socket.listen(BACKLOG).map_err(io_err(what))?;
    Ok(socket)
}

/// Bind a listener on `port`, or, for port 0, on a free port *below* the ephemeral range.
///
/// The client sockets bind `127.0.0.x:0`, and the kernel may give one of them the same port
/// number as a listener on 127.0.0.1 (another address, so no conflict for the kernel) — which
/// would add a stray socket to "who holds port P". Ports below the ephemeral range are never
/// handed out that way. `salt` spreads the two listeners (and concurrent runs) apart.
fn bind_listener_below_ephemeral(port: u16, salt: u32) -> Result<Socket, LoadgenError> {
    if port != 0 {
        return bind_listener(port);
    }
    let low = 10_000u32;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&start| start > low + 1000)
        .unwrap_or(32768);
    let span = high - low;
    let start = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(salt * 4099)
        % span;
    let mut last = None;
    for i in 0..200u32 {
        let candidate = u16::try_from(low + (start + i * 101) % span).unwrap_or(0);
        match bind_listener(candidate) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(LoadgenError::Usage {
        arg: "--port".to_string(),
        reason: "no free port found below the ephemeral range; pass one".to_string(),
    }))
}

fn local_port(socket: &Socket) -> Result<u16, LoadgenError> {
    let addr = socket
        .local_addr()
        .map_err(io_err("read a listener's address"))?;
    Ok(addr.as_socket().map(|a| a.port()).unwrap_or(0))
}

fn set_inheritable(socket: &Socket, inheritable: bool) -> Result<(), LoadgenError> {
    use rustix::io::{FdFlags, fcntl_setfd};
    let flags = if inheritable {
        FdFlags::empty()
    } else {
        FdFlags::CLOEXEC
    };
    fcntl_setfd(socket, flags)
        .map_err(|e| io_err("change the listener's close-on-exec flag")(e.into()))
}

/// A running child and the pipe whose closing tells it to exit.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

fn spawn_worker(
    exe: &std::path::Path,
    args: &[String],
    listen_fd: Option<RawFd>,
    tx: &mpsc::Sender<(u32, Result<String, String>)>,
) -> Result<Worker, LoadgenError> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(fd) = listen_fd {
        cmd.env(LISTEN_FD_ENV, fd.to_string());
    }
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("start worker {}", exe.display())))?;
    let pid = child.id();
    let stdin = child.stdin.take();
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut line = String::new();
            let report = match BufReader::new(stdout).read_line(&mut line) {
                Ok(0) => Err("exited before reporting (see its stderr)".to_string()),
                Ok(_) if line.starts_with("OK") => Ok(line.trim().to_string()),
                Ok(_) => Err(line.trim().to_string()),
                Err(e) => Err(format!("unreadable report: {e}")),
            };
            // The receiver may be gone when the parent has given up; nothing left to do then.
            let _ = tx.send((pid, report));
        });
    }
    Ok(Worker { child, stdin })
}

fn run_parent(opts: &Options) -> Result<(), LoadgenError> {
    raise_nofile_limit()?;
    install_stop_handler()?;
    let workers = opts.connections.div_ceil(opts.per_worker);
    if workers > MAX_WORKERS {
        return Err(LoadgenError::TooManyWorkers {
            connections: opts.connections,
            workers,
            per_worker: opts.per_worker,
        });
    }
    let listener = bind_listener_below_ephemeral(opts.port, 0)?;
    let port = local_port(&listener)?;
    let idle = bind_listener_below_ephemeral(opts.idle_port, 1)?;
    let idle_port = local_port(&idle)?;
    let mut udp = Vec::with_capacity(opts.udp);
    for _ in 0..opts.udp {
        udp.push(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("bind a UDP socket"))?);
    }

    let exe = std::env::current_exe().map_err(io_err("find the loadgen executable"))?;
    let lifetime = (opts.setup + opts.hold + Duration::from_secs(60)).as_secs();
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<Worker> = Vec::with_capacity(2 * workers);
    let spawned = (|| {
        set_inheritable(&listener, true)?;
        for count in shares(opts.connections, workers) {
            let args = worker_args("accept", count, Ipv4Addr::LOCALHOST, port, lifetime);
            children.push(spawn_worker(&exe, &args, Some(listener.as_raw_fd()), &tx)?);
        }
        set_inheritable(&listener, false)?;
        for (i, count) in shares(opts.connections, workers).into_iter().enumerate() {
            // i < MAX_WORKERS (checked above), so the last octet stays within 2..=254.
            let source = Ipv4Addr::new(127, 0, 0, u8::try_from(i + 2).unwrap_or(254));
            let args = worker_args("connect", count, source, port, lifetime);
            children.push(spawn_worker(&exe, &args, None, &tx)?);
        }
        Ok(())
    })();
    drop(tx);
    let ready = spawned.and_then(|()| wait_ready(&rx, children.len(), opts.setup));
    if let Err(e) = ready {
        reap(children);
        return Err(e);
    }

    let pids: Vec<String> = children.iter().map(|w| w.child.id().to_string()).collect();
    let mut stdout = std::io::stdout().lock();
    let printed = writeln!(
        stdout,
        "READY pid={} port={port} idle_port={idle_port} connections={} udp={} workers={}",
        std::process::id(),
        opts.connections,
        udp.len(),
        pids.join(",")
    )
    .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = printed {
        reap(children);
        return Err(io_err("print the READY line")(e));
    }

    hold(opts);
    reap(children);
    drop((listener, idle, udp));
    Ok(())
}

fn worker_args(
    role: &str,
    count: usize,
    source: Ipv4Addr,
    port: u16,
    lifetime: u64,
) -> Vec<String> {
    vec![
        "--worker".to_string(),
        role.to_string(),
        "--count".to_string(),
        count.to_string(),
        "--source".to_string(),
        source.to_string(),
        "--target".to_string(),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).to_string(),
        "--lifetime-secs".to_string(),
        lifetime.to_string(),
    ]
}

/// Wait until every worker reported OK, one failed, or the setup time is over.
fn wait_ready(
    rx: &mpsc::Receiver<(u32, Result<String, String>)>,
    expected: usize,
    setup: Duration,
) -> Result<(), LoadgenError> {
    let deadline = Instant::now() + setup;
    let mut done = 0;
    while done < expected {
        if STOP.load(Ordering::SeqCst) {
            return Err(LoadgenError::Stopped { done, expected });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(POLL)) {
            Ok((_, Ok(_))) => done += 1,
            Ok((pid, Err(detail))) => return Err(LoadgenError::Worker { pid, detail }),
            Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
            Err(_) => {
                return Err(LoadgenError::SetupTimeout {
                    secs: setup.as_secs(),
                    done,
                    expected,
                });
            }
        }
    }
    Ok(())
}

/// Set by the SIGTERM/SIGINT handler; polled while holding.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Make SIGTERM and SIGINT end the hold, so the parent still closes and reaps its workers.
fn install_stop_handler() -> Result<(), LoadgenError> {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if unsafe { libc::signal(signal, handler) } == libc::SIG_ERR {
            return Err(io_err("install the SIGTERM handler")(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Hold until stdin closes (if watched), SIGTERM/SIGINT arrives, or the hold time is over.
/// If the parent is killed outright, its pipes close and the workers exit on their own.
fn hold(opts: &Options) {
    let (tx, rx) = mpsc::channel::<()>();
    if opts.watch_stdin {
        thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
    }
    let deadline = Instant::now() + opts.hold;
    while !STOP.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left.min(POLL)) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Not watching stdin: the sender is gone from the start, so just wait.
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(left.min(POLL)),
        }
    }
}

/// Close every worker's pipe, then wait for them (bounded), killing any straggler.
fn reap(mut children: Vec<Worker>) {
    for w in &mut children {
        drop(w.stdin.take());
    }
    let deadline = Instant::now() + REAP_TIMEOUT;
    for w in &mut children {
        loop {
            match w.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    break;
                }
            }
        }
    }
}

fn run_worker(opts: &WorkerOptions) -> Result<(), LoadgenError> {
    // Exit as soon as the parent closes our stdin, or dies (which closes it too).
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    raise_nofile_limit()?;
    let held = match &opts.role {
        WorkerRole::Accept { count } => accept_share(*count),
        WorkerRole::Connect {
            count,
            source,
            target,
        } => connect_share(*count, *source, *target),
    };
    let mut stdout = std::io::stdout().lock();
    let report = match &held {
        Ok(sockets) => writeln!(stdout, "OK held={}", sockets.len()),
        Err(e) => writeln!(stdout, "ERR {e}"),
    };
    let _ = report.and_then(|()| stdout.flush());
    drop(stdout);
    let _sockets = held?;
    thread::sleep(opts.lifetime);
    Ok(())
}

fn accept_share(count: usize) -> Result<Vec<Socket>, LoadgenError> {
    let fd: RawFd = std::env::var(LISTEN_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| LoadgenError::Usage {
            arg: LISTEN_FD_ENV.to_string(),
            reason: "an acceptor needs the inherited listener's fd number".to_string(),
        })?;
    // Check the fd is open and a socket before taking ownership of it.
    // SAFETY: the fd is only borrowed for these two calls; fstat fails cleanly if it is closed.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let stat = rustix::fs::fstat(borrowed)
        .map_err(|e| io_err(format!("use inherited listener fd {fd}"))(e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return Err(LoadgenError::Usage {
            arg: LISTEN_FD_ENV.to_string(),
            reason: format!("fd {fd} is not a socket"),
        });
    }
    // SAFETY: the parent passed this fd to us (it is not close-on-exec) and nothing else in
    // this process refers to it, so we own it from here on.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let (stream, _) = listener.accept().map_err(io_err("accept a connection"))?;
        let socket = Socket::from(stream);
        socket
            .set_linger(Some(Duration::ZERO))
            .map_err(io_err("set SO_LINGER on an accepted socket"))?;
        held.push(socket);
    }
    Ok(held)
}

/// `IP_BIND_ADDRESS_NO_PORT`: bind the source address only and let `connect` choose the port
/// by the whole 4-tuple. Without it each `bind(addr:0)` searches the bind table for a port no
/// socket on any address holds, which slows to tens of seconds when another load generator
/// already holds tens of thousands of sockets.
fn bind_address_no_port(socket: &Socket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn connect_share(
    count: usize,
    source: Ipv4Addr,
    target: SocketAddrV4,
) -> Result<Vec<Socket>, LoadgenError> {
    let from = SockAddr::from(SocketAddrV4::new(source, 0));
    let to = SockAddr::from(target);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(io_err("create a client socket"))?;
        socket
            .set_linger(Some(Duration::ZERO))
            .map_err(io_err("set SO_LINGER on a client socket"))?;
        bind_address_no_port(&socket).map_err(io_err("set IP_BIND_ADDRESS_NO_PORT"))?;
        socket
            .bind(&from)
            .map_err(io_err(format!("bind a client socket to {source}")))?;
        socket
            .connect_timeout(&to, CONNECT_TIMEOUT)
            .map_err(io_err(format!("connect {source} -> {target}")))?;
        held.push(socket);
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_total_evenly() {
        assert_eq!(shares(50_000, 4), vec![12_500; 4]);
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(0, 0), Vec::<usize>::new());
        assert_eq!(shares(5, 1), vec![5]);
    }

    #[test]
    fn unknown_argument_is_refused() {
        let args = vec!["--bogus".to_string()];
        assert!(matches!(
            parse_args(&args),
            Err(LoadgenError::Usage { arg, .. }) if arg == "--bogus"
        ));
    }
}
