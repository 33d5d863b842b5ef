//! One client connection: reads size-prefixed frames, hands each to dispatch in arrival
//! order, and writes responses in that same order while later requests are already
//! being handled (pipelining). A frame that is too large, negative or undecodable closes
//! this connection only.
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::dispatch::{self, Outcome, PendingResponse};
use crate::broker::BrokerState;

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

/// A client connection being served.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    state: Arc<BrokerState>,
}

impl Connection {
    /// Wraps a socket accepted on the listener called `listener`.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        listener: Arc<str>,
        state: Arc<BrokerState>,
    ) -> Self {
        Connection {
            stream,
            peer,
            listener,
            state,
        }
    }

    /// Serves the connection until the peer closes it, it misbehaves, or shutdown.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let Connection {
            stream,
            peer,
            listener,
            state,
        } = self;
        let (read_half, write_half) = stream.into_split();
        let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
        let writer = tokio::spawn(write_responses(write_half, rx, peer));
        let max = state.config.max_request_bytes;
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut reader, max) => f,
                _ = shutdown.changed() => break,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    break;
                }
            };
            match dispatch::dispatch(&state, peer, &listener, frame).await {
                Ok(Some(pending)) => {
                    if tx.send(pending).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad request");
                    break;
                }
            }
        }
        drop(tx);
        // Let responses already owed go out before the socket closes.
        let _ = writer.await;
    }
}

/// Reads one frame; `None` on a clean end of stream between frames.
async fn read_frame(
    reader: &mut BufReader<OwnedReadHalf>,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
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
    Ok(Some(buf.freeze()))
}

/// Awaits pending responses concurrently and writes them strictly in request order.
async fn write_responses(
    write_half: OwnedWriteHalf,
    mut rx: mpsc::Receiver<PendingResponse>,
    peer: SocketAddr,
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
                    match done {
                        Outcome::Send(bytes) => {
                            if let Err(e) = writer.write_all(&bytes).await {
                                tracing::debug!(%peer, error = %e, "write failed");
                                return;
                            }
                        }
                        Outcome::Nothing => {}
                        Outcome::Close => {
                            let _ = writer.flush().await;
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
