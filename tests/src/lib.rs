//! Test harness: in-process single-node clusters on 127.0.0.1 with ephemeral ports, and a
//! raw Kafka request helper for tests that must speak the wire protocol byte by byte.
//!
//! Real-client compatibility tests (kcat, confluent-kafka, kafka-python) live in
//! `tests/python/` and start the `spate` binary instead.
pub mod acks;
pub mod cluster;
pub mod http;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spate::node::{Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A single combined node in this process, with its own temporary data dir.
pub struct TestNode {
    node: Option<Node>,
    config: NodeConfig,
    _dir: Option<tempfile::TempDir>,
}

impl TestNode {
    /// Starts a node in a fresh temporary directory.
    pub async fn start() -> anyhow::Result<TestNode> {
        let dir = tempfile::tempdir()?;
        let mut node = TestNode::start_in(dir.path()).await?;
        node._dir = Some(dir);
        Ok(node)
    }

    /// Starts a node in a fresh temporary directory, with `configure` applied to its
    /// settings first.
    pub async fn start_with(configure: impl FnOnce(&mut NodeConfig)) -> anyhow::Result<TestNode> {
        let dir = tempfile::tempdir()?;
        let mut config = NodeConfig::ephemeral(dir.path());
        configure(&mut config);
        let node = Node::start(config.clone()).await?;
        Ok(TestNode {
            node: Some(node),
            config,
            _dir: Some(dir),
        })
    }

    /// Starts a node on an existing data directory (kept by the caller).
    pub async fn start_in(data_dir: &Path) -> anyhow::Result<TestNode> {
        let config = NodeConfig::ephemeral(data_dir);
        let node = Node::start(config.clone()).await?;
        Ok(TestNode {
            node: Some(node),
            config,
            _dir: None,
        })
    }

    /// The Kafka bootstrap address.
    pub fn bootstrap(&self) -> String {
        self.kafka_addr().to_string()
    }

    /// The bound Kafka address.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.node
            .as_ref()
            .and_then(|n| n.kafka_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The broker's Prometheus metrics, as `/metrics` renders them.
    pub fn metrics_text(&self) -> String {
        match self.node.as_ref().and_then(|n| n.broker.as_ref()) {
            Some(broker) => {
                let state = broker.state();
                state.metrics.render(&state.scrape_sources())
            }
            None => String::new(),
        }
    }

    /// The value of the sample `series` (name and labels, as rendered) in the metrics.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics_text()
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Clean shutdown and start again on the same data (new ports).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        self.node = Some(Node::start(self.config.clone()).await.context("restart")?);
        Ok(())
    }

    /// Clean shutdown.
    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }
}

/// One raw Kafka connection for wire-level tests.
pub struct RawConnection {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawConnection {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<RawConnection> {
        Ok(RawConnection {
            stream: TcpStream::connect(addr).await?,
            correlation_id: 0,
        })
    }

    /// Writes raw bytes (no framing added).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Sends a request of `key` at `version` and decodes the response.
    pub async fn request<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> anyhow::Result<Resp> {
        let correlation_id = self.send(key, version, body).await?;
        self.receive(key, version, correlation_id).await
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub async fn send<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> anyhow::Result<i32> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("spate-tests")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, key.request_header_version(version))?;
        body.encode(&mut buf, version)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).await?;
        Ok(self.correlation_id)
    }

    /// Reads the next response, which must be the one to `correlation_id`.
    pub async fn receive<Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> anyhow::Result<Resp> {
        let mut frame = self.read_frame().await?;
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))?;
        anyhow::ensure!(
            header.correlation_id == correlation_id,
            "correlation id mismatch: got {}, expected {correlation_id}",
            header.correlation_id
        );
        Resp::decode(&mut frame, version)
    }

    /// Reads one response frame (after the size prefix).
    pub async fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        let size = self.stream.read_i32().await?;
        anyhow::ensure!(size >= 0, "negative response size");
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).await?;
        Ok(Bytes::from(buf))
    }

    /// Whether the broker closed the connection (reads EOF within a second).
    pub async fn is_closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                self.stream.read(&mut byte)
            )
            .await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Decodes an i16 error code at the start of a buffer (for hand-made responses).
pub fn leading_i16(mut b: Bytes) -> i16 {
    b.get_i16()
}

/// Encodes one uncompressed RecordBatch v2 of `values` (keys `k<i>`), for raw produce tests.
pub fn encode_batch(
    values: &[&[u8]],
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<Bytes> {
    encode_producer_batch(values, compression, -1, -1, -1)
}

/// Like [`encode_batch`], from an idempotent producer: id, epoch and first sequence.
pub fn encode_producer_batch(
    values: &[&[u8]],
    compression: kafka_protocol::records::Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> anyhow::Result<Bytes> {
    let sequence = |i: usize| {
        if producer_id < 0 {
            -1
        } else {
            base_sequence + i as i32
        }
    };
    encode_records(values, compression, producer_id, producer_epoch, sequence)
}

/// Like [`encode_batch`], but every record in one batch (the encoder starts a new batch
/// whenever offset minus sequence changes, so records without an id and with sequence
/// -1 each get their own).
pub fn encode_one_batch(
    values: &[&[u8]],
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<Bytes> {
    encode_records(values, compression, -1, -1, |i| i as i32)
}

/// One batch of (key, value) records; None is a null key or value (a tombstone).
pub fn encode_keyed_batch(
    records: &[(Option<&[u8]>, Option<&[u8]>)],
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<Bytes> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // One batch: offset minus sequence stays constant.
            sequence: i as i32,
            timestamp: now,
            key: k.map(Bytes::copy_from_slice),
            value: v.map(Bytes::copy_from_slice),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

fn encode_records(
    values: &[&[u8]],
    compression: kafka_protocol::records::Compression,
    producer_id: i64,
    producer_epoch: i16,
    sequence: impl Fn(usize) -> i32,
) -> anyhow::Result<Bytes> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: sequence(i),
            timestamp: now,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}
