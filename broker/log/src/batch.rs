//! Kafka RecordBatch v2 (magic 2) as it travels on the wire and sits on disk.
//!
//! Batches are never re-encoded: the broker validates them, then patches a few header
//! fields in place. Layout (big endian), offsets from the start of the batch:
//!
//! ```text
//!  0 baseOffset i64        8 batchLength i32 (bytes after this field)
//! 12 partitionLeaderEpoch i32   16 magic i8   17 crc u32 (CRC-32C of bytes 21..)
//! 21 attributes i16       23 lastOffsetDelta i32   27 baseTimestamp i64
//! 35 maxTimestamp i64     43 producerId i64        51 producerEpoch i16
//! 53 baseSequence i32     57 recordsCount i32      61 records...
//! ```
//!
//! Nothing here panics on any input: every length is checked before it is used.

use super::error::LogError;
use super::records::walk_records;
pub use super::records::RecordsSummary;

/// The most a compressed batch's records may decompress to when validated: a bound on
/// the memory a "decompression bomb" can make one produce take (Kafka's producers send
/// batches of about 1 MB before compression).
pub const DECOMPRESSED_BATCH_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Bytes before `batchLength`'s payload starts: base offset (8) + length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// The only magic value stored.
pub const MAGIC_V2: i8 = 2;

const LENGTH_AT: usize = 8;
const EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes on, so base offset and leader epoch
/// can be rewritten without recomputing it.
const ATTRIBUTES_AT: usize = 21;
/// First byte (within a batch) covered by the CRC.
pub(crate) const CRC_COVERAGE_START: u64 = ATTRIBUTES_AT as u64;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;
/// Smallest legal `batchLength`: the header minus the offset/length prefix.
const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// Highest codec id Kafka defines (zstd).
const MAX_CODEC: i16 = 4;

/// The decoded fixed header of one batch (a copy of 61 bytes; no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch (-1 if not yet stamped).
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once parsed.
    pub magic: i8,
    /// CRC-32C stored in the batch.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Last record's offset minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time for LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Idempotent producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

