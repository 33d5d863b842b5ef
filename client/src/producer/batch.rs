//! A producer batch: records bound for one partition, their RecordBatch v2 encoding, and
//! the one completion every record's future shares (one allocation per batch, not per record).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::future::{FutureExt, Shared};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::types::{Compression, Header, TopicPartition};

/// Bytes a record adds to a batch beyond key, value and headers (varints, deltas, attributes);
/// an estimate for batch sizing and buffer accounting, not an exact size.
pub const RECORD_OVERHEAD: usize = 21;
/// The fixed RecordBatch v2 header size.
pub const BATCH_HEADER: usize = 61;

/// What the broker said about a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchAck {
    /// Offset of the first record (-1 with acks=0).
    pub base_offset: i64,
    /// The broker's append time for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    /// When the acknowledgement was processed.
    pub acked_at: Instant,
}

type BatchResult = Result<BatchAck>;
type SharedResult = Shared<oneshot::Receiver<BatchResult>>;

/// Records for one partition on their way to the broker.
pub struct ProducerBatch {
    /// Where the batch goes.
    pub tp: TopicPartition,
    /// Creation order within the partition, to keep order when retries re-queue.
    pub seq: u64,
    /// When the first record arrived (linger and delivery timeout start here).
    pub created: Instant,
    /// Estimated uncompressed size; also the buffer memory it holds.
    pub bytes: usize,
    /// Set once no more records may join.
    pub full: bool,
    /// Sends so far.
    pub attempts: u32,
    /// Not to be sent before this (retry backoff).
    pub retry_at: Option<Instant>,
    /// Idempotent producers: the first record's sequence, set on the first send and kept
    /// across retries of the same producer epoch; re-stamped only after an epoch bump.
    base_sequence: Option<i32>,
    /// Idempotent producers: the producer id and epoch the batch was stamped with.
    producer: Option<(i64, i16)>,
    /// Idempotent producers: some attempt ended without a definite answer (the broker may
    /// have written it) and none settled it since (an ack, DUPLICATE_SEQUENCE_NUMBER or a
    /// sequence error), so it must be retried under the same epoch before any bump.
    pub unresolved: bool,
    records: Vec<Record>,
    record_count: usize,
    encoded: Option<Bytes>,
    done: Option<oneshot::Sender<BatchResult>>,
    shared: SharedResult,
}

impl ProducerBatch {
    /// An empty batch.
    pub fn new(tp: TopicPartition, seq: u64, now: Instant) -> Self {
        let (tx, rx) = oneshot::channel();
        Self {
            tp,
            seq,
            created: now,
            bytes: BATCH_HEADER,
            full: false,
            attempts: 0,
            retry_at: None,
            base_sequence: None,
            producer: None,
            unresolved: false,
            records: Vec::new(),
            record_count: 0,
            encoded: None,
            done: Some(tx),
            shared: rx.shared(),
        }
    }

    /// Whether a record of `size` bytes fits under `batch_size` (an empty batch takes
    /// anything). A batch that was sent once is closed: its encoding (and, for an
    /// idempotent producer, its sequence range) is fixed, so a record added while it waits
    /// for a retry would be acknowledged with the batch's offsets without ever being sent.
    pub fn has_room(&self, size: usize, batch_size: usize) -> bool {
        !self.full
            && self.encoded.is_none()
            && (self.record_count == 0 || self.bytes + size <= batch_size)
    }

