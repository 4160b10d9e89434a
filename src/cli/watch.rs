//! `netstat-mcp watch`: events as they happen, one table line or one JSON object per line,
//! until Ctrl-C (or SIGTERM) or `--duration`; then a one-line summary on stderr.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::endpoint;
use crate::error::Error;
use crate::query::WatchArgs;

use crate::watch::window::{WatchService, channel};
use crate::watch::{Event, EventKind, Tally, rfc3339_ms};

/// Options of `watch`: the tool's inputs, plus the output form.
#[derive(Debug, Args)]
pub struct WatchOpts {
    #[command(flatten)]
    pub(crate) args: WatchArgs,
    /// One JSON object per event and line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Diagnostics: do not subscribe to the kernel's destroy notifications, only compare
    /// listings (what a pure poller sees). Same as NETSTAT_MCP_WATCH_NO_DESTROY=1.
    #[arg(long, hide = true)]
    pub(crate) no_destroy_events: bool,
}

const HEADER: [&str; 8] = [
    "Time",
    "Event",
    "Proto",
    "Local Address",
    "Foreign Address",
    "State",
    "PID/Program",
    "Duration",
];
const WIDTHS: [usize; 7] = [24, 5, 5, 21, 21, 11, 20];

/// One event as a table line (fixed column widths; a wider cell pushes the rest right).
pub(crate) fn table_line(e: &Event) -> String {
    let owner = match (e.pid, &e.program) {
        (Some(pid), Some(p)) => format!("{pid}/{p}"),
        (Some(pid), None) => pid.to_string(),
        _ => "-".into(),
    };
    let cells = [
        rfc3339_ms(e.time_ms),
        match e.kind {
            EventKind::Open => "open".into(),
            EventKind::Close => "close".into(),
        },
        e.protocol.as_str().into(),
        endpoint(e.local_ip, Some(e.local_port)),
        endpoint(e.foreign_ip, e.foreign_port),
        e.state.map_or("-", |s| s.netstat_name()).into(),
        owner,
    ];
    let mut line = String::new();
    for (cell, w) in cells.iter().zip(WIDTHS) {
        line.push_str(&format!("{cell:<w$} "));
    }
    if let Some(ms) = e.duration_ms {
        line.push_str(&format!("{ms} ms"));
    }
    line.trim_end().to_string()
}

fn header_line() -> String {
    let mut line = String::new();
    for (cell, w) in HEADER.iter().zip(WIDTHS.iter().copied().chain([0])) {
        line.push_str(&format!("{cell:<w$} "));
    }
    line.trim_end().to_string()
}

/// Runs `watch`. Exit 0 after Ctrl-C or the duration, 2 when it cannot start.
pub async fn run(watch: &WatchService, opts: &WatchOpts) -> ExitCode {
    let query = match opts.args.validate_cli() {
        Ok(q) => q,
        Err(e) => return fail(&Error::Input(e)),
    };
    let (sink, mut rx, dropped) = channel();
    let watch = if opts.no_destroy_events {
        watch.clone().without_destroy()
    } else {
        watch.clone()
    };
    let (watcher, target) = match watch.start(&query, Box::new(sink)).await {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };
    let started = Instant::now();
    let where_ = if target.local {
        "local host".to_string()
    } else {
        target.label.clone()
    };
    let stop = stop_signal();
    super::print_error(&format!(
        "netstat-mcp: watching {where_}. {}. Ctrl-C to stop",
        watcher.destroy().describe(watcher.interval())
    ));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut ok = if opts.json {
        Ok(())
    } else {
        writeln!(out, "{}", header_line()).and_then(|()| out.flush())
    };
    let mut tally = Tally::default();
    // A duration past what the clock can count (`--duration 9223372036854775807`) is as good
    // as none: until stopped.
    let deadline = query
        .duration
        .and_then(|d| tokio::time::Instant::now().checked_add(d));
    tokio::pin!(stop);
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    while ok.is_ok() {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => break,
            e = rx.recv() => {
                let Some(e) = e else { break };
                ok = write_event(&mut out, &e, opts.json, &mut tally);
                while ok.is_ok() {
                    let Ok(e) = rx.try_recv() else { break };
                    ok = write_event(&mut out, &e, opts.json, &mut tally);
                }
                if ok.is_ok() {
                    ok = out.flush();
                }
            }
        }
    }
    let lost = watcher.lost_notifications() + dropped.load(std::sync::atomic::Ordering::Relaxed);
    let destroy = watcher.destroy();
    drop(watcher);
    while ok.is_ok() {
        let Ok(e) = rx.try_recv() else { break };
        ok = write_event(&mut out, &e, opts.json, &mut tally);
    }
    let _ = out.flush();
    let mut summary = format!(
        "netstat-mcp: watched {where_} for {:.1} s: {} opened, {} closed; destroy notifications {}",
        started.elapsed().as_secs_f64(),
        tally.opened,
        tally.closed,
        if destroy.is_on() { "on" } else { "off" }
    );
    if lost > 0 {
        summary.push_str(&format!(
            "; {lost} event(s) lost to queue overruns (counts are lower bounds)"
        ));
    }
    // A reader that went away (`| head`) is a quiet end; any other write failure (a full
    // disk, /dev/full) is an error, as for every other command.
    let code = match &ok {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            summary.push_str(&format!("; stopped: cannot write to stdout ({e})"));
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    };
    super::print_error(&summary);
    code
}

fn write_event(
    out: &mut impl std::io::Write,
    e: &Event,
    json: bool,
    tally: &mut Tally,
) -> std::io::Result<()> {
    tally.add(e);
    if json {
        serde_json::to_writer(&mut *out, &e.json()).map_err(std::io::Error::from)?;
        writeln!(out)
    } else {
        writeln!(out, "{}", table_line(e))
    }
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called (not when the future is
/// first polled), so a signal that comes right after the "watching" line is caught too.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = received(int) => {}
            _ = received(term) => {}
        }
    }
}

/// The next delivery of a signal; never, when its handler could not be installed.
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn fail(e: &Error) -> ExitCode {
    super::print_error(&format!("netstat-mcp: {e}"));
    ExitCode::from(2)
}
