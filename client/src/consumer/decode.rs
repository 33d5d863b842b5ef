//! Fetched bytes to records: split record batches, decode them with kafka-protocol's
//! `RecordBatchDecoder` (any compression), and drop what the consumer must not see.
//!
//! Kafka semantics handled here (docs/architecture.md §10): a fetch at an offset inside a batch returns
//! the whole batch, so records below the fetch offset are skipped; the last batch of a
//! response may be cut short, so it is left for the next fetch; control batches advance
//! the position but yield nothing; LogAppendTime batches carry the time in the header.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::error::{Error, Result};
use crate::types::Header;

/// Bytes before the records in a v2 batch header.
const HEADER_LEN: usize = 61;
/// Smallest possible encoded record: length, attributes, two deltas, key and value lengths
/// and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

/// Whether the timestamp was set by the producer or by the broker on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// The producer's create time.
    CreateTime,
    /// The broker's append time (topic config `message.timestamp.type=LogAppendTime`).
    LogAppendTime,
}

/// A record as the consumer hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Meaning of `timestamp`.
    pub timestamp_kind: TimestampKind,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order. (kafka-protocol keeps one value per header key.)
    pub headers: Vec<Header>,
}

/// Records from one partition's fetched bytes.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Records at or above the fetch offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last complete batch, if any batch was complete.
    pub next_offset: Option<i64>,
    /// Bytes were present but not even one complete batch.
    pub only_partial: bool,
}

/// Fixed header fields the decoder does not expose.
struct BatchHeader {
    base_offset: i64,
    last_offset_delta: i32,
    max_timestamp: i64,
    attributes: i16,
    record_count: i32,
}

impl BatchHeader {
    fn parse(batch: &[u8]) -> Option<Self> {
        let mut b = batch.get(..HEADER_LEN)?;
        let base_offset = b.get_i64();
        let _length = b.get_i32();
        let _leader_epoch = b.get_i32();
        let _magic = b.get_i8();
        let _crc = b.get_u32();
        let attributes = b.get_i16();
        let last_offset_delta = b.get_i32();
        let _first_timestamp = b.get_i64();
        let max_timestamp = b.get_i64();
        let _producer_id = b.get_i64();
        let _producer_epoch = b.get_i16();
        let _base_sequence = b.get_i32();
        let record_count = b.get_i32();
        Some(Self {
            base_offset,
            last_offset_delta,
            max_timestamp,
            attributes,
            record_count,
        })
    }
}

