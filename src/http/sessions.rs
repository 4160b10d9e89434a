//! MCP sessions as HTTP clients hold them: ids of our own, and a cap on how many exist.
//!
//! [`Sessions`] wraps rmcp's [`LocalSessionManager`]. rmcp names each session with an id it
//! also writes into its own log lines and spans (at info level and below); a session id is
//! bearer-equivalent, so the id a client receives in `Mcp-Session-Id` is a fresh random
//! UUID minted here and mapped to rmcp's. rmcp's id never leaves the process, and presenting
//! it gets `404 Not Found`, so its log lines give nothing away. Nothing here logs a public id.
//!
//! At most `max` sessions exist at once; [`Sessions::is_full`] lets the HTTP layer refuse a new
//! one with `503` before rmcp sees it (creating one past the cap also fails, as a backstop).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use futures_core::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{
    ServerSseMessage, SessionId, SessionManager,
};

/// Why a session operation failed. Messages carry no public session id.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionsError {
    #[error("too many MCP sessions ({max} open)")]
    Full { max: usize },
    #[error("no such MCP session")]
    NotFound,
    #[error(transparent)]
    Inner(#[from] LocalSessionManagerError),
}

/// rmcp's session manager behind public ids and a cap.
pub(crate) struct Sessions {
    inner: LocalSessionManager,
    max: usize,
    /// Public id → rmcp's id.
    ids: RwLock<HashMap<SessionId, SessionId>>,
}

impl Sessions {
    pub(crate) fn new(inner: LocalSessionManager, max: usize) -> Sessions {
        Sessions {
            inner,
            max,
            ids: RwLock::new(HashMap::new()),
        }
    }

    /// Sessions open now.
    pub(crate) fn open(&self) -> usize {
        self.ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Whether a new session would exceed the cap.
    pub(crate) fn is_full(&self) -> bool {
        self.open() >= self.max
    }

    fn inner_id(&self, public: &SessionId) -> Result<SessionId, SessionsError> {
        self.ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(public)
            .cloned()
            .ok_or(SessionsError::NotFound)
    }
}

/// A stream of rmcp's, boxed so that it does not borrow the id it was looked up with.
type SseStream = std::pin::Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;

fn boxed(stream: impl Stream<Item = ServerSseMessage> + Send + Sync + 'static) -> SseStream {
    Box::pin(stream)
}

impl SessionManager for Sessions {
    type Error = SessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        if self.is_full() {
            return Err(SessionsError::Full { max: self.max });
        }
        let (inner, transport) = self.inner.create_session().await?;
        let public: SessionId = uuid::Uuid::new_v4().to_string().into();
        self.ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(public.clone(), inner);
        Ok((public, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let inner = self.inner_id(id)?;
        Ok(self.inner.initialize_session(&inner, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        match self.inner_id(id) {
            Ok(inner) => Ok(self.inner.has_session(&inner).await?),
            Err(_) => Ok(false),
        }
    }

    /// Never fails: rmcp logs a failed close together with the (public) id.
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let inner = self
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(inner) = inner
            && let Err(e) = self.inner.close_session(&inner).await
        {
            tracing::warn!(cause = %e, "closing an MCP session failed");
        }
        Ok(())
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let inner = self.inner_id(id)?;
        Ok(boxed(self.inner.create_stream(&inner, message).await?))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        let inner = self.inner_id(id)?;
        Ok(self.inner.accept_message(&inner, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let inner = self.inner_id(id)?;
        Ok(boxed(self.inner.create_standalone_stream(&inner).await?))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let inner = self.inner_id(id)?;
        Ok(boxed(self.inner.resume(&inner, last_event_id).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn public_ids_are_not_rmcps_and_the_cap_holds() {
        let sessions = Sessions::new(LocalSessionManager::default(), 2);
        let (a, _ta) = sessions
            .create_session()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (b, _tb) = sessions
            .create_session()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, b);
        assert!(sessions.is_full());
        assert!(matches!(
            sessions.create_session().await,
            Err(SessionsError::Full { max: 2 })
        ));
        // rmcp's own ids are not accepted in place of ours.
        let inner = sessions.inner_id(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(inner, a);
        assert!(sessions.has_session(&a).await.unwrap_or(false));
        assert!(!sessions.has_session(&inner).await.unwrap_or(true));
        // Closing frees a place; closing twice is fine.
        sessions
            .close_session(&a)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sessions
            .close_session(&a)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sessions.open(), 1);
        assert!(!sessions.is_full());
        assert!(!sessions.has_session(&a).await.unwrap_or(true));
    }
}
