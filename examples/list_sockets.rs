//! The library as a Rust program uses it, with no SSH, MCP or HTTP compiled in
//! (`cargo run --example list_sockets --no-default-features`): this machine's listening
//! sockets with their owners, then who holds port 22.

use std::sync::Arc;

use netstat_mcp::{LocalSource, NoRemotes, PortArgs, Service, Source, TcpState, Want};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = LocalSource::default();
    let snapshot = source.collect(Want::all()).await?;
    for s in snapshot
        .sockets
        .iter()
        .filter(|s| s.state == Some(TcpState::Listen))
    {
        let owner = s
            .owners
            .first()
            .map_or_else(|| "-".to_string(), |o| format!("{}/{}", o.pid, o.program));
        println!("{} {}:{} {owner}", s.protocol, s.local_ip, s.local_port);
    }
    let service = Service::new(Arc::new(source), Arc::new(NoRemotes));
    let query = PortArgs {
        port: Some(22),
        ..PortArgs::default()
    }
    .validate(None)?;
    let answer = service.port(&query).await?;
    println!("{}", answer.message);
    Ok(())
}
