//! DescribeTopicPartitions (API 75, KIP-966): partitions with their eligible leader
//! replicas and last-known ELR, paged by a cursor, as Kafka's
//! `DescribeTopicPartitionsRequestHandler` answers. Admin clients use it in place of
//! Metadata to describe topics.
//!
//! - No topics listed: every topic, in name order. Listed: those, in name order; an
//!   unknown one is answered UNKNOWN_TOPIC_OR_PARTITION.
//! - At most `response_partition_limit` partitions (capped at
//!   [`MAX_PARTITIONS_PER_RESPONSE`]); where the response stops, `next_cursor` names the
//!   topic and partition to ask for next.

use kafka_protocol::messages::describe_topic_partitions_request::Cursor as RequestCursor;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use spate_metadata::ids::NodeId;
use spate_metadata::{ErrorCode, MetadataImage, TopicImage};

use super::metadata::offline_replicas;
use super::str_bytes;

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response
/// describes, whatever the request asks.
pub const MAX_PARTITIONS_PER_RESPONSE: usize = 2000;

/// Answers a DescribeTopicPartitions request from the metadata image.
pub fn handle(
    image: &MetadataImage,
    req: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topic_names().keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let cursor = req.cursor.as_ref();
    if let Some(c) = cursor {
        if c.partition_index < 0
            || (!req.topics.is_empty() && !names.contains(&c.topic_name.0.to_string()))
        {
            return DescribeTopicPartitionsResponse::default().with_topics(vec![invalid_cursor(c)]);
        }
    }
    let first = cursor.map(|c| c.topic_name.0.to_string());
    let limit = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut left = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    let start = first
        .as_ref()
        .map_or(0, |f| names.partition_point(|n| n < f));
    for (i, name) in names.iter().enumerate().skip(start) {
        let Some(topic) = image.topic_by_name(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(str_bytes(name.clone())))),
            );
            continue;
        };
        if left == 0 {
            next_cursor = Some(cursor_at(name, 0));
            break;
        }
        let from = match (&first, cursor) {
            (Some(f), Some(c)) if f == name => c.partition_index,
            _ => 0,
        };
        let (entry, rest) = topic_entry(image, topic, from, left);
        left -= entry.partitions.len();
        topics.push(entry);
        if let Some(next) = rest {
            next_cursor = Some(cursor_at(name, next));
            break;
        }
        // The limit falls exactly at a topic's end: point at the next one, if any.
        if left == 0 {
            if let Some(following) = names.get(i + 1) {
                next_cursor = Some(cursor_at(following, 0));
            }
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

/// A topic's partitions from index `from`, at most `room` of them, and the index where
/// the rest starts if they did not fit.
fn topic_entry(
    image: &MetadataImage,
    topic: &TopicImage,
    from: i32,
    room: usize,
) -> (DescribeTopicPartitionsResponseTopic, Option<i32>) {
    let ids = |v: &[NodeId]| v.iter().map(|n| BrokerId(n.0)).collect::<Vec<_>>();
    let mut rest = None;
    let mut partitions = Vec::new();
    for (&index, p) in topic.partitions.range(from..) {
        if partitions.len() == room {
            rest = Some(index);
            break;
        }
        let error = if p.leader.is_none() {
            ErrorCode::LeaderNotAvailable.code()
        } else {
            0
        };
        partitions.push(
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader.map_or(-1, |l| l.0)))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_eligible_leader_replicas(Some(ids(&p.elr)))
                .with_last_known_elr(Some(ids(&p.last_known_elr)))
                .with_offline_replicas(offline_replicas(image, topic.id, index, p)),
        );
    }
    let entry = DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id.0)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions);
    (entry, rest)
}

fn cursor_at(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(str_bytes(topic.to_string())))
        .with_partition_index(partition)
}

