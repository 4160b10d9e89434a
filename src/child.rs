//! The one way this program runs a local program: no shell, `LC_ALL=C`, stdin closed, both
//! output pipes read to the end (so a full pipe cannot stall the child), killed at a timeout —
//! and, for the async form, when the caller's future is dropped (a cancelled request).
//!
//! Used by the `netstat` tool (async) and by the local fallback that parses `ss`/`netstat`/
//! `lsof` output (blocking, from a listing's worker thread).

use std::ffi::OsStr;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// A program that ran to its end.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Why a program did not run to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildError {
    #[error("not found")]
    NotFound,
    #[error("not executable: {0}")]
    PermissionDenied(io::Error),
    #[error("could not be started: {0}")]
    Spawn(io::Error),
    #[error("failed while running: {0}")]
    Wait(io::Error),
    #[error("did not finish within {} s and was killed", .0.as_secs_f64())]
    Timeout(Duration),
}

/// Runs `program` with `args`; the child is killed at `timeout` or when this future is dropped.
pub(crate) async fn run<A: AsRef<OsStr>>(
    program: &OsStr,
    args: &[A],
    timeout: Duration,
) -> Result<Finished, ChildError> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ChildError::NotFound,
            io::ErrorKind::PermissionDenied => ChildError::PermissionDenied(e),
            _ => ChildError::Spawn(e),
        })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(Finished {
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        }),
        Ok(Err(e)) => Err(ChildError::Wait(e)),
        // Dropping `wait_with_output` dropped the child, which kills it.
        Err(_) => Err(ChildError::Timeout(timeout)),
    }
}

/// [`run`] for a caller on a plain thread (not inside an async task): on a small runtime of
/// its own, so it needs none from the caller.
pub(crate) fn run_blocking<A: AsRef<OsStr>>(
    program: &OsStr,
    args: &[A],
    timeout: Duration,
) -> Result<Finished, ChildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ChildError::Spawn)?;
    runtime.block_on(run(program, args, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_status_missing_and_timeout() {
        let done = run_blocking(
            OsStr::new("sh"),
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(
            (
                done.status.code(),
                done.stdout.as_slice(),
                done.stderr.as_slice()
            ),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        assert!(matches!(
            run_blocking(
                OsStr::new("/nonexistent/program"),
                &[] as &[&str],
                Duration::from_secs(1)
            ),
            Err(ChildError::NotFound)
        ));
        let started = std::time::Instant::now();
        assert!(matches!(
            run_blocking(OsStr::new("sleep"), &["10"], Duration::from_millis(200)),
            Err(ChildError::Timeout(_))
        ));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "killed at the timeout"
        );
    }
}
