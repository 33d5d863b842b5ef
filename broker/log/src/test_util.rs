//! Test-only helpers: an encoder of valid RecordBatch v2 bytes, written from the format
//! description, and log fixtures shared by the recovery tests.

use std::fs;
use std::path::{Path, PathBuf};

use super::batch::batches;
use super::Log;

/// One record to encode.
#[derive(Debug, Clone)]
pub(crate) struct TestRecord {
    pub timestamp_delta: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl TestRecord {
    /// A record with only a value, timestamp delta 0.
    pub(crate) fn value(v: &[u8]) -> Self {
        TestRecord {
            timestamp_delta: 0,
            key: None,
            value: Some(v.to_vec()),
            headers: Vec::new(),
        }
    }
}

/// Appends a zigzag varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Encodes the records of an uncompressed batch.
pub(crate) fn encode_records(records: &[TestRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, r.timestamp_delta);
        put_varint(&mut body, i as i64);
        put_bytes(&mut body, &r.key);
        put_bytes(&mut body, &r.value);
        put_varint(&mut body, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut body, &Some(k.clone()));
            put_bytes(&mut body, v);
        }
        put_varint(&mut out, body.len() as i64);
        out.extend(body);
    }
    out
}

/// Builds a batch around an already encoded records section.
pub(crate) fn batch_with(
    base_offset: i64,
    base_ts: i64,
    count: i32,
    attributes: i16,
    records: Vec<u8>,
) -> Vec<u8> {
    batch_full(
        base_offset,
        base_ts,
        base_ts + count as i64 - 1,
        count,
        attributes,
        records,
    )
}

fn batch_full(
    base_offset: i64,
    base_ts: i64,
    max_ts: i64,
    count: i32,
    attributes: i16,
    records: Vec<u8>,
) -> Vec<u8> {
    batch_of_producer(
        base_offset,
        base_ts,
        max_ts,
        count,
        attributes,
        (-1, -1, -1),
        records,
    )
}

fn batch_of_producer(
    base_offset: i64,
    base_ts: i64,
    max_ts: i64,
    count: i32,
    attributes: i16,
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
    records: Vec<u8>,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend(base_offset.to_be_bytes());
    b.extend(((49 + records.len()) as i32).to_be_bytes());
    b.extend((-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend(0u32.to_be_bytes()); // crc, filled below
    b.extend(attributes.to_be_bytes());
    b.extend((count - 1).to_be_bytes());
    b.extend(base_ts.to_be_bytes());
    b.extend(max_ts.to_be_bytes());
    b.extend(producer_id.to_be_bytes());
    b.extend(producer_epoch.to_be_bytes());
    b.extend(base_sequence.to_be_bytes());
    b.extend(count.to_be_bytes());
    b.extend(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Encodes an uncompressed batch of `records`.
pub(crate) fn encode_batch(
    base_offset: i64,
    base_ts: i64,
    records: &[TestRecord],
    attributes: i16,
) -> Vec<u8> {
    let max_delta = records.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
    batch_full(
        base_offset,
        base_ts,
        base_ts + max_delta,
        records.len() as i32,
        attributes,
        encode_records(records),
    )
}

/// `n` records with `value_len`-byte values; record i has timestamp `base_ts + i`.
pub(crate) fn simple_batch(base_ts: i64, n: usize, value_len: usize) -> Vec<u8> {
    let records: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord {
            timestamp_delta: i as i64,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![b'v'; value_len]),
            headers: if i % 2 == 0 {
                vec![(b"h".to_vec(), None)]
            } else {
                Vec::new()
            },
        })
        .collect();
    encode_batch(0, base_ts, &records, 0)
}

/// Parses the base offsets and record counts of concatenated batches (test checks).
pub(crate) fn batch_offsets(buf: &[u8]) -> Vec<(i64, i64)> {
    batches(buf)
        .map(|b| {
            let b = b.unwrap();
            (b.header().base_offset, b.header().last_offset())
        })
        .collect()
}

/// Appends `n` batches of varying size; returns every batch's bytes as stored.
pub(crate) fn fill(log: &mut Log, n: usize, epoch: i32) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    for i in 0..n {
        let info = log
            .append_as_leader(
                &mut simple_batch(i as i64 * 10, 1 + i % 4, 20 + (i * 37) % 150),
                epoch,
                0,
            )
            .unwrap();
        out.push(log.read(info.first_offset, 1, i64::MAX, true).unwrap());
    }
    out
}

pub(crate) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// (position, base offset, last offset, size) of each batch in a segment file.
pub(crate) fn layout(path: &Path) -> Vec<(usize, i64, i64, usize)> {
    let data = fs::read(path).unwrap();
    let mut pos = 0;
    batches(&data)
        .map_while(Result::ok)
        .map(|b| {
            let entry = (
                pos,
                b.header().base_offset,
                b.header().last_offset(),
                b.as_bytes().len(),
            );
            pos += b.as_bytes().len();
            entry
        })
        .collect()
}

pub(crate) fn assert_readable(log: &Log, stored: &[bytes::Bytes]) {
    for b in stored {
        let base = batches(b).next().unwrap().unwrap().header().base_offset;
        assert_eq!(
            &log.read(base, 1, i64::MAX, true).unwrap(),
            b,
            "batch at {base}"
        );
    }
}

/// A client batch of `n` small records at timestamp `ts`, as a producer sends it (base
/// offset 0); with `producer` = (id, epoch, base sequence), an idempotent one.
pub fn client_batch(ts: i64, n: usize, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    let records: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord::value(format!("r{i}").as_bytes()))
        .collect();
    batch_of_producer(
        0,
        ts,
        ts,
        n as i32,
        0,
        producer.unwrap_or((-1, -1, -1)),
        encode_records(&records),
    )
}
