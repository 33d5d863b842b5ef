//! The client against an in-memory mock broker: connection handling, admin, producer and
//! consumer end to end, without a real broker.
#![allow(clippy::unwrap_used)]

mod mock;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use mock::MockBroker;
use spate_client::admin::{AlterConfigOp, ConfigResource, ConfigSource, NewTopic, OffsetSpec};
use spate_client::producer::partitioner::partition_for_key;
use spate_client::*;

fn producer_config(addr: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(addr);
    c.linger = Duration::from_millis(2);
    c.batch_size = 4096;
    c.client.retry_backoff = Duration::from_millis(10);
    c
}

async fn consume_all(
    addr: &str,
    topic: &str,
    start: StartOffset,
    want: usize,
) -> Vec<ConsumerRecord> {
    let mut config = ConsumerConfig::new(addr);
    config.max_wait = Duration::from_millis(20);
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign_topic(topic, start).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..200 {
        out.extend(consumer.poll().await.unwrap());
        if out.len() >= want {
            break;
        }
    }
    out
}

#[tokio::test]
async fn admin_topic_lifecycle() {
    let broker = MockBroker::start().await;
    let admin = Admin::connect(ClientConfig::new(&broker.addr))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("orders", 3, 1).config("cleanup.policy", "compact"))
        .await
        .unwrap();

    let dup = admin
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap_err();
    assert_eq!(dup.kafka_code(), Some(ResponseError::TopicAlreadyExists));
    assert!(dup.to_string().contains("TOPIC_ALREADY_EXISTS"), "{dup}");
    assert!(
        dup.to_string().contains("already exists"),
        "broker message kept: {dup}"
    );
    let rf = admin
        .create_topic(NewTopic::new("x", 1, 3))
        .await
        .unwrap_err();
    assert_eq!(
        rf.kafka_code(),
        Some(ResponseError::InvalidReplicationFactor)
    );
    admin
        .create_topics(&[NewTopic::new("dry", 1, 1)], true)
        .await
        .unwrap()[0]
        .1
        .as_ref()
        .unwrap();

    assert_eq!(
        admin.list_topics(false).await.unwrap(),
        vec!["orders".to_string()]
    );
    let d = admin.describe_topic("orders").await.unwrap();
    assert_eq!(d.partitions.len(), 3);
    assert!(d
        .partitions
        .iter()
        .all(|p| p.leader == Some(NodeId(1)) && p.isr == vec![NodeId(1)]));
    let missing = admin.describe_topic("nope").await.unwrap_err();
    assert_eq!(
        missing.kafka_code(),
        Some(ResponseError::UnknownTopicOrPartition)
    );

    let configs = admin.describe_topic_configs("orders").await.unwrap();
    let policy = configs.iter().find(|c| c.name == "cleanup.policy").unwrap();
    assert_eq!(
        (policy.value.as_deref(), policy.source),
        (Some("compact"), ConfigSource::DynamicTopic)
    );
    let res = ConfigResource::Topic("orders".into());
    admin
        .incremental_alter_configs(
            &res,
            &[
                AlterConfigOp::set("retention.ms", "1000"),
                AlterConfigOp::delete("cleanup.policy"),
            ],
            false,
        )
        .await
        .unwrap();
    let configs = admin.describe_topic_configs("orders").await.unwrap();
    assert!(configs
        .iter()
        .any(|c| c.name == "retention.ms" && c.value.as_deref() == Some("1000")));
    assert!(!configs.iter().any(|c| c.name == "cleanup.policy"));

    admin.create_partitions("orders", 5, false).await.unwrap();
    assert_eq!(
        admin
            .describe_topic("orders")
            .await
            .unwrap()
            .partitions
            .len(),
        5
    );
    let shrink = admin
        .create_partitions("orders", 2, false)
        .await
        .unwrap_err();
    assert_eq!(shrink.kafka_code(), Some(ResponseError::InvalidPartitions));

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.controller, Some(NodeId(1)));
    assert_eq!(cluster.cluster_id.as_deref(), Some("mock-cluster"));
    assert_eq!(cluster.brokers.len(), 1);
    admin.delete_topic("orders").await.unwrap();
    assert!(admin.list_topics(false).await.unwrap().is_empty());
}

