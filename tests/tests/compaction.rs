//! Compacted topics end to end on an in-process node: the cleaner keeps the latest value
//! of every key (tombstones go after a later pass), produce refuses keyless records as
//! Kafka does, and `__consumer_offsets` is compacted. Real-client versions live in
//! `tests/python/test_compaction.py`.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use spate_metadata::ErrorCode;
use spate_tests::{RawConnection, TestNode};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn produce(conn: &mut RawConnection, topic: &str, batch: Bytes) -> ProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    conn.request(ApiKey::Produce, 11, &req).await.unwrap()
}

/// Writes one record; returns its offset.
async fn put(conn: &mut RawConnection, topic: &str, key: &str, value: Option<&str>) -> i64 {
    let batch = spate_tests::encode_keyed_batch(
        &[(Some(key.as_bytes()), value.map(str::as_bytes))],
        Compression::None,
    )
    .unwrap();
    let resp = produce(conn, topic, batch).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

/// Every record of partition 0: offset → (key, value).
async fn records(conn: &mut RawConnection, topic: &str) -> BTreeMap<i64, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut next = 0;
    loop {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(8 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_fetch_offset(next)
                    .with_partition_max_bytes(8 << 20)
                    .with_current_leader_epoch(-1)])]);
        let resp: FetchResponse = conn.request(ApiKey::Fetch, 12, &req).await.unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let hw = p.high_watermark;
        let mut bytes = p.records.clone().unwrap_or_default();
        while !bytes.is_empty() {
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            for r in set.records {
                next = next.max(r.offset + 1);
                if r.offset < hw {
                    let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
                    out.insert(
                        r.offset,
                        (r.key.map(text).unwrap_or_default(), r.value.map(text)),
                    );
                }
            }
        }
        if next >= hw {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_of_each_key() {
    let node = TestNode::start_with(|c| c.log_cleaner.backoff = Duration::from_millis(50))
        .await
        .unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1024"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "0"),
    ];
    let code = spate_tests::cluster::create_topic(&mut conn, "latest", 1, 1, &configs).await;
    assert_eq!(code, 0);
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut written = BTreeMap::new();
    for round in 0..20 {
        for k in 0..6 {
            let key = format!("k{k}");
            let value = format!("{key}-v{round}");
            let offset = put(&mut conn, "latest", &key, Some(&value)).await;
            written.insert(offset, (key.clone(), Some(value.clone())));
            latest.insert(key, Some(value));
        }
    }
    let offset = put(&mut conn, "latest", "k5", None).await;
    written.insert(offset, ("k5".to_string(), None));
    latest.insert("k5".into(), None);
    assert_eq!(written.len(), 121);

    // Filler records of other keys keep rolling segments, so the cleaner gets passes
    // after the one that first sees the tombstone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected: BTreeMap<String, String> = latest
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    let mut filler = 0;
    put(&mut conn, "latest", "filler", Some("f")).await;
    let held = loop {
        let held = records(&mut conn, "latest").await;
        let keys: BTreeMap<String, String> = held
            .values()
            .filter(|(k, _)| k.starts_with('k'))
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect();
        let per_key = held.values().filter(|(k, _)| k.starts_with('k')).count();
        if keys == expected && per_key == expected.len() {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted after 30 s: {held:?}"
        );
        put(
            &mut conn,
            "latest",
            &format!("filler{}", filler % 3),
            Some("f"),
        )
        .await;
        filler += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Kept records are the ones written at those offsets.
    for (offset, record) in held.iter().filter(|(o, _)| **o < 121) {
        assert_eq!(written.get(offset), Some(record), "offset {offset}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_record_is_refused_on_a_compacted_topic_and_offsets_are_compacted() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let code = spate_tests::cluster::create_topic(
        &mut conn,
        "keyed",
        1,
        1,
        &[("cleanup.policy", "compact")],
    )
    .await;
    assert_eq!(code, 0);
    let batch = spate_tests::encode_keyed_batch(
        &[(Some(b"a"), Some(b"1")), (None, Some(b"2"))],
        Compression::Lz4,
    )
    .unwrap();
    let resp = produce(&mut conn, "keyed", batch).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ErrorCode::InvalidRecord.code());
    let errors: Vec<(i32, String)> = p
        .record_errors
        .iter()
        .map(|e| {
            (
                e.batch_index,
                e.batch_index_error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, 1);
    assert!(errors[0].1.contains("without a key"), "{errors:?}");
    assert!(
        records(&mut conn, "keyed").await.is_empty(),
        "nothing of the batch stored"
    );

    // The group coordinator creates __consumer_offsets compacted.
    spate_tests::cluster::find_coordinator(&mut conn, "g").await;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("__consumer_offsets"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("cleanup.policy")])),
    ]);
    let resp: DescribeConfigsResponse = conn
        .request(ApiKey::DescribeConfigs, 4, &req)
        .await
        .unwrap();
    let policy = resp.results[0].configs[0]
        .value
        .as_ref()
        .map(|v| v.to_string());
    assert_eq!(policy.as_deref(), Some("compact"));
    node.stop().await;
}