    /// Adds a record and returns the future for it.
    pub fn push(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header>,
        timestamp: i64,
        size: usize,
    ) -> DeliveryFuture {
        let index = self.record_count as i32;
        self.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(index),
            // The encoder derives the base sequence as `sequence - offset delta` and splits
            // batches where that differs, so sequences run alongside offsets from -1
            // (NO_SEQUENCE: this producer is not idempotent).
            sequence: index - 1,
            timestamp,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(k, v)| (StrBytes::from_string(k), v))
                .collect::<IndexMap<_, _>>(),
        });
        self.record_count += 1;
        self.bytes += size;
        DeliveryFuture {
            shared: self.shared.clone(),
            partition: self.tp.partition,
            index,
            timestamp,
        }
    }

    /// The base sequence, once an idempotent producer assigned one.
    pub fn base_sequence(&self) -> Option<i32> {
        self.base_sequence
    }

    /// The producer id and epoch the batch carries, once stamped.
    pub fn producer(&self) -> Option<(i64, i16)> {
        self.producer
    }

    /// Stamps producer id, epoch and sequences (idempotent producer). On the first send
    /// the records get them; a batch already encoded (a retry after an epoch bump) gets its
    /// header rewritten, so retries resend the same records under the new sequence.
    pub fn set_producer(&mut self, producer_id: i64, epoch: i16, base_sequence: i32) {
        match &self.encoded {
            Some(bytes) => {
                let mut patched = BytesMut::from(&bytes[..]);
                if !restamp_header(&mut patched, producer_id, epoch, base_sequence) {
                    // Never for a batch this encoder wrote; the broker would refuse it anyway.
                    tracing::warn!(tp = %self.tp, "cannot restamp a batch shorter than its header");
                    return;
                }
                self.encoded = Some(patched.freeze());
            }
            None => {
                for (i, r) in self.records.iter_mut().enumerate() {
                    r.producer_id = producer_id;
                    r.producer_epoch = epoch;
                    // Two's-complement steps keep `offset - sequence` constant, so the
                    // encoder keeps one batch and writes `base_sequence` into the header;
                    // Kafka's wrap to 0 only matters for the next batch's base (see
                    // `idempotence::next_sequence`).
                    r.sequence = base_sequence.wrapping_add(i as i32);
                }
            }
        }
        self.producer = Some((producer_id, epoch));
        self.base_sequence = Some(base_sequence);
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The RecordBatch v2 bytes; encoded once and kept for retries, dropping the records.
    pub fn encode(&mut self, compression: Compression) -> Result<Bytes> {
        if let Some(b) = &self.encoded {
            return Ok(b.clone());
        }
        let mut buf = BytesMut::with_capacity(self.bytes + 16);
        let options = RecordEncodeOptions {
            version: 2,
            compression: compression.to_protocol(),
        };
        RecordBatchEncoder::encode(&mut buf, self.records.iter(), &options)
            .map_err(|e| Error::protocol(format!("cannot encode batch for {}: {e}", self.tp)))?;
        let bytes = buf.freeze();
        self.encoded = Some(bytes.clone());
        // The encoding holds copies of keys and values; free the originals now.
        self.records = Vec::new();
        Ok(bytes)
    }

    /// Completes every record's future.
    pub fn complete(&mut self, result: BatchResult) {
        if let Some(tx) = self.done.take() {
            // Nobody listening is fine: the caller dropped the futures.
            let _ = tx.send(result);
        }
    }
}

/// The broker's answer for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition the record went to.
    pub partition: i32,
    /// Its offset (-1 with acks=0).
    pub offset: i64,
    /// The broker's append time on LogAppendTime topics, else the record's create time.
    pub timestamp: i64,
    /// When the acknowledgement was processed: `acked_at - send time` is the latency, even
    /// if the future is awaited later.
    pub acked_at: Instant,
}

/// Resolves when the record's batch is acknowledged (or fails for good).
#[must_use = "the record's outcome is only known by awaiting this future"]
pub struct DeliveryFuture {
    shared: SharedResult,
    partition: i32,
    index: i32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// The partition the record was assigned to (known before the ack).
    pub fn partition(&self) -> i32 {
        self.partition
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match this.shared.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            // The batch was dropped without completion: the producer shut down.
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Closed)),
            Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(Ok(ack))) => Poll::Ready(Ok(RecordMetadata {
                partition: this.partition,
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + i64::from(this.index)
                },
                timestamp: if ack.log_append_time >= 0 {
                    ack.log_append_time
                } else {
                    this.timestamp
                },
                acked_at: ack.acked_at,
            })),
        }
    }
}