/// Kafka answers a cursor outside the request with INVALID_REQUEST on that topic.
fn invalid_cursor(c: &RequestCursor) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(ErrorCode::InvalidRequest.code())
        .with_name(Some(c.topic_name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
    use spate_metadata::ids::{LeaderEpoch, PartitionEpoch, TopicId};
    use spate_metadata::{records, PartitionImage};

    fn image(topics: &[(&str, i32)]) -> MetadataImage {
        let mut img = MetadataImage::new();
        for (n, (name, count)) in topics.iter().enumerate() {
            let id = TopicId::from_random([n as u8 + 1; 16]);
            img.apply(1, &records::topic(name, id)).unwrap();
            for i in 0..*count {
                let p = PartitionImage {
                    replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
                    isr: if i == 0 { vec![] } else { vec![NodeId(1)] },
                    elr: if i == 0 {
                        vec![NodeId(1), NodeId(2)]
                    } else {
                        vec![]
                    },
                    last_known_elr: if i == 0 { vec![NodeId(3)] } else { vec![] },
                    leader: (i != 0).then_some(NodeId(1)),
                    leader_epoch: LeaderEpoch(4),
                    partition_epoch: PartitionEpoch(9),
                };
                img.apply(1, &records::partition(id, i, &p)).unwrap();
            }
        }
        img
    }

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(TopicName(str_bytes(t.to_string()))))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                RequestCursor::default()
                    .with_topic_name(TopicName(str_bytes(t.to_string())))
                    .with_partition_index(p)
            }))
    }

    /// (topic, partition indexes) of a response, and its next cursor.
    fn shape(
        r: &DescribeTopicPartitionsResponse,
    ) -> (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>) {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let cursor = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, cursor)
    }

    #[test]
    fn partitions_carry_the_elr_and_last_known_elr() {
        let img = image(&[("a", 2)]);
        let r = handle(&img, &request(&["a"], 100, None));
        let p0 = &r.topics[0].partitions[0];
        assert_eq!(p0.error_code, ErrorCode::LeaderNotAvailable.code());
        assert_eq!(p0.leader_id, BrokerId(-1));
        assert!(p0.isr_nodes.is_empty());
        assert_eq!(
            p0.eligible_leader_replicas,
            Some(vec![BrokerId(1), BrokerId(2)])
        );
        assert_eq!(p0.last_known_elr, Some(vec![BrokerId(3)]));
        // No broker is registered: every replica is offline.
        assert_eq!(p0.offline_replicas.len(), 3);
        let p1 = &r.topics[0].partitions[1];
        assert_eq!((p1.leader_id, p1.leader_epoch), (BrokerId(1), 4));
        assert_eq!(p1.eligible_leader_replicas, Some(vec![]));
    }

    #[test]
    fn all_topics_in_name_order_paged_by_the_cursor() {
        let img = image(&[("c", 1), ("a", 3), ("b", 2)]);
        let r = handle(&img, &request(&[], 2, None));
        assert_eq!(
            shape(&r),
            (vec![("a".into(), 0, vec![0, 1])], Some(("a".into(), 2)))
        );
        let r = handle(&img, &request(&[], 2, Some(("a", 2))));
        assert_eq!(
            shape(&r),
            (
                vec![("a".into(), 0, vec![2]), ("b".into(), 0, vec![0])],
                Some(("b".into(), 1))
            )
        );
        // The limit falls at a topic's end: the cursor names the next topic.
        let r = handle(&img, &request(&[], 2, Some(("b", 0))));
        assert_eq!(
            shape(&r),
            (vec![("b".into(), 0, vec![0, 1])], Some(("c".into(), 0)))
        );
        let r = handle(&img, &request(&[], 2, Some(("c", 0))));
        assert_eq!(shape(&r), (vec![("c".into(), 0, vec![0])], None));
    }

    #[test]
    fn listed_topics_unknown_ones_and_bad_cursors() {
        let img = image(&[("a", 1), ("b", 1)]);
        let r = handle(&img, &request(&["b", "nope", "b"], 10, None));
        assert_eq!(
            shape(&r).0,
            vec![
                ("b".into(), 0, vec![0]),
                (
                    "nope".into(),
                    ErrorCode::UnknownTopicOrPartition.code(),
                    vec![]
                ),
            ]
        );
        let r = handle(&img, &request(&["b"], 10, Some(("a", 0))));
        assert_eq!(
            shape(&r).0,
            vec![("a".into(), ErrorCode::InvalidRequest.code(), vec![])]
        );
        let r = handle(&img, &request(&[], 10, Some(("a", -1))));
        assert_eq!(r.topics[0].error_code, ErrorCode::InvalidRequest.code());
        // A limit of 0 or less still describes something (Kafka's minimum of one).
        let r = handle(&img, &request(&[], 0, None));
        assert_eq!(
            shape(&r),
            (vec![("a".into(), 0, vec![0])], Some(("b".into(), 0)))
        );
    }
}
