//! One TCP connection to one broker: framing, correlation ids, pipelining, version choice.
//!
//! A writer task sends frames in the order callers queue them and records each one in the
//! in-flight queue *before* writing it; a reader task pops that queue for every response.
//! Kafka answers requests on one connection in order, so the popped entry must carry the
//! response's correlation id; anything else means the stream is out of sync and the
//! connection is closed. Closing drops every waiter, which then sees `ConnectionClosed`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::codec;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::versions::{VersionTable, API_VERSIONS_FIRST};

/// Kafka's UNSUPPORTED_VERSION: the broker then answers ApiVersions in v0.
const UNSUPPORTED_VERSION: i16 = 35;

/// A connection to one broker; cheap to share behind an `Arc`.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    permits: Semaphore,
    versions: VersionTable,
    next_correlation: AtomicI32,
    shared: Arc<Shared>,
    request_timeout: Duration,
}

struct Shared {
    state: Mutex<InFlight>,
    shutdown: watch::Sender<bool>,
}

struct InFlight {
    queue: VecDeque<Pending>,
    closed: bool,
}

struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Bytes>,
}

struct Outgoing {
    frame: Bytes,
    correlation_id: i32,
    reply: Reply,
}

enum Reply {
    /// Wait for the response frame.
    Response(oneshot::Sender<Bytes>),
    /// No response will come (Produce with acks=0): report once written.
    Written(oneshot::Sender<()>),
}

impl Shared {
    fn close(&self) {
        let drained = match self.state.lock() {
            Ok(mut s) => {
                s.closed = true;
                std::mem::take(&mut s.queue)
            }
            Err(_) => VecDeque::new(),
        };
        // Dropping the senders wakes every waiter with an error.
        drop(drained);
        self.shutdown.send_replace(true);
    }

    fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.closed).unwrap_or(true)
    }
}