/// Rewrites producer id, epoch and base sequence in the header of one encoded RecordBatch
/// v2 and recomputes its CRC (CRC-32C over everything after the CRC field). False when the
/// bytes are not one whole batch.
fn restamp_header(batch: &mut BytesMut, producer_id: i64, epoch: i16, base_sequence: i32) -> bool {
    const LENGTH: usize = 8;
    /// Base offset and length come before what the length counts.
    const LOG_OVERHEAD: usize = 12;
    const CRC: usize = 17;
    const ATTRIBUTES: usize = 21;
    const PRODUCER_ID: usize = 43;
    const PRODUCER_EPOCH: usize = 51;
    const BASE_SEQUENCE: usize = 53;
    if batch.len() < BATCH_HEADER {
        return false;
    }
    let length = i32::from_be_bytes([
        batch[LENGTH],
        batch[LENGTH + 1],
        batch[LENGTH + 2],
        batch[LENGTH + 3],
    ]);
    if usize::try_from(length)
        .ok()
        .and_then(|l| l.checked_add(LOG_OVERHEAD))
        != Some(batch.len())
    {
        return false;
    }
    batch[PRODUCER_ID..PRODUCER_EPOCH].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..BASE_SEQUENCE].copy_from_slice(&epoch.to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    true
}

