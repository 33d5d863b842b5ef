//! Idempotent-producer state of one partition as pure decisions (docs/architecture.md §7, KIP-98,
//! KIP-360; Kafka's `ProducerStateManager` and `ProducerAppendInfo`): per producer id its
//! epoch and the last [`RETAINED_BATCHES`] batches, so the leader can acknowledge a
//! retried batch with its original offsets and refuse a gap or a fenced epoch.
//!
//! No I/O, no clock, no async: time is an explicit `now_ms`. The leader calls
//! [`ProducerStateManager::check`] before appending a client batch and
//! [`ProducerStateManager::on_append`] with the stamped header afterwards; followers and
//! recovery only call `on_append` (the leader's log is authoritative). Snapshots let a
//! restart replay only the log's tail.
//!
//! Transactions are not supported: transactional and control batches are appended
//! unchecked and leave producer state alone (they only advance the map end offset).

use std::collections::{BTreeMap, VecDeque};

use spate_metadata::ErrorCode;

use spate_log::batch::BatchHeader;

/// Producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a batch written without idempotence.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Batches remembered per producer for duplicate detection (Kafka: 5, the most a
/// producer may have in flight with `max.in.flight.requests.per.connection`).
pub const RETAINED_BATCHES: usize = 5;

/// Snapshot format version written by [`ProducerStateManager::encode_snapshot`].
const SNAPSHOT_VERSION: u16 = 1;
/// Version (2) + CRC (4); the CRC covers every byte after it.
const SNAPSHOT_HEADER_LEN: usize = 6;
/// Producer id, epoch, last timestamp, batch count.
const ENTRY_LEN: usize = 8 + 2 + 8 + 1;
/// First and last sequence, first and last offset, max timestamp.
const BATCH_LEN: usize = 4 + 4 + 8 + 8 + 8;
/// Sequences live in `0..=i32::MAX` and wrap to 0 (Kafka's `incrementSequence`).
const SEQUENCE_SPACE: i64 = 1 << 31;

/// Where one appended batch of a producer sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest record timestamp of the batch.
    pub max_timestamp: i64,
}

/// What the partition remembers of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Epoch of the producer's latest batch.
    pub producer_epoch: i16,
    /// Its latest batches in this epoch, oldest first, at most [`RETAINED_BATCHES`].
    pub batches: VecDeque<BatchMetadata>,
    /// Max timestamp of its latest batch; expiry counts from here (as Kafka).
    pub last_timestamp: i64,
}

impl ProducerEntry {
    /// The sequence the next batch of this epoch must start with (Kafka's `inSequence`:
    /// `i32::MAX` is followed by 0), or 0 when no batch is known.
    fn next_sequence(&self) -> i32 {
        self.batches
            .back()
            .map_or(0, |b| increment_sequence(b.last_seq, 1))
    }
}

/// A client batch the leader must refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (Kafka code 45): a gap or a reordering.
    #[error(
        "producer {producer_id}: expected sequence {expected}, got {got}; earlier batches \
         were lost or reordered, the producer must reset its sequences"
    )]
    OutOfOrder {
        /// Producer id of the batch.
        producer_id: i64,
        /// Sequence the batch had to start with.
        expected: i32,
        /// Sequence it started with.
        got: i32,
    },
    /// INVALID_PRODUCER_EPOCH (Kafka code 47): epoch older than the one known.
    #[error(
        "producer {producer_id}: epoch {got} is older than the current epoch {known}; \
         a newer instance of this producer fenced it"
    )]
    StaleEpoch {
        /// Producer id of the batch.
        producer_id: i64,
        /// Epoch this partition holds.
        known: i16,
        /// Epoch of the batch.
        got: i16,
    },
    /// INVALID_RECORD (Kafka code 87): an idempotent batch without a valid sequence.
    #[error(
        "producer {producer_id}: base sequence {got} is negative; idempotent batches need one"
    )]
    InvalidSequence {
        /// Producer id of the batch.
        producer_id: i64,
        /// Base sequence of the batch.
        got: i32,
    },
}

