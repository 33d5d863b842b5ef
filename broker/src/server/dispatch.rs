//! Decodes a request frame, checks the API and version against what we implement
//! *before* decoding the body, and routes it to its handler.
//!
//! A handler runs in two parts: the part awaited here runs in request order on the
//! connection (so pipelined produce requests append in the order they were sent), and
//! the [`PendingResponse`] it returns (waiting for acks, long-polling fetches) completes
//! concurrently with later requests.
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::decode_budget::{with_budget, BudgetExceeded};
use kafka_protocol::protocol::Decodable;
use tracing::Instrument;

use super::api_versions;
use super::apis::{self, Request};
use super::context::{encode_frame, Outcome, PendingResponse, RequestContext};
use super::session::Session;
use crate::handlers;
use crate::limits::{Limit, DECODED_REQUEST_MAX_BYTES};
use crate::state::BrokerState;

/// Why a frame cannot be served (the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Shorter than a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// API key we do not know at all.
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    /// Known API, version not implemented.
    #[error("unsupported version {version} of {key:?} (supported: {range})")]
    UnsupportedVersion {
        /// The API.
        key: ApiKey,
        /// Version asked for.
        version: i16,
        /// What we support.
        range: String,
    },
    /// The header or body does not decode.
    #[error("cannot decode {key:?} v{version}: {reason}")]
    Malformed {
        /// The API.
        key: ApiKey,
        /// Its version.
        version: i16,
        /// Decoder message.
        reason: String,
    },
    /// The body decodes into more memory than one request may take.
    #[error("{key:?} v{version} decodes into more memory than one request may take: {reason}")]
    DecodesTooLarge {
        /// The API.
        key: ApiKey,
        /// Its version.
        version: i16,
        /// What the decoder needed.
        reason: String,
    },
}

impl DispatchError {
    /// Whether a limit, not malformed input, refused the frame (counted and logged by
    /// `crate::limits`, so the connection does not log it again).
    pub fn is_limit(&self) -> bool {
        matches!(self, DispatchError::DecodesTooLarge { .. })
    }
}

/// A frame after decoding.
#[derive(Debug)]
pub enum Decoded {
    /// A request we implement, in a version we implement.
    Request {
        /// Its API.
        key: ApiKey,
        /// Its version.
        version: i16,
        /// Correlation id to echo.
        correlation_id: i32,
        /// Client id from the header.
        client_id: String,
        /// The body (boxed: request structs are large, the other variant tiny).
        request: Box<Request>,
    },
    /// ApiVersions in a version we do not implement: answered in v0 (KIP-511).
    UnsupportedApiVersions {
        /// Correlation id to echo.
        correlation_id: i32,
    },
}

