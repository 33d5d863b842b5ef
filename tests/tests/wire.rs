//! Wire-level tests against an in-process node: ApiVersions, produce/fetch round trips,
//! acks, restart durability, and bad input that must not take the broker down.
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use spate_tests::{encode_batch, RawConnection, TestNode};

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

async fn create_topic(conn: &mut RawConnection, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ]);
    let resp: CreateTopicsResponse = conn.request(ApiKey::CreateTopics, 7, &req).await.unwrap();
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

async fn produce(
    conn: &mut RawConnection,
    name: &str,
    partition: i32,
    batch: Bytes,
    acks: i16,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = conn.request(ApiKey::Produce, 9, &req).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn fetch(
    conn: &mut RawConnection,
    name: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> (i16, i64, Vec<Bytes>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1024 * 1024)
                .with_current_leader_epoch(-1)])]);
    let resp: FetchResponse = conn.request(ApiKey::Fetch, 12, &req).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    let mut values = Vec::new();
    if let Some(mut records) = p.records.clone() {
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records).unwrap();
            for r in set.records {
                if r.offset >= offset {
                    values.push(r.value.unwrap_or_default());
                }
            }
        }
    }
    (p.error_code, p.high_watermark, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_advertises_exactly_what_is_implemented() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let resp: ApiVersionsResponse = conn
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    let advertised: Vec<(i16, i16, i16)> = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let expected: Vec<(i16, i16, i16)> = spate_broker::server::api_versions::advertised()
        .iter()
        .map(|(k, a, b)| (*k as i16, *a, *b))
        .collect();
    assert_eq!(advertised, expected);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_round_trip_survives_restart() {
    let mut node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut conn, "orders", 2).await;
    let mut expected = Vec::new();
    for round in 0..20 {
        let values: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("r{round}-v{i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let compression = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ][round % 5];
        let (code, base) = produce(
            &mut conn,
            "orders",
            1,
            encode_batch(&refs, compression).unwrap(),
            -1,
        )
        .await;
        assert_eq!(code, 0);
        assert_eq!(base, (round * 5) as i64);
        expected.extend(values);
    }
    let mut got = Vec::new();
    let mut offset = 0;
    while got.len() < expected.len() {
        let (code, hw, values) = fetch(&mut conn, "orders", 1, offset, 100).await;
        assert_eq!(code, 0);
        assert_eq!(hw, 100);
        offset += values.len() as i64;
        got.extend(values.into_iter().map(|b| b.to_vec()));
    }
    assert_eq!(got, expected);

    node.restart().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let (code, hw, values) = fetch(&mut conn, "orders", 1, 42, 100).await;
    assert_eq!(code, 0);
    assert_eq!(hw, 100);
    assert_eq!(values[0].to_vec(), expected[42]);
    // Offsets continue where they were.
    let (code, base) = produce(
        &mut conn,
        "orders",
        1,
        encode_batch(&[b"after"], Compression::None).unwrap(),
        1,
    )
    .await;
    assert_eq!((code, base), (0, 100));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_returns_when_data_arrives() {
    let node = TestNode::start().await.unwrap();
    let mut admin = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut admin, "poll", 1).await;
    let addr = node.kafka_addr();
    let waiter = tokio::spawn(async move {
        let mut conn = RawConnection::connect(addr).await.unwrap();
        fetch(&mut conn, "poll", 0, 0, 20_000).await
    });
    // The fetch is parked (nothing to read); producing must release it long before 20 s.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, _) = produce(
        &mut admin,
        "poll",
        0,
        encode_batch(&[b"wake"], Compression::None).unwrap(),
        1,
    )
    .await;
    assert_eq!(code, 0);
    let (code, hw, values) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((code, hw), (0, 1));
    assert_eq!(values, vec![Bytes::from_static(b"wake")]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_for_unknown_partitions_and_bad_batches() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut conn, "errs", 1).await;
    let batch = encode_batch(&[b"x"], Compression::None).unwrap();
    assert_eq!(
        produce(&mut conn, "errs", 5, batch.clone(), 1).await.0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(produce(&mut conn, "nope", 0, batch.clone(), 1).await.0, 3);
    let mut corrupt = batch.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut conn, "errs", 0, Bytes::from(corrupt), 1)
            .await
            .0,
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce(&mut conn, "errs", 0, batch, 7).await.0,
        21,
        "INVALID_REQUIRED_ACKS"
    );
    // Nothing was appended by the failures.
    let (code, hw, _) = fetch(&mut conn, "errs", 0, 0, 0).await;
    assert_eq!((code, hw), (0, 0));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_that_connection() {
    let node = TestNode::start().await.unwrap();
    let addr = node.kafka_addr();
    let cases: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),  // negative size
        i32::MAX.to_be_bytes().to_vec(), // huge size
        [&8i32.to_be_bytes()[..], &[0xff, 0x7f, 0, 0, 0, 0, 0, 1]].concat(), // unknown API key
        [&8i32.to_be_bytes()[..], &[0, 0, 0, 99, 0, 0, 0, 1]].concat(), // Produce v99
        [&100i32.to_be_bytes()[..], &[0, 3, 0, 1]].concat(), // truncated
        [
            &12i32.to_be_bytes()[..],
            &[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff],
        ]
        .concat(), // Metadata, bad body
    ];
    for case in cases {
        let mut bad = RawConnection::connect(addr).await.unwrap();
        bad.write_raw(&case).await.unwrap();
        if case.len() == 8 && case[..4] == 100i32.to_be_bytes() {
            // Truncated: the client gives up and closes; nothing to observe but survival.
            drop(bad);
        } else {
            assert!(
                bad.is_closed_by_peer().await,
                "connection should be closed for {case:?}"
            );
        }
        // Another client is still served.
        let mut good = RawConnection::connect(addr).await.unwrap();
        let resp: ApiVersionsResponse = good
            .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await
            .unwrap();
        assert_eq!(resp.error_code, 0);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_api_versions_version_gets_v0_error_with_ranges() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    // ApiVersions v99, header v1 (as a client would send before knowing better).
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&frame);
    conn.write_raw(&framed).await.unwrap();
    let mut resp = conn.read_frame().await.unwrap();
    use bytes::Buf;
    assert_eq!(resp.get_i32(), 42);
    assert_eq!(resp.get_i16(), 35, "UNSUPPORTED_VERSION");
    let count = resp.get_i32();
    assert_eq!(
        count as usize,
        spate_broker::server::api_versions::SUPPORTED.len()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_errors_close_the_connection() {
    // acks=0 has no response, so (as in Kafka) a failed append is signalled by closing the
    // connection: the client then refreshes its metadata instead of writing into the void.
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut conn, "zero", 1).await;
    let batch = encode_batch(&[b"ok"], Compression::None).unwrap();
    let req = |partition: i32| {
        ProduceRequest::default()
            .with_acks(0)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("zero"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.clone()))])])
    };
    // A good acks=0 write leaves the connection open (the ApiVersions after it is answered).
    send_oneway(&mut conn, &req(0)).await;
    let resp: ApiVersionsResponse = conn
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    // A write to a partition that does not exist closes it.
    send_oneway(&mut conn, &req(9)).await;
    assert!(conn.is_closed_by_peer().await);
    node.stop().await;
}