impl Connection {
    /// Connects, starts the I/O tasks and negotiates API versions.
    pub async fn connect(addr: &str, config: &ClientConfig) -> Result<Connection> {
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                api: "connect".into(),
                addr: addr.to_string(),
                ms: config.connect_timeout.as_millis() as u64,
            })?
            .map_err(|e| Error::io(addr, e))?;
        // Small requests (metadata, acks) must not wait for Nagle.
        stream.set_nodelay(true).map_err(|e| Error::io(addr, e))?;
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(InFlight {
                queue: VecDeque::new(),
                closed: false,
            }),
            shutdown,
        });
        tokio::spawn(write_loop(
            BufWriter::with_capacity(64 * 1024, write),
            rx,
            shared.clone(),
        ));
        tokio::spawn(read_loop(
            BufReader::with_capacity(64 * 1024, read),
            shared.clone(),
            config.max_response_size,
            addr.to_string(),
        ));
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            outgoing: tx,
            permits: Semaphore::new(config.max_in_flight.max(1)),
            versions: VersionTable::default(),
            next_correlation: AtomicI32::new(0),
            shared,
            request_timeout: config.request_timeout,
        };
        let table = conn.api_versions().await?;
        conn.versions = table;
        tracing::debug!(addr, "connected");
        Ok(conn)
    }

    /// The broker address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection died; the cluster then opens a new one.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes the connection; waiting requests fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.shared.close();
    }

    /// The version to use for `api`: the highest both sides support.
    pub fn api_version(&self, api: ApiKey) -> Result<i16> {
        self.versions
            .pick(api)
            .map_err(|detail| Error::UnsupportedVersion {
                api: format!("{api:?}"),
                addr: self.addr.clone(),
                detail,
            })
    }

    /// Sends a request at `version` and waits for its response (request timeout).
    pub async fn request<R: Request>(&self, version: i16, req: &R) -> Result<R::Response> {
        self.request_with_timeout(version, req, self.request_timeout)
            .await
    }

    /// Like [`Connection::request`] with an explicit timeout (Fetch adds its max wait).
    pub async fn request_with_timeout<R: Request>(
        &self,
        version: i16,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let frame = self.request_raw(version, req, timeout).await?;
        codec::decode_response::<R>(frame, version)
    }

    /// Sends a request the broker will not answer (Produce with acks=0); returns once written.
    pub async fn send_oneway<R: Request>(&self, version: i16, req: &R) -> Result<()> {
        let _permit = self.permit().await?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(version, req, Reply::Written(tx))?;
        self.await_reply(R::KEY, rx, self.request_timeout).await
    }

    /// A slot among the requests allowed in flight on this connection.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.permits
            .acquire()
            .await
            .map_err(|_| self.closed_error())
    }

    /// Encodes `req` with a fresh correlation id and hands it to the writer.
    fn enqueue<R: Request>(&self, version: i16, req: &R, reply: Reply) -> Result<()> {
        let correlation_id = self.next_correlation();
        let frame = codec::encode_request(req, version, correlation_id, &self.client_id)?;
        self.outgoing
            .send(Outgoing {
                frame,
                correlation_id,
                reply,
            })
            .map_err(|_| self.closed_error())
    }

    /// Sends and returns the response frame with its header still on.
    async fn request_raw<R: Request>(
        &self,
        version: i16,
        req: &R,
        timeout: Duration,
    ) -> Result<Bytes> {
        let _permit = self.permit().await?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(version, req, Reply::Response(tx))?;
        self.await_reply(R::KEY, rx, timeout).await
    }

    async fn await_reply<T>(
        &self,
        api: i16,
        rx: oneshot::Receiver<T>,
        timeout: Duration,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                // As the Java client does: a broker that misses a deadline is presumed stuck,
                // so drop the connection and let the next request reconnect.
                tracing::warn!(addr = %self.addr, api = %codec::api_name(api), "request timed out; closing connection");
                self.close();
                Err(Error::Timeout {
                    api: codec::api_name(api),
                    addr: self.addr.clone(),
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    fn next_correlation(&self) -> i32 {
        // Wrapping is fine: only uniqueness among requests in flight matters.
        self.next_correlation.fetch_add(1, Ordering::Relaxed)
    }

    fn closed_error(&self) -> Error {
        Error::ConnectionClosed(self.addr.clone())
    }

    /// ApiVersions, first at v3; a broker that does not know v3 answers with
    /// UNSUPPORTED_VERSION in v0 body format and still lists its ranges, which is all we need.
    async fn api_versions(&self) -> Result<VersionTable> {
        let version = API_VERSIONS_FIRST;
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("spate-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut frame = self
            .request_raw(version, &req, self.request_timeout)
            .await?;
        codec::strip_response_header::<ApiVersionsRequest>(&mut frame, version)?;
        let error_code = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
        let body_version = if error_code == Some(UNSUPPORTED_VERSION) {
            0
        } else {
            version
        };
        let resp = ApiVersionsResponse::decode(&mut frame, body_version).map_err(|e| {
            Error::protocol(format!("cannot decode ApiVersions from {}: {e}", self.addr))
        })?;
        if resp.error_code != 0 && resp.error_code != UNSUPPORTED_VERSION {
            return Err(Error::from_code(
                resp.error_code,
                None,
                format!("ApiVersions to {}", self.addr),
            )
            .unwrap_or_else(|| Error::protocol("ApiVersions failed")));
        }
        Ok(VersionTable::negotiate(
            resp.api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        ))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close();
    }
}

async fn write_loop(
    mut writer: BufWriter<OwnedWriteHalf>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut written = Vec::new();
    loop {
        let first = tokio::select! {
            msg = rx.recv() => msg,
            _ = shutdown.wait_for(|closed| *closed) => None,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        let mut ok = true;
        // Write everything already queued before one flush: fewer syscalls under load.
        while let Some(msg) = next.take() {
            if !register(&shared, msg.correlation_id, msg.reply, &mut written) {
                ok = false;
                break;
            }
            if writer.write_all(&msg.frame).await.is_err() {
                ok = false;
                break;
            }
            next = rx.try_recv().ok();
        }
        if !ok || writer.flush().await.is_err() {
            break;
        }
        for done in written.drain(..) {
            let _ = done.send(());
        }
    }
    shared.close();
}

/// Records a request as in flight before its bytes go out; false once the connection closed.
fn register(
    shared: &Shared,
    correlation_id: i32,
    reply: Reply,
    written: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    match reply {
        Reply::Response(reply) => match shared.state.lock() {
            Ok(mut s) if !s.closed => {
                s.queue.push_back(Pending {
                    correlation_id,
                    reply,
                });
                true
            }
            _ => false,
        },
        Reply::Written(done) => {
            written.push(done);
            !shared.is_closed()
        }
    }
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    shared: Arc<Shared>,
    max_size: usize,
    addr: String,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut reader, max_size) => f,
            _ = shutdown.wait_for(|closed| *closed) => break,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                if !matches!(&e, Error::ConnectionClosed(_)) {
                    tracing::warn!(%addr, error = %e, "closing connection");
                }
                break;
            }
        };
        let Some(correlation_id) = codec::correlation_id(&frame) else {
            break;
        };
        let pending = match shared.state.lock() {
            Ok(mut s) => s.queue.pop_front(),
            Err(_) => None,
        };
        match pending {
            Some(p) if p.correlation_id == correlation_id => {
                // The waiter may have timed out; its response is then dropped.
                let _ = p.reply.send(frame);
            }
            other => {
                tracing::warn!(%addr, correlation_id, expected = ?other.map(|p| p.correlation_id),
                    "response does not match the oldest request in flight; closing connection");
                break;
            }
        }
    }
    shared.close();
}

/// Reads one size-prefixed frame, refusing bad sizes before allocating.
async fn read_frame(reader: &mut BufReader<OwnedReadHalf>, max_size: usize) -> Result<Bytes> {
    let size = match reader.read_i32().await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Error::ConnectionClosed(String::new()))
        }
        Err(e) => return Err(Error::io("", e)),
    };
    if size < 4 || size as usize > max_size {
        return Err(Error::protocol(format!(
            "response frame size {size} outside 4..={max_size}"
        )));
    }
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = size - buf.len();
        let n = reader
            .read_buf(&mut (&mut buf).limit(want))
            .await
            .map_err(|e| Error::io("", e))?;
        if n == 0 {
            return Err(Error::protocol(
                "connection closed in the middle of a frame",
            ));
        }
    }
    Ok(buf.freeze())
}
