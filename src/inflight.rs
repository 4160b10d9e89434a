//! A bound on the calls in flight on one MCP connection (the stdio transport).
//!
//! rmcp reads requests as fast as the client writes them and runs each as its own task; every
//! answer then waits to be written. A client that pipelines thousands of calls without reading
//! its answers (or reads them slowly) would make the server hold all of them at once.
//! [`InFlightBound`] wraps a transport and hands rmcp a request only while fewer than `max`
//! requests are unanswered. A request's slot is given back when its answer (response or
//! error) has been *written* to the transport — so answers stuck behind a client that does not
//! read also hold the server back — or when the client cancels it (rmcp then drops the
//! answer).
//!
//! Reading does not stop at the bound: requests read while every slot is taken wait in a
//! queue of `max` more, in order, so the messages behind them — `notifications/cancelled`,
//! `ping` — still take effect at once (a cancelled queued request is dropped; pings have slots
//! of their own). Only with the queue full too does the server stop reading stdin, and the
//! operating system's pipe buffer pushes back on the client.
//!
//! Ids are the bound's keys, so an id already in use by an unanswered request is refused with
//! JSON-RPC `-32600` (MCP: an id must not be reused within a session); it never reaches rmcp,
//! which would otherwise run both calls and lose track of the first.
//!
//! It knows nothing about tools; it only looks at JSON-RPC ids, `ping` and
//! `notifications/cancelled`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::RoleServer;
use rmcp::model::{ClientNotification, ClientRequest, ErrorData, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::stdio::Refusals;

/// Calls answered at once on one stdio connection before the server stops reading: enough to
/// keep both cores busy with port checks and listings, few enough that the answers held while a
/// client does not read stay small.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// A transport that hands over a request only while fewer than `max` are unanswered.
pub(crate) struct InFlightBound<T> {
    inner: T,
    slots: Arc<Semaphore>,
    /// Slots of their own for `ping` (answered at once by rmcp), so a ping is answered while
    /// every call slot is taken.
    pings: Arc<Semaphore>,
    /// The slot of each unanswered request, by JSON-RPC id.
    held: Arc<Mutex<HashMap<RequestId, OwnedSemaphorePermit>>>,
    /// Requests read while every slot was taken, oldest first; at most `max`.
    queue: VecDeque<RxJsonRpcMessage<RoleServer>>,
    max: usize,
    /// Refusals of reused ids, written beside rmcp's answers (bounded like stdio's own).
    refusals: Refusals,
}

impl<T> InFlightBound<T> {
    /// Wraps `inner`, allowing at most `max` (at least 1) unanswered requests.
    pub(crate) fn new(inner: T, max: usize) -> InFlightBound<T> {
        let max = max.max(1);
        InFlightBound {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            pings: Arc::new(Semaphore::new(max)),
            held: Arc::new(Mutex::new(HashMap::new())),
            queue: VecDeque::new(),
            max,
            refusals: Refusals::new(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, OwnedSemaphorePermit>> {
        // A poisoned map is still a valid map: no invariant spans a panic here.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, id: &RequestId) -> Option<OwnedSemaphorePermit> {
        self.held().remove(id)
    }

    /// Whether `id` is unanswered: handed over, or waiting in the queue.
    fn in_use(&self, id: &RequestId) -> bool {
        self.held().contains_key(id)
            || self
                .queue
                .iter()
                .any(|m| matches!(m, JsonRpcMessage::Request(r) if &r.id == id))
    }

    /// Hands over a request, its slot held until its answer is written.
    fn hand_over(
        &self,
        message: RxJsonRpcMessage<RoleServer>,
        slot: OwnedSemaphorePermit,
    ) -> RxJsonRpcMessage<RoleServer> {
        if let JsonRpcMessage::Request(request) = &message {
            self.held().insert(request.id.clone(), slot);
        }
        message
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

    // Cancel-safe: rmcp polls it in a select. Every await is either a semaphore (nothing
    // taken yet) or the inner receive (itself cancel-safe); a message read is queued or
    // returned before the next await.
    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            self.refusals.flush(&mut self.inner).await?;
            // The oldest queued request goes first, as soon as a slot is free.
            if !self.queue.is_empty()
                && let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned()
                && let Some(next) = self.queue.pop_front()
            {
                return Some(self.hand_over(next, slot));
            }
            let message = if self.queue.len() < self.max {
                let waiting = !self.queue.is_empty();
                tokio::select! {
                    slot = Arc::clone(&self.slots).acquire_owned(), if waiting => {
                        let slot = slot.ok()?;
                        let next = self.queue.pop_front()?;
                        return Some(self.hand_over(next, slot));
                    }
                    message = self.inner.receive() => message?,
                }
            } else {
                // The queue is full as well: stop reading until a slot frees.
                let slot = Arc::clone(&self.slots).acquire_owned().await.ok()?;
                let next = self.queue.pop_front()?;
                return Some(self.hand_over(next, slot));
            };
            match &message {
                JsonRpcMessage::Request(request) => {
                    if self.in_use(&request.id) {
                        let refusal = TxJsonRpcMessage::<RoleServer>::error(
                            ErrorData::invalid_request(
                                format!(
                                    "request id {} is already in use by an unanswered request: ids must be unique among requests in flight",
                                    request.id
                                ),
                                None,
                            ),
                            Some(request.id.clone()),
                        );
                        self.refusals.hold(refusal);
                        continue;
                    }
                    if matches!(request.request, ClientRequest::PingRequest(_))
                        && let Ok(slot) = Arc::clone(&self.pings).try_acquire_owned()
                    {
                        return Some(self.hand_over(message, slot));
                    }
                    if self.queue.is_empty()
                        && let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned()
                    {
                        return Some(self.hand_over(message, slot));
                    }
                    self.queue.push_back(message);
                }
                JsonRpcMessage::Notification(n) => {
                    if let ClientNotification::CancelledNotification(c) = &n.notification
                        && let Some(id) = &c.params.request_id
                    {
                        // A queued request never reached rmcp: it is dropped unanswered (as
                        // rmcp drops a cancelled request's answer), and frees its place.
                        let before = self.queue.len();
                        self.queue
                            .retain(|m| !matches!(m, JsonRpcMessage::Request(r) if &r.id == id));
                        if self.queue.len() == before {
                            drop(self.take(id));
                        }
                    }
                    return Some(message);
                }
                _ => return Some(message),
            }
        }
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

    fn call(id: i64) -> RxJsonRpcMessage<RoleServer> {
        incoming(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}))
    }

    fn answer(id: i64) -> TxJsonRpcMessage<RoleServer> {
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": id, "result": {}}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The id of a received request (`None` for anything else).
    fn id_of(m: &RxJsonRpcMessage<RoleServer>) -> Option<RequestId> {
        match m {
            JsonRpcMessage::Request(r) => Some(r.id.clone()),
            _ => None,
        }
    }

    /// The next message `receive` hands over, or `None` if it waits: nothing else can hold
    /// it up, as the fake has messages queued whenever this is asked.
    async fn next(t: &mut InFlightBound<Fake>) -> Option<RxJsonRpcMessage<RoleServer>> {
        tokio::time::timeout(Duration::from_millis(50), t.receive())
            .await
            .ok()
            .flatten()
    }

    type Feed = tokio::sync::mpsc::UnboundedSender<RxJsonRpcMessage<RoleServer>>;
    type Sent = Arc<Mutex<Vec<TxJsonRpcMessage<RoleServer>>>>;

    fn bound(max: usize) -> (InFlightBound<Fake>, Feed, Sent) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let t = InFlightBound::new(
            Fake {
                incoming: rx,
                sent: Arc::clone(&sent),
            },
            max,
        );
        (t, tx, sent)
    }

    #[tokio::test(start_paused = true)]
    async fn hands_over_at_most_max_and_queues_the_rest_in_order() {
        let (mut t, tx, _) = bound(2);
        for id in 1..=5 {
            tx.send(call(id)).unwrap();
        }
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(1))
        );
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(2))
        );
        // Two unanswered: 3 and 4 are read into the queue, 5 stays unread (queue full).
        assert!(next(&mut t).await.is_none());
        assert_eq!(t.queue.len(), 2);
        t.send(answer(1)).await.unwrap();
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(3))
        );
        // An answer to an unknown id frees nothing.
        t.send(answer(99)).await.unwrap();
        assert!(next(&mut t).await.is_none());
        t.send(answer(2)).await.unwrap();
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(4))
        );
        t.send(answer(3)).await.unwrap();
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(5))
        );
        assert!(next(&mut t).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_and_ping_pass_a_full_bound() {
        let (mut t, tx, _) = bound(2);
        for id in 1..=3 {
            tx.send(call(id)).unwrap();
        }
        tx.send(cancel(3)).unwrap();
        tx.send(ping(10)).unwrap();
        tx.send(cancel(1)).unwrap();
        tx.send(call(4)).unwrap();
        assert!(next(&mut t).await.is_some());
        assert!(next(&mut t).await.is_some());
        // 3 is queued; its cancellation drops it and is passed on.
        assert!(matches!(
            next(&mut t).await,
            Some(JsonRpcMessage::Notification(_))
        ));
        assert!(t.queue.is_empty());
        // The ping has a slot of its own.
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(10))
        );
        // Cancelling 1 frees its slot: 4 is handed over at once.
        assert!(matches!(
            next(&mut t).await,
            Some(JsonRpcMessage::Notification(_))
        ));
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(4))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_id_is_refused_while_in_flight() {
        let (mut t, tx, sent) = bound(4);
        tx.send(call(7)).unwrap();
        tx.send(call(7)).unwrap();
        tx.send(call(8)).unwrap();
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(7))
        );
        // The second 7 is refused, not handed over.
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(8))
        );
        tokio::task::yield_now().await;
        {
            let sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
            let refusal = serde_json::to_value(&sent[0]).unwrap_or_default();
            assert_eq!(refusal["id"], 7, "{refusal}");
            assert_eq!(refusal["error"]["code"], -32600, "{refusal}");
        }
        // Answered, the id may be used again.
        t.send(answer(7)).await.unwrap();
        tx.send(call(7)).unwrap();
        assert_eq!(
            id_of(&next(&mut t).await.unwrap()),
            Some(RequestId::Number(7))
        );
    }
}