#[tokio::test]
async fn produce_then_consume_every_compression() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let broker = MockBroker::start().await;
        broker.create_topic("t", 4);
        let mut config = producer_config(&broker.addr);
        config.compression = compression;
        let producer = Producer::connect(config).await.unwrap();
        let mut futs = Vec::new();
        for i in 0..500u32 {
            let key = (i % 3 != 0).then(|| Bytes::from(format!("key-{}", i % 7)));
            let headers = vec![("n".to_string(), Some(Bytes::from(i.to_string())))];
            futs.push((
                key.clone(),
                producer
                    .send(
                        "t",
                        None,
                        key,
                        Some(Bytes::from(format!("value-{i}"))),
                        headers,
                    )
                    .await
                    .unwrap(),
            ));
        }
        let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (key, f) in futs {
            let m = f.await.unwrap();
            if let Some(k) = key {
                assert_eq!(
                    m.partition,
                    partition_for_key(&k, 4),
                    "keyed records follow murmur2"
                );
            }
            per_partition.entry(m.partition).or_default().push(m.offset);
        }
        for offsets in per_partition.values() {
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(
                offsets, &expected,
                "{compression:?}: offsets dense and in send order"
            );
        }
        producer.close().await.unwrap();

        let records = consume_all(&broker.addr, "t", StartOffset::Earliest, 500).await;
        assert_eq!(records.len(), 500, "{compression:?}");
        let mut values: Vec<u32> = records
            .iter()
            .map(|r| {
                let v = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
                let n: u32 = v.trim_start_matches("value-").parse().unwrap();
                assert_eq!(r.headers[0].1.as_deref(), Some(n.to_string().as_bytes()));
                n
            })
            .collect();
        values.sort_unstable();
        assert_eq!(values, (0..500).collect::<Vec<u32>>());
    }
}

#[tokio::test]
async fn consumer_start_positions_skip_inside_batches() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 1);
    let mut config = producer_config(&broker.addr);
    config.linger = Duration::from_millis(50);
    config.batch_size = 1 << 20;
    let producer = Producer::connect(config).await.unwrap();
    let mut futs = Vec::new();
    for i in 0..20 {
        futs.push(
            producer
                .send(
                    "t",
                    Some(0),
                    None,
                    Some(Bytes::from(format!("{i}"))),
                    Vec::new(),
                )
                .await
                .unwrap(),
        );
    }
    for f in futs {
        f.await.unwrap();
    }
    // All 20 went out as one batch: a fetch at 7 returns it whole, the consumer skips 0..7.
    assert_eq!(broker.state.lock().unwrap().topics["t"][0].batches.len(), 1);
    let from_7 = consume_all(&broker.addr, "t", StartOffset::Offset(7), 13).await;
    assert_eq!(
        from_7.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (7..20).collect::<Vec<i64>>()
    );

    let mut config = ConsumerConfig::new(&broker.addr);
    config.max_wait = Duration::from_millis(10);
    let mut latest = Consumer::connect(config).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    latest
        .assign(std::slice::from_ref(&tp), StartOffset::Latest)
        .await
        .unwrap();
    assert_eq!(latest.position(&tp), Some(20));
    assert!(latest.poll().await.unwrap().is_empty());
    producer
        .send_and_wait(
            "t",
            Some(0),
            None,
            Some(Bytes::from_static(b"new")),
            Vec::new(),
        )
        .await
        .unwrap();
    let got = latest.poll().await.unwrap();
    assert_eq!((got.len(), got[0].offset), (1, 20));
    assert_eq!(latest.high_watermark(&tp), Some(21));

    // Timestamp lookup: everything was produced after t=0; far future gives the end.
    let admin = Admin::connect(ClientConfig::new(&broker.addr))
        .await
        .unwrap();
    let r = admin
        .list_offsets(&[
            (tp.clone(), OffsetSpec::Timestamp(0)),
            (tp.clone(), OffsetSpec::Earliest),
            (tp.clone(), OffsetSpec::Latest),
        ])
        .await
        .unwrap();
    let offsets: Vec<i64> = r.into_iter().map(|(_, o)| o.unwrap().offset).collect();
    assert_eq!(offsets, vec![0, 0, 21]);

    // DeleteRecords moves the log start; an out-of-range position resets to it.
    let low = admin.delete_records(&[(tp.clone(), 5)]).await.unwrap();
    assert_eq!(low[0].1.as_ref().ok(), Some(&5));
    let reset = consume_all(&broker.addr, "t", StartOffset::Offset(2), 16).await;
    assert_eq!(reset.first().map(|r| r.offset), Some(5));
}

