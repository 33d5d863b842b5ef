//! Rewriting one batch without the records the cleaner drops: the kept records are
//! copied byte for byte into a batch with the same base offset, base timestamp, last
//! offset delta, producer fields and codec, so their offsets, timestamps, keys, values
//! and headers are unchanged and a batch's last offset (which producer state and
//! segment ends rely on) stays where it was.
use std::borrow::Cow;

use crate::batch::{RecordBatchView, DECOMPRESSED_BATCH_MAX_BYTES};
use crate::compress::compress;
use crate::decompress::decompress;
use crate::error::LogError;
use crate::records::{split_records, RecordRef};

/// What becomes of one batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered<'a> {
    /// Every record is kept: the batch is copied as it is.
    Kept(&'a [u8]),
    /// Some records went: the rewritten batch (possibly with no records, when the batch
    /// had to stay).
    Rewritten(Vec<u8>),
    /// Every record went and the batch need not stay.
    Dropped,
}

/// How many records one batch lost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed(pub u64);

/// Filters `batch`: `keep` decides each record given its absolute offset; with
/// `keep_empty` a batch that loses every record stays as an empty batch (its header
/// alone), as Kafka keeps a producer's last batch. Control batches stay whole.
pub(crate) fn filter_batch<'a>(
    batch: &RecordBatchView<'a>,
    keep_empty: bool,
    keep: &mut dyn FnMut(&RecordRef<'_>, i64) -> bool,
) -> Result<(Filtered<'a>, Removed), LogError> {
    let h = *batch.header();
    if h.records_count == 0 && h.compression() != 0 {
        // Written by an earlier build with its codec left on: drop the codec.
        let out = batch.with_records(&[], 0, h.max_timestamp);
        return Ok((Filtered::Rewritten(out), Removed(0)));
    }
    if h.is_control() || h.records_count == 0 {
        return Ok((Filtered::Kept(batch.as_bytes()), Removed(0)));
    }
    let codec = h.compression() as u16;
    let decompressed;
    let records = if codec == 0 {
        batch.records()
    } else {
        decompressed = decompress(codec, batch.records(), DECOMPRESSED_BATCH_MAX_BYTES)?;
        &decompressed[..]
    };
    let split = split_records(records)?;
    let mut kept: Vec<&RecordRef<'_>> = Vec::with_capacity(split.len());
    for r in &split {
        if keep(r, h.base_offset.saturating_add(r.offset_delta)) {
            kept.push(r);
        }
    }
    let removed = Removed((split.len() - kept.len()) as u64);
    if kept.len() == split.len() {
        return Ok((Filtered::Kept(batch.as_bytes()), removed));
    }
    if kept.is_empty() && !keep_empty {
        return Ok((Filtered::Dropped, removed));
    }
    let mut body = Vec::with_capacity(kept.iter().map(|r| r.bytes.len()).sum());
    for r in &kept {
        body.extend_from_slice(r.bytes);
    }
    // LogAppendTime batches carry the append time for every record; CreateTime ones
    // report the largest kept record's timestamp (the batch's own when none is kept).
    let max_timestamp = match kept.iter().map(|r| r.timestamp_delta).max() {
        Some(delta) if !h.is_log_append_time() => h.base_timestamp.saturating_add(delta),
        _ => h.max_timestamp,
    };
    let records: Cow<'_, [u8]> = if codec == 0 || body.is_empty() {
        Cow::Borrowed(&body)
    } else {
        Cow::Owned(compress(codec, &body)?)
    };
    Ok((
        Filtered::Rewritten(batch.with_records(&records, kept.len() as i32, max_timestamp)),
        removed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{encode_batch, TestRecord};

    fn record(ts: i64, key: &str, value: Option<&str>) -> TestRecord {
        TestRecord {
            timestamp_delta: ts,
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![(b"h".to_vec(), Some(key.as_bytes().to_vec()))],
        }
    }

    fn offsets_and_keys(batch: &[u8]) -> (crate::batch::BatchHeader, Vec<(i64, Vec<u8>)>) {
        let view = RecordBatchView::new(batch).unwrap();
        view.validate_crc().unwrap();
        let h = *view.header();
        let codec = h.compression() as u16;
        let records = match codec {
            0 => view.records().to_vec(),
            c => decompress(c, view.records(), usize::MAX).unwrap(),
        };
        let got = split_records(&records)
            .unwrap()
            .iter()
            .map(|r| (h.base_offset + r.offset_delta, r.key.unwrap().to_vec()))
            .collect();
        (h, got)
    }

    #[test]
    fn kept_records_keep_their_offsets_timestamps_and_bytes() {
        let records = [
            record(0, "a", Some("1")),
            record(7, "b", Some("2")),
            record(3, "c", None),
        ];
        for codec in [0i16, 1, 2, 3, 4] {
            let mut batch = encode_batch(100, 1_000, &records, 0);
            if codec != 0 {
                let view = RecordBatchView::new(&batch).unwrap();
                let packed = compress(codec as u16, view.records()).unwrap();
                let mut b = view.with_records(&packed, 3, 1_007);
                b[22] |= codec as u8; // attributes low byte: the codec
                let crc = crc32c::crc32c(&b[21..]);
                b[17..21].copy_from_slice(&crc.to_be_bytes());
                batch = b;
            }
            let view = RecordBatchView::new(&batch).unwrap();
            let (out, removed) =
                filter_batch(&view, false, &mut |r, _| r.key != Some(b"b")).unwrap();
            assert_eq!(removed, Removed(1));
            let Filtered::Rewritten(out) = out else {
                panic!("expected a rewrite")
            };
            let (h, got) = offsets_and_keys(&out);
            assert_eq!(
                got,
                vec![(100, b"a".to_vec()), (102, b"c".to_vec())],
                "codec {codec}"
            );
            assert_eq!(h.records_count, 2);
            assert_eq!(h.last_offset(), 102);
            assert_eq!(h.base_timestamp, 1_000);
            assert_eq!(h.max_timestamp, 1_003, "the largest kept timestamp");
            assert_eq!(h.compression(), codec as u8);
        }
    }

    #[test]
    fn a_compressed_batch_kept_empty_has_no_codec() {
        // librdkafka failed such a batch with _BAD_COMPRESSION ("of 0 bytes").
        let records = [record(0, "a", Some("1")), record(1, "b", Some("2"))];
        for codec in [1u16, 2, 3, 4] {
            let batch = encode_batch(10, 0, &records, 0);
            let view = RecordBatchView::new(&batch).unwrap();
            let packed = compress(codec, view.records()).unwrap();
            let mut b = view.with_records(&packed, 2, 1);
            b[22] |= codec as u8; // attributes low byte: the codec
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let view = RecordBatchView::new(&b).unwrap();
            assert_eq!(view.header().compression(), codec as u8);
            let (out, _) = filter_batch(&view, true, &mut |_, _| false).unwrap();
            let Filtered::Rewritten(out) = out else {
                panic!("expected an empty batch")
            };
            let empty = RecordBatchView::new(&out).unwrap();
            assert_eq!(empty.header().compression(), 0, "codec {codec}");
            assert_eq!(empty.header().records_count, 0);
            assert!(empty.validate_crc().is_ok(), "codec {codec}");
            // An empty batch an earlier build left compressed is fixed on the next pass.
            let mut stale = out.clone();
            stale[22] |= codec as u8;
            let crc = crc32c::crc32c(&stale[21..]);
            stale[17..21].copy_from_slice(&crc.to_be_bytes());
            let view = RecordBatchView::new(&stale).unwrap();
            let (fixed, removed) = filter_batch(&view, true, &mut |_, _| true).unwrap();
            assert_eq!((fixed, removed), (Filtered::Rewritten(out), Removed(0)));
        }
    }

    #[test]
    fn a_batch_that_loses_everything_is_dropped_or_kept_empty() {
        let batch = encode_batch(10, 0, &[record(0, "a", Some("1")), record(1, "b", None)], 0);
        let view = RecordBatchView::new(&batch).unwrap();
        let (out, removed) = filter_batch(&view, false, &mut |_, _| false).unwrap();
        assert_eq!((out, removed), (Filtered::Dropped, Removed(2)));
        let (out, _) = filter_batch(&view, true, &mut |_, _| false).unwrap();
        let Filtered::Rewritten(out) = out else {
            panic!("expected an empty batch")
        };
        let (h, got) = offsets_and_keys(&out);
        assert!(got.is_empty());
        assert_eq!(
            (h.base_offset, h.last_offset(), h.records_count),
            (10, 11, 0)
        );
        let (out, removed) = filter_batch(&view, false, &mut |_, _| true).unwrap();
        assert_eq!((out, removed), (Filtered::Kept(&batch[..]), Removed(0)));
    }
}
