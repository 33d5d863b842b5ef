//! Keyed records of an internal topic (`__consumer_offsets`, `__transaction_state`) in
//! ordinary RecordBatch v2 batches: each coordinator encodes its own keys and values; a
//! record without a value (a tombstone) deletes its key.
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A decoded record: its key and value, either possibly absent.
pub type KeyedRecord = (Option<Bytes>, Option<Bytes>);

/// Encodes (key, value) records as one uncompressed batch (offsets assigned on append).
pub fn encode_keyed(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<Bytes, String> {
    let batch: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        batch.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("cannot encode coordinator records: {e}"))?;
    Ok(buf.freeze())
}

/// Every (key, value) of the batches in `bytes`, in log order, and whether a batch did
/// not decode (the rest of `bytes` is then skipped).
pub fn decode_keyed(mut bytes: Bytes) -> (Vec<KeyedRecord>, bool) {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(set) = RecordBatchDecoder::decode(&mut bytes) else {
            return (out, true);
        };
        out.extend(set.records.into_iter().map(|r| (r.key, r.value)));
    }
    (out, false)
}
