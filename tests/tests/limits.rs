//! Limits a careless or hostile client meets: a fetch never carries more than the
//! broker's `fetch.max.bytes`, whatever it asks for.
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use kafka_protocol::records::Compression;
use spate_tests::cluster::{self, topic_name};
use spate_tests::{encode_batch, RawConnection, TestNode};

const LIMIT: usize = 64 * 1024;

/// A fetch of partition 0 from offset 0 asking for `max_bytes` (and as much per partition).
async fn fetch_bytes(conn: &mut RawConnection, topic: &str, max_bytes: i32) -> usize {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(i32::MAX)
                .with_current_leader_epoch(-1)])]);
    let resp: FetchResponse = conn.request(ApiKey::Fetch, 12, &req).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.records.as_ref().map_or(0, |r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_never_carries_more_than_fetch_max_bytes() {
    let node = TestNode::start_with(|c| c.fetch_max_bytes = LIMIT)
        .await
        .unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert_eq!(cluster::create_topic(&mut conn, "big", 1, 1, &[]).await, 0);
    // 40 batches of ~8 KiB: 320 KiB in the log.
    let value = vec![b'x'; 8 * 1024];
    for _ in 0..40 {
        let batch = encode_batch(&[&value], Compression::None).unwrap();
        let (code, _) = cluster::produce(&mut conn, "big", 0, -1, 5_000, batch)
            .await
            .unwrap();
        assert_eq!(code, 0);
    }
    for asked in [i32::MAX, 0, -1, 100 * 1024 * 1024] {
        let got = fetch_bytes(&mut conn, "big", asked).await;
        assert!(got > 0, "asked {asked}: some data comes back");
        assert!(
            got <= LIMIT,
            "asked {asked}: {got} bytes exceed fetch.max.bytes {LIMIT}"
        );
    }
    // Below the broker's limit the client's own limit holds.
    let got = fetch_bytes(&mut conn, "big", 20 * 1024).await;
    assert!(got <= 20 * 1024 && got > 0, "{got}");
    node.stop().await;
}
