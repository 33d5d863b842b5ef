//! The "consumer" embedded protocol: subscription and assignment bytes carried by JoinGroup
//! and SyncGroup, and the RANGE assignor the group leader runs. Pure: no I/O.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// JoinGroup's `protocol_type` for consumers.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The one assignment strategy this client offers.
pub const RANGE: &str = "range";

/// The version written in front of both embedded messages. v1 adds owned partitions; every
/// Kafka since 2.4 reads it, and readers accept newer versions as long as they are prefixes.
const WRITE_VERSION: i16 = 1;
/// The newest version kafka-protocol can read; newer ones are read as this (KIP-429 rule:
/// later versions only append fields).
const READ_MAX_VERSION: i16 = 3;

/// Encodes a member's subscription (JoinGroup protocol metadata).
pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&sub)
}

/// Decodes a member's subscription into its topic names.
pub fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>> {
    let sub: ConsumerProtocolSubscription = decode_versioned(bytes, "subscription")?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes a member's assignment (SyncGroup assignment bytes).
pub fn encode_assignment(partitions: &[TopicPartition]) -> Result<Bytes> {
    let mut topics: Vec<AssignedTopic> = Vec::new();
    for tp in partitions {
        match topics.iter_mut().find(|t| t.topic.0.as_str() == &*tp.topic) {
            Some(t) => t.partitions.push(tp.partition),
            None => topics.push(
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(tp.topic.to_string())))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    encode_versioned(&ConsumerProtocolAssignment::default().with_assigned_partitions(topics))
}

/// Decodes assignment bytes; empty bytes (a member that got nothing, or a group between
/// generations) mean no partitions.
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let a: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut out: Vec<TopicPartition> = a
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.0.as_str(), *p))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn encode_versioned<M: Encodable>(msg: &M) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(WRITE_VERSION);
    msg.encode(&mut buf, WRITE_VERSION)
        .map_err(Error::protocol)?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Decodable>(bytes: &[u8], what: &str) -> Result<M> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err(Error::protocol(format!(
            "consumer {what} of {} bytes has no version",
            bytes.len()
        )));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(Error::protocol(format!(
            "consumer {what} has version {version}"
        )));
    }
    M::decode(&mut buf, version.min(READ_MAX_VERSION))
        .map_err(|e| Error::protocol(format!("cannot decode consumer {what} v{version}: {e}")))
}

/// Kafka's RangeAssignor: per topic, the subscribed members sorted by member id each get a
/// contiguous range of `n / m` partitions, the first `n % m` one more. Every member appears
/// in the result, with no partitions if none fell to it. Topics without a known partition
/// count are skipped (they do not exist yet).
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = subscriptions
        .iter()
        .map(|(member, _)| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let mut members: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.iter().any(|t| t == topic))
            .map(|(m, _)| m.as_str())
            .collect();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() || count <= 0 {
            continue;
        }
        let m = members.len() as i32;
        let (per, extra) = (count / m, count % m);
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let n = per + i32::from((i as i32) < extra);
            if let Some(list) = out.get_mut(*member) {
                list.extend((next..next + n).map(|p| TopicPartition::new(topic.as_str(), p)));
            }
            next += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn parts(a: &BTreeMap<String, Vec<TopicPartition>>, member: &str) -> Vec<String> {
        a[member].iter().map(|tp| tp.to_string()).collect()
    }

    #[test]
    fn three_members_six_partitions_get_two_each() {
        let s = subs(&[("c", &["t"]), ("a", &["t"]), ("b", &["t"])]);
        let a = range_assign(&s, &counts(&[("t", 6)]));
        assert_eq!(parts(&a, "a"), ["t-0", "t-1"]);
        assert_eq!(parts(&a, "b"), ["t-2", "t-3"]);
        assert_eq!(parts(&a, "c"), ["t-4", "t-5"]);
    }

    #[test]
    fn uneven_split_gives_extras_to_the_first_members() {
        let s = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let a = range_assign(&s, &counts(&[("t", 7)]));
        assert_eq!(parts(&a, "a"), ["t-0", "t-1", "t-2"]);
        assert_eq!(parts(&a, "b"), ["t-3", "t-4"]);
        assert_eq!(parts(&a, "c"), ["t-5", "t-6"]);
        // More members than partitions: the last ones get nothing but are still listed.
        let a = range_assign(&s, &counts(&[("t", 2)]));
        assert_eq!(parts(&a, "a"), ["t-0"]);
        assert_eq!(parts(&a, "b"), ["t-1"]);
        assert!(a["c"].is_empty());
    }

    #[test]
    fn several_topics_are_ranged_independently() {
        let s = subs(&[("a", &["x", "y"]), ("b", &["x"]), ("c", &["y", "z"])]);
        let a = range_assign(&s, &counts(&[("x", 3), ("y", 2), ("z", 1), ("gone", 0)]));
        assert_eq!(parts(&a, "a"), ["x-0", "x-1", "y-0"]);
        assert_eq!(parts(&a, "b"), ["x-2"]);
        assert_eq!(parts(&a, "c"), ["y-1", "z-0"]);
        // A subscribed topic without a partition count is skipped.
        let a = range_assign(&subs(&[("a", &["missing"])]), &counts(&[]));
        assert!(a["a"].is_empty());
    }

    #[test]
    fn subscription_round_trip() {
        let topics = vec!["orders".to_string(), "payments".to_string()];
        let bytes = encode_subscription(&topics).unwrap();
        assert_eq!(&bytes[..2], &WRITE_VERSION.to_be_bytes());
        assert_eq!(decode_subscription(&bytes).unwrap(), topics);
    }

    #[test]
    fn assignment_round_trip_groups_topics() {
        let tps = vec![
            TopicPartition::new("a", 0),
            TopicPartition::new("b", 3),
            TopicPartition::new("a", 2),
        ];
        let bytes = encode_assignment(&tps).unwrap();
        let mut expect = tps.clone();
        expect.sort();
        assert_eq!(decode_assignment(&bytes).unwrap(), expect);
        assert!(decode_assignment(&[]).unwrap().is_empty());
    }

    #[test]
    fn newer_versions_are_read_as_prefixes_and_garbage_is_an_error() {
        // A v3 subscription (rack id etc.) written by a Java client, read back.
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(4);
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        sub.encode(&mut buf, 3).unwrap();
        assert_eq!(decode_subscription(&buf).unwrap(), ["t"]);
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_assignment(&[0, 1, 0xff]).is_err());
        assert!(decode_subscription(&[0xff, 0xff, 0]).is_err());
    }
}
