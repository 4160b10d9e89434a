//! Remote port check, side by side: the filters-travel path against the `netstat -tunapW`
//! path, on one configured host, over one warm SSH session each.
//!
//! ```text
//! remote_bench --config PATH --host NAME --port P [--runs N]
//! ```
//!
//! Per run, on the same host and port:
//! - **filtered**: what `check_port_occupation` does now: the first remote command that can
//!   filter (`ss` with `sport = :P`), parsed, answered;
//! - **awk**: our awk program over `/proc/net` with the `/proc/<pid>/fd` owner scan (the path
//!   for hosts without `ss`), parsed, answered;
//! - **netstat**: the old path: `netstat -tunapW` (every socket), parsed, filtered here.
//!
//! Prints one JSON object: per path the median/min/max wall time in ms, the output bytes one
//! call received, and the sockets found on the port (which must agree). `bench/remote.sh` sets
//! up the host (a network namespace with its own sshd and the load generator) and runs this.

use std::sync::Arc;
use std::time::Instant;

use netstat_mcp::config::NetstatConfig;
use netstat_mcp::parse::{self, Format};
use netstat_mcp::query::{PortArgs, Service};
use netstat_mcp::source::remote::commands::{self, Filter, Listing};
use netstat_mcp::source::remote::read;
use netstat_mcp::source::{LocalSource, RemoteSources, SshRemotes};

struct Args {
    config: String,
    host: String,
    port: u16,
    runs: usize,
}

fn args() -> Result<Args, String> {
    let mut config = None;
    let mut host = None;
    let mut port = None;
    let mut runs = 10;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--config" => config = Some(value()?),
            "--host" => host = Some(value()?),
            "--port" => port = Some(value()?.parse::<u16>().map_err(|e| e.to_string())?),
            "--runs" => runs = value()?.parse::<usize>().map_err(|e| e.to_string())?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        host: host.ok_or("--host is required")?,
        port: port.ok_or("--port is required")?,
        runs: runs.max(1),
    })
}

#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    bytes: u64,
    found: usize,
}

impl Samples {
    fn json(&mut self) -> serde_json::Value {
        self.ms.sort_by(f64::total_cmp);
        let median = self.ms[self.ms.len() / 2];
        serde_json::json!({
            "median_ms": median,
            "min_ms": self.ms[0],
            "max_ms": self.ms[self.ms.len() - 1],
            "bytes_per_call": self.bytes,
            "sockets_on_port": self.found,
        })
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let a = args()?;
    let config =
        NetstatConfig::load(Some(std::path::Path::new(&a.config))).map_err(|e| e.to_string())?;
    let remotes = SshRemotes::new(config.clone());
    let host = config
        .find_host(&a.host)
        .ok_or(format!("{} is not configured", a.host))?
        .clone();
    let service = Service::new(Arc::new(LocalSource::default()), Arc::new(remotes.clone()));
    let query = PortArgs {
        port: Some(i64::from(a.port)),
        host: Some(a.host.clone()),
        ..Default::default()
    }
    .validate(Some(20))
    .map_err(|e| e.to_string())?;
    let pool = remotes.pool().clone();
    let filter = Filter {
        local_port: Some(a.port),
        tcp: true,
        udp: false,
        ..Filter::none()
    };

    // Warm up: one session, OS detection, the command choice.
    service.port(&query).await.map_err(|e| e.to_string())?;
    let _ = remotes.lookup(&a.host, None).map_err(|e| e.to_string())?;

    let (mut filtered, mut awk, mut netstat) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..a.runs {
        let before = pool.bytes_received();
        let t = Instant::now();
        let env = service.port(&query).await.map_err(|e| e.to_string())?;
        filtered.ms.push(t.elapsed().as_secs_f64() * 1000.0);
        filtered.bytes = pool.bytes_received() - before;
        filtered.found = env.data.map_or(0, |d| d.occupation_count);

        let before = pool.bytes_received();
        let t = Instant::now();
        let out = pool
            .run(
                &host,
                None,
                commands::command(Listing::ProcNetScan, &filter, true),
            )
            .await
            .map_err(|e| e.to_string())?;
        let reading = read::interpret(Listing::ProcNetScan, &filter, &out)?;
        awk.found = reading
            .parsed
            .sockets
            .iter()
            .filter(|s| {
                s.protocol.transport() == netstat_mcp::model::Transport::Tcp
                    && s.local_port == a.port
            })
            .count();
        awk.ms.push(t.elapsed().as_secs_f64() * 1000.0);
        awk.bytes = pool.bytes_received() - before;

        let before = pool.bytes_received();
        let t = Instant::now();
        let out = pool
            .run(
                &host,
                None,
                commands::command(Listing::NetstatWide, &Filter::none(), true),
            )
            .await
            .map_err(|e| e.to_string())?;
        let parsed = parse::parse(Format::NetTools, &out.stdout);
        netstat.found = parsed
            .sockets
            .iter()
            .filter(|s| {
                s.protocol.transport() == netstat_mcp::model::Transport::Tcp
                    && s.local_port == a.port
            })
            .count();
        netstat.ms.push(t.elapsed().as_secs_f64() * 1000.0);
        netstat.bytes = pool.bytes_received() - before;
    }
    let profile = remotes.profile(&a.host, None);
    let report = serde_json::json!({
        "host": a.host,
        "port": a.port,
        "runs": a.runs,
        "filtered_command": profile.and_then(|p| p.filtered).map(|l| l.name()),
        "filtered": filtered.json(),
        "awk": awk.json(),
        "netstat": netstat.json(),
    });
    println!("{report}");
    Ok(())
}
