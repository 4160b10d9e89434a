//! Local fallback: where neither netlink nor `/proc` is usable (a non-Linux host, a locked-down
//! container), run whichever of `ss`, `netstat` or `lsof` exists and parse its text.
//!
//! The programs are run directly (no shell), with `LC_ALL=C` so numbers and headers are not
//! localised, and a timeout after which the child is killed. This is the only I/O in
//! [`crate::parse`]; everything else is pure.

use std::time::Duration;

use crate::child::ChildError;

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

/// Runs one command (no shell, `LC_ALL=C`, killed after `timeout`; see [`crate::child`]) and
/// returns its stdout.
pub fn run_command(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, ExternalError> {
    let done =
        crate::child::run_blocking(std::ffi::OsStr::new(program), args, timeout).map_err(|e| {
            match e {
                ChildError::NotFound => ExternalError::NotFound {
                    program: program.to_owned(),
                },
                ChildError::Timeout(timeout) => ExternalError::Timeout {
                    program: program.to_owned(),
                    timeout,
                },
                ChildError::PermissionDenied(source)
                | ChildError::Spawn(source)
                | ChildError::Wait(source) => ExternalError::Spawn {
                    program: program.to_owned(),
                    source,
                },
            }
        })?;
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&done.stderr);
    // lsof exits 1 when one of its selectors matched nothing (`-iUDP` on a host with no UDP
    // socket) even though it printed what the others matched.
    let lsof_partial =
        program == "lsof" && done.status.code() == Some(1) && stderr.trim().is_empty();
    if !done.status.success() && !lsof_partial {
        return Err(ExternalError::Failed {
            program: program.to_owned(),
            args: args.join(" "),
            status: done.status.to_string(),
            stderr: super::clip(stderr.trim(), 500).to_owned(),
        });
    }
    Ok(stdout)
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
    use std::time::Instant;

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