/// Every record of one replica's log: offset → (key, value).
fn replica_records(
    cluster: &spate_tests::cluster::Cluster,
    id: i32,
    topic: &str,
) -> Option<BTreeMap<i64, (String, Option<String>)>> {
    let p = cluster.replica(id, topic, 0)?;
    let (start, leo) = p.log_bounds();
    let mut bytes = p.read_below(start, usize::MAX, leo).ok()?;
    let mut out = BTreeMap::new();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).ok()?;
        for r in set.records {
            let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
            out.insert(
                r.offset,
                (r.key.map(text).unwrap_or_default(), r.value.map(text)),
            );
        }
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_compact_independently_and_agree_after_the_leader_loses_power() {
    use spate_tests::cluster::{Cluster, ClusterOptions};
    let mut cluster = Cluster::start_with(ClusterOptions {
        log_cleaner_backoff: Duration::from_millis(50),
        simulated_storage: true,
        ..ClusterOptions::default()
    })
    .await;
    let mut conn = cluster.connect(1).await;
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1024"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("min.insync.replicas", "2"),
    ];
    assert_eq!(
        spate_tests::cluster::create_topic(&mut conn, "rf3", 1, 3, &configs).await,
        0
    );
    let first = cluster.wait_partition_ready("rf3", 0, 3).await;
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut round = 0;
    let mut write_rounds = |n: usize| {
        let mut batches = Vec::new();
        for _ in 0..n {
            for k in 0..5 {
                let (key, value) = (format!("k{k}"), format!("k{k}-{round}"));
                batches.push((key.clone(), value.clone()));
                latest.insert(key, value);
            }
            round += 1;
        }
        batches
    };
    for (key, value) in write_rounds(10) {
        put(&mut cluster.connect(first).await, "rf3", &key, Some(&value)).await;
    }
    // The leader loses power (a kill that also drops what was not yet durable).
    cluster.power_cut(first, 7).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        if let Some((Some(l), _, _)) = cluster.partition_state("rf3", 0) {
            if l != first {
                break l;
            }
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut to_second = cluster.connect(second).await;
    for (key, value) in write_rounds(10) {
        put(&mut to_second, "rf3", &key, Some(&value)).await;
    }
    cluster.restart(first).await;
    // Every replica, compacting on its own, ends with the latest value of every key at
    // the same offsets (filler writes give the cleaners passes on the new data).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let views: Vec<_> = (1..=3)
            .map(|id| replica_records(&cluster, id, "rf3"))
            .collect();
        let compacted = |v: &BTreeMap<i64, (String, Option<String>)>| {
            let data: Vec<_> = v.values().filter(|(k, _)| k.starts_with('k')).collect();
            data.len() == latest.len() && data.iter().all(|(k, val)| latest.get(k) == val.as_ref())
        };
        let kept = |v: &BTreeMap<i64, (String, Option<String>)>| {
            v.iter()
                .filter(|(_, (k, _))| k.starts_with('k'))
                .map(|(o, r)| (*o, r.clone()))
                .collect::<Vec<_>>()
        };
        if let [Some(a), Some(b), Some(c)] = &views[..] {
            if compacted(a)
                && compacted(b)
                && compacted(c)
                && kept(a) == kept(b)
                && kept(b) == kept(c)
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge on the latest values: {views:?}"
        );
        put(&mut to_second, "rf3", "filler", Some("f")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}
