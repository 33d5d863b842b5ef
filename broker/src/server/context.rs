//! What a handler is given and gives back: the [`RequestContext`] of one request (broker
//! state, API and version, the connection's session) and the [`Outcome`] the
//! connection writes. Handlers depend on this module, `dispatch` on the handlers.
use std::future::Future;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use super::response_errors::ResponseErrors;
use super::session::Session;
use crate::limits::ResponseBytes;
use crate::state::BrokerState;

/// What the connection writer does once a request is handled.
pub enum Outcome {
    /// Write this frame.
    Send(Bytes),
    /// Write this frame, then give back the connection's response bytes it held.
    SendHolding(Bytes, ResponseBytes),
    /// Nothing to write (acks=0 produce).
    Nothing,
    /// Close the connection (the response could not be encoded).
    Close,
}

/// A response still being computed; resolves in request order on the connection.
pub type PendingResponse = BoxFuture<'static, Outcome>;

/// Per-request facts handlers need.
#[derive(Clone)]
pub struct RequestContext {
    /// Shared broker state.
    pub state: Arc<BrokerState>,
    /// API of this request.
    pub api_key: ApiKey,
    /// Version of this request.
    pub api_version: i16,
    /// Correlation id to echo.
    pub correlation_id: i32,
    /// The client's self-reported id.
    pub client_id: String,
    /// The connection's session: listener, peer address, principal.
    pub session: Arc<Session>,
    /// Set when the response carries an error code (for the request metrics).
    pub answered_error: Arc<std::sync::atomic::AtomicBool>,
}

impl RequestContext {
    /// Encodes `body` as this request's response frame.
    pub fn encode<R: Encodable>(&self, body: &R) -> Outcome {
        encode_frame(self.api_key, self.api_version, self.correlation_id, body)
    }

    /// A response that is already known.
    pub fn ready<R: Encodable + ResponseErrors>(&self, body: &R) -> PendingResponse {
        self.note_errors(body);
        let outcome = self.encode(body);
        Box::pin(async move { outcome })
    }

    /// A response that completes later.
    pub fn later<R, F>(&self, fut: F) -> PendingResponse
    where
        R: Encodable + ResponseErrors + Send + 'static,
        F: Future<Output = R> + Send + 'static,
    {
        let ctx = self.clone();
        Box::pin(async move {
            let body = fut.await;
            ctx.note_errors(&body);
            ctx.encode(&body)
        })
    }

    /// A response that completes later with the response bytes it holds until it is
    /// written.
    pub fn later_holding<R, F>(&self, fut: F) -> PendingResponse
    where
        R: Encodable + ResponseErrors + Send + 'static,
        F: Future<Output = (R, ResponseBytes)> + Send + 'static,
    {
        let ctx = self.clone();
        Box::pin(async move {
            let (body, held) = fut.await;
            ctx.note_errors(&body);
            match ctx.encode(&body) {
                Outcome::Send(frame) => Outcome::SendHolding(frame, held),
                other => other,
            }
        })
    }

    fn note_errors<R: ResponseErrors>(&self, body: &R) {
        if body.has_error() {
            self.answered_error
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pub(crate) fn encode_frame<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Outcome {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = key.response_header_version(version);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let encoded = header
        .encode(&mut buf, header_version)
        .and_then(|_| body.encode(&mut buf, version));
    if let Err(e) = encoded {
        tracing::error!(api = ?key, version, error = %e, "cannot encode response; closing connection");
        return Outcome::Close;
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Outcome::Send(buf.freeze())
}