impl SequenceError {
    /// The Kafka error this maps to.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequenceNumber,
            SequenceError::StaleEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            SequenceError::InvalidSequence { .. } => ErrorCode::InvalidRecord,
        }
    }

    /// The Kafka error code this maps to.
    pub fn kafka_code(&self) -> i16 {
        self.error_code().code()
    }
}

/// What the leader does with a client batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendCheck {
    /// Not an idempotent batch (producer id -1) or in sequence: append it.
    Append,
    /// Exactly one of the retained batches of this producer and epoch: do not append;
    /// answer with these offsets.
    Duplicate(BatchMetadata),
}

/// A snapshot that cannot be loaded; rebuild the state from the log instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Fewer bytes than the structure they announce.
    #[error(
        "producer state snapshot truncated: needs {needed} bytes, has {len}; rebuild from the log"
    )]
    Truncated {
        /// Bytes needed at least.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// Written by a version of Spate this one does not read.
    #[error("producer state snapshot version {0} is unknown (this broker reads {SNAPSHOT_VERSION}); rebuild from the log")]
    UnknownVersion(u16),
    /// The content does not match its checksum.
    #[error("producer state snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}; rebuild from the log")]
    CrcMismatch {
        /// CRC in the snapshot.
        stored: u32,
        /// CRC of its content.
        computed: u32,
    },
    /// The checksum holds but the content is inconsistent.
    #[error("producer state snapshot malformed: {0}; rebuild from the log")]
    Malformed(String),
}

/// Per-partition state of idempotent producers, rebuilt from the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
    /// One past the last offset applied.
    map_end_offset: i64,
}

/// `seq + by` in Kafka's sequence space: past `i32::MAX` it continues from 0.
fn increment_sequence(seq: i32, by: i32) -> i32 {
    // rem_euclid keeps this total (and in 0..=i32::MAX) even for garbled negative input.
    (seq as i64 + by as i64).rem_euclid(SEQUENCE_SPACE) as i32
}

/// Sequence of the batch's last record. As Kafka's `lastSequence`, this counts by the
/// offset delta, not the record count: the two agree for client batches (the log checks
/// it) and compaction keeps the delta while dropping records.
fn last_sequence(h: &BatchHeader) -> i32 {
    increment_sequence(h.base_sequence, h.last_offset_delta)
}

/// Whether the batch takes part in idempotence (Kafka's `hasProducerId`, without
/// transactions).
fn is_tracked(h: &BatchHeader) -> bool {
    h.producer_id > NO_PRODUCER_ID && !h.is_transactional() && !h.is_control()
}

