//! The records inside an uncompressed v2 batch: varint-framed, walked without copying
//! to check that a producer's batch is what its header claims, and split into
//! [`RecordRef`]s for the log cleaner.
//!
//! Record layout (integers are zigzag varints): length, attributes (one byte),
//! timestampDelta (varlong), offsetDelta, keyLength + key, valueLength + value,
//! header count, then per header keyLength + key, valueLength + value.

use super::error::LogError;

/// What walking an uncompressed batch's records found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsSummary {
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Offset delta of the first record carrying that timestamp.
    pub offset_delta_of_max: i32,
    /// Smallest record timestamp.
    pub min_timestamp: i64,
}

/// Walks uncompressed records, checking each one's framing, that offset deltas count up
/// from 0, that exactly `count` records exactly fill the buffer, and with `keys_required`
/// that each has a key.
pub(crate) fn walk_records(
    records: &[u8],
    count: i32,
    base_ts: i64,
    keys_required: bool,
) -> Result<RecordsSummary, LogError> {
    let mut pos = 0usize;
    let mut seen: i32 = 0;
    let mut summary = RecordsSummary {
        max_timestamp: i64::MIN,
        offset_delta_of_max: 0,
        min_timestamp: i64::MAX,
    };
    while pos < records.len() {
        if seen >= count {
            return Err(invalid(
                seen,
                "extra bytes after the declared number of records",
            ));
        }
        let len = read_varint(records, &mut pos, 5).map_err(|e| invalid(seen, e))?;
        let body = usize::try_from(len)
            .ok()
            .and_then(|len| records.get(pos..pos.checked_add(len)?))
            .ok_or_else(|| {
                invalid(
                    seen,
                    &format!(
                        "length {len} overruns the {} bytes left",
                        records.len() - pos
                    ),
                )
            })?;
        pos += body.len();
        let fields = parse_record_body(body).map_err(|e| invalid(seen, e))?;
        if keys_required && fields.key.is_none() {
            return Err(invalid(
                seen,
                "a compacted topic cannot accept a record without a key",
            ));
        }
        let (ts_delta, offset_delta) = (fields.timestamp_delta, fields.offset_delta);
        if offset_delta != seen as i64 {
            return Err(invalid(
                seen,
                &format!("offset delta {offset_delta}, expected {seen}"),
            ));
        }
        let ts = base_ts.saturating_add(ts_delta);
        if ts > summary.max_timestamp {
            summary.max_timestamp = ts;
            summary.offset_delta_of_max = seen;
        }
        summary.min_timestamp = summary.min_timestamp.min(ts);
        seen += 1;
    }
    if seen != count {
        return Err(LogError::InvalidRecord(format!(
            "batch declares {count} records but holds {seen}"
        )));
    }
    Ok(summary)
}

fn invalid(index: i32, what: &str) -> LogError {
    LogError::InvalidRecordAt {
        index,
        reason: what.to_string(),
    }
}

/// One record's fields, as positions in its body.
struct RecordFields {
    timestamp_delta: i64,
    offset_delta: i64,
    /// Where the key lies in the body; None when it is null.
    key: Option<std::ops::Range<usize>>,
    /// Where the value lies in the body; None when it is null (a tombstone).
    value: Option<std::ops::Range<usize>>,
}

/// One record of an uncompressed batch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i64,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// The key; None when null.
    pub key: Option<&'a [u8]>,
    /// The value; None when null.
    pub value: Option<&'a [u8]>,
    /// Whether the value is null (a tombstone).
    pub is_tombstone: bool,
    /// The whole record as stored, length prefix included: copying it into another batch
    /// with the same base offset and base timestamp keeps it byte for byte.
    pub bytes: &'a [u8],
}

