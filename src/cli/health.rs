//! `netstat-mcp health`: the `connection_health` tool for a person — the summary, then the
//! worst sockets with their RTT, retransmits, queues and verdict.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;

use super::{
    delivered, endpoint, fail, owners_cell, print_json, print_text, socket_columns, success_or_2,
    table,
};
use crate::error::Error;
use crate::query::health::{DEFAULT_HEALTH_ROWS, HealthRow};
use crate::query::{Envelope, HealthArgs, HealthData, Service};

#[derive(Debug, Args)]
pub struct HealthOpts {
    #[command(flatten)]
    pub(crate) args: HealthArgs,
    /// Skip the owner (pid/program) lookup of the rows shown.
    #[arg(long)]
    pub(crate) no_owners: bool,
    #[command(flatten)]
    pub(crate) listed: super::Listed,
}

/// Runs `health`. Exit 0 on success, 2 on error.
pub async fn health(service: &Service, opts: &HealthOpts) -> ExitCode {
    let args = HealthArgs {
        scope: opts.listed.all_netns.then(|| "all".to_string()),
        ..opts.args.clone()
    };
    let result = match args.validate(Some(DEFAULT_HEALTH_ROWS)) {
        Ok(mut query) => {
            query.filter.owners = !opts.no_owners;
            // A person asked for these rows: no byte budget.
            query.filter.default_limit = false;
            service.health(&query).await
        }
        Err(e) => Err(Error::Input(e)),
    };
    super::show(result, opts.listed.json, health_text, |e| {
        success_or_2(e.success)
    })
}

/// A millisecond value as ss prints it (at most 3 decimals).
fn ms(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".into(),
        |v| format!("{}", (v * 1000.0).round() / 1000.0),
    )
}

fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn row_cells(h: &HealthRow) -> Vec<String> {
    let c = &h.row;
    let tcp = h.tcp.as_ref();
    let retrans = match tcp {
        Some(t) => format!(
            "{}/{}",
            t.retrans.unwrap_or(0),
            t.total_retrans.unwrap_or(0)
        ),
        None => "-".into(),
    };
    vec![
        c.protocol.to_string(),
        c.recv_queue.to_string(),
        c.send_queue.to_string(),
        endpoint(c.local_ip, Some(c.local_port)),
        endpoint(c.foreign_ip, c.foreign_port),
        c.state.unwrap_or("-").to_string(),
        h.verdict.as_str().to_string(),
        ms(tcp.and_then(|t| t.rtt_ms)),
        retrans,
        num(tcp.and_then(|t| t.cwnd)),
        num(tcp.and_then(|t| t.snd_wnd)),
        h.mem.as_ref().map_or("-".into(), |m| m.drops.to_string()),
        owners_cell(c.pid, c.program.as_deref(), &c.owners),
    ]
}

/// The summary, the worst rows as a table, then the message.
pub(crate) fn health_text(envelope: &Envelope<HealthData>) -> String {
    let mut out = String::new();
    if let Some(data) = &envelope.data {
        let s = &data.summary;
        let _ = writeln!(
            out,
            "{} sockets on {}: {} retransmitting ({} retransmits), {} zero window, {} with a send backlog",
            data.connection_count,
            data.host,
            s.retransmitting,
            s.total_retrans,
            s.zero_window,
            s.send_backlog
        );
        if let Some(r) = &s.rtt_ms {
            let _ = writeln!(
                out,
                "RTT ms: p50 {} p90 {} p99 {} max {}",
                r.p50, r.p90, r.p99, r.max
            );
        }
        let _ = writeln!(
            out,
            "Limited by: receiver {}, send buffer {}, application {}{}",
            s.limited.receiver,
            s.limited.send_buffer,
            s.limited.application,
            if s.dropping > 0 {
                format!("; UDP drops {} on {} socket(s)", s.drops, s.dropping)
            } else {
                String::new()
            }
        );
        let verdicts: Vec<String> = s
            .by_verdict
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        let _ = writeln!(out, "Verdicts: {}", verdicts.join(", "));
        let _ = writeln!(out);
        let rows: Vec<Vec<String>> = data.connections.iter().map(row_cells).collect();
        let (headers, right) = socket_columns(&[
            ("Verdict", false),
            ("RTT ms", true),
            ("Retrans", true),
            ("Cwnd", true),
            ("Snd-Wnd", true),
            ("Drops", true),
            ("PID/Program", false),
        ]);
        out.push_str(&table(&headers, &right, &rows));
    }
    let _ = writeln!(out, "{}", envelope.message);
    out
}

