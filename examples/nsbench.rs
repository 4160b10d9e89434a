//! Benchmark helper: what a listing of every network namespace costs against its parts.
//!
//! ```text
//! nsbench [--runs R]
//! ```
//!
//! Times, R times each (default 7), in this one process:
//! - `all`: a TCP listing with owners of every namespace (`scope=all`), as the tools run it;
//! - `dumps`: the netlink dump of each namespace alone, timed from a thread already inside it
//!   (entering excluded), plus the host's;
//! - `scan`: one owner scan over all those sockets together.
//!
//! and prints one JSON object with the medians in ms, the namespaces and sockets seen, and
//! `ratio` = all / (dumps + scan): the cost of listing namespace by namespace and labelling,
//! relative to the least any such listing must do. Needs root (entering namespaces).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netstat_mcp::model::{Socket, StateSet};
use netstat_mcp::owners;
use netstat_mcp::source::netlink::Diag;
use netstat_mcp::source::netns::{self, Listed};
use netstat_mcp::source::{Backend, LocalSource, Scope, Want};

fn main() {
    let mut runs = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            other => {
                eprintln!("nsbench: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let want = Want {
        udp: false,
        scope: Scope::All,
        ..Want::all()
    };
    let source = LocalSource::new(Backend::Netlink);
    let (mut all, mut dumps, mut scans) = (Vec::new(), Vec::new(), Vec::new());
    let (mut namespaces, mut sockets_seen) = (0, 0);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let snapshot = source.collect_blocking(want).expect("scope=all listing");
        all.push(t.elapsed());
        sockets_seen = snapshot.sockets.len();

        let found = netns::enumerate(Path::new("/proc"), Path::new("/run/netns"))
            .expect("enumerate namespaces");
        namespaces = found.others.len() + 1;
        let mut sockets: Vec<Socket> = Vec::new();
        let t = Instant::now();
        sockets.extend(dump_here().expect("host dump").sockets);
        let mut dump_time = t.elapsed();
        let inside = Mutex::new(Vec::<Duration>::new());
        let results = netns::dump(&found.others, || {
            let t = Instant::now();
            let listed = dump_here();
            if let Ok(mut v) = inside.lock() {
                v.push(t.elapsed());
            }
            listed
        });
        dump_time += inside
            .into_inner()
            .unwrap_or_default()
            .iter()
            .sum::<Duration>();
        for (more, _) in results.into_iter().flatten() {
            sockets.extend(more);
        }
        dumps.push(dump_time);
        let t = Instant::now();
        owners::attach(Path::new("/proc"), &mut sockets);
        scans.push(t.elapsed());
    }
    let (all, dumps, scans) = (median(all), median(dumps), median(scans));
    println!(
        "{{\"runs\":{runs},\"namespaces\":{namespaces},\"sockets\":{sockets_seen},\"all_ms\":{:.2},\"dumps_ms\":{:.2},\"scan_ms\":{:.2},\"ratio\":{:.3}}}",
        ms(all),
        ms(dumps),
        ms(scans),
        ms(all) / (ms(dumps) + ms(scans))
    );
}

/// A TCP dump of the calling thread's namespace.
fn dump_here() -> Result<Listed, String> {
    let mut diag = Diag::open().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    diag.dump_tcp_any_family(StateSet::ALL, None, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(Listed {
        sockets: out,
        devices: diag.take_devices(),
        notes: Vec::new(),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
