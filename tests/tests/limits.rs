//! Limits a careless or hostile client meets: a fetch never carries more than the
//! broker's `fetch.max.bytes`, whatever it asks for; connections are bounded in number,
//! in idle time, in request bytes in flight, in response bytes outstanding and in the
//! memory one request decodes into, each counted in `spate_limit_hits_total`.
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
};
use kafka_protocol::records::Compression;
use spate_tests::cluster::{self, topic_name};
use spate_tests::{encode_batch, RawConnection, TestNode};

const LIMIT: usize = 64 * 1024;

/// A fetch of partition 0 from offset 0, outside any session.
fn fetch_request(
    topic: &str,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(partition_max_bytes)
                .with_current_leader_epoch(-1)])])
}

/// Polls the metric sample `series` until it reads `want` (for at most ten seconds).
async fn metric_reaches(node: &TestNode, series: &str, want: f64) -> bool {
    for _ in 0..1000 {
        if node.metric(series) == Some(want) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// A fetch of partition 0 from offset 0 asking for `max_bytes` (and as much per partition).
async fn fetch_bytes(conn: &mut RawConnection, topic: &str, max_bytes: i32) -> usize {
    let req = fetch_request(topic, 0, 0, max_bytes, i32::MAX);
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

/// `spate_limit_hits_total` of the limit called `limit`.
fn hits(node: &TestNode, limit: &str) -> f64 {
    node.metric(&format!("spate_limit_hits_total{{limit=\"{limit}\"}}"))
        .unwrap_or(0.0)
}

async fn api_versions_ok(conn: &mut RawConnection) -> bool {
    let resp: anyhow::Result<ApiVersionsResponse> = conn
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    resp.is_ok_and(|r| r.error_code == 0)
}

/// A long-polling fetch of an empty partition: answered after `max_wait_ms`.
fn parked_fetch(topic: &str, max_wait_ms: i32) -> FetchRequest {
    fetch_request(topic, max_wait_ms, 1, LIMIT as i32, LIMIT as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limits_are_closed_and_counted() {
    let node = TestNode::start_with(|c| c.connection_limits.max_connections_per_ip = 2)
        .await
        .unwrap();
    let addr = node.kafka_addr();
    let mut a = RawConnection::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut a).await);
    let mut b = RawConnection::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut b).await);
    let mut c = RawConnection::connect(addr).await.unwrap();
    assert!(
        c.is_closed_by_peer().await,
        "a third connection from 127.0.0.1"
    );
    assert_eq!(hits(&node, "max.connections.per.ip"), 1.0);
    assert!(
        api_versions_ok(&mut a).await,
        "admitted connections still served"
    );
    assert_eq!(node.metric("spate_connections_open"), Some(2.0));
    // A closed connection gives its slot back.
    drop(a);
    assert!(
        metric_reaches(&node, "spate_connections_open", 1.0).await,
        "the slot of a closed connection comes back"
    );
    let mut f = RawConnection::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut f).await);
    drop((b, c, f));
    node.stop().await;

    // max.connections counts every address (the node listens on 127.0.0.1 only, so one
    // address shows it).
    let node = TestNode::start_with(|c| c.connection_limits.max_connections = 1)
        .await
        .unwrap();
    let mut a = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert!(api_versions_ok(&mut a).await);
    let mut b = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert!(b.is_closed_by_peer().await);
    assert_eq!(hits(&node, "max.connections"), 1.0);
    assert_eq!(hits(&node, "max.connections.per.ip"), 0.0);
    assert!(api_versions_ok(&mut a).await);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_but_not_those_owed_a_response() {
    let node = TestNode::start_with(|c| {
        c.connection_limits.idle_timeout = std::time::Duration::from_millis(300);
    })
    .await
    .unwrap();
    let addr = node.kafka_addr();
    let mut setup = RawConnection::connect(addr).await.unwrap();
    assert_eq!(
        cluster::create_topic(&mut setup, "quiet", 1, 1, &[]).await,
        0
    );
    drop(setup);

    // Owed a response that takes longer than the idle timeout: kept open.
    let mut parked = RawConnection::connect(addr).await.unwrap();
    let id = parked
        .send(ApiKey::Fetch, 12, &parked_fetch("quiet", 1500))
        .await
        .unwrap();
    // Silent from the start.
    let mut idle = RawConnection::connect(addr).await.unwrap();
    // Slowloris: announces a frame, then trickles a byte every 50 ms.
    let slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut slow_rd, mut slow_wr) = slow.into_split();
    let trickle = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if slow_wr.write_all(&1000i32.to_be_bytes()).await.is_err() {
            return;
        }
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if slow_wr.write_all(&[0]).await.is_err() {
                return;
            }
        }
    });

    assert!(
        idle.is_closed_by_peer().await,
        "an idle connection is closed"
    );
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut slow_rd, &mut byte),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a trickling frame is closed: {closed:?}"
    );
    trickle.abort();
    let resp: FetchResponse = parked.receive(ApiKey::Fetch, 12, id).await.unwrap();
    assert_eq!(resp.error_code, 0, "the parked fetch is answered");
    assert!(hits(&node, "connections.max.idle.ms") >= 2.0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bytes_in_flight_hold_back_reading_until_responses_are_ready() {
    // A budget of one byte: every request takes all of it until its response is ready.
    let node = TestNode::start_with(|c| {
        c.connection_limits.queued_max_request_bytes = Some(1);
    })
    .await
    .unwrap();
    let addr = node.kafka_addr();
    let mut a = RawConnection::connect(addr).await.unwrap();
    assert_eq!(cluster::create_topic(&mut a, "held", 1, 1, &[]).await, 0);
    let id = a
        .send(ApiKey::Fetch, 12, &parked_fetch("held", 1500))
        .await
        .unwrap();
    // Let the broker read the fetch (it parks, holding the budget).
    assert!(
        metric_reaches(&node, "spate_queued_request_bytes", 1.0).await,
        "the parked fetch holds the request budget"
    );
    let started = std::time::Instant::now();
    let mut b = RawConnection::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut b).await);
    let waited = started.elapsed();
    let resp: FetchResponse = a.receive(ApiKey::Fetch, 12, id).await.unwrap();
    assert_eq!(resp.error_code, 0);
    // ApiVersions is answered at once when read: that it took most of the fetch's wait
    // shows its frame was not read while the budget was spent.
    assert!(
        waited >= std::time::Duration::from_millis(1000),
        "ApiVersions answered after {waited:?}, before the parked fetch gave the budget back"
    );
    assert!(hits(&node, "queued.max.request.bytes") >= 1.0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_fetches_wait_for_the_connections_response_budget() {
    let node = TestNode::start_with(|c| c.fetch_max_bytes = LIMIT)
        .await
        .unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert_eq!(
        cluster::create_topic(&mut conn, "piped", 1, 1, &[]).await,
        0
    );
    // Each fetch reserves all of fetch.max.bytes: the second waits for the first's
    // response to be written, in request order.
    let first = conn
        .send(ApiKey::Fetch, 12, &parked_fetch("piped", 300))
        .await
        .unwrap();
    let second = conn
        .send(ApiKey::Fetch, 12, &parked_fetch("piped", 0))
        .await
        .unwrap();
    let r1: FetchResponse = conn.receive(ApiKey::Fetch, 12, first).await.unwrap();
    let r2: FetchResponse = conn.receive(ApiKey::Fetch, 12, second).await.unwrap();
    assert_eq!((r1.error_code, r2.error_code), (0, 0));
    assert_eq!(hits(&node, "fetch.max.bytes"), 1.0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_decodes_into_too_much_memory_closes_only_its_connection() {
    let node = TestNode::start().await.unwrap();
    let addr = node.kafka_addr();
    // Metadata v1 naming 2.5 million empty topics: 5 MB on the wire, ~180 MB decoded.
    let names = 2_500_000usize;
    let mut frame = Vec::with_capacity(4 + 10 + 4 + 2 * names);
    let body_len = 2 + 2 + 4 + 2 + 4 + 2 * names;
    frame.extend_from_slice(&(body_len as i32).to_be_bytes());
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(&(names as i32).to_be_bytes());
    frame.resize(4 + body_len, 0);
    let mut hostile = RawConnection::connect(addr).await.unwrap();
    hostile.write_raw(&frame).await.unwrap();
    assert!(hostile.is_closed_by_peer().await);
    assert_eq!(hits(&node, "decoded.request.max.bytes"), 1.0);
    let mut fine = RawConnection::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut fine).await);
    node.stop().await;
}

/// How many of the topics `look` names exist (it must not auto-create).
async fn existing_topics(
    conn: &mut RawConnection,
    look: &kafka_protocol::messages::MetadataRequest,
) -> usize {
    let resp: kafka_protocol::messages::MetadataResponse =
        conn.request(ApiKey::Metadata, 9, look).await.unwrap();
    resp.topics.iter().filter(|t| t.error_code == 0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_metadata_request_auto_creates_at_most_a_bounded_number_of_topics() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let cap = spate_broker::handlers::metadata::AUTO_CREATE_MAX_TOPICS;
    let names: Vec<String> = (0..cap + 50).map(|i| format!("gen-{i:05}")).collect();
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            names
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                .collect(),
        ));
    // Creation propagates asynchronously (the handler waits a bounded time for it), so
    // count what exists with auto-creation off until it settles.
    let look = req.clone().with_allow_auto_topic_creation(false);
    let _: MetadataResponse = conn.request(ApiKey::Metadata, 9, &req).await.unwrap();
    let mut seen = 0;
    for _ in 0..600 {
        seen = existing_topics(&mut conn, &look).await;
        assert!(seen <= cap, "one request created {seen} topics");
        if seen == cap {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, cap, "the first request creates exactly the cap");
    // Asked again, the rest is created.
    let _: MetadataResponse = conn.request(ApiKey::Metadata, 9, &req).await.unwrap();
    for _ in 0..600 {
        seen = existing_topics(&mut conn, &look).await;
        if seen == names.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, names.len());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_memory_in_use_cuts_other_fetches_instead_of_stalling_them() {
    const MIB: usize = 1024 * 1024;
    let node = TestNode::start_with(|c| c.connection_limits.fetch_memory_max_bytes = 16 * MIB)
        .await
        .unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    assert_eq!(cluster::create_topic(&mut conn, "mem", 1, 1, &[]).await, 0);
    let value = vec![b'm'; 512 * 1024];
    for _ in 0..48 {
        let batch = encode_batch(&[&value], Compression::None).unwrap();
        let (code, _) = cluster::produce(&mut conn, "mem", 0, -1, 5_000, batch)
            .await
            .unwrap();
        assert_eq!(code, 0);
    }
    // A client asks for everything and does not read the answer: its response takes all
    // of fetch.memory.max.bytes and stays unwritten.
    let mut greedy = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let req = fetch_request("mem", 0, 0, i32::MAX, i32::MAX);
    let greedy_id = greedy.send(ApiKey::Fetch, 12, &req).await.unwrap();
    assert!(
        metric_reaches(&node, "spate_fetch_memory_bytes", (16 * MIB) as f64).await,
        "the unread response holds the fetch memory"
    );
    // Another consumer is not stalled: it gets a smaller answer at once.
    let got = fetch_bytes(&mut conn, "mem", (8 * MIB) as i32).await;
    assert!(
        got > 0 && got <= 2 * MIB,
        "cut to about the 1 MiB floor: {got}"
    );
    assert!(hits(&node, "fetch.memory.max.bytes") >= 1.0);
    // Once the greedy client reads its answer, the memory comes back.
    let resp: FetchResponse = greedy.receive(ApiKey::Fetch, 12, greedy_id).await.unwrap();
    let greedy_got = resp.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!(greedy_got <= 17 * MIB, "{greedy_got}");
    assert!(
        metric_reaches(&node, "spate_fetch_memory_bytes", 0.0).await,
        "written responses give their fetch memory back"
    );
    let got = fetch_bytes(&mut conn, "mem", (8 * MIB) as i32).await;
    assert!(got > 7 * MIB, "a full answer again: {got}");
    node.stop().await;
}