/// Decodes one partition's `records` bytes, keeping records at or above `fetch_offset`.
pub fn decode_records(
    topic: &Arc<str>,
    partition: i32,
    mut data: Bytes,
    fetch_offset: i64,
) -> Result<Decoded> {
    let mut out = Decoded::default();
    let had_data = !data.is_empty();
    while data.len() >= 12 {
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let Ok(len) = usize::try_from(len) else {
            return Err(Error::protocol(format!(
                "{topic}-{partition}: negative batch length {len}"
            )));
        };
        let total = 12 + len;
        if total < HEADER_LEN {
            return Err(Error::protocol(format!(
                "{topic}-{partition}: batch length {len} is below the v2 header size"
            )));
        }
        if data.len() < total {
            break; // a truncated last batch: fetched again next time
        }
        let mut batch = data.split_to(total);
        let magic = batch[16];
        if magic != 2 {
            return Err(Error::protocol(format!(
                "{topic}-{partition}: record batch magic {magic} is not supported (v2 only)"
            )));
        }
        let Some(h) = BatchHeader::parse(&batch) else {
            break;
        };
        let next = h
            .base_offset
            .saturating_add(i64::from(h.last_offset_delta))
            .saturating_add(1);
        out.next_offset = Some(out.next_offset.map_or(next, |n: i64| n.max(next)));
        let control = h.attributes & 0x20 != 0;
        if next <= fetch_offset || control {
            continue;
        }
        let log_append = h.attributes & 0x08 != 0;
        let count = usize::try_from(h.record_count).unwrap_or(usize::MAX);
        let guard = move |buf: &mut Bytes, c: Compression| decompress_checked(buf, c, count);
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(guard))
            .map_err(|e| {
                Error::protocol(format!(
                    "{topic}-{partition}: bad record batch at offset {}: {e}",
                    h.base_offset
                ))
            })?;
        out.records.reserve(set.records.len());
        for r in set.records {
            if r.offset < fetch_offset {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                // Kafka's rule: on LogAppendTime batches every record has the batch's time.
                timestamp: if log_append {
                    h.max_timestamp
                } else {
                    r.timestamp
                },
                timestamp_kind: if log_append {
                    TimestampKind::LogAppendTime
                } else {
                    TimestampKind::CreateTime
                },
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    out.only_partial = had_data && out.next_offset.is_none();
    Ok(out)
}

/// Decompresses the record bytes and refuses a record count the bytes cannot hold, before
/// the decoder reserves memory for that many records.
fn decompress_checked(
    buf: &mut Bytes,
    compression: Compression,
    count: usize,
) -> anyhow::Result<Bytes> {
    let take = |b: &mut Bytes| -> anyhow::Result<Bytes> { Ok(std::mem::take(b)) };
    let plain = match compression {
        Compression::None => <cmpr::None as Decompressor<Bytes>>::decompress(buf, take)?,
        Compression::Gzip => <cmpr::Gzip as Decompressor<Bytes>>::decompress(buf, take)?,
        Compression::Snappy => <cmpr::Snappy as Decompressor<Bytes>>::decompress(buf, take)?,
        Compression::Lz4 => <cmpr::Lz4 as Decompressor<Bytes>>::decompress(buf, take)?,
        Compression::Zstd => <cmpr::Zstd as Decompressor<Bytes>>::decompress(buf, take)?,
    };
    if count > plain.len() / MIN_RECORD_LEN {
        anyhow::bail!("batch claims {count} records in {} bytes", plain.len());
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::batch::ProducerBatch;
    use crate::types::{Compression as C, TopicPartition};
    use bytes::BytesMut;
    use std::time::Instant;

    /// Encodes `n` records starting at `base` with the producer's encoder.
    fn batch(base: i64, n: usize, compression: C) -> Bytes {
        let mut b = ProducerBatch::new(TopicPartition::new("t", 0), 0, Instant::now());
        for i in 0..n {
            let headers = vec![("h".to_string(), Some(Bytes::from(format!("{i}"))))];
            let _f = b.push(
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(format!("v{i}"))),
                headers,
                500 + i as i64,
                10,
            );
        }
        let encoded = b.encode(compression).unwrap();
        // The broker assigns the base offset; the CRC does not cover it.
        let mut v = BytesMut::from(&encoded[..]);
        v[..8].copy_from_slice(&base.to_be_bytes());
        v.freeze()
    }

    fn topic() -> Arc<str> {
        Arc::from("t")
    }

    #[test]
    fn round_trip_every_compression() {
        for c in [C::None, C::Gzip, C::Snappy, C::Lz4, C::Zstd] {
            let d = decode_records(&topic(), 0, batch(10, 4, c), 10).unwrap();
            let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![10, 11, 12, 13], "{c:?}");
            assert_eq!(d.records[2].key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(d.records[2].value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(d.records[2].timestamp, 502);
            assert_eq!(
                d.records[2].headers,
                vec![("h".to_string(), Some(Bytes::from_static(b"2")))]
            );
            assert_eq!(d.next_offset, Some(14));
        }
    }

    #[test]
    fn skips_below_fetch_offset_and_keeps_truncated_tail() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch(0, 5, C::None));
        data.extend_from_slice(&batch(5, 5, C::Lz4));
        let second = batch(10, 3, C::None);
        data.extend_from_slice(&second[..second.len() - 7]);
        let d = decode_records(&topic(), 0, data.freeze(), 3).unwrap();
        let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(d.next_offset, Some(10));
        assert!(!d.only_partial);
    }

    #[test]
    fn only_a_partial_batch_is_flagged() {
        let b = batch(0, 3, C::None);
        let d = decode_records(&topic(), 0, b.slice(..b.len() - 1), 0).unwrap();
        assert!(d.records.is_empty());
        assert!(d.only_partial);
        assert!(
            !decode_records(&topic(), 0, Bytes::new(), 0)
                .unwrap()
                .only_partial
        );
    }

    #[test]
    fn log_append_time_uses_the_batch_time() {
        let mut v = BytesMut::from(&batch(0, 2, C::None)[..]);
        v[22] |= 0x08; // timestamp type bit (attributes low byte)
        v[35..43].copy_from_slice(&9_999i64.to_be_bytes());
        // The CRC covers attributes onward: recompute it like a broker would.
        let crc = crc32c::crc32c(&v[21..]);
        v[17..21].copy_from_slice(&crc.to_be_bytes());
        let d = decode_records(&topic(), 0, v.freeze(), 0).unwrap();
        assert!(d
            .records
            .iter()
            .all(|r| r.timestamp == 9_999 && r.timestamp_kind == TimestampKind::LogAppendTime));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        // Record count far beyond what the bytes can hold.
        let mut v = BytesMut::from(&batch(0, 1, C::None)[..]);
        v[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&v[21..]);
        v[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_records(&topic(), 0, v.freeze(), 0).is_err());
        // Corrupt CRC, bad magic, negative and tiny lengths.
        let mut v = BytesMut::from(&batch(0, 1, C::None)[..]);
        let last = v.len() - 1;
        v[last] ^= 1;
        assert!(decode_records(&topic(), 0, v.freeze(), 0).is_err());
        let mut v = BytesMut::from(&batch(0, 1, C::None)[..]);
        v[16] = 1;
        assert!(decode_records(&topic(), 0, v.freeze(), 0).is_err());
        let mut neg = vec![0u8; 70];
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_records(&topic(), 0, Bytes::from(neg), 0).is_err());
        let mut tiny = vec![0u8; 70];
        tiny[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(decode_records(&topic(), 0, Bytes::from(tiny), 0).is_err());
        // Random garbage of many sizes never panics.
        let mut seed = 7u64;
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = decode_records(&topic(), 0, Bytes::from(bytes), 0);
        }
    }
}
