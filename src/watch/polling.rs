//! The remote event source: the host's listing (over the pooled SSH session, with whatever
//! command the host has) taken every interval and diffed by protocol, endpoints and inode.
//!
//! What it cannot see: a connection that opens and closes between two listings, and the
//! exact moment of an open or close (events carry the time of the listing that showed the
//! change; durations are accurate to one interval). There are no destroy notifications over
//! SSH.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;

use crate::error::Error;
use crate::model::Socket;
use crate::source::{Source, Want};

use super::diff::{Differ, tuple_key};
use super::{EngineStats, Matcher, Sink};

/// A running remote engine; dropping it stops the task (and any command in flight).
pub(crate) struct RemoteWatch {
    task: JoinHandle<()>,
    pub(crate) stats: Arc<EngineStats>,
    pub(crate) interval: Duration,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl RemoteWatch {
    /// The last listing error, if the most recent listing failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for RemoteWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn keyed(sockets: Vec<Socket>) -> Vec<(u64, Socket)> {
    sockets.into_iter().map(|s| (tuple_key(&s), s)).collect()
}

/// Takes the first listing (its error, e.g. an unreachable host, is returned), then diffs a
/// listing every `interval` on a task of the current runtime.
pub(crate) async fn start(
    source: Arc<dyn Source>,
    want: Want,
    interval: Duration,
    filter: Matcher,
    mut sink: Box<dyn Sink>,
) -> Result<RemoteWatch, Error> {
    let want = Want {
        owners: true,
        ..want
    };
    let stats = Arc::new(EngineStats::default());
    let mut differ = Differ::new(0, filter);
    let first = source.collect(want).await?;
    stats.dumps.fetch_add(1, Ordering::Relaxed);
    differ.listing(
        SystemTime::now(),
        Instant::now(),
        keyed(first.sockets),
        &mut |_| {},
        true,
        &mut *sink,
    );
    let last_error = Arc::new(std::sync::Mutex::new(None));
    let task = {
        let (stats, last_error) = (stats.clone(), last_error.clone());
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + interval;
            loop {
                tokio::time::sleep_until(next).await;
                let started = tokio::time::Instant::now();
                let at = SystemTime::now();
                match source.collect(want).await {
                    Ok(snapshot) => {
                        differ.listing(
                            at,
                            started.into_std(),
                            keyed(snapshot.sockets),
                            &mut |_| {},
                            false,
                            &mut *sink,
                        );
                        stats.dumps.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut e) = last_error.lock() {
                            *e = None;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(cause = %e, "remote watch listing failed; retrying");
                        stats.dump_errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut slot) = last_error.lock() {
                            *slot = Some(e.to_string());
                        }
                    }
                }
                next = tokio::time::Instant::now().max(started + interval);
            }
        })
    };
    Ok(RemoteWatch {
        task,
        stats,
        interval,
        last_error,
    })
}