/// Decodes a frame (without its size prefix). Checks the API and version against what we
/// implement before touching the body. Never panics, whatever the bytes.
pub fn decode_frame(mut frame: Bytes) -> Result<Decoded, DispatchError> {
    if frame.len() < 8 {
        return Err(DispatchError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DispatchError::UnknownApi(raw_key))?;
    if !api_versions::is_supported(key, version) {
        if key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        let range = api_versions::supported_range(key)
            .map(|(a, b)| format!("{a}..={b}"))
            .unwrap_or_else(|| "none".to_string());
        return Err(DispatchError::UnsupportedVersion {
            key,
            version,
            range,
        });
    }
    let malformed = |reason: anyhow::Error| DispatchError::Malformed {
        key,
        version,
        reason: reason.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(malformed)?;
    // Arrays may decode into at most DECODED_REQUEST_MAX_BYTES, whatever the frame's size.
    let body = with_budget(DECODED_REQUEST_MAX_BYTES, || {
        apis::decode_body(key, &mut frame, version)
    });
    let request = match body {
        Some(Err(e)) if e.downcast_ref::<BudgetExceeded>().is_some() => {
            return Err(DispatchError::DecodesTooLarge {
                key,
                version,
                reason: e.to_string(),
            })
        }
        Some(decoded) => decoded.map_err(malformed)?,
        // In the supported table but not decodable: impossible by construction.
        None => return Err(DispatchError::UnknownApi(raw_key)),
    };
    Ok(Decoded::Request {
        key,
        version,
        correlation_id,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        request: Box::new(request),
    })
}

/// Handles one request frame; `Ok(None)` when no response is owed.
pub async fn dispatch(
    state: &Arc<BrokerState>,
    session: &Arc<Session>,
    frame: Bytes,
) -> Result<Option<PendingResponse>, DispatchError> {
    let start = std::time::Instant::now();
    let decoded = decode_frame(frame).inspect_err(|e| {
        // Frames of a known API that cannot be served count as that API's errors.
        if e.is_limit() {
            state.limits.hit(
                &state.metrics,
                Limit::DecodedRequestBytes,
                format_args!("closing connection from {}: {e}", session.peer),
            );
        }
        if let DispatchError::UnsupportedVersion { key, version, .. }
        | DispatchError::Malformed { key, version, .. }
        | DispatchError::DecodesTooLarge { key, version, .. } = e
        {
            let api = format!("{key:?}");
            let seconds = start.elapsed().as_secs_f64();
            state.metrics.record_request(&api, *version, true, seconds);
        }
    })?;
    let (key, version, correlation_id, client_id, request) = match decoded {
        Decoded::UnsupportedApiVersions { correlation_id } => {
            let body =
                handlers::api_versions::unsupported_version_response(&api_versions::advertised());
            let outcome = encode_frame(ApiKey::ApiVersions, 0, correlation_id, &body);
            return Ok(Some(Box::pin(async move { outcome })));
        }
        Decoded::Request {
            key,
            version,
            correlation_id,
            client_id,
            request,
        } => (key, version, correlation_id, client_id, request),
    };
    let ctx = RequestContext {
        state: state.clone(),
        api_key: key,
        api_version: version,
        correlation_id,
        client_id,
        session: session.clone(),
        answered_error: Arc::default(),
    };
    let span = tracing::debug_span!("request", api = ?key, version, correlation_id, client = %ctx.client_id);
    let answered_error = ctx.answered_error.clone();
    let pending = apis::route(ctx, *request).instrument(span).await;
    Ok(timed(
        state.clone(),
        key,
        version,
        start,
        answered_error,
        pending,
    ))
}

/// Records the request in the metrics once its response is ready (for acks=0 produce
/// with nothing to answer, at once). It counts as an error when the response carries any
/// error code, or closes the connection.
fn timed(
    state: Arc<BrokerState>,
    key: ApiKey,
    version: i16,
    start: std::time::Instant,
    answered_error: Arc<std::sync::atomic::AtomicBool>,
    pending: Option<PendingResponse>,
) -> Option<PendingResponse> {
    let record = move |outcome: &Outcome| {
        let error = matches!(outcome, Outcome::Close)
            || answered_error.load(std::sync::atomic::Ordering::Relaxed);
        let api = format!("{key:?}");
        let seconds = start.elapsed().as_secs_f64();
        state.metrics.record_request(&api, version, error, seconds);
    };
    match pending {
        None => {
            record(&Outcome::Nothing);
            None
        }
        Some(pending) => Some(Box::pin(async move {
            let outcome = pending.await;
            record(&outcome);
            outcome
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(key: i16, version: i16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&key.to_be_bytes());
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&7i32.to_be_bytes());
        v
    }

    #[test]
    fn unknown_api_and_version_are_errors() {
        assert!(matches!(
            decode_frame(Bytes::from(header(999, 0))),
            Err(DispatchError::UnknownApi(999))
        ));
        // AddPartitionsToTxn exists in Kafka but not here (no transactions).
        assert!(matches!(
            decode_frame(Bytes::from(header(ApiKey::AddPartitionsToTxn as i16, 0))),
            Err(DispatchError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_frame(Bytes::from(header(ApiKey::Produce as i16, 99))),
            Err(DispatchError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_frame(Bytes::from(header(ApiKey::ApiVersions as i16, 99))),
            Ok(Decoded::UnsupportedApiVersions { correlation_id: 7 })
        ));
        assert!(matches!(
            decode_frame(Bytes::from_static(b"abc")),
            Err(DispatchError::TooShort(3))
        ));
    }

    /// An 8-byte body claiming 2^31-1 topics must be refused, not allocated.
    #[test]
    fn huge_array_counts_are_refused_without_allocating() {
        let mut frame = header(ApiKey::Metadata as i16, 1);
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        frame.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_frame(Bytes::from(frame)),
            Err(DispatchError::Malformed { .. })
        ));
        let mut frame = header(ApiKey::Produce as i16, 3);
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // null transactional id
        frame.extend_from_slice(&1i16.to_be_bytes());
        frame.extend_from_slice(&1000i32.to_be_bytes());
        frame.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_frame(Bytes::from(frame)),
            Err(DispatchError::Malformed { .. })
        ));
    }

    /// Metadata v1 listing `n` empty topic names: two bytes each on the wire, a whole
    /// struct each decoded.
    fn metadata_of_empty_names(n: usize) -> Bytes {
        let mut frame = header(ApiKey::Metadata as i16, 1);
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        frame.extend_from_slice(&(n as i32).to_be_bytes());
        frame.resize(frame.len() + 2 * n, 0);
        Bytes::from(frame)
    }

    /// 5 MiB of empty names would decode into ~180 MiB of structs: refused as a limit
    /// (not as malformed input) before they are reserved. Without the decode budget it
    /// decodes (the wire-bytes check alone lets it through).
    #[test]
    fn requests_that_decode_into_too_much_memory_are_refused() {
        match decode_frame(metadata_of_empty_names(2_500_000)) {
            Err(e @ DispatchError::DecodesTooLarge { .. }) => {
                assert!(e.is_limit());
                assert!(e.to_string().contains("decode budget"), "{e}");
            }
            other => panic!("expected DecodesTooLarge, got {other:?}"),
        }
        // A large but sane request still decodes.
        match decode_frame(metadata_of_empty_names(100_000)) {
            Ok(Decoded::Request { request, .. }) => match *request {
                Request::Metadata(m) => assert_eq!(m.topics.map(|t| t.len()), Some(100_000)),
                other => panic!("decoded as {other:?}"),
            },
            other => panic!("100000 names must decode: {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(Bytes::from(bytes));
        }

        /// Valid headers of every supported API and version, followed by arbitrary bodies.
        #[test]
        fn arbitrary_bodies_never_panic(
            which in 0usize..api_versions::SUPPORTED.len(),
            v in 0i16..20,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let (key, min, max) = api_versions::SUPPORTED[which];
            let version = min + v % (max - min + 1);
            let mut frame = header(key as i16, version);
            frame.extend_from_slice(&body);
            let _ = decode_frame(Bytes::from(frame));
        }
    }
}