#[tokio::test]
async fn idempotent_retry_keeps_the_sequence() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 1);
    let mut config = producer_config(&broker.addr);
    config.enable_idempotence = true;
    // One record per batch, so each send is its own sequenced batch.
    config.batch_size = 1;
    let producer = Producer::connect(config).await.unwrap();
    // The first attempt of the first batch is refused with NOT_LEADER (retriable).
    broker.state.lock().unwrap().produce_errors = vec![6];
    let mut futures = Vec::new();
    for i in 0..3u8 {
        let value = Some(Bytes::from(vec![i]));
        futures.push(
            producer
                .send("t", Some(0), None, value, Vec::new())
                .await
                .unwrap(),
        );
    }
    let mut offsets = Vec::new();
    for f in futures {
        offsets.push(f.await.unwrap().offset);
    }
    producer.close().await.unwrap();
    assert_eq!(offsets, vec![0, 1, 2], "order kept across the retry");
    {
        let st = broker.state.lock().unwrap();
        assert_eq!(st.init_producer_id_requests, 1);
        let attempts = &st.produce_attempts;
        assert!(attempts.iter().all(|a| a.1 == 1000), "{attempts:?}");
        assert_eq!(attempts[0], (0, 1000, 0, 6, 0), "first attempt refused");
        // The retry of sequence 0 keeps it; what the log holds is 0, 1, 2 in order.
        let accepted: Vec<i32> = attempts.iter().filter(|a| a.3 == 0).map(|a| a.2).collect();
        assert_eq!(accepted, vec![0, 1, 2], "{attempts:?}");
    }

    let mut config = producer_config(&broker.addr);
    config.enable_idempotence = true;
    config.acks = Acks::Leader;
    assert!(Producer::connect(config)
        .await
        .is_err_and(|e| e.to_string().contains("acks=all")));
}

#[tokio::test]
async fn a_failover_longer_than_a_few_backoffs_does_not_fail_the_batch() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 1);
    let mut config = producer_config(&broker.addr);
    config.enable_idempotence = true;
    config.client.retry_backoff_max = Duration::from_millis(20);
    let producer = Producer::connect(config).await.unwrap();
    // No leader for 40 attempts (a session timeout's worth at a real backoff); only the
    // delivery timeout ends retrying.
    broker.state.lock().unwrap().produce_errors = vec![6; 40];
    let m = producer
        .send_and_wait(
            "t",
            Some(0),
            None,
            Some(Bytes::from_static(b"x")),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(m.offset, 0);
    producer.close().await.unwrap();
    assert_eq!(broker.state.lock().unwrap().produce_attempts.len(), 41);
}

#[tokio::test]
async fn an_expired_batch_bumps_the_epoch_and_the_partition_goes_on() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 1);
    let mut config = producer_config(&broker.addr);
    config.enable_idempotence = true;
    config.batch_size = 1;
    config.delivery_timeout = Duration::from_millis(300);
    config.client.retry_backoff_max = Duration::from_millis(20);
    let producer = Producer::connect(config).await.unwrap();
    let send = |v: &'static [u8]| {
        producer.send_and_wait("t", Some(0), None, Some(Bytes::from_static(v)), Vec::new())
    };
    assert_eq!(send(b"a").await.unwrap().offset, 0);
    // The leader times out every attempt of b (the broker may or may not have written it)
    // until b's delivery timeout passes.
    broker.state.lock().unwrap().produce_errors = vec![7; 10_000];
    let err = send(b"b").await.unwrap_err();
    assert!(err.to_string().contains("delivery timeout"), "{err}");
    broker.state.lock().unwrap().produce_errors.clear();
    // c must not inherit b's sequence gap: a new epoch restarts the partition at 0.
    assert_eq!(send(b"c").await.unwrap().offset, 1);
    assert_eq!(send(b"d").await.unwrap().offset, 2);
    producer.close().await.unwrap();
    let st = broker.state.lock().unwrap();
    let accepted: Vec<(i32, i16)> = st
        .produce_attempts
        .iter()
        .filter(|a| a.3 == 0)
        .map(|a| (a.2, a.4))
        .collect();
    assert_eq!(
        accepted,
        vec![(0, 0), (0, 1), (1, 1)],
        "{:?}",
        st.produce_attempts
    );
    assert_eq!(
        st.init_producer_id_requests, 1,
        "bumped locally, same producer id"
    );
}

#[tokio::test]
async fn acks_zero_and_retry_after_not_leader() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 2);
    let mut config = producer_config(&broker.addr);
    config.acks = Acks::None;
    let fire_and_forget = Producer::connect(config).await.unwrap();
    let m = fire_and_forget
        .send_and_wait(
            "t",
            Some(1),
            None,
            Some(Bytes::from_static(b"x")),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!((m.partition, m.offset), (1, -1));
    fire_and_forget.close().await.unwrap();
    assert_eq!(broker.state.lock().unwrap().topics["t"][1].next_offset, 1);

    broker.state.lock().unwrap().produce_errors = vec![6, 6];
    let producer = Producer::connect(producer_config(&broker.addr))
        .await
        .unwrap();
    let m = producer
        .send_and_wait(
            "t",
            Some(0),
            None,
            Some(Bytes::from_static(b"y")),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!((m.partition, m.offset), (0, 0));
    assert_eq!(
        broker.state.lock().unwrap().produce_requests,
        4,
        "1 acks=0 + 2 refused + 1 accepted"
    );

    broker.state.lock().unwrap().produce_errors = vec![10];
    let err = producer
        .send_and_wait(
            "t",
            Some(0),
            None,
            Some(Bytes::from_static(b"z")),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kafka_code(),
        Some(ResponseError::MessageTooLarge),
        "not retriable: fails at once"
    );
    let bad = producer
        .send("t", Some(9), None, None, Vec::new())
        .await
        .err()
        .unwrap();
    assert!(
        bad.to_string()
            .contains("has 2 partitions; partition 9 does not exist"),
        "{bad}"
    );
}

#[tokio::test]
async fn pipelined_requests_on_one_connection() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 8);
    let cluster = Cluster::connect(ClientConfig::new(&broker.addr))
        .await
        .unwrap();
    let admin = Admin::with_cluster(cluster.clone());
    let calls = (0..64).map(|i| {
        let admin = admin.clone();
        async move {
            admin
                .list_offsets(&[(TopicPartition::new("t", i % 8), OffsetSpec::Latest)])
                .await
        }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap()[0].1.as_ref().unwrap().offset, 0);
    }
}

