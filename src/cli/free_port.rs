//! `netstat-mcp free-port N`: the dry run first, then a question on the terminal, then the
//! signals (or `--connection`'s close). Without a terminal and without `--yes` it refuses.
//! Exit 0 port freed (or already free; a dry run that could be done), 1 not freed (not
//! confirmed, or still held), 2 error.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::Args;

use super::{delivered, fail, print_json, print_text};
use crate::error::{Error, InputError};
use crate::query::free_port::ConnectionArg;
use crate::query::{
    Confirm, Confirmation, Envelope, FreePortArgs, FreePortData, Requester, Service,
};

#[derive(Debug, Args)]
pub struct FreePortOpts {
    /// The port to free (1-65535): the processes holding its LISTEN (TCP) or bound (UDP)
    /// sockets are sent SIGTERM.
    #[arg(value_name = "PORT", allow_hyphen_values = true)]
    pub(crate) port: String,
    /// Protocol: tcp (default) or udp.
    #[arg(long)]
    pub(crate) proto: Option<String>,
    /// A configured remote host whose entry says allow_kill = true; default this machine.
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Only show what would be signalled (or closed); change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Send SIGKILL to whatever still holds the port --timeout-secs after SIGTERM.
    #[arg(long)]
    pub(crate) force: bool,
    /// Seconds to wait for the port after SIGTERM (1-60, default 5).
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    pub(crate) timeout_secs: Option<i64>,
    /// Close this one TCP connection of the port instead (its peer, IP:PORT or [IPv6]:PORT),
    /// with sock_diag SOCK_DESTROY as `ss -K` does; needs CAP_NET_ADMIN.
    #[arg(long, value_name = "PEER")]
    pub(crate) connection: Option<String>,
    /// Do not ask: act after showing the dry run (needed without a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Print the JSON answers the MCP tool returns (the dry run's, then the run's) instead of
    /// text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Asks on the terminal, or takes `--yes` as the answer.
struct Terminal {
    yes: bool,
}

impl Confirm for Terminal {
    fn ask<'a>(&'a self, question: &'a str) -> futures::future::BoxFuture<'a, Confirmation> {
        Box::pin(async move {
            if self.yes {
                return Confirmation::Confirmed("yes_flag");
            }
            if !std::io::stdin().is_terminal() {
                return Confirmation::Unavailable(
                    "there is no terminal to ask on (pass --yes to act without asking)".into(),
                );
            }
            let question = question.to_string();
            let answer = tokio::task::spawn_blocking(move || {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{question} [y/N] ");
                let _ = err.flush();
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map(|_| line)
            })
            .await;
            match answer {
                Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") => {
                    Confirmation::Confirmed("terminal")
                }
                _ => Confirmation::Declined("answered no at the terminal".into()),
            }
        })
    }
}

/// The input the options make (`dry_run` set by the caller).
fn args(opts: &FreePortOpts, dry_run: bool) -> Result<FreePortArgs, Error> {
    let port = super::port_number(&opts.port)?;
    let connection = match opts.connection.as_deref() {
        None => None,
        Some(text) => {
            let (ip, port) = text.trim().rsplit_once(':').ok_or_else(|| {
                Error::Input(InputError::new(
                    "connection",
                    crate::query::quoted(text),
                    "must be the peer as IP:PORT or [IPv6]:PORT",
                ))
            })?;
            Some(ConnectionArg {
                remote_ip: Some(ip.to_string()),
                remote_port: Some(port.parse::<i64>().unwrap_or(-1)),
            })
        }
    };
    Ok(FreePortArgs {
        port: Some(port),
        proto: opts.proto.clone(),
        host: opts.host.clone(),
        dry_run: Some(dry_run),
        force: Some(opts.force),
        timeout_secs: opts.timeout_secs,
        connection,
    })
}

