//! A bound on the calls in flight on one MCP connection (the stdio transport).
//!
//! rmcp reads requests as fast as the client writes them and runs each as its own task; every
//! answer then waits to be written. A client that pipelines thousands of calls without reading
//! its answers (or reads them slowly) would make the server hold all of them at once.
//! [`InFlightBound`] wraps a transport: it reads the next message only while fewer than
//! `max` requests are unanswered. A request's slot is given back when its answer (response or
//! error) has been *written* to the transport — so answers stuck behind a client that does not
//! read also hold the server back — or when the client cancels it (rmcp then drops the
//! answer). With the bound reached the server stops reading stdin, and the operating system's
//! pipe buffer pushes back on the client.
//!
//! It knows nothing about tools; it only looks at JSON-RPC ids and `notifications/cancelled`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::RoleServer;
use rmcp::model::{ClientNotification, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Calls answered at once on one stdio connection before the server stops reading: enough to
/// keep both cores busy with port checks and listings, few enough that the answers held while a
/// client does not read stay small.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// A transport that reads a message only while fewer than `max` requests are unanswered.
pub(crate) struct InFlightBound<T> {
    inner: T,
    slots: Arc<Semaphore>,
    /// The slot of each unanswered request, by JSON-RPC id.
    held: Arc<Mutex<HashMap<RequestId, OwnedSemaphorePermit>>>,
}

impl<T> InFlightBound<T> {
    /// Wraps `inner`, allowing at most `max` (at least 1) unanswered requests.
    pub(crate) fn new(inner: T, max: usize) -> InFlightBound<T> {
        InFlightBound {
            inner,
            slots: Arc::new(Semaphore::new(max.max(1))),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn take(&self, id: &RequestId) -> Option<OwnedSemaphorePermit> {
        // A poisoned map is still a valid map: no invariant spans a panic here.
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }
}

impl<T> Transport<RoleServer> for InFlightBound<T>
where
    T: Transport<RoleServer>,
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let slot = match &item {
            JsonRpcMessage::Response(r) => self.take(&r.id),
            JsonRpcMessage::Error(e) => e.id.as_ref().and_then(|id| self.take(id)),
            _ => None,
        };
        let sending = self.inner.send(item);
        async move {
            let result = sending.await;
            // The answer is written (or failed): its slot is free again.
            drop(slot);
            result
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        // Cancel-safe: dropped while waiting for a slot, nothing was read; the inner
        // transport's receive is itself cancel-safe (rmcp polls it in a select).
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok()?;
        let message = self.inner.receive().await?;
        match &message {
            JsonRpcMessage::Request(request) => {
                let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
                // A reused id replaces (and frees) the older slot: no slot is ever lost.
                held.insert(request.id.clone(), slot);
            }
            JsonRpcMessage::Notification(n) => {
                if let ClientNotification::CancelledNotification(c) = &n.notification
                    && let Some(id) = &c.params.request_id
                {
                    // rmcp drops a cancelled request's answer: nothing will be sent for it.
                    drop(self.take(id));
                }
                drop(slot);
            }
            _ => drop(slot),
        }
        Some(message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use serde_json::json;

    /// A transport fed from a channel that records what was sent.
    struct Fake {
        incoming: tokio::sync::mpsc::UnboundedReceiver<RxJsonRpcMessage<RoleServer>>,
        sent: Arc<Mutex<Vec<TxJsonRpcMessage<RoleServer>>>>,
    }

    impl Transport<RoleServer> for Fake {
        type Error = std::io::Error;
        fn send(
            &mut self,
            item: TxJsonRpcMessage<RoleServer>,
        ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
            self.sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(item);
            std::future::ready(Ok(()))
        }
        async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
            self.incoming.recv().await
        }
        async fn close(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn incoming(v: serde_json::Value) -> RxJsonRpcMessage<RoleServer> {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ping(id: i64) -> RxJsonRpcMessage<RoleServer> {
        incoming(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
    }

    fn cancel(id: i64) -> RxJsonRpcMessage<RoleServer> {
        incoming(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": id}}),
        )
    }

    fn answer(id: i64) -> TxJsonRpcMessage<RoleServer> {
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": id, "result": {}}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether `receive` waits (for a slot): nothing else can hold it up, as the fake has
    /// messages queued whenever this is asked.
    async fn blocked(t: &mut InFlightBound<Fake>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), t.receive())
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn reads_only_while_under_the_bound() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut t = InFlightBound::new(
            Fake {
                incoming: rx,
                sent: Arc::clone(&sent),
            },
            2,
        );
        for id in 1..=4 {
            tx.send(ping(id)).unwrap();
        }
        tx.send(cancel(2)).unwrap();
        assert!(t.receive().await.is_some());
        assert!(t.receive().await.is_some());
        // Two unanswered requests: the third stays unread.
        assert!(blocked(&mut t).await);
        t.send(answer(1)).await.unwrap();
        assert!(t.receive().await.is_some(), "a written answer frees a slot");
        assert!(blocked(&mut t).await);
        // An answer to an unknown id frees nothing.
        t.send(answer(99)).await.unwrap();
        assert!(blocked(&mut t).await);
        t.send(answer(3)).await.unwrap();
        // Request 4 fills the bound again (2 and 4 unanswered).
        assert!(t.receive().await.is_some());
        assert!(blocked(&mut t).await);
        // Answering 4 lets the cancellation of 2 in, which frees 2's slot too: two more
        // requests are read.
        t.send(answer(4)).await.unwrap();
        assert!(t.receive().await.is_some(), "the cancellation");
        tx.send(ping(5)).unwrap();
        tx.send(ping(6)).unwrap();
        assert!(t.receive().await.is_some());
        assert!(
            t.receive().await.is_some(),
            "the cancelled request's slot is free"
        );
        tx.send(ping(7)).unwrap();
        assert!(blocked(&mut t).await);
        assert_eq!(sent.lock().unwrap_or_else(PoisonError::into_inner).len(), 4);
    }
}
