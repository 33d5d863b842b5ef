//! One client connection: reads size-prefixed frames, hands each to dispatch in arrival
//! order, and writes responses in that same order while later requests are already
//! being handled (pipelining). A frame that is too large, negative or undecodable closes
//! this connection only.
//!
//! The connection is generic over its byte stream (plain TCP today; a TLS stream is the
//! same to it), and owns the connection's [`Session`].
//!
//! Limits (`crate::limits`): each frame's bytes are reserved from the broker's
//! `queued.max.request.bytes` before its body is read (reading waits while the budget is
//! spent) and given back when its response is ready; a connection with no complete request
//! and no response owed for `connections.max.idle.ms` is closed, also in the middle of a
//! frame that trickles in.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};

use super::context::{Outcome, PendingResponse};
use super::dispatch;
use super::session::Session;
use crate::limits::{Limit, RequestBytes};
use crate::state::BrokerState;

/// Requests whose responses may be outstanding at once on one connection.
const MAX_IN_FLIGHT: usize = 256;

/// Why a connection stopped reading.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a size outside `0..=max`.
    #[error("frame size {size} outside 0..={max}")]
    BadSize {
        /// Announced size.
        size: i64,
        /// Largest accepted.
        max: usize,
    },
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Any byte stream a Kafka client can be served over.
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ClientStream for T {}

/// A client connection being served.
pub struct Connection<S> {
    stream: S,
    session: Arc<Session>,
    state: Arc<BrokerState>,
}

impl<S: ClientStream> Connection<S> {
    /// Wraps a stream accepted from `peer` on the listener called `listener`.
    pub fn new(stream: S, peer: SocketAddr, listener: Arc<str>, state: Arc<BrokerState>) -> Self {
        Connection {
            stream,
            session: Arc::new(Session::new(
                listener,
                peer,
                state.config.network.fetch_max_bytes,
            )),
            state,
        }
    }

    /// The connection's session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Serves the connection until the peer closes it, it misbehaves, or shutdown.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let Connection {
            stream,
            session,
            state,
        } = self;
        let peer = session.peer;
        let (read_half, write_half) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
        // Responses owed to the client: while any is, the connection is not idle.
        let owed = Arc::new(AtomicUsize::new(0));
        let mut writer = tokio::spawn(write_responses(write_half, rx, peer, owed.clone()));
        let mut writer_done = false;
        let max = state.config.network.max_request_bytes;
        let idle = state.limits.idle_timeout();
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        'connection: loop {
            let next = read_frame(&mut reader, max, &state);
            tokio::pin!(next);
            let mut idle_since = tokio::time::Instant::now();
            let frame = loop {
                tokio::select! {
                    f = &mut next => break f,
                    _ = shutdown.changed() => break 'connection,
                    // The writer closed the connection (a response that must close it, or
                    // a failed write): stop reading too, so the stream is dropped whole.
                    _ = &mut writer => {
                        writer_done = true;
                        break 'connection;
                    }
                    _ = tokio::time::sleep_until(idle_since + idle) => {
                        if owed.load(Ordering::SeqCst) > 0 {
                            idle_since = tokio::time::Instant::now();
                            continue;
                        }
                        state.limits.hit(&state.metrics, Limit::ConnectionsMaxIdle, format_args!(
                            "closing connection from {peer}: no complete request for {} ms",
                            idle.as_millis()));
                        break 'connection;
                    }
                }
            };
            let (frame, request_bytes) = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    break;
                }
            };
            match dispatch::dispatch(&state, &session, frame).await {
                Ok(Some(pending)) => {
                    owed.fetch_add(1, Ordering::SeqCst);
                    // The request's bytes go back to the budget once its response is ready.
                    let pending: PendingResponse = Box::pin(async move {
                        let outcome = pending.await;
                        drop(request_bytes);
                        outcome
                    });
                    if tx.send(pending).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_limit() => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad request");
                    break;
                }
            }
        }
        drop(tx);
        // Let responses already owed go out before the socket closes.
        if !writer_done {
            let _ = writer.await;
        }
    }
}