fn take<const N: usize>(h: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`; needs at least 61 bytes and magic 2.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        let h: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                LogError::CorruptRecord(format!(
                    "batch header truncated: {} bytes, need {HEADER_LEN}",
                    buf.len()
                ))
            })?;
        let magic = h[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(LogError::UnsupportedMagic(magic));
        }
        let header = BatchHeader {
            base_offset: i64::from_be_bytes(take(h, 0)),
            batch_length: i32::from_be_bytes(take(h, LENGTH_AT)),
            partition_leader_epoch: i32::from_be_bytes(take(h, EPOCH_AT)),
            magic,
            crc: u32::from_be_bytes(take(h, CRC_AT)),
            attributes: i16::from_be_bytes(take(h, ATTRIBUTES_AT)),
            last_offset_delta: i32::from_be_bytes(take(h, 23)),
            base_timestamp: i64::from_be_bytes(take(h, 27)),
            max_timestamp: i64::from_be_bytes(take(h, MAX_TIMESTAMP_AT)),
            producer_id: i64::from_be_bytes(take(h, 43)),
            producer_epoch: i16::from_be_bytes(take(h, 51)),
            base_sequence: i32::from_be_bytes(take(h, 53)),
            records_count: i32::from_be_bytes(take(h, RECORDS_COUNT_AT)),
        };
        if (header.batch_length as i64) < MIN_BATCH_LENGTH as i64 {
            return Err(LogError::CorruptRecord(format!(
                "batch length {} is below the {MIN_BATCH_LENGTH}-byte minimum",
                header.batch_length
            )));
        }
        if header.last_offset_delta < 0 {
            return Err(LogError::CorruptRecord(format!(
                "negative lastOffsetDelta {}",
                header.last_offset_delta
            )));
        }
        Ok(header)
    }

    /// Whole batch size in bytes, log overhead included.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record (saturating: a garbled header cannot overflow).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True when the batch timestamps are LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for batches of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Checks the framing of the batch starting at byte `at` and returns its size.
///
/// `prefix` holds the first `min(61, remaining)` bytes of it and `remaining` counts the
/// bytes from `at` to the end of the buffer or file.
pub(crate) fn frame_size(prefix: &[u8], remaining: u64, at: u64) -> Result<usize, LogError> {
    if remaining < LOG_OVERHEAD as u64 || prefix.len() < LOG_OVERHEAD {
        return Err(LogError::CorruptRecord(format!(
            "{remaining} trailing bytes at position {at} are too few for a batch's offset and length"
        )));
    }
    let length = i32::from_be_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    if let Some(&magic) = prefix.get(MAGIC_AT) {
        if magic as i8 != MAGIC_V2 {
            return Err(LogError::UnsupportedMagic(magic as i8));
        }
    }
    if length < 0 || (length as usize) < MIN_BATCH_LENGTH {
        return Err(LogError::CorruptRecord(format!(
            "batch at position {at} declares length {length}, below the {MIN_BATCH_LENGTH}-byte header"
        )));
    }
    let size = LOG_OVERHEAD as u64 + length as u64;
    if size > remaining {
        return Err(LogError::CorruptRecord(format!(
            "batch at position {at} declares {size} bytes but only {remaining} remain (truncated)"
        )));
    }
    Ok(size as usize)
}

/// A zero-copy view of one complete batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordBatchView<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> RecordBatchView<'a> {
    /// Wraps `bytes`, which must be exactly one batch (framing and magic are checked).
    pub fn new(bytes: &'a [u8]) -> Result<Self, LogError> {
        let header = BatchHeader::parse(bytes)?;
        if header.size() != bytes.len() {
            return Err(LogError::CorruptRecord(format!(
                "batch declares {} bytes but the buffer holds {}",
                header.size(),
                bytes.len()
            )));
        }
        Ok(RecordBatchView { bytes, header })
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The encoded records (possibly compressed).
    pub fn records(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }

    /// CRC-32C of the bytes the stored CRC covers.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(self.bytes.get(ATTRIBUTES_AT..).unwrap_or_default())
    }

    /// A copy of this batch holding `records` instead (encoded, and compressed with the
    /// batch's codec), `count` of them, with max timestamp `max_timestamp`: every other
    /// header field (base offset and timestamp, last offset delta, producer, epoch,
    /// attributes) is kept, so records copied verbatim keep their offsets and timestamps.
    pub(crate) fn with_records(&self, records: &[u8], count: i32, max_timestamp: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + records.len());
        out.extend_from_slice(&self.bytes[..HEADER_LEN]);
        out.extend_from_slice(records);
        if count == 0 {
            // An empty batch carries no codec, as Kafka writes them: clients decompress a
            // compressed batch's payload, and no codec's stream is zero bytes long.
            let attributes = self.header.attributes & !COMPRESSION_MASK;
            out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        }
        let length = (out.len() - LOG_OVERHEAD) as i32;
        out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
        out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Fails with `CorruptRecord` unless the stored CRC matches the content.
    pub fn validate_crc(&self) -> Result<(), LogError> {
        let computed = self.compute_crc();
        if computed != self.header.crc {
            return Err(LogError::CorruptRecord(format!(
                "CRC mismatch in batch with base offset {}: stored {:#010x}, computed {computed:#010x}",
                self.header.base_offset, self.header.crc
            )));
        }
        Ok(())
    }

    /// Full produce-time validation, as Kafka's `LogValidator`: CRC, codec, record count,
    /// and every record's framing, offset delta and timestamp, compressed batches
    /// decompressed for it (at most [`DECOMPRESSED_BATCH_MAX_BYTES`]). Returns what the
    /// record walk found.
    pub fn validate(&self) -> Result<Option<RecordsSummary>, LogError> {
        self.validate_with(false)
    }

    /// [`RecordBatchView::validate`], and with `keys_required` every record must have a
    /// key (compacted topics: Kafka refuses the batch, naming the first keyless record).
    pub fn validate_with(&self, keys_required: bool) -> Result<Option<RecordsSummary>, LogError> {
        self.validate_crc()?;
        let h = &self.header;
        let codec = h.attributes & COMPRESSION_MASK;
        if codec > MAX_CODEC {
            return Err(LogError::InvalidRecord(format!(
                "unknown compression codec {codec}"
            )));
        }
        if h.records_count <= 0 {
            return Err(LogError::InvalidRecord(format!(
                "batch declares {} records; a batch must hold at least one",
                h.records_count
            )));
        }
        if h.last_offset_delta as i64 + 1 != h.records_count as i64 {
            return Err(LogError::InvalidRecord(format!(
                "lastOffsetDelta {} does not match recordsCount {}",
                h.last_offset_delta, h.records_count
            )));
        }
        if codec != 0 {
            // Stored as they come (compressed), but looked inside first: the records a
            // consumer will decompress must be what the header claims.
            let records = super::decompress::decompress(
                codec as u16,
                self.records(),
                DECOMPRESSED_BATCH_MAX_BYTES,
            )?;
            return walk_records(&records, h.records_count, h.base_timestamp, keys_required)
                .map(Some);
        }
        walk_records(
            self.records(),
            h.records_count,
            h.base_timestamp,
            keys_required,
        )
        .map(Some)
    }
}

/// Splits a buffer of concatenated batches; yields an error (then stops) on the first
/// truncated or garbled one.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Iterates the batches of `buf` (for example a produce request's records).
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        failed: false,
    }
}

impl BatchIter<'_> {
    /// Byte position of the next batch in the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<RecordBatchView<'a>, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let prefix = rest.get(..HEADER_LEN).unwrap_or(rest);
        let result = frame_size(prefix, rest.len() as u64, self.pos as u64)
            .and_then(|size| RecordBatchView::new(rest.get(..size).unwrap_or_default()));
        match &result {
            Ok(view) => self.pos += view.as_bytes().len(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// In-place editing of one batch's header fields.
#[derive(Debug)]
pub struct RecordBatchMut<'a> {
    bytes: &'a mut [u8],
}

impl<'a> RecordBatchMut<'a> {
    /// Wraps a batch; fails if it is shorter than a header.
    pub fn new(bytes: &'a mut [u8]) -> Result<Self, LogError> {
        if bytes.len() < HEADER_LEN {
            return Err(LogError::CorruptRecord(format!(
                "batch of {} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        Ok(RecordBatchMut { bytes })
    }

    /// Writes the base offset (outside the CRC).
    pub fn set_base_offset(&mut self, offset: i64) {
        self.bytes[..8].copy_from_slice(&offset.to_be_bytes());
    }

    /// Writes the partition leader epoch (outside the CRC).
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.bytes[EPOCH_AT..EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
    }

    /// Stamps LogAppendTime: sets the max timestamp and the timestamp-type bit, then
    /// recomputes the CRC (both fields are covered by it).
    pub fn set_log_append_time(&mut self, now_ms: i64) {
        self.set_timestamp_type(true);
        self.set_max_timestamp(now_ms);
    }

    /// Marks the batch CreateTime with max timestamp `max_ts`, then recomputes the CRC.
    pub fn set_create_time(&mut self, max_ts: i64) {
        self.set_timestamp_type(false);
        self.set_max_timestamp(max_ts);
    }

    /// Sets the max timestamp and recomputes the CRC.
    pub fn set_max_timestamp(&mut self, ts: i64) {
        self.bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&ts.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        self.bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    fn set_timestamp_type(&mut self, log_append_time: bool) {
        let at = ATTRIBUTES_AT;
        let attributes = i16::from_be_bytes([self.bytes[at], self.bytes[at + 1]]);
        let attributes = if log_append_time {
            attributes | TIMESTAMP_TYPE_BIT
        } else {
            attributes & !TIMESTAMP_TYPE_BIT
        };
        self.bytes[at..at + 2].copy_from_slice(&attributes.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{batch_with, encode_batch, simple_batch, TestRecord};
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_and_validation() {
        let b = simple_batch(1_000, 3, 10);
        let v = RecordBatchView::new(&b).unwrap();
        assert_eq!(v.header().records_count, 3);
        assert_eq!(v.header().last_offset_delta, 2);
        assert_eq!(v.header().max_timestamp, 1_002);
        let s = v.validate().unwrap().unwrap();
        assert_eq!(s.max_timestamp, 1_002);
        assert_eq!(s.offset_delta_of_max, 2);
    }

    #[test]
    fn iterates_concatenated_batches_and_stops_at_torn_one() {
        let mut buf = simple_batch(1, 2, 5);
        buf.extend(simple_batch(2, 1, 5));
        assert_eq!(batches(&buf).count(), 2);
        assert!(batches(&buf).all(|b| b.is_ok()));
        buf.truncate(buf.len() - 3);
        let items: Vec<_> = batches(&buf).collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Err(LogError::CorruptRecord(_))));
    }

    #[test]
    fn rejects_bad_crc_magic_and_counts() {
        let mut b = simple_batch(1, 2, 5);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            RecordBatchView::new(&b).unwrap().validate(),
            Err(LogError::CorruptRecord(_))
        ));

        let mut b = simple_batch(1, 2, 5);
        b[16] = 1;
        assert!(matches!(
            batches(&b).next(),
            Some(Err(LogError::UnsupportedMagic(1)))
        ));

        // recordsCount 3 with two records: CRC fixed up so the count check is what fails.
        let mut b = simple_batch(1, 2, 5);
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        RecordBatchMut::new(&mut b).unwrap().set_max_timestamp(2);
        assert!(matches!(
            RecordBatchView::new(&b).unwrap().validate(),
            Err(LogError::InvalidRecord(_))
        ));

        // lastOffsetDelta inconsistent with the count.
        let mut b = simple_batch(1, 2, 5);
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        RecordBatchMut::new(&mut b).unwrap().set_max_timestamp(2);
        assert!(matches!(
            RecordBatchView::new(&b).unwrap().validate(),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn rejects_records_that_do_not_fill_the_batch() {
        let recs = vec![TestRecord::value(b"abc")];
        let mut b = encode_batch(0, 10, &recs, 0);
        // Declare the record one byte shorter: the walk must notice.
        b[HEADER_LEN] = 2 * (b[HEADER_LEN] / 2 - 1);
        RecordBatchMut::new(&mut b).unwrap().set_max_timestamp(10);
        assert!(matches!(
            RecordBatchView::new(&b).unwrap().validate(),
            Err(LogError::InvalidRecordAt { index: 0, .. })
        ));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// As Kafka's LogValidator: a compressed batch's records are decompressed and walked
    /// like uncompressed ones (before, they were stored unchecked).
    #[test]
    fn compressed_batches_are_looked_inside() {
        let recs: Vec<TestRecord> = (0..3)
            .map(|i| TestRecord {
                timestamp_delta: i,
                ..TestRecord::value(b"compressed")
            })
            .collect();
        let plain = crate::test_util::encode_records(&recs);
        let validate = |b: Vec<u8>| RecordBatchView::new(&b).unwrap().validate();

        let good = validate(batch_with(0, 5, 3, 1, gzip(&plain)))
            .unwrap()
            .unwrap();
        assert_eq!((good.min_timestamp, good.max_timestamp), (5, 7));
        // The header claims four records; the compressed payload holds three.
        assert!(matches!(
            validate(batch_with(0, 5, 4, 1, gzip(&plain))),
            Err(LogError::InvalidRecord(m)) if m.contains("holds 3")
        ));
        // The last record is cut short inside the compression: reported by its index.
        assert!(matches!(
            validate(batch_with(0, 5, 3, 1, gzip(&plain[..plain.len() - 1]))),
            Err(LogError::InvalidRecordAt { index: 2, .. })
        ));
        // Not gzip at all.
        assert!(matches!(
            validate(batch_with(0, 5, 3, 1, vec![0xde; 40])),
            Err(LogError::CorruptRecord(_))
        ));
    }

    #[test]
    fn mutation_helpers_keep_crc_valid() {
        let mut b = simple_batch(100, 2, 5);
        {
            let mut m = RecordBatchMut::new(&mut b).unwrap();
            m.set_base_offset(42);
            m.set_partition_leader_epoch(7);
            m.set_log_append_time(999);
        }
        let v = RecordBatchView::new(&b).unwrap();
        v.validate().unwrap();
        assert_eq!(v.header().base_offset, 42);
        assert_eq!(v.header().partition_leader_epoch, 7);
        assert_eq!(v.header().max_timestamp, 999);
        assert!(v.header().is_log_append_time());
        RecordBatchMut::new(&mut b).unwrap().set_create_time(5);
        let v = RecordBatchView::new(&b).unwrap();
        v.validate().unwrap();
        assert!(!v.header().is_log_append_time());
        assert_eq!(v.header().max_timestamp, 5);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            for v in batches(&data).flatten() {
                let _ = v.validate();
            }
        }

        #[test]
        fn never_panics_on_mutated_valid_batch(idx in 0usize..200, byte in any::<u8>()) {
            let mut b = simple_batch(5, 3, 20);
            let i = idx % b.len();
            b[i] = byte;
            // Also keep the CRC valid so the record walk sees the garbage.
            if b.len() >= HEADER_LEN {
                let crc = crc32c::crc32c(&b[21..]);
                b[17..21].copy_from_slice(&crc.to_be_bytes());
            }
            for v in batches(&b).flatten() {
                let _ = v.validate();
            }
        }
    }
}