/// Splits uncompressed records; fails on the first one whose framing is wrong.
pub(crate) fn split_records(records: &[u8]) -> Result<Vec<RecordRef<'_>>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let index = out.len() as i32;
        let start = pos;
        let len = read_varint(records, &mut pos, 5).map_err(|e| invalid(index, e))?;
        let body = usize::try_from(len)
            .ok()
            .and_then(|len| records.get(pos..pos.checked_add(len)?))
            .ok_or_else(|| invalid(index, "record length overruns the batch"))?;
        let body_start = pos;
        pos += body.len();
        let fields = parse_record_body(body).map_err(|e| invalid(index, e))?;
        out.push(RecordRef {
            offset_delta: fields.offset_delta,
            timestamp_delta: fields.timestamp_delta,
            key: fields
                .key
                .map(|r| &records[body_start + r.start..body_start + r.end]),
            is_tombstone: fields.value.is_none(),
            value: fields
                .value
                .map(|r| &records[body_start + r.start..body_start + r.end]),
            bytes: &records[start..pos],
        });
    }
    Ok(out)
}

/// Parses one record body.
fn parse_record_body(body: &[u8]) -> Result<RecordFields, &'static str> {
    let mut pos = 0usize;
    if body.is_empty() {
        return Err("empty record");
    }
    pos += 1; // attributes: unused in v2, any value accepted as Kafka does
    let timestamp_delta = read_varint(body, &mut pos, 10)?;
    let offset_delta = read_varint(body, &mut pos, 5)?;
    let key = skip_bytes(body, &mut pos, true)?;
    let value = skip_bytes(body, &mut pos, true)?;
    let headers = read_varint(body, &mut pos, 5)?;
    if headers < 0 {
        return Err("negative header count");
    }
    for _ in 0..headers {
        skip_bytes(body, &mut pos, false)?; // header key: never null
        skip_bytes(body, &mut pos, true)?; // header value
    }
    if pos != body.len() {
        return Err("record length does not match its fields");
    }
    Ok(RecordFields {
        timestamp_delta,
        offset_delta,
        key,
        value,
    })
}

/// Skips a varint-length-prefixed byte string and returns where it lies; -1 means null
/// (None) where `nullable`.
fn skip_bytes(
    buf: &[u8],
    pos: &mut usize,
    nullable: bool,
) -> Result<Option<std::ops::Range<usize>>, &'static str> {
    let len = read_varint(buf, pos, 5)?;
    if len == -1 && nullable {
        return Ok(None);
    }
    let start = *pos;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| pos.checked_add(len))
        .filter(|&end| end <= buf.len())
        .ok_or("field length out of bounds")?;
    *pos = end;
    Ok(Some(start..end))
}

/// Reads a zigzag varint of at most `max_bytes` bytes (5 for int, 10 for long).
fn read_varint(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<i64, &'static str> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let byte = *buf.get(*pos).ok_or("varint runs past the end")?;
        *pos += 1;
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint too long")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::put_varint;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut pos = 0;
            prop_assert_eq!(read_varint(&buf, &mut pos, 10), Ok(v));
            prop_assert_eq!(pos, buf.len());
        }

        #[test]
        fn walk_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), count in -2i32..10) {
            let _ = walk_records(&data, count, i64::MAX - 5, true);
        }
    }

    #[test]
    fn split_records_borrows_keys_and_marks_tombstones() {
        use crate::test_util::{encode_records, TestRecord};
        let records = encode_records(&[
            TestRecord {
                timestamp_delta: 3,
                key: Some(b"a".to_vec()),
                value: Some(b"1".to_vec()),
                headers: vec![(b"h".to_vec(), None)],
            },
            TestRecord {
                timestamp_delta: 5,
                key: Some(b"bb".to_vec()),
                value: None,
                headers: vec![],
            },
            TestRecord::value(b"keyless"),
        ]);
        let split = split_records(&records).unwrap();
        let got: Vec<_> = split
            .iter()
            .map(|r| (r.offset_delta, r.timestamp_delta, r.key, r.is_tombstone))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 3, Some(b"a".as_slice()), false),
                (1, 5, Some(b"bb".as_slice()), true),
                (2, 0, None, false),
            ]
        );
        let rejoined: Vec<u8> = split.iter().flat_map(|r| r.bytes.to_vec()).collect();
        assert_eq!(rejoined, records);
        assert!(split_records(&records[..records.len() - 1]).is_err());
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut pos = 0;
        assert!(read_varint(&[0xff; 6], &mut pos, 5).is_err());
    }
}