async fn send_oneway(conn: &mut RawConnection, req: &ProduceRequest) {
    use bytes::BufMut;
    use kafka_protocol::protocol::Encodable;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1000);
    let mut buf = bytes::BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, ApiKey::Produce.request_header_version(9))
        .unwrap();
    req.encode(&mut buf, 9).unwrap();
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    conn.write_raw(&buf).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_retries_are_deduplicated_and_gaps_refused() {
    use spate_tests::encode_producer_batch;
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let init: InitProducerIdResponse = conn
        .request(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    let batch = |seq: i32, epoch: i16| {
        encode_producer_batch(&[b"a", b"b", b"c"], Compression::None, pid, epoch, seq).unwrap()
    };
    create_topic(&mut conn, "idem", 1).await;
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(0, epoch), -1).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(3, epoch), -1).await,
        (0, 3)
    );
    // A retry of either batch is answered with its original offset and not stored again.
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(0, epoch), -1).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(3, epoch), -1).await,
        (0, 3)
    );
    // A gap in the sequence is refused.
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(9, epoch), -1).await.0,
        45
    );
    // A new epoch must start at sequence 0; an older one is fenced.
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(5, epoch + 1), -1)
            .await
            .0,
        45
    );
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(0, epoch + 1), -1).await,
        (0, 6)
    );
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(6, epoch), -1).await.0,
        47
    );
    let (code, hw, values) = fetch(&mut conn, "idem", 0, 0, 0).await;
    assert_eq!(
        (code, hw, values.len()),
        (0, 9, 9),
        "nothing was stored twice"
    );

    // The producer state survives a restart (snapshot + log).
    let mut node = node;
    node.restart().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(0, epoch + 1), -1).await,
        (0, 6)
    );
    assert_eq!(
        produce(&mut conn, "idem", 0, batch(3, epoch + 1), -1).await,
        (0, 9)
    );
    node.stop().await;
}