/// Options of `top`: the `traffic` tool's inputs, plus how to show them.
#[derive(Debug, Args)]
pub struct TopOpts {
    #[command(flatten)]
    pub(crate) args: crate::watch::traffic::TrafficArgs,
    /// Refresh every SECS seconds (1-50) until Ctrl-C, like nethogs: each view is the traffic
    /// of the last SECS seconds.
    #[arg(long, value_name = "SECS", conflicts_with = "duration_secs")]
    pub(crate) interval: Option<i64>,
    /// Print the JSON answer the MCP tool returns (with --interval, one per line).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `top`. Exit 0 on success, 2 on error.
pub async fn top(watch: &crate::watch::window::WatchService, opts: &TopOpts) -> ExitCode {
    use crate::watch::traffic::TrafficData;
    let args = crate::watch::traffic::TrafficArgs {
        duration_secs: opts.interval.or(opts.args.duration_secs),
        ..opts.args.clone()
    };
    let query = match args.validate() {
        Ok(mut q) => {
            // A person asked: no byte budget.
            q.default_limit = false;
            q
        }
        Err(e) => {
            let e = match (opts.interval, e.param.as_str()) {
                (Some(_), "duration_secs") => crate::error::InputError {
                    param: "interval".into(),
                    ..e
                },
                _ => e,
            };
            return fail::<TrafficData>(&Error::Input(e), opts.json);
        }
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let show = |envelope: &Envelope<TrafficData>, refreshing: bool| {
        if opts.json {
            print_json(envelope)
        } else {
            let mut text = String::new();
            if refreshing && terminal {
                // Clear the screen and go home, as top does.
                text.push_str("\x1b[2J\x1b[H");
            }
            text.push_str(&traffic_text(envelope));
            if refreshing {
                text.push('\n');
            }
            print_text(&text)
        }
    };
    let stop = super::watch::stop_signal();
    tokio::pin!(stop);
    if opts.interval.is_none() {
        let result = tokio::select! {
            _ = &mut stop => return ExitCode::SUCCESS,
            r = watch.traffic(&query, &crate::query::no_progress) => r,
        };
        return match result {
            Ok(envelope) => delivered(show(&envelope, false), success_or_2(envelope.success)),
            Err(e) => fail::<TrafficData>(&e, opts.json),
        };
    }
    // Views one after another until Ctrl-C or a closed output.
    let mut written = Ok(());
    let mut view = |envelope: &Envelope<TrafficData>| {
        written = show(envelope, true);
        written.is_ok()
    };
    let result = tokio::select! {
        _ = &mut stop => return ExitCode::SUCCESS,
        r = watch.traffic_views(&query, &mut view) => r,
    };
    match result {
        Ok(envelope) => delivered(written, success_or_2(envelope.success)),
        Err(e) => fail::<TrafficData>(&e, opts.json),
    }
}

/// The groups as a table (busiest first), then the message.
pub(crate) fn traffic_text(envelope: &Envelope<crate::watch::traffic::TrafficData>) -> String {
    use crate::watch::traffic::human_bytes;
    let mut out = String::new();
    if let Some(data) = &envelope.data {
        let rate = |b: f64| format!("{}/s", human_bytes(b as u64));
        let rows: Vec<Vec<String>> = data
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.key.clone(),
                    human_bytes(g.sent),
                    human_bytes(g.received),
                    rate(g.sent_per_sec),
                    rate(g.received_per_sec),
                    g.connections.to_string(),
                    g.pids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        let by = match data.by {
            "program" => "Program",
            "unit" => "Unit",
            "container" => "Container",
            "remote_host" => "Remote host",
            "local_port" => "Local port",
            _ => "Connection",
        };
        out.push_str(&table(
            &[by, "Sent", "Received", "Sent/s", "Recv/s", "Conns", "PIDs"],
            &[false, true, true, true, true, true, false],
            &rows,
        ));
    }
    let _ = writeln!(out, "{}", envelope.message);
    out
}
