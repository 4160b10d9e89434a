//! Local fallback: where neither netlink nor `/proc` is usable (a non-Linux host, a locked-down
//! container), run whichever of `ss`, `netstat` or `lsof` exists and parse its text.
//!
//! The programs are run directly (no shell), with `LC_ALL=C` so numbers and headers are not
//! localised, and a timeout after which the child is killed. This is the only I/O in
//! [`crate::parse`]; everything else is pure.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Format, Parsed, parse};

/// One fallback command: program, arguments, and the format its output is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackCommand {
    pub program: &'static str,
    pub args: &'static [&'static str],
    pub format: Format,
}

/// The commands tried, in order, for this platform. On Linux: `ss`, net-tools `netstat -W`,
/// busybox-style `netstat` (no `-W`), then `lsof`. On macOS/BSD: `lsof` (owners), then
/// `netstat -an` (no owners). On Windows: `netstat -ano`.
pub fn local_fallback_commands() -> &'static [FallbackCommand] {
    if cfg!(target_os = "windows") {
        &[FallbackCommand {
            program: "netstat",
            args: &["-ano"],
            format: Format::Windows,
        }]
    } else if cfg!(target_os = "linux") {
        &[
            FallbackCommand {
                program: "ss",
                args: &["-tunapH"],
                format: Format::Ss,
            },
            FallbackCommand {
                program: "netstat",
                args: &["-tunapW"],
                format: Format::NetTools,
            },
            FallbackCommand {
                program: "netstat",
                args: &["-tuna"],
                format: Format::Busybox,
            },
            FallbackCommand {
                program: "lsof",
                args: &["-nP", "-iTCP", "-iUDP"],
                format: Format::Lsof,
            },
        ]
    } else {
        &[
            FallbackCommand {
                program: "lsof",
                args: &["-nP", "-iTCP", "-iUDP"],
                format: Format::Lsof,
            },
            FallbackCommand {
                program: "netstat",
                args: &["-an"],
                format: Format::Bsd,
            },
        ]
    }
}

/// Why a fallback command gave no listing.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error(
        "`{program}` is not installed (not found on PATH); install it or run where netlink or /proc/net is readable"
    )]
    NotFound { program: String },
    #[error("could not start `{program}`: {source}; check that it is executable")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {} ms and was stopped; try again or raise the timeout", timeout.as_millis())]
    Timeout { program: String, timeout: Duration },
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        program: String,
        args: String,
        status: String,
        /// Trimmed standard error, cut to 500 bytes.
        stderr: String,
    },
    #[error("none of the fallback commands worked: {}", .tried.join("; "))]
    NoneWorked { tried: Vec<String> },
}

/// Runs one command (no shell, `LC_ALL=C`, killed after `timeout`) and returns its stdout.
pub fn run_command(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, ExternalError> {
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ExternalError::NotFound {
                    program: program.to_owned(),
                }
            } else {
                ExternalError::Spawn {
                    program: program.to_owned(),
                    source,
                }
            }
        })?;
    // Read both pipes on threads so a full pipe cannot stall the child.
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExternalError::Timeout {
                    program: program.to_owned(),
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExternalError::Spawn {
                    program: program.to_owned(),
                    source,
                });
            }
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    // lsof exits 1 when one of its selectors matched nothing (`-iUDP` on a host with no UDP
    // socket) even though it printed what the others matched.
    let lsof_partial = program == "lsof" && status.code() == Some(1) && stderr.trim().is_empty();
    if !status.success() && !lsof_partial {
        return Err(ExternalError::Failed {
            program: program.to_owned(),
            args: args.join(" "),
            status: status.to_string(),
            stderr: super::clip(stderr.trim(), 500).to_owned(),
        });
    }
    Ok(stdout)
}

fn read_all<R: Read>(pipe: Option<R>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs the first fallback command that works and parses its output. A command that runs but
/// yields only unreadable lines counts as not working (e.g. busybox rejecting `-W`).
pub fn run_fallback(timeout: Duration) -> Result<(FallbackCommand, Parsed), ExternalError> {
    run_first(local_fallback_commands(), timeout)
}

/// [`run_fallback`] over a given list of commands.
pub fn run_first(
    commands: &[FallbackCommand],
    timeout: Duration,
) -> Result<(FallbackCommand, Parsed), ExternalError> {
    let mut tried = Vec::new();
    for cmd in commands {
        match run_command(cmd.program, cmd.args, timeout) {
            Ok(text) => {
                let parsed = parse(cmd.format, &text);
                if parsed.sockets.is_empty() && !parsed.skipped.is_empty() {
                    tried.push(format!(
                        "`{} {}` printed nothing readable ({} unreadable lines)",
                        cmd.program,
                        cmd.args.join(" "),
                        parsed.skipped.len()
                    ));
                    continue;
                }
                return Ok((*cmd, parsed));
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(ExternalError::NoneWorked { tried })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_not_found() {
        let err =
            run_command("netstat-mcp-no-such-program", &[], Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, ExternalError::NotFound { .. }), "{err}");
    }

    #[test]
    fn slow_program_times_out_and_is_killed() {
        let start = Instant::now();
        let err = run_command("sleep", &["10"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ExternalError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn failing_program_reports_stderr() {
        let err =
            run_command("ls", &["/netstat-mcp-no-such-dir"], Duration::from_secs(5)).unwrap_err();
        match err {
            ExternalError::Failed { stderr, .. } => {
                assert!(stderr.contains("netstat-mcp-no-such-dir"), "{stderr}")
            }
            other => panic!("unexpected {other}"),
        }
    }
}