/// Runs `free-port`.
pub async fn free_port(service: &Service, opts: &FreePortOpts) -> ExitCode {
    let requester = Requester {
        who: cli_user(),
        require_confirmation: true,
    };
    let confirm = Terminal { yes: opts.yes };
    // The dry run, always first: it is what the question is about.
    let plan = match run(service, opts, true, &confirm, &requester).await {
        Ok(envelope) => envelope,
        Err(code) => return code,
    };
    let nothing = plan.data.as_ref().is_some_and(|d| d.action == "nothing");
    if let Err(code) = show(&plan, opts.json) {
        return code;
    }
    if opts.dry_run || nothing {
        return ExitCode::SUCCESS;
    }
    let done = match run(service, opts, false, &confirm, &requester).await {
        Ok(envelope) => envelope,
        Err(code) => return code,
    };
    let free = done.data.as_ref().is_some_and(|d| d.free);
    match show(&done, opts.json) {
        Ok(()) if free => ExitCode::SUCCESS,
        Ok(()) => ExitCode::from(1),
        Err(code) => code,
    }
}

/// One call; an error is printed here and becomes the exit code (1 when the user did not
/// confirm, 2 otherwise).
async fn run(
    service: &Service,
    opts: &FreePortOpts,
    dry_run: bool,
    confirm: &Terminal,
    requester: &Requester,
) -> Result<Envelope<FreePortData>, ExitCode> {
    let result = match args(opts, dry_run).and_then(|a| a.validate().map_err(Error::Input)) {
        Ok(query) => service.free_port(&query, confirm, requester).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(envelope) => Ok(envelope),
        Err(e @ Error::NotConfirmed(_)) => {
            let _ = fail::<FreePortData>(&e, opts.json);
            Err(ExitCode::from(1))
        }
        Err(e) => Err(fail::<FreePortData>(&e, opts.json)),
    }
}

/// Prints an answer; `Err` with the exit code when stdout failed (a closed pipe is not an
/// error: the code the command has anyway).
fn show(envelope: &Envelope<FreePortData>, json: bool) -> Result<(), ExitCode> {
    let written = if json {
        print_json(envelope)
    } else {
        print_text(&text(envelope))
    };
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(delivered(Err(e), ExitCode::from(2))),
    }
}

/// The answer as text: the message, then one line per process (or the connection).
fn text(envelope: &Envelope<FreePortData>) -> String {
    let mut out = format!("{}\n", envelope.message);
    let Some(data) = &envelope.data else {
        return out;
    };
    for p in &data.processes {
        let _ = write!(
            out,
            "  pid {:<7} {:<16} user {:<10}",
            p.pid,
            p.program,
            p.user.clone().unwrap_or_else(|| p.uid.to_string())
        );
        if p.worker_count > 0 {
            let _ = write!(out, " workers {}", p.worker_count);
        }
        let _ = write!(out, " signals {}", p.signals.join(","));
        match p.exited {
            Some(true) => out.push_str(" exited"),
            Some(false) => out.push_str(" running"),
            None => {}
        }
        if let Some(c) = &p.command {
            let _ = write!(out, "  {c}");
        }
        out.push('\n');
    }
    if let Some(c) = &data.connection {
        let _ = writeln!(
            out,
            "  {}:{} -> {}:{} {} {}",
            c.local_ip,
            c.local_port,
            c.remote_ip,
            c.remote_port,
            c.state.as_deref().unwrap_or("-"),
            match (c.pid, &c.program) {
                (Some(pid), Some(p)) => format!("{pid}/{p}"),
                _ => "-".into(),
            }
        );
    }
    out
}

/// How the action log names a CLI caller: `CLI user alice (uid 1000)`.
fn cli_user() -> String {
    let uid = rustix::process::getuid().as_raw();
    let name = std::env::var("SUDO_USER")
        .ok()
        .map(|u| format!(" via sudo by {}", crate::query::shorten(&u)))
        .unwrap_or_default();
    format!("the CLI (uid {uid}{name})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_text_becomes_the_tool_input() {
        let opts = |c: &str| FreePortOpts {
            port: "8080".into(),
            proto: None,
            host: None,
            dry_run: true,
            force: false,
            timeout_secs: None,
            connection: Some(c.into()),
            yes: false,
            json: false,
        };
        let a = args(&opts("[::1]:5432"), true).unwrap();
        let q = a.validate().unwrap();
        assert_eq!(q.connection, Some(("::1".parse().unwrap(), 5432)));
        let e = args(&opts("nonsense"), true).unwrap_err();
        assert!(e.to_string().contains("connection"), "{e}");
        let e = args(&opts("10.0.0.1:x"), true)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.param, "connection.remote_port");
    }
}
