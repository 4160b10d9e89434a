use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use netstat_mcp::cli::{self, Cli, Command};
use netstat_mcp::mcp::{self, NetstatServer};
use netstat_mcp::query::Service;
use netstat_mcp::source::{LocalSource, NoRemotes};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let service = Service::new(
        Arc::new(LocalSource::new(cli.backend.into())),
        Arc::new(NoRemotes),
    );
    match &cli.command {
        Some(Command::Connections(opts)) => cli::connections(&service, opts).await,
        Some(Command::Port(opts)) => cli::port(&service, opts).await,
        None | Some(Command::Serve(_)) => match mcp::serve_stdio(NetstatServer::new(service)).await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netstat-mcp: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