impl ProducerStateManager {
    /// Empty state at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leader-side validation of a client batch before it is appended (does not change
    /// state). Order as Kafka: duplicate, then epoch, then sequence.
    pub fn check(&self, h: &BatchHeader) -> Result<AppendCheck, SequenceError> {
        if !is_tracked(h) {
            return Ok(AppendCheck::Append);
        }
        let producer_id = h.producer_id;
        if h.base_sequence < 0 {
            return Err(SequenceError::InvalidSequence {
                producer_id,
                got: h.base_sequence,
            });
        }
        // KIP-360: an unknown producer may have expired here while it lived on; any
        // sequence is accepted rather than failing a healthy producer.
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(AppendCheck::Append);
        };
        let (first, last) = (h.base_sequence, last_sequence(h));
        if h.producer_epoch == entry.producer_epoch {
            if let Some(b) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first && b.last_seq == last)
            {
                return Ok(AppendCheck::Duplicate(b.clone()));
            }
        }
        if h.producer_epoch < entry.producer_epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id,
                known: entry.producer_epoch,
                got: h.producer_epoch,
            });
        }
        // Kafka accepts any sequence while the epoch is unknown (NO_PRODUCER_EPOCH); a
        // bumped epoch (InitProducerId) restarts the sequences at 0.
        if entry.producer_epoch == NO_PRODUCER_EPOCH {
            return Ok(AppendCheck::Append);
        }
        let expected = if h.producer_epoch == entry.producer_epoch {
            entry.next_sequence()
        } else {
            0
        };
        if first == expected {
            return Ok(AppendCheck::Append);
        }
        Err(SequenceError::OutOfOrder {
            producer_id,
            expected,
            got: first,
        })
    }

    /// Records an appended batch (leader after its append, with the assigned offsets;
    /// follower for replicated batches; recovery when replaying the log). Never fails:
    /// the log is authoritative, so a differing epoch simply replaces the known one.
    pub fn on_append(&mut self, h: &BatchHeader) {
        self.map_end_offset = self.map_end_offset.max(h.last_offset().saturating_add(1));
        if !is_tracked(h) {
            return;
        }
        let batch = BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        };
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(RETAINED_BATCHES),
                last_timestamp: h.max_timestamp,
            });
        if entry.producer_epoch != h.producer_epoch {
            // Kafka's maybeUpdateProducerEpoch: sequences of another epoch never match.
            entry.producer_epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() >= RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = h.max_timestamp;
    }

    /// Drops producers whose last write is `expiration_ms` or more before `now_ms`
    /// (Kafka `producer.id.expiration.ms`); returns how many were dropped.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// The offset up to which (exclusive) the state reflects the log.
    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    /// Number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The entry of `producer_id`, if known.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Rebuild step: applies the log's batch headers from `map_end_offset` on; headers
    /// that start below it are already reflected and skipped.
    pub fn replay<'a>(&mut self, headers: impl IntoIterator<Item = &'a BatchHeader>) {
        for h in headers {
            if h.base_offset >= self.map_end_offset {
                self.on_append(h);
            }
        }
    }

    /// After a truncation of the log to `offset`, rolls the state back in place: each
    /// producer keeps its retained batches that end below `offset`, and a producer left
    /// with none is forgotten (its earlier state is gone with the batches; an unknown
    /// producer is accepted at any sequence, KIP-360, so forgetting never rejects a good
    /// batch — it only loses duplicate detection for batches already older than the
    /// retained window). Returns whether anything changed.
    pub fn truncated_to(&mut self, offset: i64) -> bool {
        if offset >= self.map_end_offset {
            return false;
        }
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset < offset);
            !e.batches.is_empty()
        });
        self.map_end_offset = offset.max(0);
        true
    }

    /// A compact, versioned, CRC-32C protected encoding of the whole state (big endian):
    /// `version u16, crc u32, map_end_offset i64, count u32`, then per producer (by id)
    /// `id i64, epoch i16, last_timestamp i64, batches u8` and per batch
    /// `first_seq i32, last_seq i32, first_offset i64, last_offset i64, max_timestamp i64`.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let batches: usize = self.producers.values().map(|e| e.batches.len()).sum();
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_LEN + 12 + self.producers.len() * ENTRY_LEN + batches * BATCH_LEN,
        );
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.map_end_offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, e) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.producer_epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            // on_append keeps at most RETAINED_BATCHES, so this fits a byte.
            out.push(e.batches.len().min(RETAINED_BATCHES) as u8);
            for b in e.batches.iter().rev().take(RETAINED_BATCHES).rev() {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[SNAPSHOT_HEADER_LEN..]);
        out[2..SNAPSHOT_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes [`Self::encode_snapshot`]'s output; any corruption is an error, never a
    /// panic, and every byte must be consumed.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = u16::from_be_bytes(r.take()?);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnknownVersion(version));
        }
        let stored = u32::from_be_bytes(r.take()?);
        let computed = crc32c::crc32c(r.rest());
        if stored != computed {
            return Err(SnapshotError::CrcMismatch { stored, computed });
        }
        let map_end_offset = i64::from_be_bytes(r.take()?);
        let count = u32::from_be_bytes(r.take()?) as usize;
        // Bound the count by the bytes present before trusting it.
        r.need(count.saturating_mul(ENTRY_LEN))?;
        let mut producers = BTreeMap::new();
        let mut previous = None;
        for _ in 0..count {
            let id = i64::from_be_bytes(r.take()?);
            if previous.is_some_and(|p| id <= p) {
                return Err(SnapshotError::Malformed(format!(
                    "producer id {id} out of order or repeated"
                )));
            }
            previous = Some(id);
            let producer_epoch = i16::from_be_bytes(r.take()?);
            let last_timestamp = i64::from_be_bytes(r.take()?);
            let [n] = r.take::<1>()?;
            if n as usize > RETAINED_BATCHES {
                return Err(SnapshotError::Malformed(format!(
                    "producer {id} holds {n} batches, more than {RETAINED_BATCHES}"
                )));
            }
            let mut batches = VecDeque::with_capacity(n as usize);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    first_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                    max_timestamp: i64::from_be_bytes(r.take()?),
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    producer_epoch,
                    batches,
                    last_timestamp,
                },
            );
        }
        if !r.rest().is_empty() {
            return Err(SnapshotError::Malformed(format!(
                "{} trailing bytes",
                r.rest().len()
            )));
        }
        Ok(ProducerStateManager {
            producers,
            map_end_offset,
        })
    }
}