/// Reads one frame, with its bytes reserved from `queued.max.request.bytes`; `None` on a
/// clean end of stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max: usize,
    state: &BrokerState,
) -> Result<Option<(Bytes, RequestBytes)>, FrameError> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if size < 0 || size as usize > max {
        return Err(FrameError::BadSize {
            size: size as i64,
            max,
        });
    }
    let size = size as usize;
    let (reserved, waited) = state.limits.reserve_request(size).await;
    if waited {
        state.limits.hit(
            &state.metrics,
            Limit::QueuedMaxRequestBytes,
            format_args!("request bytes in flight reached the budget; reading paused until responses are ready"),
        );
    }
    // Grow with the bytes that actually arrive, so a peer announcing a large frame and
    // sending nothing cannot make us hold `size` bytes.
    let mut buf = BytesMut::with_capacity(size.min(64 * 1024));
    while buf.len() < size {
        let want = (size - buf.len()).min(1024 * 1024);
        buf.reserve(want);
        let n = (&mut *reader).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("truncated frame: got {} of {size} bytes", buf.len()),
            )
            .into());
        }
    }
    Ok(Some((buf.freeze(), reserved)))
}

/// Awaits pending responses concurrently and writes them strictly in request order.
async fn write_responses<W: AsyncWrite + Unpin>(
    write_half: W,
    mut rx: mpsc::Receiver<PendingResponse>,
    peer: SocketAddr,
    owed: Arc<AtomicUsize>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = rx.recv(), if open && pending.len() < MAX_IN_FLIGHT => match next {
                Some(p) => pending.push_back(p),
                None => open = false,
            },
            Some(done) = pending.next(), if !pending.is_empty() => {
                let mut next = Some(done);
                // Write every response that is already complete, then flush once, so a
                // long-polling fetch further back never holds finished responses back.
                while let Some(done) = next {
                    owed.fetch_sub(1, Ordering::SeqCst);
                    match done {
                        Outcome::Send(bytes) => {
                            if let Err(e) = writer.write_all(&bytes).await {
                                tracing::debug!(%peer, error = %e, "write failed");
                                return;
                            }
                        }
                        Outcome::SendHolding(bytes, held) => {
                            if let Err(e) = writer.write_all(&bytes).await {
                                tracing::debug!(%peer, error = %e, "write failed");
                                return;
                            }
                            // Written to the socket's buffer: the bytes it reserved of the
                            // connection's response budget come back.
                            drop(held);
                        }
                        Outcome::Nothing => {}
                        Outcome::Close => {
                            let _ = writer.flush().await;
                            let _ = writer.shutdown().await;
                            return;
                        }
                    }
                    next = pending.next().now_or_never().flatten();
                }
                if let Err(e) = writer.flush().await {
                    tracing::debug!(%peer, error = %e, "flush failed");
                    return;
                }
            },
            else => break,
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    /// A connection serves any byte stream: here an in-memory pipe, no socket.
    #[tokio::test]
    async fn serves_api_versions_over_an_in_memory_stream() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(BrokerState::unconnected(dir.path()));
        let (client, server) = tokio::io::duplex(64 * 1024);
        let conn = Connection::new(
            server,
            "127.0.0.1:4000".parse().unwrap(),
            Arc::from("PLAINTEXT"),
            state,
        );
        assert_eq!(conn.session().principal().to_string(), "User:ANONYMOUS");
        let (_stop, shutdown) = watch::channel(false);
        let served = tokio::spawn(conn.serve(shutdown));

        // ApiVersions v0: api key 18, version 0, correlation id 7, client id "t".
        let mut body = BytesMut::new();
        body.put_i16(18);
        body.put_i16(0);
        body.put_i32(7);
        body.put_i16(1);
        body.put_slice(b"t");
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_i32(body.len() as i32).await.unwrap();
        wr.write_all(&body).await.unwrap();
        let size = rd.read_i32().await.unwrap();
        let mut resp = vec![0u8; size as usize];
        rd.read_exact(&mut resp).await.unwrap();
        let mut resp = &resp[..];
        assert_eq!(resp.get_i32(), 7, "correlation id");
        assert_eq!(resp.get_i16(), 0, "error code");
        assert!(resp.get_i32() > 10, "the supported API ranges");

        drop(wr);
        drop(rd);
        tokio::time::timeout(std::time::Duration::from_secs(5), served)
            .await
            .expect("the connection ends when the client goes away")
            .unwrap();
    }
}
