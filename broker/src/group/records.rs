//! The records of `__consumer_offsets`: committed offsets and group metadata, as
//! protobuf keys and values inside ordinary RecordBatch v2 batches. A record without a
//! value (tombstone) deletes its key. Replaying the partition in order rebuilds every
//! group a coordinator owns.
use bytes::Bytes;
use prost::Message;
use spate_proto::groups as pb;

use super::{GroupSnapshot, MemberSnapshot};
use crate::coordinator::records::{decode_keyed, encode_keyed};

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (-1 unknown).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp: i64,
}

/// One record of the offsets topic.
#[derive(Debug, Clone, PartialEq)]
pub enum OffsetsRecord {
    /// A group's committed offset for one partition; `None` deletes it.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset, or a tombstone.
        value: Option<CommittedOffset>,
    },
    /// A group's membership and assignment; `None` deletes the group.
    Group {
        /// Group id.
        group: String,
        /// The group, or a tombstone.
        value: Option<GroupSnapshot>,
    },
}

fn key_bytes(record: &OffsetsRecord) -> Bytes {
    let key = match record {
        OffsetsRecord::Offset {
            group,
            topic,
            partition,
            ..
        } => pb::record_key::Key::Offset(pb::OffsetCommitKey {
            group: group.clone(),
            topic: topic.clone(),
            partition: *partition,
        }),
        OffsetsRecord::Group { group, .. } => pb::record_key::Key::Group(pb::GroupMetadataKey {
            group: group.clone(),
        }),
    };
    pb::RecordKey { key: Some(key) }.encode_to_vec().into()
}

fn value_bytes(record: &OffsetsRecord) -> Option<Bytes> {
    match record {
        OffsetsRecord::Offset { value, .. } => value.as_ref().map(|v| {
            pb::OffsetCommitValue {
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata.clone(),
                commit_timestamp: v.commit_timestamp,
            }
            .encode_to_vec()
            .into()
        }),
        OffsetsRecord::Group { value, .. } => value.as_ref().map(|g| {
            pb::GroupMetadataValue {
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                generation_id: g.generation_id,
                leader: g.leader.clone(),
                members: g
                    .members
                    .iter()
                    .map(|m| pb::MemberValue {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        metadata: m.metadata.to_vec(),
                        assignment: m.assignment.to_vec(),
                    })
                    .collect(),
            }
            .encode_to_vec()
            .into()
        }),
    }
}

/// Encodes `records` as one uncompressed RecordBatch v2 (offsets assigned on append).
pub fn encode(records: &[OffsetsRecord], now_ms: i64) -> Result<Bytes, String> {
    let keyed: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .map(|r| (key_bytes(r), value_bytes(r)))
        .collect();
    encode_keyed(&keyed, now_ms)
}

/// Decodes every record of the batches in `bytes`; records that do not decode (a
/// future format, corruption the CRC missed) are skipped and counted.
pub fn decode(bytes: Bytes) -> (Vec<OffsetsRecord>, usize) {
    let (keyed, bad_batch) = decode_keyed(bytes);
    let mut out = Vec::new();
    let mut skipped = usize::from(bad_batch);
    for (key, value) in keyed {
        match decode_record(key.as_deref(), value.as_deref()) {
            Some(rec) => out.push(rec),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

fn decode_record(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<OffsetsRecord> {
    let key = pb::RecordKey::decode(key?).ok()?.key?;
    Some(match key {
        pb::record_key::Key::Offset(k) => OffsetsRecord::Offset {
            group: k.group,
            topic: k.topic,
            partition: k.partition,
            value: match value {
                None => None,
                Some(v) => {
                    let v = pb::OffsetCommitValue::decode(v).ok()?;
                    Some(CommittedOffset {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata,
                        commit_timestamp: v.commit_timestamp,
                    })
                }
            },
        },
        pb::record_key::Key::Group(k) => {
            let value = match value {
                None => None,
                Some(v) => {
                    let v = pb::GroupMetadataValue::decode(v).ok()?;
                    Some(GroupSnapshot {
                        group_id: k.group.clone(),
                        protocol_type: v.protocol_type,
                        protocol_name: v.protocol_name,
                        generation_id: v.generation_id,
                        leader: v.leader,
                        members: v
                            .members
                            .into_iter()
                            .map(|m| MemberSnapshot {
                                member_id: m.member_id,
                                group_instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                session_timeout_ms: m.session_timeout_ms,
                                metadata: m.metadata.into(),
                                assignment: m.assignment.into(),
                            })
                            .collect(),
                    })
                }
            };
            OffsetsRecord::Group {
                group: k.group,
                value,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_batch() {
        let records = vec![
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 2,
                    metadata: "m".into(),
                    commit_timestamp: 7,
                }),
            },
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            OffsetsRecord::Group {
                group: "g".into(),
                value: Some(GroupSnapshot {
                    group_id: "g".into(),
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some("range".into()),
                    generation_id: 5,
                    leader: Some("m1".into()),
                    members: vec![MemberSnapshot {
                        member_id: "m1".into(),
                        group_instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        metadata: Bytes::from_static(b"meta"),
                        assignment: Bytes::from_static(b"assign"),
                    }],
                }),
            },
            OffsetsRecord::Group {
                group: "gone".into(),
                value: None,
            },
        ];
        let bytes = encode(&records, 1).unwrap();
        let (decoded, skipped) = decode(bytes);
        assert_eq!(skipped, 0);
        assert_eq!(decoded, records);
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let (decoded, skipped) = decode(Bytes::from_static(b"not a record batch at all....."));
        assert!(decoded.is_empty());
        assert!(skipped > 0);
    }
}