/// Size estimate of one record for batching and buffer accounting.
pub fn record_size(key: Option<&Bytes>, value: Option<&Bytes>, headers: &[Header]) -> usize {
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 10)
        .sum();
    RECORD_OVERHEAD + key.map_or(0, Bytes::len) + value.map_or(0, Bytes::len) + header_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn batch_with(n: usize) -> (ProducerBatch, Vec<DeliveryFuture>) {
        let mut b = ProducerBatch::new(TopicPartition::new("t", 3), 0, Instant::now());
        let futs = (0..n)
            .map(|i| {
                let key = (i % 2 == 0).then(|| Bytes::from(format!("k{i}")));
                let headers = if i == 1 {
                    vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
                } else {
                    Vec::new()
                };
                b.push(
                    key,
                    Some(Bytes::from(vec![b'x'; i])),
                    headers,
                    1_000 + i as i64,
                    30,
                )
            })
            .collect();
        (b, futs)
    }

    #[test]
    fn a_sent_batch_takes_no_more_records() {
        let tp = TopicPartition::new("t", 0);
        let mut batch = ProducerBatch::new(tp, 0, Instant::now());
        let _first = batch.push(None, Some(Bytes::from_static(b"a")), Vec::new(), 0, 10);
        assert!(batch.has_room(10, 16 * 1024));
        batch.encode(Compression::None).unwrap();
        // Waiting for a retry (e.g. after a timeout) it must not grow: the retry resends
        // the bytes encoded above, which hold only the first record.
        assert!(!batch.has_room(10, 16 * 1024));
    }

    #[test]
    fn encodes_one_batch_that_decodes_back() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let (mut b, _futs) = batch_with(5);
            let mut bytes = b.encode(compression).unwrap();
            let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
            assert_eq!(
                sets.len(),
                1,
                "{compression:?}: must be exactly one batch (Produce allows one per partition)"
            );
            let recs = &sets[0].records;
            assert_eq!(recs.len(), 5);
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.timestamp, 1_000 + i as i64);
                assert_eq!(r.value.as_ref().map(|v| v.len()), Some(i));
                assert_eq!(r.key.is_some(), i % 2 == 0);
                assert_eq!(r.sequence, -1 + i as i32);
                assert_eq!(r.producer_id, -1);
            }
            assert_eq!(
                recs[1].headers.get("h".as_bytes()),
                Some(&Some(Bytes::from_static(b"v")))
            );
            // Encoding twice gives the same bytes (retries resend them).
            assert_eq!(
                b.encode(compression).unwrap().len(),
                b.encoded.as_ref().unwrap().len()
            );
        }
    }

    #[tokio::test]
    async fn futures_get_offsets_from_base() {
        let (mut b, futs) = batch_with(3);
        let now = Instant::now();
        b.complete(Ok(BatchAck {
            base_offset: 100,
            log_append_time: -1,
            acked_at: now,
        }));
        let mut offsets = Vec::new();
        for f in futs {
            let m = f.await.unwrap();
            assert_eq!(m.partition, 3);
            assert_eq!(m.acked_at, now);
            offsets.push((m.offset, m.timestamp));
        }
        assert_eq!(offsets, vec![(100, 1000), (101, 1001), (102, 1002)]);
    }

    #[tokio::test]
    async fn errors_and_drops_reach_every_future() {
        let (mut b, futs) = batch_with(2);
        b.complete(Err(Error::protocol("boom")));
        for f in futs {
            assert!(matches!(f.await, Err(Error::Protocol(_))));
        }
        let (b, futs) = batch_with(1);
        drop(b);
        for f in futs {
            assert!(matches!(f.await, Err(Error::Closed)));
        }
    }

    #[test]
    fn producer_fields_reach_the_batch_header() {
        for base in [0, 7, i32::MAX - 1] {
            let (mut b, _futs) = batch_with(4);
            b.set_producer(42, 3, base);
            assert_eq!(b.base_sequence(), Some(base));
            assert_eq!(b.producer(), Some((42, 3)));
            let mut bytes = b.encode(Compression::None).unwrap();
            let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
            assert_eq!(sets.len(), 1, "base {base}: one batch");
            let first = &sets[0].records[0];
            assert_eq!((first.producer_id, first.producer_epoch), (42, 3));
            assert_eq!(first.sequence, base);
            assert_eq!(sets[0].records.len(), 4);
        }
    }

    #[test]
    fn an_encoded_batch_is_restamped_with_a_valid_crc() {
        for compression in [Compression::None, Compression::Zstd] {
            let (mut b, _futs) = batch_with(3);
            b.set_producer(42, 3, 17);
            b.encode(compression).unwrap();
            // An epoch bump re-sequences the batch waiting for its retry.
            b.set_producer(42, 4, 0);
            assert_eq!((b.producer(), b.base_sequence()), (Some((42, 4)), Some(0)));
            let mut bytes = b.encode(compression).unwrap();
            let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
            assert_eq!(sets.len(), 1);
            let recs = &sets[0].records;
            assert_eq!(recs.len(), 3);
            for (i, r) in recs.iter().enumerate() {
                assert_eq!((r.producer_id, r.producer_epoch), (42, 4));
                assert_eq!(r.sequence, i as i32, "{compression:?}");
                assert_eq!(r.value.as_ref().map(|v| v.len()), Some(i));
            }
        }
    }

    #[test]
    fn restamping_refuses_bytes_that_are_not_one_batch() {
        let (mut b, _futs) = batch_with(2);
        let bytes = b.encode(Compression::None).unwrap();
        let mut short = BytesMut::from(&bytes[..BATCH_HEADER - 1]);
        assert!(!restamp_header(&mut short, 1, 1, 1));
        let mut longer = BytesMut::from(&bytes[..]);
        longer.extend_from_slice(&[0]);
        assert!(!restamp_header(&mut longer, 1, 1, 1));
        let mut exact = BytesMut::from(&bytes[..]);
        assert!(restamp_header(&mut exact, 1, 1, 1));
    }

    #[test]
    fn room_and_sizes() {
        let mut b = ProducerBatch::new(TopicPartition::new("t", 0), 0, Instant::now());
        assert!(
            b.has_room(10_000, 100),
            "an empty batch takes an oversized record"
        );
        let _f = b.push(None, Some(Bytes::from_static(b"abc")), Vec::new(), 0, 40);
        assert!(b.has_room(40, BATCH_HEADER + 80));
        assert!(!b.has_room(41, BATCH_HEADER + 80));
        assert_eq!(
            record_size(None, Some(&Bytes::from_static(b"abc")), &[]),
            RECORD_OVERHEAD + 3
        );
    }
}