#[tokio::test]
async fn timeouts_and_garbage_fail_cleanly() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 1);
    let mut config = ClientConfig::new(&broker.addr);
    config.request_timeout = Duration::from_millis(200);
    config.retries = 1;
    config.retry_backoff = Duration::from_millis(10);
    let admin = Admin::connect(config).await.unwrap();
    let conn = admin.cluster().connection(NodeId(1)).await.unwrap();

    broker.state.lock().unwrap().stall = true;
    let err = admin.describe_topic("t").await.unwrap_err();
    // The metadata request times out, and so does the reconnect's ApiVersions.
    assert!(err.to_string().contains("timed out after 200 ms"), "{err}");
    assert!(conn.is_closed(), "a timed-out connection is dropped");
    broker.state.lock().unwrap().stall = false;
    assert_eq!(
        admin.describe_topic("t").await.unwrap().partitions.len(),
        1,
        "reconnects"
    );

    broker.state.lock().unwrap().garbage = true;
    let conn = admin.cluster().connection(NodeId(1)).await.unwrap();
    let r = admin
        .list_offsets(&[(TopicPartition::new("t", 0), OffsetSpec::Latest)])
        .await
        .unwrap();
    assert!(r[0].1.is_ok(), "recovered after the garbage response");
    assert!(
        conn.is_closed(),
        "the connection that got garbage was closed"
    );
}

#[tokio::test]
async fn api_versions_falls_back_for_old_brokers() {
    use kafka_protocol::messages::ApiKey;
    let broker = MockBroker::start().await;
    broker.create_topic("t", 1);
    broker.state.lock().unwrap().api_versions_v0_only = true;
    let admin = Admin::connect(ClientConfig::new(&broker.addr))
        .await
        .unwrap();
    let conn = admin.cluster().connection(NodeId(1)).await.unwrap();
    assert_eq!(conn.api_version(ApiKey::Fetch).unwrap(), 12);
    assert_eq!(conn.api_version(ApiKey::ApiVersions).unwrap(), 0);
    assert!(conn.api_version(ApiKey::DescribeCluster).is_err());
    // Without DescribeCluster the cluster view comes from Metadata.
    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(
        (cluster.brokers.len(), cluster.controller),
        (1, Some(NodeId(1)))
    );
}

#[tokio::test]
async fn unreachable_bootstrap_is_an_error() {
    let mut config = ClientConfig::new("127.0.0.1:1");
    config.connect_timeout = Duration::from_millis(200);
    let err = Admin::connect(config).await.err().unwrap();
    assert!(matches!(err, Error::NoBrokers(_)), "{err}");
    assert!(Admin::connect(ClientConfig::new("nonsense")).await.is_err());
}

/// Rough client throughput against the mock (run with `--ignored --nocapture`, ideally
/// in release); not an assertion, a smoke number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_smoke() {
    let broker = MockBroker::start().await;
    broker.create_topic("t", 8);
    let mut config = producer_config(&broker.addr);
    config.acks = Acks::Leader;
    config.batch_size = 64 * 1024;
    config.linger = Duration::from_millis(5);
    config.max_request_size = 4 << 20;
    config.buffer_memory = 64 << 20;
    let producer = Producer::connect(config).await.unwrap();
    let payload = Bytes::from(vec![b'x'; 1024]);
    let n = 200_000u64;
    let start = std::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<DeliveryFuture>(1 << 16);
    let acker = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            f.await.unwrap();
        }
    });
    for _ in 0..n {
        let f = producer
            .send("t", None, None, Some(payload.clone()), Vec::new())
            .await
            .unwrap();
        tx.send(f).await.unwrap();
    }
    drop(tx);
    acker.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} records in {secs:.2}s: {:.0} records/s, {:.1} MiB/s",
        n as f64 / secs,
        n as f64 * 1024.0 / secs / 1048576.0
    );
}