/// Bounds-checked big-endian reading of a snapshot.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), SnapshotError> {
        let needed = self.pos.saturating_add(n);
        if needed > self.bytes.len() {
            return Err(SnapshotError::Truncated {
                needed,
                len: self.bytes.len(),
            });
        }
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        self.need(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PID: i64 = 7;
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;

    /// An idempotent batch of `count` records at `offset`, timestamp `ts`.
    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64, ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: ts,
            max_timestamp: ts,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    fn plain(offset: i64, count: i32) -> BatchHeader {
        batch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, -1, count, offset, 0)
    }

    /// Checks then appends at the current map end, as the leader does.
    fn produce(
        s: &mut ProducerStateManager,
        pid: i64,
        epoch: i16,
        seq: i32,
        count: i32,
    ) -> BatchHeader {
        let h = batch(pid, epoch, seq, count, s.map_end_offset(), 0);
        assert_eq!(s.check(&h), Ok(AppendCheck::Append), "{h:?}");
        s.on_append(&h);
        h
    }

    fn out_of_order(expected: i32, got: i32) -> Result<AppendCheck, SequenceError> {
        Err(SequenceError::OutOfOrder {
            producer_id: PID,
            expected,
            got,
        })
    }

    #[test]
    fn in_order_sequences_append() {
        let mut s = ProducerStateManager::new();
        for i in 0..10 {
            produce(&mut s, PID, 0, i * 3, 3);
        }
        let e = s.get(PID).unwrap();
        assert_eq!(e.batches.len(), RETAINED_BATCHES);
        assert_eq!(e.batches.back().unwrap().last_seq, 29);
        assert_eq!(e.batches.front().unwrap().first_seq, 15);
        assert_eq!(s.map_end_offset(), 30);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn duplicate_of_each_retained_batch_returns_original_offsets() {
        let mut s = ProducerStateManager::new();
        s.on_append(&plain(0, 4));
        let appended: Vec<_> = (0..7).map(|i| produce(&mut s, PID, 2, i * 2, 2)).collect();
        for h in &appended[2..] {
            let retry = batch(PID, 2, h.base_sequence, 2, 999, 0);
            let want = BatchMetadata {
                first_seq: h.base_sequence,
                last_seq: h.base_sequence + 1,
                first_offset: h.base_offset,
                last_offset: h.base_offset + 1,
                max_timestamp: 0,
            };
            assert_eq!(s.check(&retry), Ok(AppendCheck::Duplicate(want)));
        }
        // Older than the retained five: no longer recognised, and out of sequence.
        let old = batch(PID, 2, appended[1].base_sequence, 2, 999, 0);
        assert_eq!(s.check(&old), out_of_order(14, 2));
    }

    #[test]
    fn duplicate_needs_same_range_and_epoch() {
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 0, 0, 5);
        // Same first sequence, other length: a different batch, out of order.
        assert_eq!(s.check(&batch(PID, 0, 0, 3, 9, 0)), out_of_order(5, 0));
        // Same range under a newer epoch is a fresh batch starting at 0.
        assert_eq!(s.check(&batch(PID, 1, 0, 5, 9, 0)), Ok(AppendCheck::Append));
    }

    #[test]
    fn gap_is_out_of_order() {
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 0, 0, 5);
        assert_eq!(s.check(&batch(PID, 0, 6, 1, 5, 0)), out_of_order(5, 6));
        assert_eq!(s.check(&batch(PID, 0, 3, 1, 5, 0)), out_of_order(5, 3));
        let e = SequenceError::OutOfOrder {
            producer_id: PID,
            expected: 5,
            got: 6,
        };
        assert_eq!(e.kafka_code(), 45);
        assert!(e.to_string().contains("expected sequence 5, got 6"));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStateManager::new();
        // Unknown producer: accepted anywhere; this batch covers MAX-1, MAX, 0, 1.
        let h = produce(&mut s, PID, 0, i32::MAX - 1, 4);
        assert_eq!(s.get(PID).unwrap().batches[0].last_seq, 1);
        assert_eq!(s.check(&batch(PID, 0, 2, 1, 9, 0)), Ok(AppendCheck::Append));
        assert!(matches!(s.check(&h), Ok(AppendCheck::Duplicate(_))));
        // A batch ending exactly at MAX is followed by 0.
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 0, i32::MAX - 2, 3);
        assert_eq!(s.check(&batch(PID, 0, 0, 1, 9, 0)), Ok(AppendCheck::Append));
        assert_eq!(s.check(&batch(PID, 0, 1, 1, 9, 0)), out_of_order(0, 1));
        produce(&mut s, PID, 0, 0, 1);
        assert_eq!(s.get(PID).unwrap().batches.back().unwrap().last_seq, 0);
    }

    #[test]
    fn new_epoch_must_start_at_zero_and_resets_batches() {
        let mut s = ProducerStateManager::new();
        for i in 0..3 {
            produce(&mut s, PID, 4, i, 1);
        }
        assert_eq!(s.check(&batch(PID, 5, 3, 1, 9, 0)), out_of_order(0, 3));
        produce(&mut s, PID, 5, 0, 2);
        let e = s.get(PID).unwrap();
        assert_eq!(e.producer_epoch, 5);
        assert_eq!(e.batches.len(), 1);
        assert_eq!(s.check(&batch(PID, 5, 2, 1, 9, 0)), Ok(AppendCheck::Append));
    }

    #[test]
    fn stale_epoch_is_fenced() {
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 3, 0, 1);
        let err = s.check(&batch(PID, 2, 1, 1, 9, 0)).unwrap_err();
        assert_eq!(
            err,
            SequenceError::StaleEpoch {
                producer_id: PID,
                known: 3,
                got: 2
            }
        );
        assert_eq!(err.kafka_code(), 47);
        // Even a batch that would be a duplicate under the old epoch.
        assert!(s.check(&batch(PID, 2, 0, 1, 9, 0)).is_err());
    }

    #[test]
    fn unknown_producer_accepts_any_sequence() {
        let s = ProducerStateManager::new();
        assert_eq!(
            s.check(&batch(PID, 0, 1234, 3, 0, 0)),
            Ok(AppendCheck::Append)
        );
        assert_eq!(s.check(&batch(PID, 9, 0, 1, 0, 0)), Ok(AppendCheck::Append));
    }

    #[test]
    fn non_idempotent_transactional_and_control_batches_just_append() {
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 0, 0, 1);
        assert_eq!(s.check(&plain(1, 3)), Ok(AppendCheck::Append));
        let mut txn = batch(PID, 0, 50, 1, 1, 0);
        txn.attributes = TRANSACTIONAL;
        let mut marker = batch(PID, 0, -1, 1, 2, 0);
        marker.attributes = TRANSACTIONAL | CONTROL;
        assert_eq!(s.check(&txn), Ok(AppendCheck::Append));
        assert_eq!(s.check(&marker), Ok(AppendCheck::Append));
        let before = s.get(PID).cloned();
        for h in [plain(1, 3), txn, marker] {
            s.on_append(&h);
        }
        assert_eq!(s.get(PID).cloned(), before);
        assert_eq!(s.map_end_offset(), 4);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn negative_sequence_is_an_invalid_record() {
        let s = ProducerStateManager::new();
        let err = s.check(&batch(PID, 0, -1, 1, 0, 0)).unwrap_err();
        assert_eq!(err.kafka_code(), 87);
    }

    #[test]
    fn expiry_counts_from_last_batch_timestamp() {
        let mut s = ProducerStateManager::new();
        s.on_append(&batch(1, 0, 0, 1, 0, 1_000));
        s.on_append(&batch(2, 0, 0, 1, 1, 1_000));
        s.on_append(&batch(2, 0, 1, 1, 2, 5_000));
        assert_eq!(s.expire(10_999, 10_000), 0);
        assert_eq!(s.expire(11_000, 10_000), 1);
        assert!(s.get(1).is_none());
        assert_eq!(s.get(2).unwrap().last_timestamp, 5_000);
        // The map end offset is unaffected; the expired producer is unknown again.
        assert_eq!(s.map_end_offset(), 3);
        assert_eq!(s.check(&batch(1, 0, 77, 1, 3, 0)), Ok(AppendCheck::Append));
        assert_eq!(s.expire(i64::MAX, 1), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn map_end_offset_never_goes_back() {
        let mut s = ProducerStateManager::new();
        s.on_append(&plain(10, 5));
        s.on_append(&plain(3, 1));
        assert_eq!(s.map_end_offset(), 15);
    }

    #[test]
    fn replay_skips_headers_below_map_end_offset() {
        let mut s = ProducerStateManager::new();
        let log = [
            batch(PID, 0, 0, 2, 0, 0),
            plain(2, 1),
            batch(PID, 0, 2, 2, 3, 0),
        ];
        s.replay(&log[..2]);
        let snapshot = s.encode_snapshot();
        let mut restored = ProducerStateManager::decode_snapshot(&snapshot).unwrap();
        // Replaying the whole log over the snapshot applies only the tail.
        restored.replay(&log);
        let mut full = ProducerStateManager::new();
        full.replay(&log);
        assert_eq!(restored, full);
        assert_eq!(full.get(PID).unwrap().batches.len(), 2);
        assert_eq!(full.map_end_offset(), 5);
    }

    #[test]
    fn truncation_rolls_back_in_place() {
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 0, 0, 5); // offsets 0..=4
        produce(&mut s, PID, 0, 5, 5); // 5..=9
        produce(&mut s, 9, 0, 0, 2); // 10..=11
        assert!(!s.truncated_to(12), "nothing above the map end");
        assert!(s.truncated_to(10));
        assert_eq!(s.map_end_offset(), 10);
        assert!(
            s.get(9).is_none(),
            "a producer with no batch left is forgotten"
        );
        assert_eq!(s.get(PID).unwrap().batches.len(), 2);
        // The batch at 5..=9 is gone: its retry is appended again, in sequence.
        assert!(s.truncated_to(7));
        assert_eq!(s.get(PID).unwrap().batches.len(), 1);
        let retry = batch(PID, 0, 5, 5, s.map_end_offset(), 0);
        assert_eq!(s.check(&retry), Ok(AppendCheck::Append));
        // Truncated below everything: the producer is unknown, any sequence goes.
        assert!(s.truncated_to(0));
        assert!(s.is_empty());
        assert_eq!(
            s.check(&batch(PID, 0, 42, 1, 0, 0)),
            Ok(AppendCheck::Append)
        );
    }

    #[test]
    fn corrupt_snapshots_are_errors() {
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 1, 0, 3);
        produce(&mut s, 9, 0, 4, 1);
        let good = s.encode_snapshot();
        assert_eq!(ProducerStateManager::decode_snapshot(&good), Ok(s));
        for len in 0..good.len() {
            assert!(
                ProducerStateManager::decode_snapshot(&good[..len]).is_err(),
                "{len}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(ProducerStateManager::decode_snapshot(&longer).is_err());
        let mut version = good.clone();
        version[1] = 9;
        assert_eq!(
            ProducerStateManager::decode_snapshot(&version),
            Err(SnapshotError::UnknownVersion(9))
        );
        for i in 2..good.len() {
            let mut flipped = good.clone();
            flipped[i] ^= 0x40;
            let err = ProducerStateManager::decode_snapshot(&flipped).unwrap_err();
            assert!(
                matches!(err, SnapshotError::CrcMismatch { .. }),
                "{i}: {err}"
            );
        }
    }

    #[test]
    fn crc_valid_but_inconsistent_snapshot_is_malformed() {
        let with_crc = |mut b: Vec<u8>| {
            let crc = crc32c::crc32c(&b[SNAPSHOT_HEADER_LEN..]);
            b[2..6].copy_from_slice(&crc.to_be_bytes());
            b
        };
        let mut s = ProducerStateManager::new();
        produce(&mut s, PID, 0, 0, 1);
        let mut b = s.encode_snapshot();
        b[SNAPSHOT_HEADER_LEN + 12 + ENTRY_LEN - 1] = 6; // batch count above 5
        let err = ProducerStateManager::decode_snapshot(&with_crc(b)).unwrap_err();
        assert!(matches!(err, SnapshotError::Malformed(_)), "{err}");
        // A huge producer count is refused before anything is allocated for it.
        let mut b = ProducerStateManager::new().encode_snapshot();
        b[SNAPSHOT_HEADER_LEN + 8..].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = ProducerStateManager::decode_snapshot(&with_crc(b)).unwrap_err();
        assert!(matches!(err, SnapshotError::Truncated { .. }), "{err}");
    }

    /// Random appends from a few producers, including retries, epoch bumps and
    /// non-idempotent batches, applied the way a follower would.
    fn log_strategy() -> impl Strategy<Value = Vec<BatchHeader>> {
        proptest::collection::vec((-1i64..4, 0i16..3, 0i32..40, 1i32..6, 0i64..10_000), 0..60)
            .prop_map(|specs| {
                let mut offset = 0;
                specs
                    .into_iter()
                    .map(|(pid, epoch, seq, count, ts)| {
                        let h = if pid < 0 {
                            plain(offset, count)
                        } else {
                            batch(pid, epoch, seq, count, offset, ts)
                        };
                        offset += count as i64;
                        h
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn snapshot_round_trips_and_replay_matches_on_append(
            log in log_strategy(),
            split in 0usize..60,
            now in 0i64..20_000,
        ) {
            let mut incremental = ProducerStateManager::new();
            for h in &log {
                incremental.on_append(h);
                let e = incremental.get(h.producer_id);
                prop_assert!(e.is_none_or(|e| e.batches.len() <= RETAINED_BATCHES));
            }
            let bytes = incremental.encode_snapshot();
            prop_assert_eq!(ProducerStateManager::decode_snapshot(&bytes), Ok(incremental.clone()));

            // Snapshot part way, then replay everything: same state as on_append.
            let split = split.min(log.len());
            let mut prefix = ProducerStateManager::new();
            prefix.replay(&log[..split]);
            let mut rebuilt = ProducerStateManager::decode_snapshot(&prefix.encode_snapshot()).unwrap();
            rebuilt.replay(&log);
            prop_assert_eq!(&rebuilt, &incremental);

            let mut expired = incremental.clone();
            expired.expire(now, 5_000);
            let bytes = expired.encode_snapshot();
            prop_assert_eq!(ProducerStateManager::decode_snapshot(&bytes), Ok(expired));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ProducerStateManager::decode_snapshot(&bytes);
        }

        #[test]
        fn check_agrees_with_retained_batches(log in log_strategy(), seq in 0i32..45, count in 1i32..6, epoch in 0i16..3) {
            let mut s = ProducerStateManager::new();
            s.replay(&log);
            let h = batch(1, epoch, seq, count, s.map_end_offset(), 0);
            match (s.check(&h), s.get(1)) {
                (Ok(AppendCheck::Append), None) => {}
                (Ok(AppendCheck::Duplicate(b)), Some(e)) => {
                    prop_assert_eq!(e.producer_epoch, epoch);
                    prop_assert!(e.batches.contains(&b));
                    prop_assert_eq!((b.first_seq, b.last_seq), (seq, seq + count - 1));
                }
                (Ok(AppendCheck::Append), Some(e)) => {
                    let want = if epoch == e.producer_epoch { e.next_sequence() } else { 0 };
                    prop_assert!(epoch >= e.producer_epoch);
                    prop_assert_eq!(seq, want);
                }
                (Err(SequenceError::StaleEpoch { known, .. }), Some(_)) => prop_assert!(epoch < known),
                (Err(SequenceError::OutOfOrder { expected, got, .. }), Some(_)) => prop_assert_ne!(expected, got),
                (other, e) => prop_assert!(false, "unexpected {:?} for entry {:?}", other, e),
            }
        }
    }
}
