//! The records of `__transaction_state`: one per transactional id and state change,
//! protobuf key and value (proto/proto/transactions.proto) in ordinary batches. A
//! tombstone forgets an expired id. Replaying a partition in order rebuilds every
//! transactional id its coordinator owns.
use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use spate_proto::transactions as pb;

use super::metadata::{Transition, TxnVersion};
use super::state::TxnState;
use crate::coordinator::records::{decode_keyed, encode_keyed};
use crate::topic_partition::TopicPartition;

/// One record: a transactional id's new state, or `None` to forget it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The transactional id.
    pub transactional_id: String,
    /// Its state, or a tombstone.
    pub value: Option<Transition>,
}

fn value_bytes(t: &Transition) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for p in &t.partitions {
        by_topic.entry(&p.topic).or_default().push(p.partition);
    }
    pb::TransactionValue {
        producer_id: t.producer_id,
        previous_producer_id: t.previous_producer_id,
        next_producer_id: t.next_producer_id,
        producer_epoch: i32::from(t.producer_epoch),
        last_producer_epoch: i32::from(t.last_producer_epoch),
        timeout_ms: t.timeout_ms,
        state: i32::from(t.state.id()),
        partitions: by_topic
            .into_iter()
            .map(|(topic, partitions)| pb::TransactionPartitions {
                topic: topic.to_string(),
                partitions,
            })
            .collect(),
        start_ms: t.start_ms,
        last_update_ms: t.last_update_ms,
        client_version: match t.client_version {
            TxnVersion::V0 => 0,
            TxnVersion::V2 => 2,
        },
    }
    .encode_to_vec()
    .into()
}

fn decode_value(bytes: &[u8]) -> Option<Transition> {
    let v = pb::TransactionValue::decode(bytes).ok()?;
    let epoch = |e: i32| i16::try_from(e).ok();
    Some(Transition {
        state: TxnState::from_id(i8::try_from(v.state).ok()?)?,
        producer_id: v.producer_id,
        previous_producer_id: v.previous_producer_id,
        next_producer_id: v.next_producer_id,
        producer_epoch: epoch(v.producer_epoch)?,
        last_producer_epoch: epoch(v.last_producer_epoch)?,
        timeout_ms: v.timeout_ms,
        partitions: v
            .partitions
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions
                    .into_iter()
                    .map(move |partition| TopicPartition {
                        topic: topic.clone(),
                        partition,
                    })
            })
            .collect(),
        start_ms: v.start_ms,
        last_update_ms: v.last_update_ms,
        client_version: match v.client_version {
            0 => TxnVersion::V0,
            2 => TxnVersion::V2,
            _ => return None,
        },
    })
}

/// Encodes `records` as one batch (offsets assigned on append).
pub fn encode(records: &[TxnRecord], now_ms: i64) -> Result<Bytes, String> {
    let keyed: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .map(|r| {
            let key = pb::TransactionKey {
                transactional_id: r.transactional_id.clone(),
            };
            (
                key.encode_to_vec().into(),
                r.value.as_ref().map(value_bytes),
            )
        })
        .collect();
    encode_keyed(&keyed, now_ms)
}

/// Decodes every record of the batches in `bytes`, and how many did not decode (a
/// future format, or corruption the CRC missed), which are skipped.
pub fn decode(bytes: Bytes) -> (Vec<TxnRecord>, usize) {
    let (keyed, bad_batch) = decode_keyed(bytes);
    let mut out = Vec::new();
    let mut skipped = usize::from(bad_batch);
    for (key, value) in keyed {
        let record = key
            .and_then(|k| pb::TransactionKey::decode(&k[..]).ok())
            .and_then(|k| {
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_value(&v)?),
                };
                Some(TxnRecord {
                    transactional_id: k.transactional_id,
                    value,
                })
            });
        match record {
            Some(r) => out.push(r),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(state: TxnState, partitions: &[(&str, i32)]) -> Transition {
        Transition {
            state,
            producer_id: 4000,
            previous_producer_id: 3999,
            next_producer_id: -1,
            producer_epoch: i16::MAX,
            last_producer_epoch: i16::MAX - 1,
            timeout_ms: 60_000,
            partitions: partitions
                .iter()
                .map(|(t, p)| TopicPartition {
                    topic: t.to_string(),
                    partition: *p,
                })
                .collect(),
            start_ms: 17,
            last_update_ms: 18,
            client_version: TxnVersion::V2,
        }
    }

    #[test]
    fn records_round_trip_in_log_order_with_tombstones() {
        let records = vec![
            TxnRecord {
                transactional_id: "a".into(),
                value: Some(transition(
                    TxnState::Ongoing,
                    &[("out", 1), ("out", 0), ("x", 3)],
                )),
            },
            TxnRecord {
                transactional_id: "b".into(),
                value: Some(transition(TxnState::CompleteAbort, &[])),
            },
            TxnRecord {
                transactional_id: "a".into(),
                value: None,
            },
        ];
        let first = encode(&records[..2], 5).unwrap();
        let second = encode(&records[2..], 6).unwrap();
        let both = Bytes::from([&first[..], &second[..]].concat());
        assert_eq!(decode(both), (records, 0));
    }

    #[test]
    fn what_does_not_decode_is_skipped_and_counted() {
        let good = encode(
            &[TxnRecord {
                transactional_id: "a".into(),
                value: Some(transition(TxnState::Empty, &[])),
            }],
            5,
        )
        .unwrap();
        // A value from a future state id, then a batch cut short.
        let mut future = value_bytes(&transition(TxnState::Empty, &[])).to_vec();
        future.extend(
            pb::TransactionValue {
                state: 99,
                ..Default::default()
            }
            .encode_to_vec(),
        );
        let bad = encode_keyed(
            &[(
                pb::TransactionKey {
                    transactional_id: "b".into(),
                }
                .encode_to_vec()
                .into(),
                Some(future.into()),
            )],
            5,
        )
        .unwrap();
        let bytes = Bytes::from([&good[..], &bad[..], &good[..10]].concat());
        let (records, skipped) = decode(bytes);
        assert_eq!(records.len(), 1);
        assert_eq!(skipped, 2);
    }
}
