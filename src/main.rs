//! The `netstat-mcp` binary: logging to stderr, the config, then the CLI or an MCP server.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use netstat_mcp::cli::{self, Cli, Command, ServeArgs};
use netstat_mcp::config::NetstatConfig;
use netstat_mcp::http;
use netstat_mcp::mcp::{self, NetstatServer};
use netstat_mcp::metrics::{Exporter, MetricsOptions};
use netstat_mcp::query::Service;
use netstat_mcp::source::{LocalSource, Source, SshRemotes, Want};
use netstat_mcp::watch::recorder::{EventTap, Recorder};
use netstat_mcp::watch::window::WatchService;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving_http = matches!(&cli.command, Some(Command::Serve(args)) if args.http.is_some());
    // Over HTTP the access log and tool calls are shown unless RUST_LOG says otherwise.
    let filter = match std::env::var_os("RUST_LOG") {
        None if serving_http => tracing_subscriber::EnvFilter::new("warn,netstat_mcp=info"),
        _ => tracing_subscriber::EnvFilter::from_default_env(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match NetstatConfig::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            cli::print_error(&format!("netstat-mcp: {e}"));
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        cli::print_error(&format!("netstat-mcp: warning: {warning}"));
    }
    let serve_allows_kill = matches!(&cli.command, Some(Command::Serve(args)) if args.allow_kill);
    let actions = mcp::Actions {
        allow_kill: cli.allow_kill || serve_allows_kill || config.actions.allow_kill,
        ..config.actions
    };
    if actions.allow_kill
        && cli
            .command
            .as_ref()
            .is_none_or(|c| matches!(c, Command::Serve(_)))
    {
        tracing::warn!(
            require_elicitation = actions.require_elicitation,
            "free_port is enabled: this server can signal processes (after the user confirms)"
        );
    }
    let remotes = SshRemotes::new(config);
    let local: Arc<dyn Source> = Arc::new(LocalSource::new(cli.backend.into()));
    let service = Service::new(local.clone(), Arc::new(remotes.clone()));
    let mut watch = WatchService::new(service.clone(), cli.backend.into());
    let mut exporter = None;
    if let Some(Command::Serve(args)) = &cli.command
        && args.metrics
    {
        exporter = Some(Exporter::new(
            local.clone(),
            MetricsOptions {
                max_series: usize::try_from(args.metrics_max_series).unwrap_or(usize::MAX),
                counters: args.record,
            },
        ));
    }
    if let Some(Command::Serve(args)) = &cli.command
        && args.record
    {
        let tap = match &exporter {
            Some(exporter) => match exporter.start_counters().await {
                Ok(tap) => tap,
                Err(e) => {
                    cli::print_error(&format!(
                        "netstat-mcp: cannot start the metrics' counters: {e}"
                    ));
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        match start_recorder(&watch, args.record_capacity, tap).await {
            Ok(recorder) => watch = watch.with_recorder(recorder),
            Err(e) => {
                cli::print_error(&format!("netstat-mcp: cannot start the recorder: {e}"));
                return ExitCode::from(2);
            }
        }
    }
    let server = || {
        NetstatServer::new(service.clone())
            .with_watch(watch.clone())
            .with_actions(actions)
    };
    match &cli.command {
        Some(Command::Connections(opts)) => cli::connections(&service, opts).await,
        Some(Command::Port(opts)) => cli::port(&service, opts).await,
        Some(Command::Summary(opts)) => cli::summary(&service, opts).await,
        Some(Command::Hosts(opts)) => cli::hosts(&service, opts),
        Some(Command::Watch(opts)) => cli::watch::run(&watch, opts).await,
        Some(Command::Health(opts)) => cli::health::health(&service, opts).await,
        Some(Command::Top(opts)) => cli::health::top(&watch, opts).await,
        Some(Command::Metrics(opts)) => cli::metrics::metrics(local, opts).await,
        Some(Command::FreePort(opts)) => cli::free_port::free_port(&service, opts).await,
        Some(Command::Serve(args)) if args.http.is_some() => {
            serve_http(server(), args, exporter).await
        }
        None | Some(Command::Serve(_)) => match mcp::serve_stdio(server()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                cli::print_error(&format!("netstat-mcp: {e}"));
                ExitCode::FAILURE
            }
        },
    }
}

/// Starts the recorder of `serve --record` (its first listing and owner scan block).
async fn start_recorder(
    watch: &WatchService,
    capacity: u64,
    tap: Option<EventTap>,
) -> anyhow::Result<Arc<Recorder>> {
    let options = watch.local_options(Want::all());
    let capacity = usize::try_from(capacity)?;
    let recorder =
        tokio::task::spawn_blocking(move || Recorder::start(options, capacity, tap)).await??;
    let state = recorder.state();
    tracing::info!(
        capacity,
        destroy_notifications = state.destroy.is_on(),
        "recorder started"
    );
    if !state.destroy.is_on() {
        cli::print_error(&format!(
            "netstat-mcp: warning: recorder: {}",
            state.destroy.describe(state.interval)
        ));
    }
    Ok(Arc::new(recorder))
}

/// `serve --http`: MCP over streamable HTTP until SIGINT/SIGTERM; exit 0 after a clean drain.
async fn serve_http(
    server: NetstatServer,
    args: &ServeArgs,
    metrics: Option<Exporter>,
) -> ExitCode {
    let Some(addr) = args.http else {
        return ExitCode::from(2);
    };
    let result = async {
        let mut options = args.http_options(|name| std::env::var_os(name))?;
        options.metrics = metrics;
        let listener = http::bind(addr, &options).await?;
        http::serve_http(
            listener,
            move || server.clone(),
            options,
            http::shutdown_signal(),
        )
        .await
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::print_error(&format!("netstat-mcp: {e}"));
            ExitCode::from(2)
        }
    }
}
