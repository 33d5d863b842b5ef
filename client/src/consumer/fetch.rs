//! Building a Fetch request for one leader and splitting its response per partition.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use crate::admin::offsets::topic_name;
use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// One partition's part of a Fetch response.
#[derive(Debug)]
pub struct PartitionFetch {
    /// The partition.
    pub tp: TopicPartition,
    /// A partition-level error.
    pub error: Option<Error>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The record batches (possibly with a truncated last batch).
    pub records: Bytes,
}

/// A full (session-less) Fetch for `partitions` at their positions.
pub fn build_request(
    config: &ConsumerConfig,
    partitions: &[(TopicPartition, i64)],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, offset) in partitions {
        let p = FetchPartition::default()
            .with_partition(tp.partition)
            .with_fetch_offset(*offset)
            .with_partition_max_bytes(config.partition_max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == &*tp.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(&tp.topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let mut req = FetchRequest::default()
        .with_max_wait_ms(i32::try_from(config.max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(config.isolation_level)
        .with_topics(topics);
    // -1: a consumer, not a follower. The defaults session_id 0 / session_epoch -1 ask for a
    // full fetch without an incremental session (KIP-227), so every request stands alone.
    req.replica_id = BrokerId(-1);
    req
}

/// Splits a response into the partitions that were asked for, in request order.
pub fn split_response(
    resp: FetchResponse,
    asked: &[(TopicPartition, i64)],
) -> Result<Vec<PartitionFetch>> {
    if let Some(e) = Error::from_code(resp.error_code, None, "fetch") {
        return Err(e);
    }
    let mut out = Vec::with_capacity(asked.len());
    let mut responses = resp.responses;
    for (tp, _) in asked {
        let found = responses
            .iter_mut()
            .filter(|t| t.topic.0.as_str() == &*tp.topic)
            .flat_map(|t| t.partitions.iter_mut())
            .find(|p| p.partition_index == tp.partition);
        // A partition the broker left out simply had nothing (or was throttled): no error.
        let fetch = match found {
            None => PartitionFetch {
                tp: tp.clone(),
                error: None,
                high_watermark: -1,
                records: Bytes::new(),
            },
            Some(p) => PartitionFetch {
                tp: tp.clone(),
                error: Error::from_code(p.error_code, None, format!("fetch {tp}")),
                high_watermark: p.high_watermark,
                records: p.records.take().unwrap_or_default(),
            },
        };
        out.push(fetch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn request_groups_topics_and_encodes_at_v12() {
        let config = ConsumerConfig::new("x:1");
        let asked = vec![
            (TopicPartition::new("a", 0), 5),
            (TopicPartition::new("b", 1), 7),
            (TopicPartition::new("a", 2), 9),
        ];
        let req = build_request(&config, &asked);
        assert_eq!(req.topics.len(), 2);
        assert_eq!(req.topics[0].partitions.len(), 2);
        assert_eq!(req.replica_id, BrokerId(-1));
        let mut buf = bytes::BytesMut::new();
        req.encode(&mut buf, 12).unwrap();
        let back = FetchRequest::decode(&mut buf.freeze(), 12).unwrap();
        assert_eq!(back.topics[1].partitions[0].fetch_offset, 7);
        let mut buf = bytes::BytesMut::new();
        build_request(&config, &asked).encode(&mut buf, 4).unwrap();
    }

    #[test]
    fn response_split_by_partition_with_errors() {
        let asked = vec![
            (TopicPartition::new("a", 0), 0),
            (TopicPartition::new("a", 1), 0),
            (TopicPartition::new("a", 2), 0),
        ];
        let mut resp = FetchResponse::default();
        resp.responses = vec![FetchableTopicResponse::default()
            .with_topic(topic_name("a"))
            .with_partitions(vec![
                PartitionData::default()
                    .with_partition_index(1)
                    .with_error_code(6),
                PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(42)
                    .with_records(Some(Bytes::from_static(b"xy"))),
            ])];
        let parts = split_response(resp, &asked).unwrap();
        assert_eq!(parts[0].high_watermark, 42);
        assert_eq!(&parts[0].records[..], b"xy");
        assert!(parts[1]
            .error
            .as_ref()
            .is_some_and(|e| e.needs_metadata_refresh()));
        assert!(parts[2].error.is_none() && parts[2].records.is_empty());
        let mut bad = FetchResponse::default();
        bad.error_code = 71;
        assert!(split_response(bad, &asked).is_err());
    }
}
